//! The connection cap: reaching it is logged and counted, the fail-fast
//! mode refuses at once, a full server accepts again once clients leave,
//! and the cap is not the green-thread pool's size.

#[path = "util/net.rs"]
mod net_util;

use std::io::{self, Write};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use net_util::{client, closed_by_server, roundtrip, server_config, silent_for, start_echo};
use shardlet::{AcceptMode, Config, Runtime, Server, WhenFull};

/// Everything logged at warn level or above in this test binary.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends warnings to [`LOG`] (once per binary); returns the lines logged
/// so far that contain every one of `words`.
fn logged(words: &[&str]) -> Vec<String> {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .init();
    });
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| words.iter().all(|w| line.contains(w)))
        .map(str::to_owned)
        .collect()
}

fn at_capacity_time(server: &net_util::Running) -> Duration {
    server.stats().shards[0].at_capacity_time
}

/// A full shard logs the episode once, naming its cap and the knob, counts
/// it and its time, leaves clients in the backlog, and serves them once
/// clients leave; a second episode counts again.
fn full_server_logs_counts_and_recovers(mode: AcceptMode, cap: usize) {
    logged(&[]);
    let started = Instant::now();
    let server = start_echo(1, server_config(mode).with_max_connections(cap));
    let mut first: Vec<_> = (0..cap).map(|_| client(server.addr())).collect();
    for (i, c) in first.iter_mut().enumerate() {
        roundtrip(c, format!("first {i}").as_bytes()).unwrap();
    }
    server.wait_for("the cap", Duration::from_secs(10), |s| s.at_capacity() == 1);
    let warning = format!("holds {cap} connections, its connection cap");
    let lines = logged(&[&warning, "SHARDLET_MAX_CONNECTIONS", "with_max_connections"]);
    assert_eq!(lines.len(), 1, "one warning per episode: {lines:?}");

    // Beyond the cap: left in the backlog, not refused.
    let mut waiting = client(server.addr());
    waiting.write_all(b"waiting").unwrap();
    assert!(
        silent_for(&mut waiting, Duration::from_millis(200)),
        "served beyond the cap"
    );
    let spent = at_capacity_time(&server);
    assert!(
        spent >= Duration::from_millis(150),
        "at capacity for {spent:?} only"
    );

    // One client leaves: the waiting one is served, in its place.
    drop(first.pop());
    let mut back = [0u8; 7];
    std::io::Read::read_exact(&mut waiting, &mut back).unwrap();
    assert_eq!(&back, b"waiting");
    // Full again (the waiting one took the free place): a second episode.
    server.wait_for("a second episode", Duration::from_secs(10), |s| {
        s.at_capacity() == 2
    });
    // Both episodes began since `started`: at most this far apart.
    let apart = started.elapsed();
    drop(waiting);
    server.wait_for("below the cap", Duration::from_secs(10), |s| {
        s.live() < cap as u64
    });
    let after = at_capacity_time(&server);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(at_capacity_time(&server), after, "the clock stops below the cap");
    let stats = server.stats();
    assert_eq!((stats.refused(), stats.evicted()), (0, 0), "{stats:?}");
    assert_eq!(stats.accepted(), cap as u64 + 1, "{stats:?}");
    if apart < Duration::from_secs(10) {
        assert_eq!(
            logged(&[&warning]).len(),
            1,
            "the second episode, {apart:?} after the first, is not warned again"
        );
    }
}

#[test]
fn full_server_logs_counts_and_recovers_reuseport() {
    full_server_logs_counts_and_recovers(AcceptMode::ReusePort, 7);
}

#[test]
fn full_server_logs_counts_and_recovers_handoff() {
    full_server_logs_counts_and_recovers(AcceptMode::Handoff, 9);
}

/// With `WhenFull::Close`, a client beyond the cap is closed at once (its
/// read ends instead of waiting), counted, and the server serves again once
/// a place frees up.
fn fail_fast_refuses_at_once(shards: usize, mode: AcceptMode) {
    const CAP: usize = 2;
    let config = server_config(mode)
        .with_max_connections(CAP)
        .with_when_full(WhenFull::Close);
    let server = start_echo(shards, config);
    let mut held: Vec<_> = (0..CAP * shards).map(|_| client(server.addr())).collect();
    for (i, c) in held.iter_mut().enumerate() {
        roundtrip(c, format!("held {i}").as_bytes()).unwrap();
    }
    for _ in 0..3 {
        let mut refused = client(server.addr());
        // Bounded: a client left in the backlog would time out here.
        refused.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        assert!(
            closed_by_server(&mut refused),
            "not refused: waited {:?}",
            started.elapsed()
        );
    }
    server.wait_for("three refusals counted", Duration::from_secs(10), |s| {
        s.refused() == 3 && s.live() == (CAP * shards) as u64
    });

    drop(held.pop());
    server.wait_for("a free place", Duration::from_secs(10), |s| {
        s.live() < (CAP * shards) as u64
    });
    roundtrip(&mut client(server.addr()), b"served again").unwrap();
    assert_eq!(server.stats().refused(), 3);
}

#[test]
fn fail_fast_refuses_at_once_reuseport() {
    fail_fast_refuses_at_once(1, AcceptMode::ReusePort);
}

#[test]
fn fail_fast_refuses_at_once_handoff() {
    fail_fast_refuses_at_once(1, AcceptMode::Handoff);
}

#[test]
fn fail_fast_refuses_at_once_two_shards_handoff() {
    fail_fast_refuses_at_once(2, AcceptMode::Handoff);
}

/// `SHARDLET_POOL_SIZE` bounds green threads in pools, not connections: a
/// server under a pool of 4 holds 40 connections at once, with its cap
/// derived from the descriptor limit.
#[test]
fn the_pool_size_does_not_bound_connections() {
    let config = Config::default().with_shards(1).with_pin(false).with_pool_size(4);
    let runtime = Runtime::new(config).unwrap();
    let server = Server::bind(
        ([127, 0, 0, 1], 0),
        shardlet::ServerConfig::from(runtime.config()),
    )
    .unwrap();
    let handle = runtime
        .start({
            let server = server.clone();
            move || {
                let server = server.clone();
                async move { server.serve(net_util::echo).await }
            }
        })
        .unwrap();
    server.wait_ready(Duration::from_secs(20)).unwrap();
    let mut clients: Vec<_> = (0..40).map(|_| client(server.local_addr())).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        roundtrip(c, format!("client {i}").as_bytes()).unwrap();
    }
    let stats = server.stats();
    assert_eq!(stats.live(), 40, "{stats:?}");
    assert_eq!(
        stats.shards[0].capacity,
        shardlet::net::default_max_connections(1) as u64,
        "{stats:?}"
    );
    assert_eq!(stats.at_capacity(), 0);
    server.stop(Duration::from_secs(1));
    for served in handle.join().unwrap() {
        served.unwrap();
    }
}

#[test]
fn caps_beyond_the_descriptor_limit_warn_at_start() {
    logged(&[]);
    let cap = 7_654_321;
    let server = start_echo(1, server_config(AcceptMode::ReusePort).with_max_connections(cap));
    let lines = logged(&[&format!("add up to {cap}"), "RLIMIT_NOFILE", "ulimit -n"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    roundtrip(&mut client(server.addr()), b"still serves").unwrap();
}
