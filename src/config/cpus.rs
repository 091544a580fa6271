//! Which CPUs the shards may use, and how many shards to start by default.
//!
//! - **Affinity**: the CPUs this process may run on (`sched_getaffinity`:
//!   `taskset`, cpusets, docker's `--cpuset-cpus`).
//! - **CPU quota**: a cgroup may also cap how much CPU time the process gets
//!   (docker's `--cpus=2`, Kubernetes' CPU limit, systemd's `CPUQuota=`),
//!   as `cpu.max` (cgroup v2) or `cpu.cfs_quota_us` / `cpu.cfs_period_us`
//!   (v1), on the process's cgroup or any ancestor. Affinity alone would
//!   start 64 pinned shards on a 64-core host for a container allowed 2
//!   CPUs, all throttled. The default shard count is the quota rounded
//!   *down* (at least 1): a pinned shard that spins wants its CPU whole.
//! - **Left to the host**: `SHARDLET_RESERVE_CPUS=N` keeps the first `N`
//!   allowed CPUs (and `N` CPUs' worth of quota) out of the shards' way,
//!   for the host's own threads (its async runtime, the blocking pool).

use std::path::Path;

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use crate::config::cpulist::CpuList;

/// The CPUs this process may run on (its affinity mask).
pub(crate) fn allowed_cpus() -> CpuList {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let list = CpuList::from(ids.into_iter().map(|c| c.id).collect::<Vec<_>>());
    if list.len() == 0 {
        // No affinity information (unusual sandbox): fall back to the CPU count.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        CpuList::from((0..n).collect::<Vec<_>>())
    } else {
        list
    }
}

/// Keeps the calling thread to `cpus` (its affinity mask): a blocking
/// thread to the host's reserved CPUs, an unpinned shard to its own. A
/// failure (a CPU gone offline since) is logged, and the thread runs on
/// where it may.
pub(crate) fn keep_to(cpus: &[usize]) {
    let mut set = CpuSet::new();
    let kept = cpus
        .iter()
        .try_for_each(|&cpu| set.set(cpu))
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
    if let Err(errno) = kept {
        let thread = std::thread::current();
        tracing::warn!(target: "shardlet::runtime", thread = thread.name(), ?cpus, %errno, "cannot keep this thread to its CPUs");
    }
}

/// This process's cgroup CPU quota, in CPUs (`quota / period`), if it has
/// one: the tightest of its cgroup's and its ancestors'.
pub(crate) fn cpu_quota() -> Option<f64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    quota_under(Path::new("/sys/fs/cgroup"), &cgroups)
}

/// [`cpu_quota`] for a cgroup file system mounted at `root` and the
/// contents of `/proc/self/cgroup` (v2's unified hierarchy, else v1's
/// `cpu` controller).
pub(crate) fn quota_under(root: &Path, proc_self_cgroup: &str) -> Option<f64> {
    let mut v2 = None;
    let mut v1 = None;
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "cpu") {
            v1 = Some(path);
        }
    }
    let v2 = v2.and_then(|path| tightest(root, path, |dir| parse_cpu_max(&read(&dir.join("cpu.max"))?)));
    let v1 = v1.and_then(|path| {
        ["cpu,cpuacct", "cpu"].iter().find_map(|mount| {
            let mount = root.join(mount);
            mount.is_dir().then(|| {
                tightest(&mount, path, |dir| {
                    let quota = read(&dir.join("cpu.cfs_quota_us"))?;
                    let period = read(&dir.join("cpu.cfs_period_us"))?;
                    parse_cfs(&quota, &period)
                })
            })?
        })
    });
    match (v2, v1) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The smallest limit from `root/path` up to `root`.
fn tightest(root: &Path, path: &str, limit: impl Fn(&Path) -> Option<f64>) -> Option<f64> {
    let mut dir = root.join(path.trim_start_matches('/'));
    let mut best: Option<f64> = None;
    loop {
        if let Some(cpus) = limit(&dir) {
            best = Some(best.map_or(cpus, |b| b.min(cpus)));
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            return best;
        }
    }
}

/// cgroup v2's `cpu.max`: `"max 100000"` (no limit) or `"200000 100000"`.
pub(crate) fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: f64 = parts.next().unwrap_or("100000").parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0).then(|| quota / period)
}

/// cgroup v1's `cpu.cfs_quota_us` (`-1`: no limit) and `cpu.cfs_period_us`.
fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// How many shards to start when none was asked for: one per CPU the
/// shards may use, within the CPU quota (rounded down) less what is left
/// to the host, and at least one.
pub(crate) fn default_shards(cpus: usize, quota: Option<f64>, reserve: usize) -> usize {
    let budget = quota.map_or(usize::MAX, |q| (q.floor() as usize).saturating_sub(reserve));
    cpus.min(budget).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_parses() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("150000 100000"), Some(1.5));
        assert_eq!(parse_cpu_max("garbage"), None);
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs("50000\n", "100000\n"), Some(0.5));
    }

    #[test]
    fn default_shards_follow_the_quota_rounded_down() {
        assert_eq!(default_shards(64, Some(2.0), 0), 2);
        assert_eq!(default_shards(64, Some(2.9), 0), 2);
        assert_eq!(default_shards(64, Some(0.5), 0), 1);
        assert_eq!(default_shards(4, Some(16.0), 0), 4);
        assert_eq!(default_shards(4, None, 0), 4);
        assert_eq!(default_shards(64, Some(4.0), 1), 3);
        assert_eq!(default_shards(64, Some(1.0), 1), 1);
    }

    /// A fake cgroup tree: the tightest limit on the way up counts.
    #[test]
    fn quota_is_the_tightest_on_the_way_up() {
        let root = std::env::temp_dir().join(format!("shardlet-cgroup-{}", std::process::id()));
        let leaf = root.join("system.slice/app.service");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(root.join("system.slice/cpu.max"), "300000 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(quota_under(&root, "0::/system.slice/app.service\n"), Some(3.0));
        std::fs::write(leaf.join("cpu.max"), "150000 100000\n").unwrap();
        assert_eq!(quota_under(&root, "0::/system.slice/app.service\n"), Some(1.5));
        assert_eq!(quota_under(&root, "0::/\n"), None);

        // cgroup v1: the cpu controller's own hierarchy.
        let v1 = root.join("cpu,cpuacct/docker/abc");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("cpu.cfs_quota_us"), "200000\n").unwrap();
        std::fs::write(v1.join("cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(quota_under(&root, "4:cpu,cpuacct:/docker/abc\n"), Some(2.0));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
