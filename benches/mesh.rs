//! Cross-shard costs against the hardware floor, measured in one run.
//!
//! Run with: `cargo bench --bench mesh` (needs 2 CPUs for meaningful figures;
//! with one CPU the shards share it and the ratios mean little).
//!
//! Prints one table:
//! - the floor: two threads pinned to two CPUs ping-ponging an atomic;
//! - `submit_to` round trip between two shards (p50/p99) with spinning
//!   (the default `SHARDLET_SPIN_US`), and with the target parked;
//! - baselines: the same ping-pong over raw rtrb rings (what the mesh's
//!   lanes are) and over raw flume channels, between two glommio executors;
//! - one-way throughput (messages/s) with `spawn_on`;
//! - `GlobalLimit` costs against a local `GreenPool` slot (the contended one
//!   on spinning shards, the default `SHARDLET_SPIN_US`);
//! - scaling: `FanoutPile` and `GlobalLimit`-bound pile throughput (tasks/s
//!   over all shards) at 1, 2, 4, ... shards, as many as there are CPUs,
//!   with the efficiency against the 1-shard figure.
//!
//! The latency figures are taken in 7 interleaved rounds; each ratio is to
//! the floor measured in the same round, and the table shows the median
//! round and the range.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardlet::{shard, Config, Runtime};

const ROUND_TRIPS: u64 = 20_000;
const ROUNDS: usize = 7;
const MESSAGES: u64 = 1_000_000;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let scale = if quick { 100 } else { 1 };
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    let pair = if cpus.len() >= 2 {
        (cpus[0].id, cpus[1].id)
    } else {
        (0, 0)
    };
    println!(
        "shardlet mesh bench: CPUs {} and {} ({} available)",
        pair.0,
        pair.1,
        cpus.len()
    );

    // Latency: every figure is taken ROUNDS times, interleaved with the
    // floor, so that drift on a shared machine hits all of them alike; the
    // table shows the median round, and each ratio is to the floor of its
    // own round.
    let rounds = if quick { 1 } else { ROUNDS };
    let n = ROUND_TRIPS / scale;
    type Probe = fn((usize, usize), u64) -> Histogram<u64>;
    let probes: [(&str, Probe); 4] = [
        ("floor: atomic ping-pong between 2 threads", atomic_ping_pong),
        ("submit_to round trip, spin 50 µs", |pair, n| {
            submit_round_trips(pair, Duration::from_micros(50), n)
        }),
        ("baseline: raw lane (rtrb) ping-pong, polling", ring_round_trips),
        ("baseline: raw flume ping-pong, polling", channel_round_trips),
    ];
    let mut taken: Vec<Vec<(f64, f64)>> = vec![Vec::new(); probes.len()];
    for _ in 0..rounds {
        for (k, (_, probe)) in probes.iter().enumerate() {
            let h = probe(pair, n);
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            taken[k].push((us(0.5), us(0.99)));
        }
    }
    let parked = submit_round_trips(pair, Duration::ZERO, n);

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "\n{:<46} {:>8} {:>8} {:>10} {:>12}",
        "measurement (median of rounds)", "p50 µs", "p99 µs", "p50/floor", "range"
    );
    for (k, (name, _)) in probes.iter().enumerate() {
        let ratios: Vec<f64> = (0..rounds).map(|r| taken[k][r].0 / taken[0][r].0).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "{:<46} {:>8.2} {:>8.2} {:>10.2} {:>5.2}-{:<6.2}",
            name,
            median(taken[k].iter().map(|t| t.0).collect()),
            median(taken[k].iter().map(|t| t.1).collect()),
            median(ratios),
            lo,
            hi
        );
    }
    let us = |q: f64| parked.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{:<46} {:>8.2} {:>8.2}   (one run; the target parks between requests)",
        "submit_to round trip, SHARDLET_SPIN_US=0",
        us(0.5),
        us(0.99)
    );
    let throughput = mailbox_throughput(pair, MESSAGES / scale);
    let fanout = fanout_cost(pair, FANOUT_TASKS / scale);
    let limits = limit_costs(pair, LIMIT_OPS / scale);
    println!(
        "{:<44} {:>10.0} msgs/s one-way (spawn_on, batched drain)",
        "mailbox throughput", throughput
    );
    println!(
        "{:<44} {:>10.0} ns per task (1000 in flight, round-robin over 2 shards)",
        "FanoutPile", fanout
    );
    let local = limits.local_pile;
    scaling(
        &cpus.iter().map(|c| c.id).collect::<Vec<_>>(),
        SCALE_TASKS / scale,
    );
    println!(
        "\n{:<44} {:>10} {:>14}",
        "limit (ns per task or op)", "ns", "ratio to local"
    );
    for (name, ns) in [
        ("pile task, local GreenPool slot", limits.local_pile),
        ("pile task, GlobalLimit permit, 1 shard", limits.global_pile),
        ("GlobalLimit acquire+release, 1 shard", limits.global_uncontended),
        (
            "GlobalLimit acquire+release, 2 shards, size 1",
            limits.global_contended,
        ),
    ] {
        println!("{:<44} {:>10.1} {:>14.2}", name, ns, ns / local);
    }
}

