//! The HTTP benchmark: requests per second of a trivial handler on
//! shardlet's `http::Server` against hyper on tokio (same handler, same
//! number of server threads, same load, one run after the other), and the
//! feed scraper's end-to-end latency for a POST of 100 local feeds.
//!
//! ```text
//! cargo bench --bench http                          # 5 s per server, 64 connections, 1 server thread
//! cargo bench --bench http -- --seconds 10 --connections 128 --threads 2
//! ```
//!
//! Load comes from `wrk` when it is installed (Debian package `wrk`), else
//! from the built-in keep-alive load client below (tokio, one thread); the
//! table says which. `cargo test --benches` runs a tiny version (no wrk).
//! Raw figures go to `results/http-bench.json`.

#[path = "../examples/feed_scraper/scraper.rs"]
mod scraper;

use std::convert::Infallible;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use hdrhistogram::Histogram;
use http_body_util::Full;
use shardlet::http as shttp;
use shardlet::http::server::Body;
use shardlet::{Config, GlobalLimit, Runtime, ServerConfig};

/// The handler both servers run.
const HELLO: &[u8] = b"Hello, World!";

struct Options {
    full: bool,
    seconds: f64,
    connections: usize,
    threads: usize,
    posts: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let full = args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<f64>()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
    };
    Options {
        full,
        seconds: value("--seconds").unwrap_or(if full { 5.0 } else { 0.3 }),
        connections: value("--connections").unwrap_or(if full { 64.0 } else { 8.0 }) as usize,
        threads: value("--threads").unwrap_or(1.0) as usize,
        posts: value("--posts").unwrap_or(if full { 50.0 } else { 3.0 }) as usize,
    }
}

