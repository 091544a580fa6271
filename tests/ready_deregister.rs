//! Registrations end with their socket: dropping streams and listeners
//! deregisters them (no leak), the driver task ends with the last one and a
//! new one starts with the next, and `into_glommio` hands a socket over.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use shardlet::net;
use util::{run1, settle};

fn registrations() -> usize {
    net::ready_stats().registrations
}

#[test]
fn dropping_streams_and_listeners_deregisters_them() {
    run1(|| async {
        assert_eq!(registrations(), 0);
        let listener = net::listen(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(registrations(), 1);
        let mut pairs = Vec::new();
        for _ in 0..50 {
            let client = net::connect(addr, std::time::Duration::from_secs(5))
                .await
                .unwrap();
            let server = listener.accept().await.unwrap();
            pairs.push((client, server));
        }
        assert_eq!(registrations(), 101);
        pairs.truncate(10);
        assert_eq!(registrations(), 21);
        drop(pairs);
        drop(listener);
        assert_eq!(registrations(), 0);
    });
}

#[test]
fn the_driver_ends_with_the_last_registration_and_restarts() {
    let drivers = run1(|| async {
        let (a, b) = ready_util::pair().await;
        let first = net::ready_stats().drivers;
        drop((a, b));
        // The parked driver is woken by the last deregistration and ends.
        settle().await;
        let (mut a, mut b) = ready_util::pair().await;
        let second = net::ready_stats().drivers;
        // The new driver works.
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        (first, second)
    });
    assert_eq!(drivers.1, drivers.0 + 1, "a new driver for the new registrations");
}

#[test]
fn into_glommio_deregisters_and_keeps_the_connection() {
    run1(|| async {
        let (mut client, server) = ready_util::pair().await;
        assert_eq!(registrations(), 2);
        let mut server = server.into_glommio().unwrap();
        assert_eq!(registrations(), 1);
        client.write_all(b"over").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"over");
        server.write_all(b"back").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"back");
        // And back again.
        let server = net::TcpStream::from_glommio(server).unwrap();
        assert_eq!(registrations(), 2);
        drop((client, server));
        assert_eq!(registrations(), 0);
    });
}
