//! Per-shard state, one slot per layer: each layer keeps what a shard needs
//! of it in a thread-local of its own (the shard's place and configuration
//! in `config`, the stop signal in `sync::stop`, the blocking pool in
//! `task::blocking`, the mesh and outbox in `mesh`), instead of one hub that
//! every layer feeds and reads. The runtime installs each slot when a shard
//! starts and the returned [`Installed`] guard empties it when the shard
//! ends.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A layer's thread-local slot for this shard's state.
pub(crate) type Slot<T> = LocalKey<RefCell<Option<T>>>;

/// Puts `value` in `slot` for this thread until the guard drops.
pub(crate) fn install<T: 'static>(slot: &'static Slot<T>, value: T) -> Installed<T> {
    slot.with(|c| *c.borrow_mut() = Some(value));
    Installed(slot)
}

/// Reads this thread's value in `slot`, or `None` off a shard.
pub(crate) fn with<T: 'static, R>(slot: &'static Slot<T>, f: impl FnOnce(&T) -> R) -> Option<R> {
    slot.try_with(|c| c.borrow().as_ref().map(f)).ok().flatten()
}

/// Empties its slot when dropped (the value is dropped outside the borrow).
#[must_use = "the slot is emptied when the guard drops"]
pub(crate) struct Installed<T: 'static>(&'static Slot<T>);

impl<T: 'static> Drop for Installed<T> {
    fn drop(&mut self) {
        let value = self.0.try_with(|c| c.borrow_mut().take()).ok().flatten();
        drop(value);
    }
}

impl<T: 'static> std::fmt::Debug for Installed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Installed")
    }
}
