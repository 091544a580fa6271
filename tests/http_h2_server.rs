//! `http::Server` over HTTP/2 (h2c, prior knowledge) against hostile
//! clients written frame by frame: clients that ignore a GOAWAY (and the
//! PING hyper sends with it) while a stop or an eviction waits for them,
//! a client that grants a large window and reads nothing, and the
//! stream-reset floods hyper and h2 are configured against.

#[path = "util/http.rs"]
mod http_util;
#[path = "util/net.rs"]
mod net_util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{stream, StreamExt};
use http::{Request, Response};
use http_body::Frame as BodyFrame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use http_util::{start_http_with, HttpRunning};
use shardlet::http::server::{Body, Limits};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 1;
const WINDOW_UPDATE: u8 = 8;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const DATA: u8 = 0;
const PING: u8 = 6;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const REFUSED_STREAM: u32 = 7;
const ENHANCE_YOUR_CALM: u32 = 11;

/// `/slow` answers after this long; anything else at once.
const SLOW: Duration = Duration::from_secs(4);

/// Handlers started for `/reset`.
static RESET_HANDLERS: AtomicUsize = AtomicUsize::new(0);
/// Pieces of `/stream` answers taken by the server so far.
static STREAMED: AtomicUsize = AtomicUsize::new(0);
/// Pieces of `/budget` answers (as `/stream`'s) taken by the server so far.
static BUDGETED: AtomicUsize = AtomicUsize::new(0);
/// `/stream` answers in pieces of this size, 1 MiB in all.
const PIECE: usize = 16 << 10;

/// The length of a `/big` answer: more than a stream's default window.
const BIG: usize = 100 << 10;

type Answer = Response<UnsyncBoxBody<Bytes, std::io::Error>>;

async fn route(request: Request<Body>) -> Answer {
    match request.uri().path() {
        "/slow" => shardlet::sleep(SLOW).await,
        "/reset" => {
            RESET_HANDLERS.fetch_add(1, Ordering::SeqCst);
            shardlet::sleep(SLOW).await;
        }
        "/stream" => {
            let pieces = stream::iter(0..(1 << 20) / PIECE).map(|_| {
                STREAMED.fetch_add(1, Ordering::SeqCst);
                Ok(BodyFrame::data(Bytes::from(vec![b's'; PIECE])))
            });
            return Response::new(StreamBody::new(pieces).boxed_unsync());
        }
        "/budget" => {
            let pieces = stream::iter(0..(1 << 20) / PIECE).map(|_| {
                BUDGETED.fetch_add(1, Ordering::SeqCst);
                Ok(BodyFrame::data(Bytes::from(vec![b'b'; PIECE])))
            });
            return Response::new(StreamBody::new(pieces).boxed_unsync());
        }
        // A handler that answers with an interim status as its final one.
        "/early" => {
            let mut answer = Response::new(
                Full::new(Bytes::from_static(b"early\n"))
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            );
            *answer.status_mut() = http::StatusCode::EARLY_HINTS;
            return answer;
        }
        // Reads nothing of its body for a while.
        "/hold" => shardlet::sleep(SLOW).await,
        // Reads its whole body and answers its length.
        "/upload" => {
            let length = match request.into_body().collect().await {
                Ok(body) => body.to_bytes().len().to_string(),
                Err(e) => format!("error: {e}"),
            };
            return Response::new(
                Full::new(Bytes::from(length))
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            );
        }
        "/big" => {
            return Response::new(
                Full::new(Bytes::from(vec![b'b'; BIG]))
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            )
        }
        _ => {}
    }
    Response::new(
        Full::new(Bytes::from_static(b"hello\n"))
            .map_err(|e| match e {})
            .boxed_unsync(),
    )
}

fn start(max_connections: usize) -> HttpRunning {
    start_http_with(
        1,
        Limits::default(),
        |c| c.with_max_connections(max_connections),
        || route,
    )
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// A GET of `path` (HPACK literals that touch no dynamic table).
fn get(stream: u32, path: &str) -> Vec<u8> {
    // :method GET, :scheme http, :authority "x", :path.
    let mut block = vec![0x82, 0x86, 0x01, 1, b'x', 0x04, path.len() as u8];
    block.extend(path.as_bytes());
    frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
}

/// A POST of `path` whose body follows in DATA frames.
fn post(stream: u32, path: &str) -> Vec<u8> {
    // :method POST, :scheme http, :authority "x", :path.
    let mut block = vec![0x83, 0x86, 0x01, 1, b'x', 0x04, path.len() as u8];
    block.extend(path.as_bytes());
    frame(HEADERS, END_HEADERS, stream, &block)
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }

    /// Whether a HEADERS frame is a `:status 200` (HPACK static entry 8).
    fn is_200(&self) -> bool {
        self.kind == HEADERS && self.payload.first() == Some(&0x88)
    }
}

