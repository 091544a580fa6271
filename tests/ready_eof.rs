//! End of stream: a reader gets EOF when the peer shuts down its side,
//! whether it was waiting then or not, and keeps getting it. A short read
//! clears read readiness; the hang-up must not be forgotten with it.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use shardlet::net;
use util::run1;

/// A read that must finish soon (a hang is a failure, not a stuck test).
async fn read(stream: &mut net::TcpStream, buf: &mut [u8]) -> usize {
    shardlet::timeout(Duration::from_secs(5), stream.read(buf))
        .await
        .expect("the read hung")
        .expect("the read failed")
}

#[test]
fn data_and_fin_together_give_the_data_then_eof_again_and_again() {
    run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        peer.write_all(b"last words").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        // Let the driver see both (data and hang-up) before the first read.
        shardlet::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 4096];
        assert_eq!(read(&mut mine, &mut buf).await, 10, "a short read");
        assert_eq!(&buf[..10], b"last words");
        for _ in 0..3 {
            assert_eq!(read(&mut mine, &mut buf).await, 0, "EOF");
        }
    });
}

#[test]
fn a_waiting_reader_wakes_with_eof() {
    run1(|| async {
        let (mut mine, peer) = ready_util::std_pair();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            peer.shutdown(Shutdown::Write).unwrap();
            peer
        });
        let mut buf = [0u8; 64];
        assert_eq!(read(&mut mine, &mut buf).await, 0);
        drop(closer.join().unwrap());
    });
}

#[test]
fn eof_between_two_shard_streams() {
    run1(|| async {
        use futures_lite::AsyncWriteExt;
        let (mut client, mut server) = ready_util::pair().await;
        client.write_all(b"bye").await.unwrap();
        client.close().await.unwrap();
        let mut got = Vec::new();
        shardlet::timeout(Duration::from_secs(5), server.read_to_end(&mut got))
            .await
            .expect("read_to_end hung")
            .unwrap();
        assert_eq!(got, b"bye");
    });
}
