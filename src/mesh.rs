//! The cross-shard channel layer: one bounded [`flume`] inbox per shard.
//!
//! Contract between shards: a shard never touches another shard's state; it
//! sends a `Send` closure to the other shard's inbox, and that shard calls
//! the closure *there*, spawning the future it returns as a local green
//! thread. So the closure must be `Send`, the future it makes need not be.
//!
//! - Inboxes are bounded (`SHARDLET_MAILBOX`): a full inbox makes async
//!   senders wait, and the `try_` variants hand the closure back.
//! - Each shard drains its inbox in one green thread that takes every
//!   queued message per wake-up (batching).
//! - Nothing is lost silently: a message that is never run (its shard ended
//!   first) reports itself when it is dropped — `submit_to` callers get
//!   [`MeshError::ShardGone`], and fire-and-forget messages are counted
//!   ([`Mesh::dropped`]) and logged through `tracing`.
//! - Closing an inbox when its shard ends: flume keeps queued messages alive
//!   as long as any *sender* lives, so the shard empties its inbox itself.
//!   Senders announce themselves (`sending += 1`) before they look at
//!   `closed`; the closing shard sets `closed`, then drains until no sender
//!   is mid-send, then drops its receiver. A sender either sees `closed` and
//!   fails at once, or its message is drained (and reported) by the closer.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering::{self, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use crate::catch::Guarded;
use crate::task::{self, JoinError};

/// Default inbox capacity per shard (`SHARDLET_MAILBOX`).
pub const DEFAULT_MAILBOX: usize = 1024;

/// A closure in flight to another shard.
trait Job: Send {
    fn run(self: Box<Self>);
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

struct SpawnJob<F>(F);

impl<F, Fut> Job for SpawnJob<F>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn run(self: Box<Self>) {
        let f = self.0;
        let ending = RemoteJobs::ending();
        let live = RemoteJobs::enter();
        // Call `f` inside the task, so a panic in it is caught like any other.
        task::spawn_n(async move {
            let _live = live;
            futures_lite::future::or(f(), async move {
                // The shard is ending: drop `f`'s future (and what it owes other shards).
                let _ = ending.recv_async().await;
            })
            .await
        });
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        Box::new(self.0)
    }
}

/// A job plus the bookkeeping that reports it if it is dropped unrun.
pub(crate) struct Envelope {
    job: Option<Box<dyn Job>>,
    shard: usize,
    dropped: Arc<AtomicU64>,
}

impl Envelope {
    pub(crate) fn run(mut self) {
        if let Some(job) = self.job.take() {
            job.run();
        }
    }

    /// Gives the closure back (after a failed `try_send`).
    fn into_closure<F: 'static>(mut self) -> F {
        let job = self.job.take().expect("envelope already emptied");
        *job.into_any()
            .downcast::<F>()
            .expect("envelope holds another closure type")
    }
}

impl Drop for Envelope {
    fn drop(&mut self) {
        if self.job.is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "shardlet::mesh",
                shard = self.shard,
                "a cross-shard message was dropped unrun: its shard has stopped"
            );
        }
    }
}

/// Why a cross-shard call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// No shard with that index.
    #[error("no shard {shard}: the runtime has {count} shard(s)")]
    NoSuchShard {
        /// The index asked for.
        shard: usize,
        /// Shards in the runtime.
        count: usize,
    },
    /// The shard has stopped; the work did not run (or its result was lost with it).
    #[error("shard {shard} has stopped")]
    ShardGone {
        /// The target shard.
        shard: usize,
    },
    /// The work ran on the shard and panicked (or was cancelled); the shard lives on.
    #[error("task on shard {shard}: {error}")]
    Task {
        /// The target shard.
        shard: usize,
        /// What happened to the task.
        error: JoinError,
    },
}

/// A non-waiting send failed; the closure comes back.
#[derive(Debug, thiserror::Error)]
pub enum TrySpawnError<F> {
    /// The shard's inbox is full right now.
    #[error("the shard's inbox is full")]
    Full(F),
    /// The shard has stopped.
    #[error("the shard has stopped")]
    Gone(F),
    /// No shard with that index.
    #[error("no such shard")]
    NoSuchShard(F),
}

