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
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
        Some(path) => match File::open(path).and_then(|file| match file.metadata()?.is_dir() {
            // Opening a directory works; reading it does not.
            true => Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory")),
            false => Ok(file),
        }) {
            Ok(file) => Box::new(BufReader::new(file)),
            Err(err) => {
                eprintln!("crawler: cannot read {}: {err}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    // A read error ends the input (the crawl reports it on stderr and goes
    // on with what it has); the exit status says so too.
    let failed = Arc::new(AtomicBool::new(false));
    let input: Box<dyn BufRead + Send> = Box::new(Watched {
        inner: input,
        failed: failed.clone(),
    });
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
            _ if failed.load(Ordering::Relaxed) => ExitCode::from(1),
            _ => ExitCode::SUCCESS,
        },
        Err(err) => {
            eprintln!("crawler: {err}");
            ExitCode::from(1)
        }
    }
}

/// The input, remembering whether a read of it failed.
struct Watched {
    inner: Box<dyn BufRead + Send>,
    failed: Arc<AtomicBool>,
}

impl Watched {
    /// Remembers a failed read (an interrupted one is tried again).
    fn note(failed: &AtomicBool, error: &io::Error) {
        if error.kind() != io::ErrorKind::Interrupted {
            failed.store(true, Ordering::Relaxed);
        }
    }
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|e| Watched::note(&self.failed, e))
    }
}

impl BufRead for Watched {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let failed = &self.failed;
        self.inner.fill_buf().inspect_err(|e| Watched::note(failed, e))
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
    }
}
