//! `GreenPool::imap` and `starmap`: results in input order under random task
//! durations, at most `size` calls running at once, counted against the same
//! pool as `spawn`, memory bounded by the pool size over 100k inputs, panics
//! as `Err` at their position, and dropping the stream cancels the calls in
//! flight.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::StreamExt;
use shardlet::{sleep, spawn, timeout, GreenPool, JoinError};
use util::{run1, settle, wait_until, Counter, Gate, Meter};

/// A seed from the clock, printed so a failing order can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("SHARDLET_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("SHARDLET_TEST_SEED={seed}");
    seed
}

#[test]
fn results_in_input_order_under_random_sleeps() {
    let seed = seed();
    run1(move || async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let delays: Vec<u64> = (0..200).map(|_| rng.u64(0..4)).collect();
        let pool = GreenPool::new(16);
        let got: Vec<(usize, u64)> = pool
            .imap(delays.clone().into_iter().enumerate(), |(i, ms)| async move {
                sleep(Duration::from_millis(ms)).await;
                (i, ms * 10)
            })
            .map(Result::unwrap)
            .collect()
            .await;
        let want: Vec<(usize, u64)> = delays.iter().enumerate().map(|(i, ms)| (i, ms * 10)).collect();
        assert_eq!(got, want, "seed {seed}");
    });
}

#[test]
fn results_in_input_order_when_calls_finish_out_of_order() {
    // Random numbers of yields: completions are thoroughly shuffled.
    let seed = seed();
    run1(move || async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let yields: Vec<u32> = (0..3000).map(|_| rng.u32(0..30)).collect();
        let finished = Rc::new(std::cell::RefCell::new(Vec::new()));
        let pool = GreenPool::new(32);
        let got: Vec<usize> = pool
            .imap(yields.into_iter().enumerate(), |(i, n)| {
                let finished = finished.clone();
                async move {
                    for _ in 0..n {
                        futures_lite::future::yield_now().await;
                    }
                    finished.borrow_mut().push(i);
                    i
                }
            })
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(got, (0..3000).collect::<Vec<_>>(), "seed {seed}");
        let finished = finished.borrow();
        assert!(
            finished.windows(2).any(|w| w[0] > w[1]),
            "calls finished in order: the test did not exercise reordering"
        );
    });
}

#[test]
fn at_most_size_calls_run_at_once() {
    let seed = seed();
    run1(move || async move {
        for size in [1, 3, 8] {
            let mut rng = fastrand::Rng::with_seed(seed);
            let pool = GreenPool::new(size);
            let meter = Meter::new();
            let delays: Vec<u64> = (0..60).map(|_| rng.u64(1..4)).collect();
            let n = pool
                .imap(delays, |ms| {
                    let meter = meter.clone();
                    async move {
                        let _in = meter.enter();
                        sleep(Duration::from_millis(ms)).await;
                    }
                })
                .count()
                .await;
            assert_eq!(n, 60);
            assert_eq!(meter.max(), size, "pool of {size} (seed {seed})");
            assert_eq!(pool.running(), 0);
        }
    });
}

#[test]
fn imap_workers_share_the_pool_with_spawn() {
    run1(|| async {
        let pool = GreenPool::new(4);
        // Two slots held by plain spawns: imap gets the other two.
        let gates: Vec<Gate> = (0..2).map(|_| Gate::new()).collect();
        let mut held = Vec::new();
        for g in &gates {
            let g = g.clone();
            held.push(pool.spawn(async move { g.wait().await }).await);
        }
        let meter = Meter::new();
        let most_running = Rc::new(Cell::new(0));
        let out: Vec<u32> = pool
            .imap(0..20u32, |i| {
                let (meter, pool, most) = (meter.clone(), pool.clone(), most_running.clone());
                async move {
                    let _in = meter.enter();
                    most.set(most.get().max(pool.running()));
                    sleep(Duration::from_millis(1)).await;
                    i
                }
            })
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(out, (0..20).collect::<Vec<_>>());
        assert_eq!(meter.max(), 2, "imap ignored the slots held by spawn");
        assert_eq!(most_running.get(), 4);
        for g in gates {
            g.open();
        }
        for t in held {
            t.await.unwrap();
        }
    });
}

/// The client pattern with the consumer using the pool too: between
/// results it spawns into the same pool. The stream's slot request must not
/// stay queued while the consumer is away, or the pool's one slot is granted
/// to a stream nobody polls and the consumer's spawn waits forever.
#[test]
fn a_consumer_may_spawn_into_the_pool_between_results() {
    for size in [1, 2] {
        let got = run1(move || async move {
            let pool = GreenPool::new(size);
            let mut results = pool.imap(0..10u32, |i| async move {
                sleep(Duration::from_millis(1)).await;
                i
            });
            let mut got = Vec::new();
            loop {
                let next = timeout(Duration::from_secs(10), results.next())
                    .await
                    .unwrap_or_else(|_| panic!("pool of {size}: no next result in 10 s after {got:?}"));
                let Some(result) = next else { break };
                got.push(result.unwrap());
                timeout(
                    Duration::from_secs(10),
                    pool.spawn_n(async { sleep(Duration::from_millis(2)).await }),
                )
                .await
                .unwrap_or_else(|_| panic!("pool of {size}: spawn_n got no slot in 10 s after {got:?}"));
            }
            drop(results);
            timeout(Duration::from_secs(10), pool.waitall())
                .await
                .expect("the pool empties");
            got
        });
        assert_eq!(got, (0..10).collect::<Vec<_>>(), "pool of {size}");
    }
}