/// What one load run measured.
#[derive(Debug, Clone, serde::Serialize)]
struct Load {
    server: &'static str,
    tool: &'static str,
    requests_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn main() {
    let opts = options();
    let wrk = opts.full && Command::new("wrk").arg("--version").output().is_ok();
    let tool = if wrk { "wrk" } else { "built-in client" };
    println!(
        "HTTP bench: {} server thread(s), {} connections, {} s per run, load from {tool}, {} CPUs",
        opts.threads,
        opts.connections,
        opts.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let shardlet_addr = start_shardlet(opts.threads);
    let hyper_addr = start_hyper(opts.threads);
    let measure = |server: &'static str, addr: SocketAddr, seconds: f64| {
        if wrk {
            wrk_load(server, addr, &opts, seconds)
        } else {
            own_load(server, addr, opts.connections, seconds)
        }
    };
    // Warm both up, then alternate, keeping each server's best run.
    let warmup = (opts.seconds / 5.0).min(1.0);
    measure("shardlet", shardlet_addr, warmup);
    measure("hyper", hyper_addr, warmup);
    let rounds = if opts.full { 2 } else { 1 };
    let mut best: Vec<Load> = Vec::new();
    for _ in 0..rounds {
        for (server, addr) in [("shardlet", shardlet_addr), ("hyper", hyper_addr)] {
            let run = measure(server, addr, opts.seconds);
            match best.iter_mut().find(|b| b.server == server) {
                Some(b) if b.requests_per_sec >= run.requests_per_sec => {}
                Some(b) => *b = run,
                None => best.push(run),
            }
        }
    }
    println!();
    println!(
        "{:<26} {:>12} {:>10} {:>10}",
        "server (trivial handler)", "requests/s", "p50 µs", "p99 µs"
    );
    for b in &best {
        println!(
            "{:<26} {:>12.0} {:>10.1} {:>10.1}",
            b.server, b.requests_per_sec, b.p50_us, b.p99_us
        );
    }
    let ratio = best[0].requests_per_sec / best[1].requests_per_sec;
    println!("shardlet / hyper: {ratio:.2}x requests/s");

    let scraper = scraper_latency(&opts);
    println!();
    println!(
        "feed scraper, POST of 100 local feeds, {} posts: min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        opts.posts, scraper.min_ms, scraper.p50_ms, scraper.p99_ms, scraper.max_ms
    );

    let report = serde_json::json!({
        "threads": opts.threads,
        "connections": opts.connections,
        "seconds": opts.seconds,
        "tool": tool,
        "runs": best,
        "ratio": ratio,
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

/// shardlet's `http::Server` on `threads` unpinned shards, for the life of
/// the process.
fn start_shardlet(threads: usize) -> SocketAddr {
    let runtime = Runtime::new(Config::default().with_shards(threads).with_pin(false)).expect("runtime");
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

/// hyper 1 on tokio with `threads` worker threads (current-thread for 1).
fn start_hyper(threads: usize) -> SocketAddr {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    async fn hello(
        _request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<&'static [u8]>>, Infallible> {
        Ok(hyper::Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(HELLO))
            .expect("a response"))
    }

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let runtime = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
        }
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

/// Runs `wrk` against `addr` and reads its summary.
fn wrk_load(server: &'static str, addr: SocketAddr, opts: &Options, seconds: f64) -> Load {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{}", opts.connections),
            &format!("-d{}s", seconds.ceil().max(1.0) as u64),
            "--latency",
            &format!("http://{addr}/"),
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output:\n{text}"))
            .to_string()
    };
    Load {
        server,
        tool: "wrk",
        requests_per_sec: field("Requests/sec:").parse().expect("a rate"),
        p50_us: micros(&field("50%")),
        p99_us: micros(&field("99%")),
    }
}

/// wrk's `123.45us` / `1.23ms` / `1.00s` in microseconds.
fn micros(value: &str) -> f64 {
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
fn own_load(server: &'static str, addr: SocketAddr, connections: usize, seconds: f64) -> Load {
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
        server,
        tool: "built-in client",
        requests_per_sec: histograms.len() as f64 / elapsed,
        p50_us: histograms.value_at_quantile(0.5) as f64,
        p99_us: histograms.value_at_quantile(0.99) as f64,
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

/// Latency of the feed scraper, end to end.
#[derive(Debug, serde::Serialize)]
struct ScraperLatency {
    feeds: usize,
    posts: usize,
    min_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// A scraper and a feed server on the same `threads` shards; `posts`
/// sequential POSTs of 100 feed URLs, each timed from the first byte sent
/// to the last byte of the answer.
fn scraper_latency(opts: &Options) -> ScraperLatency {
    const FEEDS: usize = 100;
    let runtime = Runtime::new(Config::default().with_shards(opts.threads).with_pin(false)).expect("runtime");
    let config = ServerConfig::from(runtime.config());
    let feeds = shttp::Server::bind(([127, 0, 0, 1], 0), config.clone()).expect("bind");
    let front = shttp::Server::bind(([127, 0, 0, 1], 0), config).expect("bind");
    let limit = GlobalLimit::new(1000);
    let handle = runtime
        .start({
            let (feeds, front) = (feeds.clone(), front.clone());
            move || {
                let (feeds, front) = (feeds.clone(), front.clone());
                let app = scraper::Scraper::new(limit.clone(), scraper::Settings::default());
                async move {
                    let serving_feeds = feeds.serve(|request: http::Request<Body>| async move {
                        let n = request.uri().path().trim_start_matches('/').to_string();
                        http::Response::new(format!(
                            "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Feed {n}</title>\
                             <link>http://example.com/</link><description>d</description>\
                             <item><title>i</title></item></channel></rss>"
                        ))
                    });
                    let serving_front = front.serve(move |request| {
                        let app = app.clone();
                        async move { app.handle(request).await }
                    });
                    let (a, b) = future::zip(serving_feeds, serving_front).await;
                    a.and(b)
                }
            }
        })
        .expect("start");
    feeds.wait_ready(Duration::from_secs(20)).expect("ready");
    front.wait_ready(Duration::from_secs(20)).expect("ready");

    let body: String = (0..FEEDS)
        .map(|i| format!("http://{}/{i}\n", feeds.local_addr()))
        .collect();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let stream = TcpStream::connect(front.local_addr()).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::new(stream);
    let mut times = Vec::with_capacity(opts.posts);
    for post in 0..opts.posts + 1 {
        let sent = Instant::now();
        reader.get_mut().write_all(request.as_bytes()).expect("send");
        let answer = read_sized(&mut reader).expect("an answer");
        let took = sent.elapsed();
        let lines = answer.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        assert_eq!(lines, FEEDS, "{}", String::from_utf8_lossy(&answer));
        assert!(
            answer.starts_with(b"Feed 0\n"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        if post > 0 {
            times.push(took.as_secs_f64() * 1e3); // the first one warms up
        }
    }
    front.stop(Duration::from_secs(1));
    feeds.stop(Duration::from_secs(1));
    let _ = handle.join();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    ScraperLatency {
        feeds: FEEDS,
        posts: opts.posts,
        min_ms: times[0],
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: times[times.len() - 1],
    }
}

/// Reads one response with a `Content-Length` body and returns the body.
fn read_sized(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut line = String::new();
    let mut length = 0;
    reader.read_line(&mut line)?;
    assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some((name, value)) = field.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}
