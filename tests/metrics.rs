//! Per-shard metrics readable from the host (issue 11, item 2):
//! `RuntimeHandle::stats()` (tasks, panics, busy and idle time, stalls,
//! lanes, mailbox, blocking pool, readiness driver), a server's per-status
//! counts, panics and latency histograms, and the Prometheus text.
//!
//! The host reads while the shards run, so each test starts a runtime and
//! steps it through flume channels; every wait is bounded.

mod util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use shardlet::metrics::{Exporter, RuntimeStats};
use shardlet::net::{Connection, TcpStream};
use shardlet::{shard, Runtime, RuntimeHandle, Server, ServerConfig};
use util::config;

/// Polls `handle.stats()` until `check` holds (fails after 10 s).
fn wait_stats<T>(
    handle: &RuntimeHandle<T>,
    what: &str,
    check: impl Fn(&RuntimeStats) -> bool,
) -> RuntimeStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = handle.stats();
        if check(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}:\n{stats}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn tasks_and_panics_are_counted_per_shard() {
    let (go, wait) = flume::bounded::<()>(0);
    let handle = Runtime::new(config(2))
        .unwrap()
        .start(move || {
            let wait = wait.clone();
            async move {
                if shard::id() == 1 {
                    // 50 tasks waiting, and 3 panics.
                    let (tx, rx) = flume::unbounded::<()>();
                    for _ in 0..50 {
                        let rx = rx.clone();
                        shardlet::spawn_n(async move {
                            let _ = rx.recv_async().await;
                        });
                    }
                    for _ in 0..3 {
                        let _ = shardlet::spawn(async { panic!("counted") }).await;
                    }
                    let _ = wait.recv_async().await;
                    drop(tx);
                    shardlet::sleep(Duration::from_millis(10)).await;
                } else {
                    let _ = wait.recv_async().await;
                }
            }
        })
        .unwrap();
    let stats = wait_stats(&handle, "shard 1 shows 50 live tasks and 3 panics", |s| {
        s.shards[1].tasks_live >= 50 && s.shards[1].panics == 3
    });
    assert!(stats.shards[1].tasks_spawned >= 53, "{stats}");
    assert_eq!(stats.shards[0].panics, 0, "{stats}");
    assert!(stats.shards[0].tasks_live < 10, "{stats}");
    assert!(stats.shards.iter().all(|s| s.running));
    go.send(()).unwrap();
    go.send(()).unwrap();
    let metrics = handle.metrics();
    handle.join().unwrap();
    let end = metrics.stats();
    assert!(
        end.shards.iter().all(|s| !s.running && s.tasks_live == 0),
        "{end}"
    );
    assert!(end.shards[1].uptime > Duration::ZERO);
}