#[test]
fn a_running_imap_makes_spawn_wait() {
    run1(|| async {
        let pool = GreenPool::new(3);
        let gate = Gate::new();
        let consumer = spawn({
            let (pool, gate) = (pool.clone(), gate.clone());
            async move {
                pool.imap(0..10, |i| {
                    let gate = gate.clone();
                    async move {
                        gate.wait().await;
                        i
                    }
                })
                .map(Result::unwrap)
                .collect::<Vec<i32>>()
                .await
            }
        });
        wait_until("imap fills the pool", || pool.running() == 3).await;
        assert_eq!(pool.free(), 0);
        let spawned = Counter::new();
        let queued_before = pool.waiting(); // imap itself may be queued for a slot
        let spawner = spawn({
            let (pool, spawned) = (pool.clone(), spawned.clone());
            async move { pool.spawn(async move { spawned.inc() }).await.await }
        });
        wait_until("the spawner queues", || pool.waiting() == queued_before + 1).await;
        settle().await;
        assert_eq!(spawned.get(), 0, "spawn ran past imap's workers");
        gate.open();
        assert_eq!(consumer.await.unwrap(), (0..10).collect::<Vec<_>>());
        spawner.await.unwrap().unwrap();
        assert_eq!(spawned.get(), 1);
    });
}

/// Live instances of a tracked value, and the most there ever were.
#[derive(Clone, Default)]
struct Live {
    now: Rc<Cell<usize>>,
    max: Rc<Cell<usize>>,
}

struct Tracked(Live);

impl Live {
    fn track(&self) -> Tracked {
        self.now.set(self.now.get() + 1);
        self.max.set(self.max.get().max(self.now.get()));
        Tracked(self.clone())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.now.set(self.0.now.get() - 1);
    }
}

#[test]
fn memory_stays_bounded_over_100k_items() {
    run1(|| async {
        const N: usize = 100_000;
        const SIZE: usize = 16;
        const SLACK: usize = 2;
        let pool = GreenPool::new(SIZE);
        let (pulled, consumed) = (Counter::new(), Counter::new());
        let (futures, results) = (Live::default(), Live::default());
        let mut max_outstanding = 0;
        let inputs = {
            let pulled = pulled.clone();
            (0..N).inspect(move |_| pulled.inc())
        };
        let mut stream = pool.imap(inputs, |i| {
            let (guard, results) = (futures.track(), results.clone());
            async move {
                let _alive = guard;
                if i % 1000 == 0 {
                    futures_lite::future::yield_now().await;
                }
                (i, results.track())
            }
        });
        while let Some(item) = stream.next().await {
            let (i, result) = item.unwrap();
            assert_eq!(i, consumed.get());
            drop(result);
            consumed.inc();
            let outstanding = pulled.get() - consumed.get();
            max_outstanding = max_outstanding.max(outstanding);
            assert!(
                outstanding <= SIZE + SLACK,
                "{outstanding} items pulled but not consumed at item {i}"
            );
        }
        assert_eq!((pulled.get(), consumed.get()), (N, N));
        assert!(
            futures.max.get() <= SIZE + SLACK,
            "{} futures alive at once",
            futures.max.get()
        );
        assert!(
            results.max.get() <= SIZE + SLACK,
            "{} results alive at once",
            results.max.get()
        );
        assert_eq!((futures.now.get(), results.now.get()), (0, 0));
        assert!(
            max_outstanding >= SIZE / 2,
            "imap never ran ahead: {max_outstanding}"
        );
    });
}

#[test]
fn a_slow_head_does_not_let_inputs_pile_up() {
    run1(|| async {
        const SIZE: usize = 8;
        let pool = GreenPool::new(SIZE);
        let pulled = Counter::new();
        let inputs = {
            let pulled = pulled.clone();
            (0..10_000u32).inspect(move |_| pulled.inc())
        };
        let mut stream = pool.imap(inputs, |i| async move {
            if i == 0 {
                sleep(Duration::from_millis(30)).await;
            }
            i
        });
        assert_eq!(stream.next().await.unwrap(), Ok(0));
        assert!(
            pulled.get() <= SIZE + 1,
            "{} inputs pulled behind a slow head",
            pulled.get()
        );
        assert_eq!(stream.count().await, 9_999);
    });
}

