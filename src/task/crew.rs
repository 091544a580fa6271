//! [`Crew`]: futures run by one green thread, their results kept in the
//! order they were added; the engine of [`Imap`](crate::Imap) and
//! [`GreenPile`](crate::GreenPile).
//!
//! A pool's `imap` over 100,000 items, or a pile of 1,000 calls, spawned
//! one glommio task per item: an allocation, a run-queue trip and a join
//! handle each, plus the guard, for work that often finishes in its first
//! step. A crew instead keeps its items in slots of its own and polls them
//! from one *driver* task, each item under the same guard as a green thread
//! ([`Isolated`]: panics are values, the item runs as a member of its pool).
//! The items still run in the background, whether or not the consumer is
//! polling, and each holds its pool slot (or global permit) from start to
//! finish, so the pool's bound and accounting are unchanged.
//!
//! The contract:
//! - **Adding** ([`Crew::add`]) puts the item in a free slot and gives it
//!   its first poll right there, as glommio runs a new task's first step
//!   inside `spawn` (past the nesting bound of
//!   [`MAX_DEPTH`](crate::task::green::MAX_DEPTH) the driver gives it instead). An
//!   item that finishes in its first step never needs the driver, and its
//!   slot is free for the next one at once.
//! - **Waking**: each slot has a waker of its own (made once, reused by the
//!   slot's next items, and by the next crew on this thread), so a timer or
//!   socket an item waits on wakes that item only: the slot's index is
//!   queued and the driver polls just the queued slots. Slot wakers may be
//!   woken from any thread.
//! - **Results** wait in add order; [`Crew::poll_next_result`] yields the
//!   oldest once it is done. A result slot is reserved at add time, so the
//!   caller bounds the crew (imap by its window, a pile by its permits).
//! - **Fairness**: the driver polls at most [`POLLS_PER_TURN`] items per
//!   turn, then yields to the shard's other tasks.
//! - **Ending**: dropping the [`Crew`] handle either *cancels* the items
//!   left (`imap`: each is dropped at once, under the guard) or *detaches*
//!   them (a pile: they run to completion and their results are dropped).
//!   The driver is a shardlet green thread, so the shard's end cancels it
//!   like any other, and the items with it.
//! - **Re-entry**: the slots are borrowed while an item is polled. An item
//!   that adds to its own crew (its pile shared through an
//!   `Rc<RefCell<..>>`, say) finds them borrowed: its new item waits in
//!   `pending`, with its result position reserved, and the driver places and
//!   polls it next.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::sync::AtomicWaker;
use crate::task::guard::Isolated;
use crate::task::JoinError;

/// Items the driver polls per turn before it yields.
pub(crate) const POLLS_PER_TURN: usize = 128;

/// What happens to the items left when the handle is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDrop {
    /// Dropped at once (an `Imap`'s calls in flight).
    Cancel,
    /// Run to completion, results discarded (a pile's tasks).
    Detach,
}

/// What a crew runs: a guarded future, whatever its type.
pub(crate) trait Item {
    /// The future's output.
    type Output;
    /// Polls it under the guard (see [`Isolated`]).
    fn poll_item(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Self::Output, JoinError>>;
    /// Drops the future now, under the guard.
    fn cancel(self: Pin<&mut Self>);
}

impl<F: Future> Item for Isolated<F> {
    type Output = F::Output;

    fn poll_item(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        self.poll(cx)
    }

    fn cancel(self: Pin<&mut Self>) {
        Isolated::cancel(self);
    }
}

/// The consumer's handle: add items, take results in order.
pub(crate) struct Crew<I: Item + ?Sized> {
    shared: Rc<Shared<I>>,
    on_drop: OnDrop,
}

/// Queued slot indices and the driver's waker: what a slot's waker touches,
/// from any thread.
#[derive(Default)]
struct Doorbell {
    woken: Mutex<Vec<u32>>,
    any: AtomicBool,
    driver: AtomicWaker,
}

/// A slot's waker: queues the slot (once until it is polled) and rings the driver.
struct SlotWaker {
    index: u32,
    queued: AtomicBool,
    bell: Arc<Doorbell>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.bell
                .woken
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.index);
            self.bell.any.store(true, Ordering::Release);
            self.bell.driver.wake();
        }
    }
}

