//! `Runtime`, `RuntimeHandle`, `Stopper` and the `shard` functions: one and
//! two shards, pinning, shard failures reported (never a hang), stop and
//! join, the stop grace period, and embedding in a host that keeps `main`.
//!
//! Multi-shard tests run unpinned (or size themselves from the CPUs this
//! process may use), so they pass on a 1-CPU machine.

mod util;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardlet::{shard, Config, Runtime, RuntimeError, RuntimeHandle, Stopper, FAILURE_GRACE};
use util::{config, join_within};

#[test]
fn one_shard() {
    let out = util::run1(|| async { (shard::id(), shard::count(), shard::cpu(), shard::stop_requested()) });
    assert_eq!(out, (0, 1, None, false));
}

#[test]
fn two_shards_each_on_its_own_thread() {
    let here = std::thread::current().id();
    let out = util::run2(|| async {
        (
            shard::id(),
            shard::count(),
            std::thread::current().id(),
            std::thread::current().name().map(str::to_owned),
        )
    });
    assert_eq!(out.len(), 2);
    for (i, (id, count, _, name)) in out.iter().enumerate() {
        assert_eq!((*id, *count), (i, 2));
        assert_eq!(name.as_deref(), Some(format!("shardlet-{i}").as_str()));
    }
    assert_ne!(out[0].2, out[1].2, "two shards shared a thread");
    assert!(
        out.iter().all(|o| o.2 != here),
        "a shard ran on the caller's thread"
    );
}

#[test]
fn more_shards_than_cpus_when_unpinned() {
    let n = util::cpus() + 2;
    let runtime = Runtime::new(config(n)).unwrap();
    assert_eq!(runtime.shards(), n);
    assert!((0..n).all(|i| runtime.plan().cpu(i).is_none()));
    let ids = runtime.run(|| async { shard::id() }).unwrap();
    assert_eq!(ids, (0..n).collect::<Vec<_>>());
}

#[test]
fn pinned_shards_run_on_their_cpu() {
    // As many pinned shards as this machine allows, at most 2.
    let allowed = Config::default().validate().unwrap().shards();
    let n = allowed.min(2);
    let runtime = Runtime::new(Config::default().with_shards(n).with_io_memory(util::IO_MEMORY)).unwrap();
    let plan = runtime.plan().clone();
    let out = runtime
        .run(|| async {
            // The thread's own affinity mask: exactly the one CPU.
            (shard::cpu(), util::affinity())
        })
        .unwrap();
    for (i, (cpu, mask)) in out.into_iter().enumerate() {
        let want = plan.cpu(i).expect("pinned plan");
        assert_eq!(cpu, Some(want), "shard::cpu() of shard {i}");
        assert_eq!(mask, [want], "shard {i} is not pinned to cpu {want}");
    }
}

/// Unpinned shards keep to the CPUs the configuration gives them: a list
/// (`SHARDLET_CPUS`) or what a reserve for the host leaves. Before: with
/// pinning off, both were ignored and the shards ran anywhere.
#[test]
fn unpinned_shards_keep_to_the_cpus_given_them() {
    let cpus = util::affinity();
    if cpus.len() < 2 {
        eprintln!("one CPU: nothing to narrow");
        return;
    }
    let last = *cpus.last().unwrap();
    let runtime = Runtime::new(config(2).with_cpus([last])).unwrap();
    assert_eq!(runtime.plan().fence(), Some(&[last][..]));
    let masks = runtime.run(|| async { util::affinity() }).unwrap();
    assert_eq!(masks, [vec![last], vec![last]], "SHARDLET_CPUS={last}, unpinned");

    let runtime = Runtime::new(config(1).with_reserve_cpus(1)).unwrap();
    let host = runtime.plan().host_cpus().to_vec();
    let masks = runtime.run(|| async { util::affinity() }).unwrap();
    assert!(
        !masks[0].iter().any(|c| host.contains(c)),
        "the shard runs on the host's {host:?}: {masks:?}"
    );
    assert_eq!(masks[0].len(), cpus.len() - 1, "{masks:?}");

    // Not narrowed: wherever the process may run.
    let runtime = Runtime::new(config(1)).unwrap();
    assert_eq!(runtime.plan().fence(), None);
    assert_eq!(runtime.run(|| async { util::affinity() }).unwrap(), [cpus]);
}

#[test]
fn pinned_shard_with_spin_before_park() {
    let config = Config::default()
        .with_shards(1)
        .with_spin(Duration::from_micros(50))
        .with_io_memory(util::IO_MEMORY);
    let out = Runtime::new(config)
        .unwrap()
        .run(|| async {
            let start = Instant::now();
            shardlet::sleep(Duration::from_millis(5)).await;
            start.elapsed()
        })
        .unwrap();
    assert!(out[0] >= Duration::from_millis(5), "{:?}", out[0]);
}

