//! [`Lanes`]: one wait-free single-producer, single-consumer ring per
//! (sending shard, receiving shard) pair, the fast path of the mesh.
//!
//! Seastar's design: a message between two shards crosses a queue that only
//! those two shards touch, so a send is a slot write and an index store, and
//! a receive is an index load and a slot read, with no lock and no cache
//! line that a third core writes. A shared multi-producer channel (flume)
//! costs a lock and more lines per message; `cargo bench --bench mesh` shows
//! both against the atomic floor.
//!
//! Contract:
//! - Shard `i` owns the sending ends of lanes `i -> j` ([`Outlanes`], kept in
//!   its thread-local context) and the receiving ends of lanes `j -> i`
//!   ([`Inlanes`]). Threads that are not shards use the mailboxes instead.
//! - Bounded: a lane holds `capacity` values. A full lane hands the value
//!   back; [`Outlanes::poll_room`] waits (on a waker, not spinning) until the
//!   receiver has taken some.
//! - Parking: a receiver with nothing to do registers its waker, sets its
//!   `parked` flag and looks at its lanes once more; a sender that pushed
//!   reads the flag after a fence and wakes the receiver only if it is set.
//!   With a fence on each side, one of the two always sees the other.
//! - Closing: when the receiving shard ends, [`Inlanes::close`] sets each
//!   lane's `closed` flag and drains until no sender is mid-push (the
//!   mailbox's protocol, with one sender per lane). A sender either sees
//!   `closed` and gets its value back, or its value is drained and counted.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{fence, AtomicBool};
use std::sync::Arc;
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

use crate::mailbox::MailError;

/// State shared by both ends of every lane, and the receivers' park flags.
struct Shared {
    shards: usize,
    /// `shards * shards` lanes, lane `from -> to` at `from * shards + to`.
    lanes: Box<[Lane]>,
    /// One per receiving shard.
    doors: Box<[Door]>,
}

/// One lane's flags, in two cache lines: the sender writes `sending` on
/// every push, and the receiver reads `blocked` after its pops; on one line,
/// each would steal it from the other on every message.
struct Lane {
    sender: SenderFlags,
    receiver: RoomFlags,
}

#[repr(align(128))]
struct SenderFlags {
    /// The sender is between its `closed` check and the end of its push.
    sending: AtomicBool,
    /// Set once by the receiver as its shard ends.
    closed: AtomicBool,
}

#[repr(align(128))]
struct RoomFlags {
    /// The sender waits for room (see [`Outlanes::poll_room`]).
    blocked: AtomicBool,
    room: AtomicWaker,
}

/// A receiving shard's doorbell.
#[repr(align(128))]
struct Door {
    parked: AtomicBool,
    waker: AtomicWaker,
}

impl Shared {
    fn lane(&self, from: usize, to: usize) -> &Lane {
        &self.lanes[from * self.shards + to]
    }
}

/// The identity of one set of lanes (one runtime's), cheap to clone.
#[derive(Clone)]
pub(crate) struct Lanes {
    shared: Arc<Shared>,
}

impl Lanes {
    /// Lanes between `shards` shards, `capacity` values each; element `i` of
    /// the vector holds shard `i`'s ends.
    pub(crate) fn new<T>(shards: usize, capacity: usize) -> (Lanes, Vec<Ends<T>>) {
        let shared = Arc::new(Shared {
            shards,
            lanes: (0..shards * shards)
                .map(|_| Lane {
                    sender: SenderFlags {
                        sending: AtomicBool::new(false),
                        closed: AtomicBool::new(false),
                    },
                    receiver: RoomFlags {
                        blocked: AtomicBool::new(false),
                        room: AtomicWaker::new(),
                    },
                })
                .collect(),
            doors: (0..shards)
                .map(|_| Door {
                    parked: AtomicBool::new(false),
                    waker: AtomicWaker::new(),
                })
                .collect(),
        });
        // rings[from][to]
        let mut producers: Vec<Vec<rtrb::Producer<T>>> = (0..shards).map(|_| Vec::new()).collect();
        let mut consumers: Vec<Vec<rtrb::Consumer<T>>> = (0..shards).map(|_| Vec::new()).collect();
        for outgoing in producers.iter_mut() {
            for incoming in consumers.iter_mut() {
                let (tx, rx) = rtrb::RingBuffer::new(capacity.max(1));
                outgoing.push(tx);
                incoming.push(rx);
            }
        }
        let ends = producers
            .into_iter()
            .zip(consumers)
            .enumerate()
            .map(|(me, (producers, consumers))| {
                let out = Outlanes {
                    me,
                    shared: shared.clone(),
                    producers,
                };
                let inl = Inlanes {
                    me,
                    shared: shared.clone(),
                    consumers,
                    next: 0,
                };
                (out, inl)
            })
            .collect();
        (Lanes { shared }, ends)
    }

