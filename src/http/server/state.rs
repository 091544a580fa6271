//! [`ConnState`]: where one server connection is between requests, shared
//! by the three parts that see it: its I/O (bytes arrive), its service (a
//! request starts, its handler ends) and its driver (timers, stop).
//!
//! ```text
//!            accept ──► Head ──(head parsed: handler called)──► Busy
//!                        ▲                                        │
//!     first byte of the  │                     last handler ends  │
//!     next request       └────────────── Idle ◄───────────────────┘
//! ```
//!
//! - **Head**: a request head is on its way; it must be complete within
//!   `header_timeout` of its first byte (of the accept, for the first), or
//!   the driver answers 408 and closes (slowloris).
//! - **Busy**: requests are being answered (one for HTTP/1.1, any number
//!   of HTTP/2 streams), from the parsed head until the answer's body has
//!   been handed over whole: handlers run, then their answers are sent. No
//!   phase timer: the handlers hold the shard's pool slots, and request
//!   bodies have their own limits.
//! - **Idle**: nothing to do; closed after `idle_timeout`, at once on a
//!   stop, and when the net layer evicts it (the shard at its connection
//!   cap, this one idle the longest). Only this phase is marked idle with
//!   the net layer: a connection sending a head is never evicted.
//!
//! An HTTP/2 connection has no Head phase after its preface: it is Busy
//! while streams run and Idle otherwise. Once it is asked to shut down
//! (a stop, an eviction, its idle timeout), hyper's first GOAWAY tells
//! the client to open no more streams, but the final one waits for the
//! client to answer a PING: a client that never does could go on opening
//! streams for good. So the client has [`EVICTION_GRACE`] (a round trip,
//! generously) to stop; after it, new streams are refused
//! (`REFUSED_STREAM`, safe to retry, no handler run), so the connection
//! stays Idle and ends as any Idle one does (its idle timeout, an
//! eviction, a drain). It is not closed at once: h2 may still hold the
//! tail of an answer for the client's flow-control window. Its last
//! request under `max_requests` shuts it down the same way (HTTP/1 answers
//! it with `Connection: close`), and streams beyond it are refused at once.
//!
//! Across the phases, a write of an answer that would block (the client
//! does not read) makes the connection **stalled**: it is not idle then
//! (not evicted, no idle timeout, whatever hyper still holds to send), and
//! it is closed if no write goes through for `send_timeout` (nginx's
//! `send_timeout`). The next write that goes through ends the stall; an
//! Idle connection is idle from then on.
//!
//! An answer can also be **held** with no write blocked: hyper took a frame
//! of its body and does not ask for the next (an HTTP/2 client that grants
//! no flow-control window). While answers are held, the connection is
//! closed if for `send_timeout` no frame is taken and no write goes through,
//! or on HTTP/2, if hyper took less than [`MIN_PROGRESS`] of the answers'
//! bytes (a client opening its windows a byte at a time, or asking for
//! PINGs to keep writes going through).
//!
//! Deadlines are only written here (a `Cell`); the driver's one timer
//! looks at them when it fires, so a request costs no timer operation.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use super::budget::{AnswerBudget, Held, Waits};
use super::Limits;

/// While answers are held, the least the connection must take (frames
/// taken by hyper, bytes written) in each `send_timeout` to stay open: a
/// client that opens the window one byte at a time (an HTTP/2 WINDOW_UPDATE
/// of 1 for each of its streams every 25 s) kept every stream's answer
/// buffered for good, about 9 MB a connection, for some 100 bytes a second.
/// One frame's worth a send timeout (16 KiB a minute by default) asks
/// nothing of a real client.
const MIN_PROGRESS: u64 = 16 << 10;
use crate::net::{Connection, EVICTION_GRACE};
use crate::time::after;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Head,
    Busy,
    Idle,
}