/// A raw HTTP/2 client that acknowledges the server's SETTINGS and nothing
/// else: it never answers a PING.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    next: u32,
    closed: bool,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        stream.write_all(PREFACE).unwrap();
        stream.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            next: 1,
            closed: false,
        }
    }

    /// Opens a stream asking for `path`; its id, or None once the
    /// connection is closed.
    fn open(&mut self, path: &str) -> Option<u32> {
        let id = self.next;
        self.next += 2;
        if self.closed || self.stream.write_all(&get(id, path)).is_err() {
            self.closed = true;
            return None;
        }
        Some(id)
    }

    /// The frames that came within `wait` (less if the connection closes).
    fn frames(&mut self, wait: Duration) -> Vec<Frame> {
        let until = Instant::now() + wait;
        let mut frames = Vec::new();
        let mut data = [0u8; 16 << 10];
        while !self.closed && Instant::now() < until {
            match self.stream.read(&mut data) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&data[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.closed = true,
            }
            while self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (self.buf[3], self.buf[4]);
                let stream = u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff;
                if kind == SETTINGS && flags & 1 == 0 {
                    let _ = self.stream.write_all(&frame(SETTINGS, 1, 0, &[]));
                }
                frames.push(Frame {
                    kind,
                    stream,
                    payload: self.buf[9..9 + len].to_vec(),
                });
                self.buf.drain(..9 + len);
            }
        }
        frames
    }

    /// The frames that came until one satisfies `wanted` (with any read
    /// in the same batch after it), within `limit`: a reader that looks for a fixed time could look too
    /// early on a loaded machine.
    fn frames_until(&mut self, wanted: impl Fn(&Frame) -> bool, limit: Duration) -> Vec<Frame> {
        let until = Instant::now() + limit;
        let mut frames = Vec::new();
        while !self.closed && Instant::now() < until {
            let more = self.frames(Duration::from_millis(20));
            let found = more.iter().position(&wanted);
            frames.extend(more);
            if found.is_some() {
                break;
            }
        }
        frames
    }
}

/// On a stop, a client that never answers the PING of hyper's graceful
/// shutdown (whose final GOAWAY waits for it) and goes on opening streams
/// after the first GOAWAY has [`shardlet::net::EVICTION_GRACE`] to stop:
/// later streams are refused with `REFUSED_STREAM`, the stream in flight
/// still finishes, and the connection closes. Every new stream was served
/// until the drain deadline.
#[test]
fn a_stopping_http2_connection_refuses_streams_its_client_opens_after_the_goaway() {
    let server = start(1000);
    let mut client = Client::connect(server.addr());
    let slow = client.open("/slow").unwrap();
    client.frames(Duration::from_millis(200));
    server.server.stop(Duration::from_secs(30));

    let started = Instant::now();
    let mut goaway = None;
    let mut opened = Vec::new();
    let mut answered = Vec::new();
    let mut refused = Vec::new();
    while !client.closed && started.elapsed() < Duration::from_secs(15) {
        if let Some(id) = client.open("/") {
            opened.push((id, started.elapsed()));
        }
        for frame in client.frames(Duration::from_millis(100)) {
            match frame.kind {
                GOAWAY if goaway.is_none() => goaway = Some(started.elapsed()),
                HEADERS if frame.is_200() => answered.push(frame.stream),
                RST_STREAM if frame.code() == REFUSED_STREAM => refused.push(frame.stream),
                _ => {}
            }
        }
    }
    let goaway = goaway.expect("a GOAWAY came");
    let closed = started.elapsed();
    assert!(
        client.closed,
        "the connection still serves {closed:?} after the stop"
    );
    assert!(answered.contains(&slow), "the stream in flight was answered");
    // A stream opened well after the grace is not served (the connection
    // stays busy with /slow meanwhile, so some are refused).
    let late = Duration::from_secs(2);
    for (id, at) in &opened {
        if *at > goaway + late {
            assert!(
                !answered.contains(id),
                "stream {id}, opened {at:?} after the stop ({goaway:?} the GOAWAY), was served"
            );
        }
    }
    assert!(
        !refused.is_empty(),
        "streams refused: {refused:?}; opened {opened:?}"
    );
    assert!(closed < goaway + SLOW + late, "closed {closed:?} after the stop");
}

/// At the connection cap, connections whose clients ignore the GOAWAY of
/// their eviction and go on making requests (never answering the PING)
/// are closed all the same, and a new client gets in: it waited for as
/// long as they kept at it.
#[test]
fn at_the_connection_cap_http2_clients_that_ignore_the_goaway_are_evicted() {
    let server = start(2);
    let addr = server.addr();
    let mut attackers: Vec<Client> = (0..2).map(|_| Client::connect(addr)).collect();
    for attacker in &mut attackers {
        attacker.open("/").unwrap();
        assert!(attacker
            .frames_until(Frame::is_200, Duration::from_secs(5))
            .iter()
            .any(Frame::is_200));
    }
    let victim = std::thread::spawn(move || {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        (started.elapsed(), answer)
    });
    let started = Instant::now();
    while !victim.is_finished() && started.elapsed() < Duration::from_secs(10) {
        for attacker in &mut attackers {
            attacker.open("/");
            attacker.frames(Duration::from_millis(50));
        }
    }
    let (waited, answer) = victim.join().unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        waited < Duration::from_secs(5),
        "the new client waited {waited:?}"
    );
    assert!(attackers.iter().any(|a| a.closed), "an attacker was closed");
}

