//! [`Watch`]: a request's two time limits on one timer.
//!
//! A request has a limit of its own (the whole of it, redirects included)
//! and an idle read limit for each wait on the server (the response head,
//! each piece of the body). With a timer for each, every request armed and
//! removed at least two (the response head is never there at the first
//! look): each a clock read, an allocation, and an insert and a remove in
//! the reactor's ordered timer map.
//!
//! Here the request's one timer is armed for the earliest moment any of its
//! limits could pass: its own deadline, or the idle limit counted from the
//! request's start (every read deadline is later than that, as every wait
//! starts later). A request that ends before then (nearly all) costs one
//! timer. When the timer fires it looks at the deadlines as they are now: a
//! passed read deadline ends that wait with [`Elapsed`] (the request reports
//! a read time-out, as before), a passed request deadline ends the request;
//! otherwise it is armed again for the next one. A wait that begins while
//! the timer is armed for a later moment (it fired between waits, during a
//! slow connect, and was armed again for the request's deadline) arms it
//! again for the wait's own deadline.
//!
//! While a request's body is being sent, the server taking a piece of it is
//! progress too: a wait whose deadline passes with pieces taken since it
//! began (or was last put off) is put off by the idle limit, so a long
//! upload to a server that keeps reading it is not cut short, and one the
//! server stops reading still ends.

use std::cell::{Cell, OnceCell};
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use glommio::timer::Timer;

use crate::time::FOREVER;
use crate::Elapsed;

/// What a request's timer watches: the deadline of the read it waits on.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// The deadline of the wait in progress, if any.
    read: Cell<Option<Instant>>,
    /// Set by the timer once `read` has passed: the wait ends.
    expired: Cell<bool>,
    /// Pieces of the request's body the connection has taken so far.
    /// Made when a body is sent (a request without one allocates nothing).
    sent: OnceCell<Sent>,
    /// `sent` when the wait in progress began or was last put off.
    mark: Cell<u64>,
}

/// A count of the request body's pieces taken, kept by the body (which
/// hyper owns) and read by the request's timer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sent(Rc<Cell<u64>>);

impl Sent {
    /// One more piece was taken.
    #[inline]
    pub(crate) fn bump(&self) {
        self.0.set(self.0.get() + 1);
    }

    fn get(&self) -> u64 {
        self.0.get()
    }
}

impl Watch {
    /// The counter a request body bumps for each piece taken.
    pub(crate) fn sent(&self) -> Sent {
        self.sent.get_or_init(Sent::default).clone()
    }

    /// Pieces of the body taken so far.
    fn pieces(&self) -> u64 {
        self.sent.get().map_or(0, Sent::get)
    }

    /// Runs `fut`, a wait on the server, for at most `idle`. A future ready
    /// at its first poll (a body piece read with the head) sets no deadline.
    ///
    /// Only a future run by [`Watch::run`] on this watch may call this: its
    /// timer is what ends the wait.
    pub(crate) async fn within<F: Future>(&self, idle: Duration, fut: F) -> Result<F::Output, Elapsed> {
        let mut fut = pin!(fut);
        let mut waiting = false;
        let out = poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if !waiting {
                waiting = true;
                self.expired.set(false);
                self.mark.set(self.pieces());
                self.read.set(Some(crate::time::after(idle)));
            } else if self.expired.get() {
                return Poll::Ready(Err(Elapsed(idle)));
            }
            Poll::Pending
        })
        .await;
        if waiting {
            self.read.set(None);
        }
        out
    }

    /// Runs `fut` (a whole request, whose waits go through
    /// [`Watch::within`] with `idle`) for at most `limit`.
    pub(crate) async fn run<F: Future>(
        &self,
        limit: Duration,
        idle: Duration,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        let (limit, idle) = (limit.min(FOREVER), idle.min(FOREVER));
        let start = Instant::now();
        let deadline = start + limit;
        let mut fut = pin!(fut);
        // The timer, and the moment it is armed for.
        let mut timer: Option<(Timer, Instant)> = None;
        poll_fn(|cx| loop {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            let (timer, armed) = match &mut timer {
                Some((timer, armed)) => {
                    // A wait that began after the timer was armed again for
                    // a later moment (it fired between waits: during a
                    // connect, a redirect) ends before that moment.
                    if let Some(read) = self.read.get().filter(|read| read < armed) {
                        *timer = Timer::new(read.saturating_duration_since(Instant::now()));
                        *armed = read;
                    }
                    (timer, armed)
                }
                // The earliest moment a limit can pass: no wait starts before the request.
                None => {
                    let (t, a) = timer.insert((Timer::new(limit.min(idle)), start + limit.min(idle)));
                    (t, a)
                }
            };
            if Pin::new(&mut *timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if now >= deadline {
                return Poll::Ready(Err(Elapsed(limit)));
            }
            let next = match self.read.get() {
                Some(read) if now >= read && self.pieces() != self.mark.get() => {
                    // Pieces of the body went meanwhile: put the wait off.
                    self.mark.set(self.pieces());
                    let read = now + idle;
                    self.read.set(Some(read));
                    read.min(deadline)
                }
                Some(read) if now >= read => {
                    // The wait in progress ends with `Elapsed` when polled.
                    self.expired.set(true);
                    deadline
                }
                Some(read) => read.min(deadline),
                None => deadline,
            };
            *timer = Timer::new(next - now);
            *armed = next;
        })
        .await
    }
}
