//! The open-loop schedule (`--rate`): a fixed total rate of messages spread
//! evenly over the paced connections, and the coordinated-omission
//! correction that wrk2 makes.
//!
//! Contract with `epoll.rs`: connection `id` (of `connections`) sends its
//! message `k` at [`Pacing::due`]`(start, id, k)`, its *intended* send time:
//! every paced connection sends once per [`Pacing::interval`], and the
//! connections' first messages are spread over one interval, so that all of
//! them together send evenly at the total rate. A connection has one
//! message in flight at a time. When an answer comes back after the next
//! message was due, that message goes at once, and its latency is still
//! counted from its intended time ([`latency`]): a server that stalls is
//! charged for every message that should have been sent meanwhile, not only
//! for the one it held up (closed-loop clients, which wait before sending,
//! omit those: "coordinated omission").

use std::time::{Duration, Instant};

/// When each paced connection sends; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// Between two messages of one connection.
    interval: Duration,
    /// How many connections the first messages are spread over.
    connections: usize,
}

impl Pacing {
    /// `rate` messages per second in all, over `paced` connections, whose ids
    /// run from 0 to `connections` (paced or not: the unpaced ones leave gaps).
    pub fn new(rate: f64, paced: usize, connections: usize) -> Pacing {
        assert!(rate > 0.0 && rate.is_finite(), "a positive rate");
        Pacing {
            interval: Duration::from_secs_f64(paced.max(1) as f64 / rate),
            connections: connections.max(1),
        }
    }

    /// The time between two messages of one connection.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The intended send time of message `k` (from 0) of connection `id`.
    pub fn due(&self, start: Instant, id: u64, k: u64) -> Instant {
        let offset =
            self.interval.as_nanos() * u128::from(id % self.connections as u64) / self.connections as u128;
        let nanos = offset + self.interval.as_nanos() * u128::from(k);
        start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The latency of a message intended for `intended` whose answer was
/// complete at `done`: from the intended send time, not from when it was
/// actually sent (which is later when the connection was still waiting for
/// an earlier answer).
pub fn latency(intended: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(intended)
}
