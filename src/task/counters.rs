//! One shard's counters, written by the shard and read by anyone:
//! [`ShardCounters`], and the hooks the rest of the crate calls to feed
//! them.
//!
//! - **Written where they happen**, by the shard's own thread only (so an
//!   increment is a plain load and store, no locked instruction): tasks
//!   spawned and ended ([`task_spawned`] / [`task_ended`], called by the
//!   task wrapper), and the time spent in each task poll
//!   the executor makes ([`poll_starts`] / [`poll_ends`]), which gives the
//!   busy time, the number of polls, the longest poll and the stalls.
//! - **Sampled by the shard** every [`PUBLISH_EVERY`] and when it ends
//!   ([`publish`]), for what only the shard can read: the readiness
//!   driver's counters, the panics its guards caught, and how full its
//!   lanes *to* each shard are (the senders sample them, so the backlog in
//!   front of a stuck shard shows while it is stuck).
//!
//! Poll timing reads `CLOCK_MONOTONIC_COARSE` (a few nanoseconds, where
//! `Instant::now` costs about 25 here), and only for polls made by the
//! executor itself, not for tasks polled inside another task's poll (a new
//! task's first step, a pool's inline work): their time is in the outer
//! poll. The coarse clock ticks every 1-4 ms (the kernel's `HZ`): a poll
//! shorter than a tick counts one tick or nothing, depending on whether a
//! tick fell inside it, so busy time is right on average (its expected
//! value is the true time). A poll that read `k` ticks lasted more than
//! `k - 1` of them: the longest poll and the stalls use that lower bound,
//! so a short poll that happened to straddle a tick is never taken for a
//! long one.
//!
//! Polls in which shardlet's own loops only looked for work and found none
//! (the inbox loop and a waiting caller spinning for `SHARDLET_SPIN_US`)
//! are marked idle ([`idle_poll`]) and count as idle time, as Seastar
//! counts its pollers.

use std::cell::{Cell, OnceCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::Release};
use std::sync::Arc;
use std::time::Duration;

use nix::time::{clock_getres, clock_gettime, ClockId};

/// How often a shard samples what only it can read.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// A poll at least this long counts as a stall.
pub const STALL: Duration = Duration::from_millis(10);

/// One shard's counters: written by the shard, read from any thread.
/// Aligned to its own cache lines, so shards do not slow each other down.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct ShardCounters {
    pub(crate) spawned: AtomicU64,
    pub(crate) ended: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) busy_nanos: AtomicU64,
    pub(crate) longest_nanos: AtomicU64,
    pub(crate) stalls: AtomicU64,
    /// When the poll running now began ([`now`]), 0 between polls.
    pub(crate) poll_started: AtomicU64,
    /// When the shard started and ended ([`now`]), 0 before.
    pub(crate) started_at: AtomicU64,
    pub(crate) ended_at: AtomicU64,
    pub(crate) running: AtomicBool,
    // Sampled by `publish`.
    pub(crate) panics: AtomicU64,
    /// Messages waiting in this shard's lane to each shard.
    pub(crate) outgoing: Box<[AtomicU64]>,
    pub(crate) registrations: AtomicU64,
    pub(crate) rounds: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) parks: AtomicU64,
    pub(crate) drivers: AtomicU64,
    /// The most idle time (ns) any snapshot has reported for this shard:
    /// the one field that readers write (the metrics layer), so that no
    /// snapshot reports less idle time than one before it.
    pub(crate) idle_reported: AtomicU64,
}

impl ShardCounters {
    pub(crate) fn new(shards: usize) -> Self {
        let zero = AtomicU64::default;
        ShardCounters {
            spawned: zero(),
            ended: zero(),
            polls: zero(),
            busy_nanos: zero(),
            longest_nanos: zero(),
            stalls: zero(),
            poll_started: zero(),
            started_at: zero(),
            ended_at: zero(),
            running: AtomicBool::new(false),
            panics: zero(),
            outgoing: (0..shards).map(|_| zero()).collect(),
            registrations: zero(),
            rounds: zero(),
            events: zero(),
            parks: zero(),
            drivers: zero(),
            idle_reported: zero(),
        }
    }
}

/// Adds `n` to a counter only this thread writes: a load and a store.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// The coarse monotonic clock in nanoseconds (never 0).
#[inline]
pub(crate) fn now() -> u64 {
    match clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE) {
        Ok(t) => (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
            .max(1),
        Err(_) => 1,
    }
}

/// What this thread feeds: its shard's counters (set once, when the shard
/// starts) and whether the poll running now found only idleness.
///
/// No field needs dropping, so the thread-local is a plain address with no
/// destructor to register or check: every task spawn, end and executor poll
/// reads it.
struct Local {
    /// The shard's counters, kept alive by [`OWNER`] (which nulls this
    /// before it lets them go); null on other threads.
    sink: Cell<*const ShardCounters>,
    idle: Cell<bool>,
    /// The coarse clock's resolution in nanoseconds.
    tick: Cell<u64>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            sink: Cell::new(std::ptr::null()),
            idle: Cell::new(false),
            tick: Cell::new(0),
        }
    };
    /// Owns the counters [`Local::sink`] points to, until the thread ends.
    static OWNER: OnceCell<Owner> = const { OnceCell::new() };
}