/// A client that grants a window as large as can be and reads nothing
/// makes the server take (and hold) at most a few frames of each answer:
/// hyper's default buffered 400 KiB per stream, 40 MB for 100 streams of
/// one connection (80 MB at hyper's 200 streams), until the send timeout.
#[test]
fn a_client_that_reads_nothing_gets_little_of_each_answer_buffered() {
    let server = start(1000);
    let mut client = wide_open(server.addr(), Some(4 << 10), true);
    let streams = 100;
    let gets: Vec<u8> = (0..streams).flat_map(|i| get(1 + 2 * i, "/stream")).collect();
    client.write_all(&gets).unwrap();
    let taken = settled(&STREAMED) * PIECE;
    // Four frames a stream and a piece or two in hand, plus what the
    // sockets hold (about 11 MB here; 45 MB with hyper's default).
    let bound = streams as usize * (96 << 10) + (8 << 20);
    assert!(taken > 0, "nothing was streamed");
    assert!(
        taken <= bound,
        "{taken} bytes taken for a client that reads nothing (bound {bound})"
    );
}

/// A connection that grants the server the largest flow-control windows
/// (each stream's and the connection's), with a receive buffer of
/// `recv_buffer` bytes if given. A client that reads nothing acknowledges
/// the server's SETTINGS blindly (`ack`); a [`Client`] does as they come.
fn wide_open(addr: SocketAddr, recv_buffer: Option<usize>, ack: bool) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let mut client = TcpStream::from(socket);
    let max = 0x7fff_ffffu32;
    let mut hello = PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = max; the connection's window to max.
    hello.extend(frame(SETTINGS, 0, 0, &[&[0, 4][..], &max.to_be_bytes()].concat()));
    hello.extend(frame(WINDOW_UPDATE, 0, 0, &(max - 65_535).to_be_bytes()));
    client.write_all(&hello).unwrap();
    if ack {
        std::thread::sleep(Duration::from_millis(100));
        client.write_all(&frame(SETTINGS, 1, 0, &[])).unwrap();
    }
    client
}

/// `counter` once it has stood still for a second with `ready` true of
/// it (the server has taken what it will), within 30 s.
fn still(counter: &AtomicUsize, ready: impl Fn(usize) -> bool) -> usize {
    let (mut last, mut still) = (counter.load(Ordering::SeqCst), 0);
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        let now = counter.load(Ordering::SeqCst);
        still = if now == last && ready(now) { still + 1 } else { 0 };
        if still == 10 {
            break;
        }
        last = now;
    }
    last
}

/// `counter` once it has moved past `from` and stopped.
fn settled_from(counter: &AtomicUsize, from: usize) -> usize {
    still(counter, |now| now > from)
}

fn settled(counter: &AtomicUsize) -> usize {
    settled_from(counter, 0)
}

/// `counter` once it has not moved for a second.
fn quiet(counter: &AtomicUsize) -> usize {
    still(counter, |_| true)
}

/// Bytes the kernel holds of what the server sent on the connections
/// from `clients` (loopback, IPv4): queued in the server's sockets, and
/// received unread in the clients' (`/proc/net/tcp`'s tx_queue and
/// rx_queue). What the server took from its handlers and the kernel does
/// not hold is in the server's memory.
fn kernel_holds(server: SocketAddr, clients: &[&TcpStream]) -> usize {
    let ports: Vec<u16> = clients.iter().map(|c| c.local_addr().unwrap().port()).collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |address: &str| u16::from_str_radix(address.rsplit(':').next().unwrap(), 16).unwrap();
    let queue =
        |queues: &str, at: usize| usize::from_str_radix(queues.split(':').nth(at).unwrap(), 16).unwrap();
    table
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote) = (port(fields[1]), port(fields[2]));
            if local == server.port() && ports.contains(&remote) {
                queue(fields[4], 0)
            } else if ports.contains(&local) && remote == server.port() {
                queue(fields[4], 1)
            } else {
                0
            }
        })
        .sum()
}

/// A [`Client`] on a [`wide_open`] connection: it reads what comes.
fn reader(addr: SocketAddr) -> Client {
    let stream = wide_open(addr, None, false);
    stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    Client {
        stream,
        buf: Vec::new(),
        next: 1,
        closed: false,
    }
}

/// Reads until every stream of `ids` has had 1 MiB of DATA, within 30 s;
/// the bytes each got.
fn read_whole(client: &mut Client, ids: &[u32]) -> std::collections::HashMap<u32, usize> {
    let mut got = std::collections::HashMap::<u32, usize>::new();
    let until = Instant::now() + Duration::from_secs(30);
    let done =
        |got: &std::collections::HashMap<u32, usize>| ids.iter().all(|id| got.get(id) == Some(&(1 << 20)));
    while !done(&got) && !client.closed && Instant::now() < until {
        for f in client.frames(Duration::from_millis(50)) {
            if f.kind == DATA && ids.contains(&f.stream) {
                *got.entry(f.stream).or_default() += f.payload.len();
            }
        }
    }
    got
}

