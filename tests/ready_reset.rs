//! A peer that resets the connection: a reader gets `ConnectionReset`
//! (woken if it was waiting), a writer waiting for room is woken with the
//! error, and later writes fail instead of hanging.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::io;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use util::run1;

/// Closes `peer` with `SO_LINGER` 0: the kernel sends a reset.
fn reset(peer: std::net::TcpStream) {
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
}

#[test]
fn a_waiting_reader_wakes_with_connection_reset() {
    let kind = run1(|| async {
        let (mut mine, peer) = ready_util::std_pair();
        let resetter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            reset(peer);
        });
        let mut buf = [0u8; 64];
        let result = shardlet::timeout(Duration::from_secs(5), mine.read(&mut buf))
            .await
            .expect("the read hung");
        resetter.join().unwrap();
        result.map_err(|e| e.kind())
    });
    assert_eq!(kind, Err(io::ErrorKind::ConnectionReset));
}

#[test]
fn writes_after_a_reset_fail() {
    let kinds = run1(|| async {
        let (mut mine, peer) = ready_util::std_pair();
        reset(peer);
        shardlet::sleep(Duration::from_millis(50)).await;
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let write = shardlet::timeout(Duration::from_secs(5), mine.write_all(&[7u8; 1024]))
                .await
                .expect("the write hung");
            kinds.push(write.map_err(|e| e.kind()));
        }
        kinds
    });
    for kind in kinds {
        assert!(
            matches!(
                kind,
                Err(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
            ),
            "{kind:?}"
        );
    }
}

#[test]
fn a_writer_waiting_for_room_wakes_with_the_reset() {
    let outcome = run1(|| async {
        let (mut mine, peer) = ready_util::std_pair();
        // The peer never reads: the writer fills both buffers and waits.
        let writer = shardlet::spawn(async move {
            let chunk = vec![7u8; 1 << 20];
            loop {
                if let Err(e) = mine.write_all(&chunk).await {
                    return e.kind();
                }
            }
        });
        // Long enough for the buffers to fill and the writer to wait.
        shardlet::sleep(Duration::from_millis(200)).await;
        reset(peer);
        shardlet::timeout(Duration::from_secs(5), writer)
            .await
            .map(Result::unwrap)
            .map_err(|_| "the waiting writer was never woken by the reset")
    });
    match outcome {
        Ok(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {}
        other => panic!("expected a reset or broken pipe, got {other:?}"),
    }
}
