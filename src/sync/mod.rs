//! The concurrency primitives the layers above are built on, and the seam
//! through which [loom] model-checks them.
//!
//! - [`slots`]: the shard-local counter behind a `GreenPool` (no atomics).
//! - [`answer`]: the slot a cross-shard call's answer comes back in.
//! - [`wakers`]: shard-local wakers kept by key, one per waiter.
//! - [`gate`]: the close protocol shared by lanes and mailboxes: a sender
//!   either sees the gate closed and keeps its value, or the closer drains it.
//! - [`lanes`]: one wait-free ring per pair of shards, with parking and a
//!   FIFO of senders waiting for room.
//! - [`mailbox`]: one bounded `flume` channel per shard, for threads that are
//!   not shards.
//! - [`room`]: where senders to a full mailbox wait for room, outside its
//!   gate, so that a closer never waits on them.
//!
//! # The loom seam
//!
//! Code whose correctness rests on atomics and fences takes its atomics,
//! `Arc`, `Mutex`, `AtomicWaker` and (for the lanes) its ring from here. A
//! normal build gets `std`, the `atomic-waker` crate and `rtrb`; a build with
//! `RUSTFLAGS="--cfg loom"` gets loom's instrumented types instead, and a
//! small lock-based stand-in for `rtrb` (whose own atomics loom cannot see).
//! The loom models live in `src/sync/loom_tests.rs` and run with
//! `scripts/test.sh` (see there for the exact command).
//!
//! [loom]: https://docs.rs/loom

pub(crate) mod answer;
pub(crate) mod gate;
pub(crate) mod lanes;
pub(crate) mod local;
pub(crate) mod mailbox;
pub(crate) mod room;
pub(crate) mod slots;
pub(crate) mod stop;
pub(crate) mod wakers;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(loom)]
mod ring_model;

#[cfg(loom)]
pub(crate) use loom::sync::{atomic, Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{atomic, Arc, Mutex, MutexGuard};

/// The single-producer, single-consumer ring under each lane.
pub(crate) mod ring {
    #[cfg(loom)]
    pub(crate) use super::ring_model::{Consumer, Producer, PushError, RingBuffer};
    #[cfg(not(loom))]
    pub(crate) use rtrb::{Consumer, Producer, PushError, RingBuffer};
}

/// Locks `mutex`, ignoring poisoning: every critical section here leaves
/// its data consistent before it can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text of a panic payload (`&str` or `String`; anything else is named as such).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

thread_local! {
    /// Panics caught on this thread: in shardlet tasks (`task::guard`) and
    /// in wakers woken as a pool slot is given back ([`wakers`]).
    static PANICS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a panic caught on this thread (see [`panics`]).
#[cold]
pub(crate) fn count_panic() {
    PANICS.with(|n| n.set(n.get() + 1));
}

/// Panics caught on this thread so far (`shard::panics`).
pub(crate) fn panics() -> u64 {
    PANICS.with(std::cell::Cell::get)
}

/// Lets another thread run (a closer waiting for a sender mid-send).
pub(crate) fn yield_thread() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// A waker that another thread can wake (the `atomic-waker` crate's, or
/// loom's under `cfg(loom)`), behind one small interface.
#[derive(Default)]
pub(crate) struct AtomicWaker {
    #[cfg(not(loom))]
    inner: atomic_waker::AtomicWaker,
    #[cfg(loom)]
    inner: loom::future::AtomicWaker,
}

impl AtomicWaker {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Stores `waker` for the next [`wake`](AtomicWaker::wake); only one
    /// thread registers at a time.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        #[cfg(not(loom))]
        self.inner.register(waker);
        #[cfg(loom)]
        self.inner.register_by_ref(waker);
    }

    /// Wakes the registered waker, if any (from any thread).
    pub(crate) fn wake(&self) {
        self.inner.wake();
    }

    /// Takes the registered waker out, unwoken.
    pub(crate) fn take(&self) -> Option<std::task::Waker> {
        #[cfg(not(loom))]
        return self.inner.take();
        #[cfg(loom)]
        return self.inner.take_waker();
    }
}

impl std::fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtomicWaker")
    }
}