    /// Whether `out` sends on these lanes (and not another runtime's).
    pub(crate) fn owns<T>(&self, out: &Outlanes<T>) -> bool {
        Arc::ptr_eq(&self.shared, &out.shared)
    }
}

/// One shard's ends: what it sends on, what it receives from.
pub(crate) type Ends<T> = (Outlanes<T>, Inlanes<T>);

/// A shard's sending ends: its lanes to every shard (itself included).
pub(crate) struct Outlanes<T> {
    me: usize,
    shared: Arc<Shared>,
    producers: Vec<rtrb::Producer<T>>,
}

impl<T> Outlanes<T> {
    /// Pushes `value` onto the lane to `to` without waiting.
    pub(crate) fn try_send(&mut self, to: usize, value: T) -> Result<(), MailError<T>> {
        let Some(producer) = self.producers.get_mut(to) else {
            return Err(MailError::NoSuchShard(value));
        };
        let lane = self.shared.lane(self.me, to);
        lane.sender.sending.store(true, SeqCst);
        if lane.sender.closed.load(SeqCst) {
            lane.sender.sending.store(false, SeqCst);
            return Err(MailError::Closed(value));
        }
        let pushed = producer.push(value);
        lane.sender.sending.store(false, SeqCst);
        match pushed {
            Err(rtrb::PushError::Full(value)) => Err(MailError::Full(value)),
            Ok(()) => {
                // Pairs with the fence in `Inlanes::poll_park`.
                fence(SeqCst);
                let door = &self.shared.doors[to];
                if door.parked.load(Relaxed) {
                    door.waker.wake();
                }
                Ok(())
            }
        }
    }

