//! [`AnswerBudget`]: how many bytes of answers one shard's HTTP/2
//! connections may hold ready for clients that do not take them yet.
//!
//! hyper's HTTP/2 buffers each stream's answer ahead of the socket (up to
//! 64 KiB a stream here, for as much as the client's flow-control window
//! allows), so a client that grants large windows and reads slowly keeps
//! up to 128 streams x 64 KiB = 8 MiB of a shard's memory per connection,
//! for as long as it takes a little now and then (`send_timeout`). HTTP/1
//! needs no budget: hyper takes the next piece of an HTTP/1 answer only
//! once its small write buffer has gone to the socket.
//!
//! Each connection counts the bytes of answer frames hyper took from the
//! handlers' bodies and not yet written to its socket (written bytes
//! include frame headers and control frames, so the count errs low by
//! those). The shard adds up every connection's count. An answer body
//! gets its next frame taken only while its connection holds less than
//! [`ALLOWANCE`], or the shard's sum is under its limit; otherwise its
//! stream waits (back-pressure, nothing is dropped) until its own
//! connection writes, or the shard's sum falls to three quarters of the
//! limit. Every connection may go on with its allowance, so one that reads
//! is never starved by those that do not, only slowed to a frame at a time.
//!
//! The shard's memory for such answers is then at most the limit plus,
//! for each connection, its allowance and one frame (a handler's frame may
//! be larger than the allowance: it is counted whole).
//!
//! A connection held to its allowance still keeps its socket fed: a frame
//! is taken as soon as the last one went into the socket, whose own
//! buffer (grown by the kernel to megabytes) covers the round trip. What
//! it costs is a poll of the stream per frame.
//!
//! Bytes of a stream that the client resets while they wait in hyper's
//! buffer are dropped by h2 unwritten: they stay counted until their
//! connection closes (no memory is held for them; at worst they hold the
//! shard's other connections to their allowance).

use std::cell::{Cell, RefCell};
use std::task::Context;

use crate::sync::wakers::{self, WakerKey, WakerSet};

/// What a connection may hold whatever the shard's sum: one frame of the
/// default HTTP/2 size.
pub(crate) const ALLOWANCE: u64 = 16 << 10;

/// One shard's sum of answer bytes held for HTTP/2 clients, against its limit.
#[derive(Debug)]
pub(crate) struct AnswerBudget {
    limit: u64,
    used: Cell<u64>,
    /// Streams waiting for the sum to fall.
    waiting: RefCell<WakerSet>,
}

impl AnswerBudget {
    pub(crate) fn new(limit: u64) -> Self {
        AnswerBudget {
            limit,
            used: Cell::new(0),
            waiting: RefCell::new(WakerSet::new()),
        }
    }

    /// Bytes held now, by all of the shard's connections.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.get()
    }

    /// Whether the sum is under the limit.
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        self.used.get() < self.limit
    }

    /// `bytes` more are held.
    #[inline]
    pub(crate) fn take(&self, bytes: u64) {
        self.used.set(self.used.get().saturating_add(bytes));
    }

    /// `bytes` held are gone (written, or their connection closed); once
    /// the sum falls to three quarters of the limit, the waiting streams
    /// are woken (not at every write near the limit).
    #[inline]
    pub(crate) fn give_back(&self, bytes: u64) {
        let used = self.used.get().saturating_sub(bytes);
        self.used.set(used);
        if used <= self.limit - self.limit / 4 && self.waiting.borrow().len() > 0 {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        let woken = self.waiting.borrow_mut().take_all();
        wakers::wake_all(woken);
    }

    /// Files the current task to be woken when the sum falls.
    pub(crate) fn wait(&self, key: &mut Option<WakerKey>, cx: &Context<'_>) {
        self.waiting.borrow_mut().register(key, cx.waker());
    }

    /// Forgets a stream that waited.
    pub(crate) fn forget(&self, key: WakerKey) {
        self.waiting.borrow_mut().remove(key);
    }
}