/// A doorbell and its slots' wakers: made once, kept by the thread for the
/// next crew when a crew ends with none of its wakers held elsewhere.
struct Bells {
    bell: Arc<Doorbell>,
    /// Slot `i`'s waker, and the same as a `Waker` to lend to polls.
    wakers: Vec<(Arc<SlotWaker>, Waker)>,
}

impl Bells {
    fn new() -> Self {
        Bells {
            bell: Arc::default(),
            wakers: Vec::new(),
        }
    }

    /// Slot `index`'s waker, made if this is a new slot.
    fn ensure(&mut self, index: usize) {
        while self.wakers.len() <= index {
            let waker = Arc::new(SlotWaker {
                index: u32::try_from(self.wakers.len()).expect("fewer than 2^32 slots"),
                queued: AtomicBool::new(false),
                bell: self.bell.clone(),
            });
            let as_waker = Waker::from(waker.clone());
            self.wakers.push((waker, as_waker));
        }
    }

    /// Whether nothing outside holds one of these wakers any more.
    fn unshared(&self) -> bool {
        // Each slot waker: ours, and the `Waker` made of it.
        self.wakers.iter().all(|(w, _)| Arc::strong_count(w) == 2)
            && Arc::strong_count(&self.bell) == 1 + self.wakers.len()
    }

    /// Ready for another crew: nothing queued, no driver.
    fn reset(&mut self) {
        for (w, _) in &self.wakers {
            w.queued.store(false, Ordering::Relaxed);
        }
        self.bell.woken.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.bell.any.store(false, Ordering::Relaxed);
        self.bell.driver.take();
    }
}

/// Sets of bells kept for the next crews on this thread.
const SPARE_BELLS: usize = 16;

thread_local! {
    static SPARE: RefCell<Vec<Bells>> = const { RefCell::new(Vec::new()) };
}

struct Slot<I: Item + ?Sized> {
    /// The item (a finished one may stay, to be refilled); `None` once
    /// taken out to be cancelled.
    item: Option<Pin<Box<I>>>,
    /// The result position the item fills, while it runs.
    seq: Option<u64>,
}

/// An item's result, once it is known.
type Outcome<I> = Option<Result<<I as Item>::Output, JoinError>>;

struct Shared<I: Item + ?Sized> {
    slots: RefCell<Vec<Slot<I>>>,
    bells: RefCell<Bells>,
    /// Slots free to refill.
    free: RefCell<Vec<u32>>,
    /// Slots whose first poll is the driver's (added too deep to poll at once).
    fresh: RefCell<Vec<u32>>,
    /// Items added while an item of this crew was being polled (see the
    /// module docs), with their result positions: the driver places them.
    pending: RefCell<Vec<(u64, Pin<Box<I>>)>>,
    /// Results in add order: `results[0]` is for `base`; `None` while running.
    results: RefCell<VecDeque<Outcome<I>>>,
    base: Cell<u64>,
    /// Items running now.
    running: Cell<usize>,
    consumer: RefCell<Option<Waker>>,
    /// Set when the handle went: the driver ends (once idle, if detached).
    gone: Cell<Option<OnDrop>>,
    driving: Cell<bool>,
}

