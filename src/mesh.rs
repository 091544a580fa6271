//! The cross-shard channel layer: shard-to-shard lanes, plus one bounded
//! [`flume`] mailbox per shard for everyone else.
//!
//! Contract between shards: a shard never touches another shard's state; it
//! sends a `Send` closure to the other shard, and that shard calls the
//! closure *there*, running the future it returns as a local green thread.
//! So the closure must be `Send`, the future it makes need not be.
//!
//! - Two ways in, both bounded. A message from a shard of the runtime goes
//!   down that shard's own lane to the target (`lanes.rs`: a wait-free ring
//!   per pair of shards, Seastar's layout, `SHARDLET_MAILBOX / shards`
//!   messages each). A message from any other thread (a host thread holding
//!   [`RuntimeHandle::mesh`](crate::RuntimeHandle::mesh), a blocking job)
//!   goes through the target's mailbox (`mailbox.rs`, `SHARDLET_MAILBOX`
//!   messages). A full lane or mailbox makes async senders wait, and the
//!   `try_` variants hand the closure back. Nothing queues without bound.
//! - Order: messages from one shard to another run in the order they were
//!   sent, and so do messages from one thread through the mailbox.
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
use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use futures_lite::future::poll_fn;

use crate::catch::Guarded;
use crate::lanes::{Inlanes, Lanes, Outlanes};
use crate::mailbox::{MailError, Mailboxes};
use crate::task::{self, JoinError};

/// Default inbox capacity per shard (`SHARDLET_MAILBOX`).
pub const DEFAULT_MAILBOX: usize = 1024;

/// A closure in flight to another shard.
pub(crate) trait Job: Send + Sync {
    /// Starts the job on this shard: its future is polled once right here
    /// (with the inbox task's context) and becomes a task of its own only if
    /// it has to wait, so quick jobs cost no task at all.
    fn run(self: Arc<Self>, cx: &mut Context<'_>);
    /// The job will never run (dropped unrun): tell whoever waits for it.
    fn abandon(&self);
    /// The closure, if the job has not run.
    fn take_closure(&self) -> Option<Box<dyn Any + Send>>;
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Polls a job's future once with `cx`; spawns it as a task if it has to wait.
fn start<Fut: Future<Output = ()> + 'static>(fut: Fut, cx: &mut Context<'_>) {
    let mut job = Box::pin(fut);
    if job.as_mut().poll(cx).is_pending() {
        glommio::spawn_local(job).detach();
    }
}

/// `spawn_on`: run the closure's future, report a panic, answer no one.
struct SpawnJob<F>(Mutex<Option<F>>);

impl<F, Fut> Job for SpawnJob<F>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn run(self: Arc<Self>, cx: &mut Context<'_>) {
        let Some(f) = take(&self.0) else { return };
        // Call `f` inside the guard, so a panic in it is caught like any other.
        // (The guard also ends the job, should it still wait when the shard ends.)
        let job = Guarded::new(async move { f().await }, None);
        start(async move { task::log_panic(job.await) }, cx);
    }

    fn abandon(&self) {}

    fn take_closure(&self) -> Option<Box<dyn Any + Send>> {
        take(&self.0).map(|f| Box::new(f) as Box<dyn Any + Send>)
    }
}

/// `submit_to` and friends: the closure and its answer in one allocation.
///
/// The answer comes first, next to the `Arc`'s counts: the caller polls it
/// while it spins, and the target writes it once at the end, in one burst
/// (value, `state`, then its reference's count). The waker, touched only
/// when a caller parks, comes last. Nothing here is over-aligned: a Call
/// aligned to 64 bytes, to keep the closure and the answer on lines of
/// their own, went through glibc's `memalign` path on every call and cost
/// far more than it saved (`submit_to` p50 0.8 against 0.65 µs, p99 2-6
/// against 1.1 µs, `cargo bench --bench mesh`).
#[repr(C)]
struct Call<F, T> {
    answer: Answer<T>,
    f: Mutex<Option<F>>,
    waker: AtomicWaker,
}

#[repr(C)]
struct Answer<T> {
    state: AtomicU8,
    /// The caller stopped spinning and registered `waker`.
    parked: AtomicBool,
    /// (The error is boxed to keep this small: errors are rare.)
    value: Mutex<Option<Result<T, Box<JoinError>>>>,
}

const WAITING: u8 = 0;
const ANSWERED: u8 = 1;
const GONE: u8 = 2;

impl<F, T> Call<F, T> {
    fn new(f: F) -> Self {
        Call {
            f: Mutex::new(Some(f)),
            answer: Answer {
                state: AtomicU8::new(WAITING),
                parked: AtomicBool::new(false),
                value: Mutex::new(None),
            },
            waker: AtomicWaker::new(),
        }
    }

