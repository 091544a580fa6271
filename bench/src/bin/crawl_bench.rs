//! Run with: cargo run --release -p shardlet-bench --bin crawl_bench
//!
//! The crawl benchmark: the crawler (`shardlet_apps::crawler`, shardlet's
//! `http::Client` through `GreenPool::imap`) fetches N small pages from a
//! local server, and in the same run a baseline — `reqwest` on a tokio
//! current-thread runtime, the same concurrency, results in input order
//! (`buffered(N)`) — fetches the same pages. Both keep connections alive.
//!
//! ```text
//! cargo run --release -p shardlet-bench --bin crawl_bench                      # 10,000 pages, pool 200, 3 rounds
//! cargo run --release -p shardlet-bench --bin crawl_bench -- --urls 20000 --pool 50 --size 4096 --json crawl.json
//! cargo run --release -p shardlet-bench --bin crawl_bench -- --serve 127.0.0.1:8080   # only the server, for the crawler binary
//! ```
//!
//! The server (hyper-free, a few lines of tokio) runs on its own thread and
//! CPU; each client runs on one thread, pinned to another CPU when there is
//! one, so the two clients get the same core. Rounds alternate the clients
//! and the table gives the best round of each (the least disturbed) and
//! their ratio.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use shardlet::{Config, Runtime};
use shardlet_apps::crawler;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Crawl N pages from a local server with shardlet and with reqwest.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// Pages fetched per round and client.
    #[arg(long, default_value_t = 10_000)]
    urls: usize,
    /// Fetches at once (the crawler's --pool, reqwest's buffered(N)).
    #[arg(long, default_value_t = 200)]
    pool: usize,
    /// Body size of each page, in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Rounds per client (alternating); the best is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also write the figures of every round to this JSON file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Only run the page server on this address, until killed (to point the
    /// crawler binary at: `crawler urls.txt`).
    #[arg(long)]
    serve: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Round {
    client: &'static str,
    urls: usize,
    ok: u64,
    failed: u64,
    bytes: u64,
    secs: f64,
    urls_per_sec: f64,
}

fn main() {
    let args = Args::parse();
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    // Server on the first CPU, clients on the second (shared when there is one).
    let server_cpu = cpus.first().copied();
    let client_cpu = cpus.get(1).or(cpus.first()).copied();
    if let Some(addr) = args.serve {
        let addr = start_server(addr, args.size, server_cpu);
        println!("serving {} B pages on http://{addr}/", args.size);
        loop {
            std::thread::park();
        }
    }
    let addr = start_server(([127, 0, 0, 1], 0).into(), args.size, server_cpu);
    let urls: Vec<String> = (0..args.urls)
        .map(|i| format!("http://{addr}/page/{i}"))
        .collect();

    // Warm-up: connections, page cache, CPU frequency.
    let warm = urls[..urls.len().min(1000)].to_vec();
    shardlet_round(&args, &warm, client_cpu);
    reqwest_round(&args, &warm, client_cpu);

    let mut rounds = Vec::new();
    for _ in 0..args.rounds.max(1) {
        rounds.push(shardlet_round(&args, &urls, client_cpu));
        rounds.push(reqwest_round(&args, &urls, client_cpu));
    }

    println!(
        "crawl bench: {} pages of {} B from {addr}, pool {}, best of {} rounds",
        args.urls, args.size, args.pool, args.rounds
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>12} {:>10} {:>10}",
        "client", "urls", "ok", "failed", "bytes", "secs", "URLs/s"
    );
    let best = |name: &str| {
        rounds
            .iter()
            .filter(|r| r.client == name)
            .max_by(|a, b| a.urls_per_sec.total_cmp(&b.urls_per_sec))
            .copied()
            .expect("at least one round")
    };
    let (ours, theirs) = (best("shardlet crawler"), best("reqwest (tokio)"));
    for r in [ours, theirs] {
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>12} {:>10.3} {:>10.0}",
            r.client, r.urls, r.ok, r.failed, r.bytes, r.secs, r.urls_per_sec
        );
    }
    println!(
        "shardlet / reqwest: x{:.2} URLs/s",
        ours.urls_per_sec / theirs.urls_per_sec
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "args": format!("{args:?}"), "rounds": rounds });
        std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).expect("write the JSON file");
    }
}

