//! `http::Server` and clients that read their answers slowly or not at all:
//! an answer still being sent keeps its connection busy (no idle timeout,
//! no eviction at the connection cap) however long the client takes, and
//! a client that reads nothing for `send_timeout` is closed.

#[path = "util/http.rs"]
mod http_util;
#[path = "util/net.rs"]
mod net_util;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::stream;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use http_util::{idle_connections, start_http_with, Conn, HttpRunning};
use shardlet::http::server::{Body, Limits};

/// The answer to `/huge`: bigger than what the kernel buffers on both ends
/// hold for a client with a small receive buffer.
const HUGE: usize = 32 << 20;
const PIECE: usize = 64 << 10;

type Answer = Response<Pin<Box<dyn http_body::Body<Data = Bytes, Error = io::Error>>>>;

async fn route(request: Request<Body>) -> Answer {
    match request.uri().path() {
        // Streamed in pieces: the handler is long done while they go out.
        "/huge" => {
            let piece = Bytes::from(vec![b'x'; PIECE]);
            let pieces = stream::iter((0..HUGE / PIECE).map(move |_| Ok(Frame::data(piece.clone()))));
            Response::builder()
                .header("content-length", HUGE)
                .body(Box::pin(StreamBody::new(pieces)) as Pin<Box<dyn http_body::Body<Data = _, Error = _>>>)
                .unwrap()
        }
        // One frame: hyper has it all at once, the socket takes it slowly.
        "/huge-whole" => Response::new(Box::pin(
            Full::new(Bytes::from(vec![b'y'; HUGE])).map_err(|e| match e {}),
        )),
        _ => Response::new(Box::pin(
            Full::new(Bytes::from_static(b"hello\n")).map_err(|e| match e {}),
        )),
    }
}

fn start(limits: Limits, max_connections: usize) -> HttpRunning {
    start_http_with(1, limits, |c| c.with_max_connections(max_connections), || route)
}

/// A connection whose receive buffer is small, so that the server's
/// writes block as soon as the client stops reading.
fn small_window(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream
}

/// Asks for `path` (the connection closing after it), waits `pause`
/// reading nothing, then reads to the end: the body bytes that came, and
/// whether the answer ended cleanly (EOF, not a reset or a timeout).
fn fetch_after(stream: TcpStream, path: &str, pause: Duration) -> (usize, bool) {
    read_after(ask(stream, path), pause)
}

/// Sends a request for `path`, the connection closing after it.
fn ask(mut stream: TcpStream, path: &str) -> TcpStream {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    stream
}

/// [`fetch_after`] once the request is sent.
fn read_after(mut stream: TcpStream, pause: Duration) -> (usize, bool) {
    std::thread::sleep(pause);
    let mut all = Vec::with_capacity(HUGE + 1024);
    let clean = stream.read_to_end(&mut all).is_ok();
    let head = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(all.len(), |i| i + 4);
    (all.len() - head, clean)
}

#[test]
fn an_answer_slower_than_the_idle_timeout_arrives_whole() {
    let limits = Limits::default()
        .with_idle_timeout(Duration::from_millis(200))
        .with_send_timeout(Duration::from_secs(10));
    let server = start(limits, 1000);
    let addr = server.addr();
    for path in ["/huge", "/huge-whole"] {
        // Reading nothing for five idle timeouts, then all of it.
        let (body, clean) = fetch_after(small_window(addr), path, Duration::from_secs(1));
        assert_eq!((body, clean), (HUGE, true), "{path}");
    }
    // Idle connections still close on time.
    let mut conn = Conn::open(addr);
    assert_eq!(conn.get("/").unwrap().status, 200);
    let started = Instant::now();
    assert!(conn.is_closed());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_client_that_reads_nothing_is_closed_after_the_send_timeout() {
    let limits = Limits::default().with_send_timeout(Duration::from_millis(300));
    let server = start(limits, 1000);
    let addr = server.addr();
    let started = Instant::now();
    let (body, _) = fetch_after(small_window(addr), "/huge", Duration::from_secs(2));
    assert!(body < HUGE, "the whole answer came: {body} bytes");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // A client that reads steadily, in pieces with pauses, takes longer
    // than the send timeout for the whole answer but never lets a write
    // wait that long: it gets all of it.
    let limits = Limits::default().with_send_timeout(Duration::from_secs(1));
    let server = start(limits, 1000);
    let addr = server.addr();
    let started = Instant::now();
    let mut stream = small_window(addr);
    stream
        .write_all(b"GET /huge HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("after {total} bytes: {e}"),
        }
        std::thread::sleep(Duration::from_millis(2));
        assert!(started.elapsed() < Duration::from_secs(60), "too slow");
    }
    assert!(total > HUGE, "{total} bytes");
    // And the server goes on.
    assert_eq!(Conn::open(addr).get("/").unwrap().status, 200);
}