    fn fill(&self, result: Result<T, JoinError>) {
        // Only the end of the shard cancels a call's future: its result is lost with it.
        if let Err(JoinError::Cancelled) = result {
            return self.abandon();
        }
        *self.answer.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(result.map_err(Box::new));
        self.publish(ANSWERED);
    }

    fn abandon(&self) {
        // A load first: after `fill`, this must not write the line the caller reads.
        if self.answer.state.load(SeqCst) == WAITING {
            self.publish(GONE);
        }
    }

    fn publish(&self, state: u8) {
        self.answer.state.store(state, SeqCst);
        // Pairs with `park`: a caller that parked before this store is woken.
        if self.answer.parked.load(SeqCst) {
            self.waker.wake();
        }
    }
}

/// Gives up the answer should the call's future be dropped unfinished.
struct Abandon<F, T>(Arc<Call<F, T>>);

impl<F, T> Drop for Abandon<F, T> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

impl<F, Fut, T> Job for Call<F, T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    fn run(self: Arc<Self>, cx: &mut Context<'_>) {
        let Some(f) = take(&self.f) else { return };
        let call = Abandon(self);
        let job = Guarded::new(async move { f().await }, None);
        start(
            async move {
                let result = job.await;
                call.0.fill(result);
            },
            cx,
        );
    }

    fn abandon(&self) {
        Call::abandon(self);
    }

    fn take_closure(&self) -> Option<Box<dyn Any + Send>> {
        take(&self.f).map(|f| Box::new(f) as Box<dyn Any + Send>)
    }
}

/// The caller's view of a call, whatever the closure's type.
trait Answers<T>: Send + Sync {
    /// `Some(None)`: the work will never answer.
    fn try_take(&self) -> Option<Option<Result<T, JoinError>>>;
    /// Registers the caller's waker; call `try_take` after it.
    fn park(&self, waker: &Waker);
}

impl<F: Send, T: Send> Answers<T> for Call<F, T> {
    fn try_take(&self) -> Option<Option<Result<T, JoinError>>> {
        match self.answer.state.load(SeqCst) {
            WAITING => None,
            ANSWERED => Some(take(&self.answer.value).map(|r| r.map_err(|e| *e))),
            _ => Some(None),
        }
    }

    fn park(&self, waker: &Waker) {
        self.waker.register(waker);
        self.answer.parked.store(true, SeqCst);
    }
}

/// The answer to a call sent to `shard`: a future of its result.
pub(crate) struct Reply<T> {
    shard: usize,
    call: Arc<dyn Answers<T>>,
}

impl<T> Reply<T> {
    /// Waits for the answer: polls for the shard's spin window, then parks.
    pub(crate) async fn wait(self) -> Result<T, MeshError> {
        let call = &self.call;
        match spin(|| call.try_take()).await {
            Some(result) => finish(self.shard, result),
            None => self.await,
        }
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let call = &self.call;
        if let Some(result) = call.try_take() {
            return Poll::Ready(finish(self.shard, result));
        }
        call.park(cx.waker());
        match call.try_take() {
            Some(result) => Poll::Ready(finish(self.shard, result)),
            None => Poll::Pending,
        }
    }
}

/// What an answer from `shard` means for the caller.
fn finish<T>(shard: usize, answer: Option<Result<T, JoinError>>) -> Result<T, MeshError> {
    match answer {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(MeshError::Task { shard, error }),
        None => Err(MeshError::ShardGone { shard }),
    }
}

/// Where a task lives: a shard of one runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Home {
    mesh: usize,
    shard: usize,
}

impl Home {
    /// The current task's home, or `None` off a shard.
    pub(crate) fn here() -> Option<Home> {
        crate::shard::context().map(|c| Home {
            mesh: c.mesh.id(),
            shard: c.id,
        })
    }
}

/// A wake sent down a lane: run on the woken task's own shard.
struct WakeJob(Mutex<Option<Waker>>);

impl Job for WakeJob {
    fn run(self: Arc<Self>, _cx: &mut Context<'_>) {
        if let Some(waker) = take(&self.0) {
            waker.wake();
        }
    }

    /// Not delivered (a full lane, a shard that ended): wake it directly.
    fn abandon(&self) {
        if let Some(waker) = take(&self.0) {
            waker.wake();
        }
    }

    fn take_closure(&self) -> Option<Box<dyn Any + Send>> {
        None
    }
}

