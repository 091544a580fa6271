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

/// A non-waiting send ([`Mesh::try_spawn_on`](crate::Mesh::try_spawn_on))
/// failed; the closure comes back.
///
/// It is an [`Error`](std::error::Error) whatever the closure's type: its
/// `Debug` shows the shard, never the closure (closures are not `Debug`), as
/// tokio's `SendError` does. So it can be unwrapped, `?`-ed, and boxed (into
/// `Box<dyn Error + Send + Sync>` when the closure is `Sync`).
///
/// ```
/// use shardlet::TrySpawnError;
///
/// let err = TrySpawnError::NoSuchShard { shard: 7, count: 2, closure: || async {} };
/// assert_eq!(err.to_string(), "no shard 7: the runtime has 2 shard(s)");
/// assert_eq!(format!("{err:?}"), "NoSuchShard { shard: 7, count: 2, .. }");
/// let boxed: Box<dyn std::error::Error + Send + Sync> = err.into();
/// # drop(boxed);
/// ```
pub enum TrySpawnError<F> {
    /// The way to the shard (its lane or mailbox) is full right now.
    Full {
        /// The target shard.
        shard: usize,
        /// The closure that was not sent.
        closure: F,
    },
    /// The shard has stopped.
    Gone {
        /// The target shard.
        shard: usize,
        /// The closure that was not sent.
        closure: F,
    },
    /// No shard with that index.
    NoSuchShard {
        /// The index asked for.
        shard: usize,
        /// Shards in the runtime.
        count: usize,
        /// The closure that was not sent.
        closure: F,
    },
}

impl<F> TrySpawnError<F> {
    /// The closure that was not sent.
    pub fn into_inner(self) -> F {
        match self {
            TrySpawnError::Full { closure, .. }
            | TrySpawnError::Gone { closure, .. }
            | TrySpawnError::NoSuchShard { closure, .. } => closure,
        }
    }

    /// The shard it was meant for.
    pub fn shard(&self) -> usize {
        match self {
            TrySpawnError::Full { shard, .. }
            | TrySpawnError::Gone { shard, .. }
            | TrySpawnError::NoSuchShard { shard, .. } => *shard,
        }
    }
}

/// By hand, without `F: Debug`: the closure is left out.
impl<F> std::fmt::Debug for TrySpawnError<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrySpawnError::Full { shard, .. } => f
                .debug_struct("Full")
                .field("shard", shard)
                .finish_non_exhaustive(),
            TrySpawnError::Gone { shard, .. } => f
                .debug_struct("Gone")
                .field("shard", shard)
                .finish_non_exhaustive(),
            TrySpawnError::NoSuchShard { shard, count, .. } => f
                .debug_struct("NoSuchShard")
                .field("shard", shard)
                .field("count", count)
                .finish_non_exhaustive(),
        }
    }
}

/// Worded as [`MeshError`]'s.
impl<F> std::fmt::Display for TrySpawnError<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrySpawnError::Full { shard, .. } => write!(f, "shard {shard}'s inbox is full"),
            TrySpawnError::Gone { shard, .. } => write!(f, "shard {shard} has stopped"),
            TrySpawnError::NoSuchShard { shard, count, .. } => {
                write!(f, "no shard {shard}: the runtime has {count} shard(s)")
            }
        }
    }
}

impl<F> std::error::Error for TrySpawnError<F> {}
