//! Micro-costs of shardlet's green threads against raw glommio, in one run.
//!
//! Run with: `cargo bench --bench green` (add `-- --quick` for a short
//! criterion pass). It has two parts:
//!
//! 1. **criterion**, each side of each row on its own (absolute times,
//!    criterion's statistics and reports);
//! 2. **the ratio table, from interleaved pairs.** On a shared or virtual
//!    machine the speed of the same code drifts for seconds at a time, and a
//!    drift does not move both sides alike, so two criterion runs made
//!    seconds apart do not give a sound ratio. Each row is measured instead
//!    as many pairs of batches run back to back, the shardlet side first in
//!    every other pair (each batch about 2 ms), and the rows take turns, so
//!    every row's pairs spread over the whole measurement. A row's ratio is
//!    the median of its pairs' ratios, with their 10th-90th percentiles.
//!    `GREEN_BENCH_PAIRS=N` sets the pairs per row (default 300; 0 skips
//!    this part, which a criterion filter does not); with
//!    `GREEN_BENCH_WRITE=BENCHMARKS.md` the table is also written into that
//!    file (between its `green-bench` markers). Under `cargo test` (no
//!    `--bench`, or `--test`) both parts run once, as a check: 2 pairs of
//!    one operation, and no file written.
//!
//! `--run GROUP SIDE N` runs one side once, for N operations, and nothing
//! else; `--rows` lists the rows it can run (all but
//! `spawn_detached_on_a_shard`, whose shard is not started then) with each
//! row's work items per operation. `scripts/green-instructions.sh` uses
//! them to count each row's instructions per work item with callgrind
//! (exact, where the timings drift).
//!
//! Every measurement runs on one glommio executor on the bench thread, so
//! the shardlet figures and their raw-glommio baselines share the machine
//! state; compare the ratios, not the absolute times. Each work item comes
//! in two kinds: one that finishes in its first step, and one that waits
//! once (`yield_now`) before it finishes, as real work (I/O, timers) does;
//! `spawn_join_half_kib` spawns a larger future (0.5 KiB, owning an `Rc`).
//! The `spawn_detached_on_a_shard` group runs the `spawn_detached` loop on
//! a shard of a shardlet `Runtime` instead (sent there with
//! `Mesh::submit_to`), where the per-shard metrics count every task and
//! time every executor poll: its ratio next to `spawn_detached`'s shows
//! what the metrics cost.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures_lite::future::yield_now;
use futures_lite::StreamExt;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use shardlet::{GreenPile, GreenPool};

/// One side of a row: runs `n` operations and returns how long they took.
type Side<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// A criterion group: its sides, each timed alone.
struct Group<'a> {
    name: &'static str,
    /// Work items per operation (criterion's throughput).
    items: u64,
    sample_size: usize,
    sides: Vec<(&'static str, Side<'a>)>,
}

/// Each shardlet row and the raw-glommio side it is compared with, by
/// group and side name.
const ROWS: &[(&str, &str, &str)] = &[
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
    (
        "spawn_join_half_kib",
        "shardlet spawn+join",
        "raw glommio spawn_local+await",
    ),
    (
        "spawn_join_half_kib",
        "shardlet GreenPool::spawn+join",
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

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("cannot build a glommio executor for the bench")
}

/// A side that runs `body(n)` on the executor and times it.
fn on<'a, F, Fut>(ex: &'a LocalExecutor, body: F) -> Side<'a>
where
    F: Fn(u64) -> Fut + 'a,
    Fut: Future<Output = ()>,
{
    Box::new(move |n| {
        ex.run(async {
            let start = Instant::now();
            body(n).await;
            start.elapsed()
        })
    })
}

