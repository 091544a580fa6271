//! `http::Server` against hostile HTTP/1.1 clients, over raw loopback
//! sockets: uploads that go on after the server refused them, heads at
//! and past the size limits, header fields that break the syntax, many
//! requests pipelined in one packet, and clients that send requests (or
//! take a never-ending answer) but read nothing.

#[path = "util/http.rs"]
mod http_util;
#[path = "util/net.rs"]
mod net_util;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use http_util::{request, start_http, Conn, HttpRunning};
use shardlet::http::server::{Body, Limits};

type Answer = Response<Pin<Box<dyn http_body::Body<Data = Bytes, Error = io::Error>>>>;

async fn route(request: Request<Body>) -> Answer {
    match request.uri().path() {
        "/echo" => match request.into_body().collect().await {
            Ok(body) => Response::new(Box::pin(Full::new(body.to_bytes()).map_err(|e| match e {}))),
            Err(e) => Response::new(Box::pin(
                Full::new(Bytes::from(e.to_string())).map_err(|e| match e {}),
            )),
        },
        // How many frames the body came in, and its bytes (a checksum).
        "/frames" => {
            let mut body = request.into_body();
            let (mut frames, mut bytes, mut sum) = (0u64, 0u64, 0u64);
            let mut trailers = 0;
            while let Some(frame) = body.frame().await {
                match frame.map(Frame::into_data) {
                    Ok(Ok(_)) if trailers > 0 => {
                        let text = Bytes::from_static(b"data after the trailers");
                        return Response::new(Box::pin(Full::new(text).map_err(|e| match e {})));
                    }
                    Ok(Ok(data)) => {
                        frames += 1;
                        bytes += data.len() as u64;
                        sum = data
                            .iter()
                            .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
                    }
                    Ok(Err(t)) => trailers += t.trailers_ref().map_or(0, |t| t.len()),
                    Err(e) => {
                        return Response::new(Box::pin(
                            Full::new(Bytes::from(e.to_string())).map_err(|e| match e {}),
                        ))
                    }
                }
            }
            let text = format!("{frames} {bytes} {sum} {trailers}");
            Response::new(Box::pin(Full::new(Bytes::from(text)).map_err(|e| match e {})))
        }
        // An answer that never ends.
        "/forever" => {
            let piece = Bytes::from(vec![b'f'; 16 << 10]);
            let pieces = futures_lite::stream::repeat_with(move || Ok(Frame::data(piece.clone())));
            Response::new(Box::pin(StreamBody::new(pieces)))
        }
        // A handler that answers with a protocol switch.
        "/switch" => {
            let mut answer: Answer = Response::new(Box::pin(Full::new(Bytes::new()).map_err(|e| match e {})));
            *answer.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
            answer
                .headers_mut()
                .insert("upgrade", http::HeaderValue::from_static("websocket"));
            answer
        }
        // A handler that answers with an interim status as its final one.
        "/early" => {
            let mut answer: Answer = Response::new(Box::pin(Full::new(Bytes::new()).map_err(|e| match e {})));
            *answer.status_mut() = http::StatusCode::EARLY_HINTS;
            answer
        }
        // CONNECT refused by its handler.
        _ if request.method() == http::Method::CONNECT && request.uri().host() == Some("refuse") => {
            let mut answer: Answer = Response::new(Box::pin(Full::new(Bytes::new()).map_err(|e| match e {})));
            *answer.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
            answer
        }
        "/host" => {
            let host = request.headers().get("host").map(|h| h.as_bytes().to_vec());
            Response::new(Box::pin(
                Full::new(Bytes::from(host.unwrap_or_default())).map_err(|e| match e {}),
            ))
        }
        path => {
            let path = Bytes::from(format!("{path}\n"));
            Response::new(Box::pin(Full::new(path).map_err(|e| match e {})))
        }
    }
}

fn start(limits: Limits) -> HttpRunning {
    start_http(1, limits, || route)
}

/// Sends `raw` whole from a thread of its own while this one reads
/// everything the server sends: whether the sending went through (no
/// reset), and what came.
fn upload(addr: SocketAddr, raw: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    let stream = net_util::client(addr);
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || writer.write_all(&raw));
    let mut answer = Vec::new();
    let mut reader = stream;
    let _ = reader.read_to_end(&mut answer);
    (sending.join().unwrap(), answer)
}

