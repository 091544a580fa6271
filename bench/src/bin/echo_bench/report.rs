//! The results: what one run measured ([`Results`]), the table printed at the
//! end, the JSON and `.hgrm` files, and the comparison of several runs.
//!
//! Latencies are recorded in nanoseconds and reported in microseconds.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::load::Errors;
use crate::monitor::ProcessStats;
use crate::netstat::NetCounters;
use crate::scrape::ShardFigures;

/// Ticks per half distance of the percentile iterator (HdrHistogram's usual 5).
const TICKS_PER_HALF: u32 = 5;

/// Everything one run measured: the JSON written to `DIR/<label>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub label: String,
    pub addr: String,
    /// Seconds since the Unix epoch when the run ended.
    pub unix_time: u64,
    pub settings: Settings,
    pub connected: usize,
    pub connect_failed: usize,
    /// Seconds the slowest shard took to open its connections.
    pub connect_seconds: f64,
    /// Round trips completed in the measured window.
    pub messages: u64,
    /// Round trips completed in all, warm-up and close included.
    pub messages_total: u64,
    pub msgs_per_sec: f64,
    /// Payload bytes echoed per second in the measured window (one direction).
    pub bytes_per_sec: f64,
    pub latency_us: Latency,
    /// Connections that failed after they were established, by kind.
    pub errors: Errors,
    pub errors_total: u64,
    /// The first error seen, connects included.
    pub first_error: Option<String>,
    pub server_pid: Option<u32>,
    /// The server's resident set before the client connected, KiB: the
    /// baseline for its memory per connection.
    #[serde(default)]
    pub server_rss_before_kib: Option<u64>,
    pub server: Option<ProcessStats>,
    pub client: ProcessStats,
    /// CPU the machine spent in interrupts and softirqs in the measured
    /// window, percent of one CPU: on loopback mostly the TCP receive path.
    /// The kernel also bills it to the process it interrupted, so it overlaps
    /// the server's and the client's figures.
    pub softirq_percent: Option<f64>,
    /// CPU that everything but the server, the client and `ksoftirqd` used in
    /// the window: other processes. Much above a few percent means noisy figures.
    pub other_cpu_percent: Option<f64>,
    /// TCP trouble the kernel counted during the run (machine-wide).
    #[serde(default)]
    pub kernel: NetCounters,
    /// The same counters over the measured window (as the monitor sampled
    /// it: `window_seconds` long).
    #[serde(default)]
    pub window_kernel: Option<NetCounters>,
    #[serde(default)]
    pub window_seconds: Option<f64>,
    pub machine: Machine,
    /// `[quantile, latency µs]` points of the percentile distribution (as in the `.hgrm`).
    pub percentiles: Vec<[f64; 2]>,
    /// The raw histogram of round trips in nanoseconds: HdrHistogram V2 +
    /// deflate, base64 (the encoding of HdrHistogram's log files).
    pub histogram_v2z_base64: String,
    /// Open loop: the paced connections' round trips per second in the
    /// window, the achieved rate (the latency figures are theirs).
    #[serde(default)]
    pub paced_msgs_per_sec: Option<f64>,
    /// A skewed load's heavy connections.
    #[serde(default)]
    pub heavy: Option<HeavyFigures>,
    /// Per server shard, from its metrics endpoint (`--server-metrics`).
    #[serde(default)]
    pub server_shards: Vec<ShardFigures>,
    /// The machine's own stalls, per CPU, measured before the load (`--hiccups`).
    #[serde(default)]
    pub hiccups: Vec<crate::hiccups::CpuHiccups>,
}

/// What the heavy connections of a skewed load did in the window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HeavyFigures {
    pub connections: usize,
    pub msgs_per_sec: f64,
    pub latency_us: Latency,
}