/// Wakes `waker`, whose task lives at `home`.
///
/// From another shard of the same runtime, the wake travels down this
/// shard's lane as a message that the home shard's inbox loop runs at once
/// (a local wake there), instead of glommio's cross-thread wake (an eventfd
/// write that the home shard reads back through io_uring: about 10 µs per
/// wake on this machine, even when both shards are busy). If the lane is
/// full, or from anywhere else, it wakes directly.
pub(crate) fn wake(home: Option<Home>, waker: Waker) {
    if let (Some(home), Some(here)) = (home, crate::shard::context()) {
        if here.mesh.id() == home.mesh && here.id != home.shard {
            let job = Envelope::new(Arc::new(WakeJob(Mutex::new(Some(waker)))));
            // A failed delivery drops the envelope, whose job then wakes directly.
            let _ = here.mesh.try_deliver(home.shard, job);
            return;
        }
    }
    waker.wake();
}

/// A message in a lane or mailbox. Dropped unrun, it tells its caller.
pub(crate) struct Envelope(Option<Arc<dyn Job>>);

impl Envelope {
    fn new(job: Arc<dyn Job>) -> Self {
        Envelope(Some(job))
    }

    fn run(mut self, cx: &mut Context<'_>) {
        if let Some(job) = self.0.take() {
            job.run(cx);
        }
    }

    /// Gives the closure back from an envelope that was not sent.
    fn into_closure<F: 'static>(mut self) -> F {
        let job = self.0.take().expect("an unsent envelope holds its job");
        *job.take_closure()
            .and_then(|any| any.downcast::<F>().ok())
            .expect("envelope holds this closure type, unrun")
    }
}

impl Drop for Envelope {
    fn drop(&mut self) {
        if let Some(job) = self.0.take() {
            job.abandon();
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
    inner: Arc<Inner>,
}

struct Inner {
    inboxes: Mailboxes<Envelope>,
    lanes: Lanes,
    dropped: AtomicU64,
}

/// A shard's sending ends, kept in its thread-local context.
pub(crate) type Outbox = Outlanes<Envelope>;

/// A shard's receiving ends: its lanes from every shard, and its mailbox.
pub(crate) struct Inbox {
    lanes: Inlanes<Envelope>,
    mail: flume::Receiver<Envelope>,
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
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Relaxed)
    }

    /// Messages waiting for `shard` that the caller can see: those sent
    /// from outside the shards, plus, on a shard, that shard's own messages
    /// still in its lane to `shard` (0 for an unknown shard).
    pub fn queued(&self, shard: usize) -> usize {
        let own = crate::shard::with_outbox(&self.inner.lanes, |out| out.queued(shard)).unwrap_or(0);
        self.inner.inboxes.queued(shard) + own
    }

