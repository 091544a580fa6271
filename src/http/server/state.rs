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
//! - **Busy**: handlers run (one for HTTP/1.1, any number of HTTP/2
//!   streams); no timer: the handlers hold the shard's pool slots, and
//!   their bodies have their own limits.
//! - **Idle**: nothing to do; closed after `idle_timeout`, at once on a
//!   stop, and when the net layer evicts it (the shard at its connection
//!   cap, this one idle the longest). Only this phase is marked idle with
//!   the net layer: a connection sending a head is never evicted.
//!
//! An HTTP/2 connection has no Head phase after its preface: it is Busy
//! while streams run and Idle otherwise.
//!
//! Deadlines are only written here (a `Cell`); the driver's one timer
//! looks at them when it fires, so a request costs no timer operation.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::Limits;
use crate::net::Connection;

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
    busy: Cell<u32>,
    deadline: Cell<Option<Instant>>,
    h2: Cell<bool>,
    served: Cell<u64>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl ConnState {
    /// A connection accepted now: its first head is due `header_timeout` from now.
    pub(crate) fn new(limits: &Limits, conn: Connection) -> Self {
        ConnState {
            conn,
            phase: Cell::new(Phase::Head),
            busy: Cell::new(0),
            deadline: Cell::new(Some(Instant::now() + limits.header_timeout())),
            h2: Cell::new(false),
            served: Cell::new(0),
            header_timeout: limits.header_timeout(),
            idle_timeout: limits.idle_timeout(),
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

    /// When the current phase ends the connection, if it can.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline.get()
    }

    /// Bytes arrived: on an idle HTTP/1 connection, a new request head starts.
    #[inline]
    pub(crate) fn on_read(&self) {
        if self.phase.get() == Phase::Idle && !self.h2.get() {
            self.conn.set_idle(false);
            self.phase.set(Phase::Head);
            self.deadline.set(Some(Instant::now() + self.header_timeout));
        }
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
        if self.phase.get() == Phase::Idle {
            self.conn.set_idle(false);
        }
        self.busy.set(self.busy.get() + 1);
        self.phase.set(Phase::Busy);
        self.deadline.set(None);
        served
    }

    /// A handler ended (or was dropped).
    #[inline]
    pub(crate) fn end(&self) {
        let busy = self.busy.get().saturating_sub(1);
        self.busy.set(busy);
        if busy == 0 {
            self.idle();
        }
    }

    fn idle(&self) {
        self.conn.set_idle(true);
        self.phase.set(Phase::Idle);
        self.deadline.set(Some(Instant::now() + self.idle_timeout));
    }
}
