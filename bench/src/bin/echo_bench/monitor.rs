//! The monitor thread: progress on stderr, and the server's memory and CPU
//! read from `/proc` while the load runs.
//!
//! Contract with the load engines (`load.rs`, `epoll.rs`): it reads
//! [`Shared`]'s atomics and the start instant, and sets its two flags. It
//! samples every 100 ms, prints a line a second, and takes the CPU figures
//! at the edges of the measured window (from `start + warmup`, for
//! `duration`). It also paces two phases: once every shard connected, it
//! samples the server's resident set (all connections open, none used) and
//! sets `go`; once every connection finished its load (open and idle), it
//! samples it again and sets `close` (or, without a sample, at the drain
//! deadline). With the server's metrics endpoint it reads the server's
//! per-shard figures at the window's edges too (`scrape.rs`).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::load::{Plan, Shared};
use crate::netstat::NetCounters;
use crate::scrape::{self, ShardFigures};

/// What the monitor saw of a process during the measured window.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct ProcessStats {
    /// Resident set at the end of the measured window (all connections open), KiB.
    pub rss_kib: Option<u64>,
    /// Largest resident set sampled during the run, KiB.
    pub rss_peak_kib: Option<u64>,
    /// The kernel's high-water mark (`VmHWM`) when the run ended, KiB.
    pub hwm_kib: Option<u64>,
    /// CPU time (user + system, all threads) over wall time in the measured
    /// window, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// Resident set with every connection open and none used yet, KiB.
    #[serde(default)]
    pub rss_connected_kib: Option<u64>,
    /// Resident set with every connection open and idle after the load, KiB.
    #[serde(default)]
    pub rss_idle_kib: Option<u64>,
}

/// How long the monitor lets the server settle before it samples it with
/// every connection open (and unused, or idle after the load).
const SETTLE: Duration = Duration::from_millis(300);

/// The monitor's findings, for the server (when a PID was given) and the client.
#[derive(Debug, Default)]
pub struct Observed {
    pub server: Option<ProcessStats>,
    pub client: ProcessStats,
    /// CPU the whole machine was busy in the measured window (not idle, not
    /// waiting for I/O), in percent of one CPU (from `/proc/stat`; 200% is
    /// two CPUs fully busy), less what the `ksoftirqd` threads used (network
    /// work deferred from the benchmark's own sends).
    pub busy_percent: Option<f64>,
    /// Of that busy time, the part spent in interrupts and softirqs: on
    /// loopback mostly the TCP receive path. The kernel also bills it to the
    /// process it interrupted, so it overlaps the processes' figures.
    pub softirq_percent: Option<f64>,
    /// The kernel's TCP counters over the measured window, and how long the
    /// monitor's window (between its samples) was, seconds.
    pub window_kernel: Option<NetCounters>,
    pub window_seconds: Option<f64>,
    /// The server's shards over the window (with `--server-metrics`).
    pub shards: Vec<ShardFigures>,
}

/// A running monitor thread; [`Monitor::finish`] stops it.
#[derive(Debug)]
pub struct Monitor {
    done: Arc<AtomicBool>,
    thread: JoinHandle<Observed>,
}

impl Monitor {
    /// Watches `shards` load shards (or threads) and the server `server_pid`.
    /// With `metrics`, it also reads the server's Prometheus endpoint.
    pub fn start(
        plan: Plan,
        shared: Arc<Shared>,
        shards: usize,
        server_pid: Option<u32>,
        metrics: Option<SocketAddr>,
    ) -> Monitor {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::Builder::new()
            .name("echo-bench-monitor".into())
            .spawn(move || watch(&plan, &shared, shards, server_pid, metrics, &flag))
            .expect("spawn the monitor thread");
        Monitor { done, thread }
    }

