//! The async lifecycle (issue 11, item 1): `RuntimeHandle::finished` as a
//! `Send` future any executor can await (tokio here), `try_join` and
//! `is_finished`, and `Server::ready`, which fails at once with the shard's
//! real error instead of timing out.

mod util;

use std::future::Future;
use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::future;
use shardlet::{shard, Runtime, RuntimeError, Server, ServerConfig};
use util::config;

/// A shard's panic, returned by `finished()` awaited in a tokio task (which
/// needs the future to be `Send + 'static`).
#[test]
fn finished_returns_a_shards_panic_inside_tokio() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = tokio.block_on(async {
        let runtime = Runtime::new(config(2)).unwrap();
        let handle = runtime
            .start(|| async {
                if shard::id() == 1 {
                    shardlet::sleep(Duration::from_millis(20)).await;
                    panic!("shard one gives up");
                }
                shard::stopped().await;
                shard::id()
            })
            .unwrap();
        // Moved into a spawned task: only a `Send` future compiles here.
        let joined = tokio::spawn(async move {
            let mut handle = handle;
            handle.finished().await
        });
        tokio::time::timeout(Duration::from_secs(20), joined)
            .await
            .expect("finished() did not resolve")
            .unwrap()
    });
    match outcome {
        Err(RuntimeError::ShardPanicked { shard: 1, message }) => {
            assert!(message.contains("shard one gives up"), "{message}");
            assert!(message.contains("lifecycle.rs:"), "location lost: {message}");
        }
        other => panic!("expected shard 1's panic, got {other:?}"),
    }
}

#[test]
fn try_join_and_is_finished_never_wait() {
    let runtime = Runtime::new(config(2)).unwrap();
    let mut handle = runtime
        .start(|| async {
            shard::stopped().await;
            shard::id() * 10
        })
        .unwrap();
    assert!(handle.failure().is_none());
    assert!(!handle.is_finished());
    assert!(handle.try_join().is_none(), "shards still run");
    handle.stop(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(handle.try_join().unwrap().unwrap(), [0, 10]);
    assert_eq!(handle.try_join(), Some(Err(RuntimeError::Joined)), "taken once");
    assert_eq!(future::block_on(handle.finished()), Err(RuntimeError::Joined));
}

#[test]
fn finished_can_be_dropped_and_awaited_again() {
    let runtime = Runtime::new(config(1)).unwrap();
    let mut handle = runtime
        .start(|| async {
            shard::stopped().await;
            7
        })
        .unwrap();
    // Polled once and dropped: takes nothing.
    assert!(future::block_on(future::poll_once(handle.finished())).is_none());
    handle.stop(Duration::from_secs(1));
    assert_eq!(future::block_on(handle.finished()).unwrap(), [7]);
}

/// A shard that panics before it serves: `ready` returns that panic at
/// once (the blocking `wait_ready` would have waited out its timeout).
#[test]
fn ready_returns_a_shards_panic_at_once() {
    let runtime = Runtime::new(config(2)).unwrap();
    let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).unwrap();
    let handle = runtime
        .start({
            let server = server.clone();
            move || {
                let server = server.clone();
                async move {
                    if shard::id() == 1 {
                        shardlet::sleep(Duration::from_millis(50)).await;
                        panic!("bad shard config");
                    }
                    server.serve(|_| async { Ok(()) }).await
                }
            }
        })
        .unwrap();
    let started = Instant::now();
    let err = future::block_on(server.ready(&handle)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let cause = err.get_ref().and_then(|e| e.downcast_ref::<RuntimeError>());
    assert!(
        matches!(cause, Some(RuntimeError::ShardPanicked { shard: 1, message }) if message.contains("bad shard config")),
        "{err}"
    );
    assert!(handle.join().is_err());
}

#[test]
fn ready_resolves_when_every_shard_listens_and_reports_serve_errors() {
    let runtime = Runtime::new(config(2)).unwrap();
    let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).unwrap();
    let handle = runtime
        .start({
            let server = server.clone();
            move || {
                let server = server.clone();
                async move { server.serve(|_| async { Ok(()) }).await }
            }
        })
        .unwrap();
    future::block_on(server.ready(&handle)).unwrap();
    assert!(server.stats().ready());
    server.stop(Duration::from_secs(1));
    for served in handle.join().unwrap() {
        served.unwrap();
    }
    // A stopped server is not ready, and says so.
    let runtime = Runtime::new(config(1)).unwrap();
    let handle = runtime.start(|| async {}).unwrap();
    let err = future::block_on(server.ready(&handle)).unwrap_err();
    assert!(
        [io::ErrorKind::Interrupted, io::ErrorKind::Other].contains(&err.kind()),
        "{err}"
    );
    handle.join().unwrap();
}

/// An entry that returns without serving: `ready` says which shard.
#[test]
fn ready_names_a_shard_that_never_serves() {
    let runtime = Runtime::new(config(2)).unwrap();
    let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).unwrap();
    let handle = runtime
        .start({
            let server = server.clone();
            move || {
                let server = server.clone();
                async move {
                    if shard::id() == 0 {
                        return Ok(());
                    }
                    server.serve(|_| async { Ok(()) }).await
                }
            }
        })
        .unwrap();
    let err = future::block_on(server.ready(&handle)).unwrap_err();
    assert!(
        err.to_string().contains("shard 0's entry ended without serving"),
        "{err}"
    );
    server.stop(Duration::ZERO);
    handle.join().unwrap();
}