/// The client's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub connections: usize,
    pub size: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub connect_rate: f64,
    pub client_shards: usize,
    pub client_cpus: Vec<Option<usize>>,
    /// The load engine (absent in files from before there were two: glommio).
    #[serde(default)]
    pub engine: Option<crate::Engine>,
    /// Open loop: the target rate of the paced connections, msgs/s.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Skewed load: the fraction of heavy connections, and their message size.
    #[serde(default)]
    pub heavy_fraction: Option<f64>,
    #[serde(default)]
    pub heavy_size: Option<usize>,
    /// Open loop in ticks (`--tick-us`).
    #[serde(default)]
    pub tick_us: Option<u64>,
}

/// Round-trip latency summary, microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            stdev: h.stdev() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// The machine the run was on, and the kernel settings that matter for 10k sockets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
    pub somaxconn: Option<u64>,
    pub tcp_max_syn_backlog: Option<u64>,
    pub ip_local_port_range: Option<String>,
    pub tcp_tw_reuse: Option<u64>,
    pub nofile_limit: Option<u64>,
    #[serde(default)]
    pub netdev_max_backlog: Option<u64>,
}

impl Machine {
    pub fn current() -> Machine {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        let number = |p: &str| read(p).and_then(|s| s.parse().ok());
        Machine {
            cpus: online_cpus(),
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            somaxconn: number("/proc/sys/net/core/somaxconn"),
            tcp_max_syn_backlog: number("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
            ip_local_port_range: read("/proc/sys/net/ipv4/ip_local_port_range"),
            tcp_tw_reuse: number("/proc/sys/net/ipv4/tcp_tw_reuse"),
            netdev_max_backlog: number("/proc/sys/net/core/netdev_max_backlog"),
            nofile_limit: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| soft),
        }
    }

    /// Ephemeral ports available for connects to one address.
    pub fn ephemeral_ports(&self) -> Option<u64> {
        let range = self.ip_local_port_range.as_deref()?;
        let mut it = range.split_whitespace().map(|p| p.parse::<u64>().ok());
        let (low, high) = (it.next()??, it.next()??);
        Some(high.saturating_sub(low) + 1)
    }
}

/// CPUs online (not only those this process may use): `/sys/devices/system/cpu/online`.
fn online_cpus() -> usize {
    let fallback = || std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(list) = std::fs::read_to_string("/sys/devices/system/cpu/online") else {
        return fallback();
    };
    let count = list.trim().split(',').try_fold(0, |sum, part| {
        let mut ends = part.splitn(2, '-').map(|n| n.parse::<usize>().ok());
        let low = ends.next()??;
        let high = ends.next().unwrap_or(Some(low))?;
        Some(sum + high.checked_sub(low)? + 1)
    });
    count.unwrap_or_else(fallback)
}

impl Results {
    /// Whether anything went wrong: errors, failed connects, or nothing measured.
    pub fn failed(&self) -> bool {
        self.errors_total > 0
            || self.connect_failed > 0
            || self.connected < self.settings.connections
            || self.messages == 0
    }

    /// `[quantile, µs]` points and the base64 raw histogram, from the merged histogram.
    pub fn distribution(h: &Histogram<u64>) -> (Vec<[f64; 2]>, String) {
        let points = if h.is_empty() {
            Vec::new()
        } else {
            h.iter_quantiles(TICKS_PER_HALF)
                .map(|v| [v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1000.0])
                .collect()
        };
        let mut raw = Vec::new();
        let _ = V2DeflateSerializer::new().serialize(h, &mut raw);
        (points, base64::engine::general_purpose::STANDARD.encode(raw))
    }

    /// Writes `DIR/<label>.json`.
    pub fn write_json(&self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join(format!("{}.json", self.label));
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&path, text + "\n")?;
        Ok(path)
    }

    /// Reads `DIR/<label>.json`.
    pub fn read_json(dir: &Path, label: &str) -> Result<Results, String> {
        let path = dir.join(format!("{label}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Every results file in `dir`, sorted by label.
    pub fn read_all(dir: &Path) -> Vec<Results> {
        let mut all: Vec<Results> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let label = path.file_name()?.to_str()?.strip_suffix(".json")?.to_string();
                Results::read_json(dir, &label).ok()
            })
            .collect();
        all.sort_by(|a, b| a.label.cmp(&b.label));
        all
    }
}