/// Clients that grant large windows and read nothing make the server take
/// answers only up to its shard's budget and each connection's 64 KiB
/// allowance. With no limit across connections, 8 connections of 128
/// streams had the server hold 84 MB of answers (64 KiB a stream, and a
/// frame in hand), 8.3 MB with a budget of 8 MiB. While they hold the
/// budget, a client that reads still gets its answers whole, also after
/// it reset streams whose bytes the server held (h2 drops them, and they
/// must not count against the connection for good: they kept its next
/// answers waiting until the budget freed); once they leave, the budget is
/// free again.
#[test]
fn slow_readers_hold_no_more_than_the_shards_answer_budget() {
    const BUDGET: usize = 8 << 20;
    const ALLOWANCE: usize = 64 << 10;
    const CONNS: usize = 8;
    const STREAMS: u32 = 128;
    let server = start_http_with(
        1,
        Limits::default().with_answer_budget(BUDGET as u64),
        |c| c.with_max_connections(1000),
        || route,
    );
    // A client asks for 8 answers (more than the sockets take), reads
    // nothing for a while, and cancels them: the server held 64 KiB of
    // each, which h2 drops.
    let mut client = reader(server.addr());
    let cancelled: Vec<u32> = (0..8).map(|_| client.open("/budget").unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let resets: Vec<u8> = cancelled
        .iter()
        .flat_map(|&id| frame(RST_STREAM, 0, id, &8u32.to_be_bytes()))
        .collect();
    client.stream.write_all(&resets).unwrap();

    let recv_buffer = 4 << 10;
    let attack = |addr| {
        let mut client = wide_open(addr, Some(recv_buffer), true);
        let gets: Vec<u8> = (0..STREAMS).flat_map(|i| get(1 + 2 * i, "/budget")).collect();
        client.write_all(&gets).unwrap();
        client
    };
    let before = settled(&BUDGETED);
    let attackers: Vec<TcpStream> = (0..CONNS).map(|_| attack(server.addr())).collect();
    let taken = (settled_from(&BUDGETED, before) - before) * PIECE;
    let in_kernel = kernel_holds(server.addr(), &attackers.iter().collect::<Vec<_>>());
    let held = taken.saturating_sub(in_kernel);
    // The budget, a frame past it, each connection's allowance and a
    // frame, and 64 KiB for the frame headers in the kernel's count.
    let bound = BUDGET + PIECE + CONNS * (ALLOWANCE + PIECE) + (64 << 10);
    eprintln!("{taken} bytes taken, {in_kernel} in the kernel, {held} held by the server (bound {bound})");
    assert!(held > BUDGET / 2, "the server held only {held} bytes");
    assert!(
        held <= bound,
        "the server held {held} bytes for clients that read nothing (bound {bound})"
    );

    // While they hold the budget, the client that cancelled gets its next
    // answers whole (what it cancelled is read and dropped on the way).
    let ids: Vec<u32> = (0..4).map(|_| client.open("/budget").unwrap()).collect();
    let got = read_whole(&mut client, &ids);
    for id in ids {
        assert_eq!(got.get(&id).copied(), Some(1 << 20), "stream {id}: {got:?}");
    }

    // The attackers leave: what they held is given back, and one new
    // connection that reads nothing gets to hold the budget's worth again,
    // where with the budget still counted it would get its allowance only.
    // (Tried again for up to 10 s, while the server notices they left.)
    drop(attackers);
    let until = Instant::now() + Duration::from_secs(10);
    let held = loop {
        // The streams of the connections that left may take a frame or two
        // before they find their connection gone: not this one's.
        let before = quiet(&BUDGETED);
        let again = attack(server.addr());
        let taken = (settled_from(&BUDGETED, before) - before) * PIECE;
        let held = taken.saturating_sub(kernel_holds(server.addr(), &[&again]));
        eprintln!("{taken} bytes taken, {held} held, for one connection after the others left");
        if held > BUDGET / 2 || Instant::now() > until {
            break held;
        }
    };
    assert!(
        held > BUDGET / 2,
        "{held} bytes held once the budget's holders left: it was not given back"
    );
}

/// A client whose windows are shut and that cancels an answer the server
/// holds whole (one frame of 100 KiB, past the budget of 64 KiB) leaves
/// that answer counted: h2 drops it, but the answer had ended, so nothing
/// gives it back. The shard then stays closed, and the client's next
/// answer waits on a count that cannot fall. Such a wait counts as a held
/// answer: with no progress for the send timeout, the connection is
/// closed (and its count given back), where before it waited for good.
#[test]
fn an_http2_answer_waiting_on_a_count_that_cannot_fall_closes_its_connection_after_the_send_timeout() {
    let server = start_http_with(
        1,
        Limits::default()
            .with_answer_budget(64 << 10)
            .with_send_timeout(Duration::from_secs(2)),
        |c| c,
        || route,
    );
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    stream.write_all(PREFACE).unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = 0: no stream may be sent anything.
    stream
        .write_all(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]))
        .unwrap();
    let mut client = Client {
        stream,
        buf: Vec::new(),
        next: 1,
        closed: false,
    };
    let first = client.open("/big").unwrap();
    let head = client.frames_until(|f| f.kind == HEADERS && f.stream == first, Duration::from_secs(5));
    assert!(head.iter().any(Frame::is_200), "no answer head: {head:?}");
    std::thread::sleep(Duration::from_millis(200));
    client
        .stream
        .write_all(&frame(RST_STREAM, 0, first, &8u32.to_be_bytes()))
        .unwrap();
    let next = client.open("/big").unwrap();
    let started = Instant::now();
    let frames = client.frames_until(|f| f.kind == GOAWAY, Duration::from_secs(8));
    let waited = started.elapsed();
    assert!(
        client.closed || frames.iter().any(|f| f.kind == GOAWAY),
        "the connection was still open {waited:?} after its answer began to wait"
    );
    assert!(
        !frames.iter().any(|f| f.kind == DATA && f.stream == next),
        "the next answer was sent: its wait was not what this test sets up"
    );
    assert!(
        waited >= Duration::from_millis(1500),
        "closed after {waited:?}, before the send timeout"
    );
}

