//! Who runs first on a busy shard: a connection that was idle goes before
//! the connections that keep the shard busy.
//!
//! Without it, one driver turn wakes every socket that became ready since
//! the last, the woken tasks run in that order, and the driver turns again
//! only after all of them: on a shard with a thousand busy connections (each
//! always with a message in flight), a message on a quiet connection waits
//! for the rest of the current round and then for its place in the next,
//! milliseconds behind work it has nothing to do with.
//!
//! So the driver sorts each turn's wake-ups. A socket that had an event in
//! the last [`RECENT`] cycles (see below) is *busy*: its tasks go to the
//! back of the backlog, a queue of wakers. Any other socket (idle until
//! now, or new) is woken at once. Then the turn wakes the oldest [`SLICE`]
//! of the backlog, and the driver yields. The next turn, which comes after
//! at most that many busy tasks, again wakes the quiet sockets first: their
//! wait is bounded by a slice, not by a round of everyone. It is what the
//! Linux scheduler does for tasks that slept, and what Seastar's scheduling
//! groups give latency-sensitive work, decided here per socket and on the
//! spot.
//!
//! Nothing waits longer than before: the backlog is served in order, a
//! slice at every turn, and the driver keeps turning (it does not park)
//! while the backlog holds anything. A socket gets the head start at most
//! once per cycle, since its event marks it busy. A *cycle* ends when
//! everything that was in the backlog when it began has been woken: about
//! one round over the busy sockets; on a shard whose wake-ups never fill a
//! slice, every turn is a cycle and nothing changes but the order.
//!
//! The backlog holds at most one waker per waiting task and direction
//! (bounded by the registrations), and is emptied when the driver ends.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::Waker;

/// Busy tasks woken per driver turn, after the sockets that were idle.
pub(crate) const SLICE: usize = 64;

/// A socket is busy when its previous event came in one of this many
/// cycles before the current one (or in the current one).
pub(crate) const RECENT: u64 = 2;

/// The wakers of busy sockets' tasks, oldest first, and the cycle count.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    deferred: RefCell<VecDeque<Waker>>,
    /// The current cycle (0 before the first turn).
    cycle: Cell<u64>,
    /// Wakers ever put into the backlog, and ever taken out of it.
    pushed: Cell<u64>,
    popped: Cell<u64>,
    /// `pushed` when the current cycle began: the cycle ends once `popped`
    /// reaches it.
    mark: Cell<u64>,
}

impl Backlog {
    /// Begins a driver turn: a new cycle when the last one is over.
    /// Returns the turn's cycle.
    pub(crate) fn begin_turn(&self) -> u64 {
        if self.popped.get() >= self.mark.get() {
            self.cycle.set(self.cycle.get() + 1);
            self.mark.set(self.pushed.get());
        }
        self.cycle.get()
    }

    /// Whether a socket whose previous event came in cycle `seen` (0:
    /// none) is busy in `cycle`.
    pub(crate) fn busy(seen: u64, cycle: u64) -> bool {
        seen != 0 && cycle - seen <= RECENT
    }

    /// Puts `wakers` (emptied) at the back of the backlog.
    pub(crate) fn defer(&self, wakers: &mut Vec<Waker>) {
        self.pushed.set(self.pushed.get() + wakers.len() as u64);
        self.deferred.borrow_mut().extend(wakers.drain(..));
    }

    /// Moves the oldest `n` wakers (or all there are) into `wake`.
    pub(crate) fn take(&self, n: usize, wake: &mut Vec<Waker>) {
        let mut deferred = self.deferred.borrow_mut();
        let n = n.min(deferred.len());
        self.popped.set(self.popped.get() + n as u64);
        wake.extend(deferred.drain(..n));
    }

    /// Wakers waiting in the backlog.
    pub(crate) fn len(&self) -> usize {
        self.deferred.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_cycle_lasts_until_the_backlog_it_began_with_is_served() {
        let backlog = Backlog::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        assert_eq!(backlog.begin_turn(), 1);
        backlog.defer(&mut vec![Waker::from(count.clone()); 3 * SLICE]);
        let mut wake = Vec::new();
        backlog.take(SLICE, &mut wake);
        // The 3 slices were deferred in cycle 1: cycle 2 begins at once and
        // lasts until all of them are out.
        assert_eq!(backlog.begin_turn(), 2);
        backlog.defer(&mut vec![Waker::from(count.clone()); SLICE]);
        backlog.take(SLICE, &mut wake);
        assert_eq!(backlog.begin_turn(), 2);
        backlog.take(SLICE, &mut wake);
        assert_eq!(backlog.begin_turn(), 3, "the cycle-1 wakers are out");
        assert_eq!(backlog.len(), SLICE);
        backlog.take(usize::MAX, &mut wake);
        assert_eq!((backlog.len(), wake.len()), (0, 4 * SLICE));
        assert_eq!(backlog.begin_turn(), 4);
        assert_eq!(backlog.begin_turn(), 5, "an empty backlog: a cycle per turn");
    }

    #[test]
    fn a_socket_is_busy_while_its_events_are_recent() {
        assert!(!Backlog::busy(0, 7), "no event before");
        assert!(Backlog::busy(7, 7));
        assert!(Backlog::busy(7 - RECENT, 7));
        assert!(!Backlog::busy(6 - RECENT, 7));
    }
}
