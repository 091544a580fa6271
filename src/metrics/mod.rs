//! Per-shard metrics, readable from the host: [`Metrics`] (what
//! [`RuntimeHandle::stats`](crate::RuntimeHandle::stats) reads),
//! [`RuntimeStats`] and [`ShardMetrics`] (a snapshot), and [`Exporter`]
//! (the Prometheus text format, through `prometheus-client`).
//!
//! Each shard writes its own counters (`task/counters.rs`, in the task
//! layer that feeds them); the host reads them
//! at any time, from any thread, without asking the shard: a shard stuck
//! in one long poll still shows it ([`ShardMetrics::polling_for`]), and a
//! shard that has ended keeps its last figures.
//!
//! # Busy and idle time
//!
//! Utilisation is reported as Seastar does: the share of wall time the
//! shard spent running tasks, against the time it slept or only polled
//! for work (spinning for `SHARDLET_SPIN_US` counts as idle). Busy time is
//! the time spent in task polls made by the executor; io_uring and epoll
//! polling between them, and spinning, are idle. It is measured with the
//! coarse monotonic clock (see [`STALL`] and the counters' notes): right on
//! average, and the longest poll to within one tick (1-4 ms).
//!
//! Both are counters: neither ever goes down. A poll's time is added to
//! busy (or idle) when it ends, so the poll running at a snapshot counts in
//! neither ([`ShardMetrics::polling_for`]); and no snapshot reports less
//! idle time than an earlier one of the same shard did (the shard's
//! counters are read one by one, not at one instant).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use shardlet::{shard, Config, Runtime};
//!
//! let runtime = Runtime::new(Config::default().with_shards(2).with_pin(false))?;
//! let handle = runtime.start(|| async {
//!     for _ in 0..10 {
//!         shardlet::spawn(async {}).await.unwrap();
//!     }
//!     shard::id()
//! })?;
//! let metrics = handle.metrics(); // Clone + Send + Sync
//! handle.join()?;
//! let stats = metrics.stats();
//! assert_eq!(stats.shards.len(), 2);
//! assert!(stats.shards.iter().all(|s| s.tasks_spawned >= 10 && !s.running));
//! assert!(stats.to_string().contains("shard 1:"));
//! # Ok::<(), shardlet::RuntimeError>(())
//! ```

mod export;

use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::Duration;

pub use crate::task::blocking::BlockingStats;
pub use crate::task::counters::STALL;
pub(crate) use crate::task::counters::{attach, detach, publish, Sample, ShardCounters, PUBLISH_EVERY};
pub use export::{Exporter, CONTENT_TYPE};

use crate::mesh::Mesh;
use crate::net::ReadyStats;
use crate::task::blocking::BlockingPool;

/// A runtime's counters, readable from any thread: a cheap `Clone + Send +
/// Sync` handle ([`RuntimeHandle::metrics`](crate::RuntimeHandle::metrics)).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Hub>,
}

struct Hub {
    shards: Vec<Arc<ShardCounters>>,
    blocking: Arc<BlockingPool>,
    mesh: Mesh,
}

impl Metrics {
    pub(crate) fn new(shards: usize, blocking: Arc<BlockingPool>, mesh: Mesh) -> Metrics {
        Metrics {
            inner: Arc::new(Hub {
                shards: (0..shards)
                    .map(|_| Arc::new(ShardCounters::new(shards)))
                    .collect(),
                blocking,
                mesh,
            }),
        }
    }

    /// Shard `shard`'s counters, for its thread to feed.
    pub(crate) fn shard(&self, shard: usize) -> Arc<ShardCounters> {
        self.inner.shards[shard].clone()
    }

