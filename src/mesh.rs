//! The cross-shard channel layer: one bounded [`flume`] inbox per shard.
//!
//! Contract between shards: a shard never touches another shard's state; it
//! sends a `Send` closure to the other shard's inbox, and that shard calls
//! the closure *there*, spawning the future it returns as a local green
//! thread. So the closure must be `Send`, the future it makes need not be.
//!
//! - Inboxes are the crate's per-shard [`Mailboxes`] (`mailbox.rs`), bounded
//!   by `SHARDLET_MAILBOX`: a full inbox makes async senders wait, and the
//!   `try_` variants hand the closure back.
//! - Each shard drains its inbox in one green thread that takes every
//!   queued message per wake-up (batching).
//! - Wake-up latency: waking a parked glommio executor from another thread
//!   goes through an eventfd and costs tens of microseconds. So a shard that
//!   just handled a message keeps *polling* (try-receive, yield to its other
//!   tasks, try again) for `SHARDLET_SPIN_US` before it parks on the channel's
//!   waker; a caller waiting for a reply does the same. While messages flow,
//!   a round trip then costs about a microsecond; an idle shard parks.
//! - Nothing is lost silently: a message that is never run (its shard ended
//!   first) is counted ([`Mesh::dropped`]) and logged through `tracing` by
//!   the shard as it closes its inbox, and a `submit_to` caller waiting on it
//!   gets [`MeshError::ShardGone`].
//! - A shard that ends closes its inbox with the mailbox's close protocol:
//!   a sender either fails at once or has its message drained and counted.
//!
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::catch::Guarded;
use crate::mailbox::{MailError, Mailboxes};
use crate::task::{self, JoinError};

/// Default inbox capacity per shard (`SHARDLET_MAILBOX`).
pub const DEFAULT_MAILBOX: usize = 1024;