#[test]
fn results_come_back_in_shard_order() {
    // Higher shards finish first; the results are still indexed by shard.
    let out = util::run_with(config(3), || async {
        let id = shard::id();
        shardlet::sleep(Duration::from_millis(10 * (3 - id as u64))).await;
        format!("shard {id}")
    });
    assert_eq!(out, ["shard 0", "shard 1", "shard 2"]);
}

#[test]
fn shard_functions_outside_a_shard() {
    assert_eq!(shard::try_id(), None);
    assert_eq!(shard::cpu(), None);
    assert!(!shard::stop_requested());
    for (name, f) in [("id", shard::id as fn() -> usize), ("count", shard::count)] {
        let payload = std::panic::catch_unwind(f).expect_err(name);
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(
            message.contains("not on a shardlet shard"),
            "shard::{name}(): {message}"
        );
    }
}

#[test]
fn a_panicking_shard_is_reported_and_its_sibling_is_stopped() {
    let sibling_saw_stop = Arc::new(AtomicBool::new(false));
    let saw = sibling_saw_stop.clone();
    let handle = Runtime::new(config(2))
        .unwrap()
        .start(move || {
            let saw = saw.clone();
            async move {
                if shard::id() == 0 {
                    shardlet::sleep(Duration::from_millis(20)).await;
                    panic!("boom from shard {}", shard::id());
                }
                // A server loop: runs until the runtime asks it to stop.
                while !shard::stop_requested() {
                    shardlet::sleep(Duration::from_millis(1)).await;
                }
                saw.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
    let (result, took) = join_within(handle, Duration::from_secs(10));
    match result {
        Err(RuntimeError::ShardPanicked { shard, message }) => {
            assert_eq!(shard, 0);
            assert!(message.contains("boom from shard 0"), "{message}");
            assert!(message.contains("runtime.rs"), "no location: {message}");
        }
        other => panic!("expected ShardPanicked, got {other:?}"),
    }
    assert!(
        sibling_saw_stop.load(Ordering::SeqCst),
        "shard 1 never saw the stop"
    );
    assert!(
        took < FAILURE_GRACE,
        "the sibling was cut off by the grace period, not stopped: {took:?}"
    );
}

#[test]
fn the_error_names_the_shard() {
    let handle = Runtime::new(config(2))
        .unwrap()
        .start(|| async {
            if shard::id() == 1 {
                panic!("only shard 1 fails");
            }
            shard::stopped().await;
        })
        .unwrap();
    let err = join_within(handle, Duration::from_secs(10)).0.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::ShardPanicked { shard: 1, .. }),
        "{err:?}"
    );
    let line = err.to_string();
    assert!(line.starts_with("shard 1 panicked: only shard 1 fails"), "{line}");
}

#[test]
fn an_entry_closure_that_panics_before_returning_a_future() {
    let handle = Runtime::new(config(1))
        .unwrap()
        .start(|| -> std::future::Ready<()> { panic!("no future for you") })
        .unwrap();
    let (result, _) = join_within(handle, Duration::from_secs(10));
    match result {
        Err(RuntimeError::ShardPanicked { shard: 0, message }) => {
            assert!(message.contains("no future for you"), "{message}")
        }
        other => panic!("expected ShardPanicked, got {other:?}"),
    }
}

#[test]
fn a_raw_glommio_task_that_panics_is_reported() {
    let handle = Runtime::new(config(1))
        .unwrap()
        .start(|| async {
            glommio::spawn_local(async { panic!("raw glommio task") }).detach();
            shard::stopped().await;
        })
        .unwrap();
    let (result, _) = join_within(handle, Duration::from_secs(10));
    match result {
        Err(RuntimeError::ShardPanicked { shard: 0, message }) => {
            assert!(message.contains("raw glommio task"), "{message}")
        }
        other => panic!("expected ShardPanicked, got {other:?}"),
    }
}

/// Starts `shards` shards that each wait for the stop request, then return their id.
fn start_servers(shards: usize) -> RuntimeHandle<usize> {
    Runtime::new(config(shards))
        .unwrap()
        .start(|| async {
            shard::stopped().await;
            assert!(shard::stop_requested());
            shard::id()
        })
        .unwrap()
}

#[test]
fn stop_and_join() {
    let handle = start_servers(2);
    assert_eq!(handle.shards(), 2);
    handle.stop(Duration::from_secs(5));
    let (result, took) = join_within(handle, Duration::from_secs(10));
    assert_eq!(result.unwrap(), [0, 1]);
    assert!(
        took < Duration::from_secs(5),
        "the shards did not end at the stop: {took:?}"
    );
}

#[test]
fn a_stopper_works_from_another_thread() {
    let handle = start_servers(2);
    let stopper: Stopper = handle.stopper();
    let host = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        stopper.stop(Duration::from_secs(5));
        stopper.is_stopped()
    });
    let (result, _) = join_within(handle, Duration::from_secs(10));
    assert_eq!(result.unwrap(), [0, 1]);
    assert!(host.join().unwrap());
}

