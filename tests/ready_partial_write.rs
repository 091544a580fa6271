//! Writes larger than the socket buffers: `write` comes back short or with
//! `EAGAIN`, the task waits for the socket's next `EPOLLOUT` edge, and every
//! byte arrives in order.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::io::Read;
use std::net::Shutdown;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use util::run1;

/// Far more than loopback's send and receive buffers hold together.
const PAYLOAD: usize = 32 << 20;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_large_write_to_a_slow_reader_arrives_whole() {
    let received = run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        let reader = std::thread::spawn(move || {
            // Read nothing at first, so the buffers fill and the writer waits.
            std::thread::sleep(Duration::from_millis(300));
            let mut got = Vec::with_capacity(PAYLOAD);
            peer.read_to_end(&mut got).unwrap();
            got
        });
        let payload = pattern(PAYLOAD);
        mine.write_all(&payload).await.unwrap();
        mine.shutdown(Shutdown::Write).await.unwrap();
        reader.join().unwrap()
    });
    assert_eq!(received.len(), PAYLOAD);
    assert!(received == pattern(PAYLOAD), "bytes differ");
}

#[test]
fn a_large_write_between_two_shard_streams_arrives_whole() {
    let received = run1(|| async {
        use futures_lite::AsyncReadExt;
        let (mut client, mut server) = ready_util::pair().await;
        let writer = shardlet::spawn(async move {
            client.write_all(&pattern(PAYLOAD)).await.unwrap();
            client.close().await.unwrap();
        });
        let mut got = Vec::with_capacity(PAYLOAD);
        server.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        got
    });
    assert!(
        received == pattern(PAYLOAD),
        "bytes differ ({} received)",
        received.len()
    );
}
