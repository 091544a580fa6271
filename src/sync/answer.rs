//! [`AnswerSlot`]: where the answer to a cross-shard call comes back.
//!
//! One writer (the shard that runs the call) and one reader (the caller).
//! The writer stores the value, then publishes a state (`ANSWERED`, or
//! `GONE` when the call will never answer); the reader polls the state,
//! spinning for a while, and parks only when it has waited long enough.
//!
//! Parking is the usual flag pair, with a fence on each side: the reader
//! registers its waker, sets `parked`, fences and looks at the state once
//! more; the writer publishes, fences and wakes the reader only if `parked`
//! is set. Either the reader sees the state or the writer sees `parked`.
//! (A `SeqCst` store followed by a fence costs what a `SeqCst` store alone
//! costs on x86, and the fences are what loom checks.)

use std::task::Waker;

use super::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use super::atomic::{fence, AtomicBool, AtomicU8};
use super::{lock, AtomicWaker, Mutex};

const WAITING: u8 = 0;
const ANSWERED: u8 = 1;
const GONE: u8 = 2;

/// See the module docs.
pub(crate) struct AnswerSlot<T> {
    state: AtomicU8,
    /// The reader stopped spinning and registered `waker`.
    parked: AtomicBool,
    value: Mutex<Option<T>>,
    waker: AtomicWaker,
}

impl<T> AnswerSlot<T> {
    pub(crate) fn new() -> Self {
        AnswerSlot {
            state: AtomicU8::new(WAITING),
            parked: AtomicBool::new(false),
            value: Mutex::new(None),
            waker: AtomicWaker::new(),
        }
    }

    /// Writer: the answer.
    pub(crate) fn fill(&self, value: T) {
        *lock(&self.value) = Some(value);
        self.publish(ANSWERED);
    }

    /// Writer: there will be no answer (a no-op after [`fill`](AnswerSlot::fill)).
    pub(crate) fn abandon(&self) {
        // A load first: after `fill`, this must not write the line the reader reads.
        if self.state.load(Acquire) == WAITING {
            self.publish(GONE);
        }
    }

    fn publish(&self, state: u8) {
        self.state.store(state, Release);
        // Pairs with the fence in `park`.
        fence(SeqCst);
        if self.parked.load(Relaxed) {
            self.waker.wake();
        }
    }

    /// Reader: `None` while waiting; `Some(None)` if the call will never
    /// answer; `Some(Some(value))` once (later calls get `Some(None)`).
    pub(crate) fn try_take(&self) -> Option<Option<T>> {
        match self.state.load(Acquire) {
            WAITING => None,
            ANSWERED => Some(lock(&self.value).take()),
            _ => Some(None),
        }
    }

    /// Reader: registers `waker` for the writer to wake; call
    /// [`try_take`](AnswerSlot::try_take) after it.
    pub(crate) fn park(&self, waker: &Waker) {
        self.waker.register(waker);
        self.parked.store(true, Relaxed);
        // Pairs with the fence in `publish`.
        fence(SeqCst);
    }
}
