//! The machine's own stalls during the load (`--hiccups`), measured as
//! jHiccup does: one thread pinned to each online CPU sleeps 1 ms again and
//! again and records by how much each sleep overran. An overrun of several
//! milliseconds is time the CPU did not run anything of ours: the
//! hypervisor took the virtual CPU, or an interrupt or a kernel thread ran.
//! (A busy server or client thread on the same CPU delays the meter's
//! wake-up by at most a scheduler slice, a few ms; so read the 5 and 10 ms
//! counts.) No server answers faster than its CPU runs, so a tail latency
//! near these stalls is the machine's, not the server's: one 20 ms stall in
//! a 10 s run delays enough messages to set the p99.9.
//!
//! The meter costs each CPU about a thousand short wake-ups a second.
//!
//! `echo_bench --stalls SECS` measures the machine alone, with nothing to
//! compete with: a thread on each online CPU *spins* on the clock for SECS
//! and records every gap between two readings (as cyclictest does).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long the meter sleeps between two looks at the clock.
const TICK: Duration = Duration::from_millis(1);

/// What one CPU's meter saw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuHiccups {
    pub cpu: usize,
    /// How long it measured, seconds.
    pub seconds: f64,
    /// Overruns of at least 1, 5 and 10 ms.
    pub over_1ms: u64,
    pub over_5ms: u64,
    pub over_10ms: u64,
    /// The longest overrun, ms.
    pub worst_ms: f64,
}

impl CpuHiccups {
    /// The figures of the overruns `gaps` seen in `measured`.
    pub fn of(cpu: usize, measured: Duration, gaps: &[Duration]) -> CpuHiccups {
        let over = |limit: u64| {
            gaps.iter()
                .filter(|g| **g >= Duration::from_millis(limit))
                .count() as u64
        };
        CpuHiccups {
            cpu,
            seconds: measured.as_secs_f64(),
            over_1ms: over(1),
            over_5ms: over(5),
            over_10ms: over(10),
            worst_ms: gaps.iter().max().map_or(0.0, |g| g.as_secs_f64() * 1e3),
        }
    }
}

/// The meters at work, one thread per CPU.
pub struct Meter {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Option<CpuHiccups>>>,
}

impl Meter {
    /// Starts a meter on every online CPU (one it cannot pin a thread to
    /// is left out).
    pub fn start() -> Meter {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let threads = on_each_cpu("hiccups", move |cpu| meter(cpu, &stopped));
        Meter { stop, threads }
    }

    /// Stops the meters and returns what each saw.
    pub fn finish(self) -> Vec<CpuHiccups> {
        self.stop.store(true, Relaxed);
        self.threads
            .into_iter()
            .filter_map(|t| t.join().ok().flatten())
            .collect()
    }
}

/// Spins on every online CPU at once for `spin` each and returns the gaps
/// of at least 1 ms in each one's clock readings (CPUs it cannot pin a
/// thread to are left out).
pub fn spin(spin: Duration) -> Vec<CpuHiccups> {
    let threads = on_each_cpu("stalls", move |cpu| {
        let mut gaps = Vec::new();
        let start = Instant::now();
        let mut last = start;
        while last - start < spin {
            let now = Instant::now();
            if now - last >= Duration::from_millis(1) {
                gaps.push(now - last);
            }
            last = now;
        }
        CpuHiccups::of(cpu, last - start, &gaps)
    });
    threads
        .into_iter()
        .filter_map(|t| t.join().ok().flatten())
        .collect()
}

/// Runs `measure` on a thread pinned to each online CPU (`None` from a
/// CPU it cannot pin a thread to); the threads are named `<name>-<cpu>`.
fn on_each_cpu<F>(name: &str, measure: F) -> Vec<JoinHandle<Option<CpuHiccups>>>
where
    F: Fn(usize) -> CpuHiccups + Clone + Send + 'static,
{
    online_cpus()
        .into_iter()
        .filter_map(|cpu| {
            let measure = measure.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{cpu}"))
                .spawn(move || {
                    core_affinity::set_for_current(core_affinity::CoreId { id: cpu }).then(|| measure(cpu))
                })
                .ok()
        })
        .collect()
}

/// Sleeps [`TICK`] after [`TICK`] until `stop`, recording each overrun of
/// at least 1 ms.
fn meter(cpu: usize, stop: &AtomicBool) -> CpuHiccups {
    let mut gaps = Vec::new();
    let start = Instant::now();
    let mut last = start;
    while !stop.load(Relaxed) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let overrun = (now - last).saturating_sub(TICK);
        if overrun >= Duration::from_millis(1) {
            gaps.push(overrun);
        }
        last = now;
    }
    CpuHiccups::of(cpu, last - start, &gaps)
}

/// The online CPUs (`/sys/devices/system/cpu/online`, e.g. `0-3,8`); the
/// ones this process may run on when that cannot be read.
fn online_cpus() -> Vec<usize> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|text| parse_cpu_list(text.trim()))
        .unwrap_or_else(|| {
            core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect()
        })
}

/// `0-3,8` -> `[0, 1, 2, 3, 8]`; `None` when malformed.
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// One line per CPU for the report.
pub fn describe(hiccups: &[CpuHiccups]) -> String {
    let Some(first) = hiccups.first() else {
        return String::new();
    };
    describe_as(
        hiccups,
        &format!(
            "machine stalls during the load ({:.0} s; a thread per CPU sleeping 1 ms at a time, \
             overruns >= 1/5/10 ms and the longest)",
            first.seconds
        ),
    )
}

/// One line per CPU under `title`.
pub fn describe_as(hiccups: &[CpuHiccups], title: &str) -> String {
    let mut out = format!("{title}:\n");
    for h in hiccups {
        out += &format!(
            "  cpu{:<3} {:>5} {:>4} {:>4}  worst {:>6.2} ms\n",
            h.cpu, h.over_1ms, h.over_5ms, h.over_10ms, h.worst_ms
        );
    }
    out
}

/// The longest stall of any CPU, ms.
pub fn worst_ms(hiccups: &[CpuHiccups]) -> Option<f64> {
    hiccups.iter().map(|h| h.worst_ms).reduce(f64::max)
}
