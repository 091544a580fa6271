//! The shard this thread runs as: its place among the runtime's shards and
//! the configuration the runtime was started with. Installed by the runtime
//! for the shard's life; read through
//! [`shard::id`](crate::shard::id) and by the layers that size themselves
//! from the configuration.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Config;

/// A shard's place and configuration.
#[derive(Debug)]
pub(crate) struct Place {
    /// This shard's index, `0..count`.
    pub(crate) id: usize,
    /// How many shards the runtime runs.
    pub(crate) count: usize,
    /// The CPU the shard is pinned to, if any.
    pub(crate) cpu: Option<usize>,
    /// The runtime's configuration.
    pub(crate) config: Arc<Config>,
}

thread_local! {
    static PLACE: RefCell<Option<Rc<Place>>> = const { RefCell::new(None) };
}

/// Makes this thread shard `place.id` until the guard drops. (The other
/// layers keep their per-shard state the same way, through
/// `sync::local`, which sits above this layer.)
pub(crate) fn enter(place: Place) -> Leave {
    PLACE.with(|c| *c.borrow_mut() = Some(Rc::new(place)));
    Leave(())
}

/// Empties this thread's place when dropped.
#[derive(Debug)]
#[must_use = "the place is emptied when the guard drops"]
pub(crate) struct Leave(());

impl Drop for Leave {
    fn drop(&mut self) {
        let place = PLACE.try_with(|c| c.borrow_mut().take()).ok().flatten();
        drop(place);
    }
}

fn with<R>(f: impl FnOnce(&Place) -> R) -> Option<R> {
    PLACE.try_with(|c| c.borrow().as_deref().map(f)).ok().flatten()
}

/// This shard's index, or `None` off a shard.
pub(crate) fn try_id() -> Option<usize> {
    with(|p| p.id)
}

/// How many shards the runtime runs, or `None` off a shard.
pub(crate) fn count() -> Option<usize> {
    with(|p| p.count)
}

/// The CPU this shard is pinned to (`None` unpinned or off a shard).
pub(crate) fn cpu() -> Option<usize> {
    with(|p| p.cpu).flatten()
}

/// The configuration the runtime was started with.
pub(crate) fn config() -> Option<Arc<Config>> {
    with(|p| p.config.clone())
}

/// Reads the runtime's configuration without cloning its `Arc`.
pub(crate) fn with_config<R>(f: impl FnOnce(&Config) -> R) -> Option<R> {
    with(|p| f(&p.config))
}
