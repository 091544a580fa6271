//! Micro-costs of shardlet's green threads against raw glommio, in one run.
//!
//! Run with: `cargo bench --bench green` (add `-- --quick` for a short pass).
//!
//! Every measurement runs on one glommio executor on the bench thread, so
//! the shardlet figures and their raw-glommio baselines share the machine
//! state; compare the ratios, not the absolute times. The
//! `spawn_detached_on_a_shard` group runs the same spawn loop on a shard of
//! a shardlet `Runtime` instead (sent there with `Mesh::submit_to`), where
//! the per-shard metrics count every task and time every poll: its ratio
//! against the plain executor's shows what the metrics cost.

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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
}

/// imap over 100k trivial items, pool of 1000, against the same work as a
/// hand-written window of raw glommio tasks.
fn imap(c: &mut Criterion) {
    const ITEMS: u64 = 100_000;
    let ex = executor();
    let mut group = c.benchmark_group("imap_100k");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("shardlet imap", "pool=1000"), |b| {
        b.iter_custom(|iters| {
            timed(&ex, iters, |n| async move {
                let pool = GreenPool::new(1000);
                for _ in 0..n {
                    let sum = pool
                        .imap(0..ITEMS, |i| async move { i })
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
                        window.push_back(glommio::spawn_local(async move { i }).detach());
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

/// Fill a pile with 1000 trivial tasks and drain it.
fn pile(c: &mut Criterion) {
    const TASKS: u64 = 1000;
    let ex = executor();
    let mut group = c.benchmark_group("pile_fill_drain_1000");
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function("shardlet GreenPile", |b| {
        let pool = GreenPool::new(1000);
        b.iter_custom(|iters| {
            let pool = pool.clone();
            timed(&ex, iters, |n| async move {
                for _ in 0..n {
                    let mut pile = GreenPile::new(&pool);
                    for i in 0..TASKS {
                        pile.spawn(async move { i }).await;
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
                        .map(|i| glommio::spawn_local(async move { i }).detach())
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
criterion_main!(benches);
