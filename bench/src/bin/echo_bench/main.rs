//! Run with: cargo run --release -p shardlet-bench --bin echo_bench -- --addr 127.0.0.1:6000 --label shardlet
//!
//! The 10k-client echo benchmark's load client (usually started by
//! `scripts/echo-bench.sh`, which also starts the server on other CPUs).
//!
//! It opens `--connections` connections at `--connect-rate` per second,
//! then runs closed-loop ping-pong of `--size`-byte messages: `--warmup`
//! seconds unrecorded, then `--duration` seconds in which every round trip
//! goes into an HDR histogram; then it leaves every connection open and
//! idle while the monitor samples the server, and closes them. Every echoed
//! byte is checked against a pattern unique to the connection and the
//! message. Two engines run the load, on as many threads (shards) as
//! `SHARDLET_SHARDS`/`SHARDLET_CPUS` say, each pinned: `--engine epoll`
//! (the default, `epoll.rs`: plain threads on raw epoll, the cheapest
//! client per message, so that the server sets the pace) and `--engine
//! glommio` (`load.rs`: a shardlet runtime, one green thread per connection
//! on glommio's streams, the client of the earlier figures).
//!
//! At the end it prints a table and writes, in `--results`:
//! `<label>.json` (raw results), `<label>.hgrm` (percentile distribution),
//! `<label>.svg` (latency-percentile plot) and, when other labels' JSON is
//! there too, `compare.svg`. The exit code is non-zero when any connection
//! failed or saw an error.
//!
//! `--rate N` makes it open loop (`pacing.rs`): N messages per second in
//! all, spread evenly over the connections, each latency counted from the
//! message's intended send time (wrk2's coordinated-omission correction);
//! a run whose achieved rate falls more than 5% short of N is flagged
//! "saturated". `--heavy-fraction F` skews the load: about F of the
//! connections send back-to-back with `--heavy-size` messages, the others
//! are paced by `--rate`, and the latency figures are the paced ones'.
//! `--server-metrics HOST:PORT` reads the server's Prometheus endpoint at
//! the edges of the window: per-shard connections and busy time.
//!
//! `--compare a,b,c` runs nothing: it prints the combined table of earlier
//! runs with the ratios of the first label to the others. `--sweep` and
//! `--scale` (also running nothing) print the tables of
//! `scripts/echo-bench.sh --rate-sweep` and `scripts/scale-bench.sh`.

mod epoll;
mod hiccups;
mod load;
mod monitor;
mod netstat;
mod pacing;
mod plot;
mod report;
mod scale;
mod scrape;
mod summary;
mod sweep;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use shardlet::{Config, Runtime};

use crate::load::{new_histogram, Errors, Heavy, Plan, Shared};
use crate::monitor::Monitor;
use crate::netstat::NetCounters;
use crate::report::{HeavyFigures, Latency, Machine, Results, Settings};

/// CPU used by other processes during the measurement (percent of one CPU)
/// above which the run is flagged as noisy.
const NOISY_CPU_PERCENT: f64 = 10.0;

