//! The descriptor check that runs before any shard starts.
//!
//! Each shard opens a handful of descriptors just to exist (glommio's three
//! io_uring rings and its event descriptors, the shard's epoll driver and
//! its wake-up descriptor): 7 on Linux 6.x, measured. Below that, a shard
//! fails deep inside glommio (an `unwrap` of `EMFILE` in its placement
//! code, a panic); this check says up front what to raise. Descriptors the
//! process holds already (a host's files and sockets) count against the
//! same limit.

use nix::sys::resource::{getrlimit, Resource};

/// Descriptors the process needs besides its shards: stdio, the blocking
/// pool's and the signal thread's, a listener and a few connections.
const BASE: u64 = 16;
/// Of [`BASE`], those a process has open from its start (stdio).
const STDIO: u64 = 3;
/// Descriptors one shard opens to start (7 measured), with room for one more.
const PER_SHARD: u64 = 8;

/// `RLIMIT_NOFILE` is too low to start the shards asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "RLIMIT_NOFILE is {limit} descriptors ({open} open already), but {shards} shard(s) need at least {need} to start; \
     raise it (`ulimit -n`, LimitNOFILE= in a systemd unit, `nofile` in /etc/security/limits.conf, \
     `--ulimit nofile=` for docker) or lower SHARDLET_SHARDS"
)]
pub struct DescriptorError {
    /// The soft limit.
    pub limit: u64,
    /// Descriptors the process held when it checked.
    pub open: u64,
    /// Descriptors the shards need to start.
    pub need: u64,
    /// Shards asked for.
    pub shards: usize,
}

/// Used when the limit is "unlimited" and `/proc/sys/fs/nr_open` cannot be
/// read: the kernel's default for `nr_open`.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// The process's soft descriptor limit (`ulimit -n`) now; for "unlimited",
/// the kernel's ceiling (`/proc/sys/fs/nr_open`). Public as
/// [`net::fd_limit`](crate::net::fd_limit).
pub(crate) fn soft_limit() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft != nix::libc::RLIM_INFINITY => soft,
        Ok(_) => std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(NR_OPEN_DEFAULT),
        Err(errno) => {
            tracing::warn!(target: "shardlet::config", %errno, "getrlimit(RLIMIT_NOFILE) failed; assuming 1024 descriptors");
            1024
        }
    }
}

/// Checks that `shards` shards can start under the current soft limit,
/// beside the descriptors open now.
pub(crate) fn check(shards: usize) -> Result<(), DescriptorError> {
    check_with(soft_limit(), open_now().unwrap_or(STDIO), shards)
}

/// Descriptors this process holds now (`/proc/self/fd`, less the one that
/// reads it), if they can be counted (not when none is left to read them).
pub(crate) fn open_now() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((dir.count() as u64).saturating_sub(1))
}

fn check_with(limit: u64, open: u64, shards: usize) -> Result<(), DescriptorError> {
    let need = BASE + open.saturating_sub(STDIO) + PER_SHARD * shards as u64;
    if limit < need {
        return Err(DescriptorError {
            limit,
            open,
            need,
            shards,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_at_its_edge_names_what_to_raise() {
        assert!(check_with(24, 3, 1).is_ok());
        let err = check_with(23, 3, 1).unwrap_err();
        assert_eq!((err.limit, err.need, err.shards), (23, 24, 1));
        let text = err.to_string();
        assert!(
            text.contains("RLIMIT_NOFILE is 23 descriptors (3 open already)"),
            "{text}"
        );
        assert!(text.contains("ulimit -n"), "{text}");
        assert!(check_with(1024, 3, 64).is_ok());
        assert!(check_with(1024, 3, 1024).is_err());
    }

    /// Descriptors a host holds already leave fewer for the shards. Before:
    /// a process holding 59 of 64 passed the check, and a shard failed
    /// inside glommio (a panic on `EMFILE`).
    #[test]
    fn descriptors_open_already_count() {
        assert!(check_with(64, 3, 1).is_ok());
        let err = check_with(64, 59, 1).unwrap_err();
        assert_eq!((err.open, err.need), (59, 80));
        assert!(err.to_string().contains("(59 open already)"), "{err}");
        assert!(open_now().is_some_and(|n| n >= STDIO), "{:?}", open_now());
    }
}
