//! Micro-costs of shardlet's green threads against raw glommio, in one run.
//!
//! Run with: `cargo bench --bench green` (add `-- --quick` for a short pass).
//! At the end it prints each shardlet row's ratio to its raw-glommio
//! baseline as a markdown table; with `GREEN_BENCH_WRITE=BENCHMARKS.md` it
//! also rewrites that file's table (between its `green-bench` markers).
//!
//! Every measurement runs on one glommio executor on the bench thread, so
//! the shardlet figures and their raw-glommio baselines share the machine
//! state; compare the ratios, not the absolute times. Each work item comes
//! in two kinds: one that finishes in its first step, and one that waits
//! once (`yield_now`) before it finishes, as real work (I/O, timers) does.
//! The `spawn_detached_on_a_shard` group runs the `spawn_detached` loop on
//! a shard of a shardlet `Runtime` instead (sent there with
//! `Mesh::submit_to`), where the per-shard metrics count every task and
//! time every executor poll: its ratio next to `spawn_detached`'s shows
//! what the metrics cost.

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use futures_lite::future::yield_now;
use futures_lite::StreamExt;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use shardlet::{GreenPile, GreenPool};

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("cannot build a glommio executor for the bench")
}

/// Runs `body(iters)` on the executor and returns its elapsed time.
fn timed<F, Fut>(ex: &LocalExecutor, iters: u64, body: F) -> Duration
where
    F: FnOnce(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    ex.run(async move {
        let start = Instant::now();
        body(iters).await;
        start.elapsed()
    })
}

/// Fire-and-forget: spawn `iters` tasks, then wait until all have run.
fn spawn_detached(c: &mut Criterion) {
    let ex = executor();
    let mut group = c.benchmark_group("spawn_detached");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw glommio spawn_local+detach", |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                let done = Rc::new(Cell::new(0u64));
                for _ in 0..n {
                    let done = done.clone();
                    glommio::spawn_local(async move { done.set(done.get() + 1) }).detach();
                }
                wait_for(&done, n).await;
            })
        })
    });
    group.bench_function("shardlet spawn_n", |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                let done = Rc::new(Cell::new(0u64));
                for _ in 0..n {
                    let done = done.clone();
                    shardlet::spawn_n(async move { done.set(done.get() + 1) });
                }
                wait_for(&done, n).await;
            })
        })
    });
    group.finish();
}

/// Spawn and await the result, one task at a time.
fn spawn_join(c: &mut Criterion) {
    let ex = executor();
    let mut group = c.benchmark_group("spawn_join");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw glommio spawn_local+await", |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                for i in 0..n {
                    black_box(glommio::spawn_local(async move { i }).await);
                }
            })
        })
    });
    group.bench_function("shardlet spawn+join", |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                for i in 0..n {
                    black_box(shardlet::spawn(async move { i }).await.unwrap());
                }
            })
        })
    });
    group.bench_function("shardlet GreenPool::spawn+join", |b| {
        let pool = GreenPool::new(1000);
        b.iter_custom(|iters| {
            let pool = pool.clone();
            timed(&ex, iters, |n| async move {
                for i in 0..n {
                    black_box(pool.spawn(async move { i }).await.await.unwrap());
                }
            })
        })
    });
    group.finish();
    let mut group = c.benchmark_group("spawn_join_waiting_once");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw glommio spawn_local+await", |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                for i in 0..n {
                    black_box(
                        glommio::spawn_local(async move {
                            yield_now().await;
                            i
                        })
                        .await,
                    );
                }
            })
        })
    });
    group.bench_function("shardlet spawn+join", |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                for i in 0..n {
                    black_box(
                        shardlet::spawn(async move {
                            yield_now().await;
                            i
                        })
                        .await
                        .unwrap(),
                    );
                }
            })
        })
    });
    group.finish();
}

/// imap over 100k items, pool of 1000, against the same work as a
/// hand-written window of raw glommio tasks; items that finish at once, and
/// items that wait once.
fn imap(c: &mut Criterion) {
    imap_group(c, "imap_100k", false);
    imap_group(c, "imap_100k_waiting_once", true);
}

fn imap_group(c: &mut Criterion, name: &str, wait: bool) {
    const ITEMS: u64 = 100_000;
    let ex = executor();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("shardlet imap", "pool=1000"), |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                let pool = GreenPool::new(1000);
                for _ in 0..n {
                    let sum = pool
                        .imap(0..ITEMS, |i| work(i, wait))
                        .fold(0u64, |acc, r| acc + r.unwrap())
                        .await;
                    black_box(sum);
                }
            })
        })
    });
    group.bench_function(BenchmarkId::new("raw glommio window", "1000"), |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                for _ in 0..n {
                    let mut window = std::collections::VecDeque::with_capacity(1000);
                    let mut sum = 0u64;
                    for i in 0..ITEMS {
                        if window.len() == 1000 {
                            let t: glommio::task::JoinHandle<u64> = window.pop_front().unwrap();
                            sum += t.await.unwrap();
                        }
                        window.push_back(glommio::spawn_local(work(i, wait)).detach());
                    }
                    for t in window {
                        sum += t.await.unwrap();
                    }
                    black_box(sum);
                }
            })
        })
    });
    group.finish();
}

/// One work item: `i`, at once or after waiting once.
async fn work(i: u64, wait: bool) -> u64 {
    if wait {
        yield_now().await;
    }
    i
}

/// Fill a pile with 1000 tasks and drain it; tasks that finish at once,
/// and tasks that wait once.
fn pile(c: &mut Criterion) {
    pile_group(c, "pile_fill_drain_1000", false);
    pile_group(c, "pile_fill_drain_1000_waiting_once", true);
}