/// Every kind of task is counted exactly once when it starts and once when
/// it ends: a spawned and awaited one, a `spawn_n`, a cancelled one, a
/// panicking one, and a chain of tasks each spawning the next deeper than
/// the stack allows (queued instead of run inside `spawn`).
#[test]
fn every_kind_of_task_is_counted_once() {
    const CHAIN: u32 = 200;
    let (step_tx, step_rx) = flume::bounded::<()>(0);
    let (done_tx, done_rx) = flume::bounded::<()>(0);
    let handle = Runtime::new(config(1))
        .unwrap()
        .start(move || {
            let (step_rx, done_tx) = (step_rx.clone(), done_tx.clone());
            async move {
                // The shard's own tasks are spawned before the entry runs:
                // the test's "before" is taken after this.
                done_tx.send_async(()).await.unwrap();
                let _ = step_rx.recv_async().await;
                for i in 0..10u32 {
                    assert_eq!(shardlet::spawn(async move { i }).await, Ok(i));
                }
                let (tx, rx) = flume::unbounded::<()>();
                for _ in 0..10 {
                    let tx = tx.clone();
                    shardlet::spawn_n(async move { tx.send(()).unwrap() });
                }
                for _ in 0..10 {
                    rx.recv_async().await.unwrap();
                }
                for _ in 0..5 {
                    let waiting = shardlet::spawn(shardlet::sleep(Duration::from_secs(60)));
                    waiting.cancel();
                    assert!(waiting.await.is_err());
                }
                assert!(shardlet::spawn(async { panic!("counted") }).await.is_err());
                fn chain(left: u32, done: flume::Sender<()>) {
                    if left == 0 {
                        done.send(()).unwrap();
                    } else {
                        shardlet::spawn_n(async move { chain(left - 1, done) });
                    }
                }
                let (tx, rx) = flume::bounded(1);
                chain(CHAIN, tx);
                rx.recv_async().await.unwrap();
                // Let the last tasks of the chain end.
                shardlet::sleep(Duration::from_millis(20)).await;
                done_tx.send_async(()).await.unwrap();
                let _ = step_rx.recv_async().await;
            }
        })
        .unwrap();
    // Not "the shard is running": `running` is set before the shard spawns
    // its own tasks, and a reading between the two counted them as the test's.
    done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let before = handle.stats();
    step_tx.send(()).unwrap();
    done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let after = handle.stats();
    let (b, a) = (&before.shards[0], &after.shards[0]);
    assert_eq!(
        a.tasks_spawned - b.tasks_spawned,
        10 + 10 + 5 + 1 + u64::from(CHAIN),
        "before: {before}\nafter: {after}"
    );
    assert_eq!(a.tasks_live, b.tasks_live, "before: {before}\nafter: {after}");
    step_tx.send(()).unwrap();
    let metrics = handle.metrics();
    handle.join().unwrap();
    assert_eq!(metrics.stats().shards[0].tasks_live, 0);
}

/// A task that blocks its shard for 300 ms or more: busy time, the longest
/// poll and a stall, and `polling_for` while it is stuck; an idle shard stays
/// idle.
#[test]
fn busy_time_and_stalls() {
    let (stuck, is_stuck) = flume::bounded::<()>(1);
    // The stuck task waits for the test to have seen it stuck (a fixed
    // sleep could end before a test thread kept off the CPU looks).
    let (release, released) = flume::bounded::<()>(1);
    let handle = Runtime::new(config(2))
        .unwrap()
        .start(move || {
            let (stuck, released) = (stuck.clone(), released.clone());
            async move {
                if shard::id() == 0 {
                    let _ = stuck.send(());
                    // Never do this: it blocks the shard.
                    let _ = released.recv_timeout(Duration::from_secs(10));
                }
                shardlet::sleep(Duration::from_millis(400)).await;
            }
        })
        .unwrap();
    is_stuck.recv().unwrap();
    let during = wait_stats(&handle, "shard 0 is seen stuck", |s| {
        s.shards[0].polling_for >= Duration::from_millis(300)
    });
    release.send(()).unwrap();
    assert!(
        during.shards[1].polling_for < Duration::from_millis(100),
        "{during}"
    );
    let metrics = handle.metrics();
    handle.join().unwrap();
    let stats = metrics.stats();
    let (stuck, idle) = (&stats.shards[0], &stats.shards[1]);
    assert!(stuck.busy >= Duration::from_millis(250), "{stats}");
    assert!(stuck.longest_poll >= Duration::from_millis(250), "{stats}");
    assert!(stuck.stalls >= 1, "{stats}");
    assert!(stuck.utilization() > 0.3, "{stats}");
    // The idle shard may show a stall only if its thread was kept off the
    // CPU for a long while in a poll (a loaded machine): a poll of tens of
    // milliseconds there (shard 1 blocked too) fails.
    assert!(idle.longest_poll < Duration::from_millis(100), "{stats}");
    assert!(
        idle.stalls == 0 || idle.longest_poll >= Duration::from_millis(50),
        "{stats}"
    );
    assert!(idle.utilization() < 0.3, "{stats}");
    assert!(idle.idle() >= Duration::from_millis(250), "{stats}");
}

