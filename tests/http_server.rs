//! `http::Server`: requests and responses on the wire, keep-alive, bodies
//! (sized, chunked, `Expect: 100-continue`), every limit's answer, a
//! panicking handler, and graceful stop.

#[path = "util/http.rs"]
mod http_util;
#[path = "util/net.rs"]
mod net_util;

use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::stream;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use http_util::{
    get, idle_connections, request as request_raw, start_http, start_http_on, start_http_with, Conn,
    HttpRunning,
};
use shardlet::http::server::{Body, Limits};

/// Any body, shard-local (`!Send` is fine on a shard).
type Answer = Response<Pin<Box<dyn http_body::Body<Data = Bytes, Error = std::convert::Infallible>>>>;

fn text(status: u16, body: impl Into<Bytes>) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Box::pin(Full::new(body.into())) as Pin<Box<dyn http_body::Body<Data = Bytes, Error = _>>>)
        .unwrap()
}

/// The test application: a few routes exercising the server.
async fn route(request: Request<Body>, started: Arc<AtomicUsize>) -> Answer {
    match request.uri().path() {
        "/" => text(200, "hello\n"),
        "/echo" => {
            let method = request.method().to_string();
            let body = match request.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => return text(500, e.to_string()),
            };
            let mut answer = text(200, body.clone());
            answer.headers_mut().insert("x-method", method.parse().unwrap());
            answer.headers_mut().insert("x-length", body.len().into());
            answer
        }
        "/panic" => panic!("this handler panics on purpose"),
        "/stream" => {
            // Pieces that come one by one, some after a wait.
            let pieces = stream::unfold(0, |i| async move {
                if i == 5 {
                    return None;
                }
                if i % 2 == 1 {
                    shardlet::sleep(Duration::from_millis(5)).await;
                }
                Some((Ok(Frame::data(Bytes::from(format!("piece {i}\n")))), i + 1))
            });
            Response::new(Box::pin(StreamBody::new(pieces)))
        }
        "/big" => text(200, vec![b'x'; 200_000]),
        "/busy-reader" => {
            // Reads a first piece, works for 1.5 s (a wait for a slot, a
            // fetch), then reads the rest.
            let mut body = request.into_body();
            let first = match body.frame().await {
                Some(Ok(frame)) => frame.into_data().map_or(0, |d| d.len()),
                other => return text(500, format!("{other:?}")),
            };
            shardlet::sleep(Duration::from_millis(1500)).await;
            match body.collect().await {
                Ok(rest) => text(200, format!("{first} + {}", rest.to_bytes().len())),
                Err(e) => text(500, e.to_string()),
            }
        }
        "/hold" => {
            // Holds its pool slot for 2 s.
            started.fetch_add(1, Ordering::SeqCst);
            shardlet::sleep(Duration::from_millis(2000)).await;
            text(200, "held\n")
        }
        "/slow" => {
            started.fetch_add(1, Ordering::SeqCst);
            shardlet::sleep(Duration::from_millis(400)).await;
            text(200, "slow done\n")
        }
        "/close" => {
            let mut answer = text(200, "bye\n");
            answer
                .headers_mut()
                .insert("connection", "close".parse().unwrap());
            answer
        }
        _ => text(StatusCode::NOT_FOUND.as_u16(), "not found\n"),
    }
}

fn start_with(shards: usize, limits: Limits) -> (HttpRunning, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let server = start_http(shards, limits, move || {
        let started = counter.clone();
        move |request: Request<Body>| {
            // A panic in the handler's `call`, before its future exists.
            if request.uri().path() == "/panic-in-call" {
                panic!("this handler's call panics on purpose");
            }
            route(request, started.clone())
        }
    });
    (server, started)
}

fn start(shards: usize) -> HttpRunning {
    start_with(shards, Limits::default()).0
}

