//! `TcpStream::set_acks_with_answers`: every read (through `read_with` or
//! `AsyncRead`) first puts the socket in delayed-ACK ("pingpong") mode, so
//! the answer carries the ACK; without it the kernel's mode is left alone.
//! Linux reports that mode through `TCP_QUICKACK` (false while delayed).

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::io::Write;

use futures_lite::AsyncReadExt;
use shardlet::net;
use util::run1;

/// Whether the kernel would ACK at once (not in delayed-ACK mode).
fn quickack(stream: &net::TcpStream) -> bool {
    socket2::SockRef::from(stream)
        .quickack()
        .expect("getsockopt(TCP_QUICKACK)")
}

#[test]
fn reads_leave_the_kernel_mode_alone_by_default() {
    run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        assert!(!mine.acks_with_answers());
        // A fresh connection that has answered nothing is not in pingpong mode.
        assert!(quickack(&mine));
        peer.write_all(b"one").unwrap();
        mine.read_with(|b| assert_eq!(b, b"one")).await.unwrap();
        assert!(quickack(&mine), "read_with changed the ACK mode");
        peer.write_all(b"two").unwrap();
        let mut buf = [0u8; 3];
        mine.read_exact(&mut buf).await.unwrap();
        assert!(quickack(&mine), "read changed the ACK mode");
    });
}

#[test]
fn with_acks_with_answers_every_read_delays_the_ack() {
    run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        mine.set_acks_with_answers(true);
        assert!(mine.acks_with_answers());
        peer.write_all(b"one").unwrap();
        mine.read_with(|b| assert_eq!(b, b"one")).await.unwrap();
        assert!(!quickack(&mine), "read_with did not delay the ACK");

        // The kernel leaves the mode (as when a delayed-ACK timer ran out);
        // the next read, through AsyncRead this time, enters it again.
        socket2::SockRef::from(&mine).set_quickack(true).unwrap();
        assert!(quickack(&mine));
        peer.write_all(b"two").unwrap();
        let mut buf = [0u8; 3];
        mine.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"two");
        assert!(!quickack(&mine), "read did not delay the ACK");
    });
}