/// Writes the percentile distribution in HdrHistogram's text format (`.hgrm`,
/// values in microseconds), which HdrHistogram's plotting tools read.
pub fn write_hgrm(path: &Path, h: &Histogram<u64>) -> io::Result<()> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let (value, q) = (v.value_iterated_to() as f64 / 1000.0, v.quantile_iterated_to());
            if q < 1.0 {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let us = |ns: f64| ns / 1000.0;
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        us(h.mean()),
        us(h.stdev())
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        us(h.max() as f64),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    std::fs::write(path, out)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{p:.0}%"))
}

/// Client CPU (percent of one CPU) above which a run is flagged
/// client-bound: the client, not the server, may have set the pace.
pub const CLIENT_BOUND_PERCENT: f64 = 90.0;

/// An open-loop run whose achieved rate fell short of its target by more
/// than this fraction is flagged saturated.
pub const SATURATED_SHORTFALL: f64 = 0.05;

/// Whether an open-loop run fell more than [`SATURATED_SHORTFALL`] short of
/// its target rate: the server (or the client) could not keep up, and its
/// latencies grow with the run's length.
pub fn saturated(r: &Results) -> bool {
    match (r.settings.rate, r.paced_msgs_per_sec) {
        (Some(target), Some(achieved)) => achieved < target * (1.0 - SATURATED_SHORTFALL),
        _ => false,
    }
}

/// The open-loop figures of a run (nothing for a closed-loop one): target
/// and achieved rate, and the percentiles from intended send times.
pub fn open_loop(r: &Results) -> String {
    let mut out = String::new();
    let (Some(target), Some(achieved)) = (r.settings.rate, r.paced_msgs_per_sec) else {
        return out;
    };
    let l = &r.latency_us;
    let _ = writeln!(
        out,
        "open loop: target {target:.0} msgs/s, achieved {achieved:.0} ({:.1}%){}{}; latency from intended send \
         times: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, p99.99 {:.3} ms, max {:.3} ms",
        achieved / target * 100.0,
        if saturated(r) { ", SATURATED" } else { "" },
        r.settings
            .tick_us
            .map_or(String::new(), |t| format!(", in {t} µs ticks (each latency up to {} µs late)", 2 * t)),
        l.p50 / 1000.0,
        l.p99 / 1000.0,
        l.p999 / 1000.0,
        l.p9999 / 1000.0,
        l.max / 1000.0,
    );
    if let Some(h) = &r.heavy {
        let _ = writeln!(
            out,
            "skewed: {} heavy connections ({} B back to back): {:.0} msgs/s, p50 {:.3} ms, p99 {:.3} ms; the \
             figures above are the {} paced (light) connections'",
            h.connections,
            r.settings.heavy_size.unwrap_or(0),
            h.msgs_per_sec,
            h.latency_us.p50 / 1000.0,
            h.latency_us.p99 / 1000.0,
            r.connected.saturating_sub(h.connections),
        );
    }
    out
}

