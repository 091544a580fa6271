//! `GreenPile`: results in spawn order, an empty pile ends at once, a
//! consumer that stops waiting loses no result, panics as `Err` at their
//! position, the in-flight bound of a pile on a shared pool, `with_size`,
//! and spawns that take nothing until awaited.

mod util;

use std::time::Duration;

use futures_lite::Stream;
use futures_lite::StreamExt;
use shardlet::{sleep, spawn, timeout, GreenPile, GreenPool, JoinError, PileBound};
use util::{run1, settle, wait_until, Counter, Gate, Meter};

/// The pool behind a pool-bound pile.
fn pool_of<T: 'static>(pile: &GreenPile<T>) -> GreenPool {
    match pile.bound() {
        PileBound::Pool(pool) => pool.clone(),
        other => panic!("not bound to a pool: {other:?}"),
    }
}

#[test]
fn results_in_spawn_order_under_random_sleeps() {
    let seed = fastrand::u64(..);
    run1(move || async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut pile = GreenPile::with_size(8);
        for i in 0..60u64 {
            let ms = rng.u64(0..5);
            pile.spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                i
            })
            .await;
        }
        let got: Vec<u64> = pile.map(Result::unwrap).collect().await;
        assert_eq!(got, (0..60).collect::<Vec<_>>(), "seed {seed}");
    });
}

#[test]
fn collect_and_join_like_eventlet() {
    run1(|| async {
        let pool = GreenPool::new(4);
        let mut pile = GreenPile::new(&pool);
        for name in ["x", "y", "z"] {
            pile.spawn(async move {
                // The last one spawned finishes first.
                let ms = u64::from(b'z' - name.as_bytes()[0]) * 3;
                sleep(Duration::from_millis(ms)).await;
                format!("title of {name}")
            })
            .await;
        }
        assert_eq!((pile.len(), pile.is_empty()), (3, false));
        assert_eq!(pile.size_hint(), (3, Some(3)));
        let titles: Vec<String> = pile.map(Result::unwrap).collect().await;
        assert_eq!(titles.join("\n"), "title of x\ntitle of y\ntitle of z");
    });
}

/// A pile's `spawn` takes nothing until it is awaited: one dropped
/// unawaited adds no task and holds no slot.
#[test]
fn a_spawn_dropped_unawaited_adds_nothing() {
    run1(|| async {
        let mut pile: GreenPile<u8> = GreenPile::with_size(2);
        let pool = pool_of(&pile);
        let ran = Counter::new();
        let r = ran.clone();
        let spawn = pile.spawn(async move {
            r.inc();
            1
        });
        settle().await;
        assert_eq!((pool.running(), ran.get()), (0, 0));
        drop(spawn);
        assert_eq!((pile.len(), pool.running(), ran.get()), (0, 0, 0));
        pile.spawn(async { 2 }).await;
        assert_eq!(pile.next().await, Some(Ok(2)));
        assert_eq!((pile.len(), ran.get()), (0, 0));
    });
}

#[test]
fn an_empty_pile_ends_at_once() {
    run1(|| async {
        let mut pile: GreenPile<u8> = GreenPile::with_size(2);
        assert!(pile.is_empty());
        assert_eq!(timeout(Duration::from_millis(500), pile.next()).await, Ok(None));
        // Usable again after it ended.
        pile.spawn(async { 9 }).await;
        assert_eq!(
            timeout(Duration::from_millis(500), pile.next()).await,
            Ok(Some(Ok(9)))
        );
        assert_eq!(timeout(Duration::from_millis(500), pile.next()).await, Ok(None));
    });
}

#[test]
fn a_timeout_around_next_loses_no_result() {
    run1(|| async {
        let mut pile = GreenPile::with_size(4);
        let gate = Gate::new();
        let g = gate.clone();
        pile.spawn(async move {
            g.wait().await;
            "slow head"
        })
        .await;
        pile.spawn(async { "fast second" }).await;
        for _ in 0..3 {
            assert!(timeout(Duration::from_millis(5), pile.next()).await.is_err());
            assert_eq!(pile.len(), 2, "a timed-out next() took a result with it");
        }
        gate.open();
        assert_eq!(pile.next().await, Some(Ok("slow head")));
        assert_eq!(pile.next().await, Some(Ok("fast second")));
        assert_eq!(pile.next().await, None);
    });
}

#[test]
fn a_dropped_next_future_loses_no_result() {
    run1(|| async {
        let mut pile = GreenPile::with_size(2);
        let gate = Gate::new();
        let g = gate.clone();
        pile.spawn(async move {
            g.wait().await;
            1
        })
        .await;
        pile.spawn(async { 2 }).await;
        settle().await; // the second result is ready, the head is not
        drop(pile.next()); // never polled
        {
            // Polled while the head is pending (registers a waker), then dropped.
            let mut next = std::pin::pin!(pile.next());
            assert!(futures_lite::future::poll_once(&mut next).await.is_none());
        }
        assert_eq!(pile.len(), 2);
        gate.open();
        let all: Vec<i32> = pile.map(Result::unwrap).collect().await;
        assert_eq!(all, [1, 2]);
    });
}

