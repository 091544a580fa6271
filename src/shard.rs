//! Where am I? The current shard's identity and its stop signal.
//!
//! The runtime installs a shard context on each shard thread before the
//! entry future runs; these functions read it from any task on that shard.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Config;
use crate::mesh::{Mesh, Outbox};
use crate::sync::lanes::Lanes;
use crate::sync::stop::Stopper;
use crate::task::blocking::BlockingPool;

pub(crate) struct ShardContext {
    pub(crate) id: usize,
    pub(crate) count: usize,
    pub(crate) cpu: Option<usize>,
    pub(crate) config: Arc<Config>,
    pub(crate) stopper: Stopper,
    pub(crate) blocking: Arc<BlockingPool>,
    pub(crate) mesh: Mesh,
    /// This shard's sending ends of the mesh's lanes.
    pub(crate) outbox: RefCell<Outbox>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Rc<ShardContext>>> = const { RefCell::new(None) };
}

/// Installs `ctx` on this thread until the guard drops.
pub(crate) fn enter(ctx: ShardContext) -> impl Drop {
    CONTEXT.with(|c| *c.borrow_mut() = Some(Rc::new(ctx)));
    Leave
}

struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        CONTEXT.with(|c| c.borrow_mut().take());
    }
}

fn with<R>(f: impl FnOnce(&ShardContext) -> R) -> Option<R> {
    CONTEXT.with(|c| c.borrow().as_deref().map(f))
}

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
    with(|c| c.id)
}

/// How many shards the runtime runs.
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
pub fn count() -> usize {
    with(|c| c.count).expect(OUTSIDE)
}

/// The CPU this shard is pinned to, or `None` when unpinned (or outside a shard).
pub fn cpu() -> Option<usize> {
    with(|c| c.cpu).flatten()
}

/// Panics caught in green threads on this thread so far: tasks started by
/// `spawn`, `spawn_n`, pools and piles. (A panicking [`blocking`](crate::blocking)
/// closure is counted on the blocking thread, and reported to its caller.)
pub fn panics() -> u64 {
    crate::task::guard::panics()
}

/// Whether the runtime was asked to stop. `false` outside a shard.
pub fn stop_requested() -> bool {
    with(|c| c.stopper.is_stopped()).unwrap_or(false)
}

/// Resolves once the runtime is asked to stop; servers await it to start draining.
/// Outside a shard it never resolves.
pub async fn stopped() {
    match with(|c| c.stopper.clone()) {
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
    with(|c| c.stopper.clone()).expect(OUTSIDE)
}

/// The runtime's stop handle, or `None` outside a shardlet shard.
pub(crate) fn try_stopper() -> Option<Stopper> {
    with(|c| c.stopper.clone())
}

/// The configuration the runtime was started with.
pub(crate) fn config() -> Option<Arc<Config>> {
    with(|c| c.config.clone())
}

/// Reads the runtime's configuration without cloning its `Arc`.
pub(crate) fn with_config<R>(f: impl FnOnce(&Config) -> R) -> Option<R> {
    with(|c| f(&c.config))
}

/// The runtime's cross-shard [`Mesh`], for what the free functions do not
/// cover (`try_spawn_on`, `queued`, handing it to a plain thread).
///
/// # Panics
///
/// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
pub fn mesh() -> Mesh {
    try_mesh().expect(OUTSIDE)
}

/// The runtime's cross-shard mesh, or `None` outside a shardlet shard.
pub(crate) fn try_mesh() -> Option<Mesh> {
    with(|c| c.mesh.clone())
}

/// This shard's context, or `None` outside a shardlet shard.
pub(crate) fn context() -> Option<Rc<ShardContext>> {
    CONTEXT.with(|c| c.borrow().clone())
}

/// Calls `f` with this shard's outbox, if this thread is a shard that
/// sends on `lanes` (and the outbox is not in use further up the stack).
pub(crate) fn with_outbox<R>(lanes: &Lanes, f: impl FnOnce(&mut Outbox) -> R) -> Option<R> {
    CONTEXT.with(|c| {
        let context = c.borrow();
        let context = context.as_deref()?;
        let mut outbox = context.outbox.try_borrow_mut().ok()?;
        lanes.owns(&outbox).then(|| f(&mut outbox))
    })
}

pub(crate) fn blocking_pool() -> Option<Arc<BlockingPool>> {
    with(|c| c.blocking.clone())
}
