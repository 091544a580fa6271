//! `--metrics-addr HOST:PORT` for the examples: a plain thread that answers
//! `GET /metrics` with the exporter's Prometheus text (and 404 otherwise),
//! one short request per connection. A host with an HTTP stack of its own
//! would serve `Exporter::encode()` (or register the exporter in its
//! registry) there instead.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use shardlet::metrics::{Exporter, CONTENT_TYPE};

/// Binds `addr` now (so a bad address is an error at start) and serves
/// `/metrics` from a background thread; returns the bound address.
pub fn serve_metrics(addr: SocketAddr, exporter: Exporter) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &exporter);
            }
        })?;
    Ok(bound)
}

fn answer(stream: std::net::TcpStream, exporter: &Exporter) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
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
