//! Hostile cross-shard use: replies and jobs that panic where nobody looks,
//! callers that give up at every await point, shards that end under load,
//! lanes full both ways, and targets that do not exist. With 1 shard and 2.

mod util;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::future::block_on;
use shardlet::{shard, Mesh, MeshError, Runtime, RuntimeHandle};
use util::config;

/// Shard counts, each with the default spin window and with none (a
/// shard parks as soon as it runs out of messages: the wake-up paths).
const SHAPES: [(usize, Duration); 4] = [
    (1, shardlet::DEFAULT_SPIN),
    (2, shardlet::DEFAULT_SPIN),
    (1, Duration::ZERO),
    (2, Duration::ZERO),
];

/// How long a call that should answer may take before the test calls it a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A runtime of `shards` shards whose last shard (the target) blocks its
/// thread in its entry until the returned sender fires, so nothing sent to
/// it runs until then; every shard then waits for the stop.
fn held_target(shards: usize) -> (RuntimeHandle<()>, usize, mpsc::Sender<()>) {
    let target = shards - 1;
    let (held_tx, held_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let handle = Runtime::new(config(shards))
        .unwrap()
        .start(move || {
            if shard::id() == target {
                held_tx.send(()).unwrap();
                let _ = release_rx.lock().unwrap().recv_timeout(ANSWER_WITHIN);
            }
            async { shard::stopped().await }
        })
        .unwrap();
    held_rx.recv_timeout(ANSWER_WITHIN).unwrap();
    (handle, target, release_tx)
}

/// `mesh.submit_to(shard, f)` from a host thread, failed if it does not
/// answer within [`ANSWER_WITHIN`] (a hang becomes a failure).
fn submit_within<F, Fut, T>(mesh: &Mesh, shard: usize, f: F) -> Result<T, MeshError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let mesh = mesh.clone();
    std::thread::spawn(move || {
        let _ = tx.send(block_on(mesh.submit_to(shard, f)));
    });
    rx.recv_timeout(ANSWER_WITHIN)
        .unwrap_or_else(|_| panic!("shard {shard} did not answer within {ANSWER_WITHIN:?}"))
}

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// A value whose drop panics, counting its drops.
struct Boom(Arc<AtomicUsize>);

impl Drop for Boom {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
        panic!("this answer's drop panics");
    }
}

/// A `submit_to` whose caller gave up (dropped its reply) before the
/// target ran it, and whose answer panics when dropped: the target drops it
/// (nobody else will) under its panic guard, and keeps serving. Before: the
/// drop ran inside the target's inbox loop, outside any guard, so the
/// panic ended the loop and every later message to that shard hung.
#[test]
fn an_answer_that_panics_on_drop_after_its_caller_gave_up_leaves_the_shard_serving() {
    for shards in [1, 2] {
        let (handle, target, release) = held_target(shards);
        let mesh = handle.mesh();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut call = {
            let drops = drops.clone();
            Box::pin(mesh.submit_to(target, move || async move { Boom(drops) }))
        };
        assert!(poll_once(call.as_mut()).is_pending(), "sent, not yet run");
        drop(call);
        release.send(()).unwrap();
        assert_eq!(
            submit_within(&mesh, target, || async { shard::id() }),
            Ok(target),
            "{shards} shard(s): the target serves on after the answer's drop panicked"
        );
        assert_eq!(drops.load(SeqCst), 1, "the answer was dropped, once");
        handle.stop(Duration::from_secs(1));
        let (result, _) = util::join_within(handle, ANSWER_WITHIN);
        result.unwrap();
    }
}

