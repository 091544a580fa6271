//! The load itself: what every shard of the client runs.
//!
//! Contract with `main.rs`: every shard runs [`shard_main`] with the same
//! [`Plan`] and [`Shared`] state. Shard `s` of `n` owns connections
//! `s, s + n, s + 2n, ...`. The phases are:
//!
//! 1. **connect**: paced at `connect_rate / n` per second per shard, each
//!    connect retried with a growing back-off a bounded number of times;
//! 2. **barrier**: every shard waits until all shards finished connecting,
//!    and the first one through stamps the common start instant;
//! 3. **run**: one green thread per connection doing closed-loop ping-pong
//!    (write B bytes, read B bytes back, compare) until `start + warmup +
//!    duration`; round trips that *complete* in `[start + warmup, end)` are
//!    recorded in the shard's histogram;
//! 4. **close**: each connection shuts its write side and reads to EOF; a
//!    connection still busy at `end + drain` is cancelled and counted as
//!    stalled.
//!
//! `Shared` carries only atomics (progress for the monitor thread); each shard
//! returns its histogram and counters in a [`ShardOutcome`] to be merged.

use std::cell::{Cell, RefCell};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use hdrhistogram::Histogram;
use shardlet::{shard, sleep, spawn, GreenThread};

/// What every shard was asked to do (the same for all).
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub connections: usize,
    pub size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Connects per second, for the whole client.
    pub connect_rate: f64,
    /// Tries per connection before it counts as failed.
    pub connect_attempts: u32,
    /// Time limit of one connect try.
    pub connect_timeout: Duration,
    /// How long after the end connections get to finish and close.
    pub drain: Duration,
    /// Open loop (`--rate`): this many messages per second in all, over
    /// the paced connections (every one but the heavy ones); closed loop
    /// without it. Only the epoll engine runs it.
    pub rate: Option<f64>,
    /// Open loop in ticks (`--tick-us`): the client wakes once per tick,
    /// sends what fell due and reads what came back, instead of waking for
    /// each message and each answer. Every latency then carries up to one
    /// tick of the client's own lateness at each end.
    pub tick: Option<Duration>,
    /// Skewed load (`--heavy-fraction`): which connections are heavy.
    pub heavy: Option<Heavy>,
}

/// The heavy connections of a skewed load: closed loop (back-to-back)
/// with larger messages, while the others are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heavy {
    /// About this fraction of the connections (chosen by a hash of the id,
    /// so that neither accept mode sees them in a regular pattern).
    pub fraction: f64,
    /// Bytes per message of a heavy connection.
    pub size: usize,
}

impl Plan {
    /// Whether connection `id` is one of the heavy ones.
    pub fn is_heavy(&self, id: usize) -> bool {
        self.heavy
            .is_some_and(|h| ((splitmix64(id as u64 ^ 0xA5A5) % 1_000_000) as f64) < h.fraction * 1e6)
    }

    /// The open-loop schedule, when there is one.
    pub fn pacing(&self) -> Option<crate::pacing::Pacing> {
        let rate = self.rate?;
        let paced = (0..self.connections).filter(|&id| !self.is_heavy(id)).count();
        Some(crate::pacing::Pacing::new(rate, paced, self.connections))
    }

    /// The longest a connect can take with every try timing out.
    pub fn worst_connect(&self) -> Duration {
        (0..self.connect_attempts)
            .map(|k| self.connect_timeout + backoff(k))
            .sum()
    }
}

