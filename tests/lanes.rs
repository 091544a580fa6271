//! Shard-to-shard lanes (the mesh's fast path, used when the sender is a
//! shard): order, back-pressure on the sending shard, and messages caught
//! in a lane by a shutdown.

mod util;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future::block_on;
use shardlet::{shard, TrySpawnError};
use util::config;

/// Runs `body` on shard 0 while shard 1 holds its thread (so nothing
/// drains its lanes) until `body` sends on the sender it gets; then stops
/// the runtime and returns `body`'s value.
fn on_shard0_with_shard1_held<F, Fut, T>(mailbox: usize, body: F) -> T
where
    F: FnOnce(flume::Sender<()>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let (handle, release) = util::start_with_shard1_held(config(2).with_mailbox(mailbox));
    let mesh = handle.mesh();
    let out = block_on(mesh.submit_to(0, move || body(release))).expect("shard 0 ran the body");
    handle.stop(Duration::from_secs(1));
    util::join_within(handle, util::LIMIT).0.unwrap();
    out
}

#[test]
fn messages_from_one_shard_run_in_the_order_sent() {
    const N: usize = 5_000;
    // A small mailbox (lanes of 8): the sender waits for room again and again.
    let seen = Arc::new(Mutex::new(Vec::with_capacity(N)));
    let got = util::run_with(config(2).with_mailbox(16), {
        let seen = seen.clone();
        move || {
            let seen = seen.clone();
            async move {
                if shard::id() != 0 {
                    shard::stopped().await;
                    return;
                }
                for i in 0..N {
                    let seen = seen.clone();
                    shardlet::spawn_on(1, move || async move { seen.lock().unwrap().push(i) })
                        .await
                        .unwrap();
                }
                // Same lane, so this runs after all of them.
                shardlet::submit_to(1, || async {}).await.unwrap();
                shard::stopper().stop(Duration::from_secs(1));
            }
        }
    });
    assert_eq!(got.len(), 2);
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, (0..N).collect::<Vec<_>>());
}

#[test]
fn a_full_lane_pushes_back_on_the_sending_shard() {
    // SHARDLET_MAILBOX=4 on 2 shards: a lane of 2 messages.
    let ran = Arc::new(AtomicUsize::new(0));
    let (queued, refused, waited_while_full, all_ran) = on_shard0_with_shard1_held(4, {
        let ran = ran.clone();
        move |release| {
            let ran = ran.clone();
            async move {
                let bump = |ran: &Arc<AtomicUsize>| {
                    let ran = ran.clone();
                    move || async move {
                        ran.fetch_add(1, Ordering::SeqCst);
                    }
                };
                let mesh = shard::mesh();
                mesh.try_spawn_on(1, bump(&ran))
                    .map_err(|e| e.to_string())
                    .unwrap();
                mesh.try_spawn_on(1, bump(&ran))
                    .map_err(|e| e.to_string())
                    .unwrap();
                let queued = mesh.queued(1);
                let refused = matches!(mesh.try_spawn_on(1, bump(&ran)), Err(TrySpawnError::Full { .. }));
                // An awaiting send waits for room instead of queueing beyond it.
                let delivered = Arc::new(AtomicBool::new(false));
                let sender = shardlet::spawn({
                    let (mesh, f, delivered) = (mesh.clone(), bump(&ran), delivered.clone());
                    async move {
                        let sent = mesh.spawn_on(1, f).await;
                        delivered.store(true, Ordering::SeqCst);
                        sent
                    }
                });
                shardlet::sleep(Duration::from_millis(50)).await;
                let waited_while_full = !delivered.load(Ordering::SeqCst) && mesh.queued(1) == 2;
                release.send(()).unwrap();
                sender.await.unwrap().unwrap();
                mesh.submit_to(1, || async {}).await.unwrap();
                (queued, refused, waited_while_full, ran.load(Ordering::SeqCst))
            }
        }
    });
    assert_eq!(queued, 2, "what this shard has waiting in its lane");
    assert!(refused, "a full lane hands the closure back");
    assert!(waited_while_full, "spawn_on waited for room");
    assert_eq!(all_ran, 3, "every accepted message ran once room was made");
}

