//! Out of descriptors (`EMFILE`): the server backs off, keeps its live
//! connections, and accepts again once descriptors free up.
//!
//! The limit is lowered only in a child process: this test binary runs
//! itself again with [`CHILD`] set, and only that run (`emfile_child`)
//! serves under a low `RLIMIT_NOFILE`.

#[path = "util/net.rs"]
mod net_util;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use net_util::{client, roundtrip, server_config, start_echo};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use shardlet::AcceptMode;

const CHILD: &str = "SHARDLET_TEST_EMFILE_CHILD";
/// Clients the parent sends; far more than the child has descriptors for.
const CLIENTS: u64 = 60;
/// Descriptors the child leaves itself for connections.
const SPARE_FDS: u64 = 8;

/// The child: serves with only a few descriptors to spare, reports its
/// counters once every client was served. Does nothing in a normal run.
#[test]
fn emfile_child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let (mode, idle) = match mode.strip_suffix("+idle") {
        Some(mode) => (mode, true),
        None => (mode.as_str(), false),
    };
    let mode: AcceptMode = mode.parse().unwrap();
    let server = start_echo(1, server_config(mode));
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, open + SPARE_FDS, hard).unwrap();
    // On a line of its own: the harness may have started one already.
    println!("\nADDR {}", server.addr());
    if idle {
        // Out of descriptors, with idle clients: how often the driver
        // looks at epoll in a second (it cannot `dup` the epoll descriptor
        // it parks on; it used to poll every millisecond instead).
        server.wait_for("running out", Duration::from_secs(60), |s| s.accept_errors() > 0);
        std::thread::sleep(Duration::from_millis(600));
        let before = server.driver_rounds()[0];
        std::thread::sleep(Duration::from_secs(1));
        println!("\nROUNDS {}", server.driver_rounds()[0] - before);
        return;
    }
    server.wait_for("every client", Duration::from_secs(60), |s| {
        s.accepted() == CLIENTS && s.live() == 0
    });
    let stats = server.stats();
    println!("\nSTATS {} {}", stats.accepted(), stats.accept_errors());
}

/// Starts the child in `mode`: it, its output's lines, and its address.
fn spawn_child(mode: &str) -> (Child, impl Iterator<Item = String>, SocketAddr) {
    spawn_test_child("emfile_child", CHILD, mode)
}

/// Runs this binary's test `test` alone as a child, with `var` set to
/// `value`: it, its output's lines, and the address it reports.
fn spawn_test_child(test: &str, var: &str, value: &str) -> (Child, impl Iterator<Item = String>, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(var, value)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap);
    let addr = lines
        .by_ref()
        .find_map(|l| l.split_once("ADDR ").map(|(_, a)| a.trim().parse().unwrap()))
        .expect("the child reports its address");
    (child, lines, addr)
}

fn backs_off_and_recovers(mode: AcceptMode) {
    let (mut child, mut lines, addr) = spawn_child(mode.as_str());

    // Many clients at once, each holding its connection a moment: the child
    // runs out of descriptors, backs off, and serves the rest as they leave.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = client(addr);
                roundtrip(&mut c, format!("client {i}").as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            })
        })
        .collect();
    for c in clients {
        c.join().expect("every client is served in the end");
    }

    let stats = lines
        .find_map(|l| l.split_once("STATS ").map(|(_, s)| s.trim().to_owned()))
        .expect("the child reports its counters");
    assert!(child.wait().unwrap().success());
    let [accepted, errors]: [u64; 2] = stats
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!(accepted, CLIENTS);
    assert!(errors > 0, "the child never ran out of descriptors");
    eprintln!("{mode}: {accepted} accepted after {errors} EMFILE back-offs");
}

#[test]
fn emfile_backs_off_and_recovers_reuseport() {
    backs_off_and_recovers(AcceptMode::ReusePort);
}

#[test]
fn emfile_backs_off_and_recovers_handoff() {
    backs_off_and_recovers(AcceptMode::Handoff);
}

