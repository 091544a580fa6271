//! The cross-shard channel layer: shard-to-shard lanes, plus one bounded
//! [`flume`] mailbox per shard for everyone else.
//!
//! Contract between shards: a shard never touches another shard's state; it
//! sends a `Send` closure to the other shard, and that shard calls the
//! closure *there*, running the future it returns as a local green thread.
//! So the closure must be `Send`, the future it makes need not be.
//!
//! - Two ways in, both bounded. A message from a shard of the runtime goes
//!   down that shard's own lane to the target (`sync/lanes/`: a wait-free ring
//!   per pair of shards, Seastar's layout, `SHARDLET_MAILBOX / shards`
//!   messages each). A message from any other thread (a host thread holding
//!   [`RuntimeHandle::mesh`](crate::RuntimeHandle::mesh), a blocking job)
//!   goes through the target's mailbox (`sync/mailbox.rs`, `SHARDLET_MAILBOX`
//!   messages). A full lane or mailbox makes async senders wait, and the
//!   `try_` variants hand the closure back. Nothing queues without bound.
//! - Order: messages from one shard to another run in the order they were
//!   sent, and so do messages from one thread through the mailbox.
//! - Waiting for room is first come, first served: a shard's senders to one
//!   full lane queue, and only the first of them waits on the receiver,
//!   passing the turn on once it has sent (or been dropped). So a sending
//!   future that was woken must be polled again or dropped: one that its
//!   owner keeps without polling it holds up the later sends of its shard
//!   to that shard until it is polled or dropped.
//! - Each shard drains its lanes and mailbox in one green thread that takes
//!   every queued message per wake-up (batching). A message whose future
//!   finishes on its first poll costs no task at all.
//! - Wake-up latency: waking a parked glommio executor from another thread
//!   goes through an eventfd and costs tens of microseconds. So a shard that
//!   just handled a message keeps *polling* (look at its lanes and mailbox,
//!   yield to its other tasks, look again) for `SHARDLET_SPIN_US` before it
//!   parks; a caller waiting for a reply does the same. While messages flow,
//!   a round trip then costs well under a microsecond; an idle shard parks.
//! - A `submit_to` reply travels in the same allocation as the request: the
//!   target writes the result and a state flag, the caller polls the flag.
//! - Nothing is lost silently: a message that is never run (its shard ended
//!   first) is counted ([`Mesh::dropped`]) and logged through `tracing` by
//!   the shard as it closes its lanes and mailbox, and a `submit_to` caller
//!   waiting on it gets [`MeshError::ShardGone`].
mod error;
pub(crate) mod global;
pub(crate) mod here;
mod inbox;
mod job;
mod wake;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_lite::future::poll_fn;

pub use error::{MeshError, TrySpawnError};
pub(crate) use inbox::{drain, Inbox};
pub(crate) use job::Reply;
pub(crate) use wake::{wake, Home};

use crate::sync::lanes::{Lanes, Outlanes};
use crate::sync::mailbox::{MailError, Mailboxes};
use job::{Call, Envelope, SpawnJob};

/// Default inbox capacity per shard (`SHARDLET_MAILBOX`), defined with the other defaults.
pub use crate::config::DEFAULT_MAILBOX;

/// Handle to every shard's inbox: `Clone + Send + Sync`, usable from any
/// shard and from host threads (see [`RuntimeHandle::mesh`](crate::RuntimeHandle::mesh)).
/// On a shard, the free functions [`spawn_on`], [`submit_to`] and
/// [`broadcast`] use the runtime's mesh.
///
/// ```
/// fn send_sync<T: Send + Sync>() {}
/// send_sync::<shardlet::Mesh>();
/// ```
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

struct Inner {
    inboxes: Mailboxes<Envelope>,
    lanes: Lanes,
    dropped: AtomicU64,
    cancelled: AtomicU64,
}

/// A shard's sending ends, kept in its thread-local place (`here.rs`).
pub(crate) type Outbox = Outlanes<Envelope>;

