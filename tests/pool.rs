//! `GreenPool`: `spawn` waits for a slot, `running` / `free` / `waiting`
//! accounting (also after panics and cancels), `resize` up and down,
//! `waitall`, `spawn_n`, `Default` from the config, and the recursive spawn
//! into a full pool that runs inline instead of deadlocking.

mod util;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use shardlet::{shard, sleep, spawn, timeout, GreenPool, Runtime, DEFAULT_POOL_SIZE};
use util::{run1, settle, wait_until, Counter, Gate, Meter};

/// Spawns `n` tasks into `pool` that each hold a slot until their gate opens.
async fn hold(pool: &GreenPool, n: usize) -> Vec<(Gate, shardlet::GreenThread<()>)> {
    let mut held = Vec::new();
    for _ in 0..n {
        let gate = Gate::new();
        let g = gate.clone();
        held.push((gate, pool.spawn(async move { g.wait().await }).await));
    }
    held
}

#[test]
fn new_pool_accounting() {
    run1(|| async {
        let pool = GreenPool::new(3);
        assert_eq!(
            (pool.size(), pool.running(), pool.free(), pool.waiting()),
            (3, 0, 3, 0)
        );
    });
}

#[test]
fn spawn_waits_for_a_free_slot() {
    run1(|| async {
        let pool = GreenPool::new(2);
        let held = hold(&pool, 2).await;
        assert_eq!((pool.running(), pool.free(), pool.waiting()), (2, 0, 0));

        // A third spawn queues: it does not start until a slot frees up.
        let started = Counter::new();
        let third = spawn({
            let (pool, started) = (pool.clone(), started.clone());
            async move { pool.spawn(async move { started.inc() }).await.await }
        });
        wait_until("the third spawner queues", || pool.waiting() == 1).await;
        settle().await;
        assert_eq!(started.get(), 0, "ran without a free slot");
        assert_eq!((pool.running(), pool.free()), (2, 0));

        held[0].0.open();
        assert_eq!(third.await.unwrap(), Ok(()));
        assert_eq!(started.get(), 1);
        held[1].0.open();
        for (_, t) in held {
            t.await.unwrap();
        }
        assert_eq!((pool.running(), pool.free(), pool.waiting()), (0, 2, 0));
    });
}

#[test]
fn spawners_are_served_in_arrival_order() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let held = hold(&pool, 1).await;
        let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut spawners = Vec::new();
        for i in 0..5 {
            let (p, order) = (pool.clone(), order.clone());
            spawners.push(spawn(async move {
                p.spawn(async move { order.borrow_mut().push(i) }).await.await
            }));
            // Make sure each queues before the next.
            wait_until("the spawner queues", || pool.waiting() == i + 1).await;
        }
        assert_eq!(pool.waiting(), 5);
        held[0].0.open();
        for s in spawners {
            s.await.unwrap().unwrap();
        }
        assert_eq!(*order.borrow(), [0, 1, 2, 3, 4]);
    });
}

