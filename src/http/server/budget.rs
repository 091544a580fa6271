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
//! handlers' bodies and has not written to its socket yet. Written bytes
//! include frame headers and control frames (a PING's acknowledgement),
//! so the count errs low by those, by no more than the client reads. The
//! shard adds up every connection's count. An answer body gets its next
//! frame taken while its connection holds less than [`ALLOWANCE`], or
//! while the shard is open: it closes when the sum reaches the limit, and
//! opens again when the sum falls to three quarters of it. Otherwise the
//! stream waits (back-pressure: no error, nothing dropped) until its
//! connection is under its allowance again, or the shard opens. A
//! connection's waiting streams are woken one at a time, in turn, and the
//! shard's all at once when it opens.
//!
//! Against clients that only hold back (grant windows, then read nothing
//! or slowly), the shard's memory for such answers is then at most the
//! limit plus, for each connection, its allowance and one frame (a
//! handler's frame may be larger than the allowance: it is counted whole).
//! The count cannot see inside h2, so a client that also resets answers
//! can make it err, both ways (below): it is a bound on what a shard keeps
//! for clients that do not read, not an exact measure.
//!
//! A connection held to its allowance still keeps its socket fed: a frame
//! is taken as soon as the connection is under its allowance again, and
//! the socket's own buffer (grown by the kernel to megabytes) covers the
//! round trip. What it costs is a poll of a stream per frame.
//!
//! **Answers dropped before their end.** When a client resets a stream
//! (or the body fails, and hyper resets it), h2 drops what it held of the
//! answer, unwritten, and hyper the frame it had in hand. Counted for good,
//! those bytes kept the connection over its allowance, and its next
//! answers waited until the shard opened (`tests/http_h2_server.rs`). So
//! an answer dropped before its last frame was taken takes out of its
//! connection's count what hyper and h2 may have held of it: what it took,
//! up to two frames (the one in hyper's hand, one past the window), and a
//! stream's send buffer more if the connection's writes are blocked (with
//! writes going through, h2 has written the rest). Where some of it had
//! been written after all, the count errs low, by no more than the client
//! read of that answer.
//!
//! An answer reset after its last frame was taken (its body had ended)
//! gives nothing back: what h2 still held of it stays counted until the
//! connection closes, and adds up with each such reset. So an answer that
//! waits on the budget counts as held (`ConnState::answer_refused`): if
//! its connection takes no more than 16 KiB of answers in a
//! `send_timeout`, the connection is closed, and its count given back,
//! instead of waiting for good on a count that cannot fall
//! (`tests/http_h2_server.rs`).

use std::cell::{Cell, RefCell};
use std::task::Context;

use crate::sync::wakers::{self, WakerKey, WakerSet};

/// What a connection may hold whatever the shard's sum: one stream's send
/// buffer (four frames of the default HTTP/2 size), so that a stream whose
/// client keeps its window shut (hyper and h2 hold up to two frames of it)
/// does not hold up the others.
pub(crate) const ALLOWANCE: u64 = 64 << 10;

/// One shard's sum of answer bytes held for HTTP/2 clients, against its limit.
#[derive(Debug)]
pub(crate) struct AnswerBudget {
    limit: u64,
    used: Cell<u64>,
    /// Set when the sum reaches the limit, cleared when it falls to three
    /// quarters of it: while set, no stream over its allowance goes on, so
    /// newcomers do not take the room the waiting ones are woken for.
    closed: Cell<bool>,
    /// Streams waiting for the sum to fall.
    waiting: RefCell<WakerSet>,
}

impl AnswerBudget {
    pub(crate) fn new(limit: u64) -> Self {
        AnswerBudget {
            limit,
            used: Cell::new(0),
            closed: Cell::new(false),
            waiting: RefCell::new(WakerSet::new()),
        }
    }

