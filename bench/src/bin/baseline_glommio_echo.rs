//! Run with: cargo run --release -p shardlet-bench --bin baseline_glommio_echo -- --addr 127.0.0.1:6000
//!
//! BASELINE, not shardlet: a plain glommio echo server with no shardlet layer,
//! the "raw glommio" column of `scripts/echo-bench.sh --compare`. One pinned
//! `LocalExecutor` per CPU this process may run on (so `taskset -c 0` gives
//! one executor on CPU 0), each binding its own `SO_REUSEPORT` listener with
//! glommio's `TcpListener::bind`, accepting in a loop and spawning one task
//! per connection that reads up to 4 KiB and writes it back.
//!
//! Prints `listening on <addr> ...` on stdout once every executor is
//! listening. Stops on SIGTERM/SIGINT (the default action: the process ends).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;

use clap::Parser;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

/// A raw glommio echo server: the baseline shardlet is measured against.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6000")]
    addr: SocketAddr,
    /// Executors to start (default: one per CPU this process may run on).
    #[arg(long)]
    executors: Option<usize>,
    /// io_uring registered-buffer memory per executor, in KiB. Kept small so
    /// that an 8 MiB RLIMIT_MEMLOCK, shared by every process of the user,
    /// leaves room for the load client (sockets do not use these buffers).
    #[arg(long, default_value_t = 512)]
    io_memory_kib: usize,
    /// Microseconds an idle executor spins before it parks (0: park at once,
    /// glommio's default); the same knob as shardlet's SHARDLET_SPIN_US.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
}

/// Bytes read (and written back) per call.
const BUFFER: usize = 4096;

fn main() {
    let args = Args::parse();
    // Step 1: one CPU per executor, from this process's affinity mask.
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if cpus.is_empty() {
        cpus.push(0);
    }
    let executors = args.executors.unwrap_or(cpus.len()).max(1);

    // Step 2: start the executors; each reports once its listener is bound.
    let (bound_tx, bound_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..executors {
        let cpu = cpus[i % cpus.len()];
        let (addr, bound_tx) = (args.addr, bound_tx.clone());
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("glommio-echo-{i}"))
            .io_memory(args.io_memory_kib << 10);
        if args.spin_us > 0 {
            builder = builder.spin_before_park(std::time::Duration::from_micros(args.spin_us));
        }
        let thread = builder
            .spawn(move || async move {
                let listener = match TcpListener::bind(addr) {
                    Ok(listener) => listener,
                    Err(err) => {
                        let _ = bound_tx.send(Err(format!("executor {i}: bind {addr}: {err}")));
                        return;
                    }
                };
                let _ = bound_tx.send(Ok(listener.local_addr().expect("local_addr")));
                drop(bound_tx);
                accept_loop(listener).await;
            })
            .unwrap_or_else(|err| fail(&format!("cannot start executor {i} on cpu {cpu}: {err}")));
        threads.push(thread);
    }
    drop(bound_tx);

    // Step 3: announce readiness only when every executor is listening.
    let mut local = None;
    for _ in 0..executors {
        match bound_rx.recv() {
            Ok(Ok(addr)) => local = Some(addr),
            Ok(Err(err)) => fail(&err),
            Err(_) => fail("an executor ended before it was listening"),
        }
    }
    let local = local.expect("at least one executor");
    let used: Vec<usize> = (0..executors).map(|i| cpus[i % cpus.len()]).collect();
    println!("listening on {local} (raw glommio baseline, {executors} executor(s) on cpus {used:?})");
    let _ = std::io::stdout().flush();

    // Step 4: serve until a signal ends the process.
    for thread in threads {
        let _ = thread.join();
    }
}

/// Accepts forever, one detached task per connection.
async fn accept_loop(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(echo(stream)).detach();
            }
            Err(err) => {
                // EMFILE and friends: say so, wait a little, try again.
                eprintln!("accept: {err}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
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
    eprintln!("baseline_glommio_echo: {message}");
    std::process::exit(1);
}
