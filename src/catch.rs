//! The wrapper every shardlet task runs inside.
//!
//! [`Guarded`] polls a future under `catch_unwind`, so a panicking task ends
//! as a [`JoinError::Panicked`] value instead of unwinding through glommio's
//! run loop (which would take the whole shard down). While it polls, it also
//! records which [`GreenPool`](crate::GreenPool) the task belongs to, so a
//! pool can tell that a spawn comes from one of its own tasks.
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
use std::task::{Context, Poll};

use crate::task::JoinError;

thread_local! {
    /// How many guarded polls are on this thread's stack (0 or 1 in practice).
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    /// The pool whose task is being polled right now.
    static CURRENT_POOL: Cell<Option<u64>> = const { Cell::new(None) };
    /// Where the last guarded panic happened, set by the hook.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Panics caught on this thread.
    static PANICS: Cell<u64> = const { Cell::new(0) };
}

pin_project_lite::pin_project! {
    /// A future that cannot unwind: a panic becomes `Err(JoinError::Panicked)`.
    pub(crate) struct Guarded<F> {
        #[pin]
        fut: F,
        pool: Option<u64>,
    }
}

impl<F: Future> Guarded<F> {
    /// Guards `fut`; `pool` marks it as a member of that pool while it runs.
    pub(crate) fn new(fut: F, pool: Option<u64>) -> Self {
        install_hook();
        Guarded { fut, pool }
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _enter = Enter::new(*this.pool);
        let fut = this.fut;
        match panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(payload) => Poll::Ready(Err(caught(&*payload))),
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
