//! Reads into the shard's buffer (`TcpStream::read_with`) and writes that
//! keep only what the socket did not take (`TcpStream::write_or_keep`):
//! the bytes arrive whole and in order, end of stream and errors reach the
//! caller, a read that fills the shard's buffer reads on, a short write
//! keeps exactly the unsent bytes (and frees them once sent, also before a
//! shutdown of the write half), and an echo to a slow reader keeps at most
//! one read's worth.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use shardlet::net::{self, SHARD_READ_BUFFER};
use util::run1;

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

/// One `read_with` that must finish soon; the bytes it was handed, copied.
async fn read_once(stream: &net::TcpStream) -> std::io::Result<Vec<u8>> {
    shardlet::timeout(Duration::from_secs(10), stream.read_with(|bytes| bytes.to_vec()))
        .await
        .expect("read_with hung")
}

#[test]
fn the_bytes_then_an_empty_slice_at_end_of_stream_again_and_again() {
    run1(|| async {
        let (mine, mut peer) = ready_util::std_pair();
        peer.write_all(b"last words").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        loop {
            let bytes = read_once(&mine).await.unwrap();
            if bytes.is_empty() {
                break;
            }
            got.extend(bytes);
        }
        assert_eq!(got, b"last words");
        for _ in 0..3 {
            assert_eq!(read_once(&mine).await.unwrap(), b"", "end of stream again");
        }
    });
}

#[test]
fn a_waiting_reader_gets_what_arrives_later() {
    run1(|| async {
        let (mine, mut peer) = ready_util::std_pair();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            peer.write_all(b"late").unwrap();
            peer
        });
        assert_eq!(read_once(&mine).await.unwrap(), b"late");
        drop(writer.join().unwrap());
    });
}

#[test]
fn a_reset_is_an_error_and_the_callback_does_not_run() {
    run1(|| async {
        let (mine, peer) = ready_util::std_pair();
        // SO_LINGER 0: close sends a reset instead of a FIN.
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer);
        let mut called = false;
        let result = shardlet::timeout(
            Duration::from_secs(10),
            mine.read_with(|_| {
                called = true;
            }),
        )
        .await
        .expect("read_with hung");
        let err = result.expect_err("a reset is an error");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        assert!(!called);
    });
}

#[test]
fn a_read_that_fills_the_shard_buffer_reads_on_and_nothing_is_lost() {
    const TOTAL: usize = 3 * SHARD_READ_BUFFER + 123;
    let (got, largest) = run1(|| async {
        let (mine, mut peer) = ready_util::std_pair();
        let writer = std::thread::spawn(move || {
            peer.write_all(&pattern(TOTAL, 1)).unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
            peer
        });
        let (mut got, mut largest) = (Vec::new(), 0);
        loop {
            let bytes = read_once(&mine).await.unwrap();
            if bytes.is_empty() {
                break;
            }
            largest = largest.max(bytes.len());
            got.extend(bytes);
        }
        drop(writer.join().unwrap());
        (got, largest)
    });
    assert!(
        largest <= SHARD_READ_BUFFER,
        "one read handed over {largest} bytes"
    );
    assert_eq!(got.len(), TOTAL);
    assert!(got == pattern(TOTAL, 1), "bytes differ");
}

#[test]
fn a_dropped_read_reads_nothing() {
    run1(|| async {
        let (mine, mut peer) = ready_util::std_pair();
        // Waits (no data yet), then is dropped before any arrives.
        let early = shardlet::timeout(Duration::from_millis(50), mine.read_with(|b| b.to_vec())).await;
        assert!(early.is_err(), "nothing was there to read");
        peer.write_all(b"kept for the next read").unwrap();
        assert_eq!(read_once(&mine).await.unwrap(), b"kept for the next read");
    });
}

#[test]
fn a_short_write_keeps_exactly_the_unsent_bytes_and_frees_them_once_sent() {
    // Far more than loopback's buffers take while nobody reads.
    const PAYLOAD: usize = 16 << 20;
    let (kept_before, kept_after, received) = run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        let payload = pattern(PAYLOAD, 2);
        mine.write_or_keep(&payload).unwrap();
        let kept_before = mine.kept_len();
        // Order: a plain write after a kept one goes out after it.
        let tail = pattern(1000, 3);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(PAYLOAD + 1000);
            peer.read_to_end(&mut got).unwrap();
            got
        });
        mine.write_all(&tail).await.unwrap();
        mine.flush().await.unwrap();
        let kept_after = mine.kept_len();
        mine.close().await.unwrap();
        (kept_before, kept_after, reader.join().unwrap())
    });
    assert!(
        kept_before > 0 && kept_before < PAYLOAD,
        "the socket took part of it: kept {kept_before} of {PAYLOAD}"
    );
    assert_eq!(kept_after, 0);
    assert_eq!(received.len(), PAYLOAD + 1000);
    assert!(received[..PAYLOAD] == pattern(PAYLOAD, 2)[..], "payload differs");
    assert!(
        received[PAYLOAD..] == pattern(1000, 3)[..],
        "the tail came out of order"
    );
}

