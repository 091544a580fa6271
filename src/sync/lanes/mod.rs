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
//!   the mesh's thread-local, `mesh/here.rs`) and the receiving ends of lanes `j -> i`
//!   ([`Inlanes`]). Threads that are not shards use the mailboxes instead.
//! - Bounded: a lane holds `capacity` values. A full lane hands the value
//!   back to [`Outlanes::try_send`]; [`Outlanes::poll_send`] waits for room.
//! - **Waiting for room.** Any number of the sending shard's tasks may wait
//!   on one lane. They queue in arrival order ([`RoomWait`]), and only the
//!   head of the queue waits on the receiver: it registers the lane's
//!   `room` waker, sets `blocked`, fences, and looks at the ring once more.
//!   A receiver that popped fences, and wakes `room` if `blocked` is set.
//!   With a fence on each side, either the head sees the room or the
//!   receiver sees `blocked`. A head that sends (or finds the lane closed,
//!   or gives up) wakes the next waiter, which becomes head and does the
//!   same: the baton passes down the queue, one wake per waiter, and no
//!   waiter depends on a waker that another one replaced. New senders queue
//!   behind waiting ones instead of taking the room they wait for.
//! - **Draining** takes at most the values that were in a lane when the
//!   drain looked at it, and at most `budget` in all, so a message that
//!   sends itself back to its own shard runs once per drain, not forever.
//! - Parking: a receiver with nothing to do registers its waker, sets its
//!   `parked` flag and looks at its lanes once more; a sender that pushed
//!   fences, reads the flag and wakes the receiver only if it is set.
//! - Closing: when the receiving shard ends, [`Inlanes::close`] closes each
//!   lane's [`Gate`] and drains it, handing each value to its caller; then
//!   it wakes the lane's waiting senders, which find it closed.
//! - A sender's waker is woken by the receiving shard (room made, closed)
//!   under a catch: its panic is counted and logged, and goes no further.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use super::atomic::Ordering::{Relaxed, SeqCst};
use super::atomic::{fence, AtomicBool, AtomicUsize};
use super::gate::Gate;
use super::mailbox::MailError;
use super::ring::{Consumer, Producer, PushError, RingBuffer};
use super::{lock, Arc, AtomicWaker, Mutex};

/// State shared by both ends of every lane, and the receivers' park flags.
struct Shared {
    shards: usize,
    /// `shards * shards` lanes, lane `from -> to` at `from * shards + to`.
    lanes: Box<[Lane]>,
    /// One per receiving shard.
    doors: Box<[Door]>,
}

/// One lane's flags, in two cache lines: the sender writes its side on
/// every push, and the receiver reads `blocked` after its pops; on one
/// line, each would steal it from the other on every message.
struct Lane {
    sender: SenderSide,
    receiver: RoomFlags,
}

/// Touched by the sending shard on every push (and by the receiver once, to close).
#[repr(align(128))]
struct SenderSide {
    gate: Gate,
    /// Tasks of the sending shard waiting for room, for a quick look.
    waiters: AtomicUsize,
    /// The same tasks, in arrival order. Only the sending shard locks it
    /// (a `Mutex` because a [`RoomWait`] cleans up from its `Drop`).
    queue: Mutex<RoomQueue>,
}

#[repr(align(128))]
struct RoomFlags {
    /// The head waiter waits for room (see the module docs).
    blocked: AtomicBool,
    room: AtomicWaker,
}

/// A receiving shard's doorbell.
#[repr(align(128))]
struct Door {
    parked: AtomicBool,
    waker: AtomicWaker,
}

/// Senders waiting for room in one lane, by ticket, oldest first. Tickets
/// only grow, so the queue is sorted by them and a sender finds its entry
/// by binary search; one that leaves from the middle (dropped unsent)
/// leaves a gap (`None`), swept when such a leave finds gaps over half the
/// queue (those before the head go with it). Every step is
/// O(log n) amortised: tens of thousands of tasks waiting on one lane cost
/// each of them no more than a few (a linear search made them quadratic).
#[derive(Default)]
struct RoomQueue {
    waiting: VecDeque<(u64, Option<Waker>)>,
    /// Gaps in `waiting`; the front is never one.
    gaps: usize,
    next_ticket: u64,
}

