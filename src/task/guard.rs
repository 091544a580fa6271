//! The wrapper every shardlet task runs inside.
//!
//! [`Guarded`] polls a future under `catch_unwind`, so a panicking task ends
//! as a [`JoinError`] (a panic) value instead of unwinding through glommio's
//! run loop (which would take the whole shard down). While it polls, it also
//! records which [`GreenPool`](crate::GreenPool) the task belongs to, so a
//! pool can tell that a spawn comes from one of its own tasks.
//!
//! **Ending a shard.** glommio drops the tasks left in its queues when an
//! executor ends, but not a task that is waiting (on a timer, on I/O): that
//! one leaks, with its sockets, permits and reply channels. So every guarded
//! task that returns `Pending` keeps its waker in this thread's registry,
//! and [`end_tasks`] (run by the runtime while the executor still runs) marks
//! the shard as ending and wakes them all: each then completes at once as
//! [`JoinError`] (cancelled), and its future is dropped normally. A task that
//! finishes on its first poll never touches the registry.
//!
//! Panics inside guarded tasks are reported by the process-wide panic hook
//! (`hook.rs`), which also remembers their location for the `JoinError`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

use crate::sync::wakers::{WakerKey, WakerSet};
use crate::task::error::JoinError;
use crate::task::hook::{self, panic_message};

/// What a guarded poll reads and writes on every poll, in one
/// thread-local (one address to compute; no lazy initialisation: nothing
/// here needs dropping).
struct Here {
    /// How many guarded polls are on this thread's stack (see [`depth`]).
    depth: Cell<u32>,
    /// The pool whose task is being polled right now.
    pool: Cell<Option<NonZeroU64>>,
    /// Set by [`end_tasks`]: every guarded task ends at its next poll.
    ending: Cell<bool>,
}

thread_local! {
    static HERE: Here = const {
        Here {
            depth: Cell::new(0),
            pool: Cell::new(None),
            ending: Cell::new(false),
        }
    };
    /// Wakers of the guarded tasks that are waiting, by slot.
    static WAITING: RefCell<WakerSet> = const { RefCell::new(WakerSet::new()) };
}

/// Ends every guarded task still alive on this thread: wakes them so that
/// each completes as cancelled while the executor still runs (see the module
/// docs), and waits until they are gone.
pub(crate) async fn end_tasks() {
    HERE.with(|h| h.ending.set(true));
    for _ in 0..1000 {
        let wakers = WAITING.with(|w| w.borrow_mut().take_all());
        crate::sync::wakers::wake_all(wakers);
        if WAITING.with(|w| w.borrow().len()) == 0 {
            break;
        }
        glommio::executor().yield_task_queue_now().await;
    }
    let left = WAITING.with(|w| w.borrow().len());
    if left > 0 {
        tracing::warn!(target: "shardlet::runtime", left, "tasks still alive as the shard ends");
    }
    HERE.with(|h| h.ending.set(false));
}

pin_project_lite::pin_project! {
    /// A future that cannot unwind, polled as a member of its pool: a panic
    /// becomes `Err(JoinError)` (a panic).
    ///
    /// The inner future is also *dropped* under the guard, on every path:
    /// as soon as it finishes or panics (inside the poll's own guard), or
    /// when it is cancelled (at shard end, through its handle or by glommio,
    /// dropped inside a stream). A destructor that panics is caught, counted
    /// and logged, instead of unwinding into glommio, which would abort the
    /// process. Once done it can be [`refill`](Isolated::refill)ed in place.
    pub(crate) struct Isolated<F> {
        #[pin]
        fut: Option<F>,
        pool: Option<NonZeroU64>,
    }

    impl<F> PinnedDrop for Isolated<F> {
        fn drop(this: Pin<&mut Self>) {
            this.cancel();
        }
    }
}

impl<F> Isolated<F> {
    /// Isolates `fut`; `pool` marks it as a member of that pool while it runs.
    #[inline]
    pub(crate) fn new(fut: F, pool: Option<u64>) -> Self {
        install_hook();
        Isolated {
            fut: Some(fut),
            pool: pool.and_then(NonZeroU64::new),
        }
    }

    /// Drops the future now, under the guard (a no-op once it is done).
    pub(crate) fn cancel(self: Pin<&mut Self>) {
        let this = self.project();
        if this.fut.is_some() {
            drop_inner(this.fut, *this.pool);
        }
    }

    /// Puts a new future in a finished one's place (no allocation).
    pub(crate) fn refill(self: Pin<&mut Self>, fut: F) {
        let mut this = self.project();
        debug_assert!(this.fut.is_none(), "refilled while still running");
        this.fut.set(Some(fut));
    }
}

/// Drops a guarded future in place, under the guard (see [`Isolated`]).
#[cold]
fn drop_inner<F>(mut fut: Pin<&mut Option<F>>, pool: Option<NonZeroU64>) {
    drop_caught(pool, "a task", || fut.set(None));
}

