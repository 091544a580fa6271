//! `--metrics-addr HOST:PORT` for the examples: plain threads that answer
//! `GET /metrics` with the exporter's Prometheus text (and 404 otherwise),
//! one short request per connection. A host with an HTTP stack of its own
//! would serve `Exporter::encode()` (or register the exporter in its
//! registry) there instead.
//!
//! A slow or idle client cannot keep scrapes out: each connection has a
//! thread of its own (at most [`MAX_CLIENTS`] at once; beyond that a
//! connection is closed at once), a request of at most [`MAX_REQUEST`]
//! bytes, and [`DEADLINE`] to send it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardlet::metrics::{Exporter, CONTENT_TYPE};

/// Connections answered at once.
const MAX_CLIENTS: usize = 16;
/// The most bytes of a request read (request line and header fields).
const MAX_REQUEST: u64 = 16 << 10;
/// How long a client has to send its request, and to take the answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// Binds `addr` now (so a bad address is an error at start) and serves
/// `/metrics` from a background thread; returns the bound address.
pub fn serve_metrics(addr: SocketAddr, exporter: Exporter) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let clients = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    clients.fetch_sub(1, Ordering::AcqRel);
                    continue; // dropped: closed at once
                }
                let (exporter, done) = (exporter.clone(), clients.clone());
                let answered = std::thread::Builder::new()
                    .name("metrics-client".into())
                    .spawn(move || {
                        let _ = answer(stream, &exporter);
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if answered.is_err() {
                    clients.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(bound)
}

/// A stream whose every read waits at most what is left until `deadline`
/// (a client sending a byte now and then cannot hold its thread).
struct Before {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for Before {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request too slow"));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

fn answer(stream: TcpStream, exporter: &Exporter) -> io::Result<()> {
    stream.set_write_timeout(Some(DEADLINE))?;
    let before = Before {
        stream: stream.try_clone()?,
        deadline: Instant::now() + DEADLINE,
    };
    let mut reader = BufReader::new(before.take(MAX_REQUEST));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the header fields, up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, kind, body) = if path == "/metrics" {
        ("200 OK", CONTENT_TYPE, exporter.encode())
    } else {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
