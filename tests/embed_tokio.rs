//! `examples/embed_tokio.rs` end to end (issue 11, item 5): a tokio host
//! whose data plane runs on shardlet's shards; the admin endpoint shows the
//! stats and sends work into a shard; SIGTERM stops it cleanly.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn example() -> std::path::PathBuf {
    util::example_binary("embed_tokio")
}

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

/// Kills the child if the test fails before it stopped it.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn tokio_host_with_a_shardlet_data_plane() {
    let mut child = Command::new(example())
        .args(["--addr", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("SHARDLET_SHARDS", "2")
        .env("SHARDLET_PIN", "0")
        .env("SHARDLET_IO_MEMORY", "256K")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reap = Reap(Some(child));
    let data = lines.next().unwrap().unwrap();
    let admin = lines.next().unwrap().unwrap();
    let data = data
        .strip_prefix("data plane on ")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let admin = admin.strip_prefix("admin on http://").unwrap().to_string();

    // The data plane, on the shards.
    let mut client = std::net::TcpStream::connect(&data).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    client.write_all(b"hello shards\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&client).read_line(&mut reply).unwrap();
    assert_eq!(reply, "HELLO SHARDS\n");
    drop(client);

    // Work sent into each shard from a tokio task.
    for shard in 0..2 {
        let answer = http_get(&admin, &format!("/work?shard={shard}&n=100"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&format!("shard {shard}: 4950\n")), "{answer}");
    }
    assert!(http_get(&admin, "/work?shard=7&n=1").starts_with("HTTP/1.1 503"));

    // `n` is bounded: too large, or not a number, is a 400 that names the
    // limit, and the endpoint keeps serving.
    for n in ["10000001", "18446744073709551615", "lots", "-1"] {
        let answer = http_get(&admin, &format!("/work?shard=0&n={n}"));
        assert!(answer.starts_with("HTTP/1.1 400"), "n={n}: {answer}");
        assert!(
            answer.ends_with(&format!(
                "n must be a whole number from 0 to 10000000, got \"{n}\"\n"
            )),
            "n={n}: {answer}"
        );
    }
    let answer = http_get(&admin, "/work?shard=1&n=10000000");
    assert!(answer.ends_with("shard 1: 49999995000000\n"), "{answer}");

    // The stats, read from tokio.
    let stats = http_get(&admin, "/stats");
    assert!(
        stats.contains("shard 0: running=true") && stats.contains("shard 1: running=true"),
        "{stats}"
    );
    let metrics = http_get(&admin, "/metrics");
    let accepted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("shardlet_connections_accepted_total{server=\"upper\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(accepted, 1, "{metrics}");

    // SIGTERM: a clean stop, through the async join.
    let mut child = reap.0.take().unwrap();
    util::sigterm(&child);
    let (status, _) = util::exit_within(&mut child, Duration::from_secs(15), "embed_tokio, after SIGTERM");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{status}: {rest:?}\n{stderr}");
    assert!(
        rest.iter().any(|l| l == "stopped: 1 connections served"),
        "{rest:?}\n{stderr}"
    );
}
