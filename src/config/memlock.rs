//! The `RLIMIT_MEMLOCK` check that runs before any io_uring ring is built.
//!
//! glommio registers `io_memory` bytes of buffers per shard with io_uring, and
//! on kernels before 5.12 the rings themselves count as locked memory too.
//! The kernel charges both to the *user* (all of its processes together)
//! against `RLIMIT_MEMLOCK`, unless the process holds `CAP_IPC_LOCK`.
//! Running out inside glommio gives either a warning it prints itself
//! (buffer registration skipped) or a panic deep in ring setup (old
//! kernels); this module decides up front, and says what to raise.
//!
//! glommio itself also refuses to start below [`MEMLOCK_FLOOR`] (512 KiB)
//! of soft limit, whether or not the memory would be charged: as root and
//! with `CAP_IPC_LOCK` too. That floor is checked first, for everyone.

use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};

use crate::config::{ENV_IO_MEMORY, ENV_SHARDS, MIN_IO_MEMORY};

/// The io memory a shard registers by default: 256 KiB. glommio's own
/// default is 10 MiB, all of it locked and resident, for DMA file buffers;
/// shardlet's sockets never use it (they wait on the epoll driver), and
/// glommio falls back to heap buffers once it is used up. Locked and
/// resident, glommio's default would be most of an idle server's memory,
/// and 1 MiB (the default until 2026-12-01) was 0.96 MiB of an idle HTTP
/// server's 7.7 MiB. Raise it with `SHARDLET_IO_MEMORY` for heavy DMA file
/// I/O.
const DEFAULT_IO_MEMORY: usize = 256 << 10;
/// Rough size of glommio's three rings per shard (only charged before 5.12).
const RING_MEMORY: usize = 256 << 10;
/// glommio registers a shard's io memory with each of its three rings
/// (main, poll, latency: `sys/uring.rs`), and the kernel charges every
/// registration: a shard locks three times its io memory.
const REGISTRATIONS: usize = 3;
/// Charged per shard beyond its registrations (and its rings, before
/// 5.12): glommio logged "registering buffers ... Cannot allocate memory"
/// with 32-60 KiB per shard less than that left, on Linux 6.18.
const SLACK: usize = 64 << 10;
/// `CAP_IPC_LOCK` in the capability bit sets of `/proc/self/status`.
const CAP_IPC_LOCK: u32 = 14;

/// glommio refuses to build an executor when the soft `RLIMIT_MEMLOCK` is
/// below this, whatever the process may lock (even as root, or with
/// `CAP_IPC_LOCK`).
pub const MEMLOCK_FLOOR: u64 = 512 << 10;

/// `RLIMIT_MEMLOCK` is too low for the requested shards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "RLIMIT_MEMLOCK is {limit} bytes ({} KiB in `ulimit -l`), but {what}; raise the limit (`ulimit -l`, LimitMEMLOCK= in a \
     systemd unit, `memlock` in /etc/security/limits.conf, `--ulimit memlock=-1` for docker){}",
    .limit / 1024,
    if *.floor { String::new() } else { format!(" or lower {ENV_SHARDS} / {ENV_IO_MEMORY}") }
)]
pub struct MemlockError {
    /// The soft limit in bytes.
    pub limit: u64,
    /// Bytes the shards would lock (or glommio's floor).
    pub need: u64,
    /// Shards asked for.
    pub shards: usize,
    what: String,
    /// The limit is below glommio's [`MEMLOCK_FLOOR`]: fewer shards or less
    /// io memory would not help.
    floor: bool,
}

/// What this process may lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memlock {
    /// The soft limit in bytes (`u64::MAX` when unlimited).
    pub(crate) soft: u64,
    /// Soft limit in bytes; `None` when unlimited or not charged (CAP_IPC_LOCK).
    pub(crate) budget: Option<u64>,
    /// Whether the kernel charges the rings themselves (before 5.12).
    pub(crate) rings_charged: bool,
}

impl Memlock {
    pub(crate) fn current() -> Memlock {
        let limit = getrlimit(Resource::RLIMIT_MEMLOCK)
            .map(|(soft, _hard)| soft)
            .unwrap_or(RLIM_INFINITY);
        let budget = (limit != RLIM_INFINITY && !has_cap_ipc_lock()).then_some(limit);
        Memlock {
            soft: if limit == RLIM_INFINITY { u64::MAX } else { limit },
            budget,
            rings_charged: kernel_before(5, 12),
        }
    }

    /// Decides the io memory per shard: the requested amount if it fits, or
    /// (when none was requested) as much as fits in half the budget, leaving
    /// the rest to other processes of the same user, up to [`DEFAULT_IO_MEMORY`].
    pub(crate) fn io_memory(&self, shards: usize, requested: Option<usize>) -> Result<usize, MemlockError> {
        if self.soft < MEMLOCK_FLOOR {
            return Err(MemlockError {
                limit: self.soft,
                need: MEMLOCK_FLOOR,
                shards,
                what: format!(
                    "glommio needs at least {MEMLOCK_FLOOR} (512 KiB) to start any shard, \
                     even as root or with CAP_IPC_LOCK"
                ),
                floor: true,
            });
        }
        let Some(limit) = self.budget else {
            return Ok(requested.unwrap_or(DEFAULT_IO_MEMORY));
        };
        let rings = if self.rings_charged { RING_MEMORY } else { 0 };
        let n = shards as u64;
        let charge = |io: usize| n * (REGISTRATIONS * io + rings + SLACK) as u64;
        let fail = |io: usize, what: String| {
            let need = charge(io);
            MemlockError {
                limit,
                need,
                shards,
                what: format!(
                    "{shards} shard(s) need {need} bytes ({} KiB) of locked memory for io_uring ({what}, \
                     registered with each of a shard's {REGISTRATIONS} rings)",
                    need.div_ceil(1024)
                ),
                floor: false,
            }
        };
        if self.rings_charged && charge(MIN_IO_MEMORY) > limit {
            return Err(fail(
                MIN_IO_MEMORY,
                "rings plus the 64K minimum of buffers; this kernel (before 5.12) charges rings".into(),
            ));
        }
        match requested {
            Some(io) if charge(io) > limit => {
                Err(fail(io, format!("{ENV_IO_MEMORY}={} per shard", size_text(io))))
            }
            Some(io) => Ok(io),
            None => {
                let share = (limit / 2 / n) as usize;
                let io = (share.saturating_sub(rings + SLACK) / REGISTRATIONS).min(DEFAULT_IO_MEMORY) & !4095;
                if io < MIN_IO_MEMORY {
                    tracing::warn!(
                        limit,
                        shards,
                        "RLIMIT_MEMLOCK leaves under 64K per shard: io_uring buffers will not be \
                         registered (file I/O a little slower); raise `ulimit -l` to avoid this"
                    );
                }
                Ok(io.max(MIN_IO_MEMORY))
            }
        }
    }
}

