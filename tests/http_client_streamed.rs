//! `http::Client::send_streamed`: an answer's body read as it comes, under
//! the client's body and read limits, its connection back in the pool only
//! once the body was read to its end.

#[path = "util/origin.rs"]
mod origin;
mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use origin::{raw, respond, Next, TestServer};
use shardlet::http::{Client, Error, ErrorKind, Phase, Streamed};

fn get(url: &str) -> http::Request<()> {
    http::Request::get(url).body(()).unwrap()
}

/// Reads `body` to its end: the number of pieces and of bytes.
async fn read_all(body: &mut Streamed) -> Result<(usize, usize), Error> {
    let (mut pieces, mut bytes) = (0, 0);
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            pieces += 1;
            bytes += data.len();
        }
    }
    Ok((pieces, bytes))
}

/// A chunked answer of `pieces` pieces of 64 KiB, each `pause` apart.
fn chunked(out: &mut dyn Write, pieces: usize, pause: Duration) -> std::io::Result<()> {
    raw(out, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    let piece = vec![b'p'; 64 << 10];
    for _ in 0..pieces {
        raw(out, format!("{:x}\r\n", piece.len()).as_bytes())?;
        raw(out, &piece)?;
        raw(out, b"\r\n")?;
        out.flush()?;
        std::thread::sleep(pause);
    }
    raw(out, b"0\r\n\r\n")
}

/// A server that answers `/big` with `pieces` chunked pieces of 64 KiB and
/// anything else with `small`, keeping its connections open; with the
/// URLs of both.
fn big_and_small(pieces: usize) -> (TestServer, String, String) {
    let server = TestServer::start(move |req, out| {
        match req.path.as_str() {
            "/big" => chunked(out, pieces, Duration::ZERO)?,
            _ => respond(out, 200, &[], b"small").map(drop)?,
        }
        Ok(Next::KeepOpen)
    });
    let (big, small) = (server.url("/big"), server.url("/small"));
    (server, big, small)
}

/// An answer larger than the body limit streams whole when it is read as
/// it comes and passes the limit only if the client's `max_body` says so;
/// read to its end, its connection serves the next request.
#[test]
fn a_body_read_as_it_comes_and_its_connection_kept() {
    let (server, big, small) = big_and_small(64); // 4 MiB
    util::run1(move || {
        let (big, small) = (big.clone(), small.clone());
        async move {
            let client = Client::builder().max_body(8 << 20).build().unwrap();
            let answer = client.send_streamed(get(&big)).await.unwrap();
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.body().url().as_str(), big);
            let mut body = answer.into_body();
            let (pieces, bytes) = read_all(&mut body).await.unwrap();
            assert_eq!(bytes, 4 << 20);
            assert!(pieces > 1, "read as it came");
            assert_eq!(client.stats().idle, 1, "back in the pool at the end");
            let again = client.get(&small).await.unwrap();
            assert_eq!(again.body().as_ref(), b"small");
            assert_eq!(client.stats().reused, 1);
        }
    });
    assert_eq!(server.accepted(), 1);
}

/// The body limit holds while the body streams, and at once for a
/// `Content-Length` past it; an error names the URL.
#[test]
fn the_body_limit_holds_while_streaming() {
    let server = TestServer::start(|req, out| {
        match req.path.as_str() {
            "/chunked" => chunked(out, 4, Duration::ZERO)?,
            _ => {
                raw(out, b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")?;
                return Ok(Next::Close);
            }
        }
        Ok(Next::KeepOpen)
    });
    let (chunked_url, sized) = (server.url("/chunked"), server.url("/sized"));
    util::run1(move || {
        let (chunked_url, sized) = (chunked_url.clone(), sized.clone());
        async move {
            let client = Client::builder().max_body(100 << 10).build().unwrap();
            let mut body = client.send_streamed(get(&chunked_url)).await.unwrap().into_body();
            let err = read_all(&mut body).await.unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::TooLarge { limit } if *limit == 100 << 10),
                "{err}"
            );
            assert_eq!(err.url(), chunked_url);
            assert!(body.frame().await.is_none(), "ended by the error");
            let err = client.send_streamed(get(&sized)).await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::TooLarge { .. }), "{err}");
            assert_eq!(client.stats().idle, 0);
        }
    });
}