#[test]
fn a_panic_is_an_err_at_its_position() {
    run1(|| async {
        let mut pile = GreenPile::with_size(3);
        for i in 0..9u32 {
            pile.spawn(async move {
                sleep(Duration::from_millis(u64::from(9 - i))).await;
                if i % 4 == 1 {
                    panic!("pile item {i}");
                }
                i
            })
            .await;
        }
        let got: Vec<Result<u32, JoinError>> = pile.collect().await;
        assert_eq!(got.len(), 9);
        for (i, r) in got.into_iter().enumerate() {
            if i % 4 == 1 {
                let message = r.as_ref().err().and_then(JoinError::panic_message);
                assert_eq!(message, Some(format!("pile item {i}").as_str()), "at {i}: {r:?}");
            } else {
                assert_eq!(r, Ok(i as u32));
            }
        }
    });
}

#[test]
fn a_pile_on_a_shared_pool_respects_its_bound() {
    run1(|| async {
        let pool = GreenPool::new(3);
        let meter = Meter::new();
        // One slot is held by an unrelated spawn for the first part of the run.
        let gate = Gate::new();
        let other = pool
            .spawn({
                let (gate, meter) = (gate.clone(), meter.clone());
                async move {
                    let _in = meter.enter();
                    gate.wait().await
                }
            })
            .await;
        let mut pile = GreenPile::new(&pool);
        for i in 0..30u64 {
            let meter = meter.clone();
            pile.spawn(async move {
                let _in = meter.enter();
                sleep(Duration::from_millis(1 + i % 3)).await;
                i
            })
            .await;
            assert!(pool.running() <= 3);
            if i == 15 {
                gate.open();
            }
        }
        let got: Vec<u64> = pile.map(Result::unwrap).collect().await;
        assert_eq!(got, (0..30).collect::<Vec<_>>());
        other.await.unwrap();
        assert_eq!(meter.entered(), 31);
        assert_eq!(
            meter.max(),
            3,
            "more than the pool's size ran at once (or it never filled)"
        );
    });
}

#[test]
fn spawn_on_a_full_pool_waits_and_a_given_up_spawn_leaves_no_trace() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let gate = Gate::new();
        let g = gate.clone();
        let holder = pool.spawn(async move { g.wait().await }).await;
        let mut pile = GreenPile::new(&pool);
        let ran = Counter::new();
        let r = ran.clone();
        let gave_up = timeout(Duration::from_millis(10), pile.spawn(async move { r.inc() })).await;
        assert!(gave_up.is_err(), "spawned into a full pool");
        assert_eq!((pile.len(), pool.waiting()), (0, 0));
        gate.open();
        holder.await.unwrap();
        let r = ran.clone();
        pile.spawn(async move { r.inc() }).await;
        assert_eq!(pile.next().await, Some(Ok(())));
        assert_eq!(ran.get(), 1, "the given-up spawn ran anyway");
    });
}

#[test]
fn with_size_owns_its_pool() {
    run1(|| async {
        // A full, unrelated pool does not hold the pile up.
        let busy = GreenPool::new(1);
        let gate = Gate::new();
        let g = gate.clone();
        let holder = busy.spawn(async move { g.wait().await }).await;

        let mut pile = GreenPile::with_size(2);
        assert_eq!(pool_of(&pile).size(), 2);
        let meter = Meter::new();
        for i in 0..10 {
            let meter = meter.clone();
            pile.spawn(async move {
                let _in = meter.enter();
                sleep(Duration::from_millis(1)).await;
                i
            })
            .await;
        }
        let got: Vec<i32> = timeout(Duration::from_secs(5), pile.map(Result::unwrap).collect())
            .await
            .unwrap();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(meter.max(), 2);
        gate.open();
        holder.await.unwrap();
    });
}

#[test]
#[should_panic(expected = "at least 1")]
fn with_size_zero_panics() {
    let _: GreenPile<()> = GreenPile::with_size(0);
}

#[test]
fn dropping_a_pile_detaches_its_tasks() {
    run1(|| async {
        let done = Counter::new();
        let gate = Gate::new();
        let mut pile = GreenPile::with_size(4);
        for _ in 0..3 {
            let (done, gate) = (done.clone(), gate.clone());
            pile.spawn(async move {
                gate.wait().await;
                done.inc();
            })
            .await;
        }
        let pool = pool_of(&pile);
        drop(pile);
        gate.open();
        wait_until("the detached tasks finish", || done.get() == 3).await;
        wait_until("their slots are free", || pool.running() == 0).await;
    });
}

#[test]
fn a_pile_filled_by_a_member_of_its_full_pool_does_not_deadlock() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let p = pool.clone();
        let task = pool
            .spawn(async move {
                let mut pile = GreenPile::new(&p);
                for i in 0..4 {
                    pile.spawn(async move { i * 2 }).await;
                }
                pile.map(Result::unwrap).collect::<Vec<_>>().await
            })
            .await;
        let got = timeout(Duration::from_secs(5), task).await.expect("deadlock");
        assert_eq!(got, Ok(vec![0, 2, 4, 6]));
    });
}