/// Progress and phase, shared by the shards and the monitor thread.
#[derive(Debug, Default)]
pub struct Shared {
    pub connected: AtomicUsize,
    pub connect_failed: AtomicUsize,
    /// Shards (or threads) that finished connecting.
    pub shards_ready: AtomicUsize,
    /// Set by the monitor once every shard finished connecting (and it
    /// sampled the server with all connections open and unused): start.
    pub go: AtomicBool,
    /// Connections done with the load: open and idle, or broken.
    pub finished_load: AtomicUsize,
    /// Set by the monitor once it sampled the server with every connection
    /// idle: close them.
    pub close: AtomicBool,
    /// Round trips completed so far (warm-up included).
    pub messages: AtomicU64,
    pub errors: AtomicU64,
    /// Set by the first shard through the barrier.
    pub start: OnceLock<Instant>,
    /// Set by the first connection that fails, for the report.
    pub first_error: Mutex<Option<String>>,
}

impl Shared {
    /// Counts `count` errors, and keeps the first description.
    pub fn note_error(&self, count: u64, what: String) {
        self.errors.fetch_add(count, Relaxed);
        self.note_first(what);
    }

    /// Keeps `what` if it is the first error described.
    pub fn note_first(&self, what: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(what);
    }
}

/// One shard's share of the results.
#[derive(Debug)]
pub struct ShardOutcome {
    /// Round-trip times in nanoseconds, measured window only (the paced
    /// connections' only, in a skewed load).
    pub histogram: Histogram<u64>,
    /// The heavy connections' round trips (empty without a skewed load).
    pub heavy_histogram: Histogram<u64>,
    pub connected: usize,
    pub connect_failed: usize,
    /// Round trips completed in the measured window.
    pub measured: u64,
    /// Round trips completed in all (warm-up and the drain included).
    pub total: u64,
    pub errors: Errors,
    pub connect_time: Duration,
}

/// Failed connections after they were established, by kind.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Errors {
    /// The echo differed from what was sent.
    pub mismatches: u64,
    /// A read or write failed (reset, broken pipe, ...).
    pub io: u64,
    /// The server closed the connection before the end.
    pub eof: u64,
    /// Still mid round trip (or not closed) at the drain deadline.
    pub stalled: u64,
    /// The server sent bytes after the client closed its side.
    pub unexpected_data: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.mismatches + self.io + self.eof + self.stalled + self.unexpected_data
    }

    pub fn add(&mut self, other: &Errors) {
        self.mismatches += other.mismatches;
        self.io += other.io;
        self.eof += other.eof;
        self.stalled += other.stalled;
        self.unexpected_data += other.unexpected_data;
    }
}

/// A new, empty round-trip histogram: 1 ns to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// State the connection tasks of one shard share (single-threaded).
struct Local {
    plan: Plan,
    shared: Arc<Shared>,
    measure_from: Instant,
    end: Instant,
    histogram: RefCell<Histogram<u64>>,
    measured: Cell<u64>,
    total: Cell<u64>,
    finished: Cell<usize>,
    errors: RefCell<Errors>,
    /// Set once the monitor said `close`; idle connections wait for it.
    closing: Cell<bool>,
    idle: RefCell<Vec<Waker>>,
}

