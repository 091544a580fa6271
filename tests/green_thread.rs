//! Green threads: `spawn` / `GreenThread` / `JoinError`, `cancel`, `spawn_n`
//! (its panics counted, logged through `tracing`, never printed), and the
//! `sleep` / `timeout` helpers.

mod util;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardlet::{shard, sleep, spawn, spawn_n, timeout, Elapsed, GreenPool, GreenThread, JoinError};
use util::{run1, settle, wait_until, Counter, Gate, Ticker};

#[test]
fn spawn_then_await_or_join() {
    run1(|| async {
        let a = spawn(async { 40 + 2 });
        let b = spawn(async { String::from("joined") });
        assert_eq!(a.await, Ok(42));
        assert_eq!(b.join().await.as_deref(), Ok("joined"));
    });
}

#[test]
fn green_threads_run_concurrently() {
    // Each waits for the other's gate: only possible if both run at once.
    run1(|| async {
        let (ping, pong) = (Gate::new(), Gate::new());
        let a = spawn({
            let (ping, pong) = (ping.clone(), pong.clone());
            async move {
                ping.open();
                pong.wait().await;
                "a"
            }
        });
        let b = spawn(async move {
            ping.wait().await;
            pong.open();
            "b"
        });
        assert_eq!((a.await, b.await), (Ok("a"), Ok("b")));
    });
}

#[test]
fn a_panic_is_a_value_with_message_and_location() {
    run1(|| async {
        let before = shard::panics();
        let err = spawn(async {
            let n = 7;
            if n == 7 {
                panic!("bad input {n}");
            }
            n
        })
        .await
        .unwrap_err();
        assert!(err.is_panic() && !err.is_cancelled());
        assert_eq!(err.panic_message(), Some("bad input 7"));
        let at = err.panic_location().expect("no location");
        assert!(at.contains("green_thread.rs"), "{at}");
        let line = err.to_string();
        assert!(
            line.starts_with("task panicked at ") && line.ends_with(": bad input 7"),
            "{line}"
        );
        assert_eq!(shard::panics(), before + 1);
    });
}

#[test]
fn a_panic_after_a_suspension_point_is_caught_too() {
    run1(|| async {
        let err = spawn(async {
            sleep(Duration::from_millis(2)).await;
            panic!("late");
        })
        .await;
        assert_eq!(err.unwrap_err().panic_message(), Some("late"));
    });
}

#[test]
fn a_non_string_panic_payload() {
    run1(|| async {
        let err = spawn(async { std::panic::panic_any(42u8) }).await.unwrap_err();
        let message = err.panic_message().expect("not a panic");
        assert!(!message.is_empty());
    });
}

#[test]
fn the_shard_keeps_serving_after_panics() {
    run1(|| async {
        let before = shard::panics();
        let handles: Vec<_> = (0..10)
            .map(|i| {
                spawn(async move {
                    if i % 2 == 0 {
                        panic!("even {i}");
                    }
                    i
                })
            })
            .collect();
        let mut ok = Vec::new();
        for h in handles {
            if let Ok(v) = h.await {
                ok.push(v);
            }
        }
        assert_eq!(ok, [1, 3, 5, 7, 9]);
        assert_eq!(shard::panics(), before + 5);
        assert_eq!(spawn(async { "still here" }).await, Ok("still here"));
    });
}

#[test]
fn cancel_gives_cancelled_and_runs_destructors() {
    run1(|| async {
        let (started, dropped, finished) = (Counter::new(), Counter::new(), Counter::new());
        let never = Gate::new();
        let t = spawn({
            let (started, dropped, finished) = (started.clone(), dropped.clone(), finished.clone());
            async move {
                let _guard = OnDrop(move || dropped.inc());
                started.inc();
                never.wait().await;
                finished.inc();
            }
        });
        wait_until("the task started", || started.get() == 1).await;
        t.cancel();
        let err = t.await.unwrap_err();
        assert!(err.is_cancelled() && !err.is_panic(), "{err:?}");
        assert_eq!(err.to_string(), "task was cancelled");
        assert_eq!((dropped.get(), finished.get()), (1, 0));
    });
}

