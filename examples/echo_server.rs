//! Run with: cargo run --release --example echo_server
//!
//! Eventlet's echo server (the server pattern), done properly: it reads
//! whatever a client sent instead of one byte, writes everything back,
//! shrugs off clients that reset, and serves on every shard. A client
//! waiting to send holds no buffer: reads go into the shard's buffer
//! (`TcpStream::read_with`) and are written back at once
//! (`TcpStream::write_or_keep`); only bytes the client is slow to take are
//! kept, in a buffer of that connection's own until they are sent.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:6000
//! SHARDLET_SHARDS=1 SHARDLET_ACCEPT=handoff cargo run --release --example echo_server
//! cargo run --release --example echo_server -- --max-conns 500 --when-full close
//! cargo run --release --example echo_server -- --glommio-streams   # the same on glommio's streams
//! cargo run --release --example echo_server -- --acks-with-answers # each echo carries the ACK
//! cargo run --release --example echo_server -- --metrics-addr 127.0.0.1:9100   # Prometheus at /metrics
//! ```
//!
//! It holds as many clients per shard as the descriptor limit allows: it
//! raises its soft `RLIMIT_NOFILE` to the hard one, and the server derives
//! its per-shard cap from that (`--max-conns` or `SHARDLET_MAX_CONNECTIONS`
//! set it instead); the `listening on` line says what the cap is. Idle
//! clients cannot lock others out: a connection waiting for bytes to echo is
//! idle (`Connection::set_idle`; a new one after a second of silence:
//! `Connection::set_quiet`), and a full shard closes the one idle the longest to admit a
//! new client; a client that takes none of its echo for `--send-timeout`
//! seconds (60) is closed. Shards, CPUs and the accept mode
//! come from the `SHARDLET_*` variables (see the README);
//! `RUST_LOG=shardlet=debug` shows what the server does. Ctrl-C (or SIGTERM)
//! stops it: it stops accepting, closes idle clients at once, gives an echo
//! under way a few seconds, and prints each shard's counters. A setting it
//! cannot run with (a bad `SHARDLET_*` value, too little locked memory, a
//! shard that fails to start) ends it at once with the reason and a non-zero
//! status.

#[path = "common/logging.rs"]
mod logging;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[path = "common/metrics_http.rs"]
mod metrics_http;
#[path = "common/stop_signals.rs"]
mod stop_signals;

use clap::Parser;
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use shardlet::net::{Connection, TcpStream};
use shardlet::{Runtime, Server, ServerConfig, WhenFull};

/// How long live clients get to leave after Ctrl-C.
const GRACE: Duration = Duration::from_secs(3);

/// An echo server on every shard.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on (IPv4 or IPv6).
    #[arg(long, default_value = "127.0.0.1:6000")]
    addr: SocketAddr,
    /// Most clients held at once per shard (default: derived from the
    /// descriptor limit, or SHARDLET_MAX_CONNECTIONS).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_conns: Option<u64>,
    /// What a full shard does with new clients: `wait` (in the listen
    /// backlog) or `close` (accept and close at once).
    #[arg(long, default_value_t = WhenFull::Wait)]
    when_full: WhenFull,
    /// Hand each connection to glommio's own stream type
    /// (`TcpStream::into_glommio`, io_uring polls) instead of serving it on
    /// shardlet's epoll readiness driver: the comparison behind the
    /// `shardlet-glommio` label of `scripts/echo-bench.sh`.
    #[arg(long)]
    glommio_streams: bool,
    /// Let each echo carry the ACK of what it answers
    /// (`TcpStream::set_acks_with_answers`: one `setsockopt` per write)
    /// instead of leaving ACKs to the kernel: the comparison behind the
    /// `shardlet-acks` label of `scripts/echo-bench.sh`.
    #[arg(long)]
    acks_with_answers: bool,
    /// Serve Prometheus metrics (every shard's runtime and server counters)
    /// at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddr>,
    /// Seconds a client may take nothing of its echo before it is closed
    /// (nginx's `send_timeout`).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    send_timeout: u64,
}