/// A body sent in 1-byte chunks reaches the handler gathered into larger
/// frames, the bytes unchanged and the trailers after them: hyper hands
/// over each chunk as a frame holding on to the read buffer it came from,
/// so a handler that kept the frames (`collect`) held some 35 times the
/// body. Before: 65,536 frames for 65,536 chunks.
#[test]
fn a_body_in_tiny_chunks_reaches_the_handler_in_few_frames() {
    const SIZE: usize = 64 << 10;
    let server = start(Limits::default());
    let body: Vec<u8> = (0..SIZE).map(|i| b'a' + (i % 26) as u8).collect();
    let mut raw =
        b"POST /frames HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for &b in &body {
        raw.extend_from_slice(b"1\r\n");
        raw.push(b);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\nx-sum: 1\r\n\r\n");
    let (sent, answer) = upload(server.addr(), raw);
    sent.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let text = answer.rsplit("\r\n\r\n").next().unwrap();
    let fields: Vec<u64> = text
        .split(' ')
        .map(|f| f.parse().unwrap_or_else(|_| panic!("{answer}")))
        .collect();
    let sum = body
        .iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
    assert_eq!(
        fields[1..],
        [SIZE as u64, sum, 1],
        "bytes, checksum, trailers: {answer}"
    );
    assert!(
        fields[0] <= 1000,
        "{} frames for {SIZE} one-byte chunks",
        fields[0]
    );
}