    /// Ready once the lane to `to` has room (or is closed, or unknown).
    pub(crate) fn poll_room(&self, to: usize, cx: &mut Context<'_>) -> Poll<()> {
        let Some(producer) = self.producers.get(to) else {
            return Poll::Ready(());
        };
        let lane = self.shared.lane(self.me, to);
        lane.receiver.room.register(cx.waker());
        lane.receiver.blocked.store(true, SeqCst);
        // Pairs with the fence after the receiver's pops.
        fence(SeqCst);
        if producer.slots() > 0 || lane.sender.closed.load(SeqCst) {
            lane.receiver.blocked.store(false, Relaxed);
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Values waiting in this shard's lane to `to`.
    pub(crate) fn queued(&self, to: usize) -> usize {
        self.producers
            .get(to)
            .map_or(0, |p| p.buffer().capacity() - p.slots())
    }
}

/// A shard's receiving ends: the lanes from every shard to it.
pub(crate) struct Inlanes<T> {
    me: usize,
    shared: Arc<Shared>,
    consumers: Vec<rtrb::Consumer<T>>,
    /// The lane to start the next sweep at, so no sender is always last.
    next: usize,
}

impl<T> Inlanes<T> {
    /// Takes every value waiting in every lane, calling `each` on it; returns
    /// how many it took.
    pub(crate) fn drain(&mut self, mut each: impl FnMut(T)) -> usize {
        let n = self.consumers.len();
        let mut taken = 0;
        for k in 0..n {
            let from = (self.next + k) % n;
            let consumer = &mut self.consumers[from];
            let mut here = 0;
            while let Ok(value) = consumer.pop() {
                each(value);
                here += 1;
            }
            if here > 0 {
                taken += here;
                // A sender that found the lane full may wait for room.
                fence(SeqCst);
                let lane = self.shared.lane(from, self.me);
                if lane.receiver.blocked.load(Relaxed) && lane.receiver.blocked.swap(false, SeqCst) {
                    lane.receiver.room.wake();
                }
            }
        }
        self.next = (self.next + 1) % n.max(1);
        taken
    }

    /// Parks: ready at once if a lane has a value, otherwise once a sender
    /// rings. Call [`unpark`](Inlanes::unpark) when done waiting.
    pub(crate) fn poll_park(&self, cx: &mut Context<'_>) -> Poll<()> {
        let door = &self.shared.doors[self.me];
        door.waker.register(cx.waker());
        door.parked.store(true, SeqCst);
        // Pairs with the fence in `Outlanes::try_send`.
        fence(SeqCst);
        if self.any_waiting() {
            door.parked.store(false, Relaxed);
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Looks at every lane up to `looks` times in a row (a tight loop of
    /// loads, no fence); true as soon as one has a value.
    pub(crate) fn look(&self, looks: usize) -> bool {
        let rounds = (looks / self.consumers.len().max(1)).max(1);
        (0..rounds).any(|_| self.any_waiting())
    }

    /// Whether any lane has a value waiting.
    fn any_waiting(&self) -> bool {
        self.consumers.iter().any(|c| !c.is_empty())
    }

    /// Done waiting: senders stop ringing.
    pub(crate) fn unpark(&self) {
        self.shared.doors[self.me].parked.store(false, Relaxed);
    }

    /// Closes every lane to this shard for good and drops what waits in
    /// them (see the module docs); returns how many values it dropped.
    pub(crate) fn close(&mut self) -> usize {
        let me = self.me;
        let shared = self.shared.clone();
        for from in 0..self.consumers.len() {
            shared.lane(from, me).sender.closed.store(true, SeqCst);
        }
        let mut dropped = 0;
        for from in 0..self.consumers.len() {
            let lane = shared.lane(from, me);
            loop {
                while self.consumers[from].pop().is_ok() {
                    dropped += 1;
                }
                if !lane.sender.sending.load(SeqCst) {
                    break;
                }
                std::thread::yield_now();
            }
            while self.consumers[from].pop().is_ok() {
                dropped += 1;
            }
            // A sender waiting for room now finds the lane closed.
            lane.receiver.room.wake();
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn ends(shards: usize, capacity: usize) -> Vec<(Outlanes<u32>, Inlanes<u32>)> {
        Lanes::new(shards, capacity).1
    }

    #[test]
    fn values_cross_in_order_and_a_full_lane_hands_the_value_back() {
        let mut ends = ends(2, 2);
        let (mut in1, mut out0) = {
            let (_, in1) = ends.pop().unwrap();
            let (out0, _) = ends.pop().unwrap();
            (in1, out0)
        };
        out0.try_send(1, 1).unwrap();
        out0.try_send(1, 2).unwrap();
        assert!(matches!(out0.try_send(1, 3), Err(MailError::Full(3))));
        assert!(matches!(out0.try_send(7, 4), Err(MailError::NoSuchShard(4))));
        assert_eq!(out0.queued(1), 2);
        let mut got = Vec::new();
        assert_eq!(in1.drain(|v| got.push(v)), 2);
        assert_eq!(got, [1, 2]);
        assert_eq!(out0.queued(1), 0);
    }

    #[test]
    fn a_sender_waiting_for_room_is_woken_by_the_receiver() {
        let mut ends = ends(2, 1);
        let (_, mut in1) = ends.pop().unwrap();
        let (mut out0, _) = ends.pop().unwrap();
        out0.try_send(1, 1).unwrap();
        let (waker, woken) = counting_waker();
        assert!(out0.poll_room(1, &mut Context::from_waker(&waker)).is_pending());
        in1.drain(drop);
        assert_eq!(woken.load(SeqCst), 1, "the drain woke the blocked sender");
        assert!(out0.poll_room(1, &mut Context::from_waker(&waker)).is_ready());
    }

    #[test]
    fn a_parked_receiver_is_rung_by_a_send_and_only_then() {
        let mut ends = ends(2, 4);
        let (_, in1) = ends.pop().unwrap();
        let (mut out0, _) = ends.pop().unwrap();
        let (waker, woken) = counting_waker();
        assert!(in1.poll_park(&mut Context::from_waker(&waker)).is_pending());
        out0.try_send(1, 9).unwrap();
        assert_eq!(woken.load(SeqCst), 1);
        assert!(in1.poll_park(&mut Context::from_waker(&waker)).is_ready());
        in1.unpark();
        out0.try_send(1, 10).unwrap();
        assert_eq!(woken.load(SeqCst), 1, "an unparked receiver is not rung");
    }

    #[test]
    fn close_drops_and_counts_what_waits_and_refuses_later_sends() {
        let mut ends = ends(2, 4);
        let (_, mut in1) = ends.pop().unwrap();
        let (mut out0, _) = ends.pop().unwrap();
        out0.try_send(1, 1).unwrap();
        out0.try_send(1, 2).unwrap();
        let (waker, woken) = counting_waker();
        assert_eq!(in1.close(), 2);
        assert!(matches!(out0.try_send(1, 3), Err(MailError::Closed(3))));
        assert!(out0.poll_room(1, &mut Context::from_waker(&waker)).is_ready());
        assert_eq!(woken.load(SeqCst), 0);
    }

    fn counting_waker() -> (Waker, Arc<std::sync::atomic::AtomicUsize>) {
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(count.clone()))), count)
    }
}
