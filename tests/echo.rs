//! Echo correctness with many clients at once, on one and two shards, in
//! both accept modes; the per-shard counters add up to the clients served,
//! and every connection's socket is gone from its shard's readiness driver
//! once it closed (only reuseport listeners stay registered).

#[path = "util/net.rs"]
mod net_util;

use std::time::Duration;

use net_util::{heavy, many_clients, server_config, start_echo};
use shardlet::AcceptMode;

/// Clients in the big runs: thousands at once, small enough for CI.
const CLIENTS: usize = 2000;

fn run(shards: usize, mode: AcceptMode, clients: usize) {
    let _heavy = heavy();
    let server = start_echo(shards, server_config(mode).with_max_connections(clients));
    many_clients(server.addr(), clients, 8, 3);
    server.wait_for("all connections to close", Duration::from_secs(20), |s| {
        s.live() == 0
    });
    let stats = server.stats();
    eprintln!("{shards} shard(s), {mode}: {stats:?}");
    assert_eq!(stats.shards.len(), shards);
    assert_eq!(stats.accepted(), clients as u64, "{stats:?}");
    assert_eq!(
        (stats.failed(), stats.panicked(), stats.accept_errors()),
        (0, 0, 0),
        "{stats:?}"
    );
    if shards > 1 {
        for (i, shard) in stats.shards.iter().enumerate() {
            assert!(shard.accepted > 0, "shard {i} served nobody: {stats:?}");
        }
    }
    let listeners = match mode {
        AcceptMode::ReusePort => 1, // each shard's own listener
        AcceptMode::Handoff => 0,   // the acceptor thread's listener is not a shard's
    };
    assert_eq!(
        server.registrations(),
        vec![listeners; shards],
        "sockets left registered"
    );
    for result in server.stop(Duration::from_secs(5)) {
        result.expect("serve returns Ok after a stop");
    }
}

#[test]
fn smoke() {
    run(1, AcceptMode::ReusePort, 10);
}

#[test]
fn many_clients_one_shard_reuseport() {
    run(1, AcceptMode::ReusePort, CLIENTS);
}

#[test]
fn many_clients_two_shards_reuseport() {
    run(2, AcceptMode::ReusePort, CLIENTS);
}

#[test]
fn many_clients_one_shard_handoff() {
    run(1, AcceptMode::Handoff, CLIENTS);
}

#[test]
fn many_clients_two_shards_handoff() {
    run(2, AcceptMode::Handoff, CLIENTS);
}

#[test]
fn large_messages_are_echoed_whole() {
    use std::io::{Read, Write};
    let server = start_echo(1, server_config(AcceptMode::ReusePort));
    let mut stream = net_util::client(server.addr());
    let msg: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let msg = msg.clone();
        std::thread::spawn(move || stream.write_all(&msg).unwrap())
    };
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == msg, "1 MB echoed back changed");
}
