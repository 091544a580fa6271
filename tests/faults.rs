//! The core's failure model under stress (issue 16): every scenario that
//! once hung, livelocked or aborted the process, run in a bounded loop.
//!
//! Each scenario runs in a child process (this test binary, run again with
//! [`SCENARIO`] set to its name), so that a hang is killed after [`LIMIT`]
//! and an abort (exit 134) is seen as a failure instead of taking the whole
//! test run down. The child prints [`DONE`] when every check passed.

mod util;

use std::cell::Cell;
use std::io::Read;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use shardlet::{
    shard, sleep, spawn, spawn_n, spawn_on, submit_to, timeout, FanoutPile, GreenPool, MeshError, Runtime,
    RuntimeError,
};
use util::config;

const SCENARIO: &str = "SHARDLET_TEST_FAULT";
const DONE: &str = "FAULT-SCENARIO-DONE";
/// How long a scenario may run before it counts as hung.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `name` in a child process; fails unless it exits 0 having printed [`DONE`].
fn run_child(name: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let tail = |s: &str| {
        s.chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<String>()
    };
    match status {
        None => panic!(
            "scenario {name} hung (killed after {LIMIT:?})\nstdout: {}\nstderr: {}",
            tail(&out),
            tail(&err)
        ),
        Some(status) => assert!(
            status.success() && out.contains(DONE),
            "scenario {name} failed: {status}\nstdout: {}\nstderr: {}",
            tail(&out),
            tail(&err)
        ),
    }
}

/// The child: runs the scenario named in [`SCENARIO`]; nothing in a normal run.
#[test]
fn child() {
    let Ok(name) = std::env::var(SCENARIO) else {
        return;
    };
    match name.as_str() {
        "lane_senders_default_settings" => scenario::lane_senders(None, 2000, 20),
        "lane_senders_small_mailbox" => scenario::lane_senders(Some(4), 50, 20),
        "fanout_piles_fill_their_lanes" => scenario::fanout_piles(),
        "self_requeue_does_not_livelock" => scenario::self_requeue(),
        "panicking_drop_at_shard_end" => scenario::panicking_drop_at_shard_end(),
        "panicking_drop_on_cancel" => scenario::panicking_drop_on_cancel(),
        "panicking_drop_in_dropped_imap" => scenario::panicking_drop_in_dropped_imap(),
        "waitall_polled_again_and_again" => scenario::waitall_polled_again_and_again(),
        "entry_closure_panic" => scenario::entry_closure_panic(),
        "panicking_drop_in_unrun_message" => scenario::panicking_drop_in_unrun_message(),
        "deep_spawn_chain" => scenario::deep_spawn_chain(),
        "deep_inline_pool" => scenario::deep_inline_pool(),
        "start_stop_cycles" => scenario::start_stop_cycles(),
        "host_sender_parked_at_shard_end" => scenario::host_sender_parked_at_shard_end(),
        other => panic!("unknown scenario {other}"),
    }
    println!("\n{DONE}");
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_child(stringify!($name));
            }
        )*
    };
}

scenarios!(
    lane_senders_default_settings,
    lane_senders_small_mailbox,
    fanout_piles_fill_their_lanes,
    self_requeue_does_not_livelock,
    panicking_drop_at_shard_end,
    panicking_drop_on_cancel,
    panicking_drop_in_dropped_imap,
    waitall_polled_again_and_again,
    entry_closure_panic,
    panicking_drop_in_unrun_message,
    deep_spawn_chain,
    deep_inline_pool,
    start_stop_cycles,
    host_sender_parked_at_shard_end,
);

/// Panics when dropped (unless already panicking).
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PanicOnDrop dropped");
        }
    }
}

mod scenario {
    use super::*;

    /// Many tasks of shard 0 send to shard 1 at once, far more than its lane
    /// holds: every send must go through (a lost wake-up left senders stuck).
    pub fn lane_senders(mailbox: Option<usize>, tasks: usize, sends: usize) {
        let mut cfg = config(2);
        if let Some(capacity) = mailbox {
            cfg = cfg.with_mailbox(capacity);
        }
        let arrived = Arc::new(AtomicUsize::new(0));
        let seen = arrived.clone();
        let finished = Runtime::new(cfg)
            .unwrap()
            .run(move || {
                let arrived = arrived.clone();
                async move {
                    if shard::id() != 0 {
                        return 0;
                    }
                    let done = Rc::new(Cell::new(0));
                    let mut senders = Vec::new();
                    for _ in 0..tasks {
                        let (arrived, done) = (arrived.clone(), done.clone());
                        senders.push(spawn(async move {
                            for _ in 0..sends {
                                let arrived = arrived.clone();
                                spawn_on(1, move || async move {
                                    arrived.fetch_add(1, SeqCst);
                                })
                                .await
                                .unwrap();
                            }
                            done.set(done.get() + 1);
                        }));
                    }
                    let all = async {
                        for sender in senders {
                            sender.await.unwrap();
                        }
                    };
                    if timeout(Duration::from_secs(30), all).await.is_err() {
                        panic!("{} of {tasks} senders stuck", tasks - done.get());
                    }
                    done.get()
                }
            })
            .unwrap();
        assert_eq!(finished[0], tasks);
        assert_eq!(seen.load(SeqCst), tasks * sends, "every message ran");
    }

