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

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shardlet::http::Client;
use shardlet::{Config, Runtime};

/// Posts feed URLs to the feed scraper and prints the titles.
#[derive(Parser, Debug)]
struct Args {
    /// The scraper's address.
    #[arg(long, default_value = "127.0.0.1:9010")]
    addr: SocketAddr,
    /// Ask for JSON (`Accept: application/json`) instead of lines.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the answer (1 to 86400).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// The largest answer to take, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_answer: u64,
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

/// Posts the URLs through shardlet's HTTP client (hyper's, under its
/// limits: a hostile or broken answer is an error that names the URL, not
/// unbounded memory); returns 0 for a 200 answer, else its status.
fn run(args: &Args) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let urls = match &args.file {
        Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => {
            let mut all = Vec::new();
            io::stdin().read_to_end(&mut all)?;
            all
        }
    };
    let url = format!("http://{}/", args.addr);
    let accept = if args.json {
        "application/json"
    } else {
        "text/plain"
    };
    let request = http::Request::post(&url)
        .header(http::header::ACCEPT, accept)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(urls)?;
    let timeout = Duration::from_secs(args.timeout);
    let max_answer = args.max_answer;
    let runtime = Runtime::new(Config::default().with_shards(1).with_pin(false))?;
    let mut answers = runtime.run(move || {
        let request = request.clone();
        async move {
            let client = Client::builder()
                .request_timeout(timeout)
                .read_timeout(timeout)
                .max_body(max_answer)
                .max_redirects(0)
                .build()?;
            let answer = client.send(request).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(answer)
        }
    })?;
    let answer = answers.pop().ok_or("no shard ran")??;
    io::stdout().write_all(answer.body())?;
    let status = answer.status().as_u16();
    Ok(if status == 200 { 0 } else { status })
}
