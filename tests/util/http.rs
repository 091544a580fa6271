//! Helpers shared by the HTTP tests (`#[path = "util/http.rs"] mod http_util;`,
//! next to `net_util`): an `http::Server` on its own runtime, and a small
//! blocking HTTP/1.1 client that reads responses byte-exactly.
#![allow(dead_code)] // each test file uses a different part

use std::future::Future;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use shardlet::http;
use shardlet::http::server::{Body, Limits};
use shardlet::{Runtime, RuntimeHandle, ServerConfig};

use crate::net_util::{client, runtime};

/// An HTTP server serving on every shard of its own runtime.
pub struct HttpRunning {
    pub server: http::Server,
    handle: Option<RuntimeHandle<io::Result<()>>>,
}

/// Binds 127.0.0.1:0 and serves `make()` (called once per shard) with `limits`.
pub fn start_http<F, H, Fut, B>(shards: usize, limits: Limits, make: F) -> HttpRunning
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Fn(::http::Request<Body>) -> Fut + 'static,
    Fut: Future<Output = ::http::Response<B>> + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    start_http_with(shards, limits, |config| config, make)
}

/// [`start_http`] with the server configuration adjusted by `configure`.
pub fn start_http_with<F, H, Fut, B>(
    shards: usize,
    limits: Limits,
    configure: impl FnOnce(ServerConfig) -> ServerConfig,
    make: F,
) -> HttpRunning
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Fn(::http::Request<Body>) -> Fut + 'static,
    Fut: Future<Output = ::http::Response<B>> + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    start_http_on(runtime(shards), limits, configure, make)
}

/// [`start_http_with`] on a runtime of `config`.
pub fn start_http_on<F, H, Fut, B>(
    config: shardlet::Config,
    limits: Limits,
    configure: impl FnOnce(ServerConfig) -> ServerConfig,
    make: F,
) -> HttpRunning
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Fn(::http::Request<Body>) -> Fut + 'static,
    Fut: Future<Output = ::http::Response<B>> + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let runtime = Runtime::new(config).expect("runtime");
    let server = http::Server::bind(
        ([127, 0, 0, 1], 0),
        configure(ServerConfig::from(runtime.config())),
    )
    .expect("bind")
    .with_limits(limits);
    let serving = server.clone();
    let handle = runtime
        .start(move || {
            let server = serving.clone();
            let handler = make();
            async move { server.serve(handler).await }
        })
        .expect("start runtime");
    server.wait_ready(Duration::from_secs(20)).expect("server ready");
    HttpRunning {
        server,
        handle: Some(handle),
    }
}

impl HttpRunning {
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops the server and waits for every shard's `serve` to return.
    pub fn stop(mut self, grace: Duration) -> Vec<io::Result<()>> {
        self.server.stop(grace);
        self.handle.take().unwrap().join().expect("every shard returns")
    }
}

impl Drop for HttpRunning {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop(Duration::from_secs(1));
            let _ = handle.join();
        }
    }
}

/// One response as read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// Whether the server said it closes the connection (a `close` token
    /// in `Connection`, which wins over any other token there).
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// A keep-alive connection to `addr`.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        Conn {
            reader: BufReader::new(client(addr)),
        }
    }

    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(raw)
    }

    /// Reads one response (to a request that was not `HEAD`).
    pub fn read(&mut self) -> io::Result<Reply> {
        read_response(&mut self.reader, false)
    }

    /// Sends `raw` and reads one response.
    pub fn roundtrip(&mut self, raw: &[u8]) -> io::Result<Reply> {
        self.send(raw)?;
        self.read()
    }

    /// `GET path` on this connection.
    pub fn get(&mut self, path: &str) -> io::Result<Reply> {
        self.roundtrip(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
    }

    /// Whether the server has sent something (an answer, or its close)
    /// that is not read yet; does not wait.
    pub fn poll_readable(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref();
        stream.set_nonblocking(true).unwrap();
        let ready = !matches!(stream.peek(&mut [0]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        stream.set_nonblocking(false).unwrap();
        ready
    }

    /// Whether the server closed the connection (EOF or reset), reading
    /// nothing else first.
    pub fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
        }
    }
}

/// `n` keep-alive connections that have each been answered once, opened
/// 20 ms apart: oldest first, so the first is the one idle the longest.
pub fn idle_connections(addr: SocketAddr, n: usize) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let mut conn = Conn::open(addr);
            assert_eq!(conn.get("/").unwrap().status, 200);
            std::thread::sleep(Duration::from_millis(20));
            conn
        })
        .collect()
}

/// Sends `raw` on a new connection and reads one response.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Reply {
    Conn::open(addr).roundtrip(raw).expect("a response")
}

/// `GET path` on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Reads one response: status line, fields, and a body framed by
/// `Content-Length`, chunked coding, or the end of the connection.
pub fn read_response(reader: &mut impl BufRead, head_request: bool) -> io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before a response",
        ));
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert!(version.starts_with("HTTP/1."), "bad status line {line:?}");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let field = line.trim_end_matches(['\r', '\n']);
        if field.is_empty() {
            break;
        }
        let (name, value) = field.split_once(':').expect("a header field");
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status < 200 || status == 204 || status == 304 {
        return Ok(reply);
    }
    if reply.header("transfer-encoding").is_some() {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
            if size == 0 {
                line.clear();
                reader.read_line(&mut line)?;
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            reply.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = reply.header("content-length") {
        let mut body = vec![0; length.parse().expect("a length")];
        reader.read_exact(&mut body)?;
        reply.body = body;
    } else {
        reader.read_to_end(&mut reply.body)?;
    }
    Ok(reply)
}