impl RoomQueue {
    /// Queues a new sender; its ticket.
    fn join(&mut self, waker: &Waker) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiting.push_back((ticket, Some(waker.clone())));
        ticket
    }

    fn is_head(&self, ticket: u64) -> bool {
        self.waiting.front().is_some_and(|(t, _)| *t == ticket)
    }

    fn find(&self, ticket: u64) -> Option<usize> {
        self.waiting.binary_search_by_key(&ticket, |(t, _)| *t).ok()
    }

    /// Stores `waker` as `ticket`'s.
    fn update(&mut self, ticket: u64, waker: &Waker) {
        let Some(at) = self.find(ticket) else { return };
        if let (_, Some(w)) = &mut self.waiting[at] {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
        }
    }

    /// Takes `ticket` out of the queue; the new head's waker if `ticket` was the head.
    fn leave(&mut self, ticket: u64) -> Option<Waker> {
        let at = self.find(ticket)?;
        if at > 0 {
            if self.waiting[at].1.take().is_some() {
                self.gaps += 1;
                if self.gaps * 2 > self.waiting.len() {
                    self.waiting.retain(|(_, w)| w.is_some());
                    self.gaps = 0;
                }
            }
            return None;
        }
        self.waiting.pop_front();
        while let Some((_, None)) = self.waiting.front() {
            self.waiting.pop_front();
            self.gaps -= 1;
        }
        self.waiting.front().and_then(|(_, w)| w.clone())
    }

    /// Senders queued.
    #[cfg(all(test, not(loom)))]
    fn len(&self) -> usize {
        self.waiting.len() - self.gaps
    }
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
        let capacity = capacity.max(1);
        let shared = Arc::new(Shared {
            shards,
            lanes: (0..shards * shards)
                .map(|_| Lane {
                    sender: SenderSide {
                        gate: Gate::new(),
                        waiters: AtomicUsize::new(0),
                        queue: Mutex::new(RoomQueue::default()),
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
        let mut producers: Vec<Vec<Producer<T>>> = (0..shards).map(|_| Vec::new()).collect();
        let mut consumers: Vec<Vec<Consumer<T>>> = (0..shards).map(|_| Vec::new()).collect();
        for outgoing in producers.iter_mut() {
            for incoming in consumers.iter_mut() {
                let (tx, rx) = RingBuffer::new(capacity);
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
                    capacity,
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
    capacity: usize,
    shared: Arc<Shared>,
    producers: Vec<Producer<T>>,
}

/// A sender's place in a lane's queue of tasks waiting for room; leaving
/// the queue (sent, or dropped unsent) passes the baton to the next one.
pub(crate) struct RoomWait {
    shared: Arc<Shared>,
    lane: usize,
    ticket: Option<u64>,
}

impl RoomWait {
    fn side(&self) -> &SenderSide {
        &self.shared.lanes[self.lane].sender
    }

    /// Leaves the queue and wakes the new head, if this was the head.
    fn leave(&mut self) {
        let Some(ticket) = self.ticket.take() else { return };
        let side = self.side();
        let next = {
            let mut queue = lock(&side.queue);
            side.waiters.fetch_sub(1, Relaxed);
            queue.leave(ticket)
        };
        if let Some(next) = next {
            next.wake();
        }
    }
}

impl Drop for RoomWait {
    fn drop(&mut self) {
        self.leave();
    }
}

impl<T> Outlanes<T> {
    /// Pushes `value` onto the lane to `to` without waiting (it may pass
    /// senders that wait for room: use [`poll_send`](Outlanes::poll_send)
    /// to wait in turn).
    pub(crate) fn try_send(&mut self, to: usize, value: T) -> Result<(), MailError<T>> {
        let Some(producer) = self.producers.get_mut(to) else {
            return Err(MailError::NoSuchShard(value));
        };
        push(&self.shared, self.me, to, producer, value)
    }

    /// Sends `*value` down the lane to `to`, waiting in turn while it is
    /// full. `wait` keeps this sender's place between polls: start with
    /// `None`, keep it for as long as the send is pending, drop it to give
    /// up (the value stays in `*value` until it is sent).
    pub(crate) fn poll_send(
        &mut self,
        to: usize,
        value: &mut Option<T>,
        wait: &mut Option<RoomWait>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), MailError<T>>> {
        let me = self.me;
        let Some(producer) = self.producers.get_mut(to) else {
            let value = value.take().expect("a pending send holds its value");
            return Poll::Ready(Err(MailError::NoSuchShard(value)));
        };
        let lane = self.shared.lane(me, to);
        // The fast path: nobody waits for room here.
        if wait.is_none() && lane.sender.waiters.load(Relaxed) == 0 {
            let v = value.take().expect("a pending send holds its value");
            match push(&self.shared, me, to, producer, v) {
                Err(MailError::Full(back)) => *value = Some(back),
                done => return Poll::Ready(done),
            }
        }
        let wait = wait.get_or_insert_with(|| {
            let ticket = lock(&lane.sender.queue).join(cx.waker());
            lane.sender.waiters.fetch_add(1, Relaxed);
            RoomWait {
                shared: self.shared.clone(),
                lane: me * self.shared.shards + to,
                ticket: Some(ticket),
            }
        });
        let ticket = wait.ticket.expect("a pending send keeps its ticket");
        {
            let mut queue = lock(&wait.side().queue);
            queue.update(ticket, cx.waker());
            if !queue.is_head(ticket) {
                return Poll::Pending;
            }
        }
        loop {
            let v = value.take().expect("a pending send holds its value");
            match push(&self.shared, me, to, producer, v) {
                Err(MailError::Full(back)) => *value = Some(back),
                done => {
                    wait.leave();
                    return Poll::Ready(done);
                }
            }
            lane.receiver.room.register(cx.waker());
            lane.receiver.blocked.store(true, SeqCst);
            // Pairs with the fence after the receiver's pops.
            fence(SeqCst);
            if producer.slots() == 0 && !lane.sender.gate.is_closed() {
                return Poll::Pending;
            }
        }
    }

    /// Values waiting in this shard's lane to `to`.
    pub(crate) fn queued(&self, to: usize) -> usize {
        self.producers.get(to).map_or(0, |p| self.capacity - p.slots())
    }

    /// This shard's tasks waiting for room in its lane to `to`.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn waiting(&self, to: usize) -> usize {
        if to >= self.producers.len() {
            return 0;
        }
        self.shared.lane(self.me, to).sender.waiters.load(Relaxed)
    }
}

/// One push through the lane's gate; rings the receiver if it is parked.
fn push<T>(
    shared: &Shared,
    from: usize,
    to: usize,
    producer: &mut Producer<T>,
    value: T,
) -> Result<(), MailError<T>> {
    let lane = shared.lane(from, to);
    let Some(pass) = lane.sender.gate.enter() else {
        return Err(MailError::Closed(value));
    };
    let pushed = producer.push(value);
    drop(pass);
    match pushed {
        Err(PushError::Full(value)) => Err(MailError::Full(value)),
        Ok(()) => {
            // Pairs with the fence in `Inlanes::poll_park`.
            fence(SeqCst);
            let door = &shared.doors[to];
            if door.parked.load(Relaxed) {
                door.waker.wake();
            }
            Ok(())
        }
    }
}

/// A shard's receiving ends: the lanes from every shard to it.
pub(crate) struct Inlanes<T> {
    me: usize,
    shared: Arc<Shared>,
    consumers: Vec<Consumer<T>>,
    /// The lane to start the next sweep at, so no sender is always last.
    next: usize,
}

impl<T> Inlanes<T> {
    /// Takes the values waiting in every lane, at most `budget` in all and
    /// none that arrived after the drain looked at their lane, calling `each`
    /// on them; returns how many it took.
    pub(crate) fn drain(&mut self, budget: usize, mut each: impl FnMut(T)) -> usize {
        let n = self.consumers.len();
        let mut taken = 0;
        for k in 0..n {
            if taken >= budget {
                break;
            }
            let from = (self.next + k) % n;
            let consumer = &mut self.consumers[from];
            let here = consumer.slots().min(budget - taken);
            for _ in 0..here {
                match consumer.pop() {
                    Ok(value) => each(value),
                    Err(_) => break,
                }
            }
            if here > 0 {
                taken += here;
                self.room_made(from);
            }
        }
        self.next = (self.next + 1) % n.max(1);
        taken
    }

    /// After pops from lane `from`: wakes its head waiter, if it waits.
    fn room_made(&self, from: usize) {
        // Pairs with the fence in `Outlanes::poll_send`.
        fence(SeqCst);
        let lane = self.shared.lane(from, self.me);
        if lane.receiver.blocked.load(Relaxed) && lane.receiver.blocked.swap(false, SeqCst) {
            wake_sender(&lane.receiver.room);
        }
    }

    /// Parks: ready at once if a lane has a value, otherwise once a sender
    /// rings. Call [`unpark`](Inlanes::unpark) when done waiting.
    pub(crate) fn poll_park(&self, cx: &mut Context<'_>) -> Poll<()> {
        let door = &self.shared.doors[self.me];
        door.waker.register(cx.waker());
        door.parked.store(true, SeqCst);
        // Pairs with the fence in `push`.
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

    /// Values waiting for this shard, in all its lanes.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn queued(&self) -> usize {
        self.consumers.iter().map(|c| c.slots()).sum()
    }

    /// Done waiting: senders stop ringing.
    pub(crate) fn unpark(&self) {
        self.shared.doors[self.me].parked.store(false, Relaxed);
    }

    /// Closes every lane to this shard for good and hands each value still
    /// in them to `each` (see the module docs); senders waiting for room
    /// are woken and find the lane closed.
    pub(crate) fn close(&mut self, mut each: impl FnMut(T)) {
        let shared = self.shared.clone();
        for (from, consumer) in self.consumers.iter_mut().enumerate() {
            let lane = shared.lane(from, self.me);
            lane.sender.gate.close(|| {
                while let Ok(value) = consumer.pop() {
                    each(value);
                }
            });
            lane.receiver.blocked.store(false, SeqCst);
            wake_sender(&lane.receiver.room);
        }
    }
}

/// Wakes a lane's head waiter from the receiving shard. Its waker is the
/// sender's (any code that polled a send on that shard) and may panic: the
/// panic is caught, counted and logged, so it does not end the receiver's
/// inbox loop, which calls this.
fn wake_sender(room: &AtomicWaker) {
    if let Some(waker) = room.take() {
        super::wakers::wake_all_counted(std::iter::once(waker));
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
