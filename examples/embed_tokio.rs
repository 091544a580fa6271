//! Run with: cargo run --example embed_tokio -- --addr 127.0.0.1:7000 --admin 127.0.0.1:7001
//!
//! shardlet as the data plane of a tokio service. The service keeps its
//! tokio `main` and its admin endpoint (hyper, on tokio); shardlet runs the
//! data plane on its own pinned shards, started with `Runtime::start`:
//!
//! - **Data plane** (shards): a line-upper-casing echo server on every shard
//!   (`net::Server`): `printf 'hello\n' | nc 127.0.0.1 7000` answers `HELLO`.
//! - **Admin** (tokio): `GET /stats` shows `RuntimeHandle::stats()` and the
//!   server's counters, `GET /metrics` the same in the Prometheus format,
//!   `GET /work?shard=1&n=1000` sends work *into* a shard from a tokio task
//!   (`Mesh::submit_to`, a `Send` future) and answers with its result
//!   (`n` at most `MAX_WORK`, 10 000 000; more, or not a number, is a 400 naming the limit).
//! - **Lifecycle**: `Server::ready(&handle).await` before announcing the
//!   service (a shard that fails to start is an error at once, with its
//!   reason); on SIGTERM or Ctrl-C: stop accepting, stop the shards, and
//!   `handle.finished().await`, all without blocking a tokio thread.
//!
//! Shards, CPUs and the rest come from `SHARDLET_*` (see the README);
//! `SHARDLET_RESERVE_CPUS=1` leaves the first CPU to tokio's threads.

#[path = "common/logging.rs"]
mod logging;
#[path = "common/stop_signals.rs"]
mod stop_signals;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures_lite::{AsyncBufReadExt, AsyncWriteExt};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use shardlet::metrics::{Exporter, Metrics};
use shardlet::net::TcpStream;
use shardlet::{shard, Mesh, Runtime, Server, ServerConfig};

/// How long connections get to finish after SIGTERM.
const GRACE: Duration = Duration::from_secs(3);

/// The largest `n` that `/work?n=` accepts: a client must not be able to
/// keep a shard busy for as long as it likes (about 10 ms of a shard's time,
/// unoptimised, and the sum of `0..n` stays far below `u64::MAX`).
const MAX_WORK: u64 = 10_000_000;

/// A tokio service with shardlet as its data plane.
#[derive(Parser, Debug)]
struct Args {
    /// The data plane's address (served on every shard).
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
    /// The admin endpoint's address (served by tokio).
    #[arg(long, default_value = "127.0.0.1:7001")]
    admin: SocketAddr,
}

/// The data plane's handler: each line back in upper case.
async fn upper(stream: TcpStream) -> io::Result<()> {
    let mut reader = futures_lite::io::BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        reader.get_mut().write_all(line.to_uppercase().as_bytes()).await?;
    }
}

/// What the admin endpoint reaches: all `Clone + Send + Sync`.
#[derive(Clone)]
struct Admin {
    metrics: Metrics,
    mesh: Mesh,
    server: Server,
    exporter: Exporter,
}

impl Admin {
    async fn handle(
        self,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (status, body) = match request.uri().path() {
            "/stats" => (
                200,
                format!(
                    "{}\nserver:\n{:#?}\n",
                    self.metrics.stats(),
                    self.server.stats().shards
                ),
            ),
            "/metrics" => (200, self.exporter.encode()),
            "/work" => self.work(request.uri().query().unwrap_or("")).await,
            _ => (404, "try /stats, /metrics or /work?shard=0&n=1000\n".to_string()),
        };
        Ok(Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response"))
    }

    /// Sums `0..n` (`n <= MAX_WORK`) on shard `shard`: work sent into the data plane from a
    /// tokio task. `Mesh::submit_to` is a `Send` future; the closure is
    /// `Send`, the future it makes on the shard need not be.
    async fn work(&self, query: &str) -> (u16, String) {
        let arg = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        let (Some(target), Some(n)) = (arg("shard"), arg("n")) else {
            return (400, "expected /work?shard=N&n=COUNT\n".into());
        };
        let Ok(target) = target.parse::<usize>() else {
            return (400, format!("shard must be a shard number, got {target:?}\n"));
        };
        // Bounded: the work is done on a data-plane shard, on a client's say.
        let Some(n) = n.parse::<u64>().ok().filter(|&n| n <= MAX_WORK) else {
            return (
                400,
                format!("n must be a whole number from 0 to {MAX_WORK}, got {n:?}\n"),
            );
        };
        let answer = self
            .mesh
            .submit_to(target, move || async move { (shard::id(), (0..n).sum::<u64>()) })
            .await;
        match answer {
            Ok((on, sum)) => (200, format!("shard {on}: {sum}\n")),
            Err(e) => (503, format!("{e}\n")),
        }
    }
}

/// Serves the admin endpoint until `stop` resolves.
async fn serve_admin(
    listener: tokio::net::TcpListener,
    admin: Admin,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| admin.clone().handle(request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminated() -> io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    logging::init();
    // tokio's signal handling sees only signals the process does not block.
    if let Err(e) = stop_signals::unblock() {
        eprintln!("embed_tokio: {e}");
    }
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed_tokio: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // 1. The data plane: shards from SHARDLET_*, the server bound before they start.
    let runtime = Runtime::from_env()?;
    let shards = runtime.shards();
    let host_cpus = runtime.plan().host_cpus().to_vec();
    let server = Server::bind(args.addr, ServerConfig::from(runtime.config()))?;
    let mut handle = runtime.start({
        let server = server.clone();
        move || {
            let server = server.clone();
            async move { server.serve(upper).await }
        }
    })?;
    // Ready, or the real reason a shard is not: awaited on tokio, no
    // blocking thread needed.
    if let Err(e) = server.ready(&handle).await {
        server.stop(Duration::ZERO);
        handle.stop(Duration::ZERO);
        let _ = handle.finished().await;
        return Err(e.into());
    }

    // 2. The admin endpoint, on tokio.
    let admin = Admin {
        metrics: handle.metrics(),
        mesh: handle.mesh(),
        server: server.clone(),
        exporter: Exporter::new()
            .with_runtime(handle.metrics())
            .with_server("upper", &server),
    };
    let listener = tokio::net::TcpListener::bind(args.admin).await?;
    println!(
        "data plane on {} ({shards} shards; host CPUs {host_cpus:?})",
        server.local_addr()
    );
    println!("admin on http://{}", listener.local_addr()?);
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(serve_admin(listener, admin, async {
        let _ = admin_stopped.await;
    }));

    // 3. SIGTERM: stop the data plane, then await its end (a Send future).
    tokio::select! {
        signal = terminated() => signal?,
        // A shard that dies on its own ends the service too.
        result = handle.finished() => {
            let _ = stop_admin.send(());
            result?;
            return Err("the data plane ended by itself".into());
        }
    }
    eprintln!("embed_tokio: stopping");
    server.stop(GRACE);
    handle.stop(GRACE);
    let results = handle.finished().await?;
    let _ = stop_admin.send(());
    let _ = admin_task.await;
    for (shard, served) in results.into_iter().enumerate() {
        served.map_err(|e| format!("shard {shard}: {e}"))?;
    }
    println!("stopped: {} connections served", server.stats().accepted());
    Ok(())
}