impl Local {
    /// Waits until the shard lets its idle connections close.
    async fn closing(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.closing.get() {
                return Poll::Ready(());
            }
            self.idle.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Lets every idle connection close.
    fn close(&self) {
        self.closing.set(true);
        for waker in self.idle.take() {
            waker.wake();
        }
    }
}

/// How one connection ended.
enum Ending {
    Done,
    Mismatch { seq: u64 },
    Io(std::io::Error),
    Eof,
}

/// Everything one shard does; see the module docs for the phases.
pub async fn shard_main(plan: Plan, shared: Arc<Shared>) -> ShardOutcome {
    let (me, shards) = (shard::id(), shard::count());
    let ids: Vec<usize> = (me..plan.connections).step_by(shards).collect();

    // Phase 1: paced connects, each its own green thread.
    let began = Instant::now();
    let per_shard_rate = plan.connect_rate / shards as f64;
    let mut connecting: Vec<(usize, GreenThread<Option<TcpStream>>)> = Vec::with_capacity(ids.len());
    for (k, &id) in ids.iter().enumerate() {
        let due = began + Duration::from_secs_f64(k as f64 / per_shard_rate);
        let now = Instant::now();
        // Sleep only for gaps of a millisecond or more; smaller ones go out together.
        if due > now + Duration::from_millis(1) {
            sleep(due - now).await;
        }
        connecting.push((id, spawn(connect(plan.clone(), shared.clone(), id))));
    }
    let mut streams = Vec::with_capacity(ids.len());
    let mut connect_failed = 0;
    for (id, task) in connecting {
        match task.await {
            Ok(Some(stream)) => streams.push((id, stream)),
            Ok(None) | Err(_) => connect_failed += 1,
        }
    }
    let connect_time = began.elapsed();

    // Phase 2: wait for the other shards (the monitor says go), then share
    // one start instant.
    shared.shards_ready.fetch_add(1, Relaxed);
    while !shared.go.load(Relaxed) {
        sleep(Duration::from_millis(1)).await;
    }
    let start = *shared.start.get_or_init(Instant::now);
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;

    // Phase 3: ping-pong on every connection until `end`.
    let local = Rc::new(Local {
        plan: plan.clone(),
        shared: shared.clone(),
        measure_from,
        end,
        histogram: RefCell::new(new_histogram()),
        measured: Cell::new(0),
        total: Cell::new(0),
        finished: Cell::new(0),
        errors: RefCell::new(Errors::default()),
        closing: Cell::new(false),
        idle: RefCell::new(Vec::new()),
    });
    let connected = streams.len();
    let tasks: Vec<GreenThread<()>> = streams
        .into_iter()
        .map(|(id, stream)| spawn(ping_pong(local.clone(), id, stream)))
        .collect();

    // Phase 4: connections idle until the monitor says close (it samples
    // the server first), or the drain deadline; then every connection
    // closes, within the drain time.
    let deadline = end + plan.drain;
    while !shared.close.load(Relaxed) && Instant::now() < deadline {
        sleep(Duration::from_millis(5)).await;
    }
    local.close();
    let deadline = Instant::now() + plan.drain;
    while local.finished.get() < connected && Instant::now() < deadline {
        sleep(Duration::from_millis(5)).await;
    }
    let stalled = connected - local.finished.get();
    if stalled > 0 {
        shared.note_error(
            stalled as u64,
            format!(
                "{stalled} connection(s) still busy {:?} after the end",
                plan.drain
            ),
        );
        local.errors.borrow_mut().stalled += stalled as u64;
    }
    for task in &tasks {
        task.cancel();
    }
    drop(tasks);

    let errors = *local.errors.borrow();
    ShardOutcome {
        histogram: local.histogram.replace(new_histogram()),
        heavy_histogram: new_histogram(),
        connected,
        connect_failed,
        measured: local.measured.get(),
        total: local.total.get(),
        errors,
        connect_time,
    }
}

/// Back-off before connect try `k + 1`: 20 ms doubling, at most 1 s.
pub fn backoff(k: u32) -> Duration {
    Duration::from_millis(20u64 << k.min(6)).min(Duration::from_secs(1))
}

/// Connects with bounded retries; `None` once every try failed.
async fn connect(plan: Plan, shared: Arc<Shared>, id: usize) -> Option<TcpStream> {
    let mut last_error = String::new();
    for k in 0..plan.connect_attempts {
        match TcpStream::connect_timeout(plan.addr, plan.connect_timeout).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                shared.connected.fetch_add(1, Relaxed);
                return Some(stream);
            }
            Err(err) => last_error = err.to_string(),
        }
        if k + 1 < plan.connect_attempts {
            // Jitter, so that refused connects do not retry in lock-step.
            let jitter = Duration::from_micros(fastrand::u64(0..10_000));
            sleep(backoff(k) + jitter).await;
        }
    }
    shared.connect_failed.fetch_add(1, Relaxed);
    let mut first = shared.first_error.lock().unwrap_or_else(|e| e.into_inner());
    first.get_or_insert(format!(
        "connection {id}: connect to {} failed {} time(s): {last_error}",
        plan.addr, plan.connect_attempts
    ));
    None
}

