//! Quiet connections: a new connection waiting for its client's first
//! bytes counts as busy for [`QUIET_PERIOD`], then as idle (evictable at
//! the cap, closed at once by a stop) until the client speaks. Idle at
//! once, every newcomer of an overloaded shard would evict the one before
//! it ahead of its first request; busy until its first byte, connections
//! that never send one would hold the cap. nginx calls such connections
//! "reusable".
//!
//! The table keeps the quiet connections in one queue in the order they
//! were marked, which is the order their periods end (every period is the
//! same): no timer or clock per connection. One task per serving loop
//! ([`age`]) sleeps until the first period ends, a little later to take
//! several at once, and marks every connection whose period has ended and
//! who is still quiet idle, in the order they were marked.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::net::server::table::{Conns, State};
use crate::time::sleep;

/// How long a connection marked quiet ([`Connection::set_quiet`]) stays
/// busy before it counts as idle, if its handler has not marked it since.
///
/// [`Connection::set_quiet`]: crate::net::Connection::set_quiet
pub const QUIET_PERIOD: Duration = Duration::from_secs(1);

/// How much later than its period's end a quiet connection may turn idle,
/// so that one wake-up of [`age`] serves every connection marked in that
/// time.
const SLACK: Duration = Duration::from_millis(125);

/// The quiet connections of one table, by the end of their period.
#[derive(Default)]
pub(crate) struct QuietQueue {
    /// Entry, generation and mark, end of the quiet period; oldest first.
    /// Entries that were marked since (or ended) are skipped when their
    /// turn comes.
    due: VecDeque<(Mark, Instant)>,
}

/// A connection marked quiet: its entry, generation and quiet mark.
pub(crate) type Mark = (u32, u32, u16);

impl QuietQueue {
    /// Adds a connection marked quiet now; true if the queue was empty.
    pub(crate) fn push(&mut self, marked: Mark, now: Instant) -> bool {
        self.due.push_back((marked, now + QUIET_PERIOD));
        self.due.len() == 1
    }

    /// When the first quiet period ends.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.due.front().map(|&(_, at)| at)
    }

    /// The next connection whose quiet period ended by `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Mark> {
        match self.due.front() {
            Some(&(marked, at)) if at <= now => {
                self.due.pop_front();
                Some(marked)
            }
            _ => None,
        }
    }

    /// Every connection still queued; the queue is left empty.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = (u32, u32)> {
        std::mem::take(&mut self.due)
            .into_iter()
            .map(|((key, generation, _), _)| (key, generation))
    }
}

impl Conns {
    /// Marks a busy connection quiet: idle once its quiet period ends,
    /// unless marked before (`quiet.rs`). While the server stops, it is
    /// asked to close at once, as an idle one is.
    pub(crate) fn set_quiet(&self, key: u32, generation: u32) {
        let first = {
            let mut t = self.table.borrow_mut();
            if t.draining {
                drop(t);
                return self.set_idle(key, generation, true);
            }
            let mark = match t.entry(key, generation) {
                Some(e) if e.state == State::Busy => {
                    e.state = State::Quiet;
                    e.quiet_mark = e.quiet_mark.wrapping_add(1);
                    e.quiet_mark
                }
                _ => return,
            };
            t.quiet.push((key, generation, mark), Instant::now())
        };
        if first {
            if let Some(waker) = self.ager.take() {
                waker.wake();
            }
        }
    }

    /// When the first quiet period ends.
    pub(crate) fn next_quiet(&self) -> Option<Instant> {
        self.table.borrow().quiet.next()
    }

    /// Ready once some connection is quiet; else the waker is kept.
    pub(crate) fn poll_quiet(&self, cx: &Context<'_>) -> Poll<()> {
        if self.next_quiet().is_some() {
            return Poll::Ready(());
        }
        self.ager.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// Marks idle every connection still quiet whose period ended by
    /// `now`, in the order of their periods; returns how many.
    pub(crate) fn age_quiet(&self, now: Instant) -> usize {
        let mut aged = 0;
        loop {
            let next = self.table.borrow_mut().quiet.pop_due(now);
            let Some((key, generation, mark)) = next else {
                break;
            };
            let quiet = {
                let mut t = self.table.borrow_mut();
                t.entry(key, generation)
                    .is_some_and(|e| e.state == State::Quiet && e.quiet_mark == mark)
            };
            if quiet {
                self.set_idle(key, generation, true);
                aged += 1;
            }
        }
        aged
    }
}

/// Marks quiet connections idle as their periods end, for as long as the
/// serving loop that runs it (its task is cancelled with the loop).
pub(crate) async fn age(conns: Rc<Conns>) {
    loop {
        match conns.next_quiet() {
            None => Marked { conns: &conns }.await,
            Some(at) => {
                sleep((at + SLACK).saturating_duration_since(Instant::now())).await;
                conns.age_quiet(Instant::now());
            }
        }
    }
}

/// Resolves once some connection is quiet.
struct Marked<'a> {
    conns: &'a Conns,
}

impl Future for Marked<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.conns.poll_quiet(cx)
    }
}