#[derive(Debug)]
pub(crate) struct ConnState {
    /// The net layer's handle: idle connections may be evicted at the cap.
    conn: Connection,
    phase: Cell<Phase>,
    /// Requests begun and not yet answered whole.
    busy: Cell<u32>,
    /// Of those, requests whose handler still runs.
    handling: Cell<u32>,
    /// The current phase's deadline.
    deadline: Cell<Option<Instant>>,
    /// While a write is blocked: when the connection gives up on its client.
    stalled: Cell<Option<Instant>>,
    /// Answers whose last frame hyper took without asking for the next yet.
    held: Cell<u32>,
    /// Bytes of answers taken by hyper, and on HTTP/1 bytes written, so far.
    progress: Cell<u64>,
    /// While answers are held: when to look for progress again, and the
    /// progress count to compare with then.
    held_check: Cell<Option<(Instant, u64)>>,
    h2: Cell<bool>,
    /// An HTTP/2 connection asked to shut down: when its client's time to
    /// stop opening streams ends.
    goaway_by: Cell<Option<Instant>>,
    /// An HTTP/2 connection's last request has begun: the driver is to
    /// shut it down.
    last_begun: Cell<bool>,
    /// A request was answered with its body left unread (refused).
    body_unread: Cell<bool>,
    /// On HTTP/2: answer bytes hyper took and has not written yet, against
    /// the shard's budget (`budget.rs`).
    buffered: Held,
    budget: Rc<AnswerBudget>,
    /// On HTTP/2, the driver's waker (see `answer_refused`).
    driver: RefCell<Option<Waker>>,
    served: Cell<u64>,
    max_requests: Option<u64>,
    header_timeout: Duration,
    idle_timeout: Duration,
    send_timeout: Duration,
}

impl ConnState {
    /// A connection accepted now: its first head is due `header_timeout`
    /// from now. Its HTTP/2 answers count against the shard's `budget`.
    pub(crate) fn new(limits: &Limits, budget: Rc<AnswerBudget>, conn: Connection) -> Self {
        ConnState {
            conn,
            phase: Cell::new(Phase::Head),
            busy: Cell::new(0),
            handling: Cell::new(0),
            deadline: Cell::new(Some(after(limits.header_timeout()))),
            stalled: Cell::new(None),
            held: Cell::new(0),
            progress: Cell::new(0),
            held_check: Cell::new(None),
            h2: Cell::new(false),
            goaway_by: Cell::new(None),
            last_begun: Cell::new(false),
            body_unread: Cell::new(false),
            buffered: Held::default(),
            budget,
            driver: RefCell::new(None),
            served: Cell::new(0),
            max_requests: limits.max_requests(),
            header_timeout: limits.header_timeout(),
            idle_timeout: limits.idle_timeout(),
            send_timeout: limits.send_timeout(),
        }
    }

    /// Whether the connection speaks HTTP/2.
    pub(crate) fn is_h2(&self) -> bool {
        self.h2.get()
    }

