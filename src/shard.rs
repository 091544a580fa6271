//! Where am I? The current shard's identity and its stop signal.
//!
//! A facade: each layer keeps its own per-shard state (the shard's place
//! and configuration in `config`, the stop signal in `sync::stop`, the mesh
//! in `mesh`), installed by the runtime on each shard thread before the
//! entry future runs; these functions read it from any task on that shard.
//! No layer below reads this module.

use crate::config::current as place;
use crate::mesh::{here, Mesh};
use crate::sync::stop::{self, Stopper};

const OUTSIDE: &str = "not on a shardlet shard: call this from a task of a shardlet Runtime";

/// This shard's index, `0..count()`.
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime); see [`try_id`].
///
/// # Examples
///
/// ```
/// use shardlet::{shard, Config, Runtime};
/// let ids = Runtime::new(Config::default().with_shards(1).with_pin(false))
///     .unwrap()
///     .run(|| async { (shard::id(), shard::count()) })
///     .unwrap();
/// assert_eq!(ids, [(0, 1)]);
/// ```
pub fn id() -> usize {
    try_id().expect(OUTSIDE)
}

/// This shard's index, or `None` outside a shardlet shard.
pub fn try_id() -> Option<usize> {
    place::try_id()
}

/// How many shards the runtime runs.
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
pub fn count() -> usize {
    place::count().expect(OUTSIDE)
}

/// The CPU this shard is pinned to, or `None` when unpinned (or outside a shard).
pub fn cpu() -> Option<usize> {
    place::cpu()
}

/// Panics caught in green threads on this thread so far: tasks started by
/// `spawn`, `spawn_n`, pools and piles. (A panicking [`blocking`](crate::blocking)
/// closure is counted on the blocking thread, and reported to its caller.)
pub fn panics() -> u64 {
    crate::task::guard::panics()
}

/// Whether the runtime was asked to stop. `false` outside a shard.
pub fn stop_requested() -> bool {
    stop::requested()
}

/// Resolves once the runtime is asked to stop; servers await it to start draining.
/// Outside a shard it never resolves.
pub async fn stopped() {
    match stop::current() {
        Some(stopper) => stopper.stopped().await,
        None => std::future::pending().await,
    }
}

/// The runtime's stop handle, so a task can stop the whole runtime (all shards).
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
pub fn stopper() -> Stopper {
    stop::current().expect(OUTSIDE)
}

/// The runtime's cross-shard [`Mesh`], for what the free functions do not
/// cover (`try_spawn_on`, `queued`, handing it to a plain thread).
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
pub fn mesh() -> Mesh {
    here::here().map(|h| h.mesh.clone()).expect(OUTSIDE)
}
