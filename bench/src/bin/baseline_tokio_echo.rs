//! Run with: cargo run --release -p shardlet-bench --bin baseline_tokio_echo -- --addr 127.0.0.1:6000
//!
//! BASELINE, not shardlet: a tokio echo server, the "tokio" column of
//! `scripts/echo-bench.sh --compare`. By default a `current_thread` runtime
//! (the one-core comparison; pin it with `taskset -c 0`), `tokio::spawn` per
//! connection, reading up to 4 KiB and writing it back. `--threads N` (N > 1)
//! uses the multi-thread runtime instead.
//!
//! Prints `listening on <addr> ...` on stdout once listening. Stops on
//! SIGTERM/SIGINT (the default action: the process ends).

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A tokio echo server: a baseline shardlet is measured against.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6000")]
    addr: SocketAddr,
    /// Runtime threads: 1 is a `current_thread` runtime, more a multi-thread one.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Bytes read (and written back) per call.
const BUFFER: usize = 4096;

fn main() {
    let args = Args::parse();
    // Step 1: the runtime, single-threaded unless asked otherwise.
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = runtime.unwrap_or_else(|err| fail(&format!("cannot build the runtime: {err}")));

    runtime.block_on(async {
        // Step 2: bind and announce readiness.
        let listener = TcpListener::bind(args.addr)
            .await
            .unwrap_or_else(|err| fail(&format!("bind {}: {err}", args.addr)));
        let local = listener.local_addr().expect("local_addr");
        println!(
            "listening on {local} (tokio baseline, {} thread(s))",
            args.threads.max(1)
        );
        let _ = std::io::stdout().flush();

        // Step 3: accept forever, one task per connection.
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    tokio::spawn(echo(stream));
                }
                Err(err) => {
                    // EMFILE and friends: say so, wait a little, try again.
                    eprintln!("accept: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Reads up to [`BUFFER`] bytes and writes them all back, until EOF or an error.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("baseline_tokio_echo: {message}");
    std::process::exit(1);
}
