//! The default connection cap follows the descriptor limit: a child process
//! with a lowered `RLIMIT_NOFILE` derives the matching cap when its server
//! starts, holds exactly that many clients, leaves the next one in the
//! backlog, and logs the episode naming the limit.
//!
//! The limit is lowered only in a child process: this test binary runs
//! itself again with [`CHILD`] set, and only that run (`descriptor_child`)
//! serves under the low limit.

#[path = "util/net.rs"]
mod net_util;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use net_util::{client, roundtrip, server_config, silent_for, start_echo};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use shardlet::AcceptMode;

const CHILD: &str = "SHARDLET_TEST_DESCRIPTOR_CHILD";
/// The child's soft descriptor limit.
const LIMIT: u64 = 400;

/// The child: lowers its limit, serves with the default cap, reports it,
/// and reports its counters once the parent's clients are gone.
#[test]
fn descriptor_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (shards, mode) = spec.split_once(',').unwrap();
    let (shards, mode): (usize, AcceptMode) = (shards.parse().unwrap(), mode.parse().unwrap());
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .init();
    // Read before: the cap must come from the limit when the server starts.
    let before = shardlet::net::default_max_connections(shards);
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, LIMIT, hard).unwrap();
    let server = start_echo(shards, server_config(mode));
    let caps: Vec<String> = server
        .stats()
        .shards
        .iter()
        .map(|s| s.capacity.to_string())
        .collect();
    // On lines of their own: the harness may have started one already.
    println!(
        "\nBEFORE {before}\nCAPS {}\nADDR {}",
        caps.join(","),
        server.addr()
    );
    let total: u64 = server.stats().shards.iter().map(|s| s.capacity).sum();
    server.wait_for("every client", Duration::from_secs(60), |s| {
        s.accepted() == total + 1 && s.live() == 0
    });
    println!("\nSTATS {}", server.stats().at_capacity());
}

fn derives_the_cap(shards: usize, mode: AcceptMode, expected: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["descriptor_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{shards},{mode}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap);
    let mut value = |key: &str| {
        lines
            .by_ref()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("the child reports {key}"))
    };
    let before: u64 = value("BEFORE ").parse().unwrap();
    let caps: Vec<u64> = value("CAPS ").split(',').map(|c| c.parse().unwrap()).collect();
    let addr = value("ADDR ").parse().unwrap();
    assert_eq!(
        caps,
        vec![expected; shards],
        "the cap for {LIMIT} descriptors over {shards} shard(s)"
    );
    assert!(
        before > expected,
        "the cap was not re-read at start ({before} before)"
    );

    // Exactly the cap is served; the next client waits in the backlog.
    let total = expected as usize * shards;
    let mut held: Vec<_> = (0..total).map(|_| client(addr)).collect();
    for (i, c) in held.iter_mut().enumerate() {
        roundtrip(c, format!("client {i}").as_bytes()).unwrap();
    }
    let mut waiting = client(addr);
    waiting.write_all(b"waiting").unwrap();
    assert!(
        silent_for(&mut waiting, Duration::from_millis(300)),
        "served beyond the cap"
    );
    drop(held.pop());
    let mut back = [0u8; 7];
    waiting.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"waiting");
    drop((held, waiting));

    // The rest of the child's output: its warning, then its counters.
    let rest: Vec<String> = lines.collect();
    assert!(child.wait().unwrap().success());
    let warning = format!("the cap follows the descriptor limit (RLIMIT_NOFILE {LIMIT}");
    assert!(
        rest.iter()
            .any(|l| l.contains("its connection cap") && l.contains(&warning)),
        "no warning naming the limit in {rest:#?}"
    );
    let episodes: u64 = rest
        .iter()
        .find_map(|l| l.strip_prefix("STATS "))
        .expect("the child reports its counters")
        .trim()
        .parse()
        .unwrap();
    assert!(episodes >= 1);
}

/// 400 - (256 + 32 + 400/64) = 106.
#[test]
fn derives_the_cap_from_the_descriptor_limit_one_shard() {
    derives_the_cap(1, AcceptMode::ReusePort, 106);
}

/// (400 - (256 + 2 x 32 + 400/64)) / 2 = 37.
#[test]
fn derives_the_cap_from_the_descriptor_limit_two_shards_handoff() {
    derives_the_cap(2, AcceptMode::Handoff, 37);
}
