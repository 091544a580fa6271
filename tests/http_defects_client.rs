//! Regression tests for the client-side defects of issue 10, against raw
//! origin servers on loopback. Each failed on the hand-written HTTP layer
//! that hyper replaced (checked by running this file, with the response
//! accessors of the old API, on main before the change; the failure is
//! noted in each test).

#[path = "util/origin.rs"]
mod origin;
mod util;

use std::time::Duration;

use origin::{raw, respond, Next, TestServer};
use shardlet::http::{Client, ErrorKind};

fn client() -> Client {
    Client::builder()
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Defect 1, response desync: bytes that arrive on an idle pooled
/// connection must not be read as the next request's response. A server
/// that sends `408` before closing an idle connection made the next `GET`
/// report 408 for a request it never received. Before: the second `GET`
/// got that 408.
#[test]
fn an_unsolicited_408_on_an_idle_connection_is_not_the_next_answer() {
    let server = TestServer::start(|req, out| {
        respond(out, 200, &[], format!("answer to {}", req.path).as_bytes())?;
        if req.conn == 1 {
            // The first connection goes idle, then the server gives up on it.
            std::thread::sleep(Duration::from_millis(50));
            raw(
                out,
                b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            std::thread::sleep(Duration::from_millis(500));
            return Ok(Next::Close);
        }
        Ok(Next::KeepOpen)
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = client();
            let first = c.get(&format!("{base}/one")).await.unwrap();
            assert_eq!(first.status(), 200);
            shardlet::sleep(Duration::from_millis(200)).await;
            for path in ["/two", "/three"] {
                let r = c.get(&format!("{base}{path}")).await.unwrap();
                assert_eq!(
                    (r.status().as_u16(), r.body().as_ref()),
                    (200, format!("answer to {path}").as_bytes()),
                    "{path} got another request's answer"
                );
            }
        }
    });
    assert_eq!(server.accepted(), 2);
}

/// Defect 1, the other face: a `204` whose stray body arrives late. The
/// next request must not read those bytes as its response. Before: the
/// next request failed with "invalid HTTP version".
#[test]
fn a_late_stray_body_after_204_is_not_the_next_answer() {
    let server = TestServer::start(|req, out| {
        if req.path == "/empty" {
            raw(out, b"HTTP/1.1 204 No Content\r\n\r\n")?;
            std::thread::sleep(Duration::from_millis(50));
            raw(out, b"stray bytes the client never asked for")?;
            return Ok(Next::KeepOpen);
        }
        respond(out, 200, &[], b"fine")
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = client();
            assert_eq!(c.get(&format!("{base}/empty")).await.unwrap().status(), 204);
            shardlet::sleep(Duration::from_millis(200)).await;
            let r = c.get(&format!("{base}/next")).await.unwrap();
            assert_eq!((r.status().as_u16(), r.body().as_ref()), (200, &b"fine"[..]));
        }
    });
}

/// Defect 2, client side: lenient chunked parsing of responses (a bare LF
/// ending a chunk-size or chunk-data line, `5\r\r\n`, ` 5`, a trailer line
/// that is not a field). Each must be a protocol error. Before: every one
/// was read as `hello`.
#[test]
fn lenient_chunked_responses_are_protocol_errors() {
    let server = TestServer::start(|req, out| {
        let body: &[u8] = match req.path.as_str() {
            "/bare-lf" => b"5\nhello\n0\n\n",
            "/cr-cr-lf" => b"5\r\r\nhello\r\n0\r\n\r\n",
            "/space" => b" 5\r\nhello\r\n0\r\n\r\n",
            "/data-lf" => b"5\r\nhello\n0\r\n\r\n",
            _ => b"5\r\nhello\r\n0\r\nnot a field\r\n\r\n",
        };
        raw(out, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
        raw(out, body)?;
        Ok(Next::Close)
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = client();
            for path in ["/bare-lf", "/cr-cr-lf", "/space", "/data-lf", "/trailer"] {
                let url = format!("{base}{path}");
                match c.get(&url).await {
                    Err(err) => assert!(matches!(err.kind(), ErrorKind::Protocol(_)), "{path}: {err}"),
                    Ok(r) => panic!("{path} was accepted: {:?}", r.body()),
                }
            }
        }
    });
}