/// Eventlet lets a pile's green threads spawn follow-up work into the same
/// pile. Shared through an `Rc<RefCell<..>>`, each task adds the next after
/// a sleep, so from inside the pile driver's poll of it (its first step runs
/// inside `spawn`, while the spawner still holds the `RefCell`); every
/// result comes, in spawn order, and the pile ends.
#[test]
// The pile's `RefCell` is held across `spawn(..).await`, which never waits
// here: the pile (with_size(8)) always has room for the 7 tasks.
#[allow(clippy::await_holding_refcell_ref)]
fn a_task_may_spawn_into_its_own_pile() {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::Rc;

    type Shared = Rc<RefCell<GreenPile<u32>>>;
    // Task `n` adds task `n + 1`, up to 6.
    fn task(pile: Shared, n: u32) -> Pin<Box<dyn Future<Output = u32>>> {
        Box::pin(async move {
            sleep(Duration::from_millis(1)).await;
            if n < 6 {
                let next = task(pile.clone(), n + 1);
                let mut adding = pile.borrow_mut();
                adding.spawn(next).await;
            }
            n
        })
    }
    let got = run1(|| async {
        let pile: Shared = Rc::new(RefCell::new(GreenPile::with_size(8)));
        let first = task(pile.clone(), 0);
        pile.borrow_mut().spawn(first).await;
        let mut got = Vec::new();
        loop {
            let next = futures_lite::future::poll_fn(|cx| Pin::new(&mut *pile.borrow_mut()).poll_next(cx));
            let left = pile.borrow().len();
            match timeout(Duration::from_secs(10), next).await {
                Ok(Some(result)) => got.push(result.unwrap()),
                Ok(None) => break,
                Err(_) => panic!("no next result in 10 s after {got:?}, {left} left"),
            }
        }
        got
    });
    assert_eq!(got, (0..=6).collect::<Vec<_>>());
}

#[test]
fn a_pile_consumed_by_another_green_thread() {
    run1(|| async {
        let mut pile = GreenPile::with_size(2);
        for i in 0..5 {
            pile.spawn(async move { i }).await;
        }
        let consumer = spawn(async move { pile.map(Result::unwrap).collect::<Vec<_>>().await });
        assert_eq!(consumer.await, Ok(vec![0, 1, 2, 3, 4]));
    });
}

#[test]
fn piles_are_shard_local() {
    assert_not_send!(GreenPile<u32>);
}

#[test]
fn tasks_woken_from_other_threads_finish_in_order() {
    // The pile's tasks run in one driver task, each with a waker of its own;
    // a wake from a blocking thread must reach the right task.
    let got = run1(|| async {
        let mut pile = GreenPile::with_size(16);
        for i in 0..64u64 {
            pile.spawn(async move {
                let slept = shardlet::blocking(move || {
                    std::thread::sleep(Duration::from_micros(200 * (i % 5)));
                    i
                })
                .await
                .unwrap();
                sleep(Duration::from_millis(i % 3)).await;
                slept * 2
            })
            .await;
        }
        pile.map(Result::unwrap).collect::<Vec<u64>>().await
    });
    assert_eq!(got, (0..64).map(|i| i * 2).collect::<Vec<_>>());
}

#[test]
fn busy_tasks_leave_the_shard_to_others() {
    // A pile whose tasks are always ready again must not keep the shard to
    // itself: its driver yields after a bounded number of polls, so another
    // runnable task gets turns meanwhile.
    run1(|| async {
        let turns = Counter::new();
        let stop = Gate::new();
        let other = spawn({
            let (turns, stop) = (turns.clone(), stop.clone());
            async move {
                while !stop.is_open() {
                    turns.inc();
                    futures_lite::future::yield_now().await;
                }
            }
        });
        let mut pile = GreenPile::with_size(64);
        for _ in 0..64 {
            pile.spawn(async {
                for _ in 0..2_000 {
                    futures_lite::future::yield_now().await;
                }
            })
            .await;
        }
        let before = turns.get();
        assert_eq!(pile.count().await, 64);
        let during = turns.get() - before;
        stop.open();
        other.await.unwrap();
        // 128,000 polls in turns of at most 128: the other task runs between turns.
        assert!(
            during >= 100,
            "the other task ran {during} times while the pile ran"
        );
    });
}

#[test]
fn a_detached_pile_still_waiting_when_its_shard_ends_is_dropped() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let seen = dropped.clone();
    run1(move || {
        let dropped = dropped.clone();
        async move {
            let mut pile = GreenPile::with_size(8);
            for _ in 0..5 {
                let guard = CountDrop(dropped.clone());
                pile.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                })
                .await;
            }
            drop(pile); // detached: the tasks wait on
        }
    });
    assert_eq!(
        seen.load(Ordering::SeqCst),
        5,
        "every task was dropped as its shard ended"
    );
}