#[test]
fn cancel_right_after_spawn() {
    // glommio polls a new task once as it is spawned; whatever it did up to
    // its first suspension point, it must not go past it.
    run1(|| async {
        let after = Counter::new();
        let t = spawn({
            let after = after.clone();
            async move {
                futures_lite::future::yield_now().await;
                after.inc()
            }
        });
        t.cancel();
        let err = t.await.unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        settle().await;
        assert_eq!(after.get(), 0);
    });
}

#[test]
fn cancel_after_completion_keeps_the_result() {
    run1(|| async {
        let t = spawn(async { 5 });
        settle().await;
        t.cancel();
        assert_eq!(t.await, Ok(5));
    });
}

#[test]
fn cancel_frees_the_pool_slot() {
    run1(|| async {
        let pool = GreenPool::new(1);
        let never = Gate::new();
        let t = pool
            .spawn({
                let never = never.clone();
                async move { never.wait().await }
            })
            .await;
        assert_eq!((pool.running(), pool.free()), (1, 0));
        // A spawner queued behind it.
        let next = spawn({
            let pool = pool.clone();
            async move { pool.spawn(async { "next ran" }).await.await }
        });
        wait_until("the spawner queues", || pool.waiting() == 1).await;
        t.cancel();
        let err = t.await.unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        assert_eq!(next.await.unwrap(), Ok("next ran"));
        wait_until("the slot is free", || pool.running() == 0).await;
        assert_eq!((pool.free(), pool.waiting()), (1, 0));
    });
}

#[test]
fn dropping_the_handle_detaches_the_task() {
    run1(|| async {
        let (gate, done) = (Gate::new(), Counter::new());
        drop(spawn({
            let (gate, done) = (gate.clone(), done.clone());
            async move {
                gate.wait().await;
                done.inc();
            }
        }));
        settle().await;
        assert_eq!(done.get(), 0);
        gate.open();
        wait_until("the detached task finishes", || done.get() == 1).await;
    });
}

#[test]
fn spawn_n_runs_to_completion() {
    run1(|| async {
        let done = Counter::new();
        for _ in 0..100 {
            let done = done.clone();
            spawn_n(async move {
                sleep(Duration::from_millis(1)).await;
                done.inc();
            });
        }
        wait_until("every spawn_n task ran", || done.get() == 100).await;
    });
}

#[test]
fn spawn_n_panics_are_counted_and_the_shard_keeps_serving() {
    run1(|| async {
        let before = shard::panics();
        for i in 0..3 {
            spawn_n(async move { panic!("spawn_n boom {i}") });
        }
        wait_until("three panics are counted", || shard::panics() == before + 3).await;
        let done = Counter::new();
        let d = done.clone();
        spawn_n(async move { d.inc() });
        wait_until("a later spawn_n task runs", || done.get() == 1).await;
        assert_eq!(spawn(async { 1 }).await, Ok(1));
        assert_eq!(shard::panics(), before + 3);
    });
}

/// A `Write` into a shared buffer, for a `tracing` subscriber under test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn spawn_n_panics_are_logged_through_tracing() {
    let log = run1(|| async {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let before = shard::panics();
        spawn_n(async { panic!("routed, not printed") });
        wait_until("the panic is counted", || shard::panics() == before + 1).await;
        captured.text()
    });
    let line = log
        .lines()
        .find(|l| l.contains("routed, not printed"))
        .unwrap_or_else(|| panic!("no log line for the panic in:\n{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("shardlet::task"), "{line}");
    assert!(line.contains("green_thread.rs"), "location missing: {line}");
}

/// Child half of `caught_panics_are_not_printed_to_stderr` and
/// `caught_panics_reach_stderr_without_a_subscriber`: does nothing unless
/// those tests run this binary with `SHARDLET_TEST_CHILD` set (to
/// `subscriber`: with a tracing subscriber writing to stdout).
#[test]
fn child_panics_in_green_threads() {
    let Some(mode) = std::env::var_os("SHARDLET_TEST_CHILD") else {
        return;
    };
    if mode == "subscriber" {
        tracing_subscriber::fmt().with_writer(std::io::stdout).init();
    }
    run1(|| async {
        let before = shard::panics();
        let _ = spawn(async { panic!("quiet spawn panic") }).await;
        spawn_n(async { panic!("quiet spawn_n panic") });
        let pool = GreenPool::new(2);
        let _ = pool.spawn(async { panic!("quiet pool panic") }).await.await;
        wait_until("three panics", || shard::panics() == before + 3).await;
    });
    // A panic nobody catches still reaches the previous hook (stderr).
    let _ = std::thread::spawn(|| panic!("loud thread panic")).join();
}

/// Runs the child above in `mode`: (stdout, stderr).
fn panics_child(mode: &str) -> (String, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_panics_in_green_threads",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHARDLET_TEST_CHILD", mode)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("loud thread panic"),
        "the control panic was not printed:\n{stderr}"
    );
    (stdout, stderr)
}

