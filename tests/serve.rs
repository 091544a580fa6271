//! Serving behaviour: back-pressure when the pool is full, a handler's error
//! or panic closes only its connection, stop and drain.

#[path = "util/net.rs"]
mod net_util;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use net_util::{client, closed_by_server, roundtrip, server_config, silent_for, start, start_echo};
use shardlet::net::{self, TcpStream};
use shardlet::{AcceptMode, Runtime};

/// Clients beyond the pool size wait in the backlog, are not accepted, and
/// are served once connections end; `live` never exceeds the pool size.
fn back_pressure(shards: usize, mode: AcceptMode) {
    const POOL: usize = 4;
    let server = start_echo(shards, server_config(mode).with_max_connections(POOL));
    let capacity = (POOL * shards) as u64;
    let max_live = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = {
        let (server, max_live, done) = (server.server.clone(), max_live.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                max_live.fetch_max(server.stats().live(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };

    // Fill every slot with a connection that stays open.
    let mut first: Vec<_> = (0..capacity).map(|_| client(server.addr())).collect();
    for (i, c) in first.iter_mut().enumerate() {
        roundtrip(c, format!("first {i}").as_bytes()).unwrap();
    }
    // These complete their handshake in the kernel but are not served.
    let mut waiting: Vec<_> = (0..6).map(|_| client(server.addr())).collect();
    for (i, c) in waiting.iter_mut().enumerate() {
        std::io::Write::write_all(c, format!("waiting {i}").as_bytes()).unwrap();
    }
    for c in &mut waiting {
        assert!(
            silent_for(c, Duration::from_millis(150)),
            "served beyond the pool size"
        );
    }
    let stats = server.stats();
    assert_eq!(
        (stats.accepted(), stats.live()),
        (capacity, capacity),
        "{stats:?}"
    );

    // Free the slots: the waiting clients are served, in whatever order the
    // server takes them, each closing once it has its echo.
    drop(first);
    let readers: Vec<_> = waiting
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            std::thread::spawn(move || {
                let expected = format!("waiting {i}");
                let mut back = vec![0u8; expected.len()];
                std::io::Read::read_exact(&mut c, &mut back).unwrap();
                assert_eq!(back, expected.as_bytes());
            })
        })
        .collect();
    for r in readers {
        r.join().expect("a waiting client was never served");
    }
    server.wait_for("everyone to leave", Duration::from_secs(10), |s| s.live() == 0);
    done.store(true, Ordering::Relaxed);
    monitor.join().unwrap();
    assert_eq!(server.stats().accepted(), capacity + 6);
    assert!(
        max_live.load(Ordering::Relaxed) <= capacity,
        "live went to {} with room for {capacity}",
        max_live.load(Ordering::Relaxed)
    );
}

#[test]
fn full_pool_leaves_clients_in_the_backlog_reuseport() {
    back_pressure(1, AcceptMode::ReusePort);
}

#[test]
fn full_pool_leaves_clients_in_the_backlog_handoff() {
    back_pressure(1, AcceptMode::Handoff);
}

#[test]
fn full_pools_leave_clients_in_the_backlog_two_shards_handoff() {
    back_pressure(2, AcceptMode::Handoff);
}

/// Echoes, except that a first message `panic` panics and `error` fails.
async fn touchy(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        match &buf[..n] {
            [] => return Ok(()),
            b"panic" => panic!("the client asked for it"),
            b"error" => return Err(io::Error::other("the client asked for it")),
            data => stream.write_all(data).await?,
        }
    }
}

fn misbehaving_handler_closes_only_its_connection(mode: AcceptMode) {
    let server = start(2, server_config(mode), || touchy);
    let mut bystander = client(server.addr());
    roundtrip(&mut bystander, b"hello").unwrap();

    for (word, what) in [(&b"panic"[..], "panicked"), (b"error", "failed")] {
        let mut victim = client(server.addr());
        roundtrip(&mut victim, b"first").unwrap();
        std::io::Write::write_all(&mut victim, word).unwrap();
        assert!(closed_by_server(&mut victim), "the {what} connection stays open");
        roundtrip(&mut bystander, b"still here").unwrap();
    }
    roundtrip(&mut client(server.addr()), b"newcomer").unwrap();

    drop(bystander);
    server.wait_for("connections to end", Duration::from_secs(10), |s| s.live() == 0);
    let stats = server.stats();
    assert_eq!((stats.panicked(), stats.failed()), (1, 1), "{stats:?}");
    assert!(stats.ready(), "still accepting");
}