#[test]
fn an_entry_that_ignores_the_stop_is_cancelled_after_the_grace_period() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let handle = Runtime::new(config(1))
        .unwrap()
        .start(move || {
            let guard = SetOnDrop(flag.clone());
            async move {
                let _guard = guard;
                loop {
                    shardlet::sleep(Duration::from_millis(2)).await;
                }
            }
        })
        .unwrap();
    let grace = Duration::from_millis(100);
    let stopped_at = Instant::now();
    handle.stop(grace);
    let (result, _) = join_within(handle, Duration::from_secs(10));
    let took = stopped_at.elapsed();
    assert_eq!(result.unwrap_err(), RuntimeError::ShardCancelled { shard: 0 });
    assert!(
        took >= grace,
        "cancelled before the grace period ran out: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(dropped.load(Ordering::SeqCst), "the entry future was not dropped");
}

#[test]
fn an_entry_that_drains_within_the_grace_period_finishes() {
    let handle = Runtime::new(config(1))
        .unwrap()
        .start(|| async {
            shard::stopped().await;
            shardlet::sleep(Duration::from_millis(30)).await; // draining
            "drained"
        })
        .unwrap();
    handle.stop(Duration::from_secs(5));
    let (result, _) = join_within(handle, Duration::from_secs(10));
    assert_eq!(result.unwrap(), ["drained"]);
}

/// An entry whose shard was kept off the CPU past the grace period, and that
/// needs one more scheduling round to return, returns: it is not cancelled
/// for a stall that was not its own slowness. A serving loop's drain timer
/// and the grace fire together there; the loop cancels its connections'
/// tasks and waits for them to end, as this entry does with its one task.
/// Before: `ShardCancelled`.
#[test]
fn an_entry_one_round_from_its_end_when_the_grace_runs_out_finishes() {
    let grace = Duration::from_millis(100);
    let handle = Runtime::new(config(1))
        .unwrap()
        .start(move || async move {
            let task = shardlet::spawn(futures_lite::future::pending::<()>());
            shard::stopped().await;
            std::thread::sleep(grace + Duration::from_millis(100)); // the stall
            task.cancel();
            assert!(task.await.is_err());
            "finished"
        })
        .unwrap();
    handle.stop(grace);
    let (result, _) = join_within(handle, Duration::from_secs(10));
    assert_eq!(result.unwrap(), ["finished"]);
}

/// "Several requests keep the earliest deadline" (`Stopper` docs): a
/// second, shorter stop must cut the grace period short.
#[test]
fn a_later_shorter_stop_shortens_the_grace_period() {
    let handle = Runtime::new(config(1))
        .unwrap()
        .start(|| async {
            loop {
                shardlet::sleep(Duration::from_millis(2)).await;
            }
        })
        .unwrap();
    handle.stop(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(50)); // the shard has seen the first request
    handle.stop(Duration::from_millis(10));
    let (result, took) = join_within(handle, Duration::from_secs(5));
    assert_eq!(result.unwrap_err(), RuntimeError::ShardCancelled { shard: 0 });
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// "The first failure stops the other shards, so join never hangs on a
/// sibling of a dead shard": also when the host had already asked for a
/// stop with a long grace period, and one shard fails while draining.
#[test]
fn a_shard_failing_during_a_long_drain_still_ends_the_run() {
    let handle = Runtime::new(config(2))
        .unwrap()
        .start(|| async {
            shard::stopped().await;
            if shard::id() == 0 {
                // Fails well after every shard has seen the first request.
                shardlet::sleep(Duration::from_millis(200)).await;
                panic!("failed while draining");
            }
            loop {
                // A slow drain that would take the whole (long) grace period.
                shardlet::sleep(Duration::from_millis(2)).await;
            }
        })
        .unwrap();
    handle.stop(Duration::from_secs(60));
    let limit = FAILURE_GRACE + Duration::from_secs(3);
    let (result, took) = join_within(handle, limit);
    assert!(
        matches!(&result, Err(RuntimeError::ShardPanicked { shard: 0, .. })),
        "{result:?}"
    );
    assert!(took < limit, "{took:?}");
}

#[test]
fn start_returns_while_the_shards_run() {
    // The host keeps its own main: `start` returns with the shards running.
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let begin = Instant::now();
    let handle = Runtime::new(config(2))
        .unwrap()
        .start(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                // Self-bounded: gives up after 5 s if nobody stops it.
                match shardlet::timeout(Duration::from_secs(5), shard::stopped()).await {
                    Ok(()) => "stopped",
                    Err(_) => "never stopped",
                }
            }
        })
        .unwrap();
    let start_took = begin.elapsed();
    assert!(
        start_took < Duration::from_secs(2),
        "start() blocked: {start_took:?}"
    );
    // The host does its own work while the shards run.
    let deadline = Instant::now() + Duration::from_secs(5);
    while started.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the shards never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    handle.stop(Duration::from_secs(5));
    let (result, _) = join_within(handle, Duration::from_secs(10));
    assert_eq!(result.unwrap(), ["stopped", "stopped"]);
}

