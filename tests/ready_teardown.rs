//! A runtime that served connections and stopped leaves none of the
//! readiness driver's descriptors behind: its shards' epoll instances (and
//! the driver's parking duplicates of them) and every socket are closed,
//! including connections still open at the stop.
//!
//! (Each stopped shard does leave one eventfd open, with or without the
//! readiness driver; that is not counted here.)

#[path = "util/net.rs"]
mod net_util;

use std::time::Duration;

use net_util::{client, heavy, roundtrip, server_config, start_echo};
use shardlet::AcceptMode;

/// This process's open epoll instances and sockets.
fn epolls_and_sockets() -> (usize, usize) {
    let mut counts = (0, 0);
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // closed meanwhile (the directory listing's own descriptor)
        };
        let target = target.to_string_lossy();
        if target == "anon_inode:[eventpoll]" {
            counts.0 += 1;
        } else if target.starts_with("socket:") {
            counts.1 += 1;
        }
    }
    counts
}

fn serve_and_stop(mode: AcceptMode) {
    let server = start_echo(2, server_config(mode));
    let mut done = client(server.addr());
    roundtrip(&mut done, b"served").unwrap();
    drop(done);
    // Still open when the server stops: the drain closes it.
    let mut open = client(server.addr());
    roundtrip(&mut open, b"still here").unwrap();
    for result in server.stop(Duration::from_millis(200)) {
        result.unwrap();
    }
    drop(open);
}

#[test]
fn runtimes_that_served_leave_no_descriptors() {
    let _heavy = heavy();
    // Warm up whatever the process opens once (log files, the blocking pool...).
    serve_and_stop(AcceptMode::ReusePort);
    serve_and_stop(AcceptMode::Handoff);
    let before = epolls_and_sockets();
    for _ in 0..5 {
        serve_and_stop(AcceptMode::ReusePort);
        serve_and_stop(AcceptMode::Handoff);
    }
    let after = epolls_and_sockets();
    assert_eq!(
        after, before,
        "(epoll instances, sockets) open before and after ten runtimes"
    );
}