impl<F> TrySpawnError<F> {
    /// The closure that was not sent.
    pub fn into_inner(self) -> F {
        match self {
            TrySpawnError::Full(f) | TrySpawnError::Gone(f) | TrySpawnError::NoSuchShard(f) => f,
        }
    }
}

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
    inboxes: Arc<[InboxTx]>,
    dropped: Arc<AtomicU64>,
}

/// The sending side of one shard's inbox.
struct InboxTx {
    tx: flume::Sender<Envelope>,
    closed: AtomicBool,
    /// Senders between their `closed` check and the end of their send.
    sending: AtomicUsize,
}

/// Counts a sender in for the length of one send.
struct Sending<'a>(&'a InboxTx);

impl InboxTx {
    /// Announces a send, or `None` if the inbox is closed.
    fn enter(&self) -> Option<Sending<'_>> {
        self.sending.fetch_add(1, SeqCst);
        let guard = Sending(self);
        (!self.closed.load(SeqCst)).then_some(guard)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, SeqCst);
    }
}

/// The receiving end of one shard's inbox.
pub(crate) type Inbox = flume::Receiver<Envelope>;

impl Mesh {
    /// One inbox of `capacity` messages per shard; the receivers go to the shards.
    pub(crate) fn new(shards: usize, capacity: usize) -> (Mesh, Vec<Inbox>) {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards).map(|_| flume::bounded(capacity)).unzip();
        let mesh = Mesh {
            inboxes: senders
                .into_iter()
                .map(|tx| InboxTx {
                    tx,
                    closed: AtomicBool::new(false),
                    sending: AtomicUsize::new(0),
                })
                .collect(),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (mesh, receivers)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Messages dropped unrun because their shard had stopped (`submit_to`
    /// ones included, whose callers also got [`MeshError::ShardGone`]).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages waiting in `shard`'s inbox now (0 for an unknown shard).
    pub fn queued(&self, shard: usize) -> usize {
        self.inboxes.get(shard).map_or(0, |inbox| inbox.tx.len())
    }

    fn envelope<F, Fut>(&self, shard: usize, f: F) -> Envelope
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Envelope {
            job: Some(Box::new(SpawnJob(f))),
            shard,
            dropped: self.dropped.clone(),
        }
    }

    /// Called by a shard as it ends: no message stays behind in its inbox.
    pub(crate) fn close(&self, shard: usize, inbox: Inbox) {
        let Some(tx) = self.inboxes.get(shard) else { return };
        tx.closed.store(true, SeqCst);
        loop {
            // Dropping a drained envelope reports it (see `Envelope`'s Drop).
            inbox.drain().for_each(drop);
            if tx.sending.load(SeqCst) == 0 {
                break;
            }
            std::thread::yield_now();
        }
        inbox.drain().for_each(drop);
    }

    fn inbox(&self, shard: usize) -> Result<&InboxTx, MeshError> {
        self.inboxes.get(shard).ok_or(MeshError::NoSuchShard {
            shard,
            count: self.shards(),
        })
    }

    /// Runs `f()` as a green thread on `shard`, waiting while its inbox is full.
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
        let inbox = self.inbox(shard)?;
        let gone = MeshError::ShardGone { shard };
        let Some(_sending) = inbox.enter() else {
            return Err(gone);
        };
        let envelope = self.envelope(shard, f);
        inbox.tx.send_async(envelope).await.map_err(|err| {
            // Reported to the caller here, so not counted as dropped.
            drop(err.into_inner().into_closure::<F>());
            gone
        })
    }