fn pile_group(c: &mut Criterion, name: &str, wait: bool) {
    const TASKS: u64 = 1000;
    let ex = executor();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function("shardlet GreenPile", |b| {
        let pool = GreenPool::new(1000);
        b.iter_custom(|iters| {
            let pool = pool.clone();
            timed(&ex, iters, |n| async move {
                for _ in 0..n {
                    let mut pile = GreenPile::new(&pool);
                    for i in 0..TASKS {
                        pile.spawn(work(i, wait)).await;
                    }
                    black_box(pile.fold(0u64, |acc, r| acc + r.unwrap()).await);
                }
            })
        })
    });
    group.bench_function("raw glommio Vec<JoinHandle>", |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                for _ in 0..n {
                    let handles: Vec<_> = (0..TASKS)
                        .map(|i| glommio::spawn_local(work(i, wait)).detach())
                        .collect();
                    let mut sum = 0;
                    for h in handles {
                        sum += h.await.unwrap();
                    }
                    black_box(sum);
                }
            })
        })
    });
    group.finish();
}

async fn wait_for(done: &Cell<u64>, n: u64) {
    while done.get() < n {
        glommio::executor().yield_task_queue_now().await;
    }
}

/// `spawn_detached` on a shard of a shardlet runtime: tasks counted and
/// polls timed for the runtime's metrics.
fn spawn_detached_on_a_shard(c: &mut Criterion) {
    let runtime = shardlet::Runtime::new(
        shardlet::Config::default()
            .with_shards(1)
            .with_pin(false)
            .with_io_memory(1 << 20),
    )
    .expect("a runtime for the bench");
    let handle = runtime
        .start(|| async { shardlet::shard::stopped().await })
        .expect("the bench shard starts");
    let mesh = handle.mesh();
    // Runs the spawn loop on the shard; its elapsed time comes back.
    let on_shard = |n: u64, raw: bool| -> Duration {
        futures_lite::future::block_on(mesh.submit_to(0, move || async move {
            let start = Instant::now();
            let done = Rc::new(Cell::new(0u64));
            for _ in 0..n {
                let done = done.clone();
                let task = async move { done.set(done.get() + 1) };
                if raw {
                    glommio::spawn_local(task).detach();
                } else {
                    shardlet::spawn_n(task);
                }
            }
            wait_for(&done, n).await;
            start.elapsed()
        }))
        .expect("the bench shard answers")
    };
    let mut group = c.benchmark_group("spawn_detached_on_a_shard");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw glommio spawn_local+detach", |b| {
        b.iter_custom(|n| on_shard(n, true))
    });
    group.bench_function("shardlet spawn_n", |b| b.iter_custom(|n| on_shard(n, false)));
    group.finish();
    handle.stop(Duration::from_secs(1));
    handle.join().expect("the bench shard ends");
}

criterion_group!(
    benches,
    spawn_detached,
    spawn_detached_on_a_shard,
    spawn_join,
    imap,
    pile
);

/// Each shardlet row and the raw-glommio row it is compared with.
const PAIRS: &[(&str, &str, &str)] = &[
    (
        "spawn_detached",
        "shardlet spawn_n",
        "raw glommio spawn_local+detach",
    ),
    (
        "spawn_detached_on_a_shard",
        "shardlet spawn_n",
        "raw glommio spawn_local+detach",
    ),
    (
        "spawn_join",
        "shardlet spawn+join",
        "raw glommio spawn_local+await",
    ),
    (
        "spawn_join",
        "shardlet GreenPool::spawn+join",
        "raw glommio spawn_local+await",
    ),
    (
        "spawn_join_waiting_once",
        "shardlet spawn+join",
        "raw glommio spawn_local+await",
    ),
    ("imap_100k", "shardlet imap/pool=1000", "raw glommio window/1000"),
    (
        "imap_100k_waiting_once",
        "shardlet imap/pool=1000",
        "raw glommio window/1000",
    ),
    (
        "pile_fill_drain_1000",
        "shardlet GreenPile",
        "raw glommio Vec<JoinHandle>",
    ),
    (
        "pile_fill_drain_1000_waiting_once",
        "shardlet GreenPile",
        "raw glommio Vec<JoinHandle>",
    ),
];

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio_table();
}

/// Criterion's median estimate for `group/bench`, in ns, from this run's files.
fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let dir = |s: &str| s.replace(['/', '<', '>', ':'], "_");
    let mut path =
        std::path::PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    path.push("criterion");
    path.push(dir(group));
    for part in bench.split('/') {
        path.push(dir(part));
    }
    path.push("new/estimates.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// Prints the ratio table (and writes it into a file when asked).
fn ratio_table() {
    let mut table = String::from("| measurement | shardlet | raw glommio | ratio |\n|---|---:|---:|---:|\n");
    for (group, ours, raw) in PAIRS {
        let (Some(a), Some(b)) = (median_ns(group, ours), median_ns(group, raw)) else {
            return; // not a full run (a filter, or test mode): no table
        };
        table += &format!(
            "| {group}: {ours} vs {raw} | {} | {} | {:.2} |\n",
            fmt_ns(a),
            fmt_ns(b),
            a / b
        );
    }
    println!("\nshardlet / raw glommio (criterion medians, this run):\n\n{table}");
    if let Ok(file) = std::env::var("GREEN_BENCH_WRITE") {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let (begin, end) = ("<!-- green-bench:begin -->\n", "<!-- green-bench:end -->");
        let updated = match (text.find(begin), text.find(end)) {
            (Some(i), Some(j)) if i < j => format!("{}{begin}{table}{}", &text[..i], &text[j..]),
            _ => format!("{text}\n{begin}{table}{end}\n"),
        };
        std::fs::write(&file, updated).expect("cannot write the ratio table");
        println!("(written to {file})");
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}
