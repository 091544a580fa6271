//! The wrapper every shardlet task runs inside.
//!
//! [`Guarded`] polls a future under `catch_unwind`, so a panicking task ends
//! as a [`JoinError::Panicked`] value instead of unwinding through glommio's
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
//! [`JoinError::Cancelled`], and its future is dropped normally. A task that
//! finishes on its first poll never touches the registry.
//!
//! Panics inside guarded tasks are routed to `tracing` instead of the default
//! hook's stderr print: a process-wide panic hook, installed once, stays quiet
//! for them and remembers the location; panics anywhere else go to the hook
//! that was there before.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll, Waker};

use crate::sync::wakers::WakerSet;
use crate::task::JoinError;

thread_local! {
    /// How many guarded polls are on this thread's stack (see [`depth`]).
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    /// The pool whose task is being polled right now.
    static CURRENT_POOL: Cell<Option<u64>> = const { Cell::new(None) };
    /// Where the last guarded panic happened, set by the hook.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Panics caught on this thread.
    static PANICS: Cell<u64> = const { Cell::new(0) };
    /// Wakers of the guarded tasks that are waiting, by slot.
    static WAITING: RefCell<WakerSet> = const { RefCell::new(WakerSet::new()) };
    /// Set by [`end_tasks`]: every guarded task ends at its next poll.
    static ENDING: Cell<bool> = const { Cell::new(false) };
}

/// Ends every guarded task still alive on this thread: wakes them so that
/// each completes as cancelled while the executor still runs (see the module
/// docs), and waits until they are gone.
pub(crate) async fn end_tasks() {
    ENDING.with(|e| e.set(true));
    for _ in 0..1000 {
        let wakers = WAITING.with(|w| w.borrow_mut().take_all());
        wakers.into_iter().for_each(Waker::wake);
        if WAITING.with(|w| w.borrow().len()) == 0 {
            break;
        }
        glommio::executor().yield_task_queue_now().await;
    }
    let left = WAITING.with(|w| w.borrow().len());
    if left > 0 {
        tracing::warn!(target: "shardlet::runtime", left, "tasks still alive as the shard ends");
    }
    ENDING.with(|e| e.set(false));
}

pin_project_lite::pin_project! {
    /// A future that cannot unwind: a panic becomes `Err(JoinError::Panicked)`.
    ///
    /// The inner future is also *dropped* under the guard, on every path
    /// (finished, cancelled at shard end, cancelled through its handle or
    /// by glommio, dropped inside a stream): a destructor that panics is
    /// caught, counted and logged, instead of unwinding into glommio, which
    /// would abort the process.
    pub(crate) struct Guarded<F> {
        #[pin]
        fut: Option<F>,
        pool: Option<u64>,
        // This task's slot in the registry of waiting tasks, once it has waited.
        slot: Option<usize>,
    }

    impl<F> PinnedDrop for Guarded<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(slot) = *this.slot {
                let _ = WAITING.try_with(|w| w.borrow_mut().remove(slot));
            }
            drop_inner(this.fut, *this.pool);
        }
    }
}

/// Drops a guarded future in place, under the guard (see [`Guarded`]).
fn drop_inner<F>(mut fut: Pin<&mut Option<F>>, pool: Option<u64>) {
    if fut.is_none() {
        return;
    }
    let _enter = Enter::new(pool);
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| fut.set(None))) {
        let err = caught(&*payload);
        tracing::error!(target: "shardlet::task", shard = crate::shard::try_id(), "while dropping a task: {err}");
    }
}

impl<F: Future> Guarded<F> {
    /// Guards `fut`; `pool` marks it as a member of that pool while it runs.
    pub(crate) fn new(fut: F, pool: Option<u64>) -> Self {
        install_hook();
        Guarded {
            fut: Some(fut),
            pool,
            slot: None,
        }
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if ENDING.with(|e| e.get()) {
            drop_inner(this.fut, *this.pool);
            return Poll::Ready(Err(JoinError::Cancelled));
        }
        let _enter = Enter::new(*this.pool);
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(JoinError::Cancelled));
        };
        match panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => {
                WAITING.with(|w| w.borrow_mut().register(this.slot, cx.waker()));
                Poll::Pending
            }
            Err(payload) => {
                let err = caught(&*payload);
                // The future is dropped at once (still guarded), as glommio
                // would drop a finished task's.
                drop(_enter);
                drop_inner(this.fut, *this.pool);
                Poll::Ready(Err(err))
            }
        }
    }
}

/// Runs a blocking closure with the same guard: its panic becomes a value.
pub(crate) fn guard_sync<R>(f: impl FnOnce() -> R) -> Result<R, JoinError> {
    install_hook();
    let _enter = Enter::new(None);
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| caught(&*payload))
}

fn caught(payload: &(dyn Any + Send)) -> JoinError {
    PANICS.with(|p| p.set(p.get() + 1));
    JoinError::Panicked {
        message: panic_message(payload),
        location: LOCATION.with(|l| l.borrow_mut().take()),
    }
}

/// Marks the thread as inside a guarded poll; restores on drop (even while unwinding).
/// A task outside any pool (`pool: None`) is no member of the pool whose
/// task spawned it, so the current pool is set either way.
struct Enter {
    prev_pool: Option<u64>,
}

impl Enter {
    fn new(pool: Option<u64>) -> Self {
        GUARDED.with(|g| g.set(g.get() + 1));
        Enter {
            prev_pool: CURRENT_POOL.with(|c| c.replace(pool)),
        }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        GUARDED.with(|g| g.set(g.get() - 1));
        CURRENT_POOL.with(|c| c.set(self.prev_pool));
    }
}

/// How many guarded polls are on this thread's stack right now: a task
/// polled inside another one's poll (glommio runs a new task's first step
/// inside `spawn`; a pool runs work inline) adds one.
pub(crate) fn depth() -> u32 {
    GUARDED.with(|g| g.get())
}

/// The pool of the task being polled on this thread, if it runs in one.
pub(crate) fn current_pool() -> Option<u64> {
    CURRENT_POOL.with(|c| c.get())
}

/// Panics caught in shardlet tasks on this thread so far.
pub(crate) fn panics() -> u64 {
    PANICS.with(|p| p.get())
}

/// The text of a panic payload (`&str` or `String`; anything else is named as such).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.with(|g| g.get()) > 0 {
                let location = info.location().map(|l| l.to_string());
                LOCATION.with(|l| *l.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}
