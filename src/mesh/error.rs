//! Why a cross-shard call failed ([`MeshError`]), and why a non-waiting
//! send did not go out ([`TrySpawnError`], with the closure back).

use crate::task::JoinError;

/// Why a cross-shard call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// No shard with that index.
    #[error("no shard {shard}: the runtime has {count} shard(s)")]
    NoSuchShard {
        /// The index asked for.
        shard: usize,
        /// Shards in the runtime.
        count: usize,
    },
    /// The shard has stopped; the work did not run (or its result was lost with it).
    #[error("shard {shard} has stopped")]
    ShardGone {
        /// The target shard.
        shard: usize,
    },
    /// The work ran on the shard and panicked (or was cancelled); the shard lives on.
    #[error("task on shard {shard}: {error}")]
    Task {
        /// The target shard.
        shard: usize,
        /// What happened to the task.
        error: JoinError,
    },
}

/// A non-waiting send failed; the closure comes back.
#[derive(Debug, thiserror::Error)]
pub enum TrySpawnError<F> {
    /// The shard's inbox is full right now.
    #[error("the shard's inbox is full")]
    Full(F),
    /// The shard has stopped.
    #[error("the shard has stopped")]
    Gone(F),
    /// No shard with that index.
    #[error("no such shard")]
    NoSuchShard(F),
}

impl<F> TrySpawnError<F> {
    /// The closure that was not sent.
    pub fn into_inner(self) -> F {
        match self {
            TrySpawnError::Full(f) | TrySpawnError::Gone(f) | TrySpawnError::NoSuchShard(f) => f,
        }
    }
}
