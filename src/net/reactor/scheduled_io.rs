//! One registered socket's state in the readiness driver
//! (`driver.rs`): its readiness flags and the tasks waiting on each
//! direction, and the flags an epoll event sets.

use std::cell::{Cell, RefCell};
use std::task::Waker;

use nix::sys::epoll::EpollFlags;

pub(super) const READABLE: u8 = 1;
pub(super) const WRITABLE: u8 = 2;
pub(super) const READ_CLOSED: u8 = 4;
pub(super) const WRITE_CLOSED: u8 = 8;

/// A direction of readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    /// The flags that make this direction ready.
    pub(super) fn ready_mask(self) -> u8 {
        match self {
            Direction::Read => READABLE | READ_CLOSED,
            Direction::Write => WRITABLE | WRITE_CLOSED,
        }
    }

    /// The flag a drained socket clears.
    pub(super) fn clear_mask(self) -> u8 {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }
}

/// The readiness of one registered socket and the tasks waiting on it.
#[derive(Default)]
pub(crate) struct ScheduledIo {
    pub(super) bits: Cell<u8>,
    /// The backlog cycle of the socket's last event (0: none yet), which
    /// tells a busy socket from one that was idle (`backlog.rs`).
    pub(super) seen: Cell<u64>,
    reader: Waiters,
    writer: Waiters,
}

/// The tasks waiting for one direction of one socket. Usually one (a stream
/// has one reader and one writer), kept without allocating; more when
/// several tasks share the socket (green threads accepting on one
/// listener), each of which must be woken: a second waiter must not push the
/// first one out.
#[derive(Default)]
pub(super) struct Waiters {
    first: Cell<Option<Waker>>,
    more: RefCell<Vec<Waker>>,
}

impl Waiters {
    /// Remembers `waker` (once: a task polled again is not added twice).
    pub(super) fn add(&self, waker: &Waker) {
        match self.first.take() {
            None => self.first.set(Some(waker.clone())),
            Some(first) => {
                let known = first.will_wake(waker);
                self.first.set(Some(first));
                if !known {
                    let mut more = self.more.borrow_mut();
                    if !more.iter().any(|w| w.will_wake(waker)) {
                        more.push(waker.clone());
                    }
                }
            }
        }
    }

    /// Moves every waiting task into `wake`.
    fn take_into(&self, wake: &mut Vec<Waker>) {
        wake.extend(self.first.take());
        let mut more = self.more.borrow_mut();
        if !more.is_empty() {
            wake.append(&mut more);
        }
    }
}

impl std::fmt::Debug for ScheduledIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledIo")
            .field("bits", &self.bits.get())
            .finish_non_exhaustive()
    }
}

impl ScheduledIo {
    pub(super) fn waiters(&self, direction: Direction) -> &Waiters {
        match direction {
            Direction::Read => &self.reader,
            Direction::Write => &self.writer,
        }
    }

    /// Sets `bits` and moves the wakers of the directions they make ready
    /// into `wake`.
    pub(super) fn set(&self, bits: u8, wake: &mut Vec<Waker>) {
        self.bits.set(self.bits.get() | bits);
        for direction in [Direction::Read, Direction::Write] {
            if bits & direction.ready_mask() != 0 {
                self.waiters(direction).take_into(wake);
            }
        }
    }
}

/// The readiness flags an epoll event sets.
pub(super) fn bits(events: EpollFlags) -> u8 {
    let mut bits = 0;
    if events.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLPRI) {
        bits |= READABLE;
    }
    if events.contains(EpollFlags::EPOLLOUT) {
        bits |= WRITABLE;
    }
    if events.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
        bits |= READ_CLOSED;
    }
    if events.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
        bits |= WRITE_CLOSED;
    }
    bits
}
