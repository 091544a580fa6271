//! `blocking`: the result comes back, a panic comes back as `Err` (never a
//! hang), the shard keeps running other tasks meanwhile, and the pool is
//! sized by `SHARDLET_BLOCKING_THREADS` and shared by the runtime's shards.

mod util;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardlet::{blocking, spawn, timeout};
use util::{config, run1, run_with, wait_until, Ticker};

#[test]
fn returns_the_closures_result_from_another_thread() {
    run1(|| async {
        let shard_thread = std::thread::current().id();
        let (value, thread, name) = blocking(|| {
            let me = std::thread::current();
            (21 * 2, me.id(), me.name().map(str::to_owned))
        })
        .await
        .unwrap();
        assert_eq!(value, 42);
        assert_ne!(thread, shard_thread, "ran on the shard thread");
        assert!(name.unwrap_or_default().starts_with("shardlet-blocking-"));
    });
}

#[test]
fn std_file_io() {
    run1(|| async {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let text = blocking(move || std::fs::read_to_string(path))
            .await
            .unwrap()
            .unwrap();
        assert!(text.contains("name = \"shardlet\""));
    });
}

#[test]
fn a_panic_comes_back_as_an_err() {
    run1(|| async {
        let got = timeout(
            Duration::from_secs(5),
            blocking(|| -> u32 { panic!("legacy library exploded") }),
        )
        .await
        .expect("the caller hung on a panicking closure");
        let err = got.expect_err("expected a panic");
        assert_eq!(err.panic_message(), Some("legacy library exploded"));
        assert!(err.panic_location().unwrap_or_default().contains("blocking.rs"));
    });
}

#[test]
fn the_pool_thread_survives_a_panic() {
    // One thread: if a panic killed it, the next call would never run.
    run_with(config(1).with_blocking_threads(1), || async {
        for i in 0..3 {
            let got = blocking(move || -> i32 { panic!("panic {i}") }).await;
            assert!(got.unwrap_err().is_panic());
        }
        let next = timeout(Duration::from_secs(5), blocking(|| "alive")).await;
        assert_eq!(next, Ok(Ok("alive")));
    });
}

#[test]
fn the_shard_keeps_running_while_a_blocking_call_sleeps() {
    run1(|| async {
        let ticker = Ticker::start();
        let ticks = ticker.ticks.clone();
        wait_until("the ticker runs", || ticks.get() > 0).await;
        let before = ticks.get();
        let start = Instant::now();
        blocking(|| std::thread::sleep(Duration::from_millis(200)))
            .await
            .unwrap();
        let took = start.elapsed();
        let during = ticks.get() - before;
        ticker.stop().await;
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(during >= 20, "the shard stalled: {during} ticks in {took:?}");
    });
}