struct Owner {
    _counters: Arc<ShardCounters>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Tasks dropped after this (by other thread-locals' destructors)
        // count nothing, rather than read freed counters.
        LOCAL.with(|l| l.sink.set(std::ptr::null()));
    }
}

/// The coarse clock's resolution (4 ms when unknown).
fn resolution() -> u64 {
    clock_getres(ClockId::CLOCK_MONOTONIC_COARSE)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(4_000_000)
}

#[inline]
#[allow(unsafe_code)] // one raw-pointer read; see the SAFETY note
fn with_sink(f: impl FnOnce(&ShardCounters)) {
    let sink = LOCAL.with(|l| l.sink.get());
    // SAFETY: a non-null `sink` points into the `Arc` that `OWNER` holds,
    // and `OWNER` nulls it before letting that go.
    if let Some(counters) = unsafe { sink.as_ref() } {
        f(counters);
    }
}

/// Makes this (shard) thread feed `counters`; marks the shard running.
pub(crate) fn attach(counters: Arc<ShardCounters>) {
    counters.started_at.store(now(), Relaxed);
    counters.running.store(true, Relaxed);
    LOCAL.with(|l| l.tick.set(resolution()));
    let sink = Arc::as_ptr(&counters);
    if OWNER.with(|o| o.set(Owner { _counters: counters }).is_ok()) {
        LOCAL.with(|l| l.sink.set(sink));
    }
}

/// The shard has ended: its uptime stops.
pub(crate) fn detach() {
    with_sink(|c| {
        c.ended_at.store(now(), Relaxed);
        c.running.store(false, Relaxed);
        c.poll_started.store(0, Relaxed);
    });
}

/// A poll by the executor begins (the caller checks that it is not nested
/// in another guarded poll): when it began, if this thread feeds counters.
#[inline]
pub(crate) fn poll_starts() -> Option<u64> {
    let mut started = None;
    with_sink(|c| {
        let at = now();
        c.poll_started.store(at, Relaxed);
        started = Some(at);
    });
    started
}

/// The poll that began at `started` is over.
#[inline]
pub(crate) fn poll_ends(started: Option<u64>) {
    let Some(started) = started else { return };
    let (idle, tick) = LOCAL.with(|l| (l.idle.replace(false), l.tick.get()));
    with_sink(|c| {
        let took = now().saturating_sub(started);
        bump(&c.polls, 1);
        if idle {
            // shardlet's own looking for work: idle time, and no stall (a
            // long one means the OS took the CPU, not that a task kept it).
            c.poll_started.store(0, Release);
            return;
        }
        bump(&c.busy_nanos, took);
        // After the busy time: a reader that sees no poll running (Acquire)
        // sees this poll's time in `busy_nanos` (so never counts it idle).
        c.poll_started.store(0, Release);
        // At least this long (see the module docs).
        let at_least = took.saturating_sub(tick);
        if at_least > c.longest_nanos.load(Relaxed) {
            c.longest_nanos.store(at_least, Relaxed);
        }
        if at_least >= STALL.as_nanos() as u64 {
            bump(&c.stalls, 1);
        }
    });
}

/// The poll running now only looked for work and found none: its time is
/// idle time.
#[inline]
pub(crate) fn idle_poll() {
    LOCAL.with(|l| l.idle.set(true));
}

/// What only the shard can read, sampled by the runtime on the shard for
/// [`publish`] (the layers above fill it in: the readiness driver's
/// counters, the panics the guards caught, the mesh's lanes).
#[derive(Debug, Default)]
pub(crate) struct Sample<'a> {
    /// `outgoing[to]`: how many messages wait in this shard's lane to `to`.
    pub(crate) outgoing: &'a [usize],
    /// Panics caught on this shard so far.
    pub(crate) panics: u64,
    /// The readiness driver's registrations, rounds, events, parks and drivers.
    pub(crate) registrations: u64,
    pub(crate) rounds: u64,
    pub(crate) events: u64,
    pub(crate) parks: u64,
    pub(crate) drivers: u64,
}

/// Stores a [`Sample`] (call it on the shard).
pub(crate) fn publish(sample: &Sample<'_>) {
    with_sink(|c| {
        c.panics.store(sample.panics, Relaxed);
        for (slot, n) in c.outgoing.iter().zip(sample.outgoing) {
            slot.store(*n as u64, Relaxed);
        }
        c.registrations.store(sample.registrations, Relaxed);
        c.rounds.store(sample.rounds, Relaxed);
        c.events.store(sample.events, Relaxed);
        c.parks.store(sample.parks, Relaxed);
        c.drivers.store(sample.drivers, Relaxed);
    });
}

/// A task was spawned on this shard (see `task::guard::Guarded`).
#[inline]
pub(crate) fn task_spawned() {
    with_sink(|c| bump(&c.spawned, 1));
}

/// A task spawned on this shard ended: finished, cancelled or dropped with
/// its shard.
#[inline]
pub(crate) fn task_ended() {
    // Release, read with Acquire before `spawned`: a reader that sees this
    // end also sees the spawn before it, so its live count is never too low.
    with_sink(|c| c.ended.store(c.ended.load(Relaxed).wrapping_add(1), Release));
}
