//! The cross-shard mesh: spawn_on, submit_to, broadcast, map_reduce, the
//! try_ variants, back-pressure, panics, and messages caught by a shutdown.

mod util;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::future::block_on;
use shardlet::{shard, MeshError, Runtime, TrySpawnError};
use util::{config, run1, run2};

#[test]
fn smoke_submit_to_runs_on_the_target_shard() {
    let got = run2(|| async {
        let other = (shard::id() + 1) % shard::count();
        shardlet::submit_to(other, || async { shard::id() })
            .await
            .unwrap()
    });
    assert_eq!(got, [1, 0]);
}

#[test]
fn broadcast_and_map_reduce_gather_in_shard_order() {
    let got = run2(|| async {
        if shard::id() != 0 {
            shard::stopped().await;
            return None;
        }
        let ids: Vec<usize> = shardlet::broadcast(|| async { shard::id() * 10 })
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let joined = shardlet::map_reduce(
            || async { shard::id().to_string() },
            String::new(),
            |acc, s| acc + &s,
        )
        .await
        .unwrap();
        shard::stopper().stop(Duration::from_secs(1));
        Some((ids, joined))
    });
    assert_eq!(got[0], Some((vec![0, 10], "01".to_string())));
}

#[test]
fn host_threads_submit_through_the_handle() {
    let runtime = Runtime::new(config(2)).unwrap();
    let handle = runtime.start(|| async { shard::stopped().await }).unwrap();
    let mesh = handle.mesh();
    let answers: Vec<usize> = (0..2)
        .map(|s| block_on(mesh.submit_to(s, move || async move { shard::id() + 100 })).unwrap())
        .collect();
    assert_eq!(answers, [100, 101]);
    assert_eq!(
        block_on(mesh.submit_to(7, || async {})),
        Err(MeshError::NoSuchShard { shard: 7, count: 2 })
    );
    handle.stop(Duration::from_secs(1));
    handle.join().unwrap();
}

#[test]
fn a_panicking_remote_task_is_an_error_and_the_shard_lives_on() {
    let got = run2(|| async {
        if shard::id() != 0 {
            shard::stopped().await;
            return None;
        }
        let err = shardlet::submit_to(1, || async { panic!("remote boom") })
            .await
            .unwrap_err();
        let after = shardlet::submit_to(1, || async { shard::id() }).await;
        shard::stopper().stop(Duration::from_secs(1));
        Some((err, after))
    });
    let (err, after) = got[0].clone().unwrap();
    match err {
        MeshError::Task { shard: 1, error } => {
            assert!(error.is_panic());
            assert!(error.to_string().contains("remote boom"), "{error}");
        }
        other => panic!("expected a task panic on shard 1, got {other:?}"),
    }
    assert_eq!(after, Ok(1));
}

#[test]
fn a_full_inbox_pushes_back_and_try_spawn_hands_the_closure_back() {
    const CAPACITY: usize = 4;
    let ran = Arc::new(AtomicUsize::new(0));
    let (handle, release) = util::start_with_shard1_held(config(2).with_mailbox(CAPACITY));
    let mesh = handle.mesh();
    for _ in 0..CAPACITY {
        let ran = ran.clone();
        mesh.try_spawn_on(1, move || async move {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .map_err(|e| e.to_string())
        .expect("room in the inbox");
    }
    assert_eq!(mesh.queued(1), CAPACITY);
    let marker = 42;
    let refused = mesh.try_spawn_on(1, move || async move {
        let _ = marker;
    });
    match refused {
        Err(TrySpawnError::Full { shard: 1, closure: _ }) => {}
        other => panic!(
            "expected Full with the closure back, got {:?}",
            other.map_err(|e| e.to_string())
        ),
    }
    assert_eq!(mesh.queued(1), CAPACITY, "nothing queued beyond the capacity");
    release.send(()).unwrap();
    // Once the shard drains, every accepted message has run.
    block_on(mesh.submit_to(1, || async {})).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), CAPACITY);
    handle.stop(Duration::from_secs(1));
    handle.join().unwrap();
}

