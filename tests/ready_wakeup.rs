//! Readiness wake-ups: a read on an empty socket waits (the shard's driver
//! parks) and wakes when data arrives; each registration wakes only its own
//! task.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::future::Future;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use shardlet::net;
use util::{run1, settle};

#[test]
fn a_read_waits_until_data_arrives_from_a_parked_driver() {
    let (got, parks_while_waiting) = run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        let parks = net::ready_stats().parks;
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            peer.write_all(b"hello").unwrap();
            peer
        });
        let mut buf = [0u8; 16];
        let n = mine.read(&mut buf).await.unwrap();
        let parks = net::ready_stats().parks - parks;
        drop(writer.join().unwrap());
        (buf[..n].to_vec(), parks)
    });
    assert_eq!(got, b"hello");
    assert!(
        parks_while_waiting >= 1,
        "the driver never parked while the reader waited"
    );
}

#[test]
fn only_the_stream_that_got_data_wakes() {
    let woke = run1(|| async {
        let (a, mut peer_a) = ready_util::std_pair();
        let (b, mut peer_b) = ready_util::std_pair();
        let order = Rc::new(std::cell::RefCell::new(Vec::new()));
        // How often each reader's future was polled: a reader woken by
        // another socket's event would be polled again (and wait again).
        let polls = [Rc::new(std::cell::Cell::new(0)), Rc::new(std::cell::Cell::new(0))];
        let reader = |name: &'static str, mut stream: net::TcpStream, polls: Rc<std::cell::Cell<usize>>| {
            let order = order.clone();
            shardlet::spawn(async move {
                let mut buf = [0u8; 8];
                let read = stream.read(&mut buf);
                futures_lite::pin!(read);
                let n = futures_lite::future::poll_fn(|cx| {
                    polls.set(polls.get() + 1);
                    read.as_mut().poll(cx)
                })
                .await
                .unwrap();
                order.borrow_mut().push((name, buf[..n].to_vec()));
            })
        };
        let task_a = reader("a", a, polls[0].clone());
        let task_b = reader("b", b, polls[1].clone());
        settle().await;
        assert!(order.borrow().is_empty(), "a reader woke without data");
        let a_polls = polls[0].get();

        peer_b.write_all(b"to b").unwrap();
        util::wait_until("b's reader wakes", || order.borrow().len() == 1).await;
        shardlet::sleep(Duration::from_millis(50)).await;
        assert_eq!(order.borrow().len(), 1, "a woke with b's data");
        assert_eq!(polls[0].get(), a_polls, "b's event woke a's reader");

        peer_a.write_all(b"to a").unwrap();
        task_b.await.unwrap();
        task_a.await.unwrap();
        let order = order.borrow().clone();
        order
    });
    assert_eq!(woke, [("b", b"to b".to_vec()), ("a", b"to a".to_vec())]);
}

/// A read polled with a waker that panics: when its data comes, the
/// driver's wake-up panics. The other readers woken in the same round are
/// woken all the same, and the shard's driver goes on (logged). Before: the
/// panic ended the driver's task, and with it the shard.
#[test]
fn a_panicking_waker_takes_down_neither_the_driver_nor_the_other_readers() {
    let got = run1(|| async {
        let (mut bad, mut peer_bad) = ready_util::std_pair();
        let (mut good, mut peer_good) = ready_util::std_pair();
        let mut buf = [0u8; 8];
        let boom = util::panicking_waker();
        {
            let read = bad.read(&mut buf);
            futures_lite::pin!(read);
            let polled = read.as_mut().poll(&mut std::task::Context::from_waker(&boom));
            assert!(polled.is_pending());
        }
        let other = shardlet::spawn(async move {
            let mut buf = [0u8; 8];
            let n = good.read(&mut buf).await.unwrap();
            (buf[..n].to_vec(), good)
        });
        settle().await;
        peer_bad.write_all(b"bad").unwrap();
        peer_good.write_all(b"good").unwrap();
        let (first, mut good) = shardlet::timeout(Duration::from_secs(5), other)
            .await
            .expect("the other reader was never woken")
            .unwrap();
        // The driver still runs: the next read of each socket is served.
        peer_good.write_all(b"again").unwrap();
        let mut again = [0u8; 8];
        let n = shardlet::timeout(Duration::from_secs(5), good.read(&mut again))
            .await
            .expect("the driver stopped")
            .unwrap();
        let n_bad = shardlet::timeout(Duration::from_secs(5), bad.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        (first, again[..n].to_vec(), buf[..n_bad].to_vec())
    });
    assert_eq!(got, (b"good".to_vec(), b"again".to_vec(), b"bad".to_vec()));
}
