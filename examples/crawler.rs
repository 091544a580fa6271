//! Run with: cargo run --release --example crawler -- urls.txt
//!
//! Eventlet's client pattern: a crawler that pushes many URLs through
//! `GreenPool::imap` and gets the results back in input order.
//!
//! ```text
//! cargo run --release --example crawler -- urls.txt             # one line per URL, in input order
//! cat urls.txt | cargo run --release --example crawler -- --pool 50
//! cargo run --release --example crawler -- --follow --depth 2 seeds.txt   # and the links they lead to
//! ```
//!
//! This file is the command line: it opens the input, starts the runtime
//! and runs the crawl on shard 0. The crawl itself (`crawl`: the pool,
//! `imap`, the output lines, `--follow`) is in `apps/src/crawler.rs`, a
//! small crate that the tests and the crawl benchmark import too.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;

use clap::Parser;
use shardlet::{shard, Runtime};
use shardlet_apps::crawler::{crawl, urls, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    // Open the input before starting any shard: a bad path is a bad invocation.
    let input: Box<dyn BufRead + Send> = match &args.input {
        None => Box::new(BufReader::new(io::stdin())),
        Some(p) if p.as_os_str() == "-" => Box::new(BufReader::new(io::stdin())),
        Some(path) => match File::open(path) {
            Ok(file) => Box::new(BufReader::new(file)),
            Err(err) => {
                eprintln!("crawler: cannot read {}: {err}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match Runtime::from_env() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("crawler: {err}");
            return ExitCode::from(1);
        }
    };
    // The entry runs on every shard; shard 0 takes the input and crawls.
    let input = Mutex::new(Some(input));
    let ran = runtime.run(move || {
        let args = args.clone();
        let input = if shard::id() == 0 {
            input.lock().unwrap().take()
        } else {
            None
        };
        async move {
            let Some(input) = input else { return Ok(()) };
            let stdout = io::stdout();
            let out: Box<dyn Write> = if stdout.is_terminal() {
                Box::new(io::LineWriter::new(stdout))
            } else {
                Box::new(io::BufWriter::with_capacity(64 << 10, stdout))
            };
            crawl(&args, urls(input), out).await.map(|_| ())
        }
    });
    match ran {
        Ok(results) => match results.into_iter().find_map(Result::err) {
            // stdout closed early (`crawler urls | head`) is the reader's choice.
            Some(err) if err.kind() != io::ErrorKind::BrokenPipe => {
                eprintln!("crawler: {err}");
                ExitCode::from(1)
            }
            _ => ExitCode::SUCCESS,
        },
        Err(err) => {
            eprintln!("crawler: {err}");
            ExitCode::from(1)
        }
    }
}