#[test]
fn at_most_size_run_at_once() {
    run1(|| async {
        let pool = GreenPool::new(4);
        let meter = Meter::new();
        let mut handles = Vec::new();
        for i in 0..40u64 {
            let meter = meter.clone();
            let p = pool.clone();
            handles.push(
                pool.spawn(async move {
                    let _in = meter.enter();
                    assert!(p.running() <= p.size());
                    sleep(Duration::from_millis(1 + i % 3)).await;
                })
                .await,
            );
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(meter.entered(), 40);
        assert_eq!(
            meter.max(),
            4,
            "the pool ran more than its size, or never filled up"
        );
        assert_eq!(pool.running(), 0);
    });
}

#[test]
fn free_is_restored_after_panics() {
    run1(|| async {
        let pool = GreenPool::new(3);
        let before = shard::panics();
        let mut handles = Vec::new();
        for i in 0..6 {
            handles.push(
                pool.spawn(async move {
                    sleep(Duration::from_millis(1)).await;
                    if i % 2 == 0 {
                        panic!("pool task {i}");
                    }
                    i
                })
                .await,
            );
        }
        let mut ok = Vec::new();
        for h in handles {
            match h.await {
                Ok(v) => ok.push(v),
                Err(e) => assert!(e.is_panic(), "{e}"),
            }
        }
        assert_eq!(ok, [1, 3, 5]);
        assert_eq!(shard::panics(), before + 3);
        assert_eq!((pool.running(), pool.free(), pool.waiting()), (0, 3, 0));
        // The slots really are usable again.
        let again = hold(&pool, 3).await;
        assert_eq!(pool.free(), 0);
        for (g, t) in again {
            g.open();
            t.await.unwrap();
        }
    });
}

#[test]
fn free_is_restored_after_cancels() {
    run1(|| async {
        let pool = GreenPool::new(3);
        let held = hold(&pool, 3).await;
        assert_eq!(pool.free(), 0);
        for (_, t) in &held {
            t.cancel();
        }
        for (_, t) in held {
            let err = t.await.unwrap_err();
            assert!(err.is_cancelled(), "{err:?}");
        }
        wait_until("the cancelled tasks give their slots back", || {
            pool.running() == 0
        })
        .await;
        assert_eq!((pool.free(), pool.waiting()), (3, 0));
    });
}

#[test]
fn a_spawner_that_gives_up_leaves_the_queue() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let held = hold(&pool, 1).await;
        let gave_up = timeout(Duration::from_millis(10), pool.spawn(async {})).await;
        assert!(gave_up.is_err());
        assert_eq!(pool.waiting(), 0, "a dropped spawn stayed queued");
        held[0].0.open();
        wait_until("the slot frees up", || pool.running() == 0).await;
        assert_eq!(pool.free(), 1, "a dropped spawn kept a slot");
    });
}

#[test]
fn resize_up_starts_queued_spawners_at_once() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let held = hold(&pool, 1).await;
        let started = Counter::new();
        let gate = Gate::new();
        let spawners: Vec<_> = (0..2)
            .map(|_| {
                let (pool, started, gate) = (pool.clone(), started.clone(), gate.clone());
                spawn(async move {
                    pool.spawn(async move {
                        started.inc();
                        gate.wait().await
                    })
                    .await
                    .await
                })
            })
            .collect();
        wait_until("two spawners queue", || pool.waiting() == 2).await;
        pool.resize(3);
        assert_eq!(pool.size(), 3);
        wait_until("both queued spawners start", || started.get() == 2).await;
        assert_eq!((pool.running(), pool.free(), pool.waiting()), (3, 0, 0));
        gate.open();
        held[0].0.open();
        for s in spawners {
            s.await.unwrap().unwrap();
        }
        assert_eq!(pool.running(), 0);
    });
}

#[test]
fn resize_down_lets_running_tasks_finish() {
    run1(|| async {
        let pool = GreenPool::new(4);
        let mut held = hold(&pool, 4).await;
        pool.resize(2);
        assert_eq!(pool.size(), 2);
        assert_eq!(
            (pool.running(), pool.free()),
            (4, 0),
            "running tasks must not be interrupted"
        );

        // New work waits until running drops below the new size.
        let started = Counter::new();
        let next = spawn({
            let (pool, started) = (pool.clone(), started.clone());
            async move { pool.spawn(async move { started.inc() }).await.await }
        });
        wait_until("the spawner queues", || pool.waiting() == 1).await;
        for _ in 0..2 {
            let (gate, t) = held.remove(0);
            gate.open();
            t.await.unwrap();
            settle().await;
            assert_eq!(
                started.get(),
                0,
                "started while {} ran in a pool of 2",
                pool.running()
            );
        }
        assert_eq!(pool.running(), 2);
        let (gate, t) = held.remove(0);
        gate.open();
        t.await.unwrap();
        next.await.unwrap().unwrap();
        assert_eq!(started.get(), 1);
        let (gate, t) = held.remove(0);
        gate.open();
        t.await.unwrap();
        wait_until("the pool drains", || pool.running() == 0).await;
        assert_eq!(pool.free(), 2);
    });
}

#[test]
fn waitall_waits_for_every_running_task() {
    run1(|| async {
        let pool = GreenPool::new(8);
        let done = Counter::new();
        for i in 0..20u64 {
            let done = done.clone();
            pool.spawn_n(async move {
                sleep(Duration::from_millis(1 + i % 5)).await;
                done.inc();
            })
            .await;
        }
        pool.waitall().await;
        assert_eq!(done.get(), 20);
        assert_eq!(pool.running(), 0);
    });
}

