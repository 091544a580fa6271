//! `net::connect` on the readiness driver: a connect that is the shard's
//! first socket (its registration starts the driver, and loopback completes
//! the handshake before the first event is read), a refused connect, and
//! many connects at once.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::io::{self, Read, Write};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use shardlet::net;
use util::run1;

const LIMIT: Duration = Duration::from_secs(5);

#[test]
fn a_connect_as_the_shards_first_socket_completes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf).unwrap();
    });
    let echoed = run1(move || async move {
        assert_eq!(net::ready_stats().registrations, 0, "no socket yet");
        let mut stream = net::connect(addr, LIMIT).await.expect("connect");
        stream.write_all(b"first").await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    });
    peer.join().unwrap();
    assert_eq!(&echoed, b"first");
}

#[test]
fn a_refused_connect_fails_at_once() {
    let closed = util::refused_addr();
    let kind = run1(move || async move { net::connect(closed, LIMIT).await.map(drop).map_err(|e| e.kind()) });
    assert_eq!(kind, Err(io::ErrorKind::ConnectionRefused));
}

#[test]
fn many_connects_at_once_to_a_listener_on_the_same_shard() {
    const N: usize = 200;
    let accepted = run1(|| async {
        let listener = net::listen(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects: Vec<_> = (0..N)
            .map(|_| shardlet::spawn(async move { net::connect(addr, LIMIT).await.expect("connect") }))
            .collect();
        let mut servers = Vec::new();
        for _ in 0..N {
            servers.push(listener.accept().await.expect("accept"));
        }
        let mut clients = Vec::new();
        for c in connects {
            clients.push(c.await.unwrap());
        }
        assert_eq!(net::ready_stats().registrations, 1 + 2 * N);
        servers.len()
    });
    assert_eq!(accepted, N);
}
