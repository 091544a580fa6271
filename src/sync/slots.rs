//! The counting limit behind a [`GreenPool`](crate::GreenPool): `size` slots,
//! handed out first come, first served, resizable while in use.
//!
//! Invariants (`Inner`):
//! - `running` counts granted slots: held [`Permit`]s plus grants made to
//!   waiters that have not picked them up yet;
//! - a waiter is only granted a slot when `running < size`, so `running`
//!   exceeds `size` only after a shrink, and falls back as permits drop;
//! - waiters are served in arrival order, and a waiter that gives up (its
//!   [`Acquire`] is dropped) either leaves the queue or, if it had been
//!   granted a slot already, passes that slot on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::wakers::{WakerKey, WakerSet};

#[derive(Clone)]
pub(crate) struct Slots {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    size: usize,
    running: usize,
    waiters: VecDeque<Rc<Waiter>>,
    /// `waitall` callers, woken when no slot is held.
    idle: WakerSet,
}

#[derive(Default)]
struct Waiter {
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Slots {
    pub(crate) fn new(size: usize) -> Self {
        Slots {
            inner: Rc::new(RefCell::new(Inner {
                size,
                running: 0,
                waiters: VecDeque::new(),
                idle: WakerSet::new(),
            })),
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.inner.borrow().size
    }

    pub(crate) fn running(&self) -> usize {
        self.inner.borrow().running
    }

    pub(crate) fn waiting(&self) -> usize {
        self.inner.borrow().waiters.len()
    }

    /// Takes a slot now if one is free and nobody is queued ahead.
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        let mut inner = self.inner.borrow_mut();
        if inner.waiters.is_empty() && inner.running < inner.size {
            inner.running += 1;
            Some(Permit { slots: self.clone() })
        } else {
            None
        }
    }

    /// Takes a slot now even beyond the size (work that must not wait and
    /// must not run inline); it counts in `running` like any other.
    pub(crate) fn acquire_beyond(&self) -> Permit {
        self.inner.borrow_mut().running += 1;
        Permit { slots: self.clone() }
    }

    /// Waits for a slot, in arrival order.
    pub(crate) fn acquire(&self) -> Acquire {
        Acquire {
            slots: self.clone(),
            waiter: None,
        }
    }

    pub(crate) fn resize(&self, size: usize) {
        self.inner.borrow_mut().size = size;
        self.dispatch();
    }

    /// Resolves once no slot is held.
    pub(crate) fn idle(&self) -> Idle {
        Idle {
            slots: self.clone(),
            key: None,
        }
    }

    fn release(&self) {
        {
            let mut inner = self.inner.borrow_mut();
            inner.running -= 1;
            // The common case: nobody to hand the slot to, nobody to tell.
            if inner.waiters.is_empty() && (inner.running > 0 || inner.idle.len() == 0) {
                return;
            }
        }
        self.dispatch();
    }

    /// Grants free slots to queued waiters; wakes idle watchers when none is held.
    fn dispatch(&self) {
        let mut wake = Vec::new();
        {
            let mut inner = self.inner.borrow_mut();
            while inner.running < inner.size {
                let Some(waiter) = inner.waiters.pop_front() else {
                    break;
                };
                inner.running += 1;
                waiter.granted.set(true);
                let waker = waiter.waker.borrow_mut().take();
                wake.extend(waker);
            }
            if inner.running == 0 {
                wake.append(&mut inner.idle.take_all());
            }
        }
        // Wake outside the borrow: a waker may run code that touches the pool.
        super::wakers::wake_all_then_panic(wake);
    }
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("Slots")
            .field("size", &inner.size)
            .field("running", &inner.running)
            .field("waiting", &inner.waiters.len())
            .finish()
    }
}