/// Each piece comes within `read_timeout`, or the body ends with a read
/// time-out; pieces that keep coming are not cut short.
#[test]
fn each_piece_comes_within_the_read_limit() {
    let server = TestServer::start(|req, out| {
        match req.path.as_str() {
            "/paced" => chunked(out, 6, Duration::from_millis(150))?,
            _ => {
                raw(
                    out,
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsome\r\n",
                )?;
                out.flush()?;
                std::thread::sleep(Duration::from_secs(3));
            }
        }
        Ok(Next::Close)
    });
    let (paced, stalled) = (server.url("/paced"), server.url("/stalled"));
    util::run1(move || {
        let (paced, stalled) = (paced.clone(), stalled.clone());
        async move {
            let client = Client::builder()
                .read_timeout(Duration::from_millis(400))
                .build()
                .unwrap();
            let mut body = client.send_streamed(get(&paced)).await.unwrap().into_body();
            assert_eq!(
                read_all(&mut body).await.unwrap().1,
                6 * (64 << 10),
                "0.9 s in all, 0.15 s apart"
            );
            let mut body = client.send_streamed(get(&stalled)).await.unwrap().into_body();
            let started = Instant::now();
            let err = read_all(&mut body).await.unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::Timeout {
                        phase: Phase::Read,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        }
    });
}

/// The request's time limit covers its body, however steadily the pieces
/// come; the request's own `Timeout` sets it.
#[test]
fn the_request_limit_covers_the_body() {
    let server = TestServer::start(|_, out| {
        chunked(out, 6, Duration::from_millis(150))?;
        Ok(Next::Close)
    });
    let url = server.url("/paced");
    util::run1(move || {
        let url = url.clone();
        async move {
            let client = Client::builder()
                .request_timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            let mut body = client.get_streamed(&url).await.unwrap().into_body();
            let mut err = None;
            while err.is_none() {
                match body.chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => err = Some(e),
                }
            }
            let err = err.expect("the limit passed before the end");
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::Timeout {
                        phase: Phase::Request,
                        ..
                    }
                ),
                "{err}"
            );
            let mut longer = get(&url);
            longer
                .extensions_mut()
                .insert(shardlet::http::Timeout(Duration::from_secs(10)));
            let mut body = client.send_streamed(longer).await.unwrap().into_body();
            assert_eq!(read_all(&mut body).await.unwrap().1, 6 * (64 << 10));
        }
    });
}

/// A body dropped before its end closes its connection: the next request
/// gets a new one, and none of the old answer's bytes.
#[test]
fn a_body_dropped_early_costs_its_connection() {
    let (server, big, small) = big_and_small(16);
    util::run1(move || {
        let (big, small) = (big.clone(), small.clone());
        async move {
            let client = Client::builder().max_body(8 << 20).build().unwrap();
            let mut body = client.send_streamed(get(&big)).await.unwrap().into_body();
            assert!(body.frame().await.unwrap().unwrap().is_data());
            drop(body);
            assert_eq!(client.stats().idle, 0);
            assert_eq!(client.get(&small).await.unwrap().body().as_ref(), b"small");
            assert_eq!(client.stats().reused, 0);
        }
    });
    assert_eq!(server.accepted(), 2);
}

/// An answer with nothing left to read (a `HEAD`, an empty body, the last
/// byte read without the end seen) leaves its connection in the pool when
/// dropped. Before: each cost its connection.
#[test]
fn a_body_with_nothing_left_keeps_its_connection_when_dropped() {
    let server = TestServer::start(|req, out| {
        match (req.method.as_str(), req.path.as_str()) {
            ("HEAD", _) => raw(out, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")?,
            (_, "/empty") => raw(out, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?,
            _ => respond(out, 200, &[], b"small").map(drop)?,
        }
        Ok(Next::KeepOpen)
    });
    let (empty, small) = (server.url("/empty"), server.url("/small"));
    util::run1(move || {
        let (empty, small) = (empty.clone(), small.clone());
        async move {
            let client = Client::new();
            let head = http::Request::head(&small).body(()).unwrap();
            drop(client.send_streamed(head).await.unwrap());
            drop(client.get_streamed(&empty).await.unwrap());
            let mut body = client.get_streamed(&small).await.unwrap().into_body();
            assert_eq!(&body.chunk().await.unwrap().unwrap()[..], b"small");
            drop(body);
            assert_eq!(client.stats().reused, 2);
            assert_eq!(client.stats().idle, 1);
        }
    });
    assert_eq!(server.accepted(), 1);
}