/// With a tracing subscriber, caught panics go through it, not to stderr.
#[test]
fn caught_panics_are_not_printed_to_stderr() {
    let (stdout, stderr) = panics_child("subscriber");
    assert!(!stderr.contains("quiet"), "a caught panic was printed:\n{stderr}");
    assert!(stdout.contains("quiet spawn_n panic"), "not logged:\n{stdout}");
}

/// Without one, they are not lost: each is printed on stderr, with its
/// location (issue 11; rate limiting is tested in tests/panics.rs).
#[test]
fn caught_panics_reach_stderr_without_a_subscriber() {
    let (_, stderr) = panics_child("bare");
    for what in ["quiet spawn panic", "quiet spawn_n panic", "quiet pool panic"] {
        let line = stderr
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what} was lost:\n{stderr}"));
        assert!(
            line.contains("shardlet-0") && line.contains("green_thread.rs:"),
            "{line}"
        );
    }
}

#[test]
fn sleep_suspends_only_the_calling_task() {
    run1(|| async {
        let ticker = Ticker::start();
        let ticks = ticker.ticks.clone();
        let start = Instant::now();
        // Long beside the ticker's 1 ms period, so that a loaded machine
        // that holds the shard's thread off its CPU for a while still lets
        // five ticks through.
        sleep(Duration::from_millis(200)).await;
        let slept = start.elapsed();
        ticker.stop().await;
        assert!(slept >= Duration::from_millis(200), "{slept:?}");
        assert!(ticks.get() >= 5, "other tasks barely ran: {} ticks", ticks.get());
    });
}

/// `sleep(ZERO)` yields, as Eventlet's `sleep(0)` does: a green thread
/// that loops on it lets the others run. Before, glommio's timer was ready
/// at once and the loop never gave the shard up.
#[test]
fn sleep_zero_lets_other_green_threads_run() {
    run1(|| async {
        let ran = Counter::new();
        let r = ran.clone();
        spawn_n(async move { r.inc() });
        // `spawn_n` ran the task's first step at once: make it wait a turn.
        let waiting = Counter::new();
        let w = waiting.clone();
        spawn_n(async move {
            futures_lite::future::yield_now().await;
            w.inc();
        });
        let mut sleeps = 0;
        while waiting.get() == 0 && sleeps < 1_000_000 {
            for tiny in [Duration::ZERO, Duration::from_nanos(1)] {
                sleep(tiny).await;
                sleeps += 1;
            }
        }
        assert_eq!(ran.get(), 1);
        assert_eq!(
            waiting.get(),
            1,
            "the waiting green thread never ran in {sleeps} sleeps"
        );
        assert!(sleeps <= 4, "it ran only after {sleeps} sleeps");
    });
}

#[test]
fn timeout_returns_the_value_when_in_time() {
    run1(|| async {
        let got = timeout(Duration::from_secs(5), async {
            sleep(Duration::from_millis(2)).await;
            "fast"
        })
        .await;
        assert_eq!(got, Ok("fast"));
    });
}

#[test]
fn timeout_elapses_and_drops_the_future() {
    run1(|| async {
        let dropped = Counter::new();
        let d = dropped.clone();
        let limit = Duration::from_millis(20);
        let start = Instant::now();
        let got = timeout(limit, async move {
            let _guard = OnDrop(move || d.inc());
            sleep(Duration::from_secs(60)).await;
            "slow"
        })
        .await;
        let took = start.elapsed();
        assert_eq!(got, Err(Elapsed(limit)));
        assert_eq!(dropped.get(), 1, "the timed-out future was not dropped");
        assert!(took >= limit && took < Duration::from_secs(2), "{took:?}");
        assert!(got.unwrap_err().to_string().contains("20ms"));
    });
}

#[test]
fn green_threads_are_shard_local() {
    assert_not_send!(GreenThread<u32>);
    util::assert_send_sync::<JoinError>();
}

/// Runs a closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