    /// Stops the monitor and returns what it saw.
    pub fn finish(self) -> Observed {
        self.done.store(true, Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// One process's samples over the run.
struct Tracker {
    pid: Option<u32>,
    stats: ProcessStats,
    window_start: Option<(Instant, u64)>,
    window_end: Option<(Instant, u64)>,
}

impl Tracker {
    fn new(pid: Option<u32>) -> Tracker {
        Tracker {
            pid,
            stats: ProcessStats::default(),
            window_start: None,
            window_end: None,
        }
    }

    fn sample_rss(&mut self) {
        if let Some(rss) = status_kib(self.pid, "VmRSS:") {
            let peak = self.stats.rss_peak_kib.get_or_insert(0);
            *peak = (*peak).max(rss);
        }
    }

    fn finish(mut self) -> ProcessStats {
        self.stats.hwm_kib = status_kib(self.pid, "VmHWM:");
        if let (Some((t0, c0)), Some((t1, c1))) = (self.window_start, self.window_end) {
            let wall = t1.duration_since(t0).as_secs_f64();
            if wall > 0.0 {
                self.stats.cpu_percent = Some(c1.saturating_sub(c0) as f64 * TICK / wall * 100.0);
            }
        }
        self.stats
    }
}

/// Seconds per clock tick in `/proc/<pid>/stat`: `USER_HZ` is 100 on Linux.
const TICK: f64 = 0.01;

fn watch(
    plan: &Plan,
    shared: &Shared,
    shards: usize,
    server_pid: Option<u32>,
    metrics: Option<SocketAddr>,
    done: &AtomicBool,
) -> Observed {
    let mut scrapes: [Option<(Instant, scrape::Samples)>; 2] = [None, None];
    let mut server = server_pid.map(|pid| Tracker::new(Some(pid)));
    let mut client = Tracker::new(None);
    let tty = std::io::stderr().is_terminal();
    let mut next_print = Instant::now() + Duration::from_secs(1);
    let mut last = (Instant::now(), 0u64);
    let mut machine: [Option<(Instant, Ticks)>; 2] = [None, None];
    let mut net: [Option<NetCounters>; 2] = [None, None];
    let ksoftirqd = ksoftirqd_pids();
    let mut settling: Option<Instant> = None;
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let start = shared.start.get().copied();
        // The two phases the monitor paces: go (all connected), close (all idle).
        if !shared.go.load(Relaxed) && shared.shards_ready.load(Relaxed) >= shards {
            if now.duration_since(*settling.get_or_insert(now)) >= SETTLE {
                if let Some(server) = &mut server {
                    server.stats.rss_connected_kib = status_kib(server.pid, "VmRSS:");
                }
                settling = None;
                shared.go.store(true, Relaxed);
            }
        } else if let Some(start) = start.filter(|_| !shared.close.load(Relaxed)) {
            let end = start + plan.warmup + plan.duration;
            let all_idle = shared.finished_load.load(Relaxed) >= shared.connected.load(Relaxed);
            if now >= end + plan.drain {
                shared.close.store(true, Relaxed);
            } else if all_idle && now >= end && now.duration_since(*settling.get_or_insert(now)) >= SETTLE {
                if let Some(server) = &mut server {
                    server.stats.rss_idle_kib = status_kib(server.pid, "VmRSS:");
                }
                shared.close.store(true, Relaxed);
            }
        }
        for t in server.iter_mut().chain([&mut client]) {
            if start.is_some() {
                t.sample_rss();
            }
            // CPU at the edges of the measured window, the resident set at its end.
            if let Some(start) = start {
                let (from, to) = (start + plan.warmup, start + plan.warmup + plan.duration);
                if now >= from && t.window_start.is_none() {
                    t.window_start = cpu_ticks(t.pid).map(|c| (now, c));
                }
                if now >= to && t.window_end.is_none() && t.window_start.is_some() {
                    t.window_end = cpu_ticks(t.pid).map(|c| (now, c));
                    t.stats.rss_kib = status_kib(t.pid, "VmRSS:");
                }
            }
        }
        if let Some(start) = start {
            let edges = [start + plan.warmup, start + plan.warmup + plan.duration];
            for ((edge, sample), counters) in edges.iter().zip(machine.iter_mut()).zip(net.iter_mut()) {
                if now >= *edge && sample.is_none() {
                    *sample = machine_ticks(&ksoftirqd).map(|t| (now, t));
                    *counters = Some(NetCounters::now());
                }
            }
            if let Some(addr) = metrics {
                for (edge, taken) in edges.iter().zip(scrapes.iter_mut()) {
                    if now >= *edge && taken.is_none() {
                        match scrape::fetch(addr) {
                            Ok(samples) => *taken = Some((Instant::now(), samples)),
                            Err(err) => {
                                eprintln!("echo_bench: --server-metrics: {err}");
                                *taken = Some((Instant::now(), Default::default()));
                            }
                        }
                    }
                }
            }
        }
        if now < next_print {
            continue;
        }
        next_print += Duration::from_secs(1);
        let line = match start {
            None => {
                last = (now, 0);
                format!(
                    "connecting: {}/{} ({} failed)",
                    shared.connected.load(Relaxed) + shared.connect_failed.load(Relaxed),
                    plan.connections,
                    shared.connect_failed.load(Relaxed),
                )
            }
            Some(start) => {
                let messages = shared.messages.load(Relaxed);
                let rate = (messages - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, messages);
                let elapsed = now.duration_since(start);
                let phase = if elapsed < plan.warmup {
                    "warm-up"
                } else if elapsed < plan.warmup + plan.duration {
                    "measuring"
                } else {
                    "closing"
                };
                format!(
                    "running: {:>5.1}s/{:.0}s ({phase}), {:>10.0} msgs/s, {} errors",
                    elapsed.as_secs_f64(),
                    (plan.warmup + plan.duration).as_secs_f64(),
                    rate,
                    shared.errors.load(Relaxed),
                )
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty {
        eprintln!();
    }
    let (mut busy_percent, mut softirq_percent) = (None, None);
    if let [Some((t0, a)), Some((t1, b))] = machine {
        let wall = t1.duration_since(t0).as_secs_f64();
        let percent = |from: u64, to: u64| to.saturating_sub(from) as f64 * TICK / wall * 100.0;
        if wall > 0.0 {
            busy_percent = Some(percent(a.busy, b.busy) - percent(a.ksoftirqd, b.ksoftirqd));
            softirq_percent = Some(percent(a.interrupts, b.interrupts));
        }
    }
    Observed {
        server: server.map(Tracker::finish),
        client: client.finish(),
        busy_percent,
        softirq_percent,
        window_kernel: match net {
            [Some(a), Some(b)] => Some(b.since(&a)),
            _ => None,
        },
        window_seconds: match machine {
            [Some((t0, _)), Some((t1, _))] => Some(t1.duration_since(t0).as_secs_f64()),
            _ => None,
        },
        shards: match &scrapes {
            [Some((t0, a)), Some((t1, b))] => scrape::figures(a, b, t1.duration_since(*t0).as_secs_f64()),
            _ => Vec::new(),
        },
    }
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// A `kB` field of `/proc/<pid>/status`, such as `VmRSS:` or `VmHWM:`.
pub fn status_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(proc_path(pid, "status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User plus system CPU ticks of every thread of the process.
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    // The command name (field 2) may hold spaces: fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The whole machine's CPU ticks, from `/proc/stat`'s `cpu` line.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    /// Everything but idle and iowait (glommio's waits in io_uring count as iowait).
    busy: u64,
    /// irq + softirq (a part of `busy`).
    interrupts: u64,
    /// What the `ksoftirqd` threads used (a part of `busy`).
    ksoftirqd: u64,
}

fn machine_ticks(ksoftirqd: &[u32]) -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let t: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    let interrupts = t.get(5)? + t.get(6)?;
    Some(Ticks {
        busy: t.first()? + t.get(1)? + t.get(2)? + interrupts + t.get(7)?,
        interrupts,
        ksoftirqd: ksoftirqd.iter().filter_map(|&pid| cpu_ticks(Some(pid))).sum(),
    })
}

/// The `ksoftirqd/N` kernel threads.
fn ksoftirqd_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}