#[test]
fn dropping_the_handle_asks_the_shards_to_stop() {
    let ended = Arc::new(AtomicUsize::new(0));
    let counter = ended.clone();
    let handle = Runtime::new(config(2))
        .unwrap()
        .start(move || {
            let counter = counter.clone();
            async move {
                if shardlet::timeout(Duration::from_secs(5), shard::stopped())
                    .await
                    .is_ok()
                {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .unwrap();
    drop(handle);
    let deadline = Instant::now() + Duration::from_secs(4);
    while ended.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the shards were not asked to stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `Runtime::start` docs: "tasks it spawned and did not wait for are dropped
/// with it" (so their destructors run: sockets closed, guards released).
#[test]
fn tasks_left_behind_are_dropped_with_their_shard() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    util::run_with(config(1), move || {
        let guard = SetOnDrop(flag.clone());
        async move {
            shardlet::spawn_n(async move {
                let _guard = guard;
                shardlet::sleep(Duration::from_secs(3600)).await;
            });
            util::settle().await;
        }
    });
    assert!(
        dropped.load(Ordering::SeqCst),
        "the detached task outlived its shard"
    );
}

#[test]
fn handles_and_errors_cross_threads() {
    util::assert_send_sync::<Stopper>();
    util::assert_send_sync::<RuntimeError>();
    util::assert_send_sync::<Config>();
    fn send<T: Send + 'static>() {}
    send::<RuntimeHandle<u64>>();
    send::<Runtime>();
}

#[test]
fn memlock_limit_is_checked_before_any_ring_is_built() {
    // Ask for more locked memory than the limits here allow (never run: only `new`).
    let large = 512usize << 20;
    let result = Runtime::new(config(1).with_io_memory(large));
    if memlock_is_charged() {
        match result {
            Err(RuntimeError::Memlock(e)) => {
                let line = e.to_string();
                assert!(line.contains("RLIMIT_MEMLOCK"), "{line}");
                assert!(line.contains("ulimit -l"), "says what to raise: {line}");
                assert!(line.contains("SHARDLET_IO_MEMORY"), "{line}");
            }
            other => panic!("expected a memlock error, got {other:?}"),
        }
    } else {
        // Unlimited, or CAP_IPC_LOCK: nothing is charged, so the request stands.
        let runtime = result.expect("nothing is charged against RLIMIT_MEMLOCK here");
        assert_eq!(runtime.shards(), 1);
    }
}

#[test]
fn io_memory_beyond_what_glommio_can_map_is_a_config_error() {
    // Issue 16: SHARDLET_IO_MEMORY=100G as root (nothing charged against
    // RLIMIT_MEMLOCK) passed validation and then panicked inside glommio's
    // ring setup ("called Option::unwrap() on a None value").
    match Runtime::new(config(1).with_io_memory(100 << 30)) {
        Err(RuntimeError::Config(e)) => {
            assert_eq!(e.var, "SHARDLET_IO_MEMORY");
            assert!(e.to_string().contains("at most 1G"), "{e}");
        }
        other => panic!("expected a config error naming SHARDLET_IO_MEMORY, got {other:?}"),
    }
}

/// Whether io_uring buffers count against `RLIMIT_MEMLOCK` for this process
/// (a finite limit and no `CAP_IPC_LOCK`).
fn memlock_is_charged() -> bool {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
    let cap_ipc_lock = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 14) != 0);
    soft != RLIM_INFINITY && !cap_ipc_lock
}

/// Sets its flag when dropped: proves a future was dropped, not leaked.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
