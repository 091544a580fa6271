//! `TcpStream::set_acks_with_answers`: every write (through
//! `write_or_keep`, `AsyncWrite` or a flush of kept bytes) puts the socket
//! back in delayed-ACK ("pingpong") mode, so the next request's ACK rides
//! on its answer; without it the kernel's mode is left alone. Linux reports
//! that mode through `TCP_QUICKACK` (false while delayed).

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::io::Read;

use futures_lite::AsyncWriteExt;
use shardlet::net;
use util::run1;

/// Whether the kernel would ACK at once (not in delayed-ACK mode).
fn quickack(stream: &net::TcpStream) -> bool {
    socket2::SockRef::from(stream)
        .quickack()
        .expect("getsockopt(TCP_QUICKACK)")
}

/// Leaves delayed-ACK mode, as Linux does when a delayed-ACK timer runs out.
fn leave_delayed_acks(stream: &net::TcpStream) {
    socket2::SockRef::from(stream).set_quickack(true).unwrap();
    assert!(quickack(stream));
}

#[test]
fn writes_leave_the_kernel_mode_alone_by_default() {
    run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        assert!(!mine.acks_with_answers());
        // A fresh connection that has read nothing is not in pingpong mode.
        assert!(quickack(&mine));
        mine.write_or_keep(b"one").unwrap();
        assert!(quickack(&mine), "write_or_keep changed the ACK mode");
        mine.write_all(b"two").await.unwrap();
        assert!(quickack(&mine), "write changed the ACK mode");
        let mut buf = [0u8; 6];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"onetwo");
    });
}

#[test]
fn with_acks_with_answers_every_write_delays_the_next_ack() {
    run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        mine.set_acks_with_answers(true);
        assert!(mine.acks_with_answers());
        mine.write_or_keep(b"one").unwrap();
        assert!(!quickack(&mine), "write_or_keep did not delay the ACK");

        leave_delayed_acks(&mine);
        mine.write_all(b"two").await.unwrap();
        assert!(!quickack(&mine), "write did not delay the ACK");

        // A flush that sends kept bytes: more than the socket takes at once.
        let big = vec![7u8; 16 << 20];
        mine.write_or_keep(&big).unwrap();
        assert!(mine.kept_len() > 0, "nothing was kept");
        leave_delayed_acks(&mine);
        // The reader hands its end back instead of closing it: a FIN arriving
        // before the check below would schedule an ACK, and if this thread
        // were kept off the CPU past the delayed-ACK timer (a loaded CI
        // machine), the timer would end delayed-ACK mode (a CI run failed so).
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 6 + (16 << 20)];
            peer.read_exact(&mut got).unwrap();
            (got, peer)
        });
        mine.flush().await.unwrap();
        assert!(!quickack(&mine), "the flush did not delay the ACK");
        let (got, _peer) = reader.join().unwrap();
        assert_eq!(&got[..6], b"onetwo");
        assert!(got[6..].iter().all(|&b| b == 7));
    });
}