/// The handler: one green thread per client, holding no buffer while it
/// waits. Each read's bytes are written back at once; what the socket does
/// not take is kept and sent before the next read, so a client that does
/// not read holds at most one read's worth of the server's memory. It echoes
/// until the client closes, or until the server asks this connection to
/// close, giving the client at most `send_timeout` to take each echo.
///
/// The connection is idle while it waits for bytes to echo (a new client's
/// only once it has been silent for [`QUIET_PERIOD`](shardlet::net::QUIET_PERIOD): `Connection::set_quiet`,
/// so that the newcomers of an overloaded shard do not evict each other
/// ahead of their first message): when the shard
/// holds its connection cap and a new client waits, the server closes the
/// connection idle the longest to admit it, as nginx closes idle keep-alive
/// connections, and a stop closes idle ones at once. It is busy while its
/// client takes an echo; a client that takes nothing for `send_timeout`
/// (nginx's `send_timeout`) is closed, so it cannot hold its place for ever.
async fn echo(mut stream: TcpStream, conn: Connection, send_timeout: Duration) -> io::Result<()> {
    conn.set_quiet();
    loop {
        let echo = stream.read_with(|bytes| {
            conn.set_idle(false);
            stream.write_or_keep(bytes).map(|()| bytes.len())
        });
        let read = future::or(echo, async {
            conn.evicted().await;
            Ok(Ok(0)) // asked to close: as if the client had
        });
        match read.await.and_then(|written| written) {
            Ok(0) => return Ok(()), // the client closed
            Ok(_) => {}
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        // Mostly done at once; a wait gets its timer in a box of its own, so
        // that an idle connection's task does not carry one.
        let mut flush = stream.flush();
        let flushed = match future::poll_once(&mut flush).await {
            Some(flushed) => Ok(flushed),
            None => Box::pin(shardlet::timeout(send_timeout, flush)).await,
        };
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) if gone(&e) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(elapsed) => {
                tracing::debug!(target: "echo_server", peer = ?stream.peer_addr().ok(), "the client took nothing for {:?}: closed", elapsed.0);
                return Ok(());
            }
        }
        conn.set_idle(true);
    }
}

/// [`echo`] with each echo carrying the ACK of what it answers
/// (`--acks-with-answers`).
async fn echo_acks_with_answers(
    stream: TcpStream,
    conn: Connection,
    send_timeout: Duration,
) -> io::Result<()> {
    stream.set_acks_with_answers(true);
    echo(stream, conn, send_timeout).await
}

/// The handler on glommio's stream type.
async fn echo_glommio(stream: TcpStream) -> io::Result<()> {
    echo_owned_buffer(stream.into_glommio()?).await
}

/// The handler with a read buffer per connection (4 KiB), for streams that
/// only offer `AsyncRead`.
async fn echo_owned_buffer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => return Ok(()), // the client closed
            Ok(n) => n,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        match stream.write_all(&buf[..n]).await {
            Ok(()) => {}
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Raises the soft descriptor limit to the hard one: every client holds a
/// descriptor, and the server's default cap follows this limit.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                eprintln!("echo_server: cannot raise the descriptor limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("echo_server: getrlimit: {e}"),
    }
}

/// A client that resets or vanishes is routine for an echo server, not an error.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
    )
}