/// A client that opens its streams' windows one byte at a time keeps
/// their answers held, and writes going through (as do the PINGs it sends,
/// acknowledged), but takes next to nothing: closed after the send timeout
/// like one that takes nothing.
/// Before: any frame or write counted as progress, and 1-byte
/// WINDOW_UPDATEs kept every stream's buffered answer for good (about 9 MB
/// a connection at hyper's 200 streams, for some 100 bytes a second).
#[test]
fn a_client_that_opens_its_windows_a_byte_at_a_time_is_closed_after_the_send_timeout() {
    let server = start_http_with(
        1,
        Limits::default().with_send_timeout(Duration::from_secs(1)),
        |c| c,
        || route,
    );
    let mut client = Client::connect(server.addr());
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = 0: nothing of an answer goes out
    // until a WINDOW_UPDATE lets it.
    client
        .stream
        .write_all(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]))
        .unwrap();
    let streams: Vec<u32> = (0..8).map(|i| 1 + 2 * i).collect();
    for &s in &streams {
        client.stream.write_all(&get(s, "/stream")).unwrap();
    }
    let started = Instant::now();
    let mut round = 0u64;
    while !client.closed && started.elapsed() < Duration::from_secs(8) {
        // 1-byte windows, and PINGs, whose acknowledgements are writes
        // that go through too.
        let mut out = Vec::new();
        for &s in &streams {
            out.extend(frame(WINDOW_UPDATE, 0, s, &1u32.to_be_bytes()));
        }
        for _ in 0..25 {
            round += 1;
            out.extend(frame(PING, 0, 0, &round.to_be_bytes()));
        }
        let _ = client.stream.write_all(&out);
        client.frames(Duration::from_millis(20));
    }
    assert!(
        client.closed,
        "still open after {:?} of 1-byte windows",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The server lets a client open 128 streams at once (nginx's
/// `http2_max_concurrent_streams`; hyper's default is 200).
#[test]
fn the_server_allows_128_concurrent_streams() {
    let server = start(1000);
    let mut client = Client::connect(server.addr());
    let theirs = |f: &Frame| f.kind == SETTINGS && f.stream == 0 && !f.payload.is_empty();
    let settings = client
        .frames_until(theirs, Duration::from_secs(5))
        .into_iter()
        .find(theirs)
        .expect("the server's SETTINGS");
    let values: Vec<(u16, u32)> = settings
        .payload
        .chunks(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    assert!(values.contains(&(3, 128)), "{values:?}");
}

/// A request past a limit is answered with its 4xx and ends its stream
/// only: the connection serves the next one.
#[test]
fn a_4xx_ends_only_its_stream() {
    let server = start_http_with(1, Limits::default().with_max_body(1000), |c| c, || route);
    let mut client = Client::connect(server.addr());
    // POST / with `content-length: 5000` (HPACK: :method POST, then
    // content-length, static entry 28, as a literal), no body yet.
    let mut block = vec![0x83, 0x86, 0x84, 0x01, 1, b'x', 0x0f, 0x0d, 4];
    block.extend(b"5000");
    client
        .stream
        .write_all(&frame(HEADERS, END_HEADERS, 1, &block))
        .unwrap();
    let mut status = None;
    let started = Instant::now();
    while status.is_none() && started.elapsed() < Duration::from_secs(10) {
        status = client
            .frames(Duration::from_millis(50))
            .into_iter()
            .find(|f| f.kind == HEADERS && f.stream == 1)
            .map(|f| f.payload);
    }
    // :status 413: a literal of static entry 8 (indexed or not), its value
    // Huffman-coded (hyper's way: `4` 011010, `1` 00001, `3` 011001, then
    // EOS padding) or plain.
    let status = status.expect("an answer");
    assert!(
        [0x48, 0x08].contains(&status[0])
            && [&[0x83, 0x68, 0x2c, 0xff][..], &[3, b'4', b'1', b'3'][..]].contains(&&status[1..5]),
        "{status:x?}"
    );
    client.next = 3;
    assert_serves_on(&mut client, started);
}

/// A handler's 1xx (here 103 Early Hints) cannot be a final answer (RFC
/// 9110 §15.2: a 1xx is interim, the final answer still to come; RFC 9113
/// §8.1): it is a 500, as a 101 is, and the connection serves on. Before:
/// the 103 went out as the stream's only HEADERS, then its body, and the
/// client never got a final answer.
#[test]
fn a_handlers_1xx_is_a_500_on_http2() {
    let server = start(100);
    let mut client = Client::connect(server.addr());
    let early = client.open("/early").unwrap();
    let started = Instant::now();
    assert_answered_500(&mut client, early, started);
    assert_serves_on(&mut client, started);
}

/// A handler whose `call` panics (the closure's own code, before the
/// future it returns) answers its stream with a 500, and the connection
/// and its other streams serve on. Before, the panic ran on the
/// connection's task and ended every stream of the connection.
#[test]
fn a_panic_in_a_handlers_call_is_a_500_on_http2() {
    let server = start_http_with(
        1,
        Limits::default(),
        |c| c,
        || {
            |request: Request<Body>| {
                if request.uri().path() == "/panic-in-call" {
                    panic!("this handler's call panics on purpose");
                }
                route(request)
            }
        },
    );
    let mut client = Client::connect(server.addr());
    let slow = client.open("/slow").unwrap();
    let panics = client.open("/panic-in-call").unwrap();
    let started = Instant::now();
    assert_answered_500(&mut client, panics, started);
    // The stream opened before it is still served.
    let mut slow_answered = false;
    while !slow_answered && !client.closed && started.elapsed() < SLOW + Duration::from_secs(10) {
        slow_answered = client
            .frames(Duration::from_millis(50))
            .iter()
            .any(|f| f.stream == slow && f.kind == HEADERS);
    }
    assert!(
        slow_answered,
        "the other stream's answer (closed: {})",
        client.closed
    );
    assert_serves_on(&mut client, started);
}

/// `stream`'s first answer head (within 10 s of `started`) is `:status 500`
/// (HPACK static entry 14, indexed).
fn assert_answered_500(client: &mut Client, stream: u32, started: Instant) {
    let mut heads = Vec::new();
    let mut reset = false;
    while heads.is_empty() && !reset && !client.closed && started.elapsed() < Duration::from_secs(10) {
        for f in client.frames(Duration::from_millis(50)) {
            if f.stream == stream {
                reset |= f.kind == RST_STREAM;
                if f.kind == HEADERS {
                    heads.push(f.payload);
                }
            }
        }
    }
    assert_eq!(
        heads.first().and_then(|h| h.first()),
        Some(&0x8e),
        "the first answer head (reset: {reset}, closed: {}): {heads:x?}",
        client.closed
    );
}

/// The connection answers a new request with a 200 (within 10 s of `started`).
fn assert_serves_on(client: &mut Client, started: Instant) {
    let next = client.open("/").unwrap();
    let mut answered = false;
    while !answered && !client.closed && started.elapsed() < Duration::from_secs(10) {
        answered = client
            .frames(Duration::from_millis(50))
            .iter()
            .any(|f| f.stream == next && f.is_200());
    }
    assert!(answered, "the connection serves on");
}

/// `Limits::max_requests` holds on HTTP/2 too: the connection's last
/// request is followed by a GOAWAY, and streams beyond it are refused
/// (`REFUSED_STREAM`, to retry elsewhere), not served. (hyper drops the
/// `Connection: close` that ends an HTTP/1 connection: every stream was
/// served.)
#[test]
fn max_requests_holds_on_http2() {
    let limits = Limits::default().with_max_requests(3);
    let server = start_http_with(1, limits, |c| c, || route);
    let mut client = Client::connect(server.addr());
    let mut answered = Vec::new();
    let mut refused = Vec::new();
    let mut goaway = false;
    for _ in 0..6 {
        let Some(id) = client.open("/") else { break };
        let started = Instant::now();
        while !client.closed
            && started.elapsed() < Duration::from_secs(5)
            && !answered.contains(&id)
            && !refused.contains(&id)
        {
            for frame in client.frames(Duration::from_millis(20)) {
                match frame.kind {
                    GOAWAY => goaway = true,
                    HEADERS if frame.is_200() => answered.push(frame.stream),
                    RST_STREAM if frame.code() == REFUSED_STREAM => refused.push(frame.stream),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(answered, [1, 3, 5], "refused: {refused:?}");
    assert!(goaway, "a GOAWAY after the last request");
}

/// Rapid reset (CVE-2023-44487): streams opened and reset at once, by the
/// thousand, end in a GOAWAY `ENHANCE_YOUR_CALM` (h2's bound on streams
/// reset before they are accepted, which hyper keeps), not in a handler
/// started for each.
#[test]
fn rapid_reset_ends_in_goaway() {
    let server = start(1000);
    let mut client = Client::connect(server.addr());
    client.frames(Duration::from_millis(100));
    let mut burst = Vec::new();
    let cancel = 8u32.to_be_bytes();
    for i in 0..1000u32 {
        let id = 1 + 2 * i;
        burst.extend(get(id, "/reset"));
        burst.extend(frame(RST_STREAM, 0, id, &cancel));
    }
    let _ = client.stream.write_all(&burst);
    let mut goaway = None;
    let started = Instant::now();
    while !client.closed && started.elapsed() < Duration::from_secs(10) {
        goaway = goaway.or(client
            .frames(Duration::from_millis(100))
            .into_iter()
            .find(|f| f.kind == GOAWAY));
    }
    let goaway = goaway.expect("a GOAWAY");
    assert_eq!(goaway.code(), ENHANCE_YOUR_CALM);
    assert!(client.closed);
    let started = RESET_HANDLERS.load(Ordering::SeqCst);
    assert!(started < 100, "{started} handlers started for 1000 streams reset");
}

/// The connection's last request (`max_requests`) on HTTP/2 is answered
/// whole, however slowly its client reads: its answer's tail, handed to
/// hyper whole but held back by the client's flow-control window, must
/// reach the client once it grants more window. The client here answers
/// every PING, as a well-behaved one does.
///
/// Before: an HTTP/2 connection is Idle once hyper has taken each answer
/// whole, though h2 may still hold its tail for the client's window, and an
/// Idle connection was closed `EVICTION_GRACE` after its GOAWAY, cutting
/// that tail off (65,535 of 102,400 bytes arrived).
#[test]
fn the_last_answer_under_max_requests_reaches_a_slow_reader_whole() {
    let limits = Limits::default().with_max_requests(1);
    let server = start_http_with(1, limits, |c| c, || route);
    let mut client = Client::connect(server.addr());
    client.open("/big").unwrap();
    let mut data = 0usize;
    let mut ended = false;
    let started = Instant::now();
    let mut granted = false;
    while !client.closed && !ended && started.elapsed() < Duration::from_secs(10) {
        for frame in client.frames(Duration::from_millis(50)) {
            match frame.kind {
                PING if frame.stream == 0 => {
                    let _ = client.stream.write_all(&self::frame(PING, 1, 0, &frame.payload));
                }
                DATA if frame.stream == 1 => {
                    data += frame.payload.len();
                }
                _ => {}
            }
        }
        // A slow reader: it grants more window only after a while.
        if !granted && started.elapsed() > Duration::from_secs(2) {
            granted = true;
            let more = (BIG as u32).to_be_bytes();
            let _ = client.stream.write_all(&frame(WINDOW_UPDATE, 0, 0, &more));
            let _ = client.stream.write_all(&frame(WINDOW_UPDATE, 0, 1, &more));
        }
        ended = data >= BIG;
    }
    assert_eq!(
        data,
        BIG,
        "bytes of the answer received before the connection closed ({:?})",
        started.elapsed()
    );
}

/// The flow-control windows a client may send DATA into, as the server
/// opens them (SETTINGS_INITIAL_WINDOW_SIZE and WINDOW_UPDATE frames).
struct Windows {
    connection: i64,
    /// A new stream's window.
    initial: i64,
    /// The window of the stream being sent on.
    stream: i64,
}

impl Windows {
    fn new() -> Windows {
        Windows {
            connection: 65_535,
            initial: 65_535,
            stream: 65_535,
        }
    }

    /// Takes in what `frames` open for `stream`.
    fn update(&mut self, frames: &[Frame], stream: u32) {
        for frame in frames {
            match frame.kind {
                SETTINGS => {
                    for setting in frame.payload.chunks_exact(6) {
                        if setting[..2] == [0, 4] {
                            let initial = u32::from_be_bytes(setting[2..].try_into().unwrap()) as i64;
                            self.stream += initial - self.initial;
                            self.initial = initial;
                        }
                    }
                }
                WINDOW_UPDATE => {
                    let more =
                        (u32::from_be_bytes(frame.payload[..4].try_into().unwrap()) & 0x7fff_ffff) as i64;
                    if frame.stream == 0 {
                        self.connection += more;
                    } else if frame.stream == stream {
                        self.stream += more;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Sends up to `bytes` of body on `stream` (ending it with the last piece)
/// as fast as the server's `windows` let it, for `within` at most; returns
/// how much went, and the frames read meanwhile.
fn upload(
    client: &mut Client,
    windows: &mut Windows,
    stream: u32,
    bytes: usize,
    within: Duration,
) -> (usize, Vec<Frame>) {
    let started = Instant::now();
    windows.stream = windows.initial;
    let mut seen = Vec::new();
    let mut sent = 0;
    while sent < bytes && !client.closed && started.elapsed() < within {
        let frames = client.frames(Duration::from_millis(20));
        windows.update(&frames, stream);
        seen.extend(frames);
        let room = windows.connection.min(windows.stream).max(0) as usize;
        let piece = room.min(16 << 10).min(bytes - sent);
        if piece == 0 {
            continue;
        }
        let flags = if sent + piece == bytes { END_STREAM } else { 0 };
        if client
            .stream
            .write_all(&frame(DATA, flags, stream, &vec![b'u'; piece]))
            .is_err()
        {
            client.closed = true;
            break;
        }
        sent += piece;
        windows.connection -= piece as i64;
        windows.stream -= piece as i64;
    }
    (sent, seen)
}

/// A handler that has not read its body yet gets at most the protocol's
/// initial window of it (64 KiB) buffered in the server, for the stream and
/// for the connection: hyper's default windows (1 MiB each) let a client
/// park 1 MiB per connection (1,000 connections: a shard past 1 GiB),
/// where HTTP/1 leaves the bytes in the socket.
#[test]
fn a_handler_that_reads_no_body_yet_gets_little_of_it_buffered() {
    let server = start(1000);
    let mut client = Client::connect(server.addr());
    let mut windows = Windows::new();
    client.stream.write_all(&post(1, "/hold")).unwrap();
    let (sent, _) = upload(&mut client, &mut windows, 1, 1 << 20, Duration::from_millis(1500));
    assert!(sent > 0, "no window at all");
    assert!(
        sent <= 65_535,
        "{sent} bytes of body taken for a handler that reads none yet"
    );
    // A second stream gets no more: the connection's window is shared.
    client.stream.write_all(&post(3, "/hold")).unwrap();
    let (more, _) = upload(&mut client, &mut windows, 3, 1 << 20, Duration::from_millis(500));
    assert!(
        sent + more <= 65_535,
        "{} bytes of body taken on one connection whose handlers read none yet",
        sent + more
    );
}

/// An HTTP/2 upload far larger than the window arrives whole: the window
/// opens again as the handler reads.
#[test]
fn an_http2_upload_larger_than_the_window_arrives_whole() {
    let server = start(1000);
    let mut client = Client::connect(server.addr());
    client.stream.write_all(&post(1, "/upload")).unwrap();
    let bytes = 600 << 10;
    let (sent, mut frames) = upload(
        &mut client,
        &mut Windows::new(),
        1,
        bytes,
        Duration::from_secs(10),
    );
    assert_eq!(sent, bytes, "the server stopped opening its window");
    let started = Instant::now();
    let expected = bytes.to_string().into_bytes();
    while !frames
        .iter()
        .any(|f| f.kind == DATA && f.stream == 1 && f.payload == expected)
        && !client.closed
        && started.elapsed() < Duration::from_secs(10)
    {
        frames.extend(client.frames(Duration::from_millis(50)));
    }
    assert!(
        frames.iter().any(|f| f.stream == 1 && f.is_200()),
        "no 200 for the upload: {frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.kind == DATA && f.stream == 1 && f.payload == expected),
        "the handler did not read {bytes} bytes"
    );
}

/// RFC 9113 §8.3.1: a `Host` that names another authority than
/// `:authority`, or userinfo in `:authority`, makes a request malformed: a
/// 400 on its stream, the connection going on. Before: both were served
/// (a handler reading `Host` saw the other name).
#[test]
fn a_host_other_than_the_authority_is_400_on_http2() {
    let server = start(1000);
    let mut client = Client::connect(server.addr());
    let started = Instant::now();
    // :method GET, :scheme http, :authority AUTHORITY, :path /, then a
    // literal field without indexing: host: HOST.
    let request = |stream: u32, authority: &str, host: Option<&str>| {
        let mut block = vec![0x82, 0x86, 0x01, authority.len() as u8];
        block.extend(authority.as_bytes());
        block.push(0x84);
        if let Some(host) = host {
            block.extend([0x00, 4]);
            block.extend(b"host");
            block.push(host.len() as u8);
            block.extend(host.as_bytes());
        }
        frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
    };
    // `:status 400` is HPACK static entry 12.
    let status_of = |frames: &[Frame], stream: u32| {
        frames
            .iter()
            .find(|f| f.kind == HEADERS && f.stream == stream)
            .and_then(|f| f.payload.first().copied())
    };
    for (stream, authority, host, status) in [
        (1, "x", Some("evil"), 0x8c),
        (3, "u@x", None, 0x8c),
        (5, "x", Some("X"), 0x88),
        (7, "x", None, 0x88),
    ] {
        client
            .stream
            .write_all(&request(stream, authority, host))
            .unwrap();
        let mut frames = Vec::new();
        while status_of(&frames, stream).is_none()
            && !client.closed
            && started.elapsed() < Duration::from_secs(10)
        {
            frames.extend(client.frames(Duration::from_millis(50)));
        }
        assert_eq!(
            status_of(&frames, stream),
            Some(status),
            "{authority:?} with Host {host:?}: {frames:?}"
        );
    }
}