    /// 200 request tasks, each filling its own fan-out pile.
    pub fn fanout_piles() {
        let finished = Runtime::new(config(2))
            .unwrap()
            .run(|| async {
                if shard::id() != 0 {
                    return 0;
                }
                let requests: Vec<_> = (0..200)
                    .map(|r| {
                        spawn(async move {
                            let mut pile = FanoutPile::new();
                            for i in 0..100u64 {
                                pile.spawn(move || async move { i * 2 }).await;
                            }
                            let got: Vec<u64> = pile.map(Result::unwrap).collect().await;
                            assert_eq!(got, (0..100).map(|i| i * 2).collect::<Vec<_>>(), "request {r}");
                        })
                    })
                    .collect();
                let all = async {
                    let mut n = 0;
                    for request in requests {
                        request.await.unwrap();
                        n += 1;
                    }
                    n
                };
                timeout(Duration::from_secs(30), all)
                    .await
                    .expect("fan-out requests stuck")
            })
            .unwrap();
        assert_eq!(finished[0], 200);
    }

    /// A job that sends itself back to its own shard, forever: the shard's
    /// timers must still fire and its stop must still end it.
    pub fn self_requeue() {
        fn hop(hops: Arc<AtomicUsize>) {
            let again = hops.clone();
            hops.fetch_add(1, SeqCst);
            let sent = shard::mesh().try_spawn_on(shard::id(), move || async move { hop(again) });
            // A full lane is fine: the next hop is on its way anyway.
            drop(sent);
        }
        let hops = Arc::new(AtomicUsize::new(0));
        let counted = hops.clone();
        let runtime = Runtime::new(config(1)).unwrap();
        let handle = runtime
            .start(move || {
                let hops = hops.clone();
                async move {
                    let mesh = shard::mesh();
                    for _ in 0..4 {
                        let hops = hops.clone();
                        mesh.spawn_on(0, move || async move { hop(hops) }).await.unwrap();
                    }
                    let started = Instant::now();
                    sleep(Duration::from_millis(20)).await;
                    let slept = started.elapsed();
                    shard::stopped().await;
                    slept
                }
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let stopped = Instant::now();
        handle.stop(Duration::from_millis(100));
        let slept = handle.join().unwrap()[0];
        assert!(slept < Duration::from_secs(2), "a 20 ms sleep took {slept:?}");
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "the stop took {:?}",
            stopped.elapsed()
        );
        assert!(counted.load(SeqCst) > 1000, "the job kept hopping");
    }

    /// Tasks waiting with a panicking `Drop` in their future when the shard ends.
    pub fn panicking_drop_at_shard_end() {
        let before = Arc::new(AtomicUsize::new(0));
        let b = before.clone();
        Runtime::new(config(1))
            .unwrap()
            .run(move || {
                let before = b.clone();
                async move {
                    for _ in 0..100 {
                        spawn_n(async move {
                            let _bomb = PanicOnDrop;
                            std::future::pending::<()>().await;
                        });
                    }
                    before.store(shard::panics() as usize, SeqCst);
                }
            })
            .unwrap();
        assert_eq!(before.load(SeqCst), 0);
    }

    /// `GreenThread::cancel` on tasks whose futures panic when dropped.
    pub fn panicking_drop_on_cancel() {
        let panics = Runtime::new(config(1))
            .unwrap()
            .run(|| async {
                let mut threads = Vec::new();
                for _ in 0..100 {
                    threads.push(spawn(async {
                        let _bomb = PanicOnDrop;
                        sleep(Duration::from_secs(60)).await;
                    }));
                }
                for thread in &threads {
                    thread.cancel();
                }
                for thread in threads {
                    assert!(thread.await.unwrap_err().is_cancelled());
                }
                // The shard goes on.
                assert_eq!(spawn(async { 7 }).await, Ok(7));
                shard::panics()
            })
            .unwrap();
        assert_eq!(panics[0], 100, "each panicking drop was caught and counted");
    }

    /// An `Imap` dropped with calls in flight whose futures panic when dropped.
    pub fn panicking_drop_in_dropped_imap() {
        Runtime::new(config(1))
            .unwrap()
            .run(|| async {
                for round in 0..20 {
                    let pool = GreenPool::new(8);
                    let mut calls = pool.imap(0..100, |i| async move {
                        if i > 0 {
                            let _bomb = PanicOnDrop;
                            sleep(Duration::from_secs(60)).await;
                        }
                        i
                    });
                    assert_eq!(calls.next().await.unwrap().unwrap(), 0, "round {round}");
                    drop(calls);
                    sleep(Duration::from_millis(2)).await;
                    assert_eq!(pool.running(), 0, "round {round}: every call was cancelled");
                }
                // A pool full of its own task spawning inline, dropped inside an imap.
                let pool = GreenPool::new(1);
                let inner = pool.clone();
                let outer = pool
                    .spawn(async move {
                        let mut calls = inner.imap(0..3, |_| async {
                            let _bomb = PanicOnDrop;
                            sleep(Duration::from_secs(60)).await;
                        });
                        let _ = futures_lite::future::poll_once(calls.next()).await;
                    })
                    .await;
                assert!(outer.await.is_ok());
            })
            .unwrap();
    }

    /// `timeout(.., pool.waitall())` in a loop while the pool is busy.
    pub fn waitall_polled_again_and_again() {
        Runtime::new(config(1))
            .unwrap()
            .run(|| async {
                let pool = GreenPool::new(1);
                let busy = pool.spawn(sleep(Duration::from_millis(300))).await;
                for _ in 0..50_000 {
                    assert!(futures_lite::future::poll_once(pool.waitall()).await.is_none());
                }
                timeout(Duration::from_secs(5), pool.waitall())
                    .await
                    .expect("waitall returns once the pool is idle");
                busy.await.unwrap();
            })
            .unwrap();
    }

    /// A shard whose entry *closure* panics: callers on other shards get an
    /// answer at once (never a time-out), and `join` names the panic.
    pub fn entry_closure_panic() {
        let (verdict_tx, verdict) = std::sync::mpsc::channel();
        let runtime = Runtime::new(config(2)).unwrap();
        let result = runtime.run(move || {
            if shard::id() == 1 {
                panic!("closure boom");
            }
            let verdict_tx = verdict_tx.clone();
            async move {
                // Well within the failure grace (2 s) that the panic starts.
                for _ in 0..5 {
                    let answer = timeout(Duration::from_millis(250), submit_to(1, || async { 5 })).await;
                    if !matches!(answer, Ok(Ok(5)) | Ok(Err(MeshError::ShardGone { shard: 1 }))) {
                        verdict_tx
                            .send(format!("submit_to(1) after its shard panicked: {answer:?}"))
                            .unwrap();
                        return;
                    }
                }
                verdict_tx.send("ok".to_string()).unwrap();
            }
        });
        match result {
            Err(RuntimeError::ShardPanicked { shard: 1, message }) => {
                assert!(message.contains("closure boom"), "{message}")
            }
            other => panic!("expected shard 1's panic, got {other:?}"),
        }
        assert_eq!(verdict.recv().unwrap(), "ok");
    }

    /// Messages dropped unrun as their shard ends, some of them panicking as
    /// they drop: every one is counted.
    pub fn panicking_drop_in_unrun_message() {
        const SENT: u64 = 40;
        let runtime = Runtime::new(config(1).with_mailbox(64)).unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = flume::bounded::<()>(1);
        let handle = runtime
            .start(move || {
                let (ready_tx, go_rx) = (ready_tx.clone(), go_rx.clone());
                async move {
                    // Hold the shard's thread: nothing drains its mailbox meanwhile.
                    ready_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                }
            })
            .unwrap();
        ready_rx.recv().unwrap();
        let mesh = handle.mesh();
        for i in 0..SENT {
            let bomb = if i % 2 == 0 { Some(PanicOnDrop) } else { None };
            let sent = mesh.try_spawn_on(0, move || async move {
                drop(bomb);
            });
            assert!(sent.is_ok(), "the mailbox has room");
        }
        go_tx.send(()).unwrap();
        handle.join().unwrap();
        assert_eq!(mesh.dropped(), SENT, "every unrun message is counted");
    }

    /// A host thread's `spawn_on` waits for room in a full mailbox, and its
    /// future is kept but not polled again (held in a struct, a `select` arm
    /// that lost) while the shard ends: the shard still ends (its close once
    /// spun forever on the sender's pass through the mailbox's gate), and the
    /// sender, woken, gets `ShardGone`.
    pub fn host_sender_parked_at_shard_end() {
        use std::future::Future;
        use std::sync::atomic::AtomicBool;
        use std::task::{Context, Poll, Wake, Waker};

        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, SeqCst);
            }
        }

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = flume::bounded::<()>(1);
        let handle = Runtime::new(config(1).with_mailbox(1))
            .unwrap()
            .start(move || {
                let (ready_tx, go_rx) = (ready_tx.clone(), go_rx.clone());
                async move {
                    // Hold the shard's thread: nothing drains its mailbox meanwhile.
                    ready_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    shard::stopped().await;
                }
            })
            .unwrap();
        ready_rx.recv().unwrap();
        let mesh = handle.mesh();
        assert!(
            mesh.try_spawn_on(0, || async {}).is_ok(),
            "the mailbox has room for one"
        );
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut parked = Box::pin(mesh.spawn_on(0, || async {}));
        assert!(
            parked
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending(),
            "the mailbox is full: the sender waits"
        );
        go_tx.send(()).unwrap();
        handle.stop(Duration::from_millis(100));
        handle.join().unwrap();
        assert!(flag.0.load(SeqCst), "the waiting sender was woken");
        match parked.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(Err(MeshError::ShardGone { shard: 0 })) => {}
            other => panic!("expected ShardGone for shard 0, got {other:?}"),
        }
    }

    /// A chain of 20,000 `spawn_n`, each started by the one before.
    pub fn deep_spawn_chain() {
        fn link(left: usize, done: Rc<Cell<usize>>) {
            done.set(done.get() + 1);
            if left > 0 {
                spawn_n(async move { link(left - 1, done) });
            }
        }
        let links = Runtime::new(config(1))
            .unwrap()
            .run(|| async {
                let done = Rc::new(Cell::new(0));
                link(20_000, done.clone());
                let deadline = Instant::now() + Duration::from_secs(20);
                while done.get() < 20_001 && Instant::now() < deadline {
                    sleep(Duration::from_millis(1)).await;
                }
                done.get()
            })
            .unwrap();
        assert_eq!(links[0], 20_001);
    }

    /// A pool of one whose task spawns into it, 20,000 levels deep.
    pub fn deep_inline_pool() {
        fn nest(pool: GreenPool, left: usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize>>> {
            Box::pin(async move {
                if left == 0 {
                    return 0;
                }
                let child = pool.spawn(nest(pool.clone(), left - 1)).await;
                child.await.unwrap() + 1
            })
        }
        let depth = Runtime::new(config(1))
            .unwrap()
            .run(|| async {
                let pool = GreenPool::new(1);
                let top = pool.spawn(nest(pool.clone(), 20_000)).await;
                let depth = top.await.unwrap();
                assert_eq!(pool.running(), 0, "slots beyond the size are given back");
                depth
            })
            .unwrap();
        assert_eq!(depth[0], 20_000);
    }

    /// Runtimes started and stopped again and again leave no thread and no
    /// descriptor of their own behind. glommio itself keeps one eventfd per
    /// executor it ever built (glommio issue #448, open upstream); that one
    /// is allowed for, and only that one.
    pub fn start_stop_cycles() {
        const CYCLES: usize = 20;
        const SHARDS: usize = 2;
        /// (eventfds, every other descriptor) open now.
        fn fds() -> (usize, usize) {
            let links: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            let eventfds = links.iter().filter(|l| l.contains("[eventfd]")).count();
            (eventfds, links.len() - eventfds)
        }
        fn threads() -> usize {
            std::fs::read_dir("/proc/self/task").unwrap().count()
        }
        let cycle = || {
            let handle = Runtime::new(config(SHARDS))
                .unwrap()
                .start(|| async {
                    let other = (shard::id() + 1) % shard::count();
                    submit_to(other, || async { shard::id() }).await.unwrap();
                    shardlet::blocking(|| 1).await.unwrap();
                    spawn_n(async { sleep(Duration::from_secs(60)).await });
                    shard::stopped().await;
                })
                .unwrap();
            handle.stop(Duration::from_secs(1));
            handle.join().unwrap();
        };
        cycle(); // the first runtime may set up process-wide state
        let settle = || std::thread::sleep(Duration::from_millis(300));
        settle();
        let ((eventfds, others), threads_before) = (fds(), threads());
        for _ in 0..CYCLES {
            cycle();
        }
        // Exiting threads (and the descriptors they close) may take a
        // while to go on a loaded machine: wait for the counts, bounded.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while (threads() != threads_before || fds().1 != others) && std::time::Instant::now() < until {
            settle();
        }
        let ((eventfds_after, others_after), threads_after) = (fds(), threads());
        assert_eq!(
            threads_after, threads_before,
            "threads left behind by {CYCLES} start/stop cycles"
        );
        assert_eq!(
            others_after, others,
            "descriptors left behind by {CYCLES} start/stop cycles"
        );
        assert!(
            eventfds_after - eventfds <= CYCLES * SHARDS,
            "eventfds: {eventfds} -> {eventfds_after}, more than glommio's one per executor"
        );
    }
}