/// Load client for the 10k-client echo benchmark.
#[derive(Debug, Parser)]
#[command(long_about = None)]
struct Args {
    /// The echo server's address.
    #[arg(long, default_value = "127.0.0.1:6000")]
    addr: SocketAddr,
    /// Connections to open and keep busy.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    connections: u64,
    /// Bytes per message (1 to 65536).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    size: u64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unrecorded load before the measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Connects per second (paced, so the server's backlog never overflows).
    #[arg(long, default_value_t = 5000.0)]
    connect_rate: f64,
    /// Tries per connection before it counts as failed.
    #[arg(long, default_value_t = 5)]
    connect_attempts: u32,
    /// Folder for the JSON, .hgrm and SVG files.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Name of this run: shardlet, raw-glommio, tokio, ...
    #[arg(long, default_value = "run")]
    label: String,
    /// The server's process id, to read its memory and CPU from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// What runs the load: `epoll` (plain threads on raw epoll, the
    /// cheapest per message) or `glommio` (a shardlet runtime, one green
    /// thread per connection on glommio's streams).
    #[arg(long, value_enum, default_value_t = Engine::Epoll)]
    engine: Engine,
    /// Open loop: this many messages per second in all, spread evenly over
    /// the (paced) connections, each latency counted from the message's
    /// intended send time. Closed loop without it. Epoll engine only.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop in ticks of this many microseconds (1 to 10000): the
    /// client wakes once per tick, sends what fell due and reads what came
    /// back, instead of waking for every message and every answer, so it
    /// keeps up at higher rates; each latency then carries up to one tick
    /// of the client's own lateness at each end. Open loop only: ignored
    /// without --rate (so that a sweep's closed-loop runs can share it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    tick_us: Option<u64>,
    /// Skewed load: about this fraction of the connections (0 to 1) are
    /// heavy: back-to-back, with --heavy-size messages. The rest are paced
    /// by --rate, and the latency figures are theirs.
    #[arg(long, requires = "rate")]
    heavy_fraction: Option<f64>,
    /// Bytes per message of a heavy connection (1 to 65536).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    heavy_size: u64,
    /// Measure the machine's own stalls during the load (`hiccups.rs`):
    /// `true` or `false`. Default: on for an open-loop run (--rate), whose
    /// tail latencies they bound, off for a closed-loop one.
    #[arg(long)]
    hiccups: Option<bool>,
    /// Run nothing but this: a thread spinning on each online CPU for this
    /// many seconds (at most 60), printing the gaps in its clock readings:
    /// the machine's own stalls, with nothing else running.
    #[arg(long)]
    stalls: Option<f64>,
    /// The server's Prometheus endpoint (shardlet's `echo_server
    /// --metrics-addr`): per-shard connections and busy time, read at the
    /// edges of the measured window.
    #[arg(long)]
    server_metrics: Option<SocketAddr>,
    /// Run nothing: compare earlier runs in --results (comma-separated
    /// labels; ratios are of the first to each of the others).
    #[arg(long, value_delimiter = ',')]
    compare: Vec<String>,
    /// Run nothing: print the cost curve of each of these servers
    /// (comma-separated labels) from earlier runs in --results, one table
    /// per server, from `<label>-c<N>.json` for each N of --points.
    #[arg(long, value_delimiter = ',', requires = "points")]
    curve: Vec<String>,
    /// The connection counts of --curve, comma-separated.
    #[arg(long, value_delimiter = ',')]
    points: Vec<u64>,
    /// Run nothing: summarize repeated runs of these servers
    /// (comma-separated labels) from `<label>-r1.json` ... `<label>-rN.json`
    /// in --results: every run, then medians with their range, and the
    /// ratios of the first server's medians to the others'.
    #[arg(long, value_delimiter = ',', requires = "rounds")]
    summary: Vec<String>,
    /// The number of rounds of --summary.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// Run nothing: the table and plot of a rate sweep of these servers
    /// (comma-separated) from `<server>-max` (closed loop) and
    /// `<server>-own<P>` (open loop at P% of its own maximum) for each P of
    /// --loads, and `<server>-<base><P>` (at P% of --rate-base's maximum).
    #[arg(long, value_delimiter = ',', requires = "loads")]
    sweep: Vec<String>,
    /// The loads of --sweep, in percent of the maximum, comma-separated.
    #[arg(long, value_delimiter = ',')]
    loads: Vec<u32>,
    /// The server of --sweep whose maximum also sets the others' rates.
    #[arg(long)]
    rate_base: Option<String>,
    /// Run nothing: the table, JSON and plot of a scale sweep from the
    /// runs `<label>` listed (comma-separated) in --results.
    #[arg(long, value_delimiter = ',')]
    scale: Vec<String>,
    /// Run nothing: only check the options (`scripts/echo-bench.sh` checks
    /// the ones it passes on before it starts a server).
    #[arg(long)]
    check: bool,
}

