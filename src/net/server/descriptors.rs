//! The descriptor budget: the connection cap a shard gets by default,
//! derived from the process's descriptor limit (`RLIMIT_NOFILE`).
//!
//! Every open connection holds one descriptor, so the number of
//! connections a process can hold is its soft `RLIMIT_NOFILE` (`ulimit -n`)
//! less what the process needs besides: stdio, listeners, each shard's
//! epoll and io_uring descriptors and eventfds, files, logs, and outgoing
//! connections. The default cap keeps back a documented reserve,
//!
//! ```text
//! reserve = 256 + 32 x shards + limit / 64
//! cap per shard = (limit - reserve) / shards   (at least 1)
//! ```
//!
//! so with 20,000 descriptors one shard holds up to 19,400 connections and
//! two shards 9,684 each; with 1,048,576 and 64 shards, 16,092 each
//! (1,029,888 in all). A server reads the limit again each time it starts
//! serving, so raising `ulimit -n` (or `setrlimit` before serving) raises
//! the default cap. A program that opens many outgoing connections or files
//! beside its server sets the cap itself
//! ([`ServerConfig::with_max_connections`](crate::net::ServerConfig::with_max_connections)
//! or `SHARDLET_MAX_CONNECTIONS`).

use crate::net::server::capacity::CapOrigin;

/// Descriptors kept back for the whole process (stdio, files, logs,
/// outgoing connections, the blocking pool's work).
pub const FD_RESERVE: u64 = 256;
/// Descriptors kept back for each shard (its listener, epoll instance,
/// io_uring rings and eventfds, timers).
pub const FD_RESERVE_PER_SHARD: u64 = 32;
/// The share of the limit kept back besides: 1/64 (1.6%).
pub const FD_RESERVE_DIVISOR: u64 = 64;

/// The descriptors a process of `shards` shards keeps out of its connection
/// caps when its limit is `limit`.
///
/// # Examples
///
/// ```
/// use shardlet::net::fd_reserve;
///
/// assert_eq!(fd_reserve(20_000, 1), 256 + 32 + 312);
/// ```
pub fn fd_reserve(limit: u64, shards: usize) -> u64 {
    FD_RESERVE + FD_RESERVE_PER_SHARD * shards.max(1) as u64 + limit / FD_RESERVE_DIVISOR
}

/// The default connection cap of each of `shards` shards for a descriptor
/// limit of `limit` (see the module docs): never below 1.
///
/// # Examples
///
/// ```
/// use shardlet::net::max_connections_for;
///
/// assert_eq!(max_connections_for(20_000, 1), 19_400);
/// assert_eq!(max_connections_for(20_000, 2), 9_684);
/// assert_eq!(max_connections_for(100, 1), 1, "below the reserve");
/// ```
pub fn max_connections_for(limit: u64, shards: usize) -> usize {
    let shards = shards.max(1);
    let usable = limit.saturating_sub(fd_reserve(limit, shards));
    (usable / shards as u64).max(1) as usize
}

/// The process's soft descriptor limit (`ulimit -n`) now; for "unlimited",
/// the kernel's ceiling (`/proc/sys/fs/nr_open`).
///
/// # Examples
///
/// ```
/// assert!(shardlet::net::fd_limit() > 0);
/// ```
pub fn fd_limit() -> u64 {
    crate::config::nofile::soft_limit()
}

/// The default connection cap of each of `shards` shards, from the
/// descriptor limit as it is now: [`max_connections_for`]`(`[`fd_limit`]`(), shards)`.
///
/// # Examples
///
/// ```
/// let cap = shardlet::net::default_max_connections(2);
/// assert!(cap >= 1);
/// ```
pub fn default_max_connections(shards: usize) -> usize {
    max_connections_for(fd_limit(), shards)
}

/// The cap a server of `shards` shards gets now: `configured`, or derived
/// from the descriptor limit; and where it came from.
pub(crate) fn resolve_cap(configured: Option<usize>, shards: usize) -> (usize, CapOrigin) {
    match configured {
        Some(cap) => (cap, CapOrigin::Configured),
        None => {
            let fd_limit = fd_limit();
            (
                max_connections_for(fd_limit, shards),
                CapOrigin::Derived { fd_limit },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_figures_hold() {
        // The module docs and the README quote these.
        assert_eq!(max_connections_for(20_000, 1), 19_400);
        assert_eq!(max_connections_for(20_000, 2), 9_684);
        assert_eq!(max_connections_for(1 << 20, 64), 16_092);
        assert_eq!(max_connections_for(1024, 1), 720);
        assert_eq!(max_connections_for(0, 4), 1);
    }
}