#[test]
fn waitall_on_an_idle_pool_returns_at_once() {
    run1(|| async {
        let pool = GreenPool::new(2);
        assert!(timeout(Duration::from_millis(500), pool.waitall()).await.is_ok());
    });
}

#[test]
fn waitall_from_the_pools_own_task_panics_instead_of_hanging() {
    run1(|| async {
        let pool = GreenPool::new(2);
        let p = pool.clone();
        let err = pool
            .spawn(async move { p.waitall().await })
            .await
            .await
            .unwrap_err();
        let message = err.panic_message().expect("expected a panic");
        assert!(message.contains("waitall"), "{message}");
    });
}

#[test]
fn spawn_n_counts_against_the_pool_and_frees_its_slot_after_a_panic() {
    run1(|| async {
        let pool = GreenPool::new(2);
        let gate = Gate::new();
        let g = gate.clone();
        pool.spawn_n(async move { g.wait().await }).await;
        assert_eq!(pool.running(), 1);
        let before = shard::panics();
        pool.spawn_n(async {
            sleep(Duration::from_millis(1)).await;
            panic!("pool spawn_n");
        })
        .await;
        wait_until("the panic is counted", || shard::panics() == before + 1).await;
        wait_until("its slot is free", || pool.running() == 1).await;
        gate.open();
        pool.waitall().await;
        assert_eq!(pool.free(), 2);
    });
}

#[test]
fn default_size_comes_from_the_runtime_config() {
    let sizes = Runtime::new(util::config(1).with_pool_size(7))
        .unwrap()
        .run(|| async { GreenPool::default().size() })
        .unwrap();
    assert_eq!(sizes, [7]);
}

#[test]
fn default_size_outside_a_runtime_is_eventlets() {
    assert_eq!(GreenPool::default().size(), 1000);
    assert_eq!(DEFAULT_POOL_SIZE, 1000);
}

#[test]
#[should_panic(expected = "at least 1")]
fn a_zero_size_pool_panics() {
    let _ = GreenPool::new(0);
}

#[test]
#[should_panic(expected = "at least 1")]
fn resize_to_zero_panics() {
    GreenPool::new(1).resize(0);
}

#[test]
fn clones_share_the_slots() {
    run1(|| async {
        let pool = GreenPool::new(2);
        let clone = pool.clone();
        let held = hold(&clone, 2).await;
        assert_eq!(pool.free(), 0);
        clone.resize(3);
        assert_eq!(pool.size(), 3);
        for (g, t) in held {
            g.open();
            t.await.unwrap();
        }
    });
}

/// `spawn` and `spawn_n` are futures like any other: nothing is taken or
/// run until they are awaited, and one dropped unawaited leaves no trace.
#[test]
fn a_spawn_does_nothing_until_it_is_awaited() {
    run1(|| async {
        let pool = GreenPool::new(2);
        let ran = Counter::new();
        let (r1, r2) = (ran.clone(), ran.clone());
        let spawn = pool.spawn(async move { r1.inc() });
        let spawn_n = pool.spawn_n(async move { r2.inc() });
        settle().await;
        assert_eq!((pool.running(), ran.get()), (0, 0));
        drop(spawn_n);
        spawn.await.await.unwrap();
        settle().await;
        assert_eq!((pool.running(), pool.free(), ran.get()), (0, 2, 1));
    });
}

#[test]
fn pools_are_shard_local() {
    assert_not_send!(GreenPool);
}

// --- spawning from inside the pool ---------------------------------------

/// The recursive crawler: every task spawns its children into the same pool
/// and waits for them. With the pool full, a child runs inline in its
/// parent's slot (module docs of `pool.rs`), so this finishes.
fn crawl(pool: GreenPool, depth: u32, meter: Meter) -> Pin<Box<dyn Future<Output = u32>>> {
    Box::pin(async move {
        let _in = meter.enter();
        sleep(Duration::from_millis(1)).await;
        if depth == 0 {
            return 1;
        }
        let mut children = Vec::new();
        for _ in 0..2 {
            children.push(pool.spawn(crawl(pool.clone(), depth - 1, meter.clone())).await);
        }
        let mut pages = 1;
        for child in children {
            pages += child.await.expect("child crawl failed");
        }
        pages
    })
}