/// `shutdown(Write)` with bytes kept: they go out before the EOF, as
/// `close` sends them (it used to send the EOF at once and drop them).
#[test]
fn shutdown_of_the_write_half_sends_the_kept_bytes_first() {
    const PAYLOAD: usize = 16 << 20;
    let (kept, received) = run1(|| async {
        let (mine, mut peer) = ready_util::std_pair();
        mine.write_or_keep(&pattern(PAYLOAD, 4)).unwrap();
        let kept = mine.kept_len();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(PAYLOAD);
            peer.read_to_end(&mut got).unwrap();
            got
        });
        shardlet::timeout(Duration::from_secs(20), mine.shutdown(Shutdown::Write))
            .await
            .expect("shutdown hung")
            .unwrap();
        assert_eq!(mine.kept_len(), 0);
        (kept, reader.join().unwrap())
    });
    assert!(kept > 0, "the write was not short: nothing kept, nothing tested");
    assert_eq!(received.len(), PAYLOAD, "{kept} bytes were kept");
    assert!(received == pattern(PAYLOAD, 4), "payload differs");
}

#[test]
fn writes_that_fit_keep_nothing() {
    run1(|| async {
        let (mine, mut peer) = ready_util::std_pair();
        for i in 0..100u8 {
            mine.write_or_keep(&[i; 64]).unwrap();
            assert_eq!(mine.kept_len(), 0);
        }
        let mut got = vec![0u8; 6400];
        peer.read_exact(&mut got).unwrap();
        assert!(got
            .chunks(64)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
    });
}

#[test]
fn an_echo_to_a_slow_reader_keeps_at_most_one_read() {
    const TOTAL: usize = 8 << 20;
    let (echoed, most_kept) = run1(|| async {
        let (mut mine, peer) = ready_util::std_pair();
        // Small buffers on the echo's way out: autotuned, the two could grow
        // to hold all 8 MiB, and no write would ever be short (a CI run
        // failed so).
        socket2::SockRef::from(&mine)
            .set_send_buffer_size(64 << 10)
            .unwrap();
        socket2::SockRef::from(&peer)
            .set_recv_buffer_size(64 << 10)
            .unwrap();
        let mut writer_end = peer.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            writer_end.write_all(&pattern(TOTAL, 4)).unwrap();
            writer_end.shutdown(Shutdown::Write).unwrap();
        });
        let reader = std::thread::spawn(move || {
            let mut peer = peer;
            // Slow: small reads with pauses, so the echo's writes come back short.
            let (mut got, mut chunk) = (Vec::with_capacity(TOTAL), vec![0u8; 64 << 10]);
            loop {
                std::thread::sleep(Duration::from_millis(2));
                match peer.read(&mut chunk).unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&chunk[..n]),
                }
            }
        });
        let mut most_kept = 0;
        loop {
            let open = shardlet::timeout(
                Duration::from_secs(15),
                mine.read_with(|bytes| mine.write_or_keep(bytes).map(|()| !bytes.is_empty())),
            )
            .await
            .expect("read_with hung")
            .unwrap()
            .unwrap();
            most_kept = most_kept.max(mine.kept_len());
            if !open {
                break;
            }
            mine.flush().await.unwrap();
        }
        mine.close().await.unwrap();
        writer.join().unwrap();
        (reader.join().unwrap(), most_kept)
    });
    assert!(
        most_kept > 0,
        "the reader was never slow enough to make a write short"
    );
    assert!(most_kept <= SHARD_READ_BUFFER, "kept {most_kept} bytes");
    assert_eq!(echoed.len(), TOTAL);
    assert!(echoed == pattern(TOTAL, 4), "the echo differs");
}

#[test]
fn between_two_shard_streams() {
    run1(|| async {
        let (mut client, server) = ready_util::pair().await;
        client.write_all(b"ping").await.unwrap();
        let n = server
            .read_with(|bytes| {
                server.write_or_keep(bytes).unwrap();
                bytes.len()
            })
            .await
            .unwrap();
        assert_eq!(n, 4);
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    });
}
