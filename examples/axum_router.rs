//! Run with: cargo run --release --example axum_router
//!
//! An axum `Router` served on every shard: the Rust counterpart of
//! Eventlet's `wsgi.server(sock, app)`. Each shard builds its own Router
//! (its handlers run there, and need not share anything) and serves it in
//! one line, `server.serve_tower(app)`.
//!
//! ```text
//! cargo run --release --example axum_router -- --addr 127.0.0.1:9020
//! curl http://127.0.0.1:9020/hello/you          # hello you, from shard 1
//! curl --http2-prior-knowledge http://127.0.0.1:9020/hello/h2
//! ```
//!
//! Ctrl-C (or SIGTERM) stops it: idle connections close at once, requests
//! in flight finish.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[path = "common/stop_signals.rs"]
mod stop_signals;

use axum::extract::Path;
use axum::routing::get;
use clap::Parser;
use shardlet::{http, shard, Runtime, ServerConfig};

/// An axum Router on every shard.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9020")]
    addr: SocketAddr,
}

/// The application: the same Router on every shard.
fn app() -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { "hello from shardlet\n" }))
        .route(
            "/hello/{name}",
            get(|Path(name): Path<String>| async move { format!("hello {name}, from shard {}\n", shard::id()) }),
        )
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_router: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::from_env()?;
    let server = http::Server::bind(args.addr, ServerConfig::from(runtime.config()))?;
    let handle = runtime.start({
        let server = server.clone();
        move || {
            let server = server.clone();
            async move { server.serve_tower(app()).await }
        }
    })?;
    stop_signals::on_stop("axum_router", {
        let server = server.clone();
        move || server.stop(Duration::from_secs(10))
    })?;
    server.wait_ready(Duration::from_secs(30))?;
    println!(
        "axum Router on http://{} ({} shards)",
        server.local_addr(),
        handle.shards()
    );
    for (shard, result) in handle.join()?.into_iter().enumerate() {
        result.map_err(|e| format!("shard {shard}: {e}"))?;
    }
    Ok(())
}
