//! What travels between shards: [`Envelope`]s holding a [`Job`] (a closure
//! to run there, or a wake-up), and the [`Reply`] a caller waits on.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use super::error::MeshError;
use crate::sync::answer::AnswerSlot;
use crate::task::guard::{self, Isolated};
use crate::task::{self, JoinError};

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
    /// Whether the job is a user's message (counted in
    /// [`Mesh::dropped`](super::Mesh::dropped) when dropped unrun), not the
    /// mesh's own traffic (a wake-up).
    fn is_user(&self) -> bool {
        true
    }
}

pub(super) fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Polls a job's future once with `cx`; spawns it as a green thread if it
/// has to wait (glommio polls it again at once, with the task's own waker).
///
/// The first poll runs inside the shard's inbox loop, one task for every
/// message, so it runs under a guard of its own, as a task's poll does: the
/// job's own guard covers only the user's future, not what runs around it
/// (waking the caller, whose waker may panic; dropping an answer nobody
/// waits for, whose drop may panic). Such a panic is caught, counted and
/// logged, and the loop serves on.
fn start<Fut: Future<Output = ()> + 'static>(fut: Fut, cx: &mut Context<'_>) {
    let mut job = Box::pin(fut);
    match guard::guard_sync(|| job.as_mut().poll(cx)) {
        Ok(Poll::Ready(())) => {}
        Ok(Poll::Pending) => task::spawn_n(job),
        Err(err) => failed(job, &err),
    }
}

/// A job's first poll panicked: logs it and drops the job (under the guard too).
#[cold]
fn failed<Fut>(job: Pin<Box<Fut>>, err: &JoinError) {
    let shard = crate::config::current::try_id();
    tracing::error!(target: "shardlet::mesh", shard, "running a cross-shard message: {err}");
    if let Err(err) = guard::guard_sync(|| drop(job)) {
        tracing::error!(target: "shardlet::mesh", shard, "dropping a cross-shard message: {err}");
    }
}

/// Counts a `spawn_on` job that ended unfinished (cancelled with its shard).
struct CountIfCut {
    finished: bool,
}

impl Drop for CountIfCut {
    fn drop(&mut self) {
        if !self.finished {
            super::count_cancelled();
        }
    }
}

/// `spawn_on`: run the closure's future, report a panic, answer no one.
pub(super) struct SpawnJob<F>(pub(super) Mutex<Option<F>>);

impl<F, Fut> Job for SpawnJob<F>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn run(self: Arc<Self>, cx: &mut Context<'_>) {
        let Some(f) = take(&self.0) else { return };
        // Call `f` inside the guard, so a panic in it is caught like any other.
        let job = Isolated::new(async move { f().await }, None);
        start(
            async move {
                let mut cut = CountIfCut { finished: false };
                let result = job.await;
                cut.finished = true;
                task::log_panic(result);
            },
            cx,
        );
    }

    fn abandon(&self) {}

    fn take_closure(&self) -> Option<Box<dyn Any + Send>> {
        take(&self.0).map(|f| Box::new(f) as Box<dyn Any + Send>)
    }
}

/// `submit_to` and friends: the closure and its answer in one allocation.
///
/// The answer comes first, next to the `Arc`'s counts: the caller polls it
/// while it spins, and the target writes it once at the end, in one burst.
/// Nothing here is over-aligned: 64-byte alignment sends every call
/// through glibc's `memalign` path, which costs more than it saves.
#[repr(C)]
pub(super) struct Call<F, T> {
    answer: AnswerSlot<Result<T, JoinError>>,
    f: Mutex<Option<F>>,
}

impl<F, T> Call<F, T> {
    pub(super) fn new(f: F) -> Self {
        Call {
            answer: AnswerSlot::new(),
            f: Mutex::new(Some(f)),
        }
    }

    fn fill(&self, result: Result<T, JoinError>) {
        // Only the end of the shard cancels a call's future: its result is lost with it.
        if matches!(&result, Err(e) if e.is_cancelled()) {
            return self.answer.abandon();
        }
        self.answer.fill(result);
    }
}

/// Gives up the answer should the call's future be dropped unfinished.
struct Abandon<F, T>(Arc<Call<F, T>>);

impl<F, T> Drop for Abandon<F, T> {
    fn drop(&mut self) {
        self.0.answer.abandon();
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
        let job = Isolated::new(async move { f().await }, None);
        start(
            async move {
                let result = job.await;
                call.0.fill(result);
            },
            cx,
        );
    }

    /// Dropped unrun: the closure (with what it holds, a permit say) is
    /// dropped here, where the envelope is (by the shard as it closes,
    /// under its panic guard; by the sender when it could not be sent), not
    /// later by the caller with its `Reply`, which shares this allocation.
    /// The caller is told after, even if that drop panics.
    fn abandon(&self) {
        let _tell = Tell(&self.answer);
        drop(take(&self.f));
    }

    fn take_closure(&self) -> Option<Box<dyn Any + Send>> {
        take(&self.f).map(|f| Box::new(f) as Box<dyn Any + Send>)
    }
}

/// Gives up `answer` when dropped (also when a panic unwinds).
struct Tell<'a, T>(&'a AnswerSlot<T>);

impl<T> Drop for Tell<'_, T> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// The caller's view of a call, whatever the closure's type.
trait Answers<T>: Send + Sync {
    fn slot(&self) -> &AnswerSlot<Result<T, JoinError>>;
}

impl<F: Send, T: Send> Answers<T> for Call<F, T> {
    fn slot(&self) -> &AnswerSlot<Result<T, JoinError>> {
        &self.answer
    }
}

/// The answer to a call sent to `shard`: a future of its result.
pub(crate) struct Reply<T> {
    shard: usize,
    call: Arc<dyn Answers<T>>,
}

impl<T: Send + 'static> Reply<T> {
    pub(super) fn new<F: Send + 'static>(shard: usize, call: Arc<Call<F, T>>) -> Self {
        Reply { shard, call }
    }
}

impl<T> Reply<T> {
    /// Waits for the answer: polls for the shard's spin window, then parks.
    pub(crate) async fn wait(self) -> Result<T, MeshError> {
        let slot = self.call.slot();
        match super::inbox::spin(|| slot.try_take()).await {
            Some(result) => finish(self.shard, result),
            None => self.await,
        }
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = self.call.slot();
        if let Some(result) = slot.try_take() {
            return Poll::Ready(finish(self.shard, result));
        }
        slot.park(cx.waker());
        match slot.try_take() {
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

/// A message in a lane or mailbox. Dropped unrun, it tells its caller.
pub(crate) struct Envelope(Option<Arc<dyn Job>>);

impl Envelope {
    pub(super) fn new(job: Arc<dyn Job>) -> Self {
        Envelope(Some(job))
    }

    pub(super) fn run(mut self, cx: &mut Context<'_>) {
        if let Some(job) = self.0.take() {
            job.run(cx);
        }
    }

    /// Whether this is a user's message (see [`Job::is_user`]).
    pub(super) fn is_user(&self) -> bool {
        self.0.as_ref().is_some_and(|job| job.is_user())
    }

    /// Gives the closure back from an envelope that was not sent.
    pub(super) fn into_closure<F: 'static>(mut self) -> F {
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