#[test]
fn messages_caught_in_a_lane_by_a_shutdown_are_counted_not_lost() {
    const SENT: usize = 3;
    let ran = Arc::new(AtomicUsize::new(0));
    let (handle, release) = util::start_with_shard1_held(config(2));
    let mesh = handle.mesh();
    // Shard 0 sends down its lane to the held shard 1.
    block_on(mesh.submit_to(0, {
        let ran = ran.clone();
        move || async move {
            for _ in 0..SENT {
                let ran = ran.clone();
                shard::mesh()
                    .try_spawn_on(1, move || async move {
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .map_err(|e| e.to_string())
                    .unwrap();
            }
        }
    }))
    .unwrap();
    // Stop with no grace while the three wait in shard 0's lane to shard 1.
    handle.stop(Duration::ZERO);
    release.send(()).unwrap();
    util::join_within(handle, util::LIMIT).0.unwrap();
    let ran = ran.load(Ordering::SeqCst) as u64;
    assert_eq!(
        ran + mesh.dropped(),
        SENT as u64,
        "each message ran or was counted as dropped"
    );
}

#[test]
fn a_parked_shard_is_woken_by_a_message_down_its_lane() {
    // No spinning: after each message the target parks, and the next one
    // must ring its door.
    let got = util::run_with(config(2).with_spin(Duration::ZERO), || async {
        if shard::id() != 0 {
            shard::stopped().await;
            return 0;
        }
        let mut sum = 0;
        for i in 0..200 {
            // Long enough for shard 1 to park between messages.
            if i % 20 == 0 {
                shardlet::sleep(Duration::from_millis(2)).await;
            }
            sum += shardlet::submit_to(1, move || async move { i + shard::id() })
                .await
                .unwrap();
        }
        shard::stopper().stop(Duration::from_secs(1));
        sum
    });
    assert_eq!(got[0], (0..200).map(|i| i + 1).sum::<usize>());
}

#[test]
fn a_global_limit_grant_reaches_a_waiter_whose_lane_is_full() {
    // Shard 1 waits for the only permit, then blocks its thread; shard 0
    // fills its lane to shard 1 and releases: the wake cannot go down the
    // lane and must reach the waiter another way.
    let limit = shardlet::GlobalLimit::new(1);
    let (held_tx, held_rx) = flume::bounded::<()>(1);
    let (waiting_tx, waiting_rx) = flume::bounded::<()>(1);
    let (filled_tx, filled_rx) = flume::bounded::<()>(1);
    let got = util::run_with(config(2).with_mailbox(4), move || {
        let limit = limit.clone();
        let (held_tx, held_rx) = (held_tx.clone(), held_rx.clone());
        let (waiting_tx, waiting_rx) = (waiting_tx.clone(), waiting_rx.clone());
        let (filled_tx, filled_rx) = (filled_tx.clone(), filled_rx.clone());
        async move {
            if shard::id() == 0 {
                let permit = limit.acquire().await;
                held_tx.send(()).unwrap();
                waiting_rx.recv_async().await.unwrap();
                let mut queued = 0;
                while shard::mesh().try_spawn_on(1, || async {}).is_ok() {
                    queued += 1;
                }
                drop(permit); // the grant's wake finds the lane full
                filled_tx.send(()).unwrap();
                queued
            } else {
                held_rx.recv_async().await.unwrap();
                let waiter = shardlet::spawn({
                    let limit = limit.clone();
                    async move { drop(limit.acquire().await) }
                });
                shardlet::sleep(Duration::from_millis(20)).await;
                assert_eq!(limit.waiting(), 1);
                waiting_tx.send(()).unwrap();
                // Hold the thread until shard 0 has filled the lane and released.
                filled_rx.recv().unwrap();
                waiter.await.unwrap(); // bounded by the test's time limit
                usize::MAX
            }
        }
    });
    assert_eq!(got[0], 2, "shard 0 filled its lane of 2");
    assert_eq!(got[1], usize::MAX, "shard 1 got the permit");
}