/// Fire-and-forget: spawn `n` tasks, then wait until all have run.
fn spawn_detached(ex: &LocalExecutor) -> Group<'_> {
    Group {
        name: "spawn_detached",
        items: 1,
        sample_size: 100,
        sides: vec![
            (
                "raw glommio spawn_local+detach",
                on(ex, |n| async move {
                    let done = Rc::new(Cell::new(0u64));
                    for _ in 0..n {
                        let done = done.clone();
                        glommio::spawn_local(async move { done.set(done.get() + 1) }).detach();
                    }
                    wait_for(&done, n).await;
                }),
            ),
            (
                "shardlet spawn_n",
                on(ex, |n| async move {
                    let done = Rc::new(Cell::new(0u64));
                    for _ in 0..n {
                        let done = done.clone();
                        shardlet::spawn_n(async move { done.set(done.get() + 1) });
                    }
                    wait_for(&done, n).await;
                }),
            ),
        ],
    }
}

/// Spawn and await the result, one task at a time.
///
/// Each side's loop is written out, here and in the next groups: one helper
/// that took the future's maker as a closure changed the code around the
/// spawn, and shardlet's counts with it (spawn+join 649 -> 669 instructions,
/// GreenPool::spawn+join 707 -> 728; raw glommio's stayed at 526).
fn spawn_join(ex: &LocalExecutor) -> Group<'_> {
    let limit = Rc::new(glommio::sync::Semaphore::new(1000));
    let pool = GreenPool::new(1000);
    Group {
        name: "spawn_join",
        items: 1,
        sample_size: 100,
        sides: vec![
            (
                "raw glommio spawn_local+await",
                on(ex, |n| async move {
                    for i in 0..n {
                        black_box(glommio::spawn_local(async move { i }).await);
                    }
                }),
            ),
            (
                "shardlet spawn+join",
                on(ex, |n| async move {
                    for i in 0..n {
                        black_box(shardlet::spawn(async move { i }).await.unwrap());
                    }
                }),
            ),
            // The pool's promise (at most `size` tasks at once) written by
            // hand: each task holds a permit of glommio's own semaphore.
            (
                "raw glommio spawn_local+await holding a Semaphore permit",
                on(ex, move |n| {
                    let limit = limit.clone();
                    async move {
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
                    }
                }),
            ),
            (
                "shardlet GreenPool::spawn+join",
                on(ex, move |n| {
                    let pool = pool.clone();
                    async move {
                        for i in 0..n {
                            black_box(pool.spawn(async move { i }).await.await.unwrap());
                        }
                    }
                }),
            ),
        ],
    }
}

/// Spawn and await, each task waiting once before it finishes.
fn spawn_join_waiting_once(ex: &LocalExecutor) -> Group<'_> {
    Group {
        name: "spawn_join_waiting_once",
        items: 1,
        sample_size: 100,
        sides: vec![
            (
                "raw glommio spawn_local+await",
                on(ex, |n| async move {
                    for i in 0..n {
                        black_box(glommio::spawn_local(work(i, true)).await);
                    }
                }),
            ),
            (
                "shardlet spawn+join",
                on(ex, |n| async move {
                    for i in 0..n {
                        black_box(shardlet::spawn(work(i, true)).await.unwrap());
                    }
                }),
            ),
        ],
    }
}

/// Spawn and await a 0.5 KiB future that owns an `Rc`: a larger future with
/// a destructor, as most real tasks are. (glommio moves a future that has no
/// destructor through its spawn by reference, and copies one that has at
/// each layer; a shardlet task always has one: BENCHMARKS.md.)
fn spawn_join_half_kib(ex: &LocalExecutor) -> Group<'_> {
    let pool = GreenPool::new(1000);
    let owned = Rc::new(Cell::new(1u64));
    // The future, built the same way on every side.
    fn half_kib(i: u64, owned: &Rc<Cell<u64>>) -> impl Future<Output = u64> + 'static {
        let data = [i; 64];
        let owned = owned.clone();
        async move { black_box(&data)[3] + owned.get() }
    }
    let sides: Vec<(&'static str, Side<'_>)> = vec![
        ("raw glommio spawn_local+await", {
            let owned = owned.clone();
            on(ex, move |n| {
                let owned = owned.clone();
                async move {
                    for i in 0..n {
                        black_box(glommio::spawn_local(half_kib(i, &owned)).await);
                    }
                }
            })
        }),
        ("shardlet spawn+join", {
            let owned = owned.clone();
            on(ex, move |n| {
                let owned = owned.clone();
                async move {
                    for i in 0..n {
                        black_box(shardlet::spawn(half_kib(i, &owned)).await.unwrap());
                    }
                }
            })
        }),
        (
            "shardlet GreenPool::spawn+join",
            on(ex, move |n| {
                let (pool, owned) = (pool.clone(), owned.clone());
                async move {
                    for i in 0..n {
                        black_box(pool.spawn(half_kib(i, &owned)).await.await.unwrap());
                    }
                }
            }),
        ),
    ];
    Group {
        name: "spawn_join_half_kib",
        items: 1,
        sample_size: 100,
        sides,
    }
}

