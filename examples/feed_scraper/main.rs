//! Run with: cargo run --release --example feed_scraper
//!
//! Eventlet's dispatch pattern: a server that is also a client. `POST /`
//! with one RSS/Atom feed URL per line; the answer has one line per URL, in
//! the order given: the feed's title, or `error: <url>: <reason>`. With
//! `Accept: application/json` it is a JSON array of `{url, title}` or
//! `{url, error}` instead.
//!
//! ```text
//! cargo run --release --example feed_scraper -- --addr 127.0.0.1:9010 --max-fetches 1000
//! printf 'http://127.0.0.1:8000/rss.xml\n' | cargo run --example feed_client
//! ```
//!
//! Every shard serves (shards and accept mode from `SHARDLET_*`), and all
//! of them share one limit on fetches in flight, `--max-fetches`: the
//! seed's "global (gasp) GreenPool", the bare-minimum DoS floor. Ctrl-C (or
//! SIGTERM) stops it: requests in flight finish (the drain lasts the fetch
//! timeout and a margin), idle connections close.

#[path = "../common/metrics_http.rs"]
mod metrics_http;

#[path = "../common/logging.rs"]
mod logging;
#[path = "../common/stop_signals.rs"]
mod stop_signals;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shardlet::{http, GlobalLimit, Runtime, ServerConfig};
// The scraper's logic (apps/src/feed_scraper.rs), which the tests and the
// HTTP bench run in-process too.
use shardlet_apps::feed_scraper::{self as scraper, Scraper, Settings};

/// How long requests in flight get to finish after Ctrl-C, beyond the
/// fetch timeout: every fetch of a request in flight ends within the fetch
/// timeout (URLs still waiting for a fetch slot at the stop are answered
/// "not fetched: the server is stopping"), and the answer is written
/// within this margin.
const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// The feed scraper: POST feed URLs, get their titles.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9010")]
    addr: SocketAddr,
    /// Most feed fetches in flight at once, across all shards.
    #[arg(long, default_value_t = 1000)]
    max_fetches: usize,
    /// Most feed URLs in one request (more: 413).
    #[arg(long, default_value_t = scraper::DEFAULT_MAX_URLS)]
    max_urls: usize,
    /// Seconds one fetch may take (0.001 to 86400).
    #[arg(long, default_value_t = scraper::DEFAULT_FETCH_TIMEOUT.as_secs_f64(), value_parser = shardlet_apps::seconds)]
    fetch_timeout: f64,
    /// The largest request body in bytes (the URL list).
    #[arg(long, default_value_t = 4 << 20)]
    max_body: u64,
    /// Serve Prometheus metrics (every shard's runtime and server counters)
    /// at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddr>,
}

fn main() -> ExitCode {
    logging::init();
    let args = Args::parse();
    if args.max_fetches == 0 || args.max_urls == 0 {
        eprintln!("feed_scraper: --max-fetches and --max-urls must be positive");
        return ExitCode::from(2);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feed_scraper: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // 1. Shards from SHARDLET_*; the server bound before they start.
    let runtime = Runtime::from_env()?;
    let shards = runtime.shards();
    // The drain covers the fetch timeout: a request in flight at a stop
    // finishes, whatever its fetches wait for (the stop's grace below too).
    let fetch_timeout = Duration::from_secs_f64(args.fetch_timeout);
    let drain = fetch_timeout + DRAIN_MARGIN;
    let config = ServerConfig::from(runtime.config()).with_drain_timeout(drain);
    let server = http::Server::bind(args.addr, config)?
        .with_limits(http::Limits::default().with_max_body(args.max_body));

    // 2. The global limit, made once and cloned into every shard.
    let limit = GlobalLimit::new(args.max_fetches);
    let settings = Settings {
        max_urls: args.max_urls,
        fetch_timeout,
        ..Settings::default()
    };

    // 3. Every shard serves the scraper.
    let handle = runtime.start({
        let server = server.clone();
        move || {
            let server = server.clone();
            // Once stopping, URLs still waiting for a fetch slot are not
            // fetched: a request in flight ends within the fetch timeout.
            let scraper = Scraper::new(limit.clone(), settings.clone()).with_stopping({
                let server = server.clone();
                move || server.is_stopped()
            });
            async move {
                server
                    .serve(move |request| {
                        let scraper = scraper.clone();
                        async move { scraper.handle(request).await }
                    })
                    .await
            }
        }
    })?;

    // 4. Ctrl-C / SIGTERM: stop and drain; a second signal exits at once.
    stop_signals::on_stop("feed_scraper", {
        let server = server.clone();
        move || server.stop(drain + DRAIN_MARGIN)
    })?;

    // Ready, or the real reason a shard is not (it failed to start, panicked).
    if let Err(e) = futures_lite::future::block_on(server.net().ready(&handle)) {
        server.stop(Duration::ZERO);
        let _ = handle.join();
        return Err(e.into());
    }
    if let Some(addr) = args.metrics_addr {
        let exporter = shardlet::metrics::Exporter::new()
            .with_runtime(handle.metrics())
            .with_server("feed_scraper", server.net());
        let bound =
            metrics_http::serve_metrics(addr, exporter).map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
        let _ = writeln!(io::stdout(), "metrics on http://{bound}/metrics");
    }
    let _ = writeln!(
        io::stdout(),
        "feed scraper on http://{} ({shards} shards, at most {} fetches at once)",
        server.local_addr(),
        args.max_fetches
    );
    let _ = io::stdout().flush();
    for (shard, result) in handle.join()?.into_iter().enumerate() {
        result.map_err(|e| format!("shard {shard}: {e}"))?;
    }
    Ok(())
}
