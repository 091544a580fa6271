//! Per-shard connection counters: written by the shard that serves (and by
//! the handoff acceptor), read from any thread through
//! [`Server::stats`](crate::net::Server::stats).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::net::server::requests::{RequestStats, Requests};
use crate::sync::wakers::{WakerKey, WakerSet};

/// Tasks waiting for a server's shards to change (start or stop
/// listening, fail): [`Server::ready`](crate::net::Server::ready)'s futures.
#[derive(Debug, Default)]
pub(crate) struct Watchers(Mutex<WakerSet>);

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, WakerSet> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every watcher (after the change was made).
    pub(crate) fn wake_all(&self) {
        let wakers = self.lock().take_all();
        crate::sync::wakers::wake_all(wakers);
    }

    /// Keeps `waker` under `key` until the next change (register first,
    /// then look at the state: a change in between wakes it).
    pub(crate) fn register(&self, key: &mut Option<WakerKey>, waker: &Waker) {
        self.lock().register(key, waker);
    }

    /// Gives `key` back.
    pub(crate) fn forget(&self, key: &mut Option<WakerKey>) {
        if let Some(key) = key.take() {
            self.lock().remove(key);
        }
    }
}

/// One shard's live counters. Aligned to its own cache lines so that shards
/// counting their connections do not slow each other down.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    /// Connections this shard owns: running, plus (handoff) queued for it,
    /// plus one it took and has not started yet.
    pub(crate) live: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    /// The shard's connection cap; 0 until it serves.
    pub(crate) capacity: AtomicU64,
    /// Connections marked idle now, including those asked to close.
    pub(crate) idle: AtomicU64,
    /// Times the shard reached its cap.
    pub(crate) at_capacity: AtomicU64,
    /// Nanoseconds spent at the cap in finished episodes.
    pub(crate) at_capacity_nanos: AtomicU64,
    /// When the current episode began ([`stamp`]), 0 when not at the cap.
    pub(crate) at_capacity_since: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) listening: AtomicBool,
    /// What the protocol on top recorded: statuses and latencies.
    pub(crate) requests: Requests,
    /// Told when `listening` changes.
    pub(crate) watchers: Arc<Watchers>,
}

impl Counters {
    /// Counters whose `listening` changes are told to `watchers`.
    pub(crate) fn watched(watchers: Arc<Watchers>) -> Self {
        Counters {
            watchers,
            ..Counters::default()
        }
    }

    /// Sets `listening` and tells the watchers.
    pub(crate) fn set_listening(&self, on: bool) {
        self.listening.store(on, std::sync::atomic::Ordering::Release);
        self.watchers.wake_all();
    }
}

/// Nanoseconds since a process-wide origin, never 0: a timestamp that fits
/// an atomic.
pub(crate) fn stamp(at: Instant) -> u64 {
    let origin = *ORIGIN.get_or_init(Instant::now);
    (at.saturating_duration_since(origin).as_nanos() as u64).max(1)
}

static ORIGIN: OnceLock<Instant> = OnceLock::new();

impl Counters {
    pub(crate) fn snapshot(&self) -> ShardStats {
        let since = self.at_capacity_since.load(Relaxed);
        let ongoing = match since {
            0 => 0,
            since => stamp(Instant::now()).saturating_sub(since),
        };
        ShardStats {
            accepted: self.accepted.load(Relaxed),
            live: self.live.load(Relaxed),
            failed: self.failed.load(Relaxed),
            panicked: self.panicked.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            capacity: self.capacity.load(Relaxed),
            idle: self.idle.load(Relaxed),
            at_capacity: self.at_capacity.load(Relaxed),
            at_capacity_time: Duration::from_nanos(self.at_capacity_nanos.load(Relaxed) + ongoing),
            evicted: self.evicted.load(Relaxed),
            refused: self.refused.load(Relaxed),
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
///     "accepted=0 live=0 failed=0 panicked=0 accept_errors=0 capacity=0 idle=0 \
///      at_capacity=0 at_capacity_time=0.000s evicted=0 refused=0 listening=false"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStats {
    /// Connections given to this shard so far (the refused ones too).
    pub accepted: u64,
    /// Connections open on this shard now (in handoff mode, also those
    /// queued for it). Above the cap while connections asked to close
    /// for newcomers (evicted) are still closing.
    pub live: u64,
    /// Connections whose handler returned an error.
    pub failed: u64,
    /// Handler panics: connections whose handler panicked, plus request
    /// handlers' panics that the protocol answered and survived (an HTTP
    /// 500), as recorded with
    /// [`Connection::record_panic`](crate::net::Connection::record_panic).
    pub panicked: u64,
    /// `accept` calls that failed for lack of descriptors or memory (each
    /// followed by a back-off), or for a reason the loop did not know.
    pub accept_errors: u64,
    /// The shard's connection cap: the most connections it holds at once;
    /// 0 before it starts serving.
    pub capacity: u64,
    /// Connections their handler marked idle now
    /// ([`Connection::set_idle`](crate::net::Connection::set_idle)),
    /// including those asked to close.
    pub idle: u64,
    /// Times the shard reached its cap (each the start of an episode at
    /// capacity).
    pub at_capacity: u64,
    /// Time spent at the cap, the current episode included.
    pub at_capacity_time: Duration,
    /// Idle connections asked to close to make room for a new client.
    pub evicted: u64,
    /// Clients accepted and closed at once because the shard (in handoff
    /// mode: every shard) was full, with
    /// [`WhenFull::Close`](crate::net::WhenFull::Close). Counted in
    /// `accepted` too.
    pub refused: u64,
    /// Whether the shard is taking new connections now: cleared when it
    /// stops serving, however that happens (a stop, an error, its shard
    /// ending).
    pub listening: bool,
}

impl fmt::Display for ShardStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} live={} failed={} panicked={} accept_errors={} capacity={} idle={} \
             at_capacity={} at_capacity_time={:.3}s evicted={} refused={} listening={}",
            self.accepted,
            self.live,
            self.failed,
            self.panicked,
            self.accept_errors,
            self.capacity,
            self.idle,
            self.at_capacity,
            self.at_capacity_time.as_secs_f64(),
            self.evicted,
            self.refused,
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStats {
    /// One entry per shard of the runtime.
    pub shards: Vec<ShardStats>,
    /// Per shard, in shard order: the requests the protocol on top recorded
    /// ([`Connection::record_request`](crate::net::Connection::record_request)).
    pub requests: Vec<RequestStats>,
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

    /// Times any shard reached its connection cap.
    pub fn at_capacity(&self) -> u64 {
        self.shards.iter().map(|s| s.at_capacity).sum()
    }

    /// Idle connections asked to close to make room, over all shards.
    pub fn evicted(&self) -> u64 {
        self.shards.iter().map(|s| s.evicted).sum()
    }

    /// Clients refused at the cap, over all shards.
    pub fn refused(&self) -> u64 {
        self.shards.iter().map(|s| s.refused).sum()
    }

    /// Every shard's requests merged: answers per status and one latency
    /// histogram for the whole server.
    pub fn all_requests(&self) -> RequestStats {
        let mut all = RequestStats::default();
        for shard in &self.requests {
            all.merge(shard);
        }
        all
    }

    /// Whether every shard is taking connections.
    pub fn ready(&self) -> bool {
        !self.shards.is_empty() && self.shards.iter().all(|s| s.listening)
    }
}
