//! The load clients of the HTTP bench: `wrk` (when installed), or a small
//! built-in keep-alive client on tokio.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What one load run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Load {
    pub server: &'static str,
    pub connections: usize,
    pub tool: &'static str,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// CPU the load client used, in % of one CPU (wrk only).
    pub client_cpu: f64,
    /// CPU the server used meanwhile, in % of one CPU.
    pub server_cpu: f64,
    /// The server's resident memory after the run, KiB.
    pub server_rss_kib: u64,
}

/// Runs `wrk` (one thread, pinned to `cpu` when given) against `addr`
/// with `connections` for `seconds`, and reads its summary. Also the CPU
/// wrk used (its rusage, as a reaped child).
pub fn wrk_load(addr: SocketAddr, connections: usize, seconds: f64, cpu: Option<usize>) -> Load {
    let mut command = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), "wrk"]);
            c
        }
        None => Command::new("wrk"),
    };
    command.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{}s", seconds.ceil().max(1.0) as u64),
        "--latency",
        &format!("http://{addr}/"),
    ]);
    let before = children_cpu();
    let started = Instant::now();
    let output = command.output().expect("run wrk");
    let client_cpu = (children_cpu() - before) / started.elapsed().as_secs_f64() * 100.0;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output:\n{text}"))
            .to_string()
    };
    if let Some(errors) = text
        .lines()
        .find(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
    {
        eprintln!("wrk: {}", errors.trim());
    }
    Load {
        server: "",
        connections,
        tool: "wrk",
        requests_per_sec: field("Requests/sec:").parse().expect("a rate"),
        p50_us: micros(&field("50%")),
        p99_us: micros(&field("99%")),
        client_cpu,
        server_cpu: f64::NAN,
        server_rss_kib: 0,
    }
}

/// CPU seconds used by this process's reaped children so far.
fn children_cpu() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

/// wrk's `123.45us` / `1.23ms` / `1.00s` in microseconds.
pub fn micros(value: &str) -> f64 {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let number: f64 = value[..split].parse().unwrap_or(f64::NAN);
    match &value[split..] {
        "us" => number,
        "ms" => number * 1e3,
        "s" => number * 1e6,
        _ => f64::NAN,
    }
}

/// The built-in load client: `connections` keep-alive connections on one
/// tokio thread, each sending `GET /` and reading the sized answer, again
/// and again, for `seconds`.
pub fn own_load(addr: SocketAddr, connections: usize, seconds: f64) -> Load {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let histograms = runtime.block_on(async move {
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                tokio::spawn(async move {
                    let mut hist = Histogram::<u64>::new(3).expect("histogram");
                    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    stream.set_nodelay(true).expect("nodelay");
                    let mut buf = Vec::with_capacity(4096);
                    let mut chunk = [0u8; 4096];
                    while Instant::now() < until {
                        let sent = Instant::now();
                        stream.write_all(REQUEST).await.expect("send");
                        loop {
                            if let Some(len) = whole_response(&buf) {
                                buf.drain(..len);
                                break;
                            }
                            let n = stream.read(&mut chunk).await.expect("receive");
                            assert!(n > 0, "server closed the connection");
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        hist.record(sent.elapsed().as_micros() as u64).expect("record");
                    }
                    hist
                })
            })
            .collect();
        let mut all = Histogram::<u64>::new(3).expect("histogram");
        for task in tasks {
            all.add(task.await.expect("load task")).expect("merge");
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    Load {
        server: "",
        connections,
        tool: "built-in client",
        requests_per_sec: histograms.len() as f64 / elapsed,
        p50_us: histograms.value_at_quantile(0.5) as f64,
        p99_us: histograms.value_at_quantile(0.99) as f64,
        client_cpu: f64::NAN,
        server_cpu: f64::NAN,
        server_rss_kib: 0,
    }
}

/// The length of the first whole response in `buf` (sized bodies only).
fn whole_response(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..head]).ok()?;
    let length = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head + length).then_some(head + length)
}
