//! The green-thread layer: [`spawn()`], [`spawn_n`] and the [`GreenThread`]
//! handle (`green.rs`), [`JoinError`] (`error.rs`), the guard that makes a
//! task's panic a value and ends a shard's tasks (`guard.rs`), the panic hook
//! (`hook.rs`), the ordered set of tasks behind `imap` and piles (`crew.rs`),
//! and the pool of threads behind [`blocking`](crate::blocking) (`blocking.rs`).
//!
//! It sits on `config` and `sync`; pools, piles, the mesh and the servers
//! build on it.

pub(crate) mod blocking;
pub(crate) mod counters;
pub(crate) mod crew;
mod error;
pub(crate) mod green;
pub(crate) mod guard;
pub(crate) mod hook;

pub use error::JoinError;
pub(crate) use green::{
    log_panic, run_inline, spawn_cancellable, spawn_in, spawn_n_in, too_deep, TaskHandle,
};
pub use green::{spawn, spawn_n, GreenThread};
