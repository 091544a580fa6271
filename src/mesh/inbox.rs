//! A shard's [`Inbox`] and the green thread that serves it ([`drain`]).
//!
//! The loop takes the messages waiting in the shard's lanes (every round)
//! and its mailbox (every few rounds), at most [`MESSAGES_PER_ROUND`] at a
//! time and none that arrived during the round, runs each, then yields to
//! the shard's other tasks. A message that keeps sending itself back to its
//! own shard therefore runs once per round, and the shard's timers, sockets
//! and stop still get their turn. After the last message it keeps looking
//! for `SHARDLET_SPIN_US`, then parks.

use std::cell::RefCell;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future::poll_fn;

use super::job::Envelope;
use crate::sync::lanes::Inlanes;
use crate::sync::mailbox::Mailbox;

/// A shard's receiving ends: its lanes from every shard, and its mailbox.
pub(crate) struct Inbox {
    pub(super) lanes: Inlanes<Envelope>,
    pub(super) mail: Mailbox<Envelope>,
}

/// How many messages one round of the inbox loop runs at most before it
/// yields to the shard's other tasks.
pub(crate) const MESSAGES_PER_ROUND: usize = 256;

/// How many times a spinning shard looks at its lanes in a tight loop
/// before it yields to its other tasks (divided over the lanes): a message
/// that lands meanwhile is taken within nanoseconds instead of after a trip
/// through the executor's loop; other tasks on a spinning shard wait at
/// most about half a microsecond for their turn.
const LOOKS_PER_ROUND: usize = 512;

/// How often (in polling rounds) a busy or spinning shard looks at its mailbox.
const MAIL_EVERY: u32 = 8;

/// A shard's inbox loop: runs every message, a bounded batch per round,
/// keeps looking for `SHARDLET_SPIN_US` after the last one, then parks.
pub(crate) async fn drain(inbox: Rc<RefCell<Inbox>>) {
    let window = crate::config::current::with_config(|c| c.spin()).unwrap_or_default();
    let mail = inbox.borrow().mail.clone();
    let mut woken_by: Option<Envelope> = None;
    let mut idle = Idle::new(window);
    let mut round = 0u32;
    loop {
        // The mailbox (other threads: the slow path, and a lock to look at
        // it) every few rounds; the lanes every round. (The inbox is
        // borrowed only inside each poll, never across a wait.)
        round = round.wrapping_add(1);
        let with_mail = round.is_multiple_of(MAIL_EVERY);
        let ran = poll_fn(|cx| {
            let mut ran = 0;
            if let Some(first) = woken_by.take() {
                first.run(cx);
                ran += 1;
            }
            let budget = MESSAGES_PER_ROUND - ran;
            ran += inbox
                .borrow_mut()
                .lanes
                .drain(budget, |envelope| envelope.run(cx));
            if with_mail {
                // At most what was there when we looked, within the budget.
                let budget = mail.len().min(MESSAGES_PER_ROUND.saturating_sub(ran));
                for envelope in std::iter::from_fn(|| mail.try_recv()).take(budget) {
                    envelope.run(cx);
                    ran += 1;
                }
            }
            Poll::Ready(ran)
        })
        .await;
        if ran > 0 {
            idle = Idle::new(window);
        } else if !window.is_zero() && inbox.borrow().lanes.look(LOOKS_PER_ROUND) {
            // Something landed while we looked: take it without a trip
            // through the executor's loop.
            continue;
        } else if with_mail && idle.over() {
            // Looking for work and finding none is idle time (metrics).
            crate::task::counters::idle_poll();
            let woke = futures_lite::future::or(async { mail.recv().await.map(Some) }, async {
                poll_fn(|cx| inbox.borrow().lanes.poll_park(cx)).await;
                Ok(None)
            })
            .await;
            inbox.borrow().lanes.unpark();
            match woke {
                Ok(first) => woken_by = first,
                Err(flume::RecvError::Disconnected) => return,
            }
            idle = Idle::new(window);
            continue;
        }
        if ran == 0 {
            crate::task::counters::idle_poll();
        }
        glommio::executor().yield_task_queue_now().await;
    }
}

/// A spin window that reads the clock only every [`Idle::CHECK_EVERY`]
/// polls, so that looking at the clock does not slow the polling down.
struct Idle {
    window: Duration,
    polls: u32,
    since: Option<Instant>,
}

impl Idle {
    const CHECK_EVERY: u32 = 32;

    fn new(window: Duration) -> Self {
        Idle {
            window,
            polls: 0,
            since: None,
        }
    }

    /// Counts one fruitless poll; true once the window has run out.
    fn over(&mut self) -> bool {
        if self.window.is_zero() {
            return true;
        }
        self.polls += 1;
        if !self.polls.is_multiple_of(Self::CHECK_EVERY) {
            return false;
        }
        self.since.get_or_insert_with(Instant::now).elapsed() >= self.window
    }
}

/// Polls `try_take` for the shard's spin window (yielding to the shard's
/// other tasks between tries); `None` once the window has run out, or off a
/// shard, where there is nothing to yield to.
pub(super) async fn spin<T>(mut try_take: impl FnMut() -> Option<T>) -> Option<T> {
    let window = crate::config::current::with_config(|c| c.spin())?;
    let mut idle = Idle::new(window);
    loop {
        if let Some(value) = try_take() {
            return Some(value);
        }
        crate::task::counters::idle_poll();
        if idle.over() {
            return None;
        }
        glommio::executor().yield_task_queue_now().await;
    }
}