/// Busy and idle time are counters (`shardlet_*_seconds_total`): sampled
/// during a 300 ms poll and after it, neither ever goes down. (Idle once
/// grew through a long poll, counted as uptime less busy, and fell back when
/// the poll ended and its time moved to busy.)
#[test]
fn busy_and_idle_never_go_down_across_a_long_poll() {
    let (stuck, is_stuck) = flume::bounded::<()>(1);
    let handle = Runtime::new(config(1))
        .unwrap()
        .start(move || {
            let stuck = stuck.clone();
            async move {
                let _ = stuck.send(());
                std::thread::sleep(Duration::from_millis(300)); // never do this
                shardlet::sleep(Duration::from_millis(200)).await;
            }
        })
        .unwrap();
    is_stuck.recv().unwrap();
    let metrics = handle.metrics();
    let mut samples = Vec::new();
    let mut seen_stuck = false;
    let mut seen_unstuck = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Through the long poll and well past its end.
    while !(seen_stuck && seen_unstuck) || samples.len() < 100 {
        assert!(
            Instant::now() < deadline,
            "the shard never got through its long poll"
        );
        let shard = metrics.stats().shards[0];
        seen_stuck |= shard.polling_for >= Duration::from_millis(100);
        seen_unstuck |= seen_stuck && shard.polling_for.is_zero() && shard.busy >= Duration::from_millis(250);
        samples.push(shard);
        std::thread::sleep(Duration::from_millis(3));
    }
    handle.join().unwrap();
    samples.push(metrics.stats().shards[0]);
    for pair in samples.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(after.busy >= before.busy, "busy went down:\n{before}\n{after}");
        assert!(
            after.idle() >= before.idle(),
            "idle went down:\n{before}\n{after}"
        );
    }
}

/// Messages queued for a stuck shard show from the host: in the lanes
/// from another shard (sampled by the sender) and in its mailbox.
#[test]
fn lanes_and_mailbox_depths() {
    let (stuck, is_stuck) = flume::bounded::<()>(1);
    let (stuck_too, is_stuck_too) = flume::bounded::<()>(1);
    let (sent, were_sent) = flume::bounded::<()>(1);
    let handle = Runtime::new(config(2))
        .unwrap()
        .start(move || {
            let (stuck, sent) = (stuck.clone(), sent.clone());
            let (stuck_too, is_stuck_too) = (stuck_too.clone(), is_stuck_too.clone());
            async move {
                if shard::id() == 1 {
                    shardlet::sleep(Duration::from_millis(50)).await;
                    let _ = stuck.send(());
                    let _ = stuck_too.send(());
                    std::thread::sleep(Duration::from_millis(1500)); // stuck
                } else {
                    // Not a fixed wait: shard 1 may start late.
                    let _ = is_stuck_too.recv_async().await;
                    for _ in 0..20 {
                        shardlet::spawn_on(1, || async {}).await.unwrap();
                    }
                    let _ = sent.send(());
                }
                shardlet::sleep(Duration::from_millis(100)).await;
            }
        })
        .unwrap();
    is_stuck.recv().unwrap();
    for _ in 0..7 {
        assert!(handle.mesh().try_spawn_on(1, || async {}).is_ok());
    }
    were_sent.recv().unwrap();
    let stats = wait_stats(&handle, "20 messages in the lanes to shard 1", |s| {
        s.shards[1].lanes_queued == 20
    });
    assert_eq!(stats.shards[1].mailbox_queued, 7, "{stats}");
    assert_eq!(
        stats.shards[0].lanes_queued + stats.shards[0].mailbox_queued,
        0,
        "{stats}"
    );
    let metrics = handle.metrics();
    handle.join().unwrap();
    let end = metrics.stats();
    assert_eq!(
        end.shards[1].lanes_queued + end.shards[1].mailbox_queued,
        0,
        "{end}"
    );
}