const LIMIT_OPS: u64 = 200_000;

/// Tasks each shard runs per scaling figure.
const SCALE_TASKS: u64 = 400_000;

/// Cross-shard throughput at 1, 2, 4, ... shards (one pinned shard per
/// CPU): every shard keeps 1000 tasks in flight through a `FanoutPile`
/// spread over all shards, then through a pile bound to one `GlobalLimit`
/// of 1000 permits that all shards share. Prints tasks/s over all shards
/// and the efficiency, tasks/s at N shards over N times the 1-shard figure.
fn scaling(cpus: &[usize], n: u64) {
    let counts: Vec<usize> = std::iter::successors(Some(1usize), |s| Some(s * 2))
        .take_while(|&s| s <= cpus.len().max(1))
        .collect();
    println!(
        "\n{:<44} {:>8} {:>14} {:>11}",
        "scaling (tasks/s over all shards)", "shards", "tasks/s", "efficiency"
    );
    for (name, global) in [
        ("FanoutPile, 1000 in flight per shard", false),
        ("pile on a shared GlobalLimit(1000)", true),
    ] {
        let mut one = None;
        for &shards in &counts {
            let per_sec = scaled_run(&cpus[..shards.min(cpus.len())], shards, n, global);
            let base = *one.get_or_insert(per_sec);
            println!(
                "{:<44} {:>8} {:>14.0} {:>11.2}",
                name,
                shards,
                per_sec,
                per_sec / (shards as f64 * base)
            );
        }
    }
}

/// Tasks per second over `shards` shards, each running `n` tasks.
fn scaled_run(cpus: &[usize], shards: usize, n: u64, global: bool) -> f64 {
    use futures_lite::StreamExt;
    const BATCH: u64 = 1000;
    let config = if cpus.len() == shards {
        Config::default()
            .with_cpus(cpus.iter().copied())
            .with_shards(shards)
    } else {
        Config::default().with_shards(shards).with_pin(false)
    };
    let limit = shardlet::GlobalLimit::new(BATCH as usize);
    let start = Instant::now();
    Runtime::new(config)
        .expect("runtime")
        .run(move || {
            let limit = limit.clone();
            async move {
                for _ in 0..(n / BATCH).max(1) {
                    let sum = if global {
                        let mut pile = shardlet::GreenPile::new(&limit);
                        for i in 0..BATCH {
                            pile.spawn(async move { i }).await;
                        }
                        pile.fold(0, |a, r| a + r.unwrap()).await
                    } else {
                        let mut pile = shardlet::FanoutPile::new();
                        for i in 0..BATCH {
                            pile.spawn(move || async move { i }).await;
                        }
                        pile.fold(0, |a, r| a + r.unwrap()).await
                    };
                    std::hint::black_box(sum);
                }
            }
        })
        .expect("runtime failed");
    (shards as u64 * (n / BATCH).max(1) * BATCH) as f64 / start.elapsed().as_secs_f64()
}

struct LimitCosts {
    local_pile: f64,
    global_pile: f64,
    global_uncontended: f64,
    global_contended: f64,
}

/// Per-task cost of a pile bound to a local pool and to a GlobalLimit, and
/// per-op cost of a GlobalLimit acquire+release alone and under contention.
fn limit_costs(pair: (usize, usize), n: u64) -> LimitCosts {
    let per = |d: Duration, n: u64| d.as_nanos() as f64 / n as f64;
    let (local_pile, global_pile, global_uncontended) = on_shard0(pair, Duration::ZERO, move || async move {
        const BATCH: u64 = 1000;
        let pool = shardlet::GreenPool::new(BATCH as usize);
        let global = shardlet::GlobalLimit::new(BATCH as usize);
        let local = pile_cost(n, BATCH, || shardlet::GreenPile::new(&pool)).await;
        let global_pile = pile_cost(n, BATCH, || shardlet::GreenPile::new(&global)).await;
        let start = Instant::now();
        for _ in 0..n {
            drop(global.acquire().await);
        }
        (local, global_pile, per(start.elapsed(), n))
    });
    // Contended: both shards take and give back the single permit as fast as they can.
    let limit = shardlet::GlobalLimit::new(1);
    let elapsed = runtime(pair, Duration::from_micros(50))
        .run(move || {
            let limit = limit.clone();
            async move {
                let start = Instant::now();
                for _ in 0..n {
                    let permit = limit.acquire().await;
                    glommio::executor().yield_task_queue_now().await; // hold it across a yield
                    drop(permit);
                }
                start.elapsed()
            }
        })
        .expect("runtime failed");
    let slowest = elapsed.into_iter().max().unwrap_or_default();
    LimitCosts {
        local_pile,
        global_pile,
        global_uncontended,
        global_contended: per(slowest, 2 * n),
    }
}