/// A shard killed by a panic stops counting as listening (it used to stay
/// `listening = true` forever: its serving loop was dropped mid-way).
#[test]
fn listening_is_cleared_when_a_shard_dies() {
    let runtime = Runtime::new(config(2)).unwrap();
    let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).unwrap();
    let (kill, killed) = flume::bounded::<()>(1);
    let handle = runtime
        .start({
            let server = server.clone();
            move || {
                let server = server.clone();
                let killed = killed.clone();
                async move {
                    let dies = async {
                        if shard::id() == 1 {
                            let _ = killed.recv_async().await;
                            panic!("shard 1 dies while serving");
                        }
                        future::pending::<io::Result<()>>().await
                    };
                    future::or(server.serve(|_| async { Ok(()) }), dies).await
                }
            }
        })
        .unwrap();
    future::block_on(server.ready(&handle)).unwrap();
    kill.send(()).unwrap();
    let err = handle.join().unwrap_err();
    assert!(
        matches!(err, RuntimeError::ShardPanicked { shard: 1, .. }),
        "{err}"
    );
    let stats = server.stats();
    assert!(
        !stats.shards[1].listening,
        "a dead shard still listens: {}",
        stats.shards[1]
    );
    assert!(!stats.ready());
}

/// The case: too little locked memory when the shards start (here
/// lowered after `Runtime::new`'s check, in a child process): `ready`
/// returns the shard's real start error at once.
#[test]
fn ready_returns_the_shards_start_error() {
    if let Ok(mode) = std::env::var("SHARDLET_TEST_CHILD") {
        assert_eq!(mode, "memlock");
        let runtime = Runtime::new(config(1)).unwrap();
        let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).unwrap();
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK, 64 << 10, 64 << 10)
            .unwrap();
        let handle = runtime
            .start({
                let server = server.clone();
                move || {
                    let server = server.clone();
                    async move { server.serve(|_| async { Ok(()) }).await }
                }
            })
            .unwrap();
        let started = Instant::now();
        let err = future::block_on(server.ready(&handle)).unwrap_err();
        println!("ready after {:?}: {err}", started.elapsed());
        let cause = err.get_ref().and_then(|e| e.downcast_ref::<RuntimeError>());
        assert!(
            matches!(cause, Some(RuntimeError::ShardStart { shard: 0, .. })),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(handle.join().is_err());
        println!("CHILD-DONE");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ready_returns_the_shards_start_error",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHARDLET_TEST_CHILD", "memlock")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD-DONE"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("MemLockLimit") || stdout.to_lowercase().contains("memlock"),
        "{stdout}"
    );
}

/// The futures docs/embedding.md lists as `Send` (usable from a tokio task or
/// any other thread's executor) are: this only has to compile.
#[test]
fn the_host_side_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let runtime = Runtime::new(config(1)).unwrap();
    let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).unwrap();
    let mut handle = runtime
        .start(|| async {
            shard::stopped().await;
        })
        .unwrap();
    let mesh = handle.mesh();
    let stopper = handle.stopper();
    send(&server.ready(&handle));
    send(&mesh.submit_to(0, || async { 1 }));
    send(&mesh.spawn_on(0, || async {}));
    send(&mesh.broadcast(|| async { 1 }));
    send(&mesh.map_reduce(|| async { 1 }, 0, |a, b| a + b));
    send(&shardlet::blocking(|| 1));
    send(&stopper.stopped());
    send(&shard::stopped());
    send(&handle.finished());
    handle.stop(Duration::from_secs(1));
    future::block_on(handle.finished()).unwrap();
}

/// A host future watching the runtime was polled with a waker that
/// panics. The shard that tells it its outcome still hands that outcome
/// to the handle. Before: the panic came out first, and the outcome was lost.
#[test]
fn a_watchers_panicking_waker_loses_no_outcome() {
    let runtime = Runtime::new(config(1)).unwrap();
    let mut handle = runtime
        .start(|| async {
            shard::stopped().await;
            7
        })
        .unwrap();
    let bad = util::panicking_waker();
    let mut watching = Box::pin(handle.finished());
    let polled = watching.as_mut().poll(&mut std::task::Context::from_waker(&bad));
    assert!(polled.is_pending());
    // Kept registered with its waker, and never polled again.
    std::mem::forget(watching);
    handle.stop(Duration::from_secs(1));
    let outcome = handle.join();
    assert_eq!(outcome, Ok(vec![7]));
}

/// The same with a host future waiting on the runtime's stop signal: a
/// shard that fails stops the others, which wakes that waker. The failure
/// still reaches the handle. Before: "shard thread ended without reporting".
#[test]
fn a_stop_waiters_panicking_waker_loses_no_failure() {
    let runtime = Runtime::new(config(1)).unwrap();
    let (go, started) = std::sync::mpsc::channel::<()>();
    let started = std::sync::Mutex::new(started);
    let handle = runtime
        .start(move || {
            let started = started.lock().unwrap().recv_timeout(Duration::from_secs(10));
            async move {
                started.unwrap();
                panic!("this shard fails");
            }
        })
        .unwrap();
    let stopper = handle.stopper();
    let bad = util::panicking_waker();
    let mut waiting = Box::pin(stopper.stopped());
    assert!(waiting
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&bad))
        .is_pending());
    std::mem::forget(waiting);
    go.send(()).unwrap();
    match handle.join() {
        Err(RuntimeError::ShardPanicked { shard: 0, message }) => {
            assert!(message.contains("this shard fails"), "{message}");
        }
        other => panic!("expected the shard's panic, got {other:?}"),
    }
}