#[test]
fn at_the_connection_cap_an_answer_being_sent_is_not_evicted() {
    let server = start(Limits::default(), 4);
    let addr = server.addr();
    // One connection with a long answer under way, its client not reading yet.
    // Its answer has begun (bytes wait to be read) before the idle ones
    // open: no fixed sleep that a loaded machine could outlast.
    let asked = ask(small_window(addr), "/huge");
    asked.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match asked.peek(&mut [0u8; 1]) {
            Ok(0) => panic!("the connection closed before its answer began"),
            Ok(_) => break,
            Err(_) => assert!(Instant::now() < until, "the long answer never began"),
        }
    }
    asked.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let reader = std::thread::spawn(move || read_after(asked, Duration::from_secs(2)));
    // Three idle keep-alive connections, oldest first.
    let mut idle = idle_connections(addr, 3);
    // A fifth client: the oldest idle connection makes room, not the one
    // whose answer is being sent.
    let asked = Instant::now();
    assert_eq!(Conn::open(addr).get("/").unwrap().status, 200);
    assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
    assert!(idle[0].is_closed(), "the longest idle connection was not closed");
    assert_eq!(
        reader.join().unwrap(),
        (HUGE, true),
        "the answer being sent was cut"
    );
    assert_eq!(idle[2].get("/").unwrap().status, 200);
}

#[test]
fn server_limits_of_duration_max_mean_none() {
    let limits = Limits::default()
        .with_header_timeout(Duration::MAX)
        .with_body_timeout(Duration::MAX)
        .with_idle_timeout(Duration::MAX)
        .with_send_timeout(Duration::MAX);
    let server = start(limits, 1000);
    let mut conn = Conn::open(server.addr());
    for _ in 0..3 {
        assert_eq!(conn.get("/").unwrap().status, 200);
    }
    let (body, clean) = fetch_after(small_window(server.addr()), "/huge", Duration::from_millis(100));
    assert_eq!((body, clean), (HUGE, true));
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// An HTTP/2 client that grants no flow-control window holds its answer
/// with no write blocked: the connection is closed after the send timeout
/// all the same (it was held open forever, neither idle nor stalled).
#[test]
fn an_http2_answer_given_no_window_is_closed_after_the_send_timeout() {
    let limits = Limits::default().with_send_timeout(Duration::from_millis(300));
    let server = start(limits, 1000);
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = 0.
    stream.write_all(&h2_frame(4, 0, 0, &[0, 4, 0, 0, 0, 0])).unwrap();
    // GET / (HPACK static entries :method GET, :scheme http, :path /, and
    // :authority "x"), END_STREAM | END_HEADERS.
    stream
        .write_all(&h2_frame(1, 5, 1, &[0x82, 0x86, 0x84, 0x01, 1, b'x']))
        .unwrap();
    let mut buf = Vec::new();
    let mut data = [0u8; 4096];
    let mut headers = false;
    loop {
        match stream.read(&mut data) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&data[..n]),
        }
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            headers |= kind == 1;
            if kind == 4 && flags & 1 == 0 {
                stream.write_all(&h2_frame(4, 1, 0, &[])).unwrap(); // SETTINGS ACK
            }
            buf.drain(..9 + len);
        }
    }
    assert!(headers, "the answer's head came");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}