thread_local! {
    /// `spawn_on` jobs cancelled on this shard as it ends, not yet logged.
    static CANCELLED_HERE: Cell<u64> = const { Cell::new(0) };
}

/// A `spawn_on` job on this shard was cancelled unfinished (its shard ended).
fn count_cancelled() {
    if let Some(here) = here::here() {
        here.mesh.inner.cancelled.fetch_add(1, Relaxed);
    }
    CANCELLED_HERE.with(|c| c.set(c.get() + 1));
}

impl Mesh {
    /// Lanes and mailboxes for `shards` shards (`capacity` per shard, see
    /// the module docs); element `i` of the vector holds shard `i`'s ends.
    pub(crate) fn new(shards: usize, capacity: usize) -> (Mesh, Vec<(Outbox, Inbox)>) {
        let (inboxes, mail) = Mailboxes::new(shards, capacity);
        let (lanes, ends) = Lanes::new(shards, capacity.div_ceil(shards.max(1)));
        let mesh = Mesh {
            inner: Arc::new(Inner {
                inboxes,
                lanes,
                dropped: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
            }),
        };
        let ends = ends
            .into_iter()
            .zip(mail)
            .map(|((out, lanes), mail)| (out, Inbox { lanes, mail }))
            .collect();
        (mesh, ends)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.inner.inboxes.len()
    }

