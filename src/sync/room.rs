//! [`Room`]: where senders to a full mailbox wait for room, outside the
//! mailbox's [`Gate`](super::gate::Gate).
//!
//! A sender's pass through the gate covers only a non-blocking push, so a
//! closer never waits on a sender that waits for room (one that is never
//! polled again included). A sender that found the mailbox full waits here
//! instead, then tries again:
//!
//! - It registers its waker ([`RoomWait`]), sets `blocked`, fences, and
//!   tries once more. A receiver that took a value fences, and if `blocked`
//!   is set, clears it and wakes *every* registered waiter. With a fence on
//!   each side, either the sender sees the room or the receiver sees
//!   `blocked`: no wake-up is lost.
//! - Every waiter is woken, not only the oldest: the waiters are futures on
//!   any thread, and one that is kept but never polled again (a lost
//!   `select` arm, a paused task) would hold up every waiter behind it if
//!   the room were handed down a queue, as the lanes do among one shard's
//!   tasks. The cost, one wake per waiter per value taken, falls only on
//!   senders that wait. So waiting senders are not served in arrival order;
//!   sends from one thread, one after the other, still arrive in order.
//! - [`Room::close`], after the gate is closed, wakes every waiter; each
//!   finds the gate closed and gets its value back.

use std::collections::btree_map::{BTreeMap, Entry};
use std::task::Waker;

use super::atomic::fence;
use super::atomic::AtomicBool;
use super::atomic::Ordering::{Relaxed, SeqCst};
use super::{lock, Arc, Mutex};

/// Senders waiting for room in one mailbox; see the module docs.
pub(crate) struct Room {
    /// Some waiter registered since the last wake-all.
    blocked: AtomicBool,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    /// Registered wakers, by waiter id (woken in that order):
    /// registering, re-registering and leaving are O(log n) (a list
    /// searched each time made thousands of waiting senders quadratic).
    wakers: BTreeMap<u64, Waker>,
    next_id: u64,
}

/// One sender's registration in a [`Room`]; leaves it on drop.
pub(crate) struct RoomWait {
    room: Arc<Room>,
    id: u64,
}

impl Room {
    pub(crate) fn new() -> Self {
        Room {
            blocked: AtomicBool::new(false),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// Registers `waker` for `wait` (creating the registration the first
    /// time), announces it, and fences: after this, a receiver that takes a
    /// value wakes it, so the caller must try to push once more before it
    /// waits.
    pub(crate) fn register(room: &Arc<Room>, wait: &mut Option<RoomWait>, waker: &Waker) {
        {
            let mut waiters = lock(&room.waiters);
            let id = match wait {
                Some(wait) => wait.id,
                None => {
                    let id = waiters.next_id;
                    waiters.next_id += 1;
                    *wait = Some(RoomWait {
                        room: room.clone(),
                        id,
                    });
                    id
                }
            };
            match waiters.wakers.entry(id) {
                Entry::Occupied(w) if w.get().will_wake(waker) => {}
                Entry::Occupied(mut w) => *w.get_mut() = waker.clone(),
                Entry::Vacant(w) => {
                    w.insert(waker.clone());
                }
            }
        }
        room.blocked.store(true, SeqCst);
        // Pairs with the fence in `room_made`.
        fence(SeqCst);
    }

    /// After a receiver took a value: wakes every waiter, if any waits.
    pub(crate) fn room_made(&self) {
        // Pairs with the fence in `register`.
        fence(SeqCst);
        if self.blocked.load(Relaxed) && self.blocked.swap(false, SeqCst) {
            self.wake_all();
        }
    }

    /// After the gate closed: wakes every waiter, which finds it closed.
    pub(crate) fn close(&self) {
        self.blocked.store(false, SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        let woken = std::mem::take(&mut lock(&self.waiters).wakers);
        super::wakers::wake_all(woken.into_values());
    }

    /// Senders registered and not yet woken.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn waiting(&self) -> usize {
        lock(&self.waiters).wakers.len()
    }
}

impl Drop for RoomWait {
    fn drop(&mut self) {
        lock(&self.room.waiters).wakers.remove(&self.id);
    }
}
