//! Micro-costs of shardlet's green threads against raw glommio, in one run.
//!
//! Run with: `cargo bench --bench green` (add `-- --quick` for a short pass;
//! `GREEN_BENCH_ROUNDS=N` repeats the whole set N times, each round starting
//! one group later, and reports medians with the ratio's range).
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

use criterion::{BenchmarkId, Criterion, Throughput};
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
    // The pool's promise (at most `size` tasks at once) written by hand:
    // each task holds a permit of glommio's own semaphore.
    group.bench_function("raw glommio spawn_local+await holding a Semaphore permit", |b| {
        let limit = Rc::new(glommio::sync::Semaphore::new(1000));
        b.iter_custom(|iters| {
            let limit = limit.clone();
            timed(&ex, iters, |n| async move {
                for i in 0..n {
                    let permit = limit
                        .acquire_static_permit(1)
                        .await
                        .expect("the semaphore is open");
                    black_box(
                        glommio::spawn_local(async move {
                            let _permit = permit;
                            i
                        })
                        .await,
                    );
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

/// The groups, in the order of the first round (later rounds rotate it).
const GROUPS: &[fn(&mut Criterion)] = &[spawn_detached, spawn_detached_on_a_shard, spawn_join, imap, pile];

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
        "spawn_join",
        "shardlet GreenPool::spawn+join",
        "raw glommio spawn_local+await holding a Semaphore permit",
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
    let rounds = match std::env::var("GREEN_BENCH_ROUNDS") {
        Err(_) => 1,
        Ok(text) => match text.parse::<usize>() {
            Ok(n @ 1..=20) => n,
            _ => {
                eprintln!("GREEN_BENCH_ROUNDS={text:?}: expected a whole number from 1 to 20");
                std::process::exit(2);
            }
        },
    };
    // Per pair: (shardlet ns, raw ns) of each round.
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); PAIRS.len()];
    for round in 0..rounds {
        let mut c = Criterion::default().configure_from_args();
        // Each round starts one group later, so no group always runs first
        // (on a warm or a cold machine).
        for k in 0..GROUPS.len() {
            GROUPS[(round + k) % GROUPS.len()](&mut c);
        }
        for (pair, runs) in PAIRS.iter().zip(&mut runs) {
            let (group, ours, raw) = pair;
            if let (Some(a), Some(b)) = (median_ns(group, ours), median_ns(group, raw)) {
                runs.push((a, b));
            }
        }
    }
    Criterion::default().configure_from_args().final_summary();
    ratio_table(&runs, rounds);
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

/// The median of `values` (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Prints the ratio table (and writes it into a file when asked): per row,
/// the medians over the rounds of each side's criterion median, and the
/// median ratio with its range.
fn ratio_table(runs: &[Vec<(f64, f64)>], rounds: usize) {
    if runs.iter().any(|r| r.len() < rounds) {
        return; // not a full run (a filter, or test mode): no table
    }
    let mut table = String::from("| measurement | shardlet | raw glommio | ratio |\n|---|---:|---:|---:|\n");
    for ((group, ours, raw), runs) in PAIRS.iter().zip(runs) {
        let ratios: Vec<f64> = runs.iter().map(|(a, b)| a / b).collect();
        let (low, high) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
        let ratio = if rounds > 1 {
            format!("{:.2} [{low:.2}-{high:.2}]", median(ratios))
        } else {
            format!("{:.2}", median(ratios))
        };
        table += &format!(
            "| {group}: {ours} vs {raw} | {} | {} | {ratio} |\n",
            fmt_ns(median(runs.iter().map(|r| r.0).collect())),
            fmt_ns(median(runs.iter().map(|r| r.1).collect())),
        );
    }
    println!("\nshardlet / raw glommio (medians of criterion medians over {rounds} round(s); ratio: median [min-max]):\n\n{table}");
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
