//! Hostile clients against the TCP serving path (`net::Server` with the
//! buffer-less echo of `examples/echo_server.rs`: `read_with` +
//! `write_or_keep` + `flush`): half-closes, resets in the middle of a read
//! or a write, a stop with many connections open (some in the middle of a
//! message), IPv6 loopback, on one shard and two, in both accept modes.

#[path = "util/net.rs"]
mod net_util;
mod util;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use net_util::{client, heavy, roundtrip, server_config, start_on, wait_for, Running};
use shardlet::{net, AcceptMode};

/// The example's handler: no buffer of its own while it waits.
async fn echo(mut stream: net::TcpStream) -> io::Result<()> {
    loop {
        let read = stream
            .read_with(|bytes| stream.write_or_keep(bytes).map(|()| bytes.len()))
            .await;
        match read.and_then(|written| written) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        match stream.flush().await {
            Ok(()) => {}
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
    )
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

const V4: [u8; 4] = [127, 0, 0, 1];

fn start(addr: SocketAddr, shards: usize, mode: AcceptMode) -> Running {
    start_on(addr, shards, server_config(mode), || echo).expect("bind")
}

fn v6() -> Option<SocketAddr> {
    let addr: SocketAddr = "[::1]:0".parse().unwrap();
    std::net::TcpListener::bind(addr).ok().map(|_| addr)
}

fn every_setup() -> Vec<(SocketAddr, usize, AcceptMode)> {
    let mut addrs = vec![SocketAddr::from((V4, 0))];
    addrs.extend(v6());
    let mut out = Vec::new();
    for addr in addrs {
        for shards in [1, 2] {
            for mode in [AcceptMode::ReusePort, AcceptMode::Handoff] {
                out.push((addr, shards, mode));
            }
        }
    }
    out
}

/// A client that shuts down its write side still gets the whole echo,
/// then EOF, including more than the socket buffers hold.
#[test]
fn half_close_gets_the_whole_echo() {
    const TOTAL: usize = 6 << 20;
    for (addr, shards, mode) in every_setup() {
        let running = start(addr, shards, mode);
        for len in [1, 1000, TOTAL] {
            let peer = client(running.addr());
            let mut writer = peer.try_clone().unwrap();
            let writing = std::thread::spawn(move || {
                writer.write_all(&pattern(len)).unwrap();
                writer.shutdown(Shutdown::Write).unwrap();
            });
            let mut got = Vec::with_capacity(len);
            (&peer).read_to_end(&mut got).unwrap();
            writing.join().unwrap();
            assert_eq!(got.len(), len, "{addr} {shards} shards {mode}");
            assert!(
                got == pattern(len),
                "{addr} {shards} shards {mode}: the echo differs"
            );
        }
        wait_for(
            &running.server,
            "no live connection",
            Duration::from_secs(20),
            |s| s.live() == 0,
        );
        let stats = running.stats();
        assert_eq!(stats.failed(), 0, "{stats:?}");
        running.stop(Duration::from_secs(1));
    }
}

fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// Clients that reset while the server waits to write (they sent much and
/// read nothing), or in the middle of a message the server is reading:
/// their connections end, nothing is counted as a failure, and the server
/// goes on serving.
#[test]
fn resets_mid_write_and_mid_read_free_their_connections() {
    const CLIENTS: usize = 8;
    for (addr, shards, mode) in every_setup() {
        let running = start(addr, shards, mode);
        let mut doomed = Vec::new();
        for i in 0..CLIENTS {
            let mut peer = client(running.addr());
            if i % 4 == 0 {
                // Fill both directions: the server's flush waits for room.
                peer.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
                let chunk = vec![b'x'; 64 << 10];
                let until = Instant::now() + Duration::from_secs(10);
                loop {
                    match peer.write(&chunk) {
                        Ok(_) if Instant::now() < until => {}
                        Ok(_) => panic!("the server took 10 s of writes without blocking"),
                        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                            break
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            } else {
                peer.write_all(b"half a mess").unwrap();
            }
            doomed.push(peer);
        }
        wait_for(
            &running.server,
            "every client served",
            Duration::from_secs(20),
            |s| s.live() == CLIENTS as u64,
        );
        for peer in doomed {
            reset(peer);
        }
        wait_for(
            &running.server,
            "the reset ones gone",
            Duration::from_secs(20),
            |s| s.live() == 0,
        );
        let mut fresh = client(running.addr());
        roundtrip(&mut fresh, b"still serving").unwrap();
        let stats = running.stats();
        assert_eq!(
            (stats.failed(), stats.panicked()),
            (0, 0),
            "{addr} {mode}: {stats:?}"
        );
        drop(fresh);
        running.stop(Duration::from_secs(1));
    }
}

/// A stop with many connections open, some idle, some in the middle of a
/// message and some with the server waiting to write to them: it returns in
/// bounded time and every client sees its connection closed.
#[test]
fn a_stop_with_many_connections_closes_them_all_in_bounded_time() {
    let _heavy = heavy();
    const CLIENTS: usize = 1500;
    for (shards, mode) in [
        (1, AcceptMode::ReusePort),
        (2, AcceptMode::Handoff),
        (2, AcceptMode::ReusePort),
    ] {
        let running = start(SocketAddr::from((V4, 0)), shards, mode);
        let addr = running.addr();
        let mut peers = Vec::with_capacity(CLIENTS);
        for i in 0..CLIENTS {
            let mut peer = client(addr);
            match i % 3 {
                0 => {}
                1 => peer.write_all(b"mid-message").unwrap(),
                _ if i < 9 => {
                    peer.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
                    let chunk = vec![b'y'; 64 << 10];
                    while peer.write(&chunk).is_ok() {}
                }
                _ => roundtrip(&mut peer, b"hello").unwrap(),
            }
            peers.push(peer);
        }
        wait_for(
            &running.server,
            "every client taken",
            Duration::from_secs(30),
            |s| s.live() == CLIENTS as u64,
        );
        let started = Instant::now();
        let results = running.stop(Duration::from_secs(2));
        let took = started.elapsed();
        for r in results {
            r.unwrap();
        }
        assert!(took < Duration::from_secs(15), "the stop took {took:?}");
        for (i, peer) in peers.iter_mut().enumerate() {
            read_to_close(peer, &format!("client {i} ({shards} shards, {mode})"));
        }
    }
}

/// Reads whatever echo was in flight on `peer`, then its EOF or reset,
/// within 10 s; anything else fails the test, naming `who`.
fn read_to_close(peer: &mut std::net::TcpStream, who: &str) {
    peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{who}: {e}"),
        }
    }
}

/// `examples/echo_server.rs` on SIGTERM with many clients open, some in
/// the middle of an echo and some it waits to write to: it exits 0 within
/// its grace (3 s) and a margin, prints every shard's counters, and each
/// client sees its connection closed. On IPv6 loopback when there is one.
#[test]
fn the_echo_example_stops_on_sigterm_with_many_clients() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let _heavy = heavy();
    const CLIENTS: usize = 1000;
    let bin = util::example_binary("echo_server");
    let host = if v6().is_some() { "[::1]:0" } else { "127.0.0.1:0" };
    for (shards, accept) in [("1", "reuseport"), ("2", "handoff"), ("2", "reuseport")] {
        let mut child = Command::new(&bin)
            .args(["--addr", host])
            .env("SHARDLET_SHARDS", shards)
            .env("SHARDLET_ACCEPT", accept)
            .env("SHARDLET_PIN", "0")
            .env("SHARDLET_IO_MEMORY", "256K")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = util::listening_on(&mut lines);
        let mut peers = Vec::with_capacity(CLIENTS);
        for i in 0..CLIENTS {
            let mut peer = client(addr);
            match i % 3 {
                0 => {}
                1 => roundtrip(&mut peer, b"hello").unwrap(),
                _ if i < 9 => {
                    peer.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
                    let chunk = vec![b'z'; 64 << 10];
                    while peer.write(&chunk).is_ok() {}
                }
                _ => peer.write_all(b"in flight").unwrap(),
            }
            peers.push(peer);
        }
        util::sigterm(&child);
        let (status, took) = util::exit_within(
            &mut child,
            Duration::from_secs(20),
            &format!("{shards} shards, {accept}, after SIGTERM"),
        );
        assert!(status.success(), "{shards} shards, {accept}: {status}");
        assert!(
            took < Duration::from_secs(10),
            "{shards} shards, {accept}: took {took:?}"
        );
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        for shard in 0..shards.parse::<usize>().unwrap() {
            assert!(
                rest.iter().any(|l| l.starts_with(&format!("shard {shard}: "))),
                "{shards} shards, {accept}: no counters for shard {shard} in {rest:?}"
            );
        }
        for (i, peer) in peers.iter_mut().enumerate() {
            read_to_close(peer, &format!("client {i} ({shards} shards, {accept})"));
        }
    }
}

/// `examples/echo_server.rs` started with SIGINT and SIGTERM blocked (a
/// mask its parent left it, as some supervisors do) still stops on SIGTERM:
/// before, it never saw the signal and ran on.
#[test]
fn the_echo_example_stops_on_sigterm_when_started_with_it_blocked() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let bin = util::example_binary("echo_server");
    // A child inherits the mask of the thread that starts it.
    let mut child = std::thread::spawn(move || {
        let mut both = SigSet::empty();
        both.add(Signal::SIGINT);
        both.add(Signal::SIGTERM);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&both), None).unwrap();
        Command::new(&bin)
            .args(["--addr", "127.0.0.1:0"])
            .env("SHARDLET_SHARDS", "1")
            .env("SHARDLET_PIN", "0")
            .env("SHARDLET_IO_MEMORY", "256K")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    })
    .join()
    .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut peer = client(util::listening_on(&mut lines));
    roundtrip(&mut peer, b"hello").unwrap();
    util::sigterm(&child);
    let (status, _) = util::exit_within(
        &mut child,
        Duration::from_secs(15),
        "the echo example, after SIGTERM (the blocked signal was never seen)",
    );
    assert!(status.success(), "{status}");
    read_to_close(&mut peer, "the idle client");
}