/// `TrySpawnError` is an `Error` whatever the closure (closures are not
/// `Debug`): it unwraps, `?`s into a boxed error, and names the shard (and,
/// for a shard that does not exist, how many there are), as `MeshError` does.
#[test]
fn try_spawn_errors_unwrap_box_and_name_the_shard() {
    /// `?` into a boxed error: needs `TrySpawnError<F>: Error` for a closure `F`.
    fn send(mesh: &shardlet::Mesh, shard: usize) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        mesh.try_spawn_on(shard, || async {})?;
        Ok(())
    }
    let (handle, release) = util::start_with_shard1_held(config(2).with_mailbox(1));
    let mesh = handle.mesh();
    // `unwrap` needs `TrySpawnError<F>: Debug` for a closure `F`.
    mesh.try_spawn_on(1, || async {}).unwrap();
    let full = mesh.try_spawn_on(1, || async {}).unwrap_err();
    assert_eq!(full.to_string(), "shard 1's inbox is full");
    assert_eq!(format!("{full:?}"), "Full { shard: 1, .. }");
    assert_eq!(full.shard(), 1);
    let missing = send(&mesh, 7).unwrap_err();
    assert_eq!(missing.to_string(), "no shard 7: the runtime has 2 shard(s)");
    assert_eq!(
        missing.to_string(),
        MeshError::NoSuchShard { shard: 7, count: 2 }.to_string(),
        "worded as MeshError's"
    );
    let missing = mesh.try_spawn_on(7, || async {}).unwrap_err();
    assert_eq!(format!("{missing:?}"), "NoSuchShard { shard: 7, count: 2, .. }");
    release.send(()).unwrap();
    handle.stop(Duration::from_secs(1));
    handle.join().unwrap();
    let gone = send(&mesh, 1).unwrap_err();
    assert_eq!(gone.to_string(), "shard 1 has stopped");
    assert_eq!(gone.to_string(), MeshError::ShardGone { shard: 1 }.to_string());
}

#[test]
fn messages_caught_by_a_shutdown_are_reported_not_lost() {
    let ran = Arc::new(AtomicUsize::new(0));
    let (handle, release) = util::start_with_shard1_held(config(2));
    let mesh = handle.mesh();
    for _ in 0..3 {
        let ran = ran.clone();
        assert!(mesh
            .try_spawn_on(1, move || async move {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .is_ok());
    }
    // Stop with no grace while three messages wait in shard 1's inbox.
    handle.stop(Duration::ZERO);
    release.send(()).unwrap();
    handle.join().unwrap();
    let ran = ran.load(Ordering::SeqCst) as u64;
    assert_eq!(
        ran + mesh.dropped(),
        3,
        "each message ran or was counted as dropped"
    );
    // And a send to a gone shard fails at once.
    assert_eq!(
        block_on(mesh.spawn_on(1, || async {})),
        Err(MeshError::ShardGone { shard: 1 })
    );
}

#[test]
fn a_remote_task_still_running_at_the_end_of_the_grace_is_reported() {
    use std::sync::atomic::AtomicBool;
    let runtime = Runtime::new(config(2)).unwrap();
    let handle = runtime.start(|| async { shard::stopped().await }).unwrap();
    let mesh = handle.mesh();
    let started = Arc::new(AtomicBool::new(false));
    let waiter = std::thread::spawn({
        let (mesh, started) = (mesh.clone(), started.clone());
        move || {
            block_on(mesh.submit_to(1, move || async move {
                started.store(true, Ordering::SeqCst);
                shardlet::sleep(Duration::from_secs(60)).await;
                "finished"
            }))
        }
    });
    while !started.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    handle.stop(Duration::from_millis(20));
    handle.join().unwrap();
    assert_eq!(waiter.join().unwrap(), Err(MeshError::ShardGone { shard: 1 }));
}

#[test]
fn one_shard_submits_to_itself() {
    let got = run1(|| async { shardlet::submit_to(0, || async { shard::id() + 5 }).await });
    assert_eq!(got, Ok(5));
}

#[test]
fn spawn_on_jobs_cut_off_by_the_end_of_their_shard_are_counted() {
    // Issue 16: a `spawn_on` job still waiting when its shard ended was
    // cancelled silently (neither counted nor logged).
    let runtime = Runtime::new(config(1)).unwrap();
    let handle = runtime.start(|| async { shard::stopped().await }).unwrap();
    let mesh = handle.mesh();
    let started = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let started = started.clone();
        block_on(mesh.spawn_on(0, move || async move {
            started.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }))
        .unwrap();
    }
    while started.load(Ordering::SeqCst) < 3 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(mesh.cancelled(), 0);
    handle.stop(Duration::from_millis(20));
    handle.join().unwrap();
    assert_eq!(mesh.cancelled(), 3);
    assert_eq!(mesh.dropped(), 0, "they ran: not dropped");
}

/// Drops set `true`.
struct Flag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One shard whose entry blocks its thread until `release` fires (so its
/// inbox is never drained), returned once it is blocked.
fn blocked_shard() -> (shardlet::RuntimeHandle<()>, std::sync::mpsc::Sender<()>) {
    let (started, is_started) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let handle = Runtime::new(config(1))
        .unwrap()
        .start(move || {
            started.send(()).unwrap();
            let _ = released.lock().unwrap().recv_timeout(Duration::from_secs(10));
            async {}
        })
        .unwrap();
    is_started.recv_timeout(Duration::from_secs(10)).unwrap();
    (handle, release)
}

/// A `submit_to` whose closure holds `held`, sent to a shard that never
/// drains its inbox and is then stopped: the shard drops it unrun (and
/// counts it). Returns the caller's reply, unpolled since it was sent.
fn a_call_dropped_unrun<H: Send + 'static>(held: H) -> Pin<Box<dyn Future<Output = Result<(), MeshError>>>> {
    let (handle, release) = blocked_shard();
    let mesh = handle.mesh();
    let sender = mesh.clone();
    let mut call: Pin<Box<dyn Future<Output = Result<(), MeshError>>>> = Box::pin(async move {
        sender
            .submit_to(0, move || {
                let _held = &held;
                async {}
            })
            .await
    });
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        call.as_mut().poll(&mut cx).is_pending(),
        "sent, waiting for the answer"
    );
    handle.stop(Duration::ZERO);
    release.send(()).unwrap();
    let _ = util::join_within(handle, Duration::from_secs(10));
    assert_eq!(mesh.dropped(), 1, "dropped unrun, and counted");
    call
}