/// The per-shard figures read from the server's metrics (nothing without them).
pub fn shards(r: &Results) -> String {
    let mut out = String::new();
    if r.server_shards.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "server shards: {}",
        r.server_shards
            .iter()
            .map(|s| format!(
                "#{}: {} accepted, {} live, {} busy",
                s.shard,
                s.accepted,
                s.live,
                percent(s.busy_percent)
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    out
}

/// Whether the client used more than [`CLIENT_BOUND_PERCENT`] of its CPU.
pub fn client_bound(r: &Results) -> bool {
    r.client.cpu_percent.is_some_and(|c| c > CLIENT_BOUND_PERCENT)
}

/// `value` with `decimals`, or `-`.
pub fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// The results table: one row per run, server CPU per message beside the
/// throughput, runs whose client was above [`CLIENT_BOUND_PERCENT`] flagged.
pub fn table(runs: &[Results]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>6} {:>8} {:>7} {:>7} {:>7} {:>8} {:>6} {:>10} {:>8} {:>8} {:>4} {:>4} {:>5} {:>8}  note",
        "label",
        "conns",
        "msgs/s",
        "srv us",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "peak RSS",
        "KiB/conn",
        "idle KiB",
        "srv",
        "cli",
        "other",
        "segs/msg",
    );
    for r in runs {
        let conns = connections(r);
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>8.0} {:>7} {:>7.1} {:>7.1} {:>8.1} {:>6} {:>10} {:>8} {:>8} {:>4} {:>4} {:>5} {:>8}  {}",
            r.label,
            conns,
            r.msgs_per_sec,
            opt(server_us_per_msg(r), 2),
            r.latency_us.p50 / 1000.0,
            r.latency_us.p99 / 1000.0,
            r.latency_us.max / 1000.0,
            r.errors_total + r.connect_failed as u64,
            mib(server_peak_kib(r)),
            opt(server_kib_per_conn(r), 2),
            opt(server_idle_kib_per_conn(r), 2),
            percent(r.server.and_then(|s| s.cpu_percent)),
            percent(r.client.cpu_percent),
            percent(r.other_cpu_percent),
            opt(segments_per_msg(r), 2),
            notes(r),
        );
    }
    let _ = writeln!(
        out,
        "srv us: server CPU per round trip; KiB/conn: (peak RSS - RSS before connecting) / conns; \
         idle KiB: the same with every connection open and idle after the load; srv/cli: CPU in % \
         of one; segs/msg: TCP segments per round trip (2 at best); client-bound: cli > {CLIENT_BOUND_PERCENT:.0}%"
    );
    out
}

/// The note column: client-bound, saturated.
fn notes(r: &Results) -> String {
    let mut notes = Vec::new();
    if client_bound(r) {
        notes.push("client-bound");
    }
    if saturated(r) {
        notes.push("saturated");
    }
    notes.join(", ")
}

/// Ratios of the first run to each of the others: throughput (higher is
/// better) and p99 latency (lower is better).
pub fn ratios(runs: &[Results]) -> String {
    let mut out = String::new();
    let Some((first, others)) = runs.split_first() else {
        return out;
    };
    for other in others {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let _ = writeln!(
            out,
            "{} / {}: msgs/s x{:.3} ({:+.1}%), p99 x{:.3} ({:+.1}%)",
            first.label,
            other.label,
            ratio(first.msgs_per_sec, other.msgs_per_sec),
            (ratio(first.msgs_per_sec, other.msgs_per_sec) - 1.0) * 100.0,
            ratio(first.latency_us.p99, other.latency_us.p99),
            (ratio(first.latency_us.p99, other.latency_us.p99) - 1.0) * 100.0,
        );
    }
    out
}

/// The connections a run opened: `10000`, or `9990/10000` when some failed.
fn connections(r: &Results) -> String {
    if r.connected == r.settings.connections {
        r.connected.to_string()
    } else {
        format!("{}/{}", r.connected, r.settings.connections)
    }
}

/// Server CPU time per round trip in the measured window, µs.
pub fn server_us_per_msg(r: &Results) -> Option<f64> {
    let cpu = r.server?.cpu_percent?;
    (r.msgs_per_sec > 0.0).then(|| cpu / 100.0 / r.msgs_per_sec * 1e6)
}

/// The server's peak resident set over the run (the kernel's high-water
/// mark, else the largest sample), KiB.
pub fn server_peak_kib(r: &Results) -> Option<u64> {
    let server = r.server?;
    server.hwm_kib.or(server.rss_peak_kib)
}

/// The server's peak resident set beyond its baseline, per connection, KiB.
pub fn server_kib_per_conn(r: &Results) -> Option<f64> {
    let (peak, before) = (server_peak_kib(r)?, r.server_rss_before_kib?);
    (r.connected > 0).then(|| peak.saturating_sub(before) as f64 / r.connected as f64)
}

/// The server's resident set with every connection open and idle after
/// the load, beyond its baseline, per connection, KiB.
pub fn server_idle_kib_per_conn(r: &Results) -> Option<f64> {
    let (idle, before) = (r.server?.rss_idle_kib?, r.server_rss_before_kib?);
    (r.connected > 0).then(|| idle.saturating_sub(before) as f64 / r.connected as f64)
}

