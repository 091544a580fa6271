//! Green threads: [`spawn`], [`spawn_n`] and the [`GreenThread`] handle.
//!
//! A green thread is a glommio task on the current shard, run inside the
//! [`Guarded`] wrapper so that its panic is a value. `spawn` returns a handle
//! to await; `spawn_n` returns nothing and logs a panic through `tracing`
//! (target `shardlet::task`), since nobody is there to receive it.
//!
//! Dropping a [`GreenThread`] detaches the task: it runs on to completion
//! (Eventlet's behaviour). Use [`GreenThread::cancel`] to stop it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use glommio::task::JoinHandle;

use crate::task::error::JoinError;
use crate::task::guard::{Finish, Guarded, Isolated, Keep, Landed};

/// Handle to a spawned green thread; await it (or [`join`](GreenThread::join))
/// for the task's result.
///
/// # Examples
///
/// ```
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let answer = shardlet::spawn(async { 6 * 7 });
/// assert_eq!(answer.await, Ok(42));
///
/// let boom = shardlet::spawn(async { panic!("boom") });
/// assert!(boom.await.unwrap_err().is_panic());
/// # }).unwrap();
/// ```
#[must_use = "dropping a GreenThread detaches the task; use spawn_n for fire-and-forget"]
pub struct GreenThread<T> {
    state: State<T>,
}

enum State<T> {
    Running(JoinHandle<Landed<T>>),
    Done(Option<Result<T, JoinError>>),
}

impl<T> GreenThread<T> {
    /// A handle whose result is already known (a task run inline by a pool).
    pub(crate) fn ready(result: Result<T, JoinError>) -> Self {
        GreenThread {
            state: State::Done(Some(result)),
        }
    }

    /// Waits for the task and returns its result. Same as awaiting the handle.
    pub async fn join(self) -> Result<T, JoinError> {
        self.await
    }

    /// Cancels the task: it is dropped at its next scheduling point (its
    /// destructors run, a pool slot it holds is freed). Awaiting the handle
    /// afterwards gives [`JoinError`] (cancelled), unless it had already finished.
    ///
    /// glommio may run a new task's first step right away, inside `spawn`, so
    /// a cancel issued just after `spawn` can come after the task's code up to
    /// its first `.await` has run.
    pub fn cancel(&self) {
        if let State::Running(handle) = &self.state {
            handle.cancel();
        }
    }
}

// The result is never pinned, and glommio's handle is `Unpin`.
impl<T> Unpin for GreenThread<T> {}

impl<T> Future for GreenThread<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Running(handle) => Pin::new(handle).poll(cx).map(|out| match out {
                Some(landed) => landed.take(),
                None => Err(JoinError::CANCELLED),
            }),
            State::Done(result) => Poll::Ready(result.take().expect("GreenThread polled after completion")),
        }
    }
}

impl<T> fmt::Debug for GreenThread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Running(_) => "running",
            State::Done(_) => "done",
        };
        f.debug_struct("GreenThread").field("state", &state).finish()
    }
}

/// Starts `fut` as a green thread on the current shard and returns its handle.
///
/// A panic inside `fut` is caught: the handle yields [`JoinError`] (a panic)
/// and the shard keeps running.
///
/// # Panics
///
/// When called outside a glommio executor (a shard).
///
/// # Examples
///
/// ```
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let t = shardlet::spawn(async { "hello" });
/// assert_eq!(t.join().await.unwrap(), "hello");
/// # }).unwrap();
/// ```
#[inline]
pub fn spawn<F>(fut: F) -> GreenThread<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    spawn_in(fut, None, ())
}

/// Spawns `fut` as a member of `pool`, holding `held` (its slot) until it ends.
#[inline]
pub(crate) fn spawn_in<F, H: 'static>(fut: F, pool: Option<u64>, held: H) -> GreenThread<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    GreenThread {
        state: State::Running(start::<F, Keep, H>(fut, pool, held)),
    }
}

/// Runs `fut` to completion inside the caller's task, under the guard, as a
/// member of `pool` (a pool's own task spawning into it while it is full).
pub(crate) async fn run_inline<F: Future>(fut: F, pool: Option<u64>) -> Result<F::Output, JoinError> {
    Isolated::new(fut, pool).await
}

