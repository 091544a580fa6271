//! Edge cases of the readiness driver found in review: several tasks
//! waiting on one socket, a non-fatal `EPOLLERR`, and vectored calls with
//! more slices than one `readv`/`writev` takes.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::io::{IoSlice, IoSliceMut, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use shardlet::net;
use util::{run1, settle};

/// Two green threads accepting on one shared listener: each gets a
/// connection (the second waiter must not push the first one out).
#[test]
fn two_tasks_accepting_on_one_listener_both_wake() {
    let outcome = run1(|| async {
        let listener = Rc::new(net::listen(([127, 0, 0, 1], 0)).unwrap());
        let addr = listener.local_addr().unwrap();
        let acceptor = |l: Rc<net::TcpListener>| shardlet::spawn(async move { l.accept().await.is_ok() });
        let a = acceptor(listener.clone());
        let b = acceptor(listener.clone());
        settle().await; // both wait now
        let _c1 = std::net::TcpStream::connect(addr).unwrap();
        let _c2 = std::net::TcpStream::connect(addr).unwrap();
        shardlet::timeout(Duration::from_secs(5), async {
            (a.await.unwrap(), b.await.unwrap())
        })
        .await
        .map_err(|_| "an accept never woke up")
    });
    assert_eq!(outcome, Ok((true, true)));
}

/// An `EPOLLERR` on a live socket (a transmit timestamp on its error
/// queue) must not leave reads trying again and again: the waiting read
/// parks, and the shard stays free until data comes.
#[test]
fn a_non_fatal_epollerr_does_not_make_reads_spin() {
    use nix::sys::socket::{setsockopt, sockopt::Timestamping, TimestampingFlag};
    let (cpu, wall) = run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        let flags = TimestampingFlag::SOF_TIMESTAMPING_TX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY;
        setsockopt(&mine, Timestamping, &flags).expect("SO_TIMESTAMPING");
        mine.write_all(b"x").await.unwrap(); // its timestamp goes to the error queue
        let mut one = [0u8; 1];
        std::io::Read::read_exact(&mut peer, &mut one).unwrap();
        shardlet::sleep(Duration::from_millis(50)).await; // the driver sees EPOLLERR
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            peer.write_all(b"late").unwrap();
            peer
        });
        let before = ready_util::thread_cpu_time();
        let start = Instant::now();
        let mut buf = [0u8; 16];
        let n = mine.read(&mut buf).await.unwrap();
        let wall = start.elapsed();
        let cpu = ready_util::thread_cpu_time() - before;
        assert_eq!(&buf[..n], b"late");
        drop(writer.join().unwrap());
        (cpu, wall)
    });
    assert!(
        cpu < Duration::from_millis(200),
        "the shard spun for {cpu:?} of CPU during a {wall:?} wait"
    );
}

/// `readv` takes at most 1024 slices: coming back with 1024 bytes of 2048
/// slices does not mean the socket is drained.
#[test]
fn read_vectored_with_more_than_iov_max_slices_leaves_the_rest_readable() {
    let (n, rest) = run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        peer.write_all(&[1u8; 2048]).unwrap();
        shardlet::sleep(Duration::from_millis(50)).await;
        let mut bytes = vec![[0u8; 1]; 2048];
        let mut slices: Vec<IoSliceMut<'_>> = bytes.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let n = mine.read_vectored(&mut slices).await.unwrap();
        let mut rest = [0u8; 4096];
        let m = shardlet::timeout(Duration::from_secs(5), mine.read(&mut rest)).await;
        drop(peer);
        (n, m.ok().map(Result::unwrap))
    });
    assert_eq!(n, 1024, "readv took 1024 slices");
    assert_eq!(rest, Some(1024), "the other 1024 bytes are read at once");
}

/// `writev` takes at most 1024 slices: writing 1024 bytes of 2048 slices
/// does not mean the send buffer is full.
#[test]
fn write_vectored_with_more_than_iov_max_slices_does_not_stall_the_next_write() {
    let (n, next) = run1(|| async {
        let (mut mine, peer) = ready_util::std_pair();
        shardlet::sleep(Duration::from_millis(50)).await;
        let bytes = vec![[7u8; 1]; 2048];
        let slices: Vec<IoSlice<'_>> = bytes.iter().map(|b| IoSlice::new(b)).collect();
        let n = mine.write_vectored(&slices).await.unwrap();
        let m = shardlet::timeout(Duration::from_secs(5), mine.write(b"more")).await;
        drop(peer);
        (n, m.ok().map(Result::unwrap))
    });
    assert_eq!(n, 1024, "writev took 1024 slices");
    assert_eq!(
        next,
        Some(4),
        "a write to an empty send buffer goes through at once"
    );
}