    /// Bytes held now, by all of the shard's connections.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.get()
    }

    /// Whether streams over their allowance may go on (see `closed`).
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        !self.closed.get()
    }

    /// `bytes` more are held.
    #[inline]
    pub(crate) fn take(&self, bytes: u64) {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used >= self.limit {
            self.closed.set(true);
        }
    }

    /// `bytes` held are gone (written, or no longer in hyper's hands);
    /// once the sum falls to three quarters of the limit, the waiting
    /// streams are woken (not at every write near the limit).
    #[inline]
    pub(crate) fn give_back(&self, bytes: u64) {
        let used = self.used.get().saturating_sub(bytes);
        self.used.set(used);
        if self.closed.get() && used <= self.limit - self.limit / 4 {
            self.reopen();
        }
    }

    #[cold]
    fn reopen(&self) {
        self.closed.set(false);
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

    /// An answer was dropped before its end: h2 dropped what it held of
    /// it, and hyper its frame in hand; up to `bytes` leave the count.
    pub(crate) fn dropped(&self, budget: &AnswerBudget, bytes: u64) {
        let held = self.bytes.get();
        let gone = bytes.min(held);
        self.bytes.set(held - gone);
        budget.give_back(gone);
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
    /// falling to three quarters of the limit opens it again and wakes
    /// every waiting one.
    #[test]
    fn a_connection_over_its_allowance_waits_for_its_writes_or_the_shard_to_open() {
        const K: u64 = 1 << 10;
        let budget = AnswerBudget::new(256 * K);
        let (a, b) = (Held::default(), Held::default());
        let (a_woken, a_waker) = counting();
        let (b_woken, b_waker) = counting();
        let (mut a_waits, mut b_waits) = (Waits::default(), Waits::default());
        let a_cx = Context::from_waker(&a_waker);
        let b_cx = Context::from_waker(&b_waker);
        let woken = || (a_woken.0.load(SeqCst), b_woken.0.load(SeqCst));

        a.took(&budget, 200 * K);
        b.took(&budget, 200 * K);
        assert!(!budget.has_room());
        assert!(!a.may_take(&budget, &mut a_waits, &a_cx));
        assert!(!b.may_take(&budget, &mut b_waits, &b_cx));

        // a writes down to under its allowance: a is woken, b is not (the
        // shard, at 260 KiB, stays closed until 192).
        a.wrote(&budget, 140 * K);
        assert_eq!(woken(), (1, 0));
        assert!(a.may_take(&budget, &mut a_waits, &a_cx));
        b.wrote(&budget, 10 * K);
        assert_eq!(woken(), (1, 0), "closed until three quarters: 250 KiB");
        assert!(!b.may_take(&budget, &mut b_waits, &b_cx));

        // The shard falls to 190 KiB: it opens and wakes every waiting stream.
        b.wrote(&budget, 60 * K);
        assert_eq!(woken(), (1, 1));
        assert!(budget.has_room());
        assert!(b.may_take(&budget, &mut b_waits, &b_cx));

        // A closed connection gives back what it held.
        a.close(&budget);
        b.close(&budget);
        assert_eq!(budget.used(), 0);
    }

    /// An answer dropped before its end takes what it may have held out
    /// of its connection's count (no more than the count), and the
    /// connection's waiting stream is woken once under its allowance.
    #[test]
    fn an_answer_dropped_before_its_end_leaves_the_count() {
        let budget = AnswerBudget::new(0); // never open: the allowance only
        let held = Held::default();
        held.took(&budget, 100 << 10);
        let (woken, waker) = counting();
        let mut waits = Waits::default();
        assert!(!held.may_take(&budget, &mut waits, &Context::from_waker(&waker)));
        held.dropped(&budget, 20 << 10);
        assert_eq!((budget.used(), woken.0.load(SeqCst)), (80 << 10, 0));
        held.dropped(&budget, 20 << 10);
        assert_eq!((budget.used(), woken.0.load(SeqCst)), (60 << 10, 1));
        held.dropped(&budget, 1 << 20);
        assert_eq!(budget.used(), 0, "no more than the count");
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
