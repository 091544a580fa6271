//! A parked readiness driver stays parked while its shard is idle: over an
//! idle interval it runs no round and parks no second time.
//!
//! The driver parks through a private side effect of glommio 0.9.0 (a
//! `glommio::net::TcpStream` arms an io_uring poll when it is built; see
//! `src/net/reactor/park.rs`, and the exact pin in `Cargo.toml`). Were that
//! to change, the park's read would return at once and the driver would go
//! round and round: its `rounds` and `parks` counters would climb by
//! thousands a second instead of standing still.

mod util;

use std::time::Duration;

use futures_lite::AsyncReadExt;
use shardlet::net;
use util::run1;

/// The idle interval watched.
const IDLE: Duration = Duration::from_millis(500);
/// Time for the driver to use up its spin window and park (50 µs by default).
const SETTLE: Duration = Duration::from_millis(100);

#[test]
fn a_parked_driver_stays_parked_while_the_shard_is_idle() {
    let (before, after) = run1(|| async {
        let listener = net::listen(([127, 0, 0, 1], 0)).expect("listen");
        let client = net::connect(listener.local_addr().unwrap(), Duration::from_secs(5))
            .await
            .expect("connect");
        let mut server = listener.accept().await.expect("accept");
        // A task waiting on a socket: the driver has work registered, but
        // nothing arrives.
        let reader = shardlet::spawn(async move {
            let mut buf = [0u8; 16];
            server.read(&mut buf).await
        });
        shardlet::sleep(SETTLE).await;
        let before = net::ready_stats();
        shardlet::sleep(IDLE).await;
        let after = net::ready_stats();
        reader.cancel();
        drop((client, listener));
        (before, after)
    });
    assert!(before.parks >= 1, "the driver never parked: {before:?}");
    assert_eq!(before.registrations, 3, "listener, client, server: {before:?}");
    // Nothing arrived, so a parked driver is never woken: not one round.
    // (One is allowed for a stray wake-up, which is not a spin.)
    assert!(
        after.rounds - before.rounds <= 1,
        "the driver ran {} rounds in {IDLE:?} idle: {before:?} -> {after:?}",
        after.rounds - before.rounds
    );
    assert!(
        after.parks - before.parks <= 1,
        "the driver parked {} more times in {IDLE:?} idle: {before:?} -> {after:?}",
        after.parks - before.parks
    );
    assert_eq!(
        after.events, before.events,
        "no event arrived: {before:?} -> {after:?}"
    );
}