#[test]
fn smoke() {
    let server = start(1);
    let reply = get(server.addr(), "/");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello\n");
    assert_eq!(reply.header("content-length"), Some("6"));
    assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(reply.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert!(reply.closes(), "the client asked to close: {reply:?}");
    assert_eq!(get(server.addr(), "/nowhere").status, 404);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = start(2);
    let mut conn = Conn::open(server.addr());
    for i in 0..500 {
        let reply = conn.get(&format!("/?n={i}")).unwrap();
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "hello\n"),
            "request {i}"
        );
        assert!(!reply.closes());
    }
    // Pipelined: 100 requests in one write, 100 answers in order.
    let burst: String = (0..100)
        .map(|i| {
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{i}",
                i.to_string().len()
            )
        })
        .collect();
    conn.send(burst.as_bytes()).unwrap();
    for i in 0..100 {
        assert_eq!(conn.read().unwrap().text(), i.to_string());
    }
    assert_eq!(server.server.stats().accepted(), 1);
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let server = start(1);
    let mut conn = Conn::open(server.addr());
    let reply = conn.roundtrip(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.closes());
    assert!(conn.is_closed());

    let mut conn = Conn::open(server.addr());
    for _ in 0..3 {
        let reply = conn
            .roundtrip(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        assert_eq!(reply.header("connection"), Some("keep-alive"));
    }
    // A streamed body to an HTTP/1.0 client ends with the connection.
    let reply = conn
        .roundtrip(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert_eq!(reply.header("transfer-encoding"), None);
    assert!(reply.closes(), "{reply:?}");
    assert!(reply.text().starts_with("piece 0\n"));
}

#[test]
fn request_bodies_sized_chunked_and_after_100_continue() {
    let server = start(1);
    let mut conn = Conn::open(server.addr());
    let reply = conn
        .roundtrip(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
        .unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "hello world"));
    assert_eq!(reply.header("x-method"), Some("POST"));

    let chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n";
    let reply = conn.roundtrip(chunked).unwrap();
    assert_eq!(reply.text(), "hello world");

    // The client waits for 100 Continue before it sends the body.
    conn.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .unwrap();
    let interim = conn.read().unwrap();
    assert_eq!(interim.status, 100);
    conn.send(b"data").unwrap();
    let reply = conn.read().unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "data"));
    assert_eq!(reply.header("x-method"), Some("PUT"));

    // Still the same connection.
    assert_eq!(conn.get("/").unwrap().status, 200);
}

#[test]
fn responses_sized_chunked_and_head() {
    let server = start(1);
    let mut conn = Conn::open(server.addr());
    let reply = conn.get("/stream").unwrap();
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.header("content-length"), None);
    let expected: String = (0..5).map(|i| format!("piece {i}\n")).collect();
    assert_eq!(reply.text(), expected);

    let reply = conn.get("/big").unwrap();
    assert_eq!(reply.body.len(), 200_000);

    conn.send(b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let reply = http_util::read_response(&mut conn.reader, true).unwrap();
    assert_eq!(reply.header("content-length"), Some("200000"));
    // No body followed: the next response comes right after the head.
    assert_eq!(conn.get("/").unwrap().text(), "hello\n");

    // A handler's Connection: close is honoured.
    let reply = conn.get("/close").unwrap();
    assert!(reply.closes());
    assert!(conn.is_closed());
}