/// Closed-loop ping-pong on one connection, then a clean close.
async fn ping_pong(local: Rc<Local>, id: usize, mut stream: TcpStream) {
    let size = local.plan.size;
    // One spare byte: a read then always asks for more than can be there, so
    // glommio arms the readiness poll at once and the next read waits on it
    // instead of first trying a recv that would only say EAGAIN.
    let (mut out, mut back) = (vec![0u8; size], vec![0u8; size + 1]);
    let mut seq = 0u64;
    let ending = loop {
        let sent_at = Instant::now();
        if sent_at >= local.end {
            break Ending::Done;
        }
        fill(&mut out, id as u64, seq);
        if let Err(err) = stream.write_all(&out).await {
            break Ending::Io(err);
        }
        let got = match read_echo(&mut stream, &mut back, size).await {
            Ok(Some(got)) => got,
            Ok(None) => break Ending::Eof,
            Err(err) => break Ending::Io(err),
        };
        let back_at = Instant::now();
        if got != size || back[..size] != out[..] {
            break Ending::Mismatch { seq };
        }
        local.record(sent_at, back_at);
        seq += 1;
    };

    local.shared.finished_load.fetch_add(1, Relaxed);
    if let Ending::Done = ending {
        local.closing().await;
    }
    let mut errors = local.errors.borrow_mut();
    match ending {
        Ending::Done => {
            drop(errors);
            // Clean close: send FIN, then expect the server's FIN and nothing else.
            let _ = stream.shutdown(Shutdown::Write).await;
            match stream.read(&mut back).await {
                Ok(0) | Err(_) => {}
                Ok(n) => {
                    local.errors.borrow_mut().unexpected_data += 1;
                    local.shared.note_error(
                        1,
                        format!("connection {id}: {n} unexpected byte(s) after the client closed"),
                    );
                }
            }
        }
        Ending::Mismatch { seq } => {
            errors.mismatches += 1;
            local.shared.note_error(
                1,
                format!("connection {id}: message {seq}: the echo differs from what was sent"),
            );
        }
        Ending::Io(err) => {
            errors.io += 1;
            local
                .shared
                .note_error(1, format!("connection {id}: message {seq}: {err}"));
        }
        Ending::Eof => {
            errors.eof += 1;
            local.shared.note_error(
                1,
                format!("connection {id}: message {seq}: the server closed the connection"),
            );
        }
    }
    local.finished.set(local.finished.get() + 1);
}

/// Reads until at least `size` bytes are in `buf` (which has room for more,
/// so a server that sends too much is caught) and returns how many; `None`
/// on EOF.
async fn read_echo(stream: &mut TcpStream, buf: &mut [u8], size: usize) -> std::io::Result<Option<usize>> {
    let mut got = 0;
    while got < size {
        match stream.read(&mut buf[got..]).await? {
            0 => return Ok(None),
            n => got += n,
        }
    }
    Ok(Some(got))
}

impl Local {
    /// Counts one round trip, and records it when it completed in the window.
    fn record(&self, sent_at: Instant, back_at: Instant) {
        self.total.set(self.total.get() + 1);
        self.shared.messages.fetch_add(1, Relaxed);
        if back_at >= self.measure_from && back_at < self.end {
            let nanos = back_at.duration_since(sent_at).as_nanos() as u64;
            self.histogram.borrow_mut().saturating_record(nanos.max(1));
            self.measured.set(self.measured.get() + 1);
        }
    }
}

/// The bytes of message `seq` on connection `id`: a pattern that differs for
/// every message and connection, so a reordered or crossed echo is caught.
pub fn fill(buf: &mut [u8], id: u64, seq: u64) {
    let mut x = splitmix64(id << 32 ^ seq);
    for chunk in buf.chunks_mut(8) {
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
        x = splitmix64(x);
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