fn main() -> ExitCode {
    logging::init();
    let args = Args::parse();
    raise_fd_limit();

    // 1. Shards from SHARDLET_*; a bad value is one line and exit code 2.
    let runtime = match Runtime::from_env() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("echo_server: {e}");
            return ExitCode::from(2);
        }
    };
    let shards = runtime.shards();

    // 2. Bind before the shards start: errors show now, and every shard
    //    serves the same port.
    let mut config = ServerConfig::from(runtime.config()).with_when_full(args.when_full);
    if let Some(max) = args.max_conns {
        config = config.with_max_connections(max as usize);
    }
    let mode = config.accept();
    let server = match Server::bind(args.addr, config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("echo_server: {e}");
            return ExitCode::FAILURE;
        }
    };

    // 3. Every shard serves; `serve` returns once the server is stopped.
    let handle = match runtime.start({
        let server = server.clone();
        let (glommio_streams, acks) = (args.glommio_streams, args.acks_with_answers);
        let send_timeout = Duration::from_secs(args.send_timeout);
        move || {
            let server = server.clone();
            async move {
                let result = if glommio_streams {
                    server.serve(echo_glommio).await
                } else if acks {
                    server.serve_with(move |s, c| echo_acks_with_answers(s, c, send_timeout)).await
                } else {
                    server.serve_with(move |s, c| echo(s, c, send_timeout)).await
                };
                tracing::debug!(target: "echo_server", stats = ?shardlet::net::ready_stats(), "readiness driver");
                result
            }
        }
    }) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("echo_server: {e}");
            return ExitCode::FAILURE;
        }
    };

    // 4. Ctrl-C / SIGTERM: stop accepting and drain; a second signal exits at once.
    if let Err(e) = stop_signals::on_stop("echo_server", {
        let server = server.clone();
        move || server.stop(GRACE)
    }) {
        eprintln!("echo_server: no signal handling ({e}); stop it with SIGKILL");
    }

    // Ready, or the real reason a shard is not (it failed to start, panicked).
    if let Err(e) = futures_lite::future::block_on(server.ready(&handle)) {
        eprintln!("echo_server: {e}");
        server.stop(Duration::ZERO);
        let _ = handle.join();
        return ExitCode::FAILURE;
    }
    if let Some(addr) = args.metrics_addr {
        let exporter = shardlet::metrics::Exporter::new()
            .with_runtime(handle.metrics())
            .with_server("echo", &server);
        match metrics_http::serve_metrics(addr, exporter) {
            Ok(bound) => {
                let _ = writeln!(io::stdout(), "metrics on http://{bound}/metrics");
            }
            Err(e) => {
                eprintln!("echo_server: --metrics-addr {addr}: {e}");
                server.stop(Duration::ZERO);
                let _ = handle.join();
                return ExitCode::FAILURE;
            }
        }
    }
    let cap = server.stats().shards.first().map_or(0, |s| s.capacity);
    let _ = writeln!(
        io::stdout(),
        "listening on {} ({shards} shards, accept={mode}, cap {cap} connections per shard, when full: {})",
        server.local_addr(),
        args.when_full
    );
    let _ = io::stdout().flush();

    let results = handle.join();
    for (shard, stats) in server.stats().shards.iter().enumerate() {
        // A closed stdout is no failure of the server's.
        let _ = writeln!(io::stdout(), "shard {shard}: {stats}");
    }
    match results {
        Ok(results) => {
            let mut code = ExitCode::SUCCESS;
            for (shard, result) in results.into_iter().enumerate() {
                if let Err(e) = result {
                    eprintln!("echo_server: shard {shard}: {e}");
                    code = ExitCode::FAILURE;
                }
            }
            code
        }
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The networking tests' helpers (a server on its own runtime, blocking
/// loopback clients), for the tests below.
#[cfg(test)]
#[path = "../tests/util/net.rs"]
mod net_util;

/// The handler's own tests (`cargo test --example echo_server`): the echo
/// handler on one shard against a blocking peer thread.
#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    use std::time::{Duration, Instant};

    use shardlet::ServerConfig;

    use crate::net_util::{client, closed_by_server, roundtrip, start_with, Running};

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// [`super::echo`] served on a one-shard runtime, at most `max_conns`
    /// clients at once.
    fn start(max_conns: usize, send_timeout: Duration) -> Running {
        let config = ServerConfig::default().with_max_connections(max_conns);
        start_with(1, config, move || move |s, c| super::echo(s, c, send_timeout))
    }

    /// Stops `echo` with `grace`; how long until every shard's `serve`
    /// returned. The server and every connection's handler must have ended
    /// cleanly (a handler's error or panic is counted).
    fn stop(echo: Running, grace: Duration) -> Duration {
        let started = Instant::now();
        let server = echo.server.clone();
        for served in echo.stop(grace) {
            served.expect("the server ends cleanly");
        }
        let took = started.elapsed();
        let shards = server.stats().shards;
        let unclean: u64 = shards.iter().map(|s| s.failed + s.panicked).sum();
        assert_eq!(unclean, 0, "every handler ends cleanly: {shards:?}");
        took
    }

    /// Runs `peer` against the echo on this thread; `peer`'s result.
    fn with_echo<T>(peer: impl FnOnce(std::net::TcpStream) -> T) -> T {
        let echo = start(16, Duration::from_secs(60));
        let result = peer(client(echo.addr()));
        stop(echo, Duration::from_secs(30));
        result
    }

    /// Whether `result` (a write's) says the server closed the connection,
    /// rather than that the write timed out.
    fn closed_while_writing(result: std::io::Result<()>) -> bool {
        result.is_err_and(|e| {
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        })
    }

    #[test]
    fn an_idle_client_makes_room_for_a_new_one_when_the_shard_is_full() {
        let echo = start(1, Duration::from_secs(60));
        let mut idle = client(echo.addr());
        roundtrip(&mut idle, b"first").unwrap();
        // Without eviction the newcomer would wait in the backlog for ever;
        // with an echo that does not watch for it, until the server cancels
        // the idle one after its grace.
        let started = Instant::now();
        let mut newcomer = client(echo.addr());
        roundtrip(&mut newcomer, b"newcomer").expect("the new client is served");
        let waited = started.elapsed();
        assert!(
            waited < shardlet::net::EVICTION_GRACE,
            "served after {waited:?}: the idle echo did not close when asked"
        );
        assert!(
            closed_by_server(&mut idle),
            "the idle client was closed to make room"
        );
        assert_eq!(echo.stats().evicted(), 1);
        roundtrip(&mut newcomer, b"still served").unwrap();
    }

    #[test]
    fn a_new_client_keeps_its_place_until_its_first_message() {
        let echo = start(1, Duration::from_secs(60));
        let mut first = client(echo.addr());
        echo.wait_for("the first client's connection", Duration::from_secs(20), |s| {
            s.live() == 1
        });
        // A newcomer waits at the cap: an overloaded shard's clients must
        // not evict each other before their first message.
        let mut newcomer = client(echo.addr());
        std::thread::sleep(shardlet::net::QUIET_PERIOD / 2);
        assert_eq!(echo.stats().evicted(), 0);
        roundtrip(&mut first, b"still here").expect("the new client kept its place");
        // Idle after its echo, the first one now makes room.
        roundtrip(&mut newcomer, b"then me").expect("served once the first one was idle");
    }

    #[test]
    fn a_new_client_silent_for_the_quiet_period_makes_room() {
        let echo = start(1, Duration::from_secs(60));
        let mut silent = client(echo.addr());
        echo.wait_for("the silent client's connection", Duration::from_secs(20), |s| {
            s.live() == 1
        });
        let started = Instant::now();
        let mut newcomer = client(echo.addr());
        roundtrip(&mut newcomer, b"newcomer").expect("the new client is served");
        let waited = started.elapsed();
        assert!(
            waited < shardlet::net::QUIET_PERIOD * 3 / 2 + shardlet::net::EVICTION_GRACE,
            "served after {waited:?}: the silent client was not evicted"
        );
        assert!(
            closed_by_server(&mut silent),
            "the silent client was closed to make room"
        );
        assert_eq!(echo.stats().evicted(), 1);
    }

    #[test]
    fn a_client_that_takes_nothing_is_closed_after_the_send_timeout() {
        let echo = start(1, Duration::from_secs(1));
        let mut deaf = client(echo.addr());
        // Past its first message, so that "busy" below means an echo under
        // way (a new connection is busy until its first second of silence).
        roundtrip(&mut deaf, b"hello").unwrap();
        let mut writer = deaf.try_clone().unwrap();
        // Far more than loopback's buffers hold, never read: the echo waits
        // in `flush`, busy, so it is not evicted; the send timeout ends it.
        let writing = std::thread::spawn(move || writer.write_all(&pattern(64 << 20)));
        // Until loopback's buffers are full the echo still goes idle between
        // reads (and may be evicted then); once they are, it waits in `flush`.
        let busy = |s: &shardlet::net::ServerStats| s.live() == 1 && s.shards.iter().all(|s| s.idle == 0);
        echo.wait_for("the deaf client's echo to be busy", Duration::from_secs(20), busy);
        std::thread::sleep(Duration::from_millis(300));
        echo.wait_for(
            "the deaf client's echo to wait in flush",
            Duration::from_secs(20),
            busy,
        );
        let started = Instant::now();
        let mut next = client(echo.addr());
        roundtrip(&mut next, b"after the deaf one").expect("served once the deaf client is gone");
        // Served once the send timeout closed the deaf one (it was not
        // evicted, see below), not after the 30 s read timeout.
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(20), "served only after {waited:?}");
        assert!(
            closed_while_writing(writing.join().unwrap()),
            "the deaf client's connection was closed"
        );
        assert_eq!(echo.stats().evicted(), 0, "busy connections are never evicted");
    }

    #[test]
    fn a_stop_closes_idle_clients_at_once_and_busy_ones_after_their_echo() {
        let echo = start(16, Duration::from_secs(60));
        let mut idle = client(echo.addr());
        roundtrip(&mut idle, b"then idle").unwrap();
        // A client slow to take its echo: the echo waits in `flush`, busy.
        let slow = client(echo.addr());
        let mut writer = slow.try_clone().unwrap();
        let writing = std::thread::spawn(move || writer.write_all(&pattern(64 << 20)));
        std::thread::sleep(Duration::from_millis(200));
        // A new client that has not spoken yet has nothing under way either.
        let mut silent = client(echo.addr());
        echo.wait_for("the silent client's connection", Duration::from_secs(20), |s| {
            s.live() == 3
        });
        let asked = Instant::now();
        let stopping = std::thread::spawn(move || stop(echo, Duration::from_secs(30)));
        assert!(closed_by_server(&mut idle), "the idle client is closed at once");
        assert!(closed_by_server(&mut silent), "the silent client is closed");
        assert!(
            asked.elapsed() < shardlet::net::QUIET_PERIOD / 2,
            "the silent client was closed after {:?}, not at once",
            asked.elapsed()
        );
        // The busy one gets what the echo had read, unchanged, then is closed
        // (with a reset, as its own bytes are still coming).
        let (mut got, mut chunk) = (Vec::new(), vec![0u8; 64 << 10]);
        loop {
            match (&slow).read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        assert!(got == pattern(got.len()), "the echo differs");
        assert!(
            closed_while_writing(writing.join().unwrap()),
            "the slow client was closed"
        );
        let took = stopping.join().unwrap();
        assert!(
            took < Duration::from_secs(20),
            "the stop took {took:?}: it waited out its grace"
        );
    }

    #[test]
    fn echoes_then_closes_after_the_client_does() {
        let got = with_echo(|mut peer| {
            peer.write_all(b"hello, ").unwrap();
            peer.write_all(b"shard").unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap(); // ends: the server closed too
            got
        });
        assert_eq!(got, b"hello, shard");
    }

    #[test]
    fn a_client_that_reads_nothing_for_a_while_gets_every_byte_in_order() {
        // More than loopback's buffers hold: the echo's writes come back
        // short, it keeps the rest and stops reading until it is sent.
        const TOTAL: usize = 16 << 20;
        let got = with_echo(|peer| {
            let mut writer = peer.try_clone().unwrap();
            let writing = std::thread::spawn(move || {
                writer.write_all(&pattern(TOTAL)).unwrap();
                writer.shutdown(Shutdown::Write).unwrap();
            });
            std::thread::sleep(Duration::from_millis(300));
            let mut got = Vec::with_capacity(TOTAL);
            (&peer).read_to_end(&mut got).unwrap();
            writing.join().unwrap();
            got
        });
        assert_eq!(got.len(), TOTAL);
        assert!(got == pattern(TOTAL), "the echo differs");
    }

    #[test]
    fn a_slow_reader_gets_every_byte_in_order() {
        const TOTAL: usize = 4 << 20;
        let got = with_echo(|peer| {
            let mut writer = peer.try_clone().unwrap();
            let writing = std::thread::spawn(move || {
                writer.write_all(&pattern(TOTAL)).unwrap();
                writer.shutdown(Shutdown::Write).unwrap();
            });
            let (mut got, mut chunk) = (Vec::with_capacity(TOTAL), vec![0u8; 64 << 10]);
            loop {
                std::thread::sleep(Duration::from_millis(1));
                match (&peer).read(&mut chunk).unwrap() {
                    0 => break,
                    n => got.extend_from_slice(&chunk[..n]),
                }
            }
            writing.join().unwrap();
            got
        });
        assert_eq!(got.len(), TOTAL);
        assert!(got == pattern(TOTAL), "the echo differs");
    }

    #[test]
    fn a_client_that_resets_ends_the_handler_cleanly() {
        with_echo(|peer| {
            (&peer).write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            (&peer).read_exact(&mut buf).unwrap();
            socket2::SockRef::from(&peer)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(peer); // a reset: `gone`, not an error
        });
    }
}