/// A client that sends its whole request before it reads (a body past the
/// limit, a head past it) gets the server's 4xx, not a reset that cuts its
/// upload and may destroy the answer: the server reads and drops what the
/// client still sends for a while after answering, as it did only after a
/// 408 (nginx's lingering close). Before: the upload failed with "broken
/// pipe" (the server closed on unread bytes, which resets).
#[test]
fn a_client_still_sending_when_refused_gets_the_answer_not_a_reset() {
    const SIZE: usize = 4 << 20;
    let server = start(Limits::default().with_max_body(1000).with_max_head(1024));
    let addr = server.addr();
    let mut sized = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
    sized.resize(sized.len() + SIZE, b'z');
    let mut chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = format!("1000\r\n{}\r\n", "c".repeat(4096));
    for _ in 0..SIZE / 4096 {
        chunked.extend_from_slice(chunk.as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut head = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    while head.len() < SIZE {
        head.extend_from_slice(format!("X-Pad: {}\r\n", "v".repeat(100)).as_bytes());
    }
    for (what, raw, status) in [
        ("Content-Length over the limit", sized, "413"),
        ("chunked body over the limit", chunked, "413"),
        ("head over the limit", head, "431"),
    ] {
        let (sent, answer) = upload(addr, raw);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {answer:?}"
        );
        assert!(sent.is_ok(), "{what}: the upload was cut: {sent:?}");
    }
    assert_eq!(http_util::get(addr, "/").status, 200);
}

/// README's size limits at their edges, the target in origin form (the
/// absolute form is in `http_server`): a request line of `max_request_line`
/// bytes passes, one more is a 414 (431 once it passes `max_head` too); a
/// head of `max_head` bytes (its final empty line included) passes, one
/// more is a 431.
#[test]
fn the_request_line_and_head_limits_at_their_edges() {
    let server = start(Limits::default().with_max_request_line(200).with_max_head(1024));
    let addr = server.addr();
    // Past `max_head` as well, hyper refuses the head first: 431.
    for (line_len, status) in [(200, 200), (201, 414), (2000, 431)] {
        // "GET /" and " HTTP/1.1": 14 bytes around the path.
        let line = format!("GET /{} HTTP/1.1", "a".repeat(line_len - 14));
        assert_eq!(line.len(), line_len);
        let reply = request(addr, format!("{line}\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(reply.status, status, "a request line of {line_len} bytes");
    }
    let bare = "GET / HTTP/1.1\r\nHost: t\r\nX: \r\n\r\n".len();
    for (head_len, status) in [(1024, 200), (1025, 431)] {
        let head = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
            "v".repeat(head_len - bare)
        );
        assert_eq!(head.len(), head_len);
        let mut conn = Conn::open(addr);
        let reply = conn.roundtrip(head.as_bytes()).unwrap();
        assert_eq!(reply.status, status, "a head of {head_len} bytes");
        if status == 431 {
            assert!(reply.closes() && conn.is_closed(), "431 left the connection open");
        }
    }
}

/// Header sections that break RFC 9112's syntax are a 400 that closes the
/// connection (§5.2: obs-fold refused; §5.1: no space before the colon;
/// §5.5: no NUL or bare CR in a value; RFC 9110 §8.6: a list of lengths),
/// never read another way (request smuggling).
#[test]
fn malformed_header_fields_are_400() {
    let server = start(Limits::default());
    let addr = server.addr();
    let cases: [(&str, &[u8]); 5] = [
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n"),
        (
            "NUL in a value",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n",
        ),
        ("CR in a value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n"),
        ("space before the colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n"),
        (
            "Content-Length as a list",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 3\r\n\r\nabc",
        ),
    ];
    for (what, raw) in cases {
        let mut conn = Conn::open(addr);
        let reply = conn.roundtrip(raw).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(reply.status, 400, "{what}: {reply:?}");
        assert!(conn.is_closed(), "{what}: connection left open");
    }
    assert_eq!(http_util::get(addr, "/").status, 200);
}

/// Two thousand requests pipelined in one write are answered in order; a
/// `HEAD` of a never-ending answer gets its head alone; nothing after a
/// `Connection: close` request is answered.
#[test]
fn many_requests_pipelined_in_one_packet() {
    let server = start(Limits::default());
    let mut raw = b"HEAD /forever HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    for i in 0..2000 {
        raw.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    raw.extend_from_slice(b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    raw.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut conn = Conn::open(server.addr());
    conn.send(&raw).unwrap();
    let head = http_util::read_response(&mut conn.reader, true).unwrap();
    assert_eq!(head.status, 200);
    for i in 0..2000 {
        let reply = conn.read().unwrap();
        assert_eq!(reply.text(), format!("/{i}\n"));
    }
    let last = conn.read().unwrap();
    assert_eq!(last.text(), "/last\n");
    assert!(last.closes());
    assert!(conn.is_closed(), "a request after Connection: close was answered");
}

/// Clients that read nothing: one pipelining requests without end, one
/// taking an answer that never ends. Each is closed once no write has gone
/// through for `send_timeout`, and holds nothing after.
#[test]
fn clients_that_read_nothing_are_closed_after_the_send_timeout() {
    let server = start(Limits::default().with_send_timeout(Duration::from_millis(300)));
    let addr = server.addr();
    for (what, request) in [
        ("pipelined flood", &b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n"[..]),
        (
            "never-ending answer",
            &b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        ),
    ] {
        let mut stream = net_util::client(addr);
        // Far above the send timeout: the write blocks until the server's
        // close, which a busy machine may deliver late.
        stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let burst = request.repeat(256);
        let started = Instant::now();
        // Sends until the server closes (a write fails); never reads.
        let failed = loop {
            if let Err(e) = stream.write_all(&burst) {
                break e;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what}: still open after 20 s"
            );
        };
        assert!(
            matches!(
                failed.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{what}: {failed}"
        );
        // Closed by the 300 ms send timeout, not a later limit (the header
        // and idle timeouts are 10 s and more).
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{what}: closed after {took:?}");
        net_util::wait_for(
            server.server.net(),
            "no live connection",
            Duration::from_secs(10),
            |s| s.shards[0].live == 0,
        );
    }
    assert_eq!(http_util::get(addr, "/").status, 200);
}

/// A handler's pool slot is its own only while it runs: clients that take
/// a never-ending answer, or pipeline requests, and read nothing (their
/// writes stalled, well within the send timeout) leave the one slot of a
/// pool of 1 free for the next client.
#[test]
fn clients_that_read_nothing_hold_no_handler_slot() {
    let server = http_util::start_http_on(
        net_util::runtime(1).with_pool_size(1),
        Limits::default(),
        |c| c,
        || route,
    );
    let addr = server.addr();
    let stalled: Vec<_> = (0..4)
        .map(|i| {
            let mut stream = net_util::client(addr);
            let request: &[u8] = if i % 2 == 0 {
                b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n"
            } else {
                b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n"
            };
            stream.write_all(&request.repeat(2000)).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    assert_eq!(http_util::get(addr, "/next").text(), "/next\n");
    assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
    // The four are still there (and the one answered gone).
    net_util::wait_for(
        server.server.net(),
        "4 live connections",
        Duration::from_secs(5),
        |s| s.shards[0].live == 4,
    );
    drop(stalled);
}

/// RFC 9112 §3.2.2: for a target in absolute form, the origin server MUST
/// ignore the `Host` field and use the target's host: the handler finds
/// that host in `Host` (as nginx's `$host` and Go's `Request.Host` give
/// it), whatever the client put there. Before: the client's `Host`, so a
/// handler routing by it and a proxy routing by the target disagreed.
#[test]
fn a_target_in_absolute_form_is_the_host() {
    let server = start(Limits::default());
    let addr = server.addr();
    for (target, host, seen) in [
        ("http://a.example/host", "b.example", "a.example"),
        ("http://a.example:8080/host?q", "b.example", "a.example:8080"),
        ("/host", "b.example", "b.example"),
    ] {
        let reply = request(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, seen),
            "GET {target}, Host: {host}"
        );
    }
}

/// RFC 9110 §4.2.1: an `http` URI with an empty host is invalid, and a
/// recipient MUST reject it: a target in absolute form with no host is a
/// 400 (as nginx answers), not a handler's request with an empty `Host`.
#[test]
fn a_target_in_absolute_form_with_an_empty_host_is_400() {
    let server = start(Limits::default());
    let addr = server.addr();
    for target in ["http://:8080/host", "http://user@/host", "https://:443/host"] {
        let reply = request(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(reply.status, 400, "GET {target}: {reply:?}");
    }
    assert_eq!(http_util::get(addr, "/").status, 200);
}

/// RFC 9112 §3.2.3-4: a target in authority form (`host:port`) is for
/// CONNECT only, and the asterisk form for OPTIONS only; anything else is a
/// 400 (as nginx answers), never the handler's to guess at. The forms the
/// RFC allows still reach the handler.
#[test]
fn a_target_form_that_does_not_fit_its_method_is_400() {
    let server = start(Limits::default());
    let addr = server.addr();
    let cases: [(&str, &[u8], u16); 4] = [
        ("asterisk form for GET", b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (
            "authority form for GET",
            b"GET t:80 HTTP/1.1\r\nHost: t:80\r\n\r\n",
            400,
        ),
        (
            "asterisk form for OPTIONS",
            b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
            200,
        ),
        (
            "origin form for OPTIONS",
            b"OPTIONS / HTTP/1.1\r\nHost: t\r\n\r\n",
            200,
        ),
    ];
    for (what, raw, status) in cases {
        let mut conn = Conn::open(addr);
        let reply = conn.roundtrip(raw).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(reply.status, status, "{what}: {reply:?}");
    }
    assert_eq!(http_util::get(addr, "/").status, 200);
}

/// shardlet's server carries out no protocol switch (hyper's upgrades need
/// a `Send` connection), so a handler's 101 would tell the client a switch
/// happened that never does (RFC 9110 §15.2.2): it is a 500, logged, and
/// the connection goes on serving. Before: the 101 went out and the
/// connection closed.
#[test]
fn a_handlers_101_is_a_500() {
    let server = start(Limits::default());
    let raw = b"GET /switch HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_500_then_serves_on(server.addr(), raw);
}

/// Sends `raw` on a new connection: the answer is a 500, and the same
/// connection then answers a plain GET with a 200.
fn assert_500_then_serves_on(addr: SocketAddr, raw: &[u8]) {
    let mut conn = Conn::open(addr);
    let reply = conn.roundtrip(raw).unwrap();
    assert_eq!(reply.status, 500, "{reply:?}");
    let again = conn.roundtrip(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        again.map(|r| r.status).ok(),
        Some(200),
        "the connection serves on"
    );
}

/// A 2xx to CONNECT says the tunnel is open: the connection carries the
/// client's bytes to the target from then on (RFC 9110 §9.3.6), which
/// shardlet's server cannot do (no upgrades, as for a 101). A handler's 2xx
/// to CONNECT is a 500, logged, and the connection goes on; its other
/// answers (a 405 here) go out as they are. Before: the 200 went out with no
/// length, the handler's body after it as if from the tunnel, then a close.
#[test]
fn a_handlers_2xx_to_connect_is_a_500() {
    let server = start(Limits::default());
    assert_500_then_serves_on(server.addr(), b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n");
    let mut conn = Conn::open(server.addr());
    let reply = conn
        .roundtrip(b"CONNECT refuse:443 HTTP/1.1\r\nHost: refuse:443\r\n\r\n")
        .unwrap();
    assert_eq!(reply.status, 405, "{reply:?}");
}

/// Any other 1xx as a handler's final answer (here 103 Early Hints) is a
/// 500 too, and the connection serves on, as after a 101 (RFC 9110 §15.2:
/// a 1xx is interim). Before: hyper turned it into a 500 but failed the
/// connection and closed it (and over HTTP/2 the 103 went out as if final).
#[test]
fn a_handlers_other_1xx_is_a_500_and_the_connection_serves_on() {
    let server = start(Limits::default());
    assert_500_then_serves_on(server.addr(), b"GET /early HTTP/1.1\r\nHost: t\r\n\r\n");
}

/// RFC 9110 §4.2.4: userinfo (`user:password@`) in a received target is
/// treated as an error, as nginx does (400): no request target carries it,
/// and a handler must not be left to route by a host that follows one.
/// Before: the userinfo was stripped and the request served.
#[test]
fn a_target_with_userinfo_is_400() {
    let server = start(Limits::default());
    let addr = server.addr();
    for (method, target) in [
        ("GET", "http://user@a.example/host"),
        ("GET", "http://user:secret@a.example:8080/host"),
        ("CONNECT", "user@a.example:443"),
    ] {
        let reply = request(
            addr,
            format!("{method} {target} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(reply.status, 400, "{method} {target}: {reply:?}");
    }
    assert_eq!(http_util::get(addr, "/").status, 200);
}
