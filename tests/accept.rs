//! Accept spreading (`SHARDLET_ACCEPT`), listener options, IPv6, and
//! `connect`.

#[path = "util/net.rs"]
mod net_util;
mod util;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use net_util::{client, roundtrip, server_config, start, start_echo, start_on};
use shardlet::net::{self, ListenOptions};
use shardlet::{AcceptMode, Config, Runtime, Server, ServerConfig};

/// Opens `n` clients that stay open, checks each is served, and returns them.
fn open_clients(addr: SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    let mut clients: Vec<_> = (0..n).map(|_| client(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        roundtrip(c, format!("client {i}").as_bytes()).unwrap();
    }
    clients
}

#[test]
fn handoff_gives_each_connection_to_the_least_loaded_shard() {
    let server = start_echo(2, server_config(AcceptMode::Handoff));
    let clients = open_clients(server.addr(), 200);
    let stats = server.stats();
    let (a, b) = (stats.shards[0].live, stats.shards[1].live);
    assert_eq!(a + b, 200, "{stats:?}");
    assert!(a.abs_diff(b) <= 2, "uneven spread: {stats:?}");
    drop(clients);
    server.wait_for("connections to end", Duration::from_secs(10), |s| s.live() == 0);
    let stats = server.stats();
    assert_eq!(stats.accepted(), 200);
}

/// Tells the client which shard serves it, then echoes.
async fn which_shard(mut stream: net::TcpStream) -> io::Result<()> {
    stream.write_all(&[shardlet::shard::id() as u8]).await?;
    net_util::echo(stream).await
}

fn shard_of(stream: &mut std::net::TcpStream) -> u8 {
    let mut id = [0u8];
    std::io::Read::read_exact(stream, &mut id).unwrap();
    id[0]
}

#[test]
fn handoff_sends_new_connections_where_old_ones_ended() {
    let server = start(2, server_config(AcceptMode::Handoff), || which_shard);
    let mut clients: Vec<_> = (0..40)
        .map(|_| {
            let mut c = client(server.addr());
            let shard = shard_of(&mut c);
            (shard, c)
        })
        .collect();
    assert_eq!(clients.iter().filter(|(s, _)| *s == 0).count(), 20);
    // Shard 0's clients leave: every new connection goes to shard 0 until
    // it is as loaded as shard 1.
    clients.retain(|(s, _)| *s == 1);
    server.wait_for("shard 0 to empty", Duration::from_secs(5), |s| {
        s.shards[0].live == 0
    });
    for _ in 0..10 {
        let mut c = client(server.addr());
        assert_eq!(shard_of(&mut c), 0, "{:?}", server.stats());
        clients.push((0, c));
    }
    let stats = server.stats();
    assert_eq!(
        (stats.shards[0].live, stats.shards[1].live),
        (10, 20),
        "{stats:?}"
    );
}

/// Connections one at a time (each closed before the next): every pick is
/// a tie, and ties alternate between two shards (the acceptor's look for
/// room before `accept` must not move the round-robin).
#[test]
fn handoff_ties_alternate_between_two_shards() {
    let server = start(2, server_config(AcceptMode::Handoff), || which_shard);
    let mut shards = Vec::new();
    for i in 0..8 {
        let mut c = client(server.addr());
        shards.push(shard_of(&mut c));
        roundtrip(&mut c, format!("client {i}").as_bytes()).unwrap();
        drop(c);
        server.wait_for("the connection to end", Duration::from_secs(10), |s| {
            s.live() == 0
        });
    }
    assert!(
        shards.windows(2).all(|w| w[0] != w[1]),
        "ties did not alternate: {shards:?}"
    );
}

#[test]
fn reuseport_gives_every_shard_its_own_listener() {
    let server = start_echo(2, server_config(AcceptMode::ReusePort));
    let clients = open_clients(server.addr(), 200);
    let stats = server.stats();
    assert_eq!(stats.live(), 200, "{stats:?}");
    // The kernel spreads by a hash of the client's address and port: with
    // 200 clients both shards get some (all on one: about 2^-199).
    assert!(stats.shards.iter().all(|s| s.accepted > 0), "{stats:?}");
    drop(clients);
}

#[test]
fn accept_mode_comes_from_the_runtime_config() {
    let config = Config::from_lookup(|var| (var == shardlet::ENV_ACCEPT).then(|| "handoff".into())).unwrap();
    assert_eq!(ServerConfig::from(&config).accept(), AcceptMode::Handoff);
    assert_eq!(
        ServerConfig::from(&Config::default()).accept(),
        AcceptMode::ReusePort
    );
    let bad = Config::from_lookup(|var| (var == shardlet::ENV_ACCEPT).then(|| "random".into()));
    assert_eq!(bad.unwrap_err().var, "SHARDLET_ACCEPT");
}

/// A second server on a port in use fails, in either accept mode: in
/// reuseport mode `SO_REUSEPORT` alone would let it join the first one's
/// listeners and silently take a share of its clients.
#[test]
fn a_second_server_on_a_port_in_use_fails_in_either_mode() {
    for (first, second) in [
        (AcceptMode::Handoff, AcceptMode::Handoff),
        (AcceptMode::ReusePort, AcceptMode::ReusePort),
        (AcceptMode::Handoff, AcceptMode::ReusePort),
        (AcceptMode::ReusePort, AcceptMode::Handoff),
    ] {
        let server = Server::bind(([127, 0, 0, 1], 0), server_config(first)).unwrap();
        let err = Server::bind(server.local_addr(), server_config(second)).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::AddrInUse,
            "{first} then {second}: {err}"
        );
        assert!(
            err.to_string().contains(&server.local_addr().to_string()),
            "{err}"
        );
    }
}