/// `bytes` as `SHARDLET_IO_MEMORY` takes it: `10M`, `512K`, or bytes.
fn size_text(bytes: usize) -> String {
    match bytes {
        0 => "0".into(),
        b if b % (1 << 30) == 0 => format!("{}G", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}K", b >> 10),
        b => b.to_string(),
    }
}

fn has_cap_ipc_lock() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

fn kernel_before(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let got_major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let got_minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (got_major, got_minor) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(bytes: u64, rings_charged: bool) -> Memlock {
        Memlock {
            soft: bytes,
            budget: Some(bytes),
            rings_charged,
        }
    }

    #[test]
    fn auto_size_fits_half_the_limit() {
        // Half of 2 MiB for 2 shards: 512 KiB each, less the slack,
        // registered three times.
        let io = limited(2 << 20, false).io_memory(2, None).unwrap();
        assert_eq!(io, (((512 << 10) - SLACK) / 3) & !4095);
        assert!(2 * (3 * io + SLACK) <= 1 << 20);
        let io = limited(3 << 20, false).io_memory(2, None).unwrap();
        assert_eq!(io, (((768 << 10) - SLACK) / 3) & !4095);
        assert!(io < DEFAULT_IO_MEMORY);
        let io = limited(8 << 20, false).io_memory(2, None).unwrap();
        assert_eq!(io, DEFAULT_IO_MEMORY);
        let io = limited(1 << 40, false).io_memory(2, None).unwrap();
        assert_eq!(io, DEFAULT_IO_MEMORY);
        // Too little even for the minimum: glommio skips registration, we go on.
        assert_eq!(
            limited(1 << 20, false).io_memory(64, None).unwrap(),
            MIN_IO_MEMORY
        );
    }

    #[test]
    fn explicit_size_over_the_limit_names_what_to_raise() {
        let err = limited(8 << 20, false).io_memory(2, Some(10 << 20)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("RLIMIT_MEMLOCK is 8388608 bytes (8192 KiB in `ulimit -l`)"),
            "{text}"
        );
        assert!(text.contains("ulimit -l"), "{text}");
        assert!(text.contains("SHARDLET_IO_MEMORY=10M per shard"), "{text}");
        assert!(text.contains("need 63045632 bytes (61568 KiB)"), "{text}");
        let odd = limited(8 << 20, false)
            .io_memory(1, Some(3 << 20 | 512))
            .unwrap_err();
        assert!(
            odd.to_string().contains("SHARDLET_IO_MEMORY=3146240 per shard"),
            "{odd}"
        );
        // At the edge: three registrations and the slack per shard fit
        // exactly; a page more of io memory does not (before the slack,
        // 2720K per shard passed under 8192K and glommio could not
        // register its buffers).
        let io = 2688 << 10;
        let limit = (3 * io + SLACK) as u64;
        assert_eq!(limited(limit, false).io_memory(1, Some(io)), Ok(io));
        assert!(limited(limit, false).io_memory(1, Some(io + 4096)).is_err());
        assert!(limited(8192 << 10, false).io_memory(1, Some(2720 << 10)).is_err());
    }

    #[test]
    fn old_kernels_need_room_for_rings() {
        assert!(limited(256 << 10, true).io_memory(2, None).is_err());
        assert!(limited(64 << 20, true).io_memory(2, None).is_ok());
    }

    /// glommio's own floor holds whatever may be locked (root, CAP_IPC_LOCK).
    #[test]
    fn below_glommios_floor_fails_for_root_too() {
        for budget in [None, Some(64 << 10)] {
            let m = Memlock {
                soft: 64 << 10,
                budget,
                rings_charged: false,
            };
            let text = m.io_memory(1, None).unwrap_err().to_string();
            assert!(text.contains("RLIMIT_MEMLOCK is 65536 bytes"), "{text}");
            assert!(text.contains("at least 524288"), "{text}");
            assert!(text.contains("ulimit -l"), "{text}");
            assert!(!text.contains("lower SHARDLET_SHARDS"), "{text}");
        }
        let at_floor = Memlock {
            soft: MEMLOCK_FLOOR,
            budget: None,
            rings_charged: false,
        };
        assert!(at_floor.io_memory(1, None).is_ok());
    }

    #[test]
    fn unlimited_uses_the_request_or_glommio_default() {
        let m = Memlock {
            soft: u64::MAX,
            budget: None,
            rings_charged: false,
        };
        assert_eq!(m.io_memory(64, None).unwrap(), DEFAULT_IO_MEMORY);
        assert_eq!(m.io_memory(64, Some(1 << 20)).unwrap(), 1 << 20);
    }
}