/// The same answer, made after a wait (so the call runs as a task of its
/// own on the target, not inside the inbox loop), and a closure that panics
/// before it makes a future: the target serves on either way.
#[test]
fn a_job_that_panics_anywhere_leaves_the_shard_serving() {
    for shards in [1, 2] {
        let (handle, target, release) = held_target(shards);
        let mesh = handle.mesh();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut call = {
            let drops = drops.clone();
            Box::pin(mesh.submit_to(target, move || async move {
                shardlet::sleep(Duration::from_millis(5)).await;
                Boom(drops)
            }))
        };
        assert!(poll_once(call.as_mut()).is_pending(), "sent, not yet run");
        drop(call);
        release.send(()).unwrap();
        let panicked = submit_within(&mesh, target, || -> std::future::Ready<()> {
            panic!("this closure panics before it makes a future")
        });
        assert!(
            matches!(&panicked, Err(MeshError::Task { shard, error }) if *shard == target && error.is_panic()),
            "{panicked:?}"
        );
        let spawned = block_on(mesh.spawn_on(target, || -> std::future::Ready<()> {
            panic!("spawn_on closure panics")
        }));
        assert_eq!(spawned, Ok(()));
        for _ in 0..2 {
            assert_eq!(submit_within(&mesh, target, || async { shard::id() }), Ok(target));
        }
        let deadline = std::time::Instant::now() + ANSWER_WITHIN;
        while drops.load(SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the answer was never dropped"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        handle.stop(Duration::from_secs(1));
        let (result, _) = util::join_within(handle, ANSWER_WITHIN);
        result.unwrap();
        assert_eq!(drops.load(SeqCst), 1);
    }
}

/// Lanes of one message each, full both ways: both shards send to each
/// other at once, and every message sends one back from inside the
/// target's inbox loop (its first poll). Nothing deadlocks, every message
/// arrives, and the lanes end empty.
#[test]
fn full_lanes_both_ways_with_senders_on_both_sides_do_not_deadlock() {
    const N: usize = 300;
    for (shards, spin) in SHAPES {
        let echoes = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(AtomicUsize::new(0));
        let (e, a) = (echoes.clone(), answers.clone());
        let queued = util::run_with(config(shards).with_mailbox(2).with_spin(spin), move || {
            let (echoes, answers) = (e.clone(), a.clone());
            async move {
                let other = (shard::id() + 1) % shard::count();
                for i in 0..N {
                    let echoes = echoes.clone();
                    if i % 3 == 0 {
                        // A call whose job calls back and waits for that answer.
                        let got = shardlet::submit_to(other, move || async move {
                            let back = (shard::id() + 1) % shard::count();
                            shardlet::submit_to(back, || async { shard::id() }).await
                        })
                        .await;
                        assert_eq!(got, Ok(Ok(shard::id())));
                        answers.fetch_add(1, SeqCst);
                    } else {
                        shardlet::spawn_on(other, move || async move {
                            let back = (shard::id() + 1) % shard::count();
                            let sent = shardlet::spawn_on(back, move || async move {
                                echoes.fetch_add(1, SeqCst);
                            });
                            sent.await.unwrap();
                        })
                        .await
                        .unwrap();
                    }
                }
                let count = shard::count();
                util::wait_until("every echo came back", || {
                    echoes.load(SeqCst) == (N - N.div_ceil(3)) * count
                })
                .await;
                let mesh = shard::mesh();
                util::wait_until("the lanes are empty", || (0..count).all(|s| mesh.queued(s) == 0)).await;
                (0..count).map(|s| mesh.queued(s)).sum::<usize>()
            }
        });
        assert_eq!(queued, vec![0; shards]);
        assert_eq!(answers.load(SeqCst), N.div_ceil(3) * shards);
    }
}

/// A cross-shard operation dropped after 0, 1, 2, ... polls (with the
/// shard's other tasks run in between), so at every await point there is:
/// waiting for a permit, for room in a full lane, for an answer. Nothing
/// leaks: every permit comes back, no waiter stays queued, the lanes
/// empty, and the mesh still answers.
#[test]
fn a_caller_that_gives_up_at_any_await_point_leaks_nothing() {
    use futures_lite::StreamExt;
    use shardlet::{FanoutPile, GlobalLimit};
    const SIZE: usize = 2;
    for (shards, spin) in SHAPES {
        let limit = GlobalLimit::new(SIZE);
        let ran = Arc::new(AtomicUsize::new(0));
        let (l, r) = (limit.clone(), ran.clone());
        util::run_with(config(shards).with_mailbox(2).with_spin(spin), move || {
            let (limit, ran) = (l.clone(), r.clone());
            async move {
                if shard::id() != 0 {
                    shard::stopped().await;
                    return;
                }
                let target = shard::count() - 1;
                let mesh = shard::mesh();
                for k in 0..80 {
                    let (limit, ran) = (limit.clone(), ran.clone());
                    let mut op: Pin<Box<dyn Future<Output = ()>>> = match k % 4 {
                        0 => Box::pin(async move {
                            let mut pile = FanoutPile::with_limit(&limit);
                            for _ in 0..5 {
                                let ran = ran.clone();
                                pile.spawn(move || async move {
                                    shardlet::sleep(Duration::from_micros(300)).await;
                                    ran.fetch_add(1, SeqCst);
                                })
                                .await;
                            }
                            let _: Vec<_> = pile.collect().await;
                        }),
                        1 => Box::pin(async move {
                            for _ in 0..4 {
                                let permit = limit.acquire().await;
                                let ran = ran.clone();
                                let _ = shardlet::submit_to(target, move || async move {
                                    let _permit = permit;
                                    futures_lite::future::yield_now().await;
                                    ran.fetch_add(1, SeqCst);
                                })
                                .await;
                            }
                        }),
                        2 => Box::pin(async move {
                            for _ in 0..6 {
                                let ran = ran.clone();
                                let _ = shardlet::spawn_on(target, move || async move {
                                    ran.fetch_add(1, SeqCst);
                                })
                                .await;
                            }
                        }),
                        _ => Box::pin(async move {
                            let _ = shardlet::map_reduce(|| async { shard::id() }, 0, |a, b| a + b).await;
                        }),
                    };
                    for _ in 0..k / 4 {
                        if futures_lite::future::poll_once(op.as_mut()).await.is_some() {
                            break;
                        }
                        futures_lite::future::yield_now().await;
                    }
                    drop(op);
                }
                let count = shard::count();
                util::wait_until("every permit is back", || limit.available() == SIZE).await;
                assert_eq!(limit.waiting(), 0, "no waiter left queued");
                util::wait_until("the lanes are empty", || (0..count).all(|s| mesh.queued(s) == 0)).await;
                let after = shardlet::timeout(
                    ANSWER_WITHIN,
                    shardlet::submit_to(target, || async { shard::id() }),
                )
                .await;
                assert_eq!(after.expect("the mesh still answers"), Ok(target));
                shard::stopper().stop(Duration::from_secs(1));
            }
        });
        assert_eq!(limit.available(), SIZE);
        assert!(ran.load(SeqCst) > 0, "some work ran before its caller gave up");
    }
}

/// A `FanoutPile` dropped after its first result: the tasks already sent
/// run to the end on their shards and give their permits back.
#[test]
fn a_fanout_pile_dropped_mid_drain_gives_every_permit_back() {
    use futures_lite::StreamExt;
    use shardlet::{FanoutPile, GlobalLimit};
    for shards in [1, 2] {
        let limit = GlobalLimit::new(2);
        let ran = Arc::new(AtomicUsize::new(0));
        let (l, r) = (limit.clone(), ran.clone());
        util::run_with(config(shards), move || {
            let (limit, ran) = (l.clone(), r.clone());
            async move {
                if shard::id() != 0 {
                    shard::stopped().await;
                    return;
                }
                let mut pile = FanoutPile::with_limit(&limit);
                for i in 0..6u64 {
                    let ran = ran.clone();
                    pile.spawn(move || async move {
                        shardlet::sleep(Duration::from_millis(1 + i)).await;
                        ran.fetch_add(1, SeqCst);
                    })
                    .await;
                }
                assert!(pile.next().await.unwrap().is_ok());
                drop(pile);
                util::wait_until("every task ran", || ran.load(SeqCst) == 6).await;
                util::wait_until("every permit is back", || limit.available() == 2).await;
                shard::stopper().stop(Duration::from_secs(1));
            }
        });
        assert_eq!(limit.available(), 2);
        assert_eq!(limit.waiting(), 0);
    }
}

/// A shard that does not exist is a clear error naming it, from a shard
/// and from a host thread, for every way in.
#[test]
fn a_target_that_does_not_exist_is_an_error_naming_it() {
    for shards in [1, 2] {
        let errors = util::run_with(config(shards), move || async move {
            let count = shard::count();
            let mesh = shard::mesh();
            let spawned = shardlet::spawn_on(count, || async {}).await;
            let submitted = shardlet::submit_to(usize::MAX, || async {}).await;
            let tried = mesh
                .try_spawn_on(count + 1, || async {})
                .map_err(|e| e.to_string());
            assert_eq!(mesh.queued(count), 0);
            (spawned, submitted, tried)
        });
        for (spawned, submitted, tried) in errors {
            assert_eq!(
                spawned,
                Err(MeshError::NoSuchShard {
                    shard: shards,
                    count: shards
                })
            );
            assert_eq!(
                submitted,
                Err(MeshError::NoSuchShard {
                    shard: usize::MAX,
                    count: shards
                })
            );
            assert_eq!(
                tried,
                Err(format!(
                    "no shard {}: the runtime has {shards} shard(s)",
                    shards + 1
                ))
            );
        }
    }
}

/// Waiters for a `GlobalLimit` on every shard, half of them giving up
/// while they wait, while holders on every shard release, and clones of
/// the limit made and dropped on both sides: no permit is lost or made up,
/// no waiter stays queued, the limit is never exceeded.
#[test]
fn global_limit_waiters_that_give_up_across_shards_lose_no_permit() {
    use shardlet::GlobalLimit;
    const SIZE: usize = 3;
    for (shards, spin) in SHAPES {
        let limit = GlobalLimit::new(SIZE);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (l, i, m) = (limit.clone(), inside.clone(), most.clone());
        let served = util::run_with(config(shards).with_mailbox(4).with_spin(spin), move || {
            let (limit, inside, most) = (l.clone(), i.clone(), m.clone());
            async move {
                let mut served = 0usize;
                for round in 0..200u64 {
                    // A waiter that gives up after a few polls, on a clone made here.
                    let clone = limit.clone();
                    let mut quitter = Box::pin(async move { clone.acquire().await });
                    for _ in 0..round % 4 {
                        if let Some(permit) = futures_lite::future::poll_once(quitter.as_mut()).await {
                            drop(permit);
                            break;
                        }
                        futures_lite::future::yield_now().await;
                    }
                    drop(quitter);
                    // A holder, handing its permit to the other shard to drop there.
                    let permit = limit.acquire().await;
                    let now = inside.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    let inside = inside.clone();
                    let other = (shard::id() + 1) % shard::count();
                    let sent = shardlet::spawn_on(other, move || async move {
                        if round % 2 == 0 {
                            futures_lite::future::yield_now().await;
                        }
                        inside.fetch_sub(1, SeqCst);
                        drop(permit);
                    });
                    sent.await.unwrap();
                    served += 1;
                }
                util::wait_until("every permit is back", || limit.available() == SIZE).await;
                served
            }
        });
        assert_eq!(served, vec![200; shards]);
        assert_eq!(limit.available(), SIZE, "{shards} shard(s), spin {spin:?}");
        assert_eq!(limit.waiting(), 0);
        assert!(most.load(SeqCst) <= SIZE, "the limit held: at most {SIZE} inside");
    }
}

/// A host thread waits for a `submit_to` with a waker that panics when
/// woken (a foreign executor's): the target answers, the panic is the
/// target's to catch, the caller still finds its answer, and the target
/// serves on. Before: the wake ran inside the target's inbox loop, outside
/// any task guard, so the panic ended the loop and every later message to
/// that shard hung.
#[test]
fn a_callers_panicking_waker_leaves_the_target_serving() {
    for shards in [1, 2] {
        let (handle, target, release) = held_target(shards);
        let mesh = handle.mesh();
        let bad = util::panicking_waker();
        let mut call = Box::pin(mesh.submit_to(target, || async { 42 }));
        assert!(call.as_mut().poll(&mut Context::from_waker(&bad)).is_pending());
        release.send(()).unwrap();
        assert_eq!(
            submit_within(&mesh, target, || async { shard::id() }),
            Ok(target),
            "{shards} shard(s): the target serves on after the caller's waker panicked"
        );
        assert_eq!(
            poll_once(call.as_mut()),
            Poll::Ready(Ok(42)),
            "the answer still came"
        );
        handle.stop(Duration::from_secs(1));
        let (result, _) = util::join_within(handle, ANSWER_WITHIN);
        result.unwrap();
    }
}

/// A `GlobalLimit` waiter polled with a waker that panics when woken: the
/// release that grants it a permit does not panic (on any shard), the
/// waker's shard serves on, and the waiter finds its permit. Before: with
/// the waiter on another shard, the wake ran inside that shard's inbox
/// loop and the panic ended the loop (every later message hung); on the
/// same shard, it came out of the `GlobalPermit`'s drop.
#[test]
fn a_global_limit_waiters_panicking_waker_breaks_neither_releaser_nor_shard() {
    use shardlet::GlobalLimit;
    for shards in [1, 2] {
        let limit = GlobalLimit::new(1);
        let l = limit.clone();
        let got = util::run_with(config(shards), move || {
            let limit = l.clone();
            async move {
                if shard::id() != 0 {
                    shard::stopped().await;
                    return None;
                }
                let target = shard::count() - 1;
                let permit = limit.acquire().await;
                // The waiter is polled on the target shard, so a grant wakes it there.
                let l = limit.clone();
                let mut waiter = shardlet::submit_to(target, move || async move {
                    let mut waiter = Box::pin(l.acquire());
                    let bad = util::panicking_waker();
                    assert!(waiter.as_mut().poll(&mut Context::from_waker(&bad)).is_pending());
                    // Handed back to be polled here later, not awaited there.
                    (waiter,)
                })
                .await
                .unwrap()
                .0;
                assert_eq!(limit.waiting(), 1);
                let released = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(permit)));
                let after = shardlet::timeout(
                    ANSWER_WITHIN,
                    shardlet::submit_to(target, || async { shard::id() }),
                )
                .await;
                let granted = poll_once(waiter.as_mut()).map(drop).is_ready();
                drop(waiter);
                shard::stopper().stop(Duration::from_secs(1));
                Some((released.is_ok(), after.map_err(|e| e.to_string()), granted))
            }
        });
        let (released, after, granted) = got[0].clone().unwrap();
        assert!(
            released,
            "{shards} shard(s): the release panicked with the waiter's waker"
        );
        assert_eq!(
            after,
            Ok(Ok(shards - 1)),
            "{shards} shard(s): the waiter's shard serves on"
        );
        assert!(granted, "the waiter got its permit");
        assert_eq!(limit.available(), 1);
    }
}