/// The load engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Plain threads on raw epoll (`epoll.rs`).
    Epoll,
    /// A shardlet runtime with glommio's streams (`load.rs`).
    Glommio,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return ExitCode::SUCCESS;
    }
    if let Err(err) = std::fs::create_dir_all(&args.results) {
        eprintln!("echo_bench: cannot create {}: {err}", args.results.display());
        return ExitCode::from(2);
    }
    if !args.compare.is_empty() {
        return compare(&args.results, &args.compare);
    }
    if let Some(secs) = args.stalls {
        if !(secs > 0.0 && secs <= 60.0) {
            eprintln!("echo_bench: --stalls {secs}: expected seconds, more than 0 and at most 60");
            return ExitCode::from(2);
        }
        let stalls = hiccups::spin(Duration::from_secs_f64(secs));
        let title = format!(
            "machine stalls ({secs} s; a thread spinning on each CPU, gaps >= 1/5/10 ms in its clock \
             readings and the longest)"
        );
        print!("{}", hiccups::describe_as(&stalls, &title));
        return ExitCode::SUCCESS;
    }
    if !args.curve.is_empty() {
        return curve(&args.results, &args.curve, &args.points);
    }
    if let (false, Some(rounds)) = (args.summary.is_empty(), args.rounds) {
        return summarize(&args.results, &args.summary, rounds);
    }
    if !args.sweep.is_empty() {
        return sweep::main(&args.results, &args.sweep, &args.loads, args.rate_base.as_deref());
    }
    if !args.scale.is_empty() {
        return scale::main(&args.results, &args.scale);
    }
    if !(args.duration > 0.0 && args.warmup >= 0.0 && args.connect_rate > 0.0) {
        eprintln!("echo_bench: --duration and --connect-rate must be positive, --warmup not negative");
        return ExitCode::from(2);
    }
    if let Err(err) = check_load_options(&args) {
        eprintln!("echo_bench: {err}");
        return ExitCode::from(2);
    }
    if args.label.is_empty() || args.label.contains(['/', '.']) || args.label == "compare" {
        eprintln!("echo_bench: --label must be a plain name (no '/' or '.'), not 'compare'");
        return ExitCode::from(2);
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("echo_bench: {err}");
            return ExitCode::from(2);
        }
    };
    match run(&args, config) {
        Ok(results) if !results.failed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("echo_bench: {err}");
            ExitCode::from(2)
        }
    }
}

