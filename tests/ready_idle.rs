//! An idle shard does not spin: with sockets registered and a task waiting
//! on one, the driver parks in io_uring and the shard thread uses almost no
//! CPU (measured with `getrusage(RUSAGE_THREAD)` on the shard).

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::time::Duration;

use futures_lite::AsyncReadExt;
use shardlet::net;
use util::run1;

/// Idle time measured.
const IDLE: Duration = Duration::from_secs(1);
/// Most CPU the shard may use meanwhile: a spinning shard uses all of `IDLE`.
const MOST: Duration = Duration::from_millis(250);

#[test]
fn an_idle_shard_with_registered_sockets_does_not_spin() {
    let (used, stats) = run1(|| async {
        let listener = net::listen(([127, 0, 0, 1], 0)).unwrap();
        let (_client, mut server) = ready_util::pair().await;
        let reader = shardlet::spawn(async move {
            let mut buf = [0u8; 16];
            server.read(&mut buf).await
        });
        shardlet::sleep(Duration::from_millis(50)).await;
        let before = ready_util::thread_cpu_time();
        shardlet::sleep(IDLE).await;
        let used = ready_util::thread_cpu_time() - before;
        let stats = net::ready_stats();
        reader.cancel();
        drop(listener);
        (used, stats)
    });
    assert!(
        used < MOST,
        "the shard used {used:?} of CPU in {IDLE:?} idle; {stats:?}"
    );
    assert_eq!(stats.registrations, 3, "listener, client, server");
}