/// The reply to a call dropped unrun says its shard is gone.
#[track_caller]
fn assert_shard_gone(call: Pin<&mut dyn Future<Output = Result<(), MeshError>>>) {
    let answer = call.poll(&mut Context::from_waker(Waker::noop()));
    assert!(
        matches!(answer, Poll::Ready(Err(MeshError::ShardGone { shard: 0 }))),
        "{answer:?}"
    );
}

/// A `submit_to` its shard drops unrun (stopped first): the shard drops its
/// closure as it closes, and with it what the closure holds (a
/// `GlobalLimit` permit here), before the caller is told. Before: the
/// closure lived, holding the permit, until the caller dropped its reply.
#[test]
fn a_call_dropped_unrun_releases_what_its_closure_holds() {
    let limit = shardlet::GlobalLimit::new(1);
    let permit = limit.try_acquire().unwrap();
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut call = a_call_dropped_unrun((permit, Flag(dropped.clone())));
    // The caller still holds its reply, unanswered.
    assert!(dropped.load(Ordering::SeqCst), "the closure is still alive");
    assert_eq!(limit.available(), 1, "its permit is still held");
    assert_shard_gone(call.as_mut());
}

/// A dropped call's closure whose drop panics: the shard counts and logs
/// it as it closes, the caller is still told, and dropping the caller's
/// reply does not panic. Before: the closure was dropped with the reply, on
/// the caller's thread, and its panic unwound there.
#[test]
fn a_dropped_calls_closure_that_panics_on_drop_panics_on_its_shard_not_the_caller() {
    struct Boom;
    impl Drop for Boom {
        fn drop(&mut self) {
            panic!("this closure's drop panics");
        }
    }
    let mut call = a_call_dropped_unrun(Boom);
    assert_shard_gone(call.as_mut());
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(call)));
    assert!(
        dropped.is_ok(),
        "dropping the reply ran the closure's drop on the caller"
    );
}
