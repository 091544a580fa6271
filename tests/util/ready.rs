//! Helpers for the readiness-driver tests (`#[path = "util/ready.rs"] mod ready_util;`):
//! connected pairs whose shard side is a `shardlet::net::TcpStream`, and the
//! calling thread's CPU time.
#![allow(dead_code)] // each test file uses a different part

use std::time::Duration;

use shardlet::net;

/// A loopback pair, both ends on this shard: (the connecting end, the
/// accepted end).
pub async fn pair() -> (net::TcpStream, net::TcpStream) {
    let listener = net::listen(([127, 0, 0, 1], 0)).expect("listen");
    let client = net::connect(listener.local_addr().unwrap(), Duration::from_secs(5))
        .await
        .expect("connect");
    let server = listener.accept().await.expect("accept");
    (client, server)
}

/// A loopback pair whose far end is a blocking `std` stream, for a peer
/// thread: (this shard's end, the peer's end).
pub fn std_pair() -> (net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    peer.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    peer.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mine, _) = listener.accept().expect("accept");
    (net::TcpStream::from_std(mine).expect("register"), peer)
}

/// CPU time (user + system) the calling thread has used so far.
pub fn thread_cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Duration::from_micros(micros(usage.user_time()) + micros(usage.system_time()))
}
