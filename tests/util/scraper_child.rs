//! The feed scraper example as a child process (`#[path = "util/scraper_child.rs"]
//! mod scraper_child;`, beside `mod util;`): its memory is measured apart from the test's, it
//! gets real signals, and the tests that drive it speak only HTTP on raw
//! sockets, so they run unchanged against any version of the server.
#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The feed scraper's binary, built first (`util::example_binary`), or
/// the one `FEED_SCRAPER_BIN` names: how the regression tests were run
/// against the code before the fix.
pub fn binary() -> PathBuf {
    match std::env::var_os("FEED_SCRAPER_BIN") {
        Some(other) => PathBuf::from(other),
        None => crate::util::example_binary("feed_scraper"),
    }
}

/// A running feed scraper; killed when dropped.
pub struct Scraper {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Scraper {
    /// Starts the scraper on a loopback port it picks (port 0) with `args`,
    /// one unpinned shard (unless `env` says otherwise), and waits until it
    /// listens. Not a port found free first: another test of the binary
    /// could take it before the child binds it.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Scraper {
        let mut command = Command::new(binary());
        command
            .arg("--addr")
            .arg("127.0.0.1:0")
            .args(args)
            .env("SHARDLET_SHARDS", "1")
            .env("SHARDLET_PIN", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start the feed scraper");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        // Its line "feed scraper on http://ADDR ..." (other lines, such as
        // "metrics on ...", may come first).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let addr: SocketAddr = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("the feed scraper says where it listens");
            if let Some(rest) = line.strip_prefix("feed scraper on http://") {
                let addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                break addr.unwrap_or_else(|| panic!("no address in {line:?}"));
            }
        };
        Scraper { child, addr }
    }

    /// The child's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// A new connection with a read timeout.
    pub fn connect(&self, read_timeout: Duration) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).expect("connect");
        stream.set_read_timeout(Some(read_timeout)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, fields (names lowercase), body as text.
pub type Reply = (u16, Vec<(String, String)>, String);

/// Reads one response head and its `Content-Length` body. `Err` when the
/// connection ends or times out first.
pub fn read_reply(stream: &mut TcpStream) -> std::io::Result<Reply> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut fields = Vec::new();
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some((name, value)) = field.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, fields, String::from_utf8_lossy(&body).into_owned()))
}

/// Whether the server closed `stream` (EOF or reset) within `within`,
/// reading nothing else first.
pub fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

/// Writes `bytes`, ignoring a peer that already closed.
pub fn send(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    stream.write_all(bytes).is_ok()
}
