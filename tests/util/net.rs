//! Helpers shared by the networking tests (`#[path = "util/net.rs"] mod net_util;`):
//! a server running on its own runtime, an echo handler, and blocking loopback clients.
#![allow(dead_code)] // each test file uses a different part

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use shardlet::net::{self, ServerStats};
use shardlet::{AcceptMode, Config, Connection, Runtime, RuntimeError, RuntimeHandle, Server, ServerConfig};

/// How long any single client read or write may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Tests that open thousands of sockets take this lock, so that they do not
/// run at the same time (the fd limit is shared by the whole test binary).
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A runtime config for tests: unpinned, so two shards work on one CPU.
pub fn runtime(shards: usize) -> Config {
    Config::default().with_shards(shards).with_pin(false)
}

/// The echo handler: reads up to 4 KiB, writes it all back, until EOF.
pub async fn echo(mut stream: net::TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// A server serving on every shard of its own runtime.
pub struct Running {
    pub server: Server,
    handle: Option<RuntimeHandle<io::Result<()>>>,
}

/// Binds a server on 127.0.0.1 and serves it with `make()` on every shard.
pub fn start<F, H, Fut>(shards: usize, config: ServerConfig, make: F) -> Running
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Fn(net::TcpStream) -> Fut + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    start_on(([127, 0, 0, 1], 0).into(), shards, config, make).expect("bind 127.0.0.1")
}

/// [`start`] on any address.
pub fn start_on<F, H, Fut>(
    addr: SocketAddr,
    shards: usize,
    config: ServerConfig,
    make: F,
) -> io::Result<Running>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Fn(net::TcpStream) -> Fut + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    start_with_on(addr, shards, config, move || {
        let handler = make();
        move |stream, _conn| handler(stream)
    })
}

/// [`start`] with a handler that also gets the [`Connection`] handle
/// (`Server::serve_with`).
pub fn start_with<F, H, Fut>(shards: usize, config: ServerConfig, make: F) -> Running
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Fn(net::TcpStream, Connection) -> Fut + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    start_with_on(([127, 0, 0, 1], 0).into(), shards, config, make).expect("bind 127.0.0.1")
}

/// [`start_with`] on any address.
pub fn start_with_on<F, H, Fut>(
    addr: SocketAddr,
    shards: usize,
    config: ServerConfig,
    make: F,
) -> io::Result<Running>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Fn(net::TcpStream, Connection) -> Fut + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    let runtime = Runtime::new(runtime(shards)).expect("runtime");
    let server = Server::bind(addr, config)?;
    let serving = server.clone();
    let handle = runtime
        .start(move || {
            let server = serving.clone();
            let handler = make();
            async move { server.serve_with(handler).await }
        })
        .expect("start runtime");
    server.wait_ready(Duration::from_secs(20)).expect("server ready");
    Ok(Running {
        server,
        handle: Some(handle),
    })
}

/// [`start`] with the echo handler.
pub fn start_echo(shards: usize, config: ServerConfig) -> Running {
    start(shards, config, || echo)
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn stats(&self) -> ServerStats {
        self.server.stats()
    }

    /// Stops the server (not the runtime) and waits for every shard's
    /// `serve` to return.
    pub fn stop(mut self, grace: Duration) -> Vec<io::Result<()>> {
        self.server.stop(grace);
        let handle = self.handle.take().unwrap();
        handle.join().expect("every shard returns")
    }

    /// Stops the runtime and waits for every shard.
    pub fn stop_runtime(mut self, grace: Duration) -> Result<Vec<io::Result<()>>, RuntimeError> {
        let handle = self.handle.take().unwrap();
        handle.stop(grace);
        handle.join()
    }

    /// Sockets registered with each shard's readiness driver, in shard order.
    pub fn registrations(&self) -> Vec<usize> {
        let mesh = self.handle.as_ref().expect("running").mesh();
        futures_lite::future::block_on(mesh.broadcast(|| async { net::ready_stats().registrations }))
            .into_iter()
            .map(|r| r.expect("every shard answers"))
            .collect()
    }

    /// `epoll_wait` calls of each shard's readiness driver so far, in shard order.
    pub fn driver_rounds(&self) -> Vec<u64> {
        let mesh = self.handle.as_ref().expect("running").mesh();
        futures_lite::future::block_on(mesh.broadcast(|| async {
            let s = net::ready_stats();
            eprintln!(
                "DEBUG rounds {} events {} parks {} regs {}",
                s.rounds, s.events, s.parks, s.registrations
            );
            s.rounds
        }))
        .into_iter()
        .map(|r| r.expect("every shard answers"))
        .collect()
    }

    /// Waits until `check(stats)` holds, or panics after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&ServerStats) -> bool) {
        wait_for(&self.server, what, timeout, check)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop(Duration::from_secs(1));
            let _ = handle.join();
        }
    }
}

/// Waits until `check(server.stats())` holds, or panics after `timeout`.
pub fn wait_for(server: &Server, what: &str, timeout: Duration, check: impl Fn(&ServerStats) -> bool) {
    let until = Instant::now() + timeout;
    loop {
        let stats = server.stats();
        if check(&stats) {
            return;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; stats: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A blocking client with read/write timeouts, retrying refused connects
/// briefly.
pub fn client(addr: SocketAddr) -> TcpStream {
    let until = Instant::now() + IO_TIMEOUT;
    let stream = loop {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(s) => break s,
            Err(e) if Instant::now() < until => {
                eprintln!("connect {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `msg` and reads the same bytes back.
pub fn roundtrip(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    stream.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back)?;
    assert_eq!(back, msg, "echo differs");
    Ok(())
}

/// Whether nothing arrives on `stream` within `wait` (the server has not
/// served it yet).
pub fn silent_for(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    let silent = match stream.read(&mut byte) {
        Err(e) => matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        Ok(_) => false,
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    silent
}

/// Whether the server closed `stream`: a read gives EOF or a reset.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
        ),
    }
}

/// `clients` connections to `addr`, all open at once, spread over
/// `threads` threads; each does `rounds` round trips of a message that
/// names it, then closes. Returns once all of them are done.
pub fn many_clients(addr: SocketAddr, clients: usize, threads: usize, rounds: usize) {
    let started = Instant::now();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mine: Vec<usize> = (t..clients).step_by(threads).collect();
                let mut streams: Vec<_> = mine.iter().map(|_| client(addr)).collect();
                // Every connection is open before any round starts.
                barrier.wait();
                for round in 0..rounds {
                    for (stream, id) in streams.iter_mut().zip(&mine) {
                        let msg = format!("client {id:05} round {round:03} {}", "x".repeat(id % 97));
                        roundtrip(stream, msg.as_bytes()).unwrap_or_else(|e| panic!("client {id}: {e}"));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client thread");
    }
    eprintln!("{clients} clients x {rounds} rounds in {:?}", started.elapsed());
}

/// A server config for `mode` with the accept mode from a runtime config,
/// as applications build it.
pub fn server_config(mode: AcceptMode) -> ServerConfig {
    ServerConfig::from(&Config::default().with_accept(mode))
}