/// ns per task of filling and draining piles of `batch` trivial tasks,
/// `n` tasks in all.
async fn pile_cost(n: u64, batch: u64, new_pile: impl Fn() -> shardlet::GreenPile<u64>) -> f64 {
    use futures_lite::StreamExt;
    let start = Instant::now();
    for _ in 0..n / batch {
        let mut pile = new_pile();
        for i in 0..batch {
            pile.spawn(async move { i }).await;
        }
        std::hint::black_box(pile.fold(0, |a, r| a + r.unwrap()).await);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn pin(cpu: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Round trips of an atomic between two pinned, spinning threads, in ns.
fn atomic_ping_pong((a, b): (usize, usize), n: u64) -> Histogram<u64> {
    let ball = Arc::new(AtomicU64::new(0));
    let other = ball.clone();
    let ponger = std::thread::spawn(move || {
        pin(b);
        for i in 0..n {
            while other.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            other.store(2 * i + 2, Ordering::Release);
        }
    });
    // Pin a thread of its own: pinning main would narrow the CPUs the runtimes below see.
    let pinger = std::thread::spawn(move || {
        pin(a);
        let mut h = histogram();
        for i in 0..n {
            let start = Instant::now();
            ball.store(2 * i + 1, Ordering::Release);
            while ball.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
            h.record(start.elapsed().as_nanos() as u64).unwrap();
        }
        h
    });
    ponger.join().unwrap();
    pinger.join().unwrap()
}

fn runtime((a, b): (usize, usize), spin: Duration) -> Runtime {
    let config = if a == b {
        Config::default().with_shards(2).with_pin(false)
    } else {
        Config::default().with_cpus([a, b]).with_shards(2)
    };
    Runtime::new(config.with_spin(spin)).expect("runtime")
}

/// Runs `body` on shard 0 of a 2-shard runtime while shard 1 idles, then stops both.
fn on_shard0<F, Fut, T>(pair: (usize, usize), spin: Duration, body: F) -> T
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let mut results = runtime(pair, spin)
        .run(move || {
            let body = (shard::id() == 0).then(&body);
            async move {
                match body {
                    Some(body) => {
                        // Let shard 1 go idle first.
                        shardlet::sleep(Duration::from_millis(10)).await;
                        let out = body.await;
                        shard::stopper().stop(Duration::from_secs(1));
                        Some(out)
                    }
                    None => {
                        shard::stopped().await;
                        None
                    }
                }
            }
        })
        .expect("runtime failed");
    results.swap_remove(0).expect("shard 0 result")
}

/// `submit_to` round trips from shard 0 to shard 1, in ns. Shard 1 does
/// nothing else, so between requests it parks (or spins, if `spin` > 0).
fn submit_round_trips(pair: (usize, usize), spin: Duration, n: u64) -> Histogram<u64> {
    on_shard0(pair, spin, move || async move {
        let mut h = histogram();
        for _ in 0..n {
            let start = Instant::now();
            shardlet::submit_to(1, || async {}).await.unwrap();
            h.record(start.elapsed().as_nanos() as u64).unwrap();
        }
        h
    })
}

/// Baseline: the same two pinned executors ping-ponging a value over two
/// raw flume channels, each side polling (try_recv + yield) as the mesh does
/// while spinning: what the mesh costs on top of its channel.
fn channel_round_trips(pair: (usize, usize), n: u64) -> Histogram<u64> {
    executor_ping_pong(pair, n, flume::bounded::<u64>(1), flume::bounded::<u64>(1))
}

const FANOUT_TASKS: u64 = 200_000;

/// A `FanoutPile` on shard 0 keeping 1000 trivial tasks in flight over both
/// shards (half of them answered from the other shard, each answer waking
/// the pile's task): ns per task, spawn to result.
fn fanout_cost(pair: (usize, usize), n: u64) -> f64 {
    on_shard0(pair, Duration::from_micros(50), move || async move {
        use futures_lite::StreamExt;
        const BATCH: u64 = 1000;
        let start = Instant::now();
        for _ in 0..(n / BATCH).max(1) {
            let mut pile = shardlet::FanoutPile::new();
            for i in 0..BATCH {
                pile.spawn(move || async move { i }).await;
            }
            std::hint::black_box(pile.fold(0, |a, r| a + r.unwrap()).await);
        }
        start.elapsed().as_nanos() as f64 / (n / BATCH).max(1) as f64 / BATCH as f64
    })
}

/// One-way `spawn_on` messages per second from shard 0 to shard 1.
fn mailbox_throughput(pair: (usize, usize), n: u64) -> f64 {
    on_shard0(pair, Duration::ZERO, move || async move {
        let ran = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        for _ in 0..n {
            let ran = ran.clone();
            shardlet::spawn_on(1, move || async move {
                ran.fetch_add(1, Ordering::Relaxed);
            })
            .await
            .unwrap();
        }
        // The inbox is FIFO: once this answers, every message before it has run.
        shardlet::submit_to(1, || async {}).await.unwrap();
        let elapsed = start.elapsed();
        assert_eq!(ran.load(Ordering::Relaxed), n);
        n as f64 / elapsed.as_secs_f64()
    })
}

/// Baseline: the same two pinned executors ping-ponging a value over two
/// raw rtrb rings (what the mesh's lanes are), each side polling: what the
/// mesh costs on top of its lanes.
fn ring_round_trips(pair: (usize, usize), n: u64) -> Histogram<u64> {
    executor_ping_pong(
        pair,
        n,
        rtrb::RingBuffer::<u64>::new(64),
        rtrb::RingBuffer::<u64>::new(64),
    )
}

/// What one raw queue has to offer the two-executor ping-pong.
trait Put: Send + 'static {
    fn put(&mut self, v: u64) -> bool;
}

/// `Some(None)`: the other side is gone.
trait Take: Send + 'static {
    fn take(&mut self) -> Option<Option<u64>>;
}