    /// Called by a shard as it ends: no message stays behind for it.
    pub(crate) fn close(&self, shard: usize, inbox: &RefCell<Inbox>) {
        let mut inbox = inbox.borrow_mut();
        // Dropping an unrun message tells a `submit_to` caller: ShardGone.
        let dropped = inbox.lanes.close() + self.inner.inboxes.close(shard, &inbox.mail);
        if dropped > 0 {
            self.inner.dropped.fetch_add(dropped as u64, Relaxed);
            tracing::warn!(
                target: "shardlet::mesh",
                shard,
                dropped,
                "cross-shard messages dropped unrun: their shard has stopped"
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

    /// Tries this shard's lane to `shard`; `Err` gives the envelope back
    /// when the caller is not a shard of this runtime (no lane of its own).
    fn try_lane(
        &self,
        shard: usize,
        envelope: Envelope,
    ) -> Result<Result<(), MailError<Envelope>>, Envelope> {
        let mut held = Some(envelope);
        match crate::shard::with_outbox(&self.inner.lanes, |out| {
            out.try_send(shard, held.take().expect("once"))
        }) {
            Some(sent) => Ok(sent),
            None => Err(held.expect("not taken off a shard")),
        }
    }

    /// Delivers without waiting: down this shard's lane on a shard of the
    /// runtime, through the mailbox anywhere else.
    fn try_deliver(&self, shard: usize, envelope: Envelope) -> Result<(), MailError<Envelope>> {
        match self.try_lane(shard, envelope) {
            Ok(sent) => sent,
            Err(envelope) => self.inner.inboxes.try_send(shard, envelope),
        }
    }

    /// Delivers, waiting while the lane or mailbox is full.
    async fn deliver(&self, shard: usize, mut envelope: Envelope) -> Result<(), MeshError> {
        loop {
            envelope = match self.try_lane(shard, envelope) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(MailError::Full(back))) => back,
                Ok(Err(err)) => return Err(self.error(shard, err)),
                // Not on a shard: the mailbox waits for room itself.
                Err(envelope) => {
                    return self
                        .inner
                        .inboxes
                        .send(shard, envelope)
                        .await
                        .map_err(|e| self.error(shard, e))
                }
            };
            poll_fn(|cx| {
                crate::shard::with_outbox(&self.inner.lanes, |out| out.poll_room(shard, cx))
                    .unwrap_or(Poll::Ready(()))
            })
            .await;
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
            MailError::Full(e) => TrySpawnError::Full(e.into_closure()),
            MailError::Closed(e) => TrySpawnError::Gone(e.into_closure()),
            MailError::NoSuchShard(e) => TrySpawnError::NoSuchShard(e.into_closure()),
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
        Ok(Reply { shard, call })
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

/// How many times a spinning shard looks at its lanes in a tight loop
/// before it yields to its other tasks (divided over the lanes): about half
/// a microsecond with 2 shards here. A message that lands meanwhile is
/// taken within nanoseconds instead of after a trip through the executor's
/// loop (`submit_to` p50 0.65 -> 0.52 µs); other tasks on a spinning shard
/// wait at most that long for their turn.
const LOOKS_PER_ROUND: usize = 512;

/// How often (in polling rounds) a busy or spinning shard looks at its mailbox.
const MAIL_EVERY: u32 = 8;

/// A shard's inbox loop: runs every message, all queued ones per wake-up,
/// keeps looking for `SHARDLET_SPIN_US` after the last one, then parks.
pub(crate) async fn drain(inbox: Rc<RefCell<Inbox>>) {
    let window = crate::shard::with_config(|c| c.spin()).unwrap_or_default();
    let mail = inbox.borrow().mail.clone();
    let mut woken_by: Option<Envelope> = None;
    let mut idle = Idle::new(window);
    let mut round = 0u32;
    loop {
        // The mailbox (other threads: the slow path, and a lock to look at
        // it) every few rounds; the lanes every round. (The inbox is
        // borrowed only inside each poll, never across a wait.)
        round = round.wrapping_add(1);
        let with_mail = round % MAIL_EVERY == 0;
        let ran = poll_fn(|cx| {
            let mut ran = 0;
            if let Some(first) = woken_by.take() {
                first.run(cx);
                ran += 1;
            }
            ran += inbox.borrow_mut().lanes.drain(|envelope| envelope.run(cx));
            if with_mail {
                for envelope in mail.try_iter() {
                    envelope.run(cx);
                    ran += 1;
                }
            }
            Poll::Ready(ran)
        })
        .await;
        if ran > 0 {
            idle = Idle::new(window);
        } else if !window.is_zero() && inbox.borrow().lanes.look(LOOKS_PER_ROUND) {
            // Something landed while we looked: take it without a trip
            // through the executor's loop.
            continue;
        } else if with_mail && idle.over() {
            let woke = futures_lite::future::or(async { mail.recv_async().await.map(Some) }, async {
                poll_fn(|cx| inbox.borrow().lanes.poll_park(cx)).await;
                Ok(None)
            })
            .await;
            inbox.borrow().lanes.unpark();
            match woke {
                Ok(first) => woken_by = first,
                Err(flume::RecvError::Disconnected) => return,
            }
            idle = Idle::new(window);
            continue;
        }
        glommio::executor().yield_task_queue_now().await;
    }
}

/// A spin window that reads the clock only every [`Idle::CHECK_EVERY`]
/// polls, so that looking at the clock does not slow the polling down.
struct Idle {
    window: Duration,
    polls: u32,
    since: Option<Instant>,
}

impl Idle {
    const CHECK_EVERY: u32 = 32;

    fn new(window: Duration) -> Self {
        Idle {
            window,
            polls: 0,
            since: None,
        }
    }

    /// Counts one fruitless poll; true once the window has run out.
    fn over(&mut self) -> bool {
        if self.window.is_zero() {
            return true;
        }
        self.polls += 1;
        if self.polls % Self::CHECK_EVERY != 0 {
            return false;
        }
        self.since.get_or_insert_with(Instant::now).elapsed() >= self.window
    }
}

/// Polls `try_take` for the shard's spin window (yielding to the shard's
/// other tasks between tries); `None` once the window has run out, or off a
/// shard, where there is nothing to yield to.
async fn spin<T>(mut try_take: impl FnMut() -> Option<T>) -> Option<T> {
    let window = crate::shard::with_config(|c| c.spin())?;
    let mut idle = Idle::new(window);
    loop {
        if let Some(value) = try_take() {
            return Some(value);
        }
        if idle.over() {
            return None;
        }
        glommio::executor().yield_task_queue_now().await;
    }
}

/// The current shard's context, whose mesh the free functions use (an `Rc`
/// clone: no shared counter touched per call).
fn current() -> std::rc::Rc<crate::shard::ShardContext> {
    crate::shard::context().expect("not on a shardlet shard: the cross-shard layer needs a Runtime")
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
