//! Idle connections make room at the connection cap (`Server::serve_with`,
//! `Connection::set_idle` / `evicted`): the one idle the longest is closed
//! to admit a new client, busy ones never are, in both accept modes.

#[path = "util/net.rs"]
mod net_util;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use net_util::{client, closed_by_server, roundtrip, server_config, silent_for, start_with, Running};
use shardlet::net::{Connection, TcpStream};
use shardlet::{AcceptMode, ServerConfig, WhenFull};

/// A keep-alive echo: idle while it waits for a message, closes when asked
/// to. The message `hold` makes it answer `held` and stay busy until the
/// client leaves (a long request).
async fn keepalive(mut stream: TcpStream, conn: Connection) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        conn.set_idle(true);
        let read = future::or(async { Some(stream.read(&mut buf).await) }, async {
            conn.evicted().await;
            None
        })
        .await;
        conn.set_idle(false);
        let n = match read {
            None => return Ok(()), // asked to close
            Some(read) => read?,
        };
        match &buf[..n] {
            [] => return Ok(()),
            b"hold" => {
                stream.write_all(b"held").await?;
                while stream.read(&mut buf).await? > 0 {}
                return Ok(());
            }
            data => stream.write_all(data).await?,
        }
    }
}

/// Marks its connection idle and never looks at `evicted`.
async fn deaf(stream: TcpStream, conn: Connection) -> io::Result<()> {
    conn.set_idle(true);
    net_util::echo(stream).await
}

fn config(mode: AcceptMode, cap: usize) -> ServerConfig {
    server_config(mode).with_max_connections(cap)
}

/// Opens `n` clients one after the other, each idle after one round trip,
/// and waits until the server sees them all idle.
fn idle_clients(server: &Running, n: usize) -> Vec<StdStream> {
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let mut c = client(server.addr());
            roundtrip(&mut c, format!("idle {i}").as_bytes()).unwrap();
            // In this order: the first is the longest idle.
            server.wait_for("the client to go idle", Duration::from_secs(10), |s| {
                s.shards.iter().map(|s| s.idle).sum::<u64>() == i as u64 + 1
            });
            c
        })
        .collect();
    clients
}

/// Sends `hold` and waits for `held`: the connection is busy from now on.
fn hold(addr: SocketAddr) -> StdStream {
    let mut c = client(addr);
    c.write_all(b"hold").unwrap();
    let mut back = [0u8; 4];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"held");
    c
}

fn admits_by_evicting_the_longest_idle(shards: usize, mode: AcceptMode, when_full: WhenFull) {
    const CAP: usize = 3;
    let server = start_with(shards, config(mode, CAP).with_when_full(when_full), || keepalive);
    let n = CAP * shards;
    let mut idle = idle_clients(&server, n);
    server.wait_for("every shard at its cap", Duration::from_secs(10), |s| {
        s.shards.iter().all(|s| s.at_capacity == 1)
    });

    // A new client is served (it would wait in the backlog for ever, or be
    // refused, without eviction)...
    let mut newcomer = client(server.addr());
    roundtrip(&mut newcomer, b"newcomer").expect("the new client is admitted");
    // ...in place of the longest idle connection of its shard.
    let stats = server.stats();
    assert_eq!((stats.evicted(), stats.refused()), (1, 0), "{stats:?}");
    let closed: Vec<usize> = (0..n)
        .filter(|&i| closed_or_open(&mut idle[i]) == Closed)
        .collect();
    assert_eq!(closed.len(), 1, "exactly one idle connection closed: {closed:?}");
    if shards == 1 {
        assert_eq!(closed, [0], "the longest idle one");
    }
    for (i, c) in idle.iter_mut().enumerate().filter(|(i, _)| !closed.contains(i)) {
        roundtrip(c, format!("still {i}").as_bytes()).unwrap();
    }
    server.wait_for("the evicted one to be gone", Duration::from_secs(10), |s| {
        s.live() == n as u64
    });
}

#[derive(Debug, PartialEq)]
enum Seen {
    Closed,
    Open,
}
use Seen::*;

/// Whether the server closed `stream` (without waiting long when it did not).
fn closed_or_open(stream: &mut StdStream) -> Seen {
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let seen = if closed_by_server(stream) { Closed } else { Open };
    stream.set_read_timeout(Some(net_util::IO_TIMEOUT)).unwrap();
    seen
}

#[test]
fn full_shard_evicts_the_longest_idle_reuseport() {
    admits_by_evicting_the_longest_idle(1, AcceptMode::ReusePort, WhenFull::Wait);
}

#[test]
fn full_shard_evicts_the_longest_idle_handoff() {
    admits_by_evicting_the_longest_idle(1, AcceptMode::Handoff, WhenFull::Wait);
}

#[test]
fn full_shards_evict_an_idle_one_two_shards_handoff() {
    admits_by_evicting_the_longest_idle(2, AcceptMode::Handoff, WhenFull::Wait);
}

