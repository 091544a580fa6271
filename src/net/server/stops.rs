//! [`Stops`]: the stop requests a serving loop, or the handoff acceptor,
//! obeys. Its own file, so that the serving loop and the acceptor both
//! import it and neither imports the other.

use std::time::{Duration, Instant};

use futures_lite::future;

use crate::sync::stop::{self, Stopper};

/// The stop requests a serving loop obeys: the runtime's (when on a
/// shardlet shard) and its server's (when it has one).
#[derive(Debug, Clone)]
pub(crate) struct Stops {
    runtime: Option<Stopper>,
    server: Option<Stopper>,
}

impl Stops {
    /// The current shard's runtime stop, plus `server`.
    pub(crate) fn current(server: Option<Stopper>) -> Self {
        Stops {
            runtime: stop::current(),
            server,
        }
    }

    pub(crate) fn is_requested(&self) -> bool {
        [&self.runtime, &self.server]
            .into_iter()
            .flatten()
            .any(Stopper::is_stopped)
    }

    /// Resolves once either stop is requested.
    pub(crate) async fn requested(&self) {
        future::or(stopped(&self.runtime), stopped(&self.server)).await
    }

    /// When draining must end: `limit`, or [`DRAIN_MARGIN`] before the
    /// earliest grace deadline of the stops requested so far, so that a
    /// serving loop returns before the runtime drops its shard's entry.
    pub(crate) fn drain_until(&self, limit: Instant) -> Instant {
        [&self.runtime, &self.server]
            .into_iter()
            .flatten()
            .filter_map(Stopper::deadline)
            .map(|at| at.checked_sub(DRAIN_MARGIN).unwrap_or(at))
            .fold(limit, Instant::min)
    }
}

/// How much earlier than a stop's grace deadline a drain gives up, leaving
/// time to close the remaining connections and return.
const DRAIN_MARGIN: Duration = Duration::from_millis(25);

async fn stopped(stopper: &Option<Stopper>) {
    match stopper {
        Some(s) => s.stopped().await,
        None => future::pending().await,
    }
}