#[test]
fn at_most_blocking_threads_calls_run_at_once() {
    run_with(config(1).with_blocking_threads(2), || async {
        let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let (now, max) = (now.clone(), max.clone());
                spawn(blocking(move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn one_pool_per_runtime_shared_by_its_shards() {
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, m) = (now.clone(), max.clone());
    run_with(config(2).with_blocking_threads(1), move || {
        let (now, max) = (n.clone(), m.clone());
        async move {
            for _ in 0..3 {
                let (now, max) = (now.clone(), max.clone());
                blocking(move || {
                    let k = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(k, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .unwrap();
            }
        }
    });
    assert_eq!(
        max.load(Ordering::SeqCst),
        1,
        "two blocking calls ran at once with one thread"
    );
}

/// A result whose `Drop` panics, dropped by the pool because its caller
/// gave up, must not end the pool's thread. Before: the panic unwound out
/// of the thread's loop, so the thread ended with `busy` still counting it,
/// and with one thread every later call waited forever.
#[test]
fn a_result_that_panics_when_dropped_unclaimed_keeps_the_thread() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("dropped unclaimed");
        }
    }
    let handle = shardlet::Runtime::new(config(1).with_blocking_threads(1))
        .unwrap()
        .start(|| {
            util::bounded(async {
                let (release, released) = std::sync::mpsc::channel::<()>();
                let gave_up = timeout(
                    Duration::from_millis(10),
                    blocking(move || {
                        let _ = released.recv();
                        Bomb
                    }),
                )
                .await;
                assert!(gave_up.is_err());
                release.send(()).unwrap();
                let next = timeout(Duration::from_secs(5), blocking(|| "alive")).await;
                assert_eq!(next, Ok(Ok("alive")), "the only blocking thread died");
            })
        })
        .unwrap();
    let metrics = handle.metrics();
    let (result, _) = util::join_within(handle, Duration::from_secs(30));
    result.unwrap();
    // The thread counts "alive" done just after its caller has the answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.stats().blocking.busy != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(metrics.stats().blocking.busy, 0, "{}", metrics.stats());
    assert_eq!(metrics.stats().blocking.panics, 1, "{}", metrics.stats());
}

#[test]
fn a_call_whose_caller_gave_up_still_runs_to_completion() {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    run1(move || {
        let flag = flag.clone();
        async move {
            let f = flag.clone();
            // The closure goes on only once its caller has given up, however
            // slow the machine: a fixed sleep lost that race under load.
            let (release, released) = std::sync::mpsc::channel::<()>();
            let gave_up = timeout(
                Duration::from_millis(10),
                blocking(move || {
                    let _ = released.recv();
                    f.store(true, Ordering::SeqCst);
                }),
            )
            .await;
            assert!(gave_up.is_err());
            release.send(()).unwrap();
            wait_until("the abandoned call finishes", || flag.load(Ordering::SeqCst)).await;
        }
    });
    assert!(finished.load(Ordering::SeqCst));
}

#[test]
fn works_on_a_plain_glommio_executor() {
    // Not started by a shardlet runtime: a process-wide pool takes the job.
    let got = std::thread::spawn(|| {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(util::IO_MEMORY)
            .make()
            .unwrap();
        executor.run(async {
            let panic = blocking(|| -> () { panic!("outside") }).await;
            (blocking(|| 7).await, panic.unwrap_err().is_panic())
        })
    })
    .join()
    .unwrap();
    assert_eq!(got, (Ok(7), true));
}

#[test]
fn closures_still_queued_when_the_runtime_is_joined_never_run() {
    // Issue 16: queued closures ran after `join` returned, although the
    // pool is documented as stopped with the runtime.
    let (queued, entry) = occupy_and_queue();
    run_with(config(1).with_blocking_threads(1), entry);
    queued.occupied.recv().unwrap();
    queued.release.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        queued.ran.load(Ordering::SeqCst),
        0,
        "no queued closure ran after join"
    );
}

/// What [`occupy_and_queue`]'s entry leaves behind.
struct Queued {
    /// Lets the closure that occupies the only blocking thread return.
    release: std::sync::mpsc::Sender<()>,
    /// Told once that closure runs.
    occupied: std::sync::mpsc::Receiver<()>,
    /// Counts the closures queued behind it that ran.
    ran: Arc<AtomicUsize>,
    /// Disconnected once the blocking thread has ended.
    ended: std::sync::mpsc::Receiver<()>,
}

/// A shard entry that occupies the only blocking thread until
/// [`Queued::release`], queues three closures behind it, and ends without
/// waiting for any of them.
fn occupy_and_queue() -> (
    Queued,
    impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + Sync,
) {
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let (occupied_tx, occupied) = std::sync::mpsc::channel::<()>();
    let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
    let ran = Arc::new(AtomicUsize::new(0));
    let late = ran.clone();
    let entry = move || {
        let (release_rx, late, occupied_tx, ended_tx) = (
            release_rx.clone(),
            late.clone(),
            occupied_tx.clone(),
            ended_tx.clone(),
        );
        let (started_tx, started) = flume::bounded::<()>(1);
        Box::pin(async move {
            let busy = spawn(blocking(move || {
                report_thread_end(ended_tx)();
                occupied_tx.send(()).unwrap();
                let _ = started_tx.send(());
                let _ = release_rx.lock().unwrap().recv();
            }));
            let queued: Vec<_> = (0..3)
                .map(|_| {
                    let late = late.clone();
                    spawn(blocking(move || late.fetch_add(1, Ordering::SeqCst)))
                })
                .collect();
            // Not a fixed sleep: a pool thread just made may take longer
            // to pick its first closure up, and the shard's end drops a
            // closure still queued (this one too, which the test waits on).
            let _ = started.recv_async().await;
            drop((busy, queued)); // detached: the shard ends without them
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
    };
    let queued = Queued {
        release,
        occupied,
        ran,
        ended,
    };
    (queued, entry)
}

/// With CPUs reserved for the host, the blocking pool's threads keep to
/// them, off the shards' CPUs; with none reserved, they run anywhere.
/// Before: they ran on every CPU, the shards' included.
#[test]
fn blocking_threads_keep_to_the_cpus_reserved_for_the_host() {
    let cpus = util::affinity();
    if cpus.len() < 2 {
        eprintln!("one CPU: none to reserve");
        return;
    }
    let runtime = shardlet::Runtime::new(config(1).with_reserve_cpus(1)).unwrap();
    let host = runtime.plan().host_cpus().to_vec();
    assert_eq!(host.len(), 1);
    let masks = runtime
        .run(|| async {
            let mut masks = Vec::new();
            for _ in 0..4 {
                masks.push(blocking(util::affinity).await.unwrap());
            }
            masks
        })
        .unwrap();
    assert!(
        masks[0].iter().all(|m| *m == host),
        "{masks:?} against the host's {host:?}"
    );

    let masks = shardlet::Runtime::new(config(1))
        .unwrap()
        .run(|| async { blocking(util::affinity).await.unwrap() })
        .unwrap();
    assert_eq!(masks, [cpus]);
}

thread_local! {
    /// Dropped when its thread ends: the receiver then sees the sender gone.
    static ON_EXIT: std::cell::RefCell<Option<std::sync::mpsc::Sender<()>>> =
        const { std::cell::RefCell::new(None) };
}

/// A closure that makes its pool thread report its own end.
fn report_thread_end(tx: std::sync::mpsc::Sender<()>) -> impl FnOnce() + Send {
    move || ON_EXIT.with(|slot| *slot.borrow_mut() = Some(tx))
}

/// The pool's threads end with the runtime, although a metrics handle
/// (which holds the pool's queue open) outlives it. Before: they waited for
/// work until the last such handle was dropped, one idle set per runtime.
#[test]
fn the_pools_threads_end_with_the_runtime_while_a_metrics_handle_lives() {
    let (tx, ended) = std::sync::mpsc::channel::<()>();
    let handle = shardlet::Runtime::new(config(1).with_blocking_threads(1))
        .unwrap()
        .start(move || {
            let tx = tx.clone();
            async move { blocking(report_thread_end(tx)).await.unwrap() }
        })
        .unwrap();
    let metrics = handle.metrics();
    handle.join().unwrap();
    assert_eq!(
        ended.recv_timeout(Duration::from_secs(10)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
        "the blocking thread is still alive after the join"
    );
    // Nothing left queued once the threads are gone.
    assert_eq!(metrics.stats().blocking.queued, 0, "{}", metrics.stats());
}

/// A handle that is never joined: once its shards have ended, closures still
/// queued are dropped unrun and the pool's threads end. Before: the pool
/// closed only in `join`, so the queued closures ran later, for nobody.
#[test]
fn queued_closures_are_dropped_once_the_shards_end_without_a_join() {
    let (queued, entry) = occupy_and_queue();
    let handle = shardlet::Runtime::new(config(1).with_blocking_threads(1))
        .unwrap()
        .start(entry)
        .unwrap();
    queued.occupied.recv().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "the shard did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
    queued.release.send(()).unwrap();
    assert_eq!(
        queued.ended.recv_timeout(Duration::from_secs(10)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
        "the blocking thread is still alive after its runtime's shards ended"
    );
    assert_eq!(
        queued.ran.load(Ordering::SeqCst),
        0,
        "queued closures ran after the shards ended"
    );
    drop(handle);
}

/// Once the pool is closed, no closure waits for a thread: `queued` is 0,
/// also while a thread still runs a closure its caller gave up on. Before:
/// the wake-up that close queues for that thread counted as a closure
/// waiting (`queued=1` after the join, until the closure returned).
#[test]
fn nothing_is_queued_once_the_pool_is_closed_while_a_thread_is_busy() {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Arc::new(std::sync::Mutex::new(released));
    let (occupied_tx, occupied) = std::sync::mpsc::channel::<()>();
    let handle = shardlet::Runtime::new(config(1).with_blocking_threads(2))
        .unwrap()
        .start(move || {
            let (released, occupied_tx) = (released.clone(), occupied_tx.clone());
            let (started_tx, started) = flume::bounded::<()>(1);
            async move {
                // Detached: the shard ends while the closure runs (once it
                // runs: a closure still queued is dropped at the shard's end).
                drop(spawn(blocking(move || {
                    occupied_tx.send(()).unwrap();
                    let _ = started_tx.send(());
                    let _ = released.lock().unwrap().recv();
                })));
                let _ = started.recv_async().await;
            }
        })
        .unwrap();
    occupied.recv_timeout(Duration::from_secs(10)).unwrap();
    let metrics = handle.metrics();
    handle.join().unwrap();
    // Give the idle thread its time to take its wake-up and end.
    std::thread::sleep(Duration::from_millis(100));
    let queued = metrics.stats().blocking.queued;
    release.send(()).unwrap();
    assert_eq!(queued, 0, "{}", metrics.stats());
}