/// Runs `drop` (a destructor) under the guard, as a member of `pool`: its
/// panic is caught, counted and logged as one while dropping `what`.
fn drop_caught(pool: Option<NonZeroU64>, what: &str, drop: impl FnOnce()) {
    let _enter = Enter::new(pool, false);
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(drop)) {
        let err = caught(&*payload);
        tracing::error!(target: "shardlet::task", shard = crate::config::current::try_id(), "while dropping {what}: {err}");
    }
}

impl<F: Future> Isolated<F> {
    /// Polls under the guard, as [`Future::poll`] does; when
    /// `unless_ending` is set and the shard is ending its tasks, drops the
    /// future instead and ends as [`JoinError`] (cancelled).
    #[inline]
    fn poll_guarded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        unless_ending: bool,
    ) -> Poll<Result<F::Output, JoinError>> {
        let mut this = self.project();
        let Some(enter) = Enter::new(*this.pool, unless_ending) else {
            drop_inner(this.fut, *this.pool);
            return Poll::Ready(Err(JoinError::CANCELLED));
        };
        // Times polls made by the executor itself (metrics: busy, stalls).
        let timed = if enter.outer {
            crate::task::counters::poll_starts()
        } else {
            None
        };
        let mut fut = this.fut.as_mut();
        // The future is dropped as soon as it is done, inside this guard.
        let polled = panic::catch_unwind(AssertUnwindSafe(|| {
            let inner = fut.as_mut().as_pin_mut()?;
            let out = inner.poll(cx);
            if out.is_ready() {
                fut.set(None);
            }
            Some(out)
        }));
        drop(enter);
        crate::task::counters::poll_ends(timed);
        match polled {
            Ok(Some(Poll::Ready(value))) => Poll::Ready(Ok(value)),
            Ok(Some(Poll::Pending)) => Poll::Pending,
            // Polled after it finished (or was cancelled).
            Ok(None) => Poll::Ready(Err(JoinError::CANCELLED)),
            Err(payload) => {
                let err = caught(&*payload);
                drop_inner(this.fut, *this.pool);
                Poll::Ready(Err(err))
            }
        }
    }
}

impl<F: Future> Future for Isolated<F> {
    type Output = Result<F::Output, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_guarded(cx, false)
    }
}

/// How a task's result is handed to glommio when the task ends: as it is
/// ([`Keep`], a [`GreenThread`]'s task), or mapped (a log line for a task
/// nobody waits for). A type parameter rather
/// than a wrapper future around [`Guarded`], so that a task is one future:
/// built, moved into glommio's allocation and dropped once.
///
/// [`GreenThread`]: crate::GreenThread
pub(crate) trait Finish<T> {
    type Output;
    fn finish(result: Result<T, JoinError>) -> Self::Output;
}

/// The result as it is, in a [`Landed`]: glommio drops the result of a
/// task whose handle is gone itself, outside any guard.
pub(crate) enum Keep {}

impl<T> Finish<T> for Keep {
    type Output = Landed<T>;

    #[inline]
    fn finish(result: Result<T, JoinError>) -> Self::Output {
        Landed(Some(result))
    }
}

/// A task's result, waiting for its handle: dropped unclaimed (the handle
/// was dropped, the task detached), it is dropped under the guard, so a
/// result whose destructor panics does not unwind through glommio's run
/// loop and end the shard.
pub(crate) struct Landed<T>(Option<Result<T, JoinError>>);

impl<T> Landed<T> {
    /// The result, for its handle.
    #[inline]
    pub(crate) fn take(mut self) -> Result<T, JoinError> {
        self.0.take().expect("a landed result is taken once")
    }
}

impl<T> Drop for Landed<T> {
    #[inline]
    fn drop(&mut self) {
        if let Some(result) = self.0.take() {
            drop_guarded(result);
        }
    }
}

/// Drops `value` under the guard: a destructor that panics is caught,
/// counted and logged, instead of unwinding into whoever drops it (glommio's
/// run loop, a crew's driver). For values nobody claimed: a detached task's
/// result, the results of a dropped pile or `imap`.
#[inline]
pub(crate) fn drop_guarded<T>(value: T) {
    if std::mem::needs_drop::<T>() {
        drop_unclaimed(value);
    }
}

#[cold]
#[inline(never)]
fn drop_unclaimed<T>(value: T) {
    install_hook();
    drop_caught(None, "a result nobody took", || drop(value));
}