#[test]
fn handler_panic_or_error_closes_only_its_connection_reuseport() {
    misbehaving_handler_closes_only_its_connection(AcceptMode::ReusePort);
}

#[test]
fn handler_panic_or_error_closes_only_its_connection_handoff() {
    misbehaving_handler_closes_only_its_connection(AcceptMode::Handoff);
}

#[test]
fn handler_panicking_before_its_future_is_caught_too() {
    let calls = Arc::new(AtomicU64::new(0));
    let server = start(1, server_config(AcceptMode::ReusePort), move || {
        let calls = calls.clone();
        move |stream| {
            if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                panic!("first call panics while building its future");
            }
            net_util::echo(stream)
        }
    });
    assert!(closed_by_server(&mut client(server.addr())));
    roundtrip(&mut client(server.addr()), b"second").unwrap();
    server.wait_for("the panic to be counted", Duration::from_secs(5), |s| {
        s.panicked() == 1
    });
}

fn stop_drains(mode: AcceptMode) {
    let server = start_echo(2, server_config(mode));
    let addr = server.addr();
    let mut live = client(addr);
    roundtrip(&mut live, b"before").unwrap();

    server.server.stop(Duration::from_secs(30));
    server.wait_for("shards to stop listening", Duration::from_secs(5), |s| {
        s.shards.iter().all(|s| !s.listening)
    });
    // New clients are refused: the listeners are closed.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpStream::connect(addr) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            other => {
                assert!(Instant::now() < until, "still connecting after stop: {other:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // The live connection is still served...
    roundtrip(&mut live, b"after the stop").unwrap();
    // ...and once it ends, serve returns long before the 30 s grace.
    let started = Instant::now();
    drop(live);
    for result in server.stop(Duration::from_secs(30)) {
        result.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn stop_lets_live_connections_finish_reuseport() {
    stop_drains(AcceptMode::ReusePort);
}

#[test]
fn stop_lets_live_connections_finish_handoff() {
    stop_drains(AcceptMode::Handoff);
}

fn drain_deadline(mode: AcceptMode) {
    let config = server_config(mode).with_drain_timeout(Duration::from_millis(300));
    let server = start_echo(2, config);
    let mut stuck: Vec<_> = (0..4).map(|_| client(server.addr())).collect();
    for c in &mut stuck {
        roundtrip(c, b"hi").unwrap();
    }
    let started = Instant::now();
    let server_handle = server.server.clone();
    for result in server.stop(Duration::from_secs(30)) {
        result.unwrap();
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    for c in &mut stuck {
        assert!(closed_by_server(c), "a connection outlived the drain deadline");
    }
    assert_eq!(server_handle.stats().live(), 0);
}

#[test]
fn drain_deadline_closes_connections_still_open_reuseport() {
    drain_deadline(AcceptMode::ReusePort);
}

#[test]
fn drain_deadline_closes_connections_still_open_handoff() {
    drain_deadline(AcceptMode::Handoff);
}

#[test]
fn runtime_stop_drains_and_serve_returns_before_the_grace_ends() {
    let server = start_echo(2, server_config(AcceptMode::ReusePort));
    let mut idle = client(server.addr());
    roundtrip(&mut idle, b"hi").unwrap();
    let started = Instant::now();
    // The idle client never leaves: serve drops it just before the grace
    // ends, and returns Ok instead of being cancelled with its shard.
    let results = server
        .stop_runtime(Duration::from_millis(500))
        .expect("no shard cancelled");
    for result in results {
        result.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(closed_by_server(&mut idle));
}

#[test]
fn plain_serve_on_one_listener() {
    let (tell, addr) = flume::bounded(1);
    let runtime = Runtime::new(net_util::runtime(1)).unwrap();
    let handle = runtime
        .start(move || {
            let tell = tell.clone();
            async move {
                let listener = net::listen(([127, 0, 0, 1], 0))?;
                tell.send(listener.local_addr()?).unwrap();
                net::serve(listener, net_util::echo).await
            }
        })
        .unwrap();
    let addr = addr.recv().unwrap();
    let mut clients: Vec<_> = (0..50).map(|_| client(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        roundtrip(c, format!("plain {i}").as_bytes()).unwrap();
    }
    handle.stop(Duration::from_secs(2));
    for result in handle.join().unwrap() {
        result.unwrap();
    }
    for c in &mut clients {
        assert!(closed_by_server(c));
    }
}
