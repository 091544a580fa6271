//! Every `SHARDLET_*` variable's name, and every default and bound a
//! [`Config`](crate::Config) applies: the one place a knob's value range is
//! written down (the mailbox's and the accept mode's included).

use std::time::Duration;

/// `SHARDLET_SHARDS`: how many shards (executors) to start.
pub const ENV_SHARDS: &str = "SHARDLET_SHARDS";
/// `SHARDLET_CPUS`: which CPUs the shards may use, e.g. `0,2-5`. A set, as
/// for `taskset -c`: the order is not kept, and shard *i* is pinned to the
/// *i*-th CPU of the list in ascending order (`3,1` pins shard 0 to CPU 1).
pub const ENV_CPUS: &str = "SHARDLET_CPUS";
/// `SHARDLET_PIN`: pin each shard to one CPU (`1`/`0`, `on`/`off`, `true`/`false`).
pub const ENV_PIN: &str = "SHARDLET_PIN";
/// `SHARDLET_POOL_SIZE`: default size of a [`GreenPool`](crate::GreenPool):
/// how many green threads (handlers) run at once. It does not limit how many
/// connections a server holds; `SHARDLET_MAX_CONNECTIONS` does.
pub const ENV_POOL_SIZE: &str = "SHARDLET_POOL_SIZE";
/// `SHARDLET_MAX_CONNECTIONS`: the most connections a
/// [`Server`](crate::net::Server) holds per shard. Unset: derived from the
/// descriptor limit when the server starts (see
/// [`max_connections_for`](crate::net::max_connections_for)).
pub const ENV_MAX_CONNECTIONS: &str = "SHARDLET_MAX_CONNECTIONS";
/// `SHARDLET_IO_MEMORY`: io_uring registered-buffer memory per shard (`4M`, `512K`, bytes).
pub const ENV_IO_MEMORY: &str = "SHARDLET_IO_MEMORY";
/// `SHARDLET_SPIN_US`: microseconds a shard keeps polling after its last work
/// before it parks (0 = park at once).
pub const ENV_SPIN_US: &str = "SHARDLET_SPIN_US";
/// `SHARDLET_BLOCKING_THREADS`: threads in the pool behind [`blocking`](crate::blocking).
pub const ENV_BLOCKING_THREADS: &str = "SHARDLET_BLOCKING_THREADS";
/// `SHARDLET_ACCEPT`: how a [`Server`](crate::net::Server) spreads connections
/// over shards: `reuseport` (default) or `handoff`; see [`AcceptMode`](crate::AcceptMode).
pub const ENV_ACCEPT: &str = "SHARDLET_ACCEPT";

/// `SHARDLET_RESERVE_CPUS`: how many of the allowed CPUs to leave to the
/// host's own threads (the first ones); shards use the rest. Default 0.
pub const ENV_RESERVE_CPUS: &str = "SHARDLET_RESERVE_CPUS";

/// `SHARDLET_MAILBOX`: how many cross-shard messages may wait for one shard:
/// this many from other threads in its mailbox, and this many divided over
/// the shards' lanes to it (`mailbox / shards` per sending shard, at least 1).
pub const ENV_MAILBOX: &str = "SHARDLET_MAILBOX";

/// Default inbox capacity per shard (`SHARDLET_MAILBOX`).
pub const DEFAULT_MAILBOX: usize = 1024;
/// Eventlet's default `GreenPool` size.
pub const DEFAULT_POOL_SIZE: usize = 1000;
/// Default number of threads behind [`blocking`](crate::blocking).
pub const DEFAULT_BLOCKING_THREADS: usize = 4;
/// Default for `SHARDLET_SPIN_US`: 50 µs.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// The smallest io memory glommio accepts per shard.
pub const MIN_IO_MEMORY: usize = 64 << 10;
/// The most io memory a shard may ask for: glommio maps and registers it
/// all at start, and fails deep inside its ring setup when it cannot.
pub const MAX_IO_MEMORY: usize = 1 << 30;
/// The most shards: the lanes between them take memory in the square of
/// their number.
pub const MAX_SHARDS: usize = 1024;
/// The most threads behind [`blocking`](crate::blocking) (each has its own
/// stack; far more than a machine's cores only adds contention).
pub const MAX_BLOCKING_THREADS: usize = 1024;
/// The longest spin window: a shard spins this long after each burst of
/// work, so a long one keeps an idle host's CPUs busy.
pub const MAX_SPIN: Duration = Duration::from_millis(1);
/// The largest mailbox: lanes and mailboxes hold about `shards` times this
/// many messages in all, allocated up front.
pub const MAX_MAILBOX: usize = 1 << 16;