/// How deep tasks may nest on one thread's stack: glommio runs a new task's
/// first step inside `spawn`, and a pool runs work inline (see
/// [`GreenPool`](crate::GreenPool)), so a chain of tasks that each spawn the
/// next at once would otherwise grow the stack until the process aborts.
/// Past this depth a new task is queued instead, and inline work is
/// spawned; the stack unwinds and the chain goes on.
pub(crate) const MAX_DEPTH: u32 = 64;

/// Whether new work should be queued rather than run on this stack.
#[inline]
pub(crate) fn too_deep() -> bool {
    crate::task::guard::depth() >= MAX_DEPTH
}

/// Spawns `fut` as a guarded task on the current shard, its result
/// mapped by `K`: its first step runs right away (glommio's way), unless
/// the stack is already [`MAX_DEPTH`] tasks deep.
#[inline]
fn start<F, K, H: 'static>(fut: F, pool: Option<u64>, held: H) -> JoinHandle<K::Output>
where
    F: Future + 'static,
    K: Finish<F::Output> + 'static,
    K::Output: 'static,
{
    // Built once, with the rare deep case out of line: built in each
    // branch, a 0.5 KiB future was copied once more per spawn (1,272 against
    // 1,192 instructions per spawn and join, `scripts/green-instructions.sh`).
    let task = Guarded::<F, K, H>::new(fut, pool, held);
    let task = if too_deep() {
        queued(task)
    } else {
        glommio::spawn_local(task)
    };
    task.detach()
}

/// Spawns `task` into the current task queue, to run when its turn comes
/// (not right away, on this stack).
#[cold]
#[inline(never)]
fn queued<T: Future + 'static>(task: T) -> glommio::Task<T::Output> {
    let queue = glommio::executor().current_task_queue();
    glommio::spawn_local_into(task, queue).expect("the current task queue exists")
}

/// A bare handle on a guarded task, kept only to cancel it: one pointer,
/// where a [`GreenThread`] keeps room for the task's result.
pub(crate) struct TaskHandle(JoinHandle<Landed<()>>);

impl TaskHandle {
    /// Cancels the task (see [`GreenThread::cancel`]).
    pub(crate) fn cancel(&self) {
        self.0.cancel();
    }
}

/// Starts `fut` as a green thread whose only handle cancels it; dropping the
/// handle detaches the task.
pub(crate) fn spawn_cancellable<F>(fut: F) -> TaskHandle
where
    F: Future<Output = ()> + 'static,
{
    TaskHandle(start::<F, Keep, ()>(fut, None, ()))
}

/// Starts `fut` as a green thread and forgets it (Eventlet's `spawn_n`).
///
/// Cheaper than [`spawn`]: there is no result to keep. A panic is caught,
/// counted (see [`shard::panics`](crate::shard::panics)) and logged at `error`
/// level through `tracing`, target `shardlet::task`.
///
/// # Panics
///
/// When called outside a glommio executor (a shard).
///
/// # Examples
///
/// ```
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let (tx, rx) = flume::bounded(1);
/// shardlet::spawn_n(async move { tx.send_async(1).await.unwrap() });
/// assert_eq!(rx.recv_async().await.unwrap(), 1);
/// # }).unwrap();
/// ```
#[inline]
pub fn spawn_n<F>(fut: F)
where
    F: Future<Output = ()> + 'static,
{
    spawn_n_in(fut, None, ())
}

/// [`spawn_n`] as a member of `pool`, holding `held` (its slot) until it ends.
#[inline]
pub(crate) fn spawn_n_in<F, H: 'static>(fut: F, pool: Option<u64>, held: H)
where
    F: Future<Output = ()> + 'static,
{
    start::<F, Logged, H>(fut, pool, held);
}

/// A task nobody waits for: its panic is logged.
enum Logged {}

impl Finish<()> for Logged {
    type Output = ();

    #[inline]
    fn finish(result: Result<(), JoinError>) {
        log_panic(result)
    }
}

/// Logs the panic of a task nobody waits for (a cancel is no news).
#[inline]
pub(crate) fn log_panic(result: Result<(), JoinError>) {
    if let Err(err) = result {
        log_error(err);
    }
}

#[cold]
#[inline(never)]
fn log_error(err: JoinError) {
    if err.is_panic() {
        tracing::error!(target: "shardlet::task", shard = crate::config::current::try_id(), "{err}");
    }
}