    /// Like [`spawn_on`](Mesh::spawn_on) without waiting: a full inbox hands `f` back.
    ///
    /// # Errors
    ///
    /// [`TrySpawnError`] with the closure.
    pub fn try_spawn_on<F, Fut>(&self, shard: usize, f: F) -> Result<(), TrySpawnError<F>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let Some(inbox) = self.inboxes.get(shard) else {
            return Err(TrySpawnError::NoSuchShard(f));
        };
        let Some(_sending) = inbox.enter() else {
            return Err(TrySpawnError::Gone(f));
        };
        inbox
            .tx
            .try_send(self.envelope(shard, f))
            .map_err(|err| match err {
                flume::TrySendError::Full(e) => TrySpawnError::Full(e.into_closure()),
                flume::TrySendError::Disconnected(e) => TrySpawnError::Gone(e.into_closure()),
            })
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
        let (reply, answer) = flume::bounded(1);
        self.spawn_on(shard, move || async move {
            let _ = reply.send(Guarded::new(async move { f().await }, None).await);
        })
        .await?;
        match answer.recv_async().await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(MeshError::Task { shard, error }),
            Err(_) => Err(MeshError::ShardGone { shard }),
        }
    }

    /// Runs `f()` on every shard and returns the results in shard order.
    pub async fn broadcast<F, Fut, T>(&self, f: F) -> Vec<Result<T, MeshError>>
    where
        F: Fn() -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        // Send to every shard first, then collect, so the shards work in parallel.
        let mut answers = Vec::with_capacity(self.shards());
        for shard in 0..self.shards() {
            let (reply, answer) = flume::bounded(1);
            let f = f.clone();
            let sent = self
                .spawn_on(shard, move || async move {
                    let _ = reply.send(Guarded::new(async move { f().await }, None).await);
                })
                .await;
            answers.push(sent.map(|()| answer));
        }
        let mut results = Vec::with_capacity(answers.len());
        for (shard, answer) in answers.into_iter().enumerate() {
            results.push(match answer {
                Err(err) => Err(err),
                Ok(answer) => match answer.recv_async().await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(error)) => Err(MeshError::Task { shard, error }),
                    Err(_) => Err(MeshError::ShardGone { shard }),
                },
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

thread_local! {
    /// Remote jobs running on this shard, and the signal that ends them.
    static REMOTE: RemoteJobs = RemoteJobs::new();
}

/// The tasks this shard runs for other shards.
///
/// glommio does not drop a task that is still waiting (on a timer, on I/O)
/// when its executor ends, so a remote task left behind would keep a reply
/// channel (or a [`GlobalPermit`](crate::GlobalPermit)) alive forever and
/// hang the shard that waits for it. Before a shard's executor ends, the
/// runtime calls [`end_remote_jobs`]: every remote task is dropped while the
/// executor still runs, and its waiting caller gets [`MeshError::ShardGone`].
struct RemoteJobs {
    live: std::cell::Cell<usize>,
    end: std::cell::RefCell<Option<flume::Sender<()>>>,
    ending: flume::Receiver<()>,
}

/// Counts one remote task as live until dropped.
struct Live;

impl RemoteJobs {
    fn new() -> Self {
        let (end, ending) = flume::bounded(1);
        RemoteJobs {
            live: std::cell::Cell::new(0),
            end: std::cell::RefCell::new(Some(end)),
            ending,
        }
    }

    fn ending() -> flume::Receiver<()> {
        REMOTE.with(|r| r.ending.clone())
    }

    fn enter() -> Live {
        REMOTE.with(|r| r.live.set(r.live.get() + 1));
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = REMOTE.try_with(|r| r.live.set(r.live.get() - 1));
    }
}

/// Ends every remote task on this shard and waits (briefly) until they are gone.
pub(crate) async fn end_remote_jobs() {
    REMOTE.with(|r| r.end.borrow_mut().take());
    for _ in 0..1000 {
        if REMOTE.with(|r| r.live.get()) == 0 {
            return;
        }
        glommio::executor().yield_task_queue_now().await;
    }
    tracing::warn!(target: "shardlet::mesh", "remote tasks still running as the shard ends");
}

/// A shard's inbox loop: runs every message, all queued ones per wake-up.
pub(crate) async fn drain(inbox: Inbox) {
    while let Ok(first) = inbox.recv_async().await {
        first.run();
        for next in inbox.try_iter() {
            next.run();
        }
    }
}

fn current() -> Mesh {
    crate::shard::mesh().expect("not on a shardlet shard: the cross-shard layer needs a Runtime")
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
    current().spawn_on(shard, f).await
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
    current().submit_to(shard, f).await
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
    current().broadcast(f).await
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
    current().map_reduce(map, init, reduce).await
}