/// imap over 100k items, pool of 1000, against the same work as a
/// hand-written window of raw glommio tasks.
fn imap<'a>(ex: &'a LocalExecutor, name: &'static str, wait: bool) -> Group<'a> {
    const ITEMS: u64 = 100_000;
    Group {
        name,
        items: ITEMS,
        sample_size: 10,
        sides: vec![
            (
                "shardlet imap/pool=1000",
                on(ex, move |n| async move {
                    let pool = GreenPool::new(1000);
                    for _ in 0..n {
                        let sum = pool
                            .imap(0..ITEMS, |i| work(i, wait))
                            .fold(0u64, |acc, r| acc + r.unwrap())
                            .await;
                        black_box(sum);
                    }
                }),
            ),
            (
                "raw glommio window/1000",
                on(ex, move |n| async move {
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
                }),
            ),
        ],
    }
}

/// Fill a pile with 1000 tasks and drain it.
fn pile<'a>(ex: &'a LocalExecutor, name: &'static str, wait: bool) -> Group<'a> {
    const TASKS: u64 = 1000;
    let pool = GreenPool::new(1000);
    Group {
        name,
        items: TASKS,
        sample_size: 100,
        sides: vec![
            (
                "shardlet GreenPile",
                on(ex, move |n| {
                    let pool = pool.clone();
                    async move {
                        for _ in 0..n {
                            let mut pile = GreenPile::new(&pool);
                            for i in 0..TASKS {
                                pile.spawn(work(i, wait)).await;
                            }
                            black_box(pile.fold(0u64, |acc, r| acc + r.unwrap()).await);
                        }
                    }
                }),
            ),
            (
                "raw glommio Vec<JoinHandle>",
                on(ex, move |n| async move {
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
                }),
            ),
        ],
    }
}

/// One work item: `i`, at once or after waiting once.
async fn work(i: u64, wait: bool) -> u64 {
    if wait {
        yield_now().await;
    }
    i
}

async fn wait_for(done: &Cell<u64>, n: u64) {
    while done.get() < n {
        glommio::executor().yield_task_queue_now().await;
    }
}

/// The group that runs on a shard of a shardlet runtime.
const ON_A_SHARD: &str = "spawn_detached_on_a_shard";