impl<I> Crew<I>
where
    I: Item + ?Sized + 'static,
    I::Output: 'static,
{
    pub(crate) fn new(on_drop: OnDrop) -> Self {
        let bells = SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(Bells::new);
        Crew {
            shared: Rc::new(Shared {
                slots: RefCell::new(Vec::new()),
                bells: RefCell::new(bells),
                free: RefCell::new(Vec::new()),
                fresh: RefCell::new(Vec::new()),
                pending: RefCell::new(Vec::new()),
                results: RefCell::new(VecDeque::new()),
                base: Cell::new(0),
                running: Cell::new(0),
                consumer: RefCell::new(None),
                gone: Cell::new(None),
                driving: Cell::new(false),
            }),
            on_drop,
        }
    }

    /// Runs an item in the crew; its result comes at its position. `make`
    /// gets the free slot's finished item, if it has one (to refill in
    /// place), and returns the item to run.
    #[inline]
    pub(crate) fn add(&self, make: impl FnOnce(Option<Pin<Box<I>>>) -> Pin<Box<I>>) {
        let shared = &self.shared;
        let seq = shared.base.get() + shared.results.borrow().len() as u64;
        shared.results.borrow_mut().push_back(None);
        shared.running.set(shared.running.get() + 1);
        let Ok(mut slots) = shared.slots.try_borrow_mut() else {
            // One of this crew's items is being polled, and adds to it.
            return shared.add_pending(seq, make);
        };
        let index = shared.free_slot(&mut slots);
        let slot = &mut slots[index];
        slot.item = Some(make(slot.item.take()));
        slot.seq = Some(seq);
        drop(slots);
        let index = index as u32;
        if crate::task::too_deep() {
            // Too deep in nested tasks to poll it here: the driver will.
            shared.fresh.borrow_mut().push(index);
            shared.bells.borrow().bell.driver.wake();
        } else {
            shared.poll_slot(index);
            // Done at once, and added nothing while it ran: no driver needed.
            if shared.slots.borrow()[index as usize].seq.is_none() && shared.pending.borrow().is_empty() {
                return;
            }
        }
        if !shared.driving.replace(true) {
            crate::task::spawn_n(Driver {
                shared: self.shared.clone(),
            });
        }
    }

    /// Adds a result that is already known, at the next position.
    pub(crate) fn add_done(&self, result: Result<I::Output, JoinError>) {
        self.shared.results.borrow_mut().push_back(Some(result));
    }

    /// The oldest result not yet taken, once it is done; `Ready(None)` when
    /// there is none to wait for.
    pub(crate) fn poll_next_result(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<I::Output, JoinError>>> {
        let shared = &self.shared;
        let mut results = shared.results.borrow_mut();
        match results.front() {
            None => Poll::Ready(None),
            Some(Some(_)) => {
                shared.base.set(shared.base.get() + 1);
                Poll::Ready(results.pop_front().flatten())
            }
            Some(None) => {
                let mut consumer = shared.consumer.borrow_mut();
                match &*consumer {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *consumer = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Results not yet taken (running or done).
    pub(crate) fn len(&self) -> usize {
        self.shared.results.borrow().len()
    }
}

impl<I: Item + ?Sized> Drop for Crew<I> {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.gone.set(Some(self.on_drop));
        // Dropped last, under the guard: a result whose destructor panics
        // must not skip the cancelling and the driver's wake below.
        let results = std::mem::take(&mut *shared.results.borrow_mut());
        if self.on_drop == OnDrop::Cancel {
            // Cancel now: each item is dropped under its guard, and gives its
            // pool slot back before this returns. (Outside the borrow: a
            // destructor may do anything.) Dropped by one of its own items,
            // the slots are borrowed: the driver ends, and they go with it.
            let mut items: Vec<_> = std::mem::take(&mut *shared.pending.borrow_mut())
                .into_iter()
                .map(|(_, item)| item)
                .collect();
            if let Ok(mut slots) = shared.slots.try_borrow_mut() {
                items.extend(slots.iter_mut().filter_map(|s| s.seq.take().and(s.item.take())));
                shared.running.set(0);
            }
            for mut item in items {
                item.as_mut().cancel();
            }
        }
        shared.bells.borrow().bell.driver.wake();
        for result in results {
            crate::task::guard::drop_guarded(result);
        }
    }
}

impl<I: Item + ?Sized> Drop for Shared<I> {
    fn drop(&mut self) {
        let mut bells = std::mem::replace(self.bells.get_mut(), Bells::new());
        // Items go first: they may hold clones of their slots' wakers.
        self.slots.get_mut().clear();
        if bells.unshared() {
            bells.reset();
            let _ = SPARE.try_with(|s| {
                let mut spare = s.borrow_mut();
                if spare.len() < SPARE_BELLS {
                    spare.push(bells);
                }
            });
        }
    }
}

impl<I: Item + ?Sized> fmt::Debug for Crew<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crew")
            .field("running", &self.shared.running.get())
            .field("results", &self.shared.results.borrow().len())
            .finish()
    }
}

/// The green thread that polls a crew's items.
struct Driver<I: Item + ?Sized> {
    shared: Rc<Shared<I>>,
}

impl<I: Item + ?Sized> Future for Driver<I> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.shared;
        let bell = shared.bells.borrow().bell.clone();
        bell.driver.register(cx.waker());
        let mut polls = 0;
        loop {
            if shared.gone.get() == Some(OnDrop::Cancel) {
                return Poll::Ready(());
            }
            shared.place_pending();
            let mut batch = std::mem::take(&mut *shared.fresh.borrow_mut());
            if bell.any.swap(false, Ordering::Acquire) {
                batch.append(&mut bell.woken.lock().unwrap_or_else(|e| e.into_inner()));
            }
            if batch.is_empty() {
                break;
            }
            let mut batch = batch.into_iter();
            for index in batch.by_ref() {
                if shared.gone.get() == Some(OnDrop::Cancel) {
                    // Dropped by one of its own items: the rest are cancelled
                    // (with the crew's state), never polled again.
                    return Poll::Ready(());
                }
                shared.poll_slot(index);
                polls += 1;
                if polls == POLLS_PER_TURN {
                    break;
                }
            }
            if polls == POLLS_PER_TURN {
                // The rest waits for the next turn; let the shard's other tasks run.
                shared.fresh.borrow_mut().extend(batch);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        if shared.gone.get() == Some(OnDrop::Detach) && shared.running.get() == 0 {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl<I: Item + ?Sized> Shared<I> {
    /// A free slot's index (a new slot when none is free). It may still
    /// hold its last, finished item, to refill in place.
    #[inline]
    fn free_slot(&self, slots: &mut Vec<Slot<I>>) -> usize {
        match self.free.borrow_mut().pop() {
            Some(index) => index as usize,
            None => {
                slots.push(Slot {
                    item: None,
                    seq: None,
                });
                self.bells.borrow_mut().ensure(slots.len() - 1);
                slots.len() - 1
            }
        }
    }

    /// Keeps an item added while the slots are borrowed, for the driver.
    #[cold]
    #[inline(never)]
    fn add_pending(&self, seq: u64, make: impl FnOnce(Option<Pin<Box<I>>>) -> Pin<Box<I>>) {
        self.pending.borrow_mut().push((seq, make(None)));
        self.bells.borrow().bell.driver.wake();
    }

    /// Places the items added while the slots were borrowed, for the
    /// driver's next batch.
    #[inline]
    fn place_pending(&self) {
        if self.pending.borrow().is_empty() {
            return;
        }
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let mut slots = self.slots.borrow_mut();
        for (seq, item) in pending {
            let index = self.free_slot(&mut slots);
            let slot = &mut slots[index];
            slot.item = Some(item);
            slot.seq = Some(seq);
            self.fresh.borrow_mut().push(index as u32);
        }
    }

    /// Polls slot `index`'s item once, if it still runs.
    fn poll_slot(&self, index: u32) {
        let (result, seq) = {
            let mut slots = self.slots.borrow_mut();
            let slot = &mut slots[index as usize];
            let (Some(seq), Some(item)) = (slot.seq, slot.item.as_mut()) else {
                return;
            };
            let bells = self.bells.borrow();
            let (waker, as_waker) = &bells.wakers[index as usize];
            // A wake from here on queues it again.
            waker.queued.store(false, Ordering::Release);
            let Poll::Ready(result) = item.as_mut().poll_item(&mut Context::from_waker(as_waker)) else {
                return;
            };
            slot.seq = None;
            (result, seq)
        };
        self.free.borrow_mut().push(index);
        self.running.set(self.running.get() - 1);
        if self.gone.get().is_some() {
            // Detached: nobody takes results any more. Dropped under the
            // guard: a destructor's panic must not end the driver (and
            // cancel the other items with it).
            crate::task::guard::drop_guarded(result);
            return;
        }
        let base = self.base.get();
        let mut results = self.results.borrow_mut();
        if let Some(entry) = results.get_mut((seq - base) as usize) {
            *entry = Some(result);
        }
        if seq == base {
            drop(results);
            if let Some(consumer) = self.consumer.borrow_mut().take() {
                consumer.wake();
            }
        }
    }
}
