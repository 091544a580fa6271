//! The HTTP benchmark: the same trivial service (`200`, `Hello, World!`) on
//! hyper-on-shardlet (`http::Server`, one shard) and on hyper-on-tokio (a
//! current-thread runtime), each a child process of this one pinned to the
//! first CPU; `wrk -t1` pinned to the second at each connection count, the
//! servers' runs interleaved and their order rotated each round; medians,
//! spread and ratios reported. Then the feed scraper's end-to-end latency
//! for a POST of 100 local feeds.
//!
//! ```text
//! cargo bench --bench http                                   # 64 and 1000 connections, 3 rounds of 5 s
//! cargo bench --bench http -- --connections 64,256 --rounds 5 --seconds 10
//! SHARDLET_SPIN_US=0 cargo bench --bench http                # shardlet's knobs apply
//! ```
//!
//! Load comes from `wrk` when it is installed (Debian package `wrk`), else
//! from the built-in keep-alive load client (tokio, one thread); the table
//! says which. `cargo test --benches` runs a tiny version (no wrk). Raw
//! figures go to `results/http-bench.json`.

#[path = "http/load.rs"]
mod load;
#[path = "http/scraper_latency.rs"]
mod scraper_latency;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use load::Load;
use shardlet::http as shttp;
use shardlet::http::server::Body;
use shardlet::{Config, Runtime, ServerConfig};

/// The body both servers answer.
const HELLO: &[u8] = b"Hello, World!";

/// The servers compared, by the name `--serve` takes.
const SERVERS: [&str; 2] = ["shardlet", "hyper-tokio"];

struct Options {
    full: bool,
    seconds: f64,
    connections: Vec<usize>,
    rounds: usize,
    posts: usize,
}