#[test]
fn a_recursive_spawn_into_a_full_pool_does_not_deadlock() {
    run1(|| async {
        for size in [1, 2, 3] {
            let pool = GreenPool::new(size);
            let meter = Meter::new();
            let root = pool.spawn(crawl(pool.clone(), 5, meter.clone())).await;
            let pages = timeout(Duration::from_secs(5), root)
                .await
                .unwrap_or_else(|_| panic!("deadlock with a pool of {size}"));
            assert_eq!(pages, Ok(63), "pool of {size}");
            assert_eq!(meter.entered(), 63);
            pool.waitall().await;
            assert_eq!(pool.running(), 0, "pool of {size}");
        }
    });
}

#[test]
fn a_spawn_from_a_member_of_a_full_pool_runs_inline() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let p = pool.clone();
        let out = pool
            .spawn(async move {
                let ran = Counter::new();
                let r = ran.clone();
                let child = p
                    .spawn(async move {
                        sleep(Duration::from_millis(2)).await;
                        r.inc();
                        "child"
                    })
                    .await;
                // Inline: done by the time `spawn` returns, within the parent's slot.
                let done_at_return = ran.get();
                let running = p.running();
                (done_at_return, running, child.await)
            })
            .await
            .await
            .unwrap();
        assert_eq!(out, (1, 1, Ok("child")));
    });
}

#[test]
fn a_panic_in_an_inline_child_is_an_err_for_the_parent_only() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let p = pool.clone();
        let parent = pool
            .spawn(async move {
                let child = p.spawn(async { panic!("inline child") }).await;
                (child.await.unwrap_err().is_panic(), "parent survived")
            })
            .await;
        assert_eq!(parent.await, Ok((true, "parent survived")));
        assert_eq!(pool.running(), 0);
    });
}

/// A plain green thread started by a pool task is not a member of the pool:
/// it must wait for a slot like anyone else, so the bound holds.
#[test]
#[allow(clippy::async_yields_async)] // the parent hands back its child's handle
fn a_plain_spawn_from_a_pool_task_is_not_a_member() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let meter = Meter::new();
        let p = pool.clone();
        let m = meter.clone();
        let parent = pool
            .spawn(async move {
                let _in = m.enter();
                let (p2, m2) = (p.clone(), m.clone());
                let child = spawn(async move {
                    p2.spawn(async move {
                        let _in = m2.enter();
                    })
                    .await
                    .await
                });
                sleep(Duration::from_millis(5)).await;
                child
            })
            .await;
        let child = parent.await.unwrap();
        child.await.unwrap().unwrap();
        assert_eq!(meter.entered(), 2);
        assert_eq!(meter.max(), 1, "a pool of 1 ran two tasks at once");
    });
}

/// `waitall` from a plain green thread that a pool task started is legal:
/// it is not one of the pool's own tasks.
#[test]
#[allow(clippy::async_yields_async)] // the parent hands back its child's handle
fn waitall_from_a_plain_green_thread_started_by_a_pool_task() {
    run1(|| async {
        let pool = GreenPool::new(2);
        let done = Counter::new();
        let (p, d) = (pool.clone(), done.clone());
        let parent = pool
            .spawn(async move {
                let waiter = spawn({
                    let p = p.clone();
                    async move { p.waitall().await }
                });
                sleep(Duration::from_millis(5)).await;
                d.inc();
                waiter
            })
            .await;
        let waiter = parent.await.unwrap();
        assert_eq!(waiter.await, Ok(()), "waitall from a non-member panicked");
        assert_eq!(done.get(), 1);
    });
}

#[test]
fn the_slot_is_free_when_a_panicked_or_cancelled_handle_resolves() {
    run1(|| async {
        let pool = GreenPool::new(2);
        let t = pool
            .spawn(async {
                sleep(Duration::from_millis(1)).await;
                panic!("late boom")
            })
            .await;
        let e = t.await.unwrap_err();
        assert!(e.is_panic(), "{e:?}");
        assert_eq!(pool.running(), 0);

        let (_never, t) = hold(&pool, 1).await.pop().expect("one held");
        settle().await;
        t.cancel();
        let e = t.await.unwrap_err();
        assert!(e.is_cancelled(), "{e:?}");
        assert_eq!(pool.running(), 0);
    });
}