    /// Tells this runtime's mesh from another's.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Messages dropped unrun because their shard had stopped (`submit_to`
    /// ones included, whose callers also got [`MeshError::ShardGone`]).
    /// Only what users sent counts: the mesh's own wake-ups do not.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Relaxed)
    }

    /// `spawn_on` jobs that had started on their shard and were still
    /// waiting when it ended: cancelled, their futures dropped (and logged
    /// by the shard as it ends). A `submit_to` cut off that way answers its
    /// caller with [`MeshError::ShardGone`] instead.
    pub fn cancelled(&self) -> u64 {
        self.inner.cancelled.load(Relaxed)
    }

    /// Messages waiting for `shard` that the caller can see: those sent
    /// from outside the shards, plus, on a shard, that shard's own messages
    /// still in its lane to `shard` (0 for an unknown shard).
    pub fn queued(&self, shard: usize) -> usize {
        let own = here::with_outbox(&self.inner.lanes, |out| out.queued(shard)).unwrap_or(0);
        self.inner.inboxes.queued(shard) + own
    }

    /// Messages from other threads waiting in `shard`'s mailbox.
    pub(crate) fn mailbox_queued(&self, shard: usize) -> usize {
        self.inner.inboxes.queued(shard)
    }

    /// On a shard of this mesh: how many messages wait in its lane to each
    /// shard (empty anywhere else).
    pub(crate) fn outgoing_queued(&self) -> Vec<usize> {
        let shards = self.shards();
        here::with_outbox(&self.inner.lanes, |out| {
            (0..shards).map(|to| out.queued(to)).collect()
        })
        .unwrap_or_default()
    }

    /// Called by a shard as it ends: no message stays behind for it. Each
    /// message still queued is dropped (a `submit_to` caller then gets
    /// [`MeshError::ShardGone`]) under a panic guard, so a closure whose
    /// drop panics is counted and logged like the others.
    pub(crate) fn close(&self, shard: usize, inbox: &RefCell<Inbox>) {
        let mut inbox = inbox.borrow_mut();
        let inbox = &mut *inbox;
        let (mut dropped, mut panicked) = (0u64, 0u64);
        let mut each = |envelope: Envelope| {
            dropped += u64::from(envelope.is_user());
            if let Err(err) = crate::task::guard::guard_sync(|| drop(envelope)) {
                panicked += 1;
                tracing::error!(target: "shardlet::mesh", shard, "dropping an unrun message: {err}");
            }
        };
        inbox.lanes.close(&mut each);
        self.inner.inboxes.close(shard, &inbox.mail, &mut each);
        if dropped > 0 {
            self.inner.dropped.fetch_add(dropped, Relaxed);
            tracing::warn!(
                target: "shardlet::mesh",
                shard,
                dropped,
                panicked,
                "cross-shard messages dropped unrun: their shard has stopped"
            );
        }
        let cancelled = CANCELLED_HERE.with(|c| c.replace(0));
        if cancelled > 0 {
            tracing::warn!(
                target: "shardlet::mesh",
                shard,
                cancelled,
                "spawn_on jobs cancelled unfinished: their shard has stopped"
            );
        }
    }

    fn error(&self, shard: usize, err: MailError<Envelope>) -> MeshError {
        match err {
            MailError::NoSuchShard(_) => MeshError::NoSuchShard {
                shard,
                count: self.shards(),
            },
            MailError::Full(_) | MailError::Closed(_) => MeshError::ShardGone { shard },
        }
    }

    /// Delivers without waiting: down this shard's lane on a shard of the
    /// runtime, through the mailbox anywhere else.
    fn try_deliver(&self, shard: usize, envelope: Envelope) -> Result<(), MailError<Envelope>> {
        let mut held = Some(envelope);
        let sent = here::with_outbox(&self.inner.lanes, |out| {
            out.try_send(shard, held.take().expect("once"))
        });
        match (sent, held) {
            (Some(sent), _) => sent,
            (None, Some(envelope)) => self.inner.inboxes.try_send(shard, envelope),
            (None, None) => unreachable!("the envelope is sent or held"),
        }
    }

    /// Delivers, waiting in turn while the lane or mailbox is full: down
    /// this shard's lane on a shard of the runtime, through the mailbox
    /// anywhere else.
    async fn deliver(&self, shard: usize, envelope: Envelope) -> Result<(), MeshError> {
        let mut held = Some(envelope);
        // This sender's place among those waiting for room (dropped on return).
        let mut wait = None;
        let lanes = &self.inner.lanes;
        let sent = poll_fn(|cx| {
            match here::with_outbox(lanes, |out| out.poll_send(shard, &mut held, &mut wait, cx)) {
                Some(poll) => poll.map(Some),
                None => Poll::Ready(None),
            }
        })
        .await;
        match sent {
            Some(sent) => sent.map_err(|err| self.error(shard, err)),
            // Not a shard of this runtime: the mailbox waits for room itself.
            None => {
                let envelope = held.take().expect("an unsent envelope is held");
                self.inner
                    .inboxes
                    .send(shard, envelope)
                    .await
                    .map_err(|e| self.error(shard, e))
            }
        }
    }

    /// Runs `f()` as a green thread on `shard`, waiting while the way there is full.
    ///
    /// # Errors
    ///
    /// [`MeshError::NoSuchShard`], or [`MeshError::ShardGone`] when the shard
    /// has stopped.
    pub async fn spawn_on<F, Fut>(&self, shard: usize, f: F) -> Result<(), MeshError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        // A message that could not be sent is reported to the caller here,
        // so it is not counted as dropped.
        self.deliver(shard, Envelope::new(Arc::new(SpawnJob(Mutex::new(Some(f))))))
            .await
    }

    /// Like [`spawn_on`](Mesh::spawn_on) without waiting: a full lane or
    /// mailbox hands `f` back.
    ///
    /// # Errors
    ///
    /// [`TrySpawnError`] with the closure.
    pub fn try_spawn_on<F, Fut>(&self, shard: usize, f: F) -> Result<(), TrySpawnError<F>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let envelope = Envelope::new(Arc::new(SpawnJob(Mutex::new(Some(f)))));
        self.try_deliver(shard, envelope).map_err(|err| match err {
            MailError::Full(e) => TrySpawnError::Full {
                shard,
                closure: e.into_closure(),
            },
            MailError::Closed(e) => TrySpawnError::Gone {
                shard,
                closure: e.into_closure(),
            },
            MailError::NoSuchShard(e) => TrySpawnError::NoSuchShard {
                shard,
                count: self.shards(),
                closure: e.into_closure(),
            },
        })
    }

    /// Sends `f` to `shard`; the [`Reply`] is its answer.
    pub(crate) async fn call<F, Fut, T>(&self, shard: usize, f: F) -> Result<Reply<T>, MeshError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let call = Arc::new(Call::new(f));
        self.deliver(shard, Envelope::new(call.clone())).await?;
        Ok(Reply::new(shard, call))
    }

    /// Runs `f()` on `shard` and returns its result.
    ///
    /// # Errors
    ///
    /// [`MeshError::NoSuchShard`]; [`MeshError::ShardGone`] when the shard
    /// stopped before running it; [`MeshError::Task`] when it panicked there.
    pub async fn submit_to<F, Fut, T>(&self, shard: usize, f: F) -> Result<T, MeshError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.call(shard, f).await?.wait().await
    }

    /// Runs `f()` on every shard and returns the results in shard order.
    pub async fn broadcast<F, Fut, T>(&self, f: F) -> Vec<Result<T, MeshError>>
    where
        F: Fn() -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        // Send to every shard first, then collect, so the shards work in parallel.
        let mut replies = Vec::with_capacity(self.shards());
        for shard in 0..self.shards() {
            let f = f.clone();
            replies.push(self.call(shard, f).await);
        }
        let mut results = Vec::with_capacity(replies.len());
        for reply in replies {
            results.push(match reply {
                Ok(reply) => reply.wait().await,
                Err(err) => Err(err),
            });
        }
        results
    }

    /// [`broadcast`](Mesh::broadcast)s `map` and folds the results in shard order.
    ///
    /// # Errors
    ///
    /// The first shard's [`MeshError`], if any shard failed.
    pub async fn map_reduce<F, Fut, T, R>(
        &self,
        map: F,
        init: R,
        mut reduce: impl FnMut(R, T) -> R,
    ) -> Result<R, MeshError>
    where
        F: Fn() -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let mut acc = init;
        for result in self.broadcast(map).await {
            acc = reduce(acc, result?);
        }
        Ok(acc)
    }
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("shards", &self.shards())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// This shard's place in the mesh, whose mesh the free functions use.
fn current() -> std::rc::Rc<here::Here> {
    here::here().expect("not on a shardlet shard: the cross-shard layer needs a Runtime")
}

