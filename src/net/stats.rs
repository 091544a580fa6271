//! Per-shard connection counters: written by the shard that serves (and by
//! the handoff acceptor), read from any thread through
//! [`Server::stats`](crate::net::Server::stats).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// One shard's live counters. Aligned to its own cache lines so that shards
/// counting their connections do not slow each other down.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    /// Connections this shard owns: running, plus (handoff) queued for it.
    pub(crate) live: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    /// The most connections the shard serves at once; 0 until it serves.
    pub(crate) capacity: AtomicU64,
    pub(crate) listening: AtomicBool,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ShardStats {
        ShardStats {
            accepted: self.accepted.load(Relaxed),
            live: self.live.load(Relaxed),
            failed: self.failed.load(Relaxed),
            panicked: self.panicked.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            capacity: self.capacity.load(Relaxed),
            listening: self.listening.load(Relaxed),
        }
    }
}

/// A snapshot of one shard's connection counters.
///
/// # Examples
///
/// ```
/// let stats = shardlet::net::ShardStats::default();
/// assert_eq!((stats.accepted, stats.live), (0, 0));
/// assert_eq!(
///     stats.to_string(),
///     "accepted=0 live=0 failed=0 panicked=0 accept_errors=0 capacity=0 listening=false"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStats {
    /// Connections given to this shard so far.
    pub accepted: u64,
    /// Connections open on this shard now (in handoff mode, also those
    /// queued for it).
    pub live: u64,
    /// Connections whose handler returned an error.
    pub failed: u64,
    /// Connections whose handler panicked.
    pub panicked: u64,
    /// `accept` calls that failed for lack of descriptors or memory (each
    /// followed by a back-off), or for a reason the loop did not know.
    pub accept_errors: u64,
    /// The most connections this shard serves at once (its pool size); 0
    /// before it starts serving.
    pub capacity: u64,
    /// Whether the shard is taking new connections now.
    pub listening: bool,
}

impl fmt::Display for ShardStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} live={} failed={} panicked={} accept_errors={} capacity={} listening={}",
            self.accepted,
            self.live,
            self.failed,
            self.panicked,
            self.accept_errors,
            self.capacity,
            self.listening
        )
    }
}

/// Every shard's counters, in shard order; see [`Server::stats`](crate::net::Server::stats).
///
/// Empty until the first shard starts serving.
///
/// # Examples
///
/// ```
/// use shardlet::net::{ServerStats, ShardStats};
///
/// let stats = ServerStats::default();
/// assert_eq!(stats.accepted(), 0);
/// assert!(!stats.ready());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// One entry per shard of the runtime.
    pub shards: Vec<ShardStats>,
}

impl ServerStats {
    /// Connections accepted over all shards.
    pub fn accepted(&self) -> u64 {
        self.shards.iter().map(|s| s.accepted).sum()
    }

    /// Connections open over all shards.
    pub fn live(&self) -> u64 {
        self.shards.iter().map(|s| s.live).sum()
    }

    /// Handler errors over all shards.
    pub fn failed(&self) -> u64 {
        self.shards.iter().map(|s| s.failed).sum()
    }

    /// Handler panics over all shards.
    pub fn panicked(&self) -> u64 {
        self.shards.iter().map(|s| s.panicked).sum()
    }

    /// Failed `accept` calls over all shards.
    pub fn accept_errors(&self) -> u64 {
        self.shards.iter().map(|s| s.accept_errors).sum()
    }

    /// Whether every shard is taking connections.
    pub fn ready(&self) -> bool {
        !self.shards.is_empty() && self.shards.iter().all(|s| s.listening)
    }
}
