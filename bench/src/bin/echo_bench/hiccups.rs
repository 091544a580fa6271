//! The machine's own stalls (`--hiccups`), measured before the load: one
//! thread pinned to each CPU spins on the monotonic clock and records every
//! gap between two readings, as jHiccup and cyclictest do. A gap is time
//! the thread did not run: the hypervisor took the virtual CPU, an
//! interrupt or a kernel thread ran. No server can answer faster than its
//! CPU runs, so latencies near these gaps are the machine's, not the
//! server's: a p99.9 of 25 ms means little where the CPUs stall for 20 ms
//! a few times a minute.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Gaps shorter than this are the loop itself (a clock read, a cache miss).
const NOISE: Duration = Duration::from_micros(50);

/// What one CPU's spinning thread saw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuHiccups {
    pub cpu: usize,
    /// How long it spun, seconds.
    pub seconds: f64,
    /// Gaps of at least 1, 5 and 10 ms.
    pub over_1ms: u64,
    pub over_5ms: u64,
    pub over_10ms: u64,
    /// The longest gap, ms.
    pub worst_ms: f64,
    /// The share of the time lost in gaps of at least 50 µs, percent.
    pub lost_percent: f64,
}

impl CpuHiccups {
    /// The figures of `gaps` (each at least [`NOISE`]) seen in `spun`.
    pub fn of(cpu: usize, spun: Duration, gaps: &[Duration]) -> CpuHiccups {
        let over = |limit: u64| {
            gaps.iter()
                .filter(|g| **g >= Duration::from_millis(limit))
                .count() as u64
        };
        let lost: Duration = gaps.iter().sum();
        CpuHiccups {
            cpu,
            seconds: spun.as_secs_f64(),
            over_1ms: over(1),
            over_5ms: over(5),
            over_10ms: over(10),
            worst_ms: gaps.iter().max().map_or(0.0, |g| g.as_secs_f64() * 1e3),
            lost_percent: if spun.is_zero() {
                0.0
            } else {
                100.0 * lost.as_secs_f64() / spun.as_secs_f64()
            },
        }
    }
}

/// Spins on every CPU this process may use, all at once, for `spin` each;
/// CPUs it cannot pin a thread to are left out.
pub fn measure(spin: Duration) -> Vec<CpuHiccups> {
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    let threads: Vec<_> = cpus
        .into_iter()
        .map(|core| {
            std::thread::Builder::new()
                .name(format!("hiccups-{}", core.id))
                .spawn(move || core_affinity::set_for_current(core).then(|| spin_on(core.id, spin)))
        })
        .collect();
    threads
        .into_iter()
        .filter_map(|t| t.ok()?.join().ok().flatten())
        .collect()
}

/// Spins for `spin` on the current (pinned) thread, recording the gaps.
fn spin_on(cpu: usize, spin: Duration) -> CpuHiccups {
    let mut gaps = Vec::new();
    let start = Instant::now();
    let mut last = start;
    loop {
        let now = Instant::now();
        let gap = now - last;
        last = now;
        if gap >= NOISE {
            gaps.push(gap);
        }
        if now - start >= spin {
            return CpuHiccups::of(cpu, now - start, &gaps);
        }
    }
}

/// One line per CPU for the report.
pub fn describe(hiccups: &[CpuHiccups]) -> String {
    let Some(first) = hiccups.first() else {
        return String::new();
    };
    let mut out = format!(
        "machine stalls (a thread spinning {:.1} s on each CPU before the load; gaps >= 1/5/10 ms, \
         the longest, time lost):\n",
        first.seconds
    );
    for h in hiccups {
        out += &format!(
            "  cpu{:<3} {:>4} {:>4} {:>4}  worst {:>6.2} ms  lost {:>5.2}%\n",
            h.cpu, h.over_1ms, h.over_5ms, h.over_10ms, h.worst_ms, h.lost_percent
        );
    }
    out
}

/// The longest stall of any CPU, ms.
pub fn worst_ms(hiccups: &[CpuHiccups]) -> Option<f64> {
    hiccups.iter().map(|h| h.worst_ms).reduce(f64::max)
}