/// Messages left in the lanes to a shard when it ends are dropped with it:
/// its `lanes_queued` is 0 after the end. Before: the sender's last sample
/// (taken as the sender ended, before the receiver did) stayed for good.
/// Shard 1 never gets to run them: it is stuck while they are sent, and
/// ends slowly (a task whose drop takes 300 ms), so shard 0 ends first.
#[test]
fn lanes_queued_is_zero_once_the_shard_has_ended() {
    struct SlowDrop;
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let (stuck, is_stuck) = flume::bounded::<()>(1);
    let (ended, has_ended) = flume::bounded::<()>(1);
    let handle = Runtime::new(config(2))
        .unwrap()
        .start(move || {
            let (stuck, is_stuck) = (stuck.clone(), is_stuck.clone());
            let (ended, has_ended) = (ended.clone(), has_ended.clone());
            async move {
                if shard::id() == 1 {
                    shardlet::spawn_n(async {
                        let _slow = SlowDrop;
                        futures_lite::future::pending::<()>().await;
                    });
                    stuck.send(()).unwrap();
                    // Stuck until shard 0's entry is at its end (a fixed
                    // sleep lost the race to a shard 0 kept off the CPU),
                    // then long enough for that entry to return.
                    let _ = has_ended.recv_timeout(Duration::from_secs(10));
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
                is_stuck.recv_async().await.unwrap();
                for _ in 0..10 {
                    assert!(shard::mesh().try_spawn_on(1, || async {}).is_ok());
                }
                // Sampled at least once while shard 1 is stuck.
                shardlet::sleep(Duration::from_millis(150)).await;
                let _ = ended.send(());
            }
        })
        .unwrap();
    let metrics = handle.metrics();
    let (result, _) = util::join_within(handle, Duration::from_secs(20));
    result.unwrap();
    let end = metrics.stats();
    assert_eq!(end.mesh_dropped, 10, "shard 1 ran some: {end}");
    assert_eq!(end.shards[1].lanes_queued, 0, "{end}");
}

#[test]
fn blocking_pool_queue_and_busy_threads() {
    // The first closure runs until the test has seen the queue (a fixed
    // sleep could end before a test thread kept off the CPU looks).
    let (release, released) = flume::bounded::<()>(1);
    let handle = Runtime::new(config(1).with_blocking_threads(1))
        .unwrap()
        .start(move || {
            let released = released.clone();
            async move {
                let a = shardlet::spawn(shardlet::blocking(move || {
                    let _ = released.recv_timeout(Duration::from_secs(10));
                }));
                let b = shardlet::spawn(shardlet::blocking(|| {
                    std::thread::sleep(Duration::from_millis(10))
                }));
                a.await.unwrap().unwrap();
                b.await.unwrap().unwrap();
            }
        })
        .unwrap();
    let stats = wait_stats(&handle, "one closure running and one queued", |s| {
        s.blocking.busy == 1 && s.blocking.queued == 1
    });
    release.send(()).unwrap();
    assert_eq!(stats.blocking.threads, 1);
    let metrics = handle.metrics();
    handle.join().unwrap();
    // A thread counts its closure done just after the caller has the answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metrics.stats().blocking.busy != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(metrics.stats().blocking.busy, 0);
}

#[test]
fn blocking_panics_are_counted_and_exported() {
    let handle = Runtime::new(config(1).with_blocking_threads(2))
        .unwrap()
        .start(|| async {
            for i in 0..3 {
                let out = shardlet::blocking(move || {
                    assert!(i != 1, "closure {i} panics");
                    i
                })
                .await;
                assert_eq!(out.is_err(), i == 1, "{out:?}");
            }
        })
        .unwrap();
    let metrics = handle.metrics();
    handle.join().unwrap();
    assert_eq!(metrics.stats().blocking.panics, 1, "{}", metrics.stats());
    let text = Exporter::new().with_runtime(metrics).encode();
    for line in [
        "# TYPE shardlet_blocking_panics_total counter",
        "shardlet_blocking_panics_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

/// The echo handler, recording each echoed chunk as a "request": status 200
/// for data, 400 for a chunk starting with `!`, and a panic for `?`.
async fn recording_echo(mut stream: TcpStream, conn: Connection) -> std::io::Result<()> {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 256];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let started = Instant::now();
        if buf[0] == b'?' {
            // A protocol would answer 500 and go on.
            conn.record_panic();
            conn.record_request(500, started.elapsed());
        } else {
            conn.record_request(if buf[0] == b'!' { 400 } else { 200 }, started.elapsed());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Starts `shards` shards serving `handler`, and has one client send each
/// of `messages` and read its echo; the client stays connected.
fn echoed<Fut>(
    shards: usize,
    handler: fn(TcpStream, Connection) -> Fut,
    messages: &[&str],
) -> (Server, RuntimeHandle<std::io::Result<()>>, std::net::TcpStream)
where
    Fut: std::future::Future<Output = std::io::Result<()>> + 'static,
{
    let runtime = Runtime::new(config(shards)).unwrap();
    let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).unwrap();
    let handle = runtime
        .start({
            let server = server.clone();
            move || {
                let server = server.clone();
                async move { server.serve_with(handler).await }
            }
        })
        .unwrap();
    futures_lite::future::block_on(server.ready(&handle)).unwrap();
    let mut client = std::net::TcpStream::connect(server.local_addr()).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for message in messages {
        client.write_all(message.as_bytes()).unwrap();
        let mut echo = vec![0; message.len()];
        client.read_exact(&mut echo).unwrap();
    }
    (server, handle, client)
}

/// Records each message as a request that took the microseconds it names.
async fn recording_named_latencies(mut stream: TcpStream, conn: Connection) -> std::io::Result<()> {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 64];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let micros: u64 = text.trim().parse().unwrap();
        conn.record_request(200, Duration::from_micros(micros));
        stream.write_all(&buf[..n]).await?;
    }
}

/// The histogram's buckets hold what their `le` says, exactly, and its sum is
/// the latencies' sum. Before: the buckets, already cumulative, were added up
/// again by the encoder (these four requests made `le="+Inf"` 36, against a
/// `_count` of 4), and they came from the HdrHistogram (2 digits): a request
/// of 1,003 µs counted under `le="0.001"`.
#[test]
fn the_latency_buckets_and_sum_are_exact() {
    // At a bound, just past it (HdrHistogram's bucket of 1,000 µs spans
    // 1,000-1,003), and past the last bound.
    let micros = ["1000", "1003", "5023", "20000000"];
    let (server, handle, client) = echoed(1, recording_named_latencies, &micros);
    let text = Exporter::new().with_server("h", &server).encode();
    let series =
        |le: &str| format!(r#"shardlet_request_duration_seconds_bucket{{server="h",shard="0",le="{le}"}}"#);
    for (le, count) in [
        ("0.0005", 0),
        ("0.001", 1),
        ("0.0025", 2),
        ("0.005", 2),
        ("0.01", 3),
        ("10", 3),
        ("+Inf", 4),
    ] {
        let line = format!("{} {count}", series(le));
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let sum = r#"shardlet_request_duration_seconds_sum{server="h",shard="0"} 20.007026"#;
    assert!(text.lines().any(|l| l == sum), "no {sum:?} in\n{text}");
    drop(client);
    server.stop(Duration::from_secs(1));
    handle.join().unwrap();
}

#[test]
fn server_stats_and_prometheus_text() {
    let (server, handle, client) = echoed(2, recording_echo, &["hello", "!bad", "?boom", "again"]);
    let stats = server.stats();
    let all = stats.all_requests();
    assert_eq!(all.requests(), 4);
    assert_eq!(all.statuses.get(&200), Some(&2));
    assert_eq!(all.statuses.get(&400), Some(&1));
    assert_eq!(all.statuses.get(&500), Some(&1));
    assert_eq!(all.latency.len(), 4, "merged over the shards");
    assert_eq!(stats.panicked(), 1);
    wait_stats(&handle, "the driver's counters", |s| {
        s.shards.iter().any(|s| s.ready.events > 0)
    });

    let text = Exporter::new()
        .with_runtime(handle.metrics())
        .with_server("echo", &server)
        .encode();
    let shard = stats.shards.iter().position(|s| s.accepted == 1).unwrap();
    for line in [
        format!(r#"shardlet_connections_accepted_total{{server="echo",shard="{shard}"}} 1"#),
        format!(r#"shardlet_responses_total{{server="echo",shard="{shard}",status="200"}} 2"#),
        format!(r#"shardlet_handler_panics_total{{server="echo",shard="{shard}"}} 1"#),
        format!(r#"shardlet_request_duration_seconds_count{{server="echo",shard="{shard}"}} 4"#),
        r#"shardlet_blocking_threads 4"#.to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // Every per-shard series carries its shard.
    let runtime_wide = ["shardlet_blocking_", "shardlet_mesh_"];
    for sample in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        if !runtime_wide.iter().any(|p| sample.starts_with(p)) {
            assert!(sample.contains("shard=\""), "no shard label: {sample}");
        }
    }
    drop(client);
    server.stop(Duration::from_secs(1));
    for served in handle.join().unwrap() {
        served.unwrap();
    }
}

/// An example's binary (cargo builds examples for `cargo test`).
fn example(name: &str) -> std::path::PathBuf {
    util::example_binary(name)
}

/// `GET path` on `addr`: the whole answer.
fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Sends `raw` to `addr`: the whole answer (lossy UTF-8).
fn http_request(addr: &str, raw: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(raw).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Starts an example with `--metrics-addr`, makes one connection to it,
/// and checks its `/metrics` counts it on shard 0.
fn example_serves_metrics(name: &str, server_label: &str, ready_prefix: &str, poke: impl Fn(&str)) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(example(name))
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .env("SHARDLET_SHARDS", "1")
        .env("SHARDLET_PIN", "0")
        .env("SHARDLET_IO_MEMORY", "256K")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child.id());
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut metrics, mut addr) = (None, None);
    while metrics.is_none() || addr.is_none() {
        let line = lines.next().expect("the example ended early").unwrap();
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            metrics = Some(rest.trim_end_matches("/metrics").to_string());
        } else if let Some(rest) = line.strip_prefix(ready_prefix) {
            addr = Some(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    let (metrics, addr) = (metrics.unwrap(), addr.unwrap());
    poke(&addr);
    let want = format!(r#"shardlet_connections_accepted_total{{server="{server_label}",shard="0"}} 1"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = http_get(&metrics, "/metrics");
        if text.lines().any(|l| l == want) {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            assert!(
                text.contains(r#"shardlet_busy_seconds_total{shard="0"}"#),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no {want:?} in\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(http_get(&metrics, "/other").starts_with("HTTP/1.1 404"));
    // A scrape job's query, `HEAD` without a body, other methods, a field
    // value that is not UTF-8 (obs-text), a head past the limit.
    assert!(http_get(&metrics, "/metrics?job=x").starts_with("HTTP/1.1 200"));
    let head = http_request(&metrics, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let post = http_request(&metrics, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let latin1 = http_request(&metrics, b"GET /metrics HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n");
    assert!(latin1.starts_with("HTTP/1.1 200"), "{latin1}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    huge.resize(20 << 10, b'p');
    assert!(http_request(&metrics, &huge).starts_with("HTTP/1.1 431"));
    drop(guard);
    let _ = child.wait();
}

/// Sends SIGTERM (then waits a little and SIGKILLs) when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = self.0.to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
    }
}

#[test]
fn echo_server_serves_metrics() {
    example_serves_metrics("echo_server", "echo", "listening on ", |addr| {
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        client.write_all(b"ping").unwrap();
        let mut echo = [0u8; 4];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"ping");
    });
}

#[test]
fn feed_scraper_serves_metrics() {
    example_serves_metrics(
        "feed_scraper",
        "feed_scraper",
        "feed scraper on http://",
        |addr| {
            let answer = http_get(addr, "/");
            assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
        },
    );
}

/// Two servers exported under one name would give duplicate series, which
/// Prometheus rejects: the exporter refuses the second, naming it.
#[test]
#[should_panic(expected = "a server named \"api\" is already exported")]
fn exporting_two_servers_under_one_name_is_refused() {
    let runtime = Runtime::new(config(1)).unwrap();
    let bind = || Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).unwrap();
    let (first, second) = (bind(), bind());
    let exporter = Exporter::new()
        .with_server("api", &first)
        .with_server("admin", &second);
    let _ = exporter.with_server("api", &second);
}