/// One benchmark run on a runtime built from `config`: load, then the table and the files.
fn run(args: &Args, mut config: Config) -> Result<Results, String> {
    // Step 1: settings, and the limits that 10k sockets run into.
    let machine = Machine::current();
    let connections = args.connections as usize;
    raise_fd_limit(connections)?;
    if let Some(ports) = machine.ephemeral_ports() {
        if connections as u64 > ports {
            return Err(format!(
                "{connections} connections to one address need more ephemeral ports than \
                 net.ipv4.ip_local_port_range gives ({ports})"
            ));
        }
    }
    let plan = Plan {
        addr: args.addr,
        connections,
        size: args.size as usize,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        connect_rate: args.connect_rate,
        connect_attempts: args.connect_attempts.max(1),
        connect_timeout: Duration::from_secs(2),
        drain: Duration::from_secs(5),
        rate: args.rate,
        tick: args.rate.and(args.tick_us).map(Duration::from_micros),
        heavy: args.heavy_fraction.map(|fraction| Heavy {
            fraction,
            size: args.heavy_size as usize,
        }),
    };
    let heavy_connections = (0..connections).filter(|&id| plan.is_heavy(id)).count();
    if let Some(pacing) = plan.pacing() {
        eprintln!(
            "echo_bench: open loop: {:.0} msgs/s over {} paced connection(s), each sending every {:?}",
            plan.rate.unwrap_or(0.0),
            connections - heavy_connections,
            pacing.interval()
        );
    }

    // Step 2: the client's shards: threads on raw epoll, or a runtime.
    // Sockets do not use io_uring's registered buffers, so keep them small
    // unless SHARDLET_IO_MEMORY says otherwise: RLIMIT_MEMLOCK is shared
    // with the server (same user).
    if config.io_memory().is_none() {
        config = config.with_io_memory(256 << 10);
    }
    let (runtime, client_cpus) = match args.engine {
        Engine::Epoll => {
            let shards = config.validate().map_err(|e| e.to_string())?;
            let cpus: Vec<Option<usize>> = (0..shards.shards()).map(|s| shards.cpu(s)).collect();
            (None, cpus)
        }
        Engine::Glommio => {
            let runtime = Runtime::new(config).map_err(|e| e.to_string())?;
            let cpus: Vec<Option<usize>> = (0..runtime.shards()).map(|s| runtime.plan().cpu(s)).collect();
            (Some(runtime), cpus)
        }
    };
    let settings = Settings {
        connections,
        size: plan.size,
        warmup_s: args.warmup,
        duration_s: args.duration,
        connect_rate: args.connect_rate,
        client_shards: client_cpus.len(),
        client_cpus: client_cpus.clone(),
        engine: Some(args.engine),
        rate: plan.rate,
        heavy_fraction: plan.heavy.map(|h| h.fraction),
        heavy_size: plan.heavy.map(|h| h.size),
        tick_us: plan.tick.map(|t| t.as_micros() as u64),
    };
    eprintln!(
        "echo_bench: {} -> {} ({})",
        args.label,
        args.addr,
        report::describe(&Results::empty(
            &args.label,
            args.addr,
            settings.clone(),
            machine.clone()
        ))
    );

    // Step 3: a hard deadline, whatever happens to the server or the shards.
    let limit = Duration::from_secs_f64(connections as f64 / args.connect_rate)
        + plan.worst_connect()
        + plan.warmup
        + plan.duration
        + plan.drain * 3
        + Duration::from_secs(15);
    let _watchdog = watchdog(limit);

    // Step 4: the load, on every shard, with the monitor and the machine's
    // stall meter watching.
    let server_rss_before_kib = args
        .server_pid
        .and_then(|pid| monitor::status_kib(Some(pid), "VmRSS:"));
    let shared = Arc::new(Shared::default());
    let net_before = NetCounters::now();
    let monitor = Monitor::start(
        plan.clone(),
        shared.clone(),
        client_cpus.len(),
        args.server_pid,
        args.server_metrics,
    );
    let meter = args
        .hiccups
        .unwrap_or(plan.rate.is_some())
        .then(hiccups::Meter::start);
    let outcomes = match runtime {
        None => Ok(epoll::run(&plan, &shared, &client_cpus)),
        Some(runtime) => {
            let (plan, shared) = (plan.clone(), shared.clone());
            match runtime.start(move || load::shard_main(plan.clone(), shared.clone())) {
                Ok(handle) => handle.join().map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let observed = monitor.finish();
    let hiccups = meter.map(hiccups::Meter::finish).unwrap_or_default();
    let kernel = NetCounters::now().since(&net_before);
    let outcomes = outcomes?;

    // Step 5: merge the shards' figures.
    let mut histogram = new_histogram();
    let mut heavy_histogram = new_histogram();
    let mut errors = Errors::default();
    let (mut connected, mut connect_failed, mut measured, mut total) = (0, 0, 0, 0);
    let mut connect_time = Duration::ZERO;
    for o in &outcomes {
        histogram
            .add(&o.histogram)
            .map_err(|e| format!("merging histograms: {e:?}"))?;
        heavy_histogram
            .add(&o.heavy_histogram)
            .map_err(|e| format!("merging histograms: {e:?}"))?;
        errors.add(&o.errors);
        connected += o.connected;
        connect_failed += o.connect_failed;
        measured += o.measured;
        total += o.total;
        connect_time = connect_time.max(o.connect_time);
    }
    let (percentiles, raw) = Results::distribution(&histogram);
    let msgs_per_sec = measured as f64 / args.duration;
    let results = Results {
        connected,
        connect_failed,
        connect_seconds: connect_time.as_secs_f64(),
        messages: measured,
        messages_total: total,
        msgs_per_sec,
        bytes_per_sec: msgs_per_sec * plan.size as f64,
        latency_us: Latency::of(&histogram),
        errors,
        errors_total: errors.total(),
        first_error: shared.first_error.lock().ok().and_then(|e| e.clone()),
        server_pid: args.server_pid,
        server_rss_before_kib,
        server: observed.server,
        client: observed.client,
        softirq_percent: observed.softirq_percent,
        kernel,
        window_kernel: observed.window_kernel,
        window_seconds: observed.window_seconds,
        other_cpu_percent: observed.busy_percent.map(|busy| {
            let server = observed.server.and_then(|s| s.cpu_percent).unwrap_or(0.0);
            (busy - server - observed.client.cpu_percent.unwrap_or(0.0)).max(0.0)
        }),
        percentiles,
        histogram_v2z_base64: raw,
        paced_msgs_per_sec: plan.rate.map(|_| histogram.len() as f64 / args.duration),
        heavy: plan.heavy.map(|_| HeavyFigures {
            connections: heavy_connections,
            msgs_per_sec: heavy_histogram.len() as f64 / args.duration,
            latency_us: Latency::of(&heavy_histogram),
        }),
        server_shards: observed.shards,
        hiccups,
        ..Results::empty(&args.label, args.addr, settings, machine)
    };

    // Step 6: the table and the files.
    println!();
    print!("{}", report::table(std::slice::from_ref(&results)));
    print!("{}", hiccups::describe(&results.hiccups));
    print!("{}", report::open_loop(&results));
    print!("{}", report::shards(&results));
    if let Some(err) = &results.first_error {
        println!("first error: {err}");
    }
    if !results.kernel.is_zero() {
        let k = &results.kernel;
        println!(
            "kernel, whole machine, during the run: {} TCP retransmits ({} timeouts), {} listen \
             overflows, {} input backlog drops",
            k.retransmits, k.timeouts, k.listen_overflows, k.backlog_drops
        );
    }
    if let Some(other) = results.other_cpu_percent.filter(|&o| o > NOISY_CPU_PERCENT) {
        println!(
            "warning: other processes used {other:.0}% of a CPU during the measurement: the figures are noisy"
        );
    }
    let json = results
        .write_json(&args.results)
        .map_err(|e| format!("writing JSON: {e}"))?;
    let hgrm = args.results.join(format!("{}.hgrm", args.label));
    report::write_hgrm(&hgrm, &histogram).map_err(|e| format!("writing {}: {e}", hgrm.display()))?;
    let svg = args.results.join(format!("{}.svg", args.label));
    let title = format!(
        "echo round trips: {} ({} conns, {} B)",
        args.label, connections, plan.size
    );
    let mut written = vec![json, hgrm];
    match plot::draw(&svg, &title, &[&results]) {
        Ok(()) => written.push(svg),
        Err(err) => eprintln!("echo_bench: no plot: {err}"),
    }
    let all = Results::read_all(&args.results);
    if all.len() > 1 {
        let path = args.results.join("compare.svg");
        if plot::draw(
            &path,
            "echo round trips: comparison",
            &all.iter().collect::<Vec<_>>(),
        )
        .is_ok()
        {
            written.push(path);
        }
    }
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!("wrote {}", names.join(", "));
    Ok(results)
}

/// `--compare`: the combined table and ratios of earlier runs.
fn compare(dir: &Path, labels: &[String]) -> ExitCode {
    let mut runs = Vec::new();
    let mut missing = false;
    for label in labels {
        match Results::read_json(dir, label) {
            Ok(r) => runs.push(r),
            Err(err) => {
                eprintln!("echo_bench: no results for {label}: {err}");
                missing = true;
            }
        }
    }
    if runs.is_empty() {
        return ExitCode::FAILURE;
    }
    print!("{}", report::table(&runs));
    print!("{}", report::ratios(&runs));
    println!("{}", report::describe(&runs[0]));
    let path = dir.join("compare.svg");
    match plot::draw(
        &path,
        "echo round trips: comparison",
        &runs.iter().collect::<Vec<_>>(),
    ) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(err) => eprintln!("echo_bench: no plot: {err}"),
    }
    if missing || runs.iter().any(Results::failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--summary`: every run in round order, then each server's medians.
fn summarize(dir: &Path, labels: &[String], rounds: u32) -> ExitCode {
    let mut all = Vec::new();
    let mut figures = Vec::new();
    let mut failed = false;
    for label in labels {
        let mut runs = Vec::new();
        for round in 1..=rounds {
            match Results::read_json(dir, &format!("{label}-r{round}")) {
                Ok(r) => runs.push(r),
                Err(err) => {
                    eprintln!("echo_bench: no results for {label}, round {round}: {err}");
                    failed = true;
                }
            }
        }
        failed |= runs.iter().any(Results::failed);
        figures.push(summary::Figures::of(label, &runs));
        all.extend(runs);
    }
    all.sort_by_key(|r| r.unix_time);
    println!("== every run, in the order run ==");
    print!("{}", report::table(&all));
    println!();
    println!("== medians over {rounds} rounds (servers interleaved, order rotated each round) ==");
    print!("{}", summary::table(&figures));
    if let Some(r) = all.first() {
        println!("{}", report::describe(r));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--curve`: one cost table per server over the connection counts, and
/// the ratios of the first server to the others at each count.
fn curve(dir: &Path, labels: &[String], points: &[u64]) -> ExitCode {
    let mut curves = Vec::new();
    let mut failed = false;
    for label in labels {
        let mut runs = Vec::new();
        for n in points {
            match Results::read_json(dir, &format!("{label}-c{n}")) {
                Ok(r) => {
                    failed |= r.failed();
                    runs.push(r);
                }
                Err(err) => {
                    eprintln!("echo_bench: no results for {label} at {n} connections: {err}");
                    failed = true;
                }
            }
        }
        print!("{}", report::curve(label, &runs));
        println!();
        curves.push(runs);
    }
    if curves.iter().all(|c| c.len() == points.len()) {
        print!("{}", report::curve_ratios(labels, &curves));
    }
    if let Some(r) = curves.iter().flatten().next() {
        println!("{}", report::describe(r));
    }
    println!(
        "srv us/msg: server CPU time per round trip; RSS/conn: (peak RSS - RSS before the client connected) / connections"
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The open-loop and skew options, checked.
fn check_load_options(args: &Args) -> Result<(), String> {
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!(
                "--rate {rate}: expected a positive number of messages per second"
            ));
        }
        if args.engine != Engine::Epoll {
            return Err("--rate runs on the epoll engine only (leave out --engine glommio)".into());
        }
    }
    if let Some(f) = args.heavy_fraction {
        if !(f > 0.0 && f < 1.0) {
            return Err(format!(
                "--heavy-fraction {f}: expected a fraction between 0 and 1"
            ));
        }
    }
    Ok(())
}

/// Makes room for `connections` sockets (plus a margin) under RLIMIT_NOFILE.
fn raise_fd_limit(connections: usize) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let need = connections as u64 + 256;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if soft >= need {
        return Ok(());
    }
    if hard >= need {
        return setrlimit(Resource::RLIMIT_NOFILE, need, hard).map_err(|e| e.to_string());
    }
    Err(format!(
        "{connections} connections need about {need} file descriptors, but the hard limit \
         (ulimit -Hn) is {hard}"
    ))
}

/// Ends the process with an error if the run has not finished by `limit`;
/// dropping the returned guard disarms it.
fn watchdog(limit: Duration) -> std::sync::mpsc::Sender<()> {
    let started = Instant::now();
    let (disarm, disarmed) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("echo-bench-watchdog".into())
        .spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                eprintln!(
                    "\necho_bench: hard deadline: still running after {:.0?}; giving up",
                    started.elapsed()
                );
                std::process::exit(3);
            }
        })
        .expect("spawn the watchdog thread");
    disarm
}

impl Results {
    /// A result with the settings filled in and nothing measured.
    fn empty(label: &str, addr: SocketAddr, settings: Settings, machine: Machine) -> Results {
        Results {
            label: label.to_string(),
            addr: addr.to_string(),
            unix_time: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            settings,
            connected: 0,
            connect_failed: 0,
            connect_seconds: 0.0,
            messages: 0,
            messages_total: 0,
            msgs_per_sec: 0.0,
            bytes_per_sec: 0.0,
            latency_us: Latency::default(),
            errors: Errors::default(),
            errors_total: 0,
            first_error: None,
            server_pid: None,
            server_rss_before_kib: None,
            server: None,
            client: Default::default(),
            softirq_percent: None,
            kernel: NetCounters::default(),
            window_kernel: None,
            window_seconds: None,
            other_cpu_percent: None,
            paced_msgs_per_sec: None,
            heavy: None,
            server_shards: Vec::new(),
            hiccups: Vec::new(),
            machine,
            percentiles: Vec::new(),
            histogram_v2z_base64: String::new(),
        }
    }
}