/// The same with every connection open and none used yet.
pub fn server_fresh_kib_per_conn(r: &Results) -> Option<f64> {
    let (fresh, before) = (r.server?.rss_connected_kib?, r.server_rss_before_kib?);
    (r.connected > 0).then(|| fresh.saturating_sub(before) as f64 / r.connected as f64)
}

/// TCP segments (both directions, machine-wide) per round trip in the
/// measured window.
pub fn segments_per_msg(r: &Results) -> Option<f64> {
    let (k, seconds) = (r.window_kernel?, r.window_seconds?);
    (seconds > 0.0 && r.msgs_per_sec > 0.0).then(|| k.segments as f64 / seconds / r.msgs_per_sec)
}

/// One server's cost curve: one row per run, in the order given (growing
/// connection counts).
pub fn curve(label: &str, runs: &[Results]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== {label}: cost by connection count ==");
    let _ = writeln!(
        out,
        "{:>7} {:>10} {:>11} {:>10} {:>10} {:>10} {:>7} {:>7} {:>7} {:>7}",
        "conns",
        "msgs/s",
        "srv us/msg",
        "peak RSS",
        "RSS/conn",
        "p99 ms",
        "errors",
        "srv CPU",
        "cli CPU",
        "other"
    );
    for r in runs {
        let conns = connections(r);
        let _ = writeln!(
            out,
            "{:>7} {:>10.0} {:>11} {:>10} {:>10} {:>10.1} {:>7} {:>7} {:>7} {:>7}",
            conns,
            r.msgs_per_sec,
            server_us_per_msg(r).map_or_else(|| "-".into(), |us| format!("{us:.2}")),
            mib(server_peak_kib(r)),
            server_kib_per_conn(r).map_or_else(|| "-".into(), |k| format!("{k:.1} KiB")),
            r.latency_us.p99 / 1000.0,
            r.errors_total + r.connect_failed as u64,
            percent(r.server.and_then(|s| s.cpu_percent)),
            percent(r.client.cpu_percent),
            percent(r.other_cpu_percent),
        );
    }
    out
}

/// At each connection count, the first server's figures over each other
/// server's: msgs/s (higher is better), server µs/msg, peak RSS and p99
/// (lower is better). `curves[i][j]` is server `i` at count `j`.
pub fn curve_ratios(labels: &[String], curves: &[Vec<Results>]) -> String {
    let mut out = String::new();
    let Some((first, others)) = curves.split_first() else {
        return out;
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("x{:.3}", a / b),
        _ => "-".into(),
    };
    for (label, other) in labels[1..].iter().zip(others) {
        for (a, b) in first.iter().zip(other) {
            let _ = writeln!(
                out,
                "{} / {label} at {} conns: msgs/s {}, srv us/msg {}, peak RSS {}, p99 {}",
                labels[0],
                a.settings.connections,
                ratio(Some(a.msgs_per_sec), Some(b.msgs_per_sec)),
                ratio(server_us_per_msg(a), server_us_per_msg(b)),
                ratio(
                    server_peak_kib(a).map(|k| k as f64),
                    server_peak_kib(b).map(|k| k as f64)
                ),
                ratio(Some(a.latency_us.p99), Some(b.latency_us.p99)),
            );
        }
    }
    out
}

/// A one-paragraph description of the settings and the machine, under the table.
pub fn describe(r: &Results) -> String {
    let m = &r.machine;
    let s = &r.settings;
    format!(
        "{} connections, {} B messages, {} s measured after {} s warm-up, connects paced at {}/s; \
         client: {} shard(s) on cpus {:?}; machine: {} cpus, kernel {}, somaxconn {}, \
         ephemeral ports {}",
        s.connections,
        s.size,
        s.duration_s,
        s.warmup_s,
        s.connect_rate,
        s.client_shards,
        s.client_cpus,
        m.cpus,
        m.kernel,
        m.somaxconn.map_or("?".into(), |v| v.to_string()),
        m.ip_local_port_range.as_deref().unwrap_or("?"),
    )
}