pin_project_lite::pin_project! {
    /// A shardlet task's future: [`Isolated`], counted in the shard's
    /// counters (spawned when made, ended when dropped: finished, cancelled
    /// or dropped with its shard), and ended (as cancelled) at the shard's
    /// end by [`end_tasks`], which finds it in the registry of waiting tasks
    /// while it waits. `K` maps its result (see [`Finish`]).
    ///
    /// Invariant: a `Guarded` is the whole future of one glommio task (see
    /// `task::start`), so every poll comes with that task's waker and the
    /// registry entry made at its first wait stays right. Work run inside
    /// another task (inline in a pool, a stream's calls, a handler inside
    /// its connection's task, the shard's entry) is [`Isolated`] instead:
    /// its task's own `Guarded` ends it with the task.
    pub(crate) struct Guarded<F, K, H> {
        #[pin]
        inner: Isolated<F>,
        // This task's slot in the registry of waiting tasks, once it has waited.
        slot: Option<WakerKey>,
        // Held while the task lives (a pool task's slot): glommio drops a
        // task's future as soon as it is done, before its result is handed
        // on. Dropped outside the guard, inside glommio's `abort_on_panic`:
        // its `Drop` must not unwind (a slot's `Permit` does not).
        held: H,
        finish: PhantomData<fn() -> K>,
    }

    // A thread that counted the spawn counts the end (its counters are set
    // before its first task and never unset); any other thread neither.
    impl<F, K, H> PinnedDrop for Guarded<F, K, H> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(slot) = *this.slot {
                let _ = WAITING.try_with(|w| w.borrow_mut().remove(slot));
            }
            crate::task::counters::task_ended();
        }
    }
}

impl<F: Future, K, H> Guarded<F, K, H> {
    /// Guards `fut`; `pool` marks it as a member of that pool while it runs,
    /// and the task holds `held` until it ends. Counts a task spawned on this shard.
    #[inline]
    pub(crate) fn new(fut: F, pool: Option<u64>, held: H) -> Self {
        install_hook();
        crate::task::counters::task_spawned();
        // Built in one piece, after the calls above, rather than through
        // `Isolated::new`: the future is moved once (through `Isolated::new`
        // spawn_n measured 609 instructions instead of 590).
        Guarded {
            inner: Isolated {
                fut: Some(fut),
                pool: pool.and_then(NonZeroU64::new),
            },
            slot: None,
            held,
            finish: PhantomData,
        }
    }
}

impl<F: Future, K: Finish<F::Output>, H> Future for Guarded<F, K, H> {
    type Output = K::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = this.inner.poll_guarded(cx, true);
        match polled {
            Poll::Ready(result) => Poll::Ready(K::finish(result)),
            Poll::Pending => {
                // A `Guarded` is the whole future of one glommio task, always
                // polled with that task's waker: registered once, it stays right.
                if this.slot.is_none() {
                    WAITING.with(|w| w.borrow_mut().register(this.slot, cx.waker()));
                }
                Poll::Pending
            }
        }
    }
}

/// Runs a blocking closure with the same guard: its panic becomes a value.
pub(crate) fn guard_sync<R>(f: impl FnOnce() -> R) -> Result<R, JoinError> {
    install_hook();
    let _enter = Enter::new(None, false);
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| caught(&*payload))
}

#[cold]
fn caught(payload: &(dyn Any + Send)) -> JoinError {
    crate::sync::count_panic();
    JoinError::panicked(panic_message(payload), hook::take_location())
}

/// Marks the thread as inside a guarded poll; restores on drop (even while unwinding).
/// A task outside any pool (`pool: None`) is no member of the pool whose
/// task spawned it, so the current pool is set either way.
struct Enter {
    prev_pool: Option<NonZeroU64>,
    /// No guarded poll was on the stack: the executor itself polls.
    outer: bool,
}

impl Enter {
    /// Enters, unless `unless_ending` is set and the shard is ending its
    /// tasks (one look at the thread-local for all of it).
    #[inline]
    fn new(pool: Option<NonZeroU64>, unless_ending: bool) -> Option<Self> {
        HERE.with(|h| {
            if unless_ending && h.ending.get() {
                return None;
            }
            let depth = h.depth.get();
            h.depth.set(depth + 1);
            Some(Enter {
                prev_pool: h.pool.replace(pool),
                outer: depth == 0,
            })
        })
    }
}

impl Drop for Enter {
    #[inline]
    fn drop(&mut self) {
        HERE.with(|h| {
            h.depth.set(h.depth.get() - 1);
            h.pool.set(self.prev_pool);
        });
    }
}

/// How many guarded polls are on this thread's stack right now: a task
/// polled inside another one's poll (glommio runs a new task's first step
/// inside `spawn`; a pool runs work inline) adds one.
#[inline]
pub(crate) fn depth() -> u32 {
    HERE.with(|h| h.depth.get())
}

/// The pool of the task being polled on this thread, if it runs in one.
#[inline]
pub(crate) fn current_pool() -> Option<u64> {
    HERE.with(|h| h.pool.get()).map(NonZeroU64::get)
}

/// Panics caught in shardlet tasks on this thread so far.
pub(crate) fn panics() -> u64 {
    crate::sync::panics()
}

/// Installs the process-wide panic hook (`hook.rs`), once.
#[inline]
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(reinstall_hook);
}

/// Installs the panic hook around the current one, unless that is
/// shardlet's already (each `Runtime::new` calls it, to wrap a hook the
/// host set meanwhile).
pub(crate) fn reinstall_hook() {
    hook::install(depth);
}