/// `spawn_detached` on a shard of a shardlet runtime: tasks counted and
/// polls timed for the runtime's metrics.
fn spawn_detached_on_a_shard(mesh: &shardlet::Mesh) -> Group<'_> {
    // Runs the spawn loop on the shard; its elapsed time comes back.
    let on_shard = |raw: bool| -> Side<'_> {
        Box::new(move |n| {
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
        })
    };
    Group {
        name: ON_A_SHARD,
        items: 1,
        sample_size: 100,
        sides: vec![
            ("raw glommio spawn_local+detach", on_shard(true)),
            ("shardlet spawn_n", on_shard(false)),
        ],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `--rows`: the rows `--run` can run, one per line (group, shardlet
    // side, raw side, work items per operation; tab-separated), for
    // scripts/green-instructions.sh: all but the one that needs a shard
    // (see below).
    let listing = args.iter().any(|a| a == "--rows");
    // `--run GROUP SIDE N`: runs that side once, for N operations, and
    // nothing else (for an instruction count: scripts/green-instructions.sh).
    let run = args.iter().position(|a| a == "--run").map(|i| {
        let arg = |k: usize| args.get(i + k).map(String::as_str).unwrap_or_default();
        let n = arg(3).parse::<u64>().unwrap_or_else(|_| {
            eprintln!("--run GROUP SIDE N: N must be a whole number, not {:?}", arg(3));
            std::process::exit(2);
        });
        (arg(1).to_owned(), arg(2).to_owned(), n)
    });
    // `cargo bench` passes `--bench`; `cargo test` (which runs this once, to
    // check it works) does not.
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let pairs = match std::env::var("GREEN_BENCH_PAIRS") {
        Err(_) if benching => 300,
        Err(_) => 2,
        Ok(text) => match text.parse::<usize>() {
            Ok(n @ 0..=100_000) => n,
            _ => {
                eprintln!("GREEN_BENCH_PAIRS={text:?}: expected a whole number from 0 to 100000");
                std::process::exit(2);
            }
        },
    };
    // The shard for `spawn_detached_on_a_shard`; not under `--run`: under
    // callgrind, a shard that parks blocks in `io_uring_enter` holding
    // valgrind's lock, and the bench thread never runs again.
    let shard = (run.is_none() && !listing).then(|| {
        let runtime = shardlet::Runtime::new(
            shardlet::Config::default()
                .with_shards(1)
                .with_pin(false)
                .with_io_memory(1 << 20),
        )
        .expect("a runtime for the bench");
        runtime
            .start(|| async { shardlet::shard::stopped().await })
            .expect("the bench shard starts")
    });
    let mesh = shard.as_ref().map(|handle| handle.mesh());
    let ex = executor();
    let mut groups = vec![
        spawn_detached(&ex),
        spawn_join(&ex),
        spawn_join_waiting_once(&ex),
        spawn_join_half_kib(&ex),
        imap(&ex, "imap_100k", false),
        imap(&ex, "imap_100k_waiting_once", true),
        pile(&ex, "pile_fill_drain_1000", false),
        pile(&ex, "pile_fill_drain_1000_waiting_once", true),
    ];
    groups.extend(mesh.as_ref().map(spawn_detached_on_a_shard));

    if listing {
        for (group, ours, raw) in ROWS.iter().filter(|r| r.0 != ON_A_SHARD) {
            let items = groups.iter().find(|g| g.name == *group).map_or(1, |g| g.items);
            println!("{group}\t{ours}\t{raw}\t{items}");
        }
    } else if let Some((group, side, n)) = run {
        let found = groups
            .iter_mut()
            .filter(|g| g.name == group)
            .flat_map(|g| g.sides.iter_mut())
            .find(|(name, _)| *name == side);
        let Some((_, side_fn)) = found else {
            eprintln!("--run: no side {side:?} in a group {group:?} (see --rows)");
            std::process::exit(2);
        };
        let took = side_fn(n);
        println!("{group}/{side}: {n} operations in {took:?}");
    } else {
        measure(&mut groups, pairs, benching);
    }
    drop(groups);
    if let Some(handle) = shard {
        handle.stop(Duration::from_secs(1));
        handle.join().expect("the bench shard ends");
    }
}

/// Criterion's runs of every side, then the table from interleaved pairs.
fn measure(groups: &mut [Group<'_>], pairs: usize, benching: bool) {
    let mut c = Criterion::default().configure_from_args();
    for group in groups.iter_mut() {
        let mut g = c.benchmark_group(group.name);
        g.throughput(Throughput::Elements(group.items));
        g.sample_size(group.sample_size);
        for (name, side) in &mut group.sides {
            g.bench_function(*name, |b| b.iter_custom(&mut *side));
        }
        g.finish();
    }
    c.final_summary();

    if pairs > 0 {
        let table = ratio_table(groups, pairs, benching);
        println!("\n{table}");
        if let (true, Ok(file)) = (benching, std::env::var("GREEN_BENCH_WRITE")) {
            write_table(&file, &table);
            println!("(written to {file})");
        }
    }
}

/// Measures every row as interleaved pairs (see the module docs) and
/// returns the table: per row, each side's median time per operation and
/// the median ratio with its 10th-90th percentiles.
fn ratio_table(groups: &mut [Group<'_>], pairs: usize, benching: bool) -> String {
    // Where each row's two sides are: (group, ours, raw) indices.
    let rows: Vec<(usize, usize, usize)> = ROWS
        .iter()
        .map(|(group, ours, raw)| {
            let g = groups
                .iter()
                .position(|g| g.name == *group)
                .expect("a row's group exists");
            let side = |name: &str| {
                groups[g]
                    .sides
                    .iter()
                    .position(|(n, _)| *n == name)
                    .expect("a row's side exists")
            };
            (g, side(ours), side(raw))
        })
        .collect();
    // Batch sizes: about 2 ms for the slower side (a few operations when
    // only checking that the bench works).
    let batches: Vec<u64> = rows
        .iter()
        .map(|&(g, a, b)| {
            let mut n = 1u64;
            while benching && n < 1 << 24 {
                let took = groups[g].sides[a].1(n).max(groups[g].sides[b].1(n));
                if took >= Duration::from_millis(2) {
                    break;
                }
                n *= 2;
            }
            n
        })
        .collect();
    let warm_up = if benching { 5 } else { 0 };
    let mut measured: Vec<Vec<(f64, f64)>> = vec![Vec::new(); rows.len()];
    for k in 0..warm_up + pairs {
        // The rows take turns, starting one later each time; within a
        // pair, the shardlet side runs first every other time.
        for r in 0..rows.len() {
            let row = (k + r) % rows.len();
            let (g, a, b) = rows[row];
            let n = batches[row];
            let per_op = |d: Duration| d.as_nanos() as f64 / n as f64;
            let (ours, raw) = if k % 2 == 0 {
                let ours = per_op(groups[g].sides[a].1(n));
                (ours, per_op(groups[g].sides[b].1(n)))
            } else {
                let raw = per_op(groups[g].sides[b].1(n));
                (per_op(groups[g].sides[a].1(n)), raw)
            };
            if k >= warm_up {
                measured[row].push((ours, raw));
            }
        }
    }
    let mut table =
        String::from("| measurement | shardlet | raw glommio | ratio [p10-p90] |\n|---|---:|---:|---:|\n");
    for ((group, ours, raw), pairs) in ROWS.iter().zip(measured) {
        let ratios: Vec<f64> = pairs.iter().map(|(a, b)| a / b).collect();
        table += &format!(
            "| {group}: {ours} vs {raw} | {} | {} | {:.2} [{:.2}-{:.2}] |\n",
            fmt_ns(percentile(pairs.iter().map(|p| p.0).collect(), 0.5)),
            fmt_ns(percentile(pairs.iter().map(|p| p.1).collect(), 0.5)),
            percentile(ratios.clone(), 0.5),
            percentile(ratios.clone(), 0.1),
            percentile(ratios, 0.9),
        );
    }
    format!("shardlet / raw glommio, per operation: medians over {pairs} interleaved pairs of batches:\n\n{table}")
}

/// The `q` quantile of `values` (not empty).
fn percentile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    // Between the two nearest ranks (the median of an even count is the
    // mean of the middle two).
    let at = (values.len() - 1) as f64 * q;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    values[low] + (values[high] - values[low]) * (at - low as f64)
}

/// Puts `table` between the `green-bench` markers of `file` (at its end if
/// it has none).
fn write_table(file: &str, table: &str) {
    let table = table.split_once("\n\n").map_or(table, |(_, t)| t);
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let (begin, end) = ("<!-- green-bench:begin -->\n", "<!-- green-bench:end -->");
    let updated = match (text.find(begin), text.find(end)) {
        (Some(i), Some(j)) if i < j => format!("{}{begin}{table}{}", &text[..i], &text[j..]),
        _ => format!("{text}\n{begin}{table}{end}\n"),
    };
    std::fs::write(file, updated).expect("cannot write the ratio table");
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