/// Out of descriptors with every client idle, a shard's driver still parks
/// (it keeps the descriptor its next park needs): a second costs it a few
/// `epoll_wait` calls, not one every millisecond.
#[test]
fn out_of_descriptors_the_driver_still_parks() {
    let (mut child, mut lines, addr) = spawn_child("reuseport+idle");
    // Idle clients, more than the child has descriptors for; held open
    // until it has measured.
    let clients: Vec<_> = (0..SPARE_FDS * 3).map(|_| client(addr)).collect();
    let rounds: u64 = lines
        .find_map(|l| l.split_once("ROUNDS ").map(|(_, n)| n.trim().parse().unwrap()))
        .expect("the child reports its driver's rounds");
    drop(clients);
    assert!(child.wait().unwrap().success());
    assert!(
        rounds < 200,
        "{rounds} epoll_wait calls in a second, every client idle"
    );
}

const OUTAGE: &str = "SHARDLET_TEST_EMFILE_OUTAGE";
/// Clients beyond what the outage child has descriptors for.
const PENDING: u64 = SPARE_FDS * 3;

/// The child of [`an_outage_serves_the_live_client_without_spinning`]:
/// serves on the shards and in the mode named in [`OUTAGE`] with only a
/// few descriptors to spare; once accepts fail, reports the CPU time the
/// whole process used over one second, then every client's end.
#[test]
fn outage_child() {
    let Ok(setup) = std::env::var(OUTAGE) else {
        return;
    };
    let (mode, shards) = setup.split_once(' ').unwrap();
    let (mode, shards): (AcceptMode, usize) = (mode.parse().unwrap(), shards.parse().unwrap());
    let server = start_echo(shards, server_config(mode));
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, open + SPARE_FDS, hard).unwrap();
    println!("\nADDR {}", server.addr());
    server.wait_for("running out", Duration::from_secs(60), |s| s.accept_errors() > 0);
    // Let the back-off reach its longest delay, then measure.
    std::thread::sleep(Duration::from_millis(1500));
    let cpu = || {
        let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
        let t = |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
        t(usage.user_time()) + t(usage.system_time())
    };
    let before = cpu();
    std::thread::sleep(Duration::from_secs(1));
    println!("\nCPU_MS {}", (cpu() - before).as_millis());
    server.wait_for("every client", Duration::from_secs(60), |s| {
        s.accepted() == 1 + PENDING && s.live() == 0
    });
    println!("\nDONE {}", server.stats().accept_errors());
}

/// Out of descriptors for a while, with clients waiting in the backlog:
/// a client served before the outage keeps being served during it, the
/// process does not spin (its CPU time over a second of the outage), and
/// every waiting client is served once descriptors free up; one shard and
/// two, both accept modes.
#[test]
fn an_outage_serves_the_live_client_without_spinning() {
    for (mode, shards) in [
        (AcceptMode::ReusePort, 1),
        (AcceptMode::Handoff, 1),
        (AcceptMode::ReusePort, 2),
        (AcceptMode::Handoff, 2),
    ] {
        let (mut child, mut lines, addr) =
            spawn_test_child("outage_child", OUTAGE, &format!("{mode} {shards}"));
        let mut live = client(addr);
        roundtrip(&mut live, b"before the outage").unwrap();
        // More clients than descriptors: they connect (the kernel's
        // backlog), the child runs out accepting them.
        let pending: Vec<_> = (0..PENDING).map(|_| client(addr)).collect();
        let cpu_ms: u64 = lines
            .by_ref()
            .find_map(|l| l.split_once("CPU_MS ").map(|(_, n)| n.trim().parse().unwrap()))
            .expect("the child reports its CPU time");
        for i in 0..50 {
            roundtrip(&mut live, format!("during the outage {i}").as_bytes()).unwrap();
        }
        drop(live);
        // Each client is served once another one's descriptor is free.
        let served: Vec<_> = pending
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                std::thread::spawn(move || roundtrip(&mut c, format!("pending {i}").as_bytes()).unwrap())
            })
            .collect();
        for s in served {
            s.join().expect("every pending client is served in the end");
        }
        let errors: u64 = lines
            .find_map(|l| l.split_once("DONE ").map(|(_, n)| n.trim().parse().unwrap()))
            .expect("the child reports its end");
        assert!(child.wait().unwrap().success());
        assert!(errors > 0, "{mode} {shards}: never out of descriptors");
        assert!(
            cpu_ms < 300,
            "{mode}, {shards} shards: {cpu_ms} ms of CPU in one second of the outage"
        );
        eprintln!("{mode}, {shards} shards: {cpu_ms} ms CPU/s during the outage, {errors} back-offs");
    }
}