/// A `spawn_on` polled (on a shard) with a waker that panics, waiting for
/// room in a full lane: the target's inbox loop, which wakes it when it
/// takes a message from that lane, catches the panic and serves on, and the
/// send goes through when polled again. Before: the panic ended the loop
/// (every later message to that shard hung).
#[test]
fn a_senders_panicking_waker_leaves_the_target_serving() {
    use std::sync::atomic::AtomicBool;
    for shards in [1, 2] {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let got = util::run_with(config(shards).with_mailbox(2), move || {
            let ran = r.clone();
            async move {
                if shard::id() != 0 {
                    shard::stopped().await;
                    return None;
                }
                let target = shard::count() - 1;
                let mesh = shard::mesh();
                let busy = Arc::new(AtomicBool::new(true));
                if target != 0 {
                    // Hold the target's thread while this shard fills its lane.
                    let (b, started) = (busy.clone(), Arc::new(AtomicBool::new(false)));
                    let s = started.clone();
                    shardlet::spawn_on(target, move || {
                        s.store(true, SeqCst);
                        while b.load(SeqCst) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        async {}
                    })
                    .await
                    .unwrap();
                    util::wait_until("the target is held", || started.load(SeqCst)).await;
                }
                let (sent, mut waiting) = fill_and_wait_with_a_bad_waker(&mesh, target, &ran);
                busy.store(false, SeqCst);
                // The target takes what waits in the lane, waking the bad waker.
                util::wait_until("the target took a message", || ran.load(SeqCst) > 0).await;
                let resent = shardlet::timeout(ANSWER_WITHIN, waiting.as_mut()).await;
                assert_eq!(
                    resent.map_err(|e| e.to_string()),
                    Ok(Ok(())),
                    "the waiting send went through"
                );
                util::wait_until("every message ran", || ran.load(SeqCst) == sent + 1).await;
                let after = shardlet::timeout(
                    ANSWER_WITHIN,
                    shardlet::submit_to(target, || async { shard::id() }),
                )
                .await;
                shard::stopper().stop(Duration::from_secs(1));
                Some(after.map_err(|e| e.to_string()))
            }
        });
        assert_eq!(
            got[0].clone().unwrap(),
            Ok(Ok(shards - 1)),
            "{shards} shard(s): the target serves on"
        );
    }

    /// A `spawn_on` in progress.
    type Sending = Pin<Box<dyn Future<Output = Result<(), MeshError>>>>;

    /// Fills this shard's lane to `target` (returns how many it sent), then
    /// leaves a sender waiting for room, polled with a waker that panics.
    fn fill_and_wait_with_a_bad_waker(
        mesh: &Mesh,
        target: usize,
        ran: &Arc<AtomicUsize>,
    ) -> (usize, Sending) {
        let job = |ran: Arc<AtomicUsize>| {
            move || async move {
                ran.fetch_add(1, SeqCst);
            }
        };
        let mut sent = 0;
        while mesh.try_spawn_on(target, job(ran.clone())).is_ok() {
            sent += 1;
        }
        let mesh = mesh.clone();
        let job = job(ran.clone());
        let mut waiting: Pin<Box<dyn Future<Output = _>>> =
            Box::pin(async move { mesh.spawn_on(target, job).await });
        let bad = util::panicking_waker();
        assert!(waiting.as_mut().poll(&mut Context::from_waker(&bad)).is_pending());
        (sent, waiting)
    }
}