/// One round of the crawler (list mode) on one shardlet shard.
fn shardlet_round(args: &Args, urls: &[String], cpu: Option<usize>) -> Round {
    let config = Config::default()
        .with_shards(1)
        .with_pin(cpu.is_some())
        .with_cpus(cpu);
    let crawl_args = crawler::Args {
        input: None,
        pool: args.pool as u64,
        follow: false,
        depth: 0,
        timeout: 30.0,
        read_timeout: 10.0,
        max_body: 1 << 20,
        progress: crawler::Progress::Never,
    };
    let urls = urls.to_vec();
    let summary = Runtime::new(config)
        .expect("a one-shard runtime")
        .run(move || {
            let (args, urls) = (crawl_args.clone(), urls.clone());
            async move {
                let (summary, _) = crawler::crawl(&args, urls.into_iter(), std::io::sink())
                    .await
                    .expect("writing to a sink");
                summary
            }
        })
        .expect("the crawl runs")
        .remove(0);
    Round {
        client: "shardlet crawler",
        urls: urls_len(&summary),
        ok: summary.ok,
        failed: summary.failed,
        bytes: summary.bytes,
        secs: summary.elapsed.as_secs_f64(),
        urls_per_sec: summary.rate(),
    }
}

fn urls_len(summary: &crawler::Summary) -> usize {
    (summary.ok + summary.failed) as usize
}

/// One round of reqwest on a current-thread tokio runtime, in input order.
fn reqwest_round(args: &Args, urls: &[String], cpu: Option<usize>) -> Round {
    let (urls, pool) = (urls.to_vec(), args.pool);
    on_tokio_thread(cpu, async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let start = Instant::now();
        let (mut ok, mut failed, mut bytes) = (0u64, 0u64, 0u64);
        let mut results = futures_util::stream::iter(urls.iter().cloned())
            .map(|url| {
                let client = client.clone();
                async move {
                    let response = client.get(&url).send().await?;
                    let status = response.status();
                    let body = response.bytes().await?;
                    Ok::<_, reqwest::Error>((status, body.len()))
                }
            })
            .buffered(pool);
        while let Some(result) = results.next().await {
            match result {
                Ok((_, len)) => {
                    ok += 1;
                    bytes += len as u64;
                }
                Err(_) => failed += 1,
            }
        }
        let secs = start.elapsed().as_secs_f64();
        Round {
            client: "reqwest (tokio)",
            urls: urls.len(),
            ok,
            failed,
            bytes,
            secs,
            urls_per_sec: urls.len() as f64 / secs,
        }
    })
    .join()
    .expect("the reqwest round")
}

fn pin(cpu: Option<usize>) {
    if let Some(id) = cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

/// Runs `fut` on a new thread (pinned to `cpu`) with a tokio current-thread runtime.
fn on_tokio_thread<T: Send + 'static>(
    cpu: Option<usize>,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        pin(cpu);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    })
}

/// A minimal keep-alive HTTP/1.1 server on a tokio current-thread runtime:
/// every request (whatever its path) gets a `size`-byte page.
fn start_server(addr: SocketAddr, size: usize, cpu: Option<usize>) -> SocketAddr {
    // A deep backlog: 200 clients connecting at once must not see SYNs
    // dropped (a dropped SYN costs a 1 s retransmit, std's backlog is 128).
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&addr.into()).expect("bind the server address");
    socket.listen(4096).unwrap();
    let listener: std::net::TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {size}\r\n\r\n").into_bytes();
    response.extend(std::iter::repeat_n(b'x', size));
    on_tokio_thread(cpu, async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let response: &'static [u8] = Box::leak(response.into_boxed_slice());
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut filled = 0;
                loop {
                    let Ok(n) = stream.read(&mut buf[filled..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    filled += n;
                    // Answer every complete request head in the buffer (requests have no body).
                    let mut start = 0;
                    while let Some(end) = find(&buf[start..filled], b"\r\n\r\n") {
                        start += end + 4;
                        if stream.write_all(response).await.is_err() {
                            return;
                        }
                    }
                    buf.copy_within(start..filled, 0);
                    filled -= start;
                    if filled == buf.len() {
                        return; // a head larger than the buffer: not from our clients
                    }
                }
            });
        }
    });
    addr
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