/// The same against a serving reuseport server (every shard's listener
/// bound), and against a listener of `net::listen_with` with
/// `SO_REUSEPORT`; once the port is free again, it binds.
#[test]
fn a_reuseport_server_does_not_join_a_listener_already_there() {
    let running = start_echo(2, server_config(AcceptMode::ReusePort));
    let addr = running.addr();
    let err = Server::bind(addr, server_config(AcceptMode::ReusePort)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    drop(running);

    let [(addr, taken)] = Runtime::new(net_util::runtime(1))
        .unwrap()
        .run(|| async {
            let options = ListenOptions::default().with_reuse_port(true);
            let listener = net::listen_with(([127, 0, 0, 1], 0), &options).unwrap();
            let addr = listener.local_addr().unwrap();
            let taken = Server::bind(addr, server_config(AcceptMode::ReusePort))
                .map(|_| ())
                .map_err(|e| e.kind());
            (addr, taken)
        })
        .unwrap()[..]
    else {
        panic!("one shard")
    };
    assert_eq!(taken, Err(io::ErrorKind::AddrInUse));
    Server::bind(addr, server_config(AcceptMode::ReusePort)).expect("the port is free again");
}

/// `net::listen_with` does as `ListenOptions::with_reuse_port` says: with
/// it, sockets share a port (one per shard); without it, a port in use
/// fails.
#[test]
fn listen_with_reuse_port_shares_the_port_and_without_it_fails() {
    let results = Runtime::new(net_util::runtime(1))
        .unwrap()
        .run(|| async {
            let plain = ListenOptions::default();
            let shared = ListenOptions::default().with_reuse_port(true);
            let a = net::listen_with(([127, 0, 0, 1], 0), &plain).unwrap();
            let taken = net::listen_with(a.local_addr().unwrap(), &shared).map(|_| ());
            let b = net::listen_with(([127, 0, 0, 1], 0), &shared).unwrap();
            let c = net::listen_with(b.local_addr().unwrap(), &shared).unwrap();
            let not_shared = net::listen_with(b.local_addr().unwrap(), &plain).map(|_| ());
            (
                taken.map_err(|e| e.kind()),
                b.local_addr().unwrap() == c.local_addr().unwrap(),
                not_shared.map_err(|e| e.kind()),
            )
        })
        .unwrap();
    assert_eq!(
        results,
        [(Err(io::ErrorKind::AddrInUse), true, Err(io::ErrorKind::AddrInUse))]
    );
}

#[test]
fn backlog_is_capped_by_the_kernel() {
    let options = ListenOptions::default();
    assert_eq!(options.backlog(), net::DEFAULT_BACKLOG);
    const { assert!(net::DEFAULT_BACKLOG > 1024, "above glommio's fixed 1024") };
    if let Ok(max) = std::fs::read_to_string("/proc/sys/net/core/somaxconn") {
        let max: u32 = max.trim().parse().unwrap();
        assert_eq!(options.clone().with_backlog(u32::MAX).effective_backlog(), max);
        assert_eq!(options.with_backlog(16).effective_backlog(), 16.min(max));
    }
}

#[test]
fn ipv6_loopback() {
    let addr: SocketAddr = "[::1]:0".parse().unwrap();
    if std::net::TcpListener::bind(addr).is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    for mode in [AcceptMode::ReusePort, AcceptMode::Handoff] {
        let server = start_on(addr, 2, server_config(mode), || net_util::echo).unwrap();
        assert!(server.addr().is_ipv6());
        let clients = open_clients(server.addr(), 20);
        assert_eq!(server.stats().live(), 20);
        drop(clients);
    }
}

#[test]
fn accepted_streams_have_nodelay_unless_turned_off() {
    for nodelay in [true, false] {
        let server = start(1, ServerConfig::default().with_nodelay(nodelay), || {
            |mut stream: net::TcpStream| async move {
                let flag = stream.nodelay()?;
                stream.write_all(&[flag as u8]).await
            }
        });
        let mut c = client(server.addr());
        let mut flag = [9u8];
        std::io::Read::read_exact(&mut c, &mut flag).unwrap();
        assert_eq!(flag[0], nodelay as u8);
    }
}

/// An accepted stream has no receive timeout in either mode: the handoff
/// acceptor's wait for connections must not leave one on the sockets it
/// accepts (Linux copies a listener's `SO_RCVTIMEO` to them), or a handler
/// that reads in blocking mode (e.g. after `into_std`) fails after it.
#[test]
fn accepted_streams_have_no_receive_timeout() {
    for mode in [AcceptMode::Handoff, AcceptMode::ReusePort] {
        let server = start(1, server_config(mode), || {
            |mut stream: net::TcpStream| async move {
                let timeout = socket2::SockRef::from(&stream).read_timeout()?;
                let millis = timeout.map_or(0, |t| t.as_millis().clamp(1, 255) as u8);
                stream.write_all(&[millis]).await
            }
        });
        let mut c = client(server.addr());
        let mut millis = [9u8];
        std::io::Read::read_exact(&mut c, &mut millis).unwrap();
        assert_eq!(millis[0], 0, "{mode}: SO_RCVTIMEO of {} ms", millis[0]);
    }
}

#[test]
fn connect_with_a_timeout() {
    let server = start_echo(1, ServerConfig::default());
    let addr = server.addr();
    let closed = util::refused_addr();
    let results = Runtime::new(net_util::runtime(1))
        .unwrap()
        .run(move || async move {
            use futures_lite::AsyncReadExt;
            let mut stream = net::connect(addr, Duration::from_secs(5)).await.unwrap();
            assert!(stream.nodelay().unwrap());
            stream.write_all(b"green").await.unwrap();
            let mut back = [0u8; 5];
            stream.read_exact(&mut back).await.unwrap();
            let refused = net::connect(closed, Duration::from_secs(5))
                .await
                .unwrap_err()
                .kind();
            let zero = net::connect(addr, Duration::ZERO).await.unwrap_err().kind();
            (back, refused, zero)
        })
        .unwrap();
    assert_eq!(
        results,
        [(
            *b"green",
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::InvalidInput
        )]
    );
}