impl Put for flume::Sender<u64> {
    fn put(&mut self, v: u64) -> bool {
        self.send(v).is_ok()
    }
}

impl Take for flume::Receiver<u64> {
    fn take(&mut self) -> Option<Option<u64>> {
        match self.try_recv() {
            Ok(v) => Some(Some(v)),
            Err(flume::TryRecvError::Disconnected) => Some(None),
            Err(flume::TryRecvError::Empty) => None,
        }
    }
}

impl Put for rtrb::Producer<u64> {
    fn put(&mut self, v: u64) -> bool {
        self.push(v).is_ok()
    }
}

impl Take for rtrb::Consumer<u64> {
    fn take(&mut self) -> Option<Option<u64>> {
        match self.pop() {
            Ok(v) => Some(Some(v)),
            Err(_) if self.is_abandoned() => Some(None),
            Err(_) => None,
        }
    }
}

/// Two glommio executors pinned to `a` and `b` ping-pong a value over two
/// raw queues, each side polling (take, yield) as the mesh does while it
/// spins; round trips in ns.
fn executor_ping_pong<P: Put, T: Take>(
    (a, b): (usize, usize),
    n: u64,
    ping: (P, T),
    pong: (P, T),
) -> Histogram<u64> {
    use glommio::{LocalExecutorBuilder, Placement};
    async fn poll_take(rx: &mut impl Take) -> Option<u64> {
        loop {
            match rx.take() {
                Some(got) => return got,
                None => glommio::executor().yield_task_queue_now().await,
            }
        }
    }
    let ((mut ping_tx, mut ping_rx), (mut pong_tx, mut pong_rx)) = (ping, pong);
    let executor = |cpu: usize| LocalExecutorBuilder::new(Placement::Fixed(cpu)).io_memory(256 << 10);
    let ponger = executor(b)
        .spawn(move || async move {
            while let Some(v) = poll_take(&mut ping_rx).await {
                if !pong_tx.put(v) {
                    break;
                }
            }
        })
        .expect("executor");
    let pinger = executor(a)
        .spawn(move || async move {
            let mut h = histogram();
            for i in 0..n {
                let start = Instant::now();
                assert!(ping_tx.put(i), "the ponger is gone");
                poll_take(&mut pong_rx).await.expect("the ponger answers");
                h.record(start.elapsed().as_nanos() as u64).unwrap();
            }
            drop(ping_tx); // the ponger sees the end
            h
        })
        .expect("executor");
    let h = pinger.join().expect("pinger");
    ponger.join().expect("ponger");
    h
}