#[test]
fn fail_fast_mode_evicts_before_it_refuses() {
    admits_by_evicting_the_longest_idle(1, AcceptMode::ReusePort, WhenFull::Close);
    admits_by_evicting_the_longest_idle(1, AcceptMode::Handoff, WhenFull::Close);
}

fn busy_connections_are_never_evicted(mode: AcceptMode) {
    let server = start_with(1, config(mode, 3), || keepalive);
    let mut busy = vec![hold(server.addr())];
    let mut idle = idle_clients(&server, 2);

    // Two newcomers, each taking an idle one's place, then turning busy:
    // the busy first connection is older than both, and stays.
    for (i, victim) in idle.iter_mut().enumerate() {
        busy.push(hold(server.addr()));
        assert!(closed_by_server(victim), "idle {i} was not closed");
    }
    assert_eq!(server.stats().evicted(), 2);

    // Now all three are busy: a new client waits in the backlog, and no
    // connection is closed for it.
    let mut waiting = client(server.addr());
    waiting.write_all(b"waiting").unwrap();
    assert!(
        silent_for(&mut waiting, Duration::from_millis(300)),
        "served beyond the cap"
    );
    for c in &mut busy {
        assert!(
            silent_for(c, Duration::from_millis(50)),
            "a busy connection was closed"
        );
    }
    assert_eq!(server.stats().evicted(), 2);

    // A busy client leaves: the waiting one is served.
    drop(busy.pop());
    let mut back = [0u8; 7];
    waiting.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"waiting");
}

#[test]
fn busy_connections_are_never_evicted_reuseport() {
    busy_connections_are_never_evicted(AcceptMode::ReusePort);
}

#[test]
fn busy_connections_are_never_evicted_handoff() {
    busy_connections_are_never_evicted(AcceptMode::Handoff);
}

#[test]
fn an_idle_connection_that_ignores_eviction_is_closed_after_the_grace() {
    let server = start_with(1, config(AcceptMode::ReusePort, 2), || deaf);
    let mut deaf_clients = idle_clients(&server, 2);
    let started = Instant::now();
    let mut newcomer = client(server.addr());
    roundtrip(&mut newcomer, b"newcomer").expect("admitted once the grace ran out");
    assert!(
        started.elapsed() >= shardlet::net::EVICTION_GRACE / 2,
        "admitted after {:?}: the deaf handler cannot have closed by itself",
        started.elapsed()
    );
    assert!(
        closed_by_server(&mut deaf_clients[0]),
        "the longest idle was cancelled"
    );
    roundtrip(&mut deaf_clients[1], b"still here").unwrap();
}

/// Asked to close, it takes one more request (busy for a moment) and goes
/// idle again without closing: a new grace starts then, and when it runs
/// out the connection is cancelled and the waiting client served. (The
/// serving loop, waiting with no grace to time, was never woken for the new
/// one: the newcomer waited for as long as the connection stayed.)
async fn flips_when_evicted(mut stream: TcpStream, conn: Connection) -> io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        conn.set_idle(true);
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if conn.is_evicted() {
            conn.set_idle(false);
            shardlet::sleep(Duration::from_millis(50)).await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

#[test]
fn a_connection_that_goes_busy_and_idle_again_when_evicted_is_cancelled_after_a_new_grace() {
    let server = start_with(1, config(AcceptMode::ReusePort, 1), || flips_when_evicted);
    let mut old = idle_clients(&server, 1).pop().unwrap();
    let mut newcomer = client(server.addr());
    newcomer.write_all(b"newcomer").unwrap();
    server.wait_for(
        "the idle one to be asked to close",
        Duration::from_secs(10),
        |s| s.evicted() == 1,
    );
    let started = Instant::now();
    roundtrip(&mut old, b"one more").expect("served while asked to close");
    newcomer
        .set_read_timeout(Some(shardlet::net::EVICTION_GRACE * 4))
        .unwrap();
    let mut back = [0u8; 8];
    newcomer
        .read_exact(&mut back)
        .unwrap_or_else(|e| panic!("the newcomer was not served in {:?}: {e}", started.elapsed()));
    assert_eq!(&back, b"newcomer");
    assert!(
        closed_by_server(&mut old),
        "the flipping connection was cancelled"
    );
}

#[test]
fn a_stopping_server_closes_idle_connections_at_once() {
    let server = start_with(1, server_config(AcceptMode::ReusePort), || keepalive);
    let mut busy = hold(server.addr());
    let mut idle = idle_clients(&server, 1);
    let handle = server.server.clone();
    handle.stop(Duration::from_secs(30));
    assert!(closed_by_server(&mut idle[0]), "the idle connection stays open");
    assert!(
        silent_for(&mut busy, Duration::from_millis(100)),
        "the busy one was closed"
    );
    let started = Instant::now();
    drop(busy);
    for result in server.stop(Duration::from_secs(30)) {
        result.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(handle.stats().evicted(), 0, "a stop is not an eviction");
}
