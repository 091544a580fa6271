//! The server's per-shard figures, read from its Prometheus endpoint
//! (`--server-metrics`, shardlet's `echo_server --metrics-addr`).
//!
//! Contract with `monitor.rs`: it calls [`fetch`] at the two edges of the
//! measured window and [`figures`] on the pair. Connections come from
//! `shardlet_connections_accepted_total` and `shardlet_connections_live`
//! (at the window's end), the busy share of each shard from
//! `shardlet_busy_seconds_total` over the window; every series carries a
//! `shard="N"` label.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One server shard over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShardFigures {
    pub shard: u32,
    /// Connections the shard accepted since the server started.
    pub accepted: u64,
    /// Connections open on the shard at the window's end.
    pub live: u64,
    /// The shard's busy time over the window, percent of one CPU (the
    /// runtime's own account: time in task polls and the driver).
    pub busy_percent: Option<f64>,
}

/// `metric -> shard -> value`, from one scrape.
pub type Samples = BTreeMap<String, BTreeMap<u32, f64>>;

/// Reads `http://ADDR/metrics` (a plain HTTP/1.0 GET, 2 s at most).
pub fn fetch(addr: SocketAddr) -> Result<Samples, String> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("{addr}: {e}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok(parse(body))
}

/// The per-shard series of a Prometheus text exposition (lines without a
/// `shard` label are left out).
pub fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let shard = labels
            .trim_end_matches('}')
            .split(',')
            .find_map(|l| l.strip_prefix("shard=\"")?.strip_suffix('"')?.parse::<u32>().ok());
        if let Some(shard) = shard {
            samples.entry(name.to_string()).or_default().insert(shard, value);
        }
    }
    samples
}

/// Each shard's figures from scrapes at the window's edges, `seconds` apart.
pub fn figures(before: &Samples, after: &Samples, seconds: f64) -> Vec<ShardFigures> {
    let get = |s: &Samples, name: &str, shard: u32| s.get(name).and_then(|m| m.get(&shard)).copied();
    let accepted = "shardlet_connections_accepted_total";
    let Some(shards) = after.get(accepted) else {
        return Vec::new();
    };
    shards
        .keys()
        .map(|&shard| {
            let busy = "shardlet_busy_seconds_total";
            let busy_percent = match (get(before, busy, shard), get(after, busy, shard)) {
                (Some(a), Some(b)) if seconds > 0.0 => Some((b - a).max(0.0) / seconds * 100.0),
                _ => None,
            };
            ShardFigures {
                shard,
                accepted: get(after, accepted, shard).unwrap_or(0.0) as u64,
                live: get(after, "shardlet_connections_live", shard).unwrap_or(0.0) as u64,
                busy_percent,
            }
        })
        .collect()
}
