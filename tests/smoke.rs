//! Smoke test: every piece once, end to end, on a real runtime. If this
//! fails, start here before reading the other test files.

mod util;

use std::time::Duration;

use futures_lite::StreamExt;
use shardlet::{blocking, shard, spawn, spawn_n, Config, GreenPile, GreenPool, Runtime};

#[test]
fn every_piece_once() {
    // Default settings except the shard count and pinning, so it runs on any machine.
    let runtime = Runtime::new(Config::default().with_shards(1).with_pin(false)).unwrap();
    assert_eq!(runtime.shards(), 1);
    let out = runtime
        .run(|| {
            util::bounded(async {
                assert_eq!((shard::id(), shard::count()), (0, 1));

                // A green thread, and one that panics without taking the shard down.
                assert_eq!(spawn(async { 6 * 7 }).await, Ok(42));
                let err = spawn(async { panic!("smoke boom") }).await.unwrap_err();
                assert_eq!(err.panic_message(), Some("smoke boom"));

                // Fire and forget.
                let (tx, rx) = flume::bounded(1);
                spawn_n(async move { tx.send_async("spawned_n").await.unwrap() });
                assert_eq!(rx.recv_async().await.unwrap(), "spawned_n");

                // A pool: imap in input order.
                let pool = GreenPool::new(4);
                let doubled: Vec<u32> = pool
                    .imap(1..=5u32, |n| async move {
                        shardlet::sleep(Duration::from_millis(u64::from(6 - n))).await;
                        n * 2
                    })
                    .map(Result::unwrap)
                    .collect()
                    .await;
                assert_eq!(doubled, [2, 4, 6, 8, 10]);

                // A pile: spawn order.
                let mut pile = GreenPile::new(&pool);
                for word in ["c", "b", "a"] {
                    pile.spawn(async move { word.repeat(2) }).await;
                }
                let words: Vec<String> = pile.map(Result::unwrap).collect().await;
                assert_eq!(words.join("\n"), "cc\nbb\naa");

                // Blocking code off the shard.
                let thread = std::thread::current().id();
                let other = blocking(move || std::thread::current().id() != thread).await;
                assert_eq!(other, Ok(true), "blocking ran on the shard thread");

                // Time.
                let slow =
                    shardlet::timeout(Duration::from_millis(5), shardlet::sleep(Duration::from_secs(30)));
                assert!(slow.await.is_err());
                pool.waitall().await;
                assert_eq!(pool.running(), 0);
                "ok"
            })
        })
        .unwrap();
    assert_eq!(out, ["ok"]);
}