#[test]
fn a_panic_is_an_err_at_its_position() {
    run1(|| async {
        let pool = GreenPool::new(4);
        let got: Vec<Result<u32, JoinError>> = pool
            .imap(0..20u32, |i| async move {
                sleep(Duration::from_millis(u64::from(i % 3))).await;
                if i % 5 == 3 {
                    panic!("item {i} failed");
                }
                i
            })
            .collect()
            .await;
        assert_eq!(got.len(), 20);
        for (i, r) in got.into_iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(v as usize, i),
                Err(e) if e.is_panic() => {
                    let message = e.panic_message().unwrap_or_default();
                    assert_eq!(i % 5, 3, "unexpected panic at {i}: {message}");
                    assert_eq!(message, format!("item {i} failed"));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(pool.running(), 0);
    });
}

#[test]
fn starmap_spreads_tuples_over_the_arguments() {
    run1(|| async {
        let pool = GreenPool::new(3);
        let sums: Vec<i64> = pool
            .starmap((0..10i64).map(|i| (i, i * 10)), |a, b| async move {
                sleep(Duration::from_millis((10 - a) as u64 % 4)).await;
                a + b
            })
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(sums, (0..10).map(|i| i * 11).collect::<Vec<_>>());
        let joined: Vec<String> = pool
            .starmap([("a", 1, 'x'), ("b", 2, 'y')], |s, n, c| async move {
                format!("{s}{n}{c}")
            })
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(joined, ["a1x", "b2y"]);
    });
}

#[test]
fn empty_input_ends_at_once() {
    run1(|| async {
        let pool = GreenPool::new(2);
        let mut stream = pool.imap(std::iter::empty::<u8>(), |x| async move { x });
        let next = timeout(Duration::from_millis(500), stream.next()).await;
        assert_eq!(next, Ok(None));
    });
}

#[test]
fn dropping_the_stream_cancels_calls_in_flight() {
    run1(|| async {
        let pool = GreenPool::new(4);
        let (started, finished, dropped) = (Counter::new(), Counter::new(), Counter::new());
        let mut stream = pool.imap(0..100, |_| {
            let (started, finished, dropped) = (started.clone(), finished.clone(), dropped.clone());
            async move {
                let _guard = OnDrop(move || dropped.inc());
                started.inc();
                sleep(Duration::from_secs(30)).await;
                finished.inc();
            }
        });
        assert!(timeout(Duration::from_millis(20), stream.next()).await.is_err());
        assert_eq!(started.get(), 4, "the pool was not filled");
        drop(stream);
        wait_until("the calls are cancelled", || pool.running() == 0).await;
        assert_eq!(dropped.get(), started.get(), "a call kept running after the drop");
        assert_eq!(finished.get(), 0);
        assert_eq!(pool.free(), 4);
    });
}

#[test]
fn imap_from_a_member_of_a_full_pool_runs_inline() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let p = pool.clone();
        let task = pool
            .spawn(async move {
                p.imap(0..5u32, |i| async move {
                    sleep(Duration::from_millis(1)).await;
                    i * i
                })
                .map(Result::unwrap)
                .collect::<Vec<_>>()
                .await
            })
            .await;
        let got = timeout(Duration::from_secs(5), task)
            .await
            .expect("imap deadlocked");
        assert_eq!(got, Ok(vec![0, 1, 4, 9, 16]));
    });
}

#[test]
fn nested_imap_in_a_small_pool_does_not_deadlock() {
    run1(|| async {
        let pool = GreenPool::new(2);
        let p = pool.clone();
        let rows: Vec<Vec<u32>> = timeout(
            Duration::from_secs(5),
            pool.imap(0..4u32, move |row| {
                let p = p.clone();
                async move {
                    p.imap(0..3u32, move |col| async move { row * 10 + col })
                        .map(Result::unwrap)
                        .collect::<Vec<_>>()
                        .await
                }
            })
            .map(Result::unwrap)
            .collect(),
        )
        .await
        .expect("nested imap deadlocked");
        assert_eq!(
            rows,
            (0..4)
                .map(|r| (0..3).map(|c| r * 10 + c).collect())
                .collect::<Vec<Vec<u32>>>()
        );
    });
}

/// Runs a closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// A closure that panics while *making* its future (before any await) is that
/// call's result, at its position, just like a panic inside the future.
#[test]
fn a_closure_panicking_before_its_future_is_an_err_at_its_position() {
    let got = run1(|| async {
        let pool = GreenPool::new(4);
        pool.imap(0..5u32, |i| {
            if i == 2 {
                panic!("no future for {i}");
            }
            async move { i * 10 }
        })
        .collect::<Vec<_>>()
        .await
    });
    assert_eq!(got.len(), 5);
    for (i, r) in got.iter().enumerate() {
        if i == 2 {
            let err = r.as_ref().unwrap_err();
            assert!(
                err.is_panic() && err.to_string().contains("no future for 2"),
                "{err}"
            );
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u32 * 10)));
        }
    }
}