/// [`Mesh::spawn_on`] through the current runtime's mesh.
///
/// # Errors
///
/// See [`Mesh::spawn_on`].
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
pub async fn spawn_on<F, Fut>(shard: usize, f: F) -> Result<(), MeshError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    current().mesh.spawn_on(shard, f).await
}

/// [`Mesh::submit_to`] through the current runtime's mesh.
///
/// # Errors
///
/// See [`Mesh::submit_to`].
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
///
/// # Examples
///
/// ```
/// use shardlet::{shard, submit_to, Config, Runtime};
///
/// let config = Config::default().with_shards(2).with_pin(false);
/// let got = Runtime::new(config)?.run(|| async {
///     let other = (shard::id() + 1) % shard::count();
///     submit_to(other, || async { shard::id() }).await.unwrap()
/// })?;
/// assert_eq!(got, [1, 0]);
/// # Ok::<(), shardlet::RuntimeError>(())
/// ```
pub async fn submit_to<F, Fut, T>(shard: usize, f: F) -> Result<T, MeshError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    current().mesh.submit_to(shard, f).await
}

/// [`Mesh::broadcast`] through the current runtime's mesh.
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
pub async fn broadcast<F, Fut, T>(f: F) -> Vec<Result<T, MeshError>>
where
    F: Fn() -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    current().mesh.broadcast(f).await
}

/// [`Mesh::map_reduce`] through the current runtime's mesh.
///
/// # Errors
///
/// See [`Mesh::map_reduce`].
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
pub async fn map_reduce<F, Fut, T, R>(map: F, init: R, reduce: impl FnMut(R, T) -> R) -> Result<R, MeshError>
where
    F: Fn() -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    current().mesh.map_reduce(map, init, reduce).await
}