/// A closure in flight to another shard.
pub(crate) trait Job: Send {
    /// Starts the job on this shard: its future is polled once right here
    /// (with the inbox task's context) and becomes a task of its own only if
    /// it has to wait, so quick jobs cost no task at all.
    fn run(self: Box<Self>, cx: &mut Context<'_>);
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

struct SpawnJob<F>(F);

impl<F, Fut> Job for SpawnJob<F>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn run(self: Box<Self>, cx: &mut Context<'_>) {
        let f = self.0;
        // Call `f` inside the guard, so a panic in it is caught like any other.
        // (The guard also ends the job, should it still wait when the shard ends.)
        let mut job = Box::pin(Guarded::new(async move { f().await }, None));
        match job.as_mut().poll(cx) {
            Poll::Ready(result) => task::log_panic(result),
            Poll::Pending => {
                glommio::spawn_local(async move { task::log_panic(job.await) }).detach();
            }
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        Box::new(self.0)
    }
}

/// A message in an inbox.
pub(crate) type Envelope = Box<dyn Job>;

/// Gives the closure back from an envelope that was not sent.
fn into_closure<F: 'static>(envelope: Envelope) -> F {
    *envelope
        .into_any()
        .downcast::<F>()
        .expect("envelope holds another closure type")
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
    inboxes: Mailboxes<Envelope>,
    dropped: Arc<AtomicU64>,
}

/// The receiving end of one shard's inbox.
pub(crate) type Inbox = flume::Receiver<Envelope>;

impl Mesh {
    /// One inbox of `capacity` messages per shard; the receivers go to the shards.
    pub(crate) fn new(shards: usize, capacity: usize) -> (Mesh, Vec<Inbox>) {
        let (inboxes, receivers) = Mailboxes::new(shards, capacity);
        let mesh = Mesh {
            inboxes,
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
        self.inboxes.queued(shard)
    }

    /// Called by a shard as it ends: no message stays behind in its inbox.
    pub(crate) fn close(&self, shard: usize, inbox: Inbox) {
        // Dropping an unrun message drops its closure, and with it the reply
        // channel a `submit_to` caller waits on: that caller gets ShardGone.
        let dropped = self.inboxes.close(shard, &inbox);
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::warn!(
                target: "shardlet::mesh",
                shard,
                dropped,
                "cross-shard messages dropped unrun: their shard has stopped"
            );
        }
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
        // A message that could not be sent is reported to the caller here,
        // so it is not counted as dropped.
        self.inboxes
            .send(shard, Box::new(SpawnJob(f)))
            .await
            .map_err(|err| match err {
                MailError::NoSuchShard(_) => MeshError::NoSuchShard {
                    shard,
                    count: self.shards(),
                },
                MailError::Full(_) | MailError::Closed(_) => MeshError::ShardGone { shard },
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
        self.inboxes
            .try_send(shard, Box::new(SpawnJob(f)))
            .map_err(|err| match err {
                MailError::Full(e) => TrySpawnError::Full(into_closure(e)),
                MailError::Closed(e) => TrySpawnError::Gone(into_closure(e)),
                MailError::NoSuchShard(e) => TrySpawnError::NoSuchShard(into_closure(e)),
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
        let (tx, rx) = oneshot::channel();
        self.spawn_on(shard, move || async move {
            let _ = tx.send(Guarded::new(async move { f().await }, None).await);
        })
        .await?;
        answer(shard, reply(rx).await)
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
            let (tx, rx) = oneshot::channel();
            let f = f.clone();
            let sent = self
                .spawn_on(shard, move || async move {
                    let _ = tx.send(Guarded::new(async move { f().await }, None).await);
                })
                .await;
            answers.push(sent.map(|()| rx));
        }
        let mut results = Vec::with_capacity(answers.len());
        for (shard, sent) in answers.into_iter().enumerate() {
            results.push(match sent {
                Err(err) => Err(err),
                Ok(rx) => answer(shard, reply(rx).await),
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

/// What a reply from `shard` means for the caller.
pub(crate) fn answer<T>(shard: usize, reply: Option<Result<T, JoinError>>) -> Result<T, MeshError> {
    match reply {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(MeshError::Task { shard, error }),
        None => Err(MeshError::ShardGone { shard }),
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

/// A shard's inbox loop: runs every message, all queued ones per wake-up.
pub(crate) async fn drain(inbox: Inbox) {
    while let Ok(first) = recv(&inbox).await {
        let mut first = Some(first);
        futures_lite::future::poll_fn(|cx| {
            if let Some(first) = first.take() {
                first.run(cx);
            }
            for next in inbox.try_iter() {
                next.run(cx);
            }
            Poll::Ready(())
        })
        .await;
    }
}

/// Polls `try_take` for the shard's spin window (yielding to the shard's
/// other tasks between tries); `None` once the window has run out, or off a
/// shard, where there is nothing to yield to.
async fn spin<T>(mut try_take: impl FnMut() -> Option<T>) -> Option<T> {
    let window = crate::shard::config().map_or(Duration::ZERO, |c| c.spin());
    if window.is_zero() {
        return None;
    }
    let start = Instant::now();
    loop {
        if let Some(value) = try_take() {
            return Some(value);
        }
        if start.elapsed() >= window {
            return None;
        }
        glommio::executor().yield_task_queue_now().await;
    }
}

/// Receives from an inbox: polls for the spin window, then parks on the waker.
pub(crate) async fn recv<T>(rx: &flume::Receiver<T>) -> Result<T, flume::RecvError> {
    let polled = spin(|| match rx.try_recv() {
        Ok(value) => Some(Ok(value)),
        Err(flume::TryRecvError::Disconnected) => Some(Err(flume::RecvError::Disconnected)),
        Err(flume::TryRecvError::Empty) => None,
    })
    .await;
    match polled {
        Some(result) => result,
        None => rx.recv_async().await,
    }
}

/// Waits for a reply: polls for the spin window, then parks on the waker.
/// `None` when the sender was dropped (the work never ran, or its shard ended).
pub(crate) async fn reply<T>(rx: oneshot::Receiver<T>) -> Option<T> {
    let polled = spin(|| match rx.try_recv() {
        Ok(value) => Some(Some(value)),
        Err(oneshot::TryRecvError::Disconnected) => Some(None),
        Err(oneshot::TryRecvError::Empty) => None,
    })
    .await;
    match polled {
        Some(result) => result,
        None => rx.await.ok(),
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
