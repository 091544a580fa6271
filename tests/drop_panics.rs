//! Results nobody takes, whose destructor panics: a detached task's
//! result (glommio drops it), the unread results of a dropped `imap` or
//! `GreenPile`. Such a panic is caught, counted and logged like any other
//! task panic; it must neither end the shard nor skip the cleanup around
//! it. Each test failed before the fix (noted in each).

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::StreamExt;
use shardlet::{shard, sleep, spawn, GreenPile, GreenPool};

/// Panics when dropped.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a result's destructor panics");
        }
    }
}

/// Before: glommio dropped the detached task's result itself, outside any
/// guard, and the panic ended the shard (`ShardPanicked`).
#[test]
fn a_detached_tasks_result_that_panics_when_dropped_leaves_the_shard_running() {
    let (went_on, panics) = util::run1(|| async {
        let before = shard::panics();
        drop(spawn(async {
            sleep(Duration::from_millis(5)).await;
            Bomb
        }));
        sleep(Duration::from_millis(50)).await;
        (true, shard::panics() - before)
    });
    assert!(went_on);
    assert_eq!(panics, 1, "the panic is counted");
}

/// Before: dropping the `imap` dropped its finished results first, and the
/// panic skipped cancelling the call still running, whose slot stayed
/// taken: `waitall` never returned.
#[test]
fn a_dropped_imap_cancels_its_calls_though_a_result_panics_when_dropped() {
    let freed = util::run1(|| async {
        let pool = GreenPool::new(2);
        let (_sender, never) = flume::bounded::<()>(1);
        let mut results = pool.imap(0..2, move |i| {
            let never = never.clone();
            async move {
                if i == 0 {
                    let _ = never.recv_async().await; // waits for ever
                }
                Bomb // call 1's result waits behind call 0's
            }
        });
        assert!(futures_lite::future::poll_once(results.next()).await.is_none());
        assert_eq!(pool.running(), 1);
        drop(results);
        pool.running() == 0
            && shardlet::timeout(Duration::from_secs(1), pool.waitall())
                .await
                .is_ok()
    });
    assert!(freed, "the running call was not cancelled, or its slot not freed");
}

/// Before: the dropped pile's driver dropped a finished task's result in
/// its own poll; the panic ended the driver and cancelled the other tasks,
/// which the docs say run to completion.
#[test]
fn a_dropped_pile_runs_its_tasks_to_completion_though_a_result_panics_when_dropped() {
    let completed = util::run1(|| async {
        let done = Rc::new(Cell::new(false));
        let mut pile = GreenPile::new(&GreenPool::new(4));
        pile.spawn(async {
            sleep(Duration::from_millis(5)).await;
            Some(Bomb)
        })
        .await;
        let flag = done.clone();
        pile.spawn(async move {
            sleep(Duration::from_millis(30)).await;
            flag.set(true);
            None
        })
        .await;
        drop(pile);
        sleep(Duration::from_millis(100)).await;
        done.get()
    });
    assert!(completed, "the pile's other task was cancelled");
}