/// A growth grants several queued spawners at once; the first one's waker
/// panics. The panic comes out of `resize`, and the spawners after it are
/// woken all the same. Before: they were granted their slots and never
/// woken, and hung holding them.
#[test]
fn a_waker_that_panics_in_a_growth_leaves_no_granted_spawner_unwoken() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let gate = Gate::new();
        let holder = pool
            .spawn({
                let gate = gate.clone();
                async move { gate.wait().await }
            })
            .await;
        let mut first = Box::pin(pool.spawn(async { 0 }));
        let bad = util::panicking_waker();
        assert!(first
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&bad))
            .is_pending());
        let others: Vec<_> = (1..=3)
            .map(|i| {
                let pool = pool.clone();
                spawn(async move { pool.spawn(async move { i }).await.await })
            })
            .collect();
        settle().await;
        assert_eq!(pool.waiting(), 4);
        let grown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.resize(5)));
        assert!(grown.is_err(), "the waker's panic comes out of resize");
        assert_eq!((pool.running(), pool.waiting()), (5, 0));
        for (i, other) in others.into_iter().enumerate() {
            let done = timeout(Duration::from_secs(5), other).await;
            let done =
                done.unwrap_or_else(|_| panic!("spawner {} was granted a slot and never woken", i + 1));
            assert_eq!(done.unwrap(), Ok(i + 1));
        }
        let t = timeout(Duration::from_secs(5), first)
            .await
            .expect("the first spawner hung");
        assert_eq!(t.await, Ok(0));
        gate.open();
        holder.await.unwrap();
        assert_eq!((pool.running(), pool.waiting()), (0, 0));
    });
}

#[test]
fn a_queued_spawner_whose_waker_panics_takes_nothing_down() {
    // The slot a finished task gives back goes to the queued spawner and
    // wakes it; its waker panics. That panic is caught (the task's result
    // kept, the shard and the process alive), and the spawner, polled again
    // with a sound waker, starts its work in the slot it was granted.
    run1(|| async {
        let pool = GreenPool::new(1);
        let before = shard::panics();
        let gate = Gate::new();
        let holder = pool
            .spawn({
                let gate = gate.clone();
                async move {
                    gate.wait().await;
                    7
                }
            })
            .await;
        let mut queued = Box::pin(pool.spawn(async { 8 }));
        let bad = util::panicking_waker();
        let polled = queued.as_mut().poll(&mut std::task::Context::from_waker(&bad));
        assert!(polled.is_pending());
        assert_eq!(pool.waiting(), 1);
        gate.open();
        assert_eq!(holder.await, Ok(7));
        assert_eq!(shard::panics(), before + 1);
        let t = timeout(Duration::from_secs(5), queued)
            .await
            .expect("the granted spawner hung");
        assert_eq!(t.await, Ok(8));
        assert_eq!((pool.running(), pool.waiting()), (0, 0));
    });
}

#[test]
fn an_imap_call_that_frees_a_slot_for_a_spawner_whose_waker_panics_keeps_its_result() {
    // The slot an imap call gives back as it finishes goes to a queued
    // spawner, whose waker panics. Before: that panic came out of the
    // permit's drop inside the call's guard, and the finished call's value
    // was turned into a panic error. Now the call keeps its value, the
    // panic is counted and logged, and the spawner gets the slot.
    use futures_lite::StreamExt;
    run1(|| async {
        let pool = GreenPool::new(1);
        let before = shard::panics();
        let gate = Gate::new();
        let g = gate.clone();
        let mut results = Box::pin(pool.imap([5u32], move |n| {
            let g = g.clone();
            async move {
                g.wait().await;
                n * 2
            }
        }));
        let first = spawn(async move { results.next().await });
        settle().await;
        assert_eq!(pool.running(), 1, "the imap call holds the only slot");
        let mut queued = Box::pin(pool.spawn(async { 8 }));
        let bad = util::panicking_waker();
        assert!(queued
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&bad))
            .is_pending());
        assert_eq!(pool.waiting(), 1);
        gate.open();
        let got = timeout(Duration::from_secs(5), first)
            .await
            .expect("the imap consumer hung")
            .unwrap();
        assert_eq!(got, Some(Ok(10)), "the call's value, not the waker's panic");
        assert_eq!(shard::panics(), before + 1, "the waker's panic is counted");
        let t = timeout(Duration::from_secs(5), queued)
            .await
            .expect("the granted spawner hung");
        assert_eq!(t.await, Ok(8));
        assert_eq!((pool.running(), pool.waiting()), (0, 0));
    });
}