/// Each bad request gets its status, then the connection closes; the server
/// keeps serving.
#[test]
fn bad_requests_get_their_status_and_the_server_goes_on() {
    let limits = Limits::default()
        .with_max_request_line(1024)
        .with_max_head(4096)
        .with_max_headers(16)
        .with_max_body(1000);
    let (server, _) = start_with(2, limits);
    let addr = server.addr();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(2000));
    // The length in the authority, not the path.
    let long_absolute = format!("GET http://{}/ HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(2000));
    let many_fields: String = (0..20).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_fields = format!("GET / HTTP/1.1\r\nHost: t\r\n{many_fields}\r\n");
    let big_field = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(5000));
    let big_chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n{}\r\n1\r\nx\r\n0\r\n\r\n",
        "c".repeat(1000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("URI too long", long_uri.into_bytes(), 414),
        ("too many fields", many_fields.into_bytes(), 431),
        ("head too large", big_field.into_bytes(), 431),
        (
            "Content-Length over the limit",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n".to_vec(),
            413,
        ),
        (
            "Content-Length over the limit, 100-continue",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
                .to_vec(),
            413,
        ),
        ("chunked body over the limit", big_chunked.into_bytes(), 413),
        ("garbage", b"\x16\x03\x01 hello\r\n\r\n".to_vec(), 400),
        ("no version", b"GET /\r\n\r\n".to_vec(), 400),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            "two different Content-Lengths",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            400,
        ),
        (
            "signed Content-Length",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +1\r\n\r\na".to_vec(),
            400,
        ),
        (
            "bad chunk size",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
        ),
        (
            "unknown transfer coding",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
            501,
        ),
        (
            "chunked not last",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunked twice",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunked twice, in two fields",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n".to_vec(), 400),
        ("Host as a list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n".to_vec(), 400),
        ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n".to_vec(), 400),
        ("Host with a bad port", b"GET / HTTP/1.1\r\nHost: a:x\r\n\r\n".to_vec(), 400),
        ("URI too long in absolute form", long_absolute.into_bytes(), 414),
        (
            "unknown expectation",
            b"GET / HTTP/1.1\r\nHost: t\r\nExpect: something\r\n\r\n".to_vec(),
            417,
        ),
        // Two faults at once (that hyper lets through: `chunked` last): the
        // first check in `precheck`'s order answers.
        (
            "unknown expectation and an unknown coding",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                .to_vec(),
            417,
        ),
        (
            "chunked twice and an unknown coding",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip, chunked\r\n\r\n".to_vec(),
            501,
        ),
        (
            "a bad Host and an unknown expectation",
            b"GET / HTTP/1.1\r\nHost: a b\r\nExpect: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "unknown expectation in a second field",
            b"GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nExpect: something\r\n\r\n".to_vec(),
            417,
        ),
    ];
    for (what, raw, status) in cases {
        let mut conn = Conn::open(addr);
        let reply = conn.roundtrip(&raw).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert!(reply.closes(), "{what}: {reply:?}");
        assert!(conn.is_closed(), "{what}: connection left open");
        assert_eq!(get(addr, "/").status, 200, "after {what}");
    }
    // Content-Length with Transfer-Encoding: RFC 9112 §6.3 lets a server
    // refuse it or read the body by Transfer-Encoding alone; either way it
    // MUST close the connection after answering. hyper does the latter.
    let mut conn = Conn::open(addr);
    let reply = conn
        .roundtrip(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .unwrap();
    assert_eq!(
        (reply.status, reply.header("x-length")),
        (200, Some("0")),
        "{reply:?}"
    );
    assert!(reply.closes(), "{reply:?}");
    assert!(
        conn.is_closed(),
        "Content-Length and Transfer-Encoding: connection left open"
    );

    // Hosts of every valid shape are fine; a target in absolute form at
    // the request-line limit (1,024) too, one byte more is a 414.
    for host in [
        "t",
        "t:8080",
        "127.0.0.1:1",
        "[::1]:80",
        "[fe80::1%25eth0]",
        "[v1.fe80::a+en1]",
        "a.b-c.example.",
        "",
    ] {
        let reply = request_raw(addr, format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        assert_eq!(reply.status, 200, "Host: {host:?}");
    }
    for (pad, status) in [(1002, 404), (1003, 414)] {
        let line = format!("GET http://t/{} HTTP/1.1", "a".repeat(pad));
        let reply = request_raw(addr, format!("{line}\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(
            reply.status,
            status,
            "an absolute-form request line of {} bytes",
            line.len()
        );
    }

    // Exactly at the limits is fine.
    let mut conn = Conn::open(addr);
    let body = "d".repeat(1000);
    let reply = conn
        .roundtrip(format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{body}").as_bytes())
        .unwrap();
    assert_eq!(reply.status, 200);
}

/// The field-count limit at its edges, below and above hyper's own bound
/// of 100 (below it shardlet counts the fields after hyper parsed them;
/// above it hyper is given the bound): `max_headers` fields pass, one
/// more is a 431 that closes the connection.
#[test]
fn the_field_count_limit_at_its_edges() {
    let request = |fields: usize| {
        let more: String = (1..fields).map(|i| format!("X-{i}: v\r\n")).collect();
        format!("GET / HTTP/1.1\r\nHost: t\r\n{more}\r\n").into_bytes()
    };
    for max in [16, 64, 100, 150] {
        let (server, _) = start_with(1, Limits::default().with_max_headers(max));
        for (fields, status) in [(max, 200), (max + 1, 431)] {
            let mut conn = Conn::open(server.addr());
            let reply = conn.roundtrip(&request(fields)).unwrap();
            let what = format!("{fields} fields, at most {max}");
            assert_eq!(reply.status, status, "{what}: {reply:?}");
            if status == 431 {
                assert!(conn.is_closed(), "{what}: left open");
            }
        }
    }
}

/// Clients that leave while the server reads the first bytes of their
/// connection (those that tell HTTP/2 from HTTP/1, and the read that goes
/// on past them), by closing or by a reset, before, at and after that
/// boundary: the server drops them, holds none of them, and answers the
/// next client.
#[test]
fn clients_that_leave_inside_their_first_bytes() {
    let server = start(1);
    let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Long-Enough: to cross the sniffed bytes\r\n";
    for len in [1, 23, 24, 25, head.len()] {
        for reset in [false, true] {
            let conn = Conn::open(server.addr());
            let mut stream = conn.reader.into_inner();
            stream.write_all(&head[..len]).unwrap();
            if reset {
                socket2::SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            drop(stream);
            let reply = get(server.addr(), "/");
            assert_eq!(
                reply.status,
                200,
                "after {len} bytes and a {}",
                if reset { "reset" } else { "close" }
            );
        }
    }
    // None of them is still held.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.server.stats().shards[0].live > 0 {
        assert!(Instant::now() < deadline, "{:?}", server.server.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// In its future or in its `call` (the closure's own code before the
/// future it returns): a 500, counted, and the connection serves on.
#[test]
fn a_panicking_handler_answers_500_and_the_connection_goes_on() {
    let server = start(1);
    let mut conn = Conn::open(server.addr());
    for path in ["/panic", "/panic-in-call"] {
        for _ in 0..3 {
            let reply = conn.get(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(reply.status, 500, "{path}");
            assert!(!reply.closes(), "{path}");
            assert_eq!(conn.get("/").unwrap().status, 200, "after {path}");
        }
    }
    assert_eq!(get(server.addr(), "/").text(), "hello\n");
    assert_eq!(server.server.stats().shards[0].panicked, 6);
}

#[test]
fn slow_heads_get_408_and_idle_connections_close() {
    let limits = Limits::default()
        .with_header_timeout(Duration::from_millis(300))
        .with_body_timeout(Duration::from_millis(300))
        .with_idle_timeout(Duration::from_millis(300));
    let (server, _) = start_with(1, limits);
    let addr = server.addr();

    // Slowloris: a head that never ends.
    let started = Instant::now();
    let mut conn = Conn::open(addr);
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    conn.send(b"X-Still: here\r\n").unwrap();
    let reply = conn.read().unwrap();
    assert_eq!(reply.status, 408);
    assert!(reply.closes());
    assert!(conn.is_closed());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // A connection that sends nothing at all.
    let mut conn = Conn::open(addr);
    assert_eq!(conn.read().unwrap().status, 408);

    // A body that never ends.
    let mut conn = Conn::open(addr);
    let reply = conn
        .roundtrip(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
        .unwrap();
    assert_eq!(reply.status, 408);

    // Idle after a request: closed without an answer.
    // Timed from before the request: the idle time cannot start earlier,
    // however late this thread runs after the answer comes.
    let mut conn = Conn::open(addr);
    let started = Instant::now();
    assert_eq!(conn.get("/").unwrap().status, 200);
    assert!(conn.is_closed());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

/// The body timeout counts the time the handler waits for the client, not
/// the handler's own work between reads. Before: a handler that worked
/// longer than the timeout between two reads, then waited a moment for a
/// client that was never slow, answered 408.
#[test]
fn a_handler_that_works_between_reads_does_not_time_the_client_out() {
    let limits = Limits::default().with_body_timeout(Duration::from_secs(1));
    let (server, _) = start_with(1, limits);
    // The handler waits 0.3 s for "ab" (its timer set for 1 s from the
    // start of that wait), then works 1.5 s.
    let first_part = || {
        let mut conn = Conn::open(server.addr());
        conn.send(b"POST /busy-reader HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        conn.send(b"ab").unwrap();
        conn
    };
    // Then it waits 0.2 s for the rest: 0.5 s of waiting in all, the timer
    // re-armed when it fired early.
    let mut conn = first_part();
    std::thread::sleep(Duration::from_millis(1700));
    conn.send(b"cdef").unwrap();
    let reply = conn.read().unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "2 + 4"), "{reply:?}");
    assert!(!reply.closes());

    // The same, and the rest never comes: 408 once the waits reach 1 s, at
    // 0.3 + 1.5 + 0.7 s.
    let started = Instant::now();
    let reply = first_part().read().unwrap();
    let waited = started.elapsed();
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(
        waited >= Duration::from_millis(2300) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
}

/// The handler gives its pool slot back while its body waits; when the
/// client's bytes come, it queues for a slot again. That queue is the
/// server's time, not the client's. Before: a pool of 1 held 2 s by another
/// request made a client that sent at once (0.3 s of waiting in all) get 408.
#[test]
fn time_queued_for_a_slot_after_the_bytes_came_is_not_the_clients() {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let server = start_http_on(
        net_util::runtime(1).with_pool_size(1),
        Limits::default().with_body_timeout(Duration::from_secs(1)),
        |c| c,
        move || {
            let started = counter.clone();
            move |request| route(request, started.clone())
        },
    );
    let addr = server.addr();
    let mut conn = Conn::open(addr);
    conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n")
        .unwrap();
    let head_sent = Instant::now();
    // Its handler waits for the body, without its slot; /hold takes the slot.
    std::thread::sleep(Duration::from_millis(100));
    let hold = std::thread::spawn(move || Conn::open(addr).get("/hold").unwrap());
    // Not a fixed sleep: on a busy machine /hold could come after the bytes,
    // and /echo would read them in the free slot. The client's time runs
    // from the head until its bytes, so /hold must start well inside the
    // 1 s body timeout for a 408 to mean the server counted its own time.
    while started.load(Ordering::SeqCst) == 0 {
        let late = head_sent.elapsed();
        assert!(
            late < Duration::from_millis(700),
            "the machine is too slow for this test: /hold had not started {late:?} after the head"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The bytes come 0.2 s in; the handler gets the slot 2 s in, then waits
    // 0.2 s for the rest.
    conn.send(b"ab").unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    conn.send(b"cdef").unwrap();
    let reply = conn.read().unwrap();
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "abcdef"),
        "{reply:?}"
    );
    assert_eq!(hold.join().unwrap().status, 200);
}

/// A body trickled a byte at a time, each one well inside the body
/// timeout, still runs out of it: the waits add up (a timeout per read, as
/// nginx's, would let it hold its handler forever).
#[test]
fn a_trickled_body_runs_out_of_its_timeout() {
    let limits = Limits::default().with_body_timeout(Duration::from_millis(600));
    let (server, _) = start_with(1, limits);
    let mut conn = Conn::open(server.addr());
    let started = Instant::now();
    conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let mut sent = 0;
    let reply = loop {
        std::thread::sleep(Duration::from_millis(150));
        if conn.send(b"x").is_err() || sent == 100 {
            break conn.read().unwrap();
        }
        sent += 1;
        if started.elapsed() > Duration::from_secs(10) {
            panic!("still taking the body after {sent} bytes");
        }
        // The answer comes while the client still sends.
        if conn.poll_readable() {
            break conn.read().unwrap();
        }
    };
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(sent < 20, "408 after {sent} bytes");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn max_requests_closes_after_the_last() {
    let (server, _) = start_with(1, Limits::default().with_max_requests(3));
    let mut conn = Conn::open(server.addr());
    assert!(!conn.get("/").unwrap().closes());
    assert!(!conn.get("/").unwrap().closes());
    assert!(conn.get("/").unwrap().closes());
    assert!(conn.is_closed());
}

/// A stop lets requests in flight finish (answered with `Connection:
/// close`), closes idle keep-alive connections at once, and refuses new ones.
#[test]
fn graceful_stop_finishes_requests_in_flight() {
    let (server, started) = start_with(2, Limits::default());
    let addr = server.addr();
    let mut idle = Conn::open(addr);
    assert_eq!(idle.get("/").unwrap().status, 200);

    let slow: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let reply = conn.get("/slow").unwrap();
                (reply, conn.is_closed())
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < until, "slow requests never started");
        std::thread::sleep(Duration::from_millis(2));
    }

    let stopping = Instant::now();
    let served = server.stop(Duration::from_secs(5));
    let took = stopping.elapsed();
    assert!(served.iter().all(Result::is_ok), "{served:?}");
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    for handle in slow {
        let (reply, closed) = handle.join().unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (200, "slow done\n"));
        assert!(reply.closes(), "{reply:?}");
        assert!(closed);
    }
    assert!(idle.is_closed(), "idle keep-alive connection left open");
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(_) => {}
        Ok(mut late) => {
            // Connected to a listener being torn down: it must not be served.
            let _ = late.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let mut conn = Conn {
                reader: std::io::BufReader::new(late),
            };
            assert!(conn.read().is_err(), "served after stop");
        }
    }
}

/// At the shard's connection cap, a new client makes the connection idle
/// the longest close (hyper's graceful shutdown), as nginx does; a
/// connection in the middle of a request is never the one.
#[test]
fn at_the_connection_cap_the_longest_idle_connection_makes_room() {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let server = start_http_with(
        1,
        Limits::default(),
        |c| c.with_max_connections(4),
        move || {
            let started = counter.clone();
            move |request| route(request, started.clone())
        },
    );
    let addr = server.addr();
    // One busy (a request in flight for 2 s: room for a test thread kept
    // off the CPU while it opens the others), three idle, oldest first.
    let busy = std::thread::spawn(move || {
        let mut conn = Conn::open(addr);
        conn.get("/hold").unwrap()
    });
    let until = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the slow request never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut idle = idle_connections(addr, 3);
    let asked = Instant::now();
    let mut fresh = Conn::open(addr);
    assert_eq!(fresh.get("/").unwrap().status, 200);
    assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
    assert!(idle[0].is_closed(), "the longest idle connection was not closed");
    assert_eq!(
        idle[2].get("/").unwrap().status,
        200,
        "a newer idle connection was closed"
    );
    assert_eq!(busy.join().unwrap().text(), "held\n");
    assert!(server.server.stats().shards[0].evicted >= 1);
}

/// At the cap, a connection that has sent nothing for a second makes room
/// too, the one silent the longest first (nginx's "reusable" connections);
/// one that has begun its head keeps its place, and so do connections
/// younger than that second (an overloaded shard's newcomers would
/// otherwise evict each other ahead of their requests). Before: nothing
/// silent could be evicted, and a new client waited for the silent ones'
/// header timeout (10 s).
#[test]
fn at_the_connection_cap_a_connection_silent_for_a_second_makes_room() {
    let server = start_http_with(
        1,
        Limits::default(),
        |c| c.with_max_connections(4),
        || {
            let started = Arc::new(AtomicUsize::new(0));
            move |request| route(request, started.clone())
        },
    );
    let addr = server.addr();
    let mut started_head = Conn::open(addr);
    started_head.send(b"GET / HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let opened = Instant::now();
    let mut silent: Vec<Conn> = (0..3)
        .map(|_| {
            let conn = Conn::open(addr);
            std::thread::sleep(Duration::from_millis(20));
            conn
        })
        .collect();
    let mut fresh = Conn::open(addr);
    assert_eq!(fresh.get("/").unwrap().status, 200);
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "served {waited:?} after the silent ones opened"
    );
    assert!(
        silent[0].is_closed(),
        "the longest silent connection was not closed"
    );
    assert_eq!(
        silent[2].get("/").unwrap().status,
        200,
        "a newer silent connection was closed"
    );
    started_head.send(b"Host: t\r\n\r\n").unwrap();
    assert_eq!(
        started_head.read().unwrap().status,
        200,
        "a connection sending its head was closed"
    );
    assert!(server.server.stats().shards[0].evicted >= 1);
}

#[test]
fn requests_waiting_for_their_bodies_hold_no_handler_slot() {
    // A handler pool of 2, and more clients than that which send a head
    // and hold back the body: they must not lock the shard out.
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let server = start_http_on(
        net_util::runtime(1).with_pool_size(2),
        Limits::default(),
        |c| c,
        move || {
            let started = counter.clone();
            move |request| route(request, started.clone())
        },
    );
    let addr = server.addr();
    let mut holding: Vec<Conn> = (0..4)
        .map(|_| {
            let mut conn = Conn::open(addr);
            conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
                .unwrap();
            conn
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    assert_eq!(get(addr, "/").text(), "hello\n");
    assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
    // Their bodies come: each is answered in full.
    for conn in &mut holding {
        conn.send(b"cdefghij").unwrap();
    }
    for conn in &mut holding {
        let reply = conn.read().unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (200, "abcdefghij"));
    }
    // Handlers that work (not wait for their client) still hold their
    // slots: a third `/slow` waits for one of the first two.
    // Timed from before the threads start: a test thread kept off the CPU
    // after starting them would otherwise shorten what it measures.
    let asked = Instant::now();
    let slow: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || (get(addr, "/slow").text(), Instant::now())))
        .collect();
    let mut ends: Vec<Duration> = slow
        .into_iter()
        .map(|t| {
            let (text, at) = t.join().unwrap();
            assert_eq!(text, "slow done\n");
            at - asked
        })
        .collect();
    ends.sort();
    assert!(
        ends[2] >= Duration::from_millis(750),
        "three slow handlers ran at once: {ends:?}"
    );
}