fn options(args: &[String]) -> Options {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let full = args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str| {
        value(name).map(|v| {
            v.parse::<f64>()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
    };
    let connections = value("--connections")
        .map(|v| {
            v.split(',')
                .map(|c| c.trim().parse().expect("--connections takes a list of numbers"))
                .collect()
        })
        .unwrap_or_else(|| if full { vec![64, 1000] } else { vec![8] });
    Options {
        full,
        seconds: number("--seconds").unwrap_or(if full { 5.0 } else { 0.3 }),
        connections,
        rounds: number("--rounds").unwrap_or(if full { 3.0 } else { 1.0 }) as usize,
        posts: number("--posts").unwrap_or(if full { 50.0 } else { 3.0 }) as usize,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        return serve(&args[i + 1]);
    }
    let opts = options(&args);
    let wrk = opts.full && Command::new("wrk").arg("--version").output().is_ok();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Server on CPU 0, load on CPU 1 (on one CPU they share it).
    let (server_cpu, client_cpu) = if cpus >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    println!(
        "HTTP bench: 1 server thread each (CPU {server_cpu:?}), {} connections, {} rounds of {} s, load from {} (CPU {client_cpu:?}), {cpus} CPUs",
        opts.connections.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        opts.rounds,
        opts.seconds,
        if wrk { "wrk -t1" } else { "the built-in client" },
    );
    let servers: Vec<ServerChild> = SERVERS
        .iter()
        .map(|name| ServerChild::start(name, server_cpu))
        .collect();
    let measure = |server: &ServerChild, connections: usize, seconds: f64| {
        let cpu_before = server.cpu_seconds();
        let started = std::time::Instant::now();
        let mut run = if wrk {
            load::wrk_load(server.addr, connections, seconds, client_cpu)
        } else {
            load::own_load(server.addr, connections, seconds)
        };
        run.server = server.name;
        run.server_cpu = (server.cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
        run.server_rss_kib = server.rss_kib();
        run
    };

    let mut runs: Vec<Load> = Vec::new();
    for &connections in &opts.connections {
        for server in &servers {
            measure(server, connections, (opts.seconds / 5.0).min(1.0)); // warm-up
        }
        for round in 0..opts.rounds {
            for k in 0..servers.len() {
                let server = &servers[(k + round) % servers.len()];
                let run = measure(server, connections, opts.seconds);
                eprintln!(
                    "  c={connections} round {round}: {:<12} {:>9.0} req/s  p99 {:>8.1} us  server CPU {:>3.0}%  client CPU {:>3.0}%  RSS {} KiB",
                    run.server, run.requests_per_sec, run.p99_us, run.server_cpu, run.client_cpu, run.server_rss_kib
                );
                runs.push(run);
            }
        }
    }
    let summary = report(&runs, &opts.connections);

    let scraper = scraper_latency::scraper_latency(1, opts.posts);
    println!();
    println!(
        "feed scraper, POST of 100 local feeds, {} posts: min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        opts.posts, scraper.min_ms, scraper.p50_ms, scraper.p99_ms, scraper.max_ms
    );

    let report = serde_json::json!({
        "seconds": opts.seconds,
        "rounds": opts.rounds,
        "tool": if wrk { "wrk" } else { "built-in client" },
        "runs": runs,
        "summary": summary,
        "scraper": scraper,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    if opts.full && std::fs::create_dir_all(&dir).is_ok() {
        let path = dir.join("http-bench.json");
        match std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()) {
            Ok(()) => println!("raw figures: {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}

/// Prints, per connection count, each server's median requests/s (with
/// the range), median p99 and RSS, and shardlet's ratios to hyper-on-tokio.
fn report(runs: &[Load], counts: &[usize]) -> serde_json::Value {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!();
    println!(
        "{:<12} {:>6} {:>10} {:>19} {:>10} {:>10} {:>8} {:>8} {:>10}",
        "server", "conns", "req/s", "(min-max)", "p50 us", "p99 us", "srv CPU", "cli CPU", "RSS KiB"
    );
    let mut summary = Vec::new();
    for &c in counts {
        let mut medians = Vec::new();
        for name in SERVERS {
            let mine: Vec<&Load> = runs
                .iter()
                .filter(|r| r.server == name && r.connections == c)
                .collect();
            let rates: Vec<f64> = mine.iter().map(|r| r.requests_per_sec).collect();
            let (lo, hi) = rates
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            let row = (
                median(rates),
                median(mine.iter().map(|r| r.p50_us).collect()),
                median(mine.iter().map(|r| r.p99_us).collect()),
                median(mine.iter().map(|r| r.server_cpu).collect()),
                median(mine.iter().map(|r| r.client_cpu).collect()),
                mine.iter().map(|r| r.server_rss_kib).max().unwrap_or(0),
            );
            println!(
                "{name:<12} {c:>6} {:>10.0} {:>19} {:>10.1} {:>10.1} {:>7.0}% {:>7.0}% {:>10}",
                row.0,
                format!("({lo:.0}-{hi:.0})"),
                row.1,
                row.2,
                row.3,
                row.4,
                row.5
            );
            medians.push(row);
        }
        let (ours, theirs) = (medians[0], medians[1]);
        let ratios = (
            ours.0 / theirs.0,
            ours.2 / theirs.2,
            ours.5 as f64 / theirs.5.max(1) as f64,
        );
        println!(
            "  shardlet / hyper-tokio at {c} connections: req/s x{:.3}, p99 x{:.3}, RSS x{:.2}{}",
            ratios.0,
            ratios.1,
            ratios.2,
            if ours.4 > 90.0 || theirs.4 > 90.0 {
                "  (the load client is near 100% of its CPU: it may set the pace)"
            } else {
                ""
            }
        );
        summary.push(serde_json::json!({
            "connections": c,
            "requests_per_sec_ratio": ratios.0,
            "p99_ratio": ratios.1,
            "rss_ratio": ratios.2,
        }));
    }
    serde_json::Value::Array(summary)
}

/// A server child process: `--serve NAME`, pinned to `cpu`.
struct ServerChild {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl ServerChild {
    fn start(name: &'static str, cpu: Option<usize>) -> ServerChild {
        let exe = std::env::current_exe().expect("this bench's path");
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        command
            .args(["--serve", name])
            .env("SHARDLET_SHARDS", "1")
            .env("SHARDLET_PIN", "0")
            .stdout(Stdio::piped());
        let mut child = command.spawn().expect("start a server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the server's address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {line:?}"));
        ServerChild { name, child, addr }
    }

    fn proc(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).unwrap_or_default()
    }

    /// Resident memory now, KiB.
    fn rss_kib(&self) -> u64 {
        self.proc("status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU seconds used so far (user + system).
    fn cpu_seconds(&self) -> f64 {
        let stat = self.proc("stat");
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks: f64 = fields
            .get(11..13)
            .map_or(0.0, |f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum());
        ticks / 100.0 // USER_HZ
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child side: serves `name` until killed, after printing its address.
fn serve(name: &str) {
    let addr = match name {
        "shardlet" => serve_shardlet(),
        "hyper-tokio" => serve_hyper_tokio(),
        other => panic!("unknown server {other}"),
    };
    println!("listening on {addr}");
    loop {
        std::thread::park();
    }
}

/// shardlet's `http::Server` on one shard, the trivial handler as a closure.
/// `SHARDLET_*` variables apply (`SHARDLET_SPIN_US=0`, for one), except
/// the shard count and pinning: one unpinned shard, on the CPU the bench
/// pinned the process to.
fn serve_shardlet() -> SocketAddr {
    let config = Config::from_env().expect("SHARDLET_* settings");
    let runtime = Runtime::new(config.with_shards(1).with_pin(false)).expect("runtime");
    let server =
        shttp::Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).expect("bind");
    let handle = runtime
        .start({
            let server = server.clone();
            move || {
                let server = server.clone();
                async move {
                    server
                        .serve(|_request: http::Request<Body>| async {
                            http::Response::builder()
                                .header("content-type", "text/plain")
                                .body(Full::new(Bytes::from_static(HELLO)))
                                .expect("a response")
                        })
                        .await
                }
            }
        })
        .expect("start");
    server.wait_ready(Duration::from_secs(20)).expect("ready");
    std::mem::forget(handle); // serves until the process exits
    server.local_addr()
}

/// hyper 1 on a tokio current-thread runtime, the same handler.
fn serve_hyper_tokio() -> SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    async fn hello(
        _request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
        Ok(hyper::Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(HELLO)))
            .expect("a response"))
    }

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(hello))
                        .await;
                });
            }
        });
    });
    addr
}