/// One connection's part: the bytes it holds, and its streams waiting.
#[derive(Debug, Default)]
pub(crate) struct Held {
    bytes: Cell<u64>,
    waiting: RefCell<WakerSet>,
    /// Where the next stream to wake is looked for (they are woken in turn).
    next: Cell<usize>,
}

/// A stream's places in the two waiting lists (its connection's and the
/// shard's), while it waits.
#[derive(Debug, Default)]
pub(crate) struct Waits {
    mine: Option<WakerKey>,
    shard: Option<WakerKey>,
}

impl Held {
    /// Whether a stream of this connection may have its next frame taken;
    /// if not, it is filed to be woken (by its connection's writes, or by
    /// the shard's sum falling).
    pub(crate) fn may_take(&self, budget: &AnswerBudget, waits: &mut Waits, cx: &Context<'_>) -> bool {
        if self.bytes.get() < ALLOWANCE || budget.has_room() {
            self.leave(budget, waits);
            return true;
        }
        self.waiting.borrow_mut().register(&mut waits.mine, cx.waker());
        budget.wait(&mut waits.shard, cx);
        false
    }

    /// Takes a stream out of the waiting lists (it goes on, or its answer
    /// is dropped).
    pub(crate) fn leave(&self, budget: &AnswerBudget, waits: &mut Waits) {
        if let Some(key) = waits.mine.take() {
            self.waiting.borrow_mut().remove(key);
        }
        if let Some(key) = waits.shard.take() {
            budget.forget(key);
        }
    }

    /// A stream's answer is dropped: out of the lists, and its turn, if it
    /// had one, goes to the next.
    pub(crate) fn quit(&self, budget: &AnswerBudget, waits: &mut Waits) {
        self.leave(budget, waits);
        self.pass();
    }

    /// hyper took a frame of `bytes`.
    #[inline]
    pub(crate) fn took(&self, budget: &AnswerBudget, bytes: u64) {
        self.bytes.set(self.bytes.get().saturating_add(bytes));
        budget.take(bytes);
        self.pass();
    }

    /// `bytes` were written to the socket: they leave the count (as far as
    /// it goes).
    #[inline]
    pub(crate) fn wrote(&self, budget: &AnswerBudget, bytes: u64) {
        let held = self.bytes.get();
        if held == 0 {
            return;
        }
        let gone = bytes.min(held);
        self.bytes.set(held - gone);
        budget.give_back(gone);
        self.pass();
    }

    /// While the connection is under its allowance, wakes one of its
    /// waiting streams, in turn: one at a time, since a frame taken may use
    /// the allowance up (waking all of up to 128 streams for every write
    /// cost a poll of each). Whatever then keeps a woken stream from taking
    /// a frame (its body has none ready, it ends, it is dropped) passes the
    /// turn on, so a stream with a frame ready is never left waiting while
    /// there is room.
    #[inline]
    pub(crate) fn pass(&self) {
        if self.bytes.get() < ALLOWANCE && self.waiting.borrow().len() > 0 {
            self.wake_one();
        }
    }

    #[cold]
    fn wake_one(&self) {
        let woken = self.waiting.borrow_mut().take_one(self.next.get());
        if let Some((waker, next)) = woken {
            self.next.set(next);
            wakers::wake_all([waker]);
        }
    }