    /// The net layer's handle on this connection.
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// When the current phase, a stalled write or held answers end the
    /// connection, if they can. While answers are held, the first call
    /// arms the check for progress (one clock read, only then).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let stalled = self.stalled.get();
        // A stalled connection is not idle: its idle time starts once its
        // write goes through.
        let phase = match self.phase.get() {
            Phase::Idle if stalled.is_some() => None,
            _ => self.deadline.get(),
        };
        let held = (self.held.get() > 0).then(|| match self.held_check.get() {
            Some((at, _)) => at,
            None => {
                let at = after(self.send_timeout);
                self.held_check.set(Some((at, self.progress.get())));
                at
            }
        });
        [phase, stalled, held].into_iter().flatten().min()
    }

    /// Whether, at `now`, a write has been blocked for `send_timeout`, or
    /// answers have been held that long with nothing taken or written.
    pub(crate) fn send_timed_out(&self, now: Instant) -> bool {
        if self.stalled.get().is_some_and(|at| now >= at) {
            return true;
        }
        match self.held_check.get() {
            Some((at, mark)) if self.held.get() > 0 && now >= at => {
                // HTTP/2 only: an HTTP/1 connection holds one answer.
                let least = if self.h2.get() { MIN_PROGRESS } else { 1 };
                if self.progress.get() - mark < least {
                    return true;
                }
                // Some progress: look again a whole send timeout from now.
                self.held_check
                    .set(Some((after(self.send_timeout), self.progress.get())));
                false
            }
            _ => false,
        }
    }

    /// hyper took a frame of an answer's body (`bytes` of data); until it
    /// asks for the next ([`answer_polled`](Self::answer_polled)), the
    /// answer is held.
    #[inline]
    pub(crate) fn answer_held(&self, bytes: u64) {
        self.held.set(self.held.get() + 1);
        self.progress.set(self.progress.get() + bytes);
        if self.h2.get() {
            self.buffered.took(&self.budget, bytes);
        }
    }

    /// Whether an answer may have its next frame taken now: always on
    /// HTTP/1; on HTTP/2 while the connection holds less than its allowance
    /// or the shard's budget has room (else its task is filed to be woken;
    /// `budget.rs`).
    #[inline]
    pub(crate) fn may_take_answer(&self, waits: &mut Waits, cx: &Context<'_>) -> bool {
        !self.h2.get() || self.buffered.may_take(&self.budget, waits, cx)
    }

    /// An answer is dropped (ended, or its stream reset): out of the
    /// budget's waiting lists, its turn passed on.
    #[inline]
    pub(crate) fn stop_waiting(&self, waits: &mut Waits) {
        if self.h2.get() {
            self.buffered.quit(&self.budget, waits);
        }
    }

    /// An answer was dropped before its end (its stream reset, or the
    /// connection failed): h2 drops what it held of it, unwritten, and
    /// hyper the frame it had in hand. Up to `bytes` of the connection's
    /// count go with them (`budget.rs`).
    pub(crate) fn answer_cancelled(&self, bytes: u64) {
        if self.h2.get() {
            self.buffered.dropped(&self.budget, bytes);
        }
    }

    /// The connection's answers are over (it closed): what it held of the
    /// shard's budget is given back now, not when the last handle on this
    /// state goes.
    pub(crate) fn release_answers(&self) {
        self.buffered.close(&self.budget);
    }

    /// An answer allowed to go on had no frame ready: another waiting one
    /// of this connection gets the turn.
    #[inline]
    pub(crate) fn no_frame_ready(&self) {
        if self.h2.get() {
            self.buffered.pass();
        }
    }

    /// An answer's next frame was refused by the shard's answer budget
    /// (HTTP/2): it counts as held, so the connection must make progress
    /// within `send_timeout` or be closed, as with an answer waiting for a
    /// window (else a connection whose count stays up, its client's
    /// windows shut or its resets counted, would wait for good with the
    /// shard closed). The driver is woken to arm that check.
    pub(crate) fn answer_refused(&self) {
        self.held.set(self.held.get() + 1);
        if self.held_check.get().is_none() {
            if let Some(driver) = self.driver.borrow().as_ref() {
                driver.wake_by_ref();
            }
        }
    }

    /// Keeps the driver's waker, on HTTP/2 (see `answer_refused`).
    #[inline]
    pub(crate) fn driver_is(&self, waker: &Waker) {
        if self.h2.get() {
            let mut driver = self.driver.borrow_mut();
            if !driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *driver = Some(waker.clone());
            }
        }
    }

    /// Whether the connection's last write blocked (the client does not
    /// take what is written).
    pub(crate) fn is_stalled(&self) -> bool {
        self.stalled.get().is_some()
    }

    /// hyper asked a held answer for its next frame (or dropped it).
    #[inline]
    pub(crate) fn answer_polled(&self) {
        let held = self.held.get().saturating_sub(1);
        self.held.set(held);
        if held == 0 {
            self.held_check.set(None);
        }
    }

    /// A request is answered with its body left unread: the client may
    /// still be sending it when the connection closes.
    pub(crate) fn body_left_unread(&self) {
        self.body_unread.set(true);
    }

    /// Whether a request was answered with its body left unread.
    pub(crate) fn left_body_unread(&self) -> bool {
        self.body_unread.get()
    }

    /// Whether a handler runs (not only an answer being sent).
    pub(crate) fn is_handling(&self) -> bool {
        self.handling.get() > 0
    }

    /// A write of the answer would block: the client is not reading.
    #[inline]
    pub(crate) fn on_write_blocked(&self) {
        if self.stalled.get().is_none() {
            self.stall();
        }
    }

    /// A write of `bytes` went through.
    #[inline]
    pub(crate) fn on_write(&self, bytes: usize) {
        // On HTTP/2 only answers' bytes taken count (`answer_held`): what
        // is written there includes PING and SETTINGS acknowledgements,
        // which a client can ask for at will.
        if self.h2.get() {
            self.buffered.wrote(&self.budget, bytes as u64);
        } else {
            self.progress.set(self.progress.get() + bytes as u64);
        }
        if self.stalled.get().is_some() {
            self.unstall();
        }
    }

    #[cold]
    fn stall(&self) {
        self.stalled.set(Some(after(self.send_timeout)));
        if self.phase.get() == Phase::Idle {
            self.conn.set_idle(false);
        }
    }

    #[cold]
    fn unstall(&self) {
        self.stalled.set(None);
        if self.phase.get() == Phase::Idle {
            self.idle();
        }
    }

    /// Bytes arrived: on an idle HTTP/1 connection, a new request head starts.
    #[inline]
    pub(crate) fn on_read(&self) {
        if self.phase.get() == Phase::Idle && !self.h2.get() {
            self.conn.set_idle(false);
            self.phase.set(Phase::Head);
            self.deadline.set(Some(after(self.header_timeout)));
        }
    }

    /// The connection was asked to shut down gracefully: an HTTP/2 client
    /// has [`EVICTION_GRACE`] to stop opening streams.
    pub(crate) fn shutting_down(&self) {
        if self.h2.get() && self.goaway_by.get().is_none() {
            self.goaway_by.set(Some(after(EVICTION_GRACE)));
        }
    }

    /// Whether a new HTTP/2 stream is refused: its client was told to open
    /// no more, and had its time to hear it, or the connection's last
    /// request has begun.
    #[inline]
    pub(crate) fn refuses_streams(&self) -> bool {
        self.last_begun.get() || self.goaway_by.get().is_some_and(|at| Instant::now() >= at)
    }

    /// Whether an HTTP/2 connection's last request has begun (the driver
    /// shuts it down).
    #[inline]
    pub(crate) fn last_begun(&self) -> bool {
        self.last_begun.get()
    }

    /// The connection speaks HTTP/2 (its preface came).
    pub(crate) fn set_h2(&self) {
        self.h2.set(true);
        if self.phase.get() == Phase::Head {
            self.idle();
        }
    }

    /// A handler starts; how many requests this connection has begun, this one included.
    #[inline]
    pub(crate) fn begin(&self) -> u64 {
        let served = self.served.get() + 1;
        self.served.set(served);
        if self.h2.get() && self.max_requests.is_some_and(|max| served >= max) {
            self.last_begun.set(true);
        }
        if self.phase.get() == Phase::Idle {
            self.conn.set_idle(false);
        }
        self.busy.set(self.busy.get() + 1);
        self.handling.set(self.handling.get() + 1);
        self.phase.set(Phase::Busy);
        self.deadline.set(None);
        served
    }

    /// A handler ended (or was dropped); its answer may still be sent.
    #[inline]
    pub(crate) fn handled(&self) {
        self.handling.set(self.handling.get().saturating_sub(1));
    }

    /// A request's answer was handed over whole, or dropped (with its
    /// handler, if that had not ended).
    #[inline]
    pub(crate) fn end(&self) {
        let busy = self.busy.get().saturating_sub(1);
        self.busy.set(busy);
        if busy == 0 {
            self.idle();
        }
    }

    fn idle(&self) {
        // A stalled connection is marked idle once its write goes through.
        if self.stalled.get().is_none() {
            self.conn.set_idle(true);
        }
        self.phase.set(Phase::Idle);
        self.deadline.set(Some(after(self.idle_timeout)));
    }
}

/// What the connection held of the shard's budget is given back.
impl Drop for ConnState {
    fn drop(&mut self) {
        self.buffered.close(&self.budget);
    }
}
