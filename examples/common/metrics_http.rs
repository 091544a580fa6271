//! `--metrics-addr HOST:PORT` for the examples: plain threads that answer
//! `GET /metrics` (and `HEAD`; a query is ignored) with the exporter's
//! Prometheus text, 404 for other paths, 405 for other methods, 431 for a
//! head past [`MAX_REQUEST`]; one short request per connection. A host with an HTTP stack of its own
//! would serve `Exporter::encode()` (or register the exporter in its
//! registry) there instead.
//!
//! A slow client cannot hold its thread: each connection has a thread of
//! its own, a request of at most [`MAX_REQUEST`] bytes, and [`DEADLINE`] to
//! send it. At most [`MAX_CLIENTS`] are answered at once (beyond that a
//! connection is closed at once), so that many clients holding their
//! connections open keep scrapes out for up to [`DEADLINE`] each: bind the
//! endpoint where only the scraper reaches it.

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
    // Lines as bytes: a field value may hold any octet (obs-text).
    let mut request_line = Vec::new();
    reader.read_until(b'\n', &mut request_line)?;
    // Skip the header fields, up to the blank line (or the size limit).
    let mut line = Vec::new();
    let mut complete = false;
    while reader.read_until(b'\n', &mut line)? > 0 {
        if line.trim_ascii().is_empty() {
            complete = true;
            break;
        }
        line.clear();
    }
    let request_line = String::from_utf8_lossy(&request_line);
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // The path, without a query (a scrape job's `params`).
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = if !complete {
        ("431 Request Header Fields Too Large", "text/plain", String::new())
    } else if path != "/metrics" {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    } else if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET or HEAD\n".to_string(),
        )
    } else {
        ("200 OK", CONTENT_TYPE, exporter.encode())
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;
    if !complete {
        // The client may still be sending: read on for a moment before the
        // close, which would otherwise reset the connection and lose the
        // answer (a lingering close).
        stream.shutdown(std::net::Shutdown::Write)?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        let _ = io::copy(&mut (&stream).take(1 << 20), &mut io::sink());
    }
    Ok(())
}