    /// The connection closed: what it held is given back.
    pub(crate) fn close(&self, budget: &AnswerBudget) {
        budget.give_back(self.bytes.replace(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// Past the shard's limit a connection goes on only within its
    /// allowance; its own write wakes its stream, and the shard's sum
    /// falling to three quarters of the limit wakes every waiting one.
    #[test]
    fn a_connection_over_its_allowance_waits_for_its_writes_or_the_shards_room() {
        let budget = AnswerBudget::new(64 << 10);
        let (a, b) = (Held::default(), Held::default());
        let (a_woken, a_waker) = counting();
        let (b_woken, b_waker) = counting();
        let (mut a_waits, mut b_waits) = (Waits::default(), Waits::default());
        let a_cx = Context::from_waker(&a_waker);
        let b_cx = Context::from_waker(&b_waker);

        a.took(&budget, 40 << 10);
        b.took(&budget, 40 << 10);
        assert_eq!(budget.used(), 80 << 10);
        assert!(!a.may_take(&budget, &mut a_waits, &a_cx));
        assert!(!b.may_take(&budget, &mut b_waits, &b_cx));

        // a writes down to under its allowance: a is woken, b is not (the
        // shard is at 50 KiB, over three quarters of 64).
        a.wrote(&budget, 30 << 10);
        assert_eq!((a_woken.0.load(SeqCst), b_woken.0.load(SeqCst)), (1, 0));
        assert!(a.may_take(&budget, &mut a_waits, &a_cx));

        // b writes 8 KiB: still over its allowance, but the shard falls to 42
        // KiB, under 48: every stream still waiting is woken.
        b.wrote(&budget, 8 << 10);
        assert_eq!(b_woken.0.load(SeqCst), 1);
        assert!(
            b.may_take(&budget, &mut b_waits, &b_cx),
            "the shard has room again"
        );

        // A closed connection gives back what it held.
        a.close(&budget);
        b.close(&budget);
        assert_eq!(budget.used(), 0);
    }

    /// Under its allowance, a connection wakes its waiting streams one at
    /// a time (a frame taken may use the allowance up), in turn; one woken
    /// that takes no frame passes the turn on.
    #[test]
    fn a_connections_streams_are_woken_one_at_a_time_in_turn() {
        let budget = AnswerBudget::new(0); // never room: the allowance only
        let held = Held::default();
        held.took(&budget, ALLOWANCE);
        let streams: Vec<(Arc<Count>, Waker)> = (0..3).map(|_| counting()).collect();
        let mut waits: Vec<Waits> = (0..3).map(|_| Waits::default()).collect();
        let poll = |held: &Held, i: usize, waits: &mut Waits| {
            held.may_take(&budget, waits, &Context::from_waker(&streams[i].1))
        };
        for (i, w) in waits.iter_mut().enumerate() {
            assert!(!poll(&held, i, w));
        }
        let woken = || streams.iter().map(|(c, _)| c.0.load(SeqCst)).collect::<Vec<_>>();

        held.wrote(&budget, 1);
        assert_eq!(woken(), [1, 0, 0], "one turn for one write");
        held.pass(); // the first had no frame ready
        assert_eq!(woken(), [1, 1, 0]);
        held.pass();
        assert_eq!(woken(), [1, 1, 1]);

        // The first takes a frame; the other two find the allowance used
        // up and wait again. The next write's turn goes to the second
        // (after the last one woken), not back to the first.
        assert!(poll(&held, 0, &mut waits[0]));
        held.took(&budget, ALLOWANCE);
        assert!(!poll(&held, 1, &mut waits[1]));
        assert!(!poll(&held, 2, &mut waits[2]));
        held.wrote(&budget, ALLOWANCE);
        assert_eq!(woken(), [1, 2, 1]);
        // The second is dropped without polling: its turn goes on.
        held.quit(&budget, &mut waits[1]);
        assert_eq!(woken(), [1, 2, 2]);
    }

    /// Written bytes beyond what is counted (frame headers, control frames)
    /// do not make the count go below zero or wrap.
    #[test]
    fn writes_beyond_the_count_leave_it_at_zero() {
        let budget = AnswerBudget::new(1 << 20);
        let held = Held::default();
        held.took(&budget, 100);
        held.wrote(&budget, 1000);
        held.wrote(&budget, 1000);
        assert_eq!(budget.used(), 0);
        held.took(&budget, 10);
        assert_eq!(budget.used(), 10);
    }
}