/// A stop while every shard is at its cap, with clients waiting in the
/// kernel backlog: bounded, and the waiting clients see their connection
/// closed instead of hanging.
#[test]
fn a_stop_at_the_cap_closes_the_clients_waiting_in_the_backlog() {
    const CAP: usize = 2;
    for (shards, mode) in [
        (1, AcceptMode::ReusePort),
        (1, AcceptMode::Handoff),
        (2, AcceptMode::Handoff),
    ] {
        let config = server_config(mode).with_max_connections(CAP);
        let running = start_on(SocketAddr::from((V4, 0)), shards, config, || echo).expect("bind");
        let addr = running.addr();
        let mut held: Vec<TcpStream> = Vec::new();
        for _ in 0..CAP * shards {
            let mut peer = client(addr);
            roundtrip(&mut peer, b"served").unwrap();
            held.push(peer);
        }
        let mut waiting: Vec<TcpStream> = (0..5).map(|_| client(addr)).collect();
        for peer in &mut waiting {
            peer.write_all(b"anyone?").unwrap();
            assert!(
                net_util::silent_for(peer, Duration::from_millis(50)),
                "served past the cap"
            );
        }
        let started = Instant::now();
        for r in running.stop(Duration::from_secs(1)) {
            r.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the stop took {:?}",
            started.elapsed()
        );
        for (i, peer) in waiting.iter_mut().chain(held.iter_mut()).enumerate() {
            peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            assert!(
                net_util::closed_by_server(peer),
                "{shards} shards, {mode}: client {i} not closed after the stop"
            );
        }
    }
}
