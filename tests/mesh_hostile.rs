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