    /// A snapshot of every shard's counters, and the runtime's.
    pub fn stats(&self) -> RuntimeStats {
        let now = crate::task::counters::now();
        let hub = &self.inner;
        RuntimeStats {
            shards: hub
                .shards
                .iter()
                .enumerate()
                .map(|(id, c)| {
                    let lanes = hub
                        .shards
                        .iter()
                        .map(|from| from.outgoing[id].load(Relaxed))
                        .sum();
                    snapshot(c, now, lanes, hub.mesh.mailbox_queued(id) as u64)
                })
                .collect(),
            blocking: hub.blocking.stats(),
            mesh_dropped: hub.mesh.dropped(),
            mesh_cancelled: hub.mesh.cancelled(),
        }
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

fn nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}

fn snapshot(c: &ShardCounters, now: u64, lanes: u64, mailbox: u64) -> ShardMetrics {
    let started = c.started_at.load(Relaxed);
    let ended = c.ended_at.load(Relaxed);
    let uptime = match (started, ended) {
        (0, _) => 0,
        (s, 0) => now.saturating_sub(s),
        (s, e) => e.saturating_sub(s),
    };
    // Before `busy_nanos`: pairs with the Release in `poll_ends`.
    let poll_started = c.poll_started.load(Acquire);
    let polling_for = match poll_started {
        0 => 0,
        at => now.saturating_sub(at),
    };
    let busy = c.busy_nanos.load(Relaxed).min(uptime);
    // The poll running now counts in neither until it ends; and never less
    // than reported before (see the module docs).
    let idle = uptime.saturating_sub(busy).saturating_sub(polling_for);
    let idle = c.idle_reported.fetch_max(idle, Relaxed).max(idle);
    // Ended first (Acquire, against the shard's Release): tasks that end
    // meanwhile then make the live count high for a moment, never low.
    let ended_tasks = c.ended.load(Acquire);
    let spawned = c.spawned.load(Relaxed);
    ShardMetrics {
        running: c.running.load(Relaxed),
        tasks_spawned: spawned,
        tasks_live: spawned.saturating_sub(ended_tasks),
        panics: c.panics.load(Relaxed),
        uptime: nanos(uptime),
        busy: nanos(busy),
        idle: nanos(idle),
        polls: c.polls.load(Relaxed),
        longest_poll: nanos(c.longest_nanos.load(Relaxed)),
        stalls: c.stalls.load(Relaxed),
        polling_for: nanos(polling_for),
        // A shard's lanes are emptied as it ends (what waits there is
        // dropped unrun): a sender's last sample, taken before, is stale.
        lanes_queued: if ended == 0 { lanes } else { 0 },
        mailbox_queued: mailbox,
        ready: ReadyStats {
            registrations: c.registrations.load(Relaxed) as usize,
            rounds: c.rounds.load(Relaxed),
            events: c.events.load(Relaxed),
            parks: c.parks.load(Relaxed),
            drivers: c.drivers.load(Relaxed),
        },
    }
}

/// A snapshot of one shard's counters; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardMetrics {
    /// The shard's executor is running.
    pub running: bool,
    /// Green threads started on this shard so far (every task: `spawn`,
    /// `spawn_n`, pools, piles, connections, cross-shard jobs that had to
    /// wait, and shardlet's own few).
    pub tasks_spawned: u64,
    /// Those not finished yet.
    pub tasks_live: u64,
    /// Panics caught on this shard (sampled every 100 ms and at the end).
    pub panics: u64,
    /// Time since the shard started (until it ended).
    pub uptime: Duration,
    /// Time spent running tasks, in polls that have ended; the rest of
    /// `uptime`, less the poll running now ([`polling_for`](Self::polling_for)),
    /// is idle ([`idle`](Self::idle)).
    pub busy: Duration,
    /// See [`ShardMetrics::idle`].
    idle: Duration,
    /// Task polls made by the executor.
    pub polls: u64,
    /// The longest time one task ran without yielding (to within one tick
    /// of the coarse clock).
    pub longest_poll: Duration,
    /// Polls that ran at least [`STALL`] without yielding.
    pub stalls: u64,
    /// How long the poll running right now has run (zero between polls): a
    /// shard stuck in one task shows it here while it is stuck.
    pub polling_for: Duration,
    /// Cross-shard messages waiting in the lanes to this shard (sampled by
    /// the sending shards every 100 ms); 0 once the shard has ended (they
    /// are dropped unrun then, counted in [`RuntimeStats::mesh_dropped`]).
    pub lanes_queued: u64,
    /// Messages from other threads waiting in this shard's mailbox.
    pub mailbox_queued: u64,
    /// The readiness driver's counters (sampled every 100 ms and at the end).
    pub ready: ReadyStats,
}

impl ShardMetrics {
    /// Time not spent running tasks: sleeping, or polling for work. Like
    /// `busy`, it never goes down from one snapshot of a shard to the next
    /// (see the [module docs](self#busy-and-idle-time)): the poll running
    /// now counts in neither until it ends.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// `busy / uptime`, from 0 to 1 (0 before the shard starts).
    pub fn utilization(&self) -> f64 {
        if self.uptime.is_zero() {
            0.0
        } else {
            self.busy.as_secs_f64() / self.uptime.as_secs_f64()
        }
    }

    /// Utilisation between an `earlier` snapshot of this shard and this
    /// one: what a dashboard shows.
    pub fn utilization_since(&self, earlier: &ShardMetrics) -> f64 {
        let wall = self.uptime.saturating_sub(earlier.uptime);
        if wall.is_zero() {
            return 0.0;
        }
        let busy = self.busy.saturating_sub(earlier.busy);
        (busy.as_secs_f64() / wall.as_secs_f64()).min(1.0)
    }
}

impl fmt::Display for ShardMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "running={} tasks_spawned={} tasks_live={} panics={} busy={:.3}s idle={:.3}s \
             utilization={:.1}% polls={} longest_poll={:.3}ms stalls={} polling_for={:.3}ms \
             lanes_queued={} mailbox_queued={} driver_registrations={} driver_rounds={} \
             driver_events={} driver_parks={}",
            self.running,
            self.tasks_spawned,
            self.tasks_live,
            self.panics,
            self.busy.as_secs_f64(),
            self.idle().as_secs_f64(),
            100.0 * self.utilization(),
            self.polls,
            self.longest_poll.as_secs_f64() * 1e3,
            self.stalls,
            self.polling_for.as_secs_f64() * 1e3,
            self.lanes_queued,
            self.mailbox_queued,
            self.ready.registrations,
            self.ready.rounds,
            self.ready.events,
            self.ready.parks,
        )
    }
}

/// A snapshot of a runtime's counters: [`Metrics::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardMetrics>,
    /// The blocking pool (one per runtime).
    pub blocking: BlockingStats,
    /// Cross-shard messages dropped unrun ([`Mesh::dropped`]).
    pub mesh_dropped: u64,
    /// `spawn_on` jobs cancelled with their shard ([`Mesh::cancelled`]).
    pub mesh_cancelled: u64,
}

impl fmt::Display for RuntimeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (id, shard) in self.shards.iter().enumerate() {
            writeln!(f, "shard {id}: {shard}")?;
        }
        write!(
            f,
            "blocking: threads={} busy={} queued={} panics={}; mesh: dropped={} cancelled={}",
            self.blocking.threads,
            self.blocking.busy,
            self.blocking.queued,
            self.blocking.panics,
            self.mesh_dropped,
            self.mesh_cancelled
        )
    }
}
