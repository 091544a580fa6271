//! Episodes at the connection cap: while a shard holds its cap it is *at
//! capacity*. Each episode is counted and timed in the shard's counters
//! (`at_capacity`, `at_capacity_time`) and logged: a warning that names the
//! cap, what happens to new clients, and the knob that raises it, at most
//! one per shard per [`WARNING_INTERVAL`] (the episodes in between at debug
//! level, so a shard that hovers at its cap does not flood the log).

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::server::stats::{stamp, Counters};
use crate::net::WhenFull;

/// At most one warning per shard this often when the shard keeps reaching
/// its cap; the episodes in between are logged at debug level.
pub(crate) const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Where a shard's connection cap comes from, for the log line that says how
/// to raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapOrigin {
    /// Derived from the descriptor limit, which was this.
    Derived { fd_limit: u64 },
    /// Set by `ServerConfig::with_max_connections` or `SHARDLET_MAX_CONNECTIONS`.
    Configured,
}

/// One shard's episodes at its cap.
pub(crate) struct Capacity {
    shard: usize,
    cap: usize,
    origin: CapOrigin,
    when_full: WhenFull,
    counters: Arc<Counters>,
    full_since: Cell<Option<Instant>>,
    last_warning: Cell<Option<Instant>>,
}

impl Capacity {
    pub(crate) fn new(
        shard: usize,
        cap: usize,
        origin: CapOrigin,
        when_full: WhenFull,
        counters: Arc<Counters>,
    ) -> Self {
        Capacity {
            shard,
            cap,
            origin,
            when_full,
            counters,
            full_since: Cell::new(None),
            last_warning: Cell::new(None),
        }
    }

    /// The shard now holds its cap: an episode begins.
    pub(crate) fn enter(&self) {
        let now = Instant::now();
        self.full_since.set(Some(now));
        let episode = self.counters.at_capacity.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters
            .at_capacity_since
            .store(stamp(now), Ordering::Relaxed);
        let quiet = self
            .last_warning
            .get()
            .is_some_and(|at| now.duration_since(at) < WARNING_INTERVAL);
        let then = match self.when_full {
            WhenFull::Wait => "new clients wait in the listen backlog",
            WhenFull::Close => "new clients are accepted and closed at once (WhenFull::Close)",
        };
        let knob = match self.origin {
            CapOrigin::Derived { fd_limit } => format!(
                "the cap follows the descriptor limit (RLIMIT_NOFILE {fd_limit}, less a reserve, over the shards): \
                 raise `ulimit -n`, or set SHARDLET_MAX_CONNECTIONS or ServerConfig::with_max_connections"
            ),
            CapOrigin::Configured => {
                "raise it with SHARDLET_MAX_CONNECTIONS or ServerConfig::with_max_connections".to_owned()
            }
        };
        if quiet {
            tracing::debug!(target: "shardlet::net", shard = self.shard, cap = self.cap, episode, "at the connection cap again");
        } else {
            self.last_warning.set(Some(now));
            tracing::warn!(
                target: "shardlet::net",
                shard = self.shard,
                cap = self.cap,
                episode,
                "shard {} holds {} connections, its connection cap: {then} until a connection \
                 closes (idle ones marked with Connection::set_idle are closed to make room); {knob}",
                self.shard,
                self.cap,
            );
        }
    }

    /// The shard is below its cap again (or its server is gone).
    pub(crate) fn leave(&self) {
        let Some(since) = self.full_since.take() else {
            return;
        };
        let spent = since.elapsed();
        self.counters
            .at_capacity_nanos
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        self.counters.at_capacity_since.store(0, Ordering::Relaxed);
        tracing::debug!(target: "shardlet::net", shard = self.shard, cap = self.cap, ?spent, "below the connection cap again");
    }
}

impl Drop for Capacity {
    fn drop(&mut self) {
        self.leave();
    }
}
