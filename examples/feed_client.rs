//! Run with: cargo run --example feed_client -- [FILE]
//!
//! The feed scraper's test client (the seed's): reads feed URLs, one per
//! line, from FILE or standard input, POSTs them to the scraper and prints
//! its answer: one title (or `error: <url>: <reason>`) per line, in order.
//!
//! ```text
//! cargo run --release --example feed_scraper &
//! printf 'http://127.0.0.1:8000/a.xml\nhttp://127.0.0.1:8000/b.xml\n' | cargo run --example feed_client
//! cargo run --example feed_client -- --json urls.txt
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Posts feed URLs to the feed scraper and prints the titles.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// The scraper's address.
    #[arg(long, default_value = "127.0.0.1:9010")]
    addr: SocketAddr,
    /// Ask for JSON (`Accept: application/json`) instead of lines.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// File of feed URLs, one per line (default: standard input).
    file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("feed_client: the scraper answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("feed_client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Posts the URLs; returns 0 for a 200 answer, else its status.
fn run(args: &Args) -> io::Result<u16> {
    let urls = match &args.file {
        Some(path) => std::fs::read_to_string(path)?,
        None => io::read_to_string(io::stdin())?,
    };
    let mut stream = TcpStream::connect_timeout(&args.addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(args.timeout)))?;
    let accept = if args.json {
        "application/json"
    } else {
        "text/plain"
    };
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        args.addr,
        urls.len()
    )?;
    stream.write_all(urls.as_bytes())?;

    // Status line and fields, then the body: sized, chunked, or to the end.
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {line:?}")))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some((name, value)) = field.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    io::stdout().write_all(&body)?;
    Ok(if status == 200 { 0 } else { status })
}
