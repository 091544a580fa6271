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

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use http_util::{start_http, HttpRunning};
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
        // An answer that never ends.
        "/forever" => {
            let piece = Bytes::from(vec![b'f'; 16 << 10]);
            let pieces = futures_lite::stream::repeat_with(move || Ok(Frame::data(piece.clone())));
            Response::new(Box::pin(StreamBody::new(pieces)))
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
