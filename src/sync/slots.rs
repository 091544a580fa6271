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
    inner: Rc<Inner>,
}

/// The counts a spawn and a task's end read are plain cells, outside the
/// queues' `RefCell`: taking and giving back a slot when nobody waits
/// touches no borrow flag.
struct Inner {
    size: Cell<usize>,
    running: Cell<usize>,
    /// `queues.waiters.len()`, kept beside it.
    waiting: Cell<usize>,
    /// `queues.idle.len()`, kept beside it.
    watchers: Cell<usize>,
    queues: RefCell<Queues>,
}

struct Queues {
    waiters: VecDeque<Rc<Waiter>>,
    /// `waitall` callers, woken when no slot is held.
    idle: WakerSet,
}

impl Inner {
    /// Updates the counts kept beside the queues.
    fn recount(&self, queues: &Queues) {
        self.waiting.set(queues.waiters.len());
        self.watchers.set(queues.idle.len());
    }
}

#[derive(Default)]
struct Waiter {
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Slots {
    pub(crate) fn new(size: usize) -> Self {
        Slots {
            inner: Rc::new(Inner {
                size: Cell::new(size),
                running: Cell::new(0),
                waiting: Cell::new(0),
                watchers: Cell::new(0),
                queues: RefCell::new(Queues {
                    waiters: VecDeque::new(),
                    idle: WakerSet::new(),
                }),
            }),
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.inner.size.get()
    }

    pub(crate) fn running(&self) -> usize {
        self.inner.running.get()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.inner.waiting.get()
    }

    /// Takes a slot now if one is free and nobody is queued ahead.
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        let inner = &*self.inner;
        let running = inner.running.get();
        if inner.waiting.get() == 0 && running < inner.size.get() {
            inner.running.set(running + 1);
            Some(Permit { slots: self.clone() })
        } else {
            None
        }
    }

    /// Takes a slot now even beyond the size (work that must not wait and
    /// must not run inline); it counts in `running` like any other.
    pub(crate) fn acquire_beyond(&self) -> Permit {
        self.inner.running.set(self.inner.running.get() + 1);
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
        self.inner.size.set(size);
        self.dispatch();
    }

    /// Resolves once no slot is held.
    pub(crate) fn idle(&self) -> Idle {
        Idle {
            slots: self.clone(),
            key: None,
        }
    }

    /// Frees a slot. Never unwinds: a permit is dropped inside a task's
    /// destructor, where glommio aborts the process on a panic (see
    /// [`given_back`](Slots::given_back)).
    #[inline]
    fn release(&self) {
        let inner = &*self.inner;
        let running = inner.running.get() - 1;
        inner.running.set(running);
        // The common case: nobody to hand the slot to, nobody to tell.
        if inner.waiting.get() == 0 && (running > 0 || inner.watchers.get() == 0) {
            return;
        }
        self.given_back();
    }

    /// A freed slot goes to the next waiter. A waker may run anything: its
    /// panic is caught, counted with the shard's panics and logged; the
    /// other waiters are woken all the same.
    #[cold]
    #[inline(never)]
    fn given_back(&self) {
        super::wakers::wake_all_counted(self.grant());
    }

    /// Grants free slots to queued waiters, and wakes them and the idle
    /// watchers (when none is held); a waker's panic goes on to the caller,
    /// after every waker has been woken.
    fn dispatch(&self) {
        super::wakers::wake_all_then_panic(self.grant());
    }

    /// Grants free slots to queued waiters; their wakers, and the idle
    /// watchers' when no slot is held, to wake outside the borrow (a waker
    /// may run code that touches the pool).
    fn grant(&self) -> Vec<Waker> {
        let mut wake = Vec::new();
        let inner = &*self.inner;
        let mut queues = inner.queues.borrow_mut();
        while inner.running.get() < inner.size.get() {
            let Some(waiter) = queues.waiters.pop_front() else {
                break;
            };
            inner.running.set(inner.running.get() + 1);
            waiter.granted.set(true);
            let waker = waiter.waker.borrow_mut().take();
            wake.extend(waker);
        }
        if inner.running.get() == 0 {
            wake.append(&mut queues.idle.take_all());
        }
        inner.recount(&queues);
        wake
    }
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slots")
            .field("size", &self.size())
            .field("running", &self.running())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// A held slot; dropping it frees the slot, and never unwinds.
pub(crate) struct Permit {
    slots: Slots,
}

impl Drop for Permit {
    #[inline]
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
                let inner = &*this.slots.inner;
                let mut queues = inner.queues.borrow_mut();
                queues.waiters.push_back(waiter.clone());
                inner.recount(&queues);
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
            let inner = &*self.slots.inner;
            let mut queues = inner.queues.borrow_mut();
            queues.waiters.retain(|w| !Rc::ptr_eq(w, &waiter));
            inner.recount(&queues);
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
        let inner = &*this.slots.inner;
        if inner.running.get() == 0 {
            Poll::Ready(())
        } else {
            let mut queues = inner.queues.borrow_mut();
            queues.idle.register(&mut this.key, cx.waker());
            inner.recount(&queues);
            Poll::Pending
        }
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let inner = &*self.slots.inner;
            let mut queues = inner.queues.borrow_mut();
            queues.idle.remove(key);
            inner.recount(&queues);
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
        assert_eq!(slots.inner.queues.borrow().idle.len(), 1);
        let mut other = slots.idle();
        assert!(poll(&mut other).is_pending());
        drop(other);
        assert_eq!(
            slots.inner.queues.borrow().idle.len(),
            1,
            "a dropped watcher leaves"
        );
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
