//! FanoutPile: tasks spread across shards, results in spawn order on the owner.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use shardlet::{shard, FanoutPile, GlobalLimit, MeshError, Spread};
use util::{run1, run2};

#[test]
fn smoke_results_come_back_in_spawn_order_from_both_shards() {
    let got = run2(|| async {
        if shard::id() != 0 {
            shard::stopped().await;
            return vec![];
        }
        let mut pile = FanoutPile::new();
        for i in 0..40u64 {
            // Random durations: completion order differs from spawn order.
            let pause = Duration::from_micros(fastrand::u64(0..2000));
            pile.spawn(move || async move {
                shardlet::sleep(pause).await;
                (i, shard::id())
            })
            .await;
        }
        let got: Vec<(u64, usize)> = pile.map(Result::unwrap).collect().await;
        shard::stopper().stop(Duration::from_secs(1));
        got
    });
    let got = &got[0];
    assert_eq!(
        got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..40).collect::<Vec<_>>()
    );
    // Round robin from the shard after the owner: 1, 0, 1, 0, ...
    for (i, shard) in got {
        assert_eq!(*shard, ((i + 1) % 2) as usize, "task {i} ran on shard {shard}");
    }
}

#[test]
fn a_limit_caps_fanned_out_work_across_shards() {
    const LIMIT: usize = 4;
    let limit = GlobalLimit::new(LIMIT);
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let finished = Arc::new(AtomicUsize::new(0));
    let (l, n, m, f) = (limit.clone(), now.clone(), max.clone(), finished.clone());
    run2(move || {
        let (limit, now, max, finished) = (l.clone(), n.clone(), m.clone(), f.clone());
        async move {
            // Both shards fan out at once, through the same limit.
            let mut pile = FanoutPile::with_limit(&limit).spread(Spread::LeastQueued);
            for _ in 0..50 {
                let (now, max) = (now.clone(), max.clone());
                pile.spawn(move || async move {
                    let inside = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(inside, Ordering::SeqCst);
                    shardlet::sleep(Duration::from_micros(300)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                })
                .await;
            }
            let results: Vec<_> = pile.collect().await;
            assert!(results.iter().all(Result::is_ok));
            // Keep serving the other shard's fan-out until it is done too.
            finished.fetch_add(1, Ordering::SeqCst);
            util::wait_until("both shards finished", || finished.load(Ordering::SeqCst) == 2).await;
        }
    });
    let max = max.load(Ordering::SeqCst);
    assert!(max <= LIMIT, "{max} ran at once under a limit of {LIMIT}");
    assert_eq!(limit.available(), LIMIT);
}

#[test]
fn a_panic_is_an_error_at_its_position() {
    let got = run1(|| async {
        let mut pile = FanoutPile::new();
        pile.spawn(|| async { 1 }).await;
        pile.spawn(|| async { panic!("fan-out boom") }).await;
        pile.spawn(|| async { 3 }).await;
        pile.collect::<Vec<_>>().await
    });
    assert_eq!(got[0], Ok(1));
    assert!(matches!(&got[1], Err(MeshError::Task { shard: 0, error }) if error.is_panic()));
    assert_eq!(got[2], Ok(3));
}

#[test]
fn an_empty_fanout_pile_ends_at_once() {
    let n = run1(|| async { FanoutPile::<u8>::new().count().await });
    assert_eq!(n, 0);
}