/// A held slot; dropping it frees the slot.
pub(crate) struct Permit {
    slots: Slots,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

/// Future of [`Slots::acquire`].
pub(crate) struct Acquire {
    slots: Slots,
    waiter: Option<Rc<Waiter>>,
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let this = &mut *self;
        match &this.waiter {
            None => {
                if let Some(permit) = this.slots.try_acquire() {
                    return Poll::Ready(permit);
                }
                let waiter = Rc::new(Waiter::default());
                *waiter.waker.borrow_mut() = Some(cx.waker().clone());
                this.slots.inner.borrow_mut().waiters.push_back(waiter.clone());
                this.waiter = Some(waiter);
                Poll::Pending
            }
            Some(waiter) if waiter.granted.get() => {
                this.waiter = None;
                Poll::Ready(Permit {
                    slots: this.slots.clone(),
                })
            }
            Some(waiter) => {
                *waiter.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Some(waiter) = self.waiter.take() else { return };
        if waiter.granted.get() {
            // Granted but never picked up: pass the slot on.
            self.slots.release();
        } else {
            self.slots
                .inner
                .borrow_mut()
                .waiters
                .retain(|w| !Rc::ptr_eq(w, &waiter));
        }
    }
}

/// Future of [`Slots::idle`]: one waker per watcher, however often it is polled.
pub(crate) struct Idle {
    slots: Slots,
    key: Option<WakerKey>,
}

impl Future for Idle {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut inner = this.slots.inner.borrow_mut();
        if inner.running == 0 {
            Poll::Ready(())
        } else {
            inner.idle.register(&mut this.key, cx.waker());
            Poll::Pending
        }
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.slots.inner.borrow_mut().idle.remove(key);
        }
    }
}

/// Holds `permit` for as long as `fut` lives (so a cancel or panic frees it too).
pub(crate) fn with_permit<F: Future>(fut: F, permit: Permit) -> Holding<F, Permit> {
    Holding::new(fut, permit)
}

pin_project_lite::pin_project! {
    /// `fut`, holding `held` (a slot, a permit) until it is dropped.
    ///
    /// A struct rather than `async move { let _p = held; fut.await }`: an
    /// async block that captures a future and awaits it stores it twice,
    /// doubling the task's allocation (a connection handler's buffers too).
    pub(crate) struct Holding<F, P> {
        #[pin]
        fut: F,
        held: P,
    }
}

impl<F, P> Holding<F, P> {
    pub(crate) fn new(fut: F, held: P) -> Self {
        Holding { fut, held }
    }
}

impl<F: Future, P> Future for Holding<F, P> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn waiters_are_served_in_order_and_dropouts_pass_their_slot() {
        let slots = Slots::new(1);
        let held = slots.try_acquire().unwrap();
        let (mut a, mut b) = (slots.acquire(), slots.acquire());
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        assert_eq!(slots.waiting(), 2);
        drop(held); // granted to a
        assert_eq!((slots.running(), slots.waiting()), (1, 1));
        drop(a); // a gives up its grant: b gets it
        let Poll::Ready(permit) = poll(&mut b) else {
            panic!("b should hold the slot")
        };
        assert_eq!(slots.running(), 1);
        drop(permit);
        assert_eq!(slots.running(), 0);
    }

    #[test]
    fn an_idle_watcher_polled_again_and_again_keeps_one_waker() {
        // A watcher polled in a loop (`timeout(d, pool.waitall())`) must
        // not keep a waker clone per poll: that overflows the waker's refcount.
        let slots = Slots::new(1);
        let held = slots.try_acquire().unwrap();
        let mut idle = slots.idle();
        for _ in 0..100_000 {
            assert!(poll(&mut idle).is_pending());
        }
        assert_eq!(slots.inner.borrow().idle.len(), 1);
        let mut other = slots.idle();
        assert!(poll(&mut other).is_pending());
        drop(other);
        assert_eq!(slots.inner.borrow().idle.len(), 1, "a dropped watcher leaves");
        drop(held);
        assert!(poll(&mut idle).is_ready());
    }

    #[test]
    fn shrinking_waits_for_holders_growing_serves_waiters() {
        let slots = Slots::new(2);
        let p1 = slots.try_acquire().unwrap();
        let p2 = slots.try_acquire().unwrap();
        slots.resize(1);
        drop(p1);
        assert!(slots.try_acquire().is_none(), "still at the new size");
        let mut w = slots.acquire();
        assert!(poll(&mut w).is_pending());
        slots.resize(2);
        assert!(poll(&mut w).is_ready());
        drop(p2);
    }

    #[test]
    fn holding_a_permit_does_not_copy_the_future() {
        let fut = async {
            let buf = [1u8; 4096];
            futures_lite::future::yield_now().await;
            buf[7]
        };
        let alone = std::mem::size_of_val(&fut);
        let slots = Slots::new(1);
        let held = with_permit(fut, slots.try_acquire().unwrap());
        assert!(
            std::mem::size_of_val(&held) < alone + 64,
            "{} bytes around a {alone}-byte future",
            std::mem::size_of_val(&held)
        );
    }
}
