//! A hostile HTTP/2 server for the client tests (`#[path = "util/h2raw.rs"]
//! mod h2raw;`, beside `util/tls.rs` as `mod tls;`): TLS (rustls, ALPN `h2`,
//! `tls::self_signed`) on plain threads, one per connection, and a
//! handler that writes HTTP/2 frames by hand, as a broken or hostile server
//! would (GOAWAY mid-request, resets, endless DATA or CONTINUATION, no
//! SETTINGS, ...). It does not decode HPACK: requests are told apart by
//! their order. Loopback only; every socket has read and write time-outs, so
//! nothing hangs.
#![allow(dead_code)] // each test file uses a different part

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const NO_ERROR: u32 = 0;
pub const REFUSED_STREAM: u32 = 7;

pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 4;

/// One frame as read.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// A request's HEADERS (and CONTINUATIONs), as the server saw them.
#[derive(Debug, Clone, Copy)]
pub struct Req {
    pub stream: u32,
    /// The request has no body (END_STREAM on its HEADERS).
    pub ended: bool,
}

/// One server connection, after the TLS handshake.
pub struct H2Conn {
    io: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    /// Which accepted connection this is (1-based).
    pub conn: usize,
}

impl H2Conn {
    pub fn frame(&mut self) -> io::Result<Frame> {
        let mut head = [0u8; 9];
        self.io.read_exact(&mut head)?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        self.io.read_exact(&mut payload)?;
        Ok(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        })
    }

    pub fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut out = Vec::with_capacity(9 + payload.len());
        out.extend_from_slice(&len[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        self.io.write_all(&out)?;
        self.io.flush()
    }

    /// Reads the client's preface; sends no SETTINGS.
    pub fn preface_only(&mut self) -> io::Result<()> {
        let mut preface = [0u8; 24];
        self.io.read_exact(&mut preface)?;
        if &preface != b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
            return Err(io::Error::other("not an HTTP/2 preface"));
        }
        Ok(())
    }

    /// Reads the client's preface and sends SETTINGS with `settings`.
    pub fn preface(&mut self, settings: &[(u16, u32)]) -> io::Result<()> {
        self.preface_only()?;
        let mut payload = Vec::new();
        for (id, value) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        self.send(SETTINGS, 0, 0, &payload)
    }

    /// Reads frames (acknowledging SETTINGS and PING) up to the next
    /// request's HEADERS and their CONTINUATIONs.
    pub fn request(&mut self) -> io::Result<Req> {
        loop {
            let f = self.frame()?;
            match f.kind {
                SETTINGS if f.flags & ACK == 0 => self.send(SETTINGS, ACK, 0, &[])?,
                PING if f.flags & ACK == 0 => self.send(PING, ACK, 0, &f.payload)?,
                HEADERS => {
                    let req = Req {
                        stream: f.stream,
                        ended: f.flags & END_STREAM != 0,
                    };
                    let mut done = f.flags & END_HEADERS != 0;
                    while !done {
                        done = self.frame()?.flags & END_HEADERS != 0;
                    }
                    return Ok(req);
                }
                _ => {}
            }
        }
    }

    /// Reads the DATA of `stream` up to its END_STREAM; returns its length.
    pub fn body(&mut self, stream: u32) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let f = self.frame()?;
            match f.kind {
                SETTINGS if f.flags & ACK == 0 => self.send(SETTINGS, ACK, 0, &[])?,
                PING if f.flags & ACK == 0 => self.send(PING, ACK, 0, &f.payload)?,
                DATA if f.stream == stream => {
                    total += f.payload.len();
                    if !f.payload.is_empty() {
                        // Give the window back, stream and connection.
                        let n = (f.payload.len() as u32).to_be_bytes();
                        self.send(WINDOW_UPDATE, 0, 0, &n)?;
                        self.send(WINDOW_UPDATE, 0, stream, &n)?;
                    }
                    if f.flags & END_STREAM != 0 {
                        return Ok(total);
                    }
                }
                _ => {}
            }
        }
    }

    /// A response head: `status` and `fields`, in a HEADERS frame (and
    /// CONTINUATIONs, when long).
    pub fn head(&mut self, stream: u32, status: u16, fields: &[(&str, &str)], end: bool) -> io::Result<()> {
        let mut block = Vec::new();
        literal(&mut block, ":status", &status.to_string());
        for (name, value) in fields {
            literal(&mut block, name, value);
        }
        // In pieces of at most 16 KiB, the smallest frame size a peer takes.
        let mut pieces = block.chunks(16 << 10).peekable();
        let mut kind = HEADERS;
        let mut flags = if end { END_STREAM } else { 0 };
        while let Some(piece) = pieces.next() {
            let last = if pieces.peek().is_none() { END_HEADERS } else { 0 };
            self.send(kind, flags | last, stream, piece)?;
            (kind, flags) = (CONTINUATION, 0);
        }
        Ok(())
    }

    /// A whole response: a head and `body` in one DATA frame.
    pub fn respond(&mut self, stream: u32, status: u16, body: &[u8]) -> io::Result<()> {
        self.head(stream, status, &[], false)?;
        self.send(DATA, END_STREAM, stream, body)
    }

    pub fn goaway(&mut self, last: u32, code: u32) -> io::Result<()> {
        let mut payload = last.to_be_bytes().to_vec();
        payload.extend_from_slice(&code.to_be_bytes());
        self.send(GOAWAY, 0, 0, &payload)
    }

    pub fn reset(&mut self, stream: u32, code: u32) -> io::Result<()> {
        self.send(RST_STREAM, 0, stream, &code.to_be_bytes())
    }

    /// Waits (at most the socket's time-out) for the client to close.
    pub fn drain(&mut self) {
        while self.frame().is_ok() {}
    }
}

/// HPACK: a literal field without indexing, a new name, no Huffman coding.
pub fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0);
    integer(block, 7, 0, name.len());
    block.extend_from_slice(name.as_bytes());
    integer(block, 7, 0, value.len());
    block.extend_from_slice(value.as_bytes());
}

/// HPACK's integer with an `n`-bit prefix (RFC 7541 §5.1).
fn integer(block: &mut Vec<u8>, n: u32, first: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        block.push(first | value as u8);
        return;
    }
    block.push(first | max as u8);
    value -= max;
    while value >= 128 {
        block.push((value % 128 + 128) as u8);
        value /= 128;
    }
    block.push(value as u8);
}

type Handler = dyn Fn(&mut H2Conn) -> io::Result<()> + Send + Sync;

/// A running server; stops accepting when dropped.
pub struct H2Server {
    pub addr: SocketAddr,
    /// The certificate (DER) to trust.
    pub cert: Vec<u8>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl H2Server {
    /// Serves each connection with `handler`, on a thread of its own.
    pub fn start<H>(handler: H) -> H2Server
    where
        H: Fn(&mut H2Conn) -> io::Result<()> + Send + Sync + 'static,
    {
        let (config, cert) = crate::tls::self_signed(&[b"h2"]);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let conn = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    let (handler, config) = (handler.clone(), config.clone());
                    std::thread::spawn(move || {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
                        let _ = stream.set_nodelay(true);
                        let Ok(tls) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let mut conn = H2Conn {
                            io: rustls::StreamOwned::new(tls, stream),
                            conn,
                        };
                        let _ = handler(&mut conn);
                    });
                }
            })
        };
        H2Server {
            addr,
            cert,
            accepted,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}
