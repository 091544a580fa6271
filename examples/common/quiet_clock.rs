//! One coarse clock per shard for waits that need no precision: a wait of
//! "a period, give or take half" costs a connection 8 bytes in its task and
//! a slot in the shard's waker list, not a timer of its own (the timer, its
//! entry in glommio's timer tree and a box for them: about 200 bytes a
//! connection, measured at 10,000). The clock ticks every half period, and
//! only while someone waits.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A shard's clock: its tick count and who waits for it.
struct Clock {
    tick: Cell<u32>,
    /// Half the period of the waits, set by the first one.
    half: Cell<Duration>,
    running: Cell<bool>,
    /// Waiters by slot; freed slots are reused.
    waiters: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<u32>>,
    waiting: Cell<usize>,
}

thread_local! {
    static CLOCK: Rc<Clock> = Rc::new(Clock {
        tick: Cell::new(0),
        half: Cell::new(Duration::ZERO),
        running: Cell::new(false),
        waiters: RefCell::new(Vec::new()),
        free: RefCell::new(Vec::new()),
        waiting: Cell::new(0),
    });
}

/// No slot taken.
const NONE: u32 = u32::MAX;

/// Resolves after `period` or a little more: about 1.5 x `period`, later
/// on a shard too busy to run the clock on time (every wait on a shard
/// gives the same `period`; the first one sets the clock's, at least 2 ms).
pub fn quiet(period: Duration) -> Quiet {
    if period.is_zero() {
        return Quiet {
            until: 0,
            slot: NONE,
            here: PhantomData,
        };
    }
    CLOCK.with(|clock| {
        if clock.half.get().is_zero() {
            clock.half.set((period / 2).max(Duration::from_millis(1)));
        }
        Quiet {
            until: clock.tick.get().wrapping_add(3),
            slot: NONE,
            here: PhantomData,
        }
    })
}

/// The future of [`quiet`]: 8 bytes. It stays on the thread (the shard)
/// whose clock it waits on: its slot means nothing on another.
pub struct Quiet {
    until: u32,
    slot: u32,
    here: PhantomData<*const ()>,
}

impl Quiet {
    fn leave(&mut self, clock: &Clock) {
        if self.slot != NONE {
            clock.waiters.borrow_mut()[self.slot as usize] = None;
            clock.free.borrow_mut().push(self.slot);
            clock.waiting.set(clock.waiting.get() - 1);
            self.slot = NONE;
        }
    }
}

impl Future for Quiet {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        CLOCK.with(|clock| {
            // Ticks so far past the start (wrapping): 3 or more is done.
            let until = this.until;
            if until == 0 || clock.tick.get().wrapping_sub(until.wrapping_sub(3)) >= 3 {
                this.leave(clock);
                return Poll::Ready(());
            }
            let mut waiters = clock.waiters.borrow_mut();
            if this.slot == NONE {
                let slot = clock.free.borrow_mut().pop().unwrap_or_else(|| {
                    waiters.push(None);
                    (waiters.len() - 1) as u32
                });
                this.slot = slot;
                clock.waiting.set(clock.waiting.get() + 1);
            }
            match &mut waiters[this.slot as usize] {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
            if !clock.running.replace(true) {
                shardlet::spawn_n(run(Rc::clone(clock)));
            }
            Poll::Pending
        })
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        if self.slot != NONE {
            // At thread exit the clock may be gone already: nothing to leave.
            let _ = CLOCK.try_with(|clock| self.leave(clock));
        }
    }
}

/// Ticks while anyone waits, waking every waiter at each tick.
async fn run(clock: Rc<Clock>) {
    while clock.waiting.get() > 0 {
        shardlet::sleep(clock.half.get()).await;
        clock.tick.set(clock.tick.get().wrapping_add(1));
        // Woken outside the borrow: a waker may run code that waits again.
        let woken: Vec<Waker> = clock.waiters.borrow().iter().flatten().cloned().collect();
        for waker in woken {
            waker.wake();
        }
        // Let them run before the next look at `waiting`, however short the tick.
        futures_lite::future::yield_now().await;
    }
    clock.running.set(false);
}
