//! `--summary`: repeated runs of several servers (`scripts/echo-bench.sh
//! --repeat N`, which interleaves the servers and rotates their order each
//! round) as medians with their spread, and the ratios of the medians.
//!
//! Contract with `main.rs`: the runs of server `s` are the results files
//! `<s>-r1` ... `<s>-rN`; every figure is taken per run first (so a ratio
//! such as CPU per message pairs figures of the same run), then its median
//! and range over the runs that have it.

use std::fmt::Write as _;

use crate::report::{
    client_bound, segments_per_msg, server_fresh_kib_per_conn, server_idle_kib_per_conn, server_kib_per_conn,
    server_peak_kib, server_us_per_msg, Results, CLIENT_BOUND_PERCENT,
};

/// The median, least and greatest of some figures; `None` when there are none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

impl Spread {
    /// The spread of the figures that are there (NaN ones left out).
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().flatten().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            count: n,
        })
    }
}

/// The figures of one server over its runs.
#[derive(Debug, Clone)]
pub struct Figures {
    pub label: String,
    pub runs: usize,
    pub msgs_per_sec: Option<Spread>,
    pub us_per_msg: Option<Spread>,
    pub p99_ms: Option<Spread>,
    pub peak_mib: Option<Spread>,
    pub kib_per_conn: Option<Spread>,
    pub idle_kib_per_conn: Option<Spread>,
    pub fresh_kib_per_conn: Option<Spread>,
    pub server_cpu: Option<Spread>,
    pub client_cpu: Option<Spread>,
    pub other_cpu: Option<Spread>,
    pub segments: Option<Spread>,
    /// Runs whose client was above [`CLIENT_BOUND_PERCENT`].
    pub client_bound: usize,
    /// Runs with errors.
    pub failed: usize,
}

impl Figures {
    pub fn of(label: &str, runs: &[Results]) -> Figures {
        let spread = |f: &dyn Fn(&Results) -> Option<f64>| Spread::of(runs.iter().map(f));
        Figures {
            label: label.to_string(),
            runs: runs.len(),
            msgs_per_sec: spread(&|r| Some(r.msgs_per_sec)),
            us_per_msg: spread(&server_us_per_msg),
            p99_ms: spread(&|r| Some(r.latency_us.p99 / 1000.0)),
            peak_mib: spread(&|r| server_peak_kib(r).map(|k| k as f64 / 1024.0)),
            kib_per_conn: spread(&server_kib_per_conn),
            idle_kib_per_conn: spread(&server_idle_kib_per_conn),
            fresh_kib_per_conn: spread(&server_fresh_kib_per_conn),
            server_cpu: spread(&|r| r.server.and_then(|s| s.cpu_percent)),
            client_cpu: spread(&|r| r.client.cpu_percent),
            other_cpu: spread(&|r| r.other_cpu_percent),
            segments: spread(&segments_per_msg),
            client_bound: runs.iter().filter(|r| client_bound(r)).count(),
            failed: runs.iter().filter(|r| r.failed()).count(),
        }
    }
}

/// `median [min-max]` with `decimals`, or `-`.
fn cell(s: Option<Spread>, decimals: usize) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.count == 1 => format!("{:.decimals$}", s.median),
        Some(s) => format!(
            "{:.decimals$} [{:.decimals$}-{:.decimals$}]",
            s.median, s.min, s.max
        ),
    }
}

fn median(s: Option<Spread>, decimals: usize) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{:.decimals$}", s.median))
}

/// The medians table (with ranges), then the ratios of the first server's
/// medians to each other's.
pub fn table(all: &[Figures]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>4} {:>24} {:>20} {:>18} {:>9} {:>9} {:>17} {:>9} {:>4} {:>9} {:>9} {:>8}  client-bound",
        "server",
        "runs",
        "msgs/s",
        "srv us/msg",
        "p99 ms",
        "peak MiB",
        "KiB/conn",
        "idle KiB/conn",
        "fresh KiB",
        "srv",
        "cli",
        "other max",
        "segs/msg",
    );
    for f in all {
        let _ = writeln!(
            out,
            "{:<14} {:>4} {:>24} {:>20} {:>18} {:>9} {:>9} {:>17} {:>9} {:>4} {:>9} {:>9} {:>8}  {}",
            f.label,
            f.runs,
            cell(f.msgs_per_sec, 0),
            cell(f.us_per_msg, 2),
            cell(f.p99_ms, 1),
            median(f.peak_mib, 1),
            median(f.kib_per_conn, 2),
            cell(f.idle_kib_per_conn, 2),
            median(f.fresh_kib_per_conn, 2),
            median(f.server_cpu, 0),
            cell(f.client_cpu, 0),
            f.other_cpu
                .map_or_else(|| "-".into(), |s| format!("{:.0}", s.max)),
            median(f.segments, 2),
            match (f.client_bound, f.failed) {
                (0, 0) => "no".to_string(),
                (k, 0) => format!("{k} of {} runs", f.runs),
                (k, failed) => format!("{k} of {} runs ({failed} with errors)", f.runs),
            },
        );
    }
    let _ = writeln!(
        out,
        "medians [min-max] over the runs; srv us/msg: server CPU per round trip; KiB/conn: peak RSS per \
         connection; idle KiB/conn: RSS with every connection open and idle after the load; fresh KiB: \
         the same before the first message; srv/cli: CPU in % of one; segs/msg: TCP segments per round \
         trip (2 at best); client-bound: client above {CLIENT_BOUND_PERCENT:.0}% of its CPU"
    );
    if let Some((first, others)) = all.split_first() {
        let ratio = |a: Option<Spread>, b: Option<Spread>| match (a, b) {
            (Some(a), Some(b)) if b.median > 0.0 => format!("x{:.3}", a.median / b.median),
            _ => "-".into(),
        };
        for other in others {
            let _ = writeln!(
                out,
                "{} / {} (medians): msgs/s {}, srv us/msg {}, peak RSS {}, idle KiB/conn {}, p99 {}",
                first.label,
                other.label,
                ratio(first.msgs_per_sec, other.msgs_per_sec),
                ratio(first.us_per_msg, other.us_per_msg),
                ratio(first.peak_mib, other.peak_mib),
                ratio(first.idle_kib_per_conn, other.idle_kib_per_conn),
                ratio(first.p99_ms, other.p99_ms),
            );
        }
    }
    out
}
