//! `http::Client` over HTTP/2 (ALPN `h2` on `https`) against a hostile or
//! broken server that writes frames by hand (`util/h2raw.rs`): GOAWAY and
//! resets under a request, endless DATA and CONTINUATION, stream limits of
//! 0 and 1, a window that never opens, PING floods, no SETTINGS, a pooled
//! connection closed while idle, and a burst of first requests.
#![cfg(feature = "tls")]

#[path = "util/h2raw.rs"]
mod h2raw;
#[path = "util/tls.rs"]
mod tls;
mod util;

use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use h2raw::*;
use shardlet::http::{Client, ErrorKind, Timeout};
use shardlet::GreenPool;

fn client(cert: Vec<u8>) -> Client {
    tls::trusting(cert)
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Runs `test` on one shard with a client that trusts `server`, and the
/// URL of `path` on it.
fn with_client<F, Fut>(server: &H2Server, path: &str, test: F)
where
    F: Fn(Client, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (url, cert) = (server.url(path), server.cert.clone());
    util::run1(move || test(client(cert.clone()), url.clone()));
}

/// A request with a time limit of its own.
fn get_within(url: &str, limit: Duration) -> http::Request<()> {
    let mut request = http::Request::get(url).body(()).unwrap();
    request.extensions_mut().insert(Timeout(limit));
    request
}

/// Serves every request on a connection with 200 and `body`.
fn serve_all(c: &mut H2Conn, body: &[u8]) -> std::io::Result<()> {
    loop {
        let req = c.request()?;
        if !req.ended {
            c.body(req.stream)?;
        }
        c.respond(req.stream, 200, body)?;
    }
}

/// DATA past the body limit, and on: a TooLarge error, soon.
#[test]
fn endless_data_stops_at_the_body_limit() {
    let server = H2Server::start(|c| {
        c.preface(&[])?;
        let req = c.request()?;
        c.head(req.stream, 200, &[], false)?;
        let piece = vec![b'x'; 16 << 10];
        for _ in 0..4096 {
            c.send(DATA, 0, req.stream, &piece)?;
        }
        Ok(())
    });
    let (url, cert) = (server.url("/"), server.cert.clone());
    util::run1(move || {
        let (url, cert) = (url.clone(), cert.clone());
        async move {
            let c = Client::builder()
                .webpki_roots(false)
                .add_root_certificate(cert)
                .max_body(256 << 10)
                .build()
                .unwrap();
            let err = c.get(&url).await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::TooLarge { .. }), "{err}");
        }
    });
}

/// A header block that never ends (CONTINUATION after CONTINUATION): an
/// error, not memory without bound or a hang.
#[test]
fn an_endless_header_block_is_an_error() {
    let server = H2Server::start(|c| {
        c.preface(&[])?;
        let req = c.request()?;
        let mut block = Vec::new();
        literal(&mut block, ":status", "200");
        c.send(HEADERS, 0, req.stream, &block)?;
        let mut piece = Vec::new();
        literal(&mut piece, "x-junk", &"j".repeat(4000));
        for _ in 0..10_000 {
            c.send(CONTINUATION, 0, req.stream, &piece)?;
        }
        Ok(())
    });
    with_client(&server, "/", |c, url| async move {
        let err = c
            .send(get_within(&url, Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(!err.is_timeout(), "{err}");
    });
}

/// A head within the client's `max_head` is read over HTTP/2 as over
/// HTTP/1.1, and one past it is refused.
#[test]
fn max_head_holds_on_http2() {
    let server = H2Server::start(|c| {
        c.preface(&[])?;
        loop {
            let req = c.request()?;
            c.head(req.stream, 200, &[("x-big", &"b".repeat(30_000))], true)?;
        }
    });
    let (url, cert) = (server.url("/"), server.cert.clone());
    util::run1(move || {
        let (url, cert) = (url.clone(), cert.clone());
        async move {
            let roomy = Client::builder()
                .webpki_roots(false)
                .add_root_certificate(cert.clone())
                .max_head(64 << 10)
                .build()
                .unwrap();
            let r = roomy
                .get(&url)
                .await
                .unwrap_or_else(|e| panic!("64 KiB allowed: {e}"));
            assert_eq!(r.headers()["x-big"].len(), 30_000);
            let tight = Client::builder()
                .webpki_roots(false)
                .add_root_certificate(cert)
                .max_head(8 << 10)
                .build()
                .unwrap();
            assert!(tight.get(&url).await.is_err());
        }
    });
}

/// SETTINGS_MAX_CONCURRENT_STREAMS 1: many requests on the one connection
/// wait their turn and all get their answer.
#[test]
fn one_stream_at_a_time_serves_every_request() {
    let server = H2Server::start(|c| {
        c.preface(&[(SETTINGS_MAX_CONCURRENT_STREAMS, 1)])?;
        loop {
            let req = c.request()?;
            std::thread::sleep(Duration::from_millis(5));
            c.respond(req.stream, 200, b"turn")?;
        }
    });
    with_client(&server, "/", |c, url| async move {
        assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"turn");
        let pool = GreenPool::new(16);
        let (c2, u2) = (c.clone(), url.clone());
        let ok = pool
            .imap(0..32, move |_| {
                let (c, u) = (c2.clone(), u2.clone());
                async move { c.get(&u).await.is_ok() }
            })
            .map(Result::unwrap)
            .filter(|ok| *ok)
            .count()
            .await;
        assert_eq!(ok, 32);
    });
    assert_eq!(server.accepted(), 1);
}

/// SETTINGS_MAX_CONCURRENT_STREAMS 0: requests wait, and end by their own
/// time limit, not never.
#[test]
fn no_streams_allowed_ends_by_the_time_limit() {
    let server = H2Server::start(|c| {
        c.preface(&[(SETTINGS_MAX_CONCURRENT_STREAMS, 0)])?;
        c.drain();
        Ok(())
    });
    with_client(&server, "/", |c, url| async move {
        let start = Instant::now();
        let err = c
            .send(get_within(&url, Duration::from_millis(500)))
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    });
}

/// A window that never opens (initial window 0, no WINDOW_UPDATE) during an
/// upload: the request ends by its time limit.
#[test]
fn an_upload_into_a_closed_window_ends_by_the_time_limit() {
    let server = H2Server::start(|c| {
        c.preface(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)])?;
        c.drain();
        Ok(())
    });
    with_client(&server, "/", |c, url| async move {
        let mut request = http::Request::put(&url).body(vec![b'u'; 1 << 20]).unwrap();
        request
            .extensions_mut()
            .insert(Timeout(Duration::from_millis(500)));
        let err = c.send(request).await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
    });
}

/// A PING flood before the answer: the answer still comes.
#[test]
fn a_ping_flood_does_not_stop_the_answer() {
    let server = H2Server::start(|c| {
        c.preface(&[])?;
        let req = c.request()?;
        for i in 0u64..20_000 {
            c.send(PING, 0, 0, &i.to_be_bytes())?;
        }
        c.respond(req.stream, 200, b"pong")?;
        c.drain();
        Ok(())
    });
    with_client(&server, "/", |c, url| async move {
        assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"pong");
    });
}

/// A server that never sends its SETTINGS (nor anything else): the request
/// ends by its time limit.
#[test]
fn no_settings_ends_by_the_time_limit() {
    let server = H2Server::start(|c| {
        c.preface_only()?;
        c.drain();
        Ok(())
    });
    with_client(&server, "/", |c, url| async move {
        let err = c
            .send(get_within(&url, Duration::from_millis(500)))
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
    });
}

/// A pooled HTTP/2 connection the server closed while idle (GOAWAY, then
/// the socket): the next request goes on a new one.
#[test]
fn a_pooled_connection_closed_while_idle_is_replaced() {
    let server = H2Server::start(|c| {
        c.preface(&[])?;
        if c.conn == 1 {
            let req = c.request()?;
            c.respond(req.stream, 200, b"first")?;
            std::thread::sleep(Duration::from_millis(50));
            c.goaway(req.stream, NO_ERROR)?;
            return Ok(());
        }
        serve_all(c, b"second")
    });
    with_client(&server, "/", |c, url| async move {
        assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"first");
        shardlet::sleep(Duration::from_millis(300)).await;
        let r = c.get(&url).await.unwrap();
        assert_eq!(r.body().as_ref(), b"second");
    });
}

/// A TLS handshake that stalls (the server accepts and says nothing): the
/// request's own limit ends it.
#[test]
fn a_stalled_tls_handshake_ends_by_the_request_limit() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://localhost:{}/", listener.local_addr().unwrap().port());
    let hold = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(s);
    });
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = Client::builder().webpki_roots(false).build().unwrap();
            let start = Instant::now();
            let err = c
                .send(get_within(&url, Duration::from_millis(400)))
                .await
                .unwrap_err();
            assert!(err.is_timeout(), "{err}");
            assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        }
    });
    hold.join().unwrap();
}

/// RFC 9113 §6.8: a GOAWAY whose last stream id is below a request's says
/// the server never processed it; the request can be sent again on another
/// connection (the first connection answers its first request, then goes
/// away under the second).
#[test]
fn a_request_beyond_a_goaway_is_sent_again_on_a_new_connection() {
    let server = H2Server::start(|c| {
        c.preface(&[])?;
        if c.conn == 1 {
            let first = c.request()?;
            c.respond(first.stream, 200, b"first")?;
            let second = c.request()?;
            c.goaway(second.stream - 2, NO_ERROR)?;
            c.drain();
            return Ok(());
        }
        serve_all(c, b"again")
    });
    with_client(&server, "/", |c, url| async move {
        assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"first");
        let r = c.get(&url).await.unwrap_or_else(|e| panic!("not retried: {e}"));
        assert_eq!(r.body().as_ref(), b"again");
    });
    assert_eq!(server.accepted(), 2);
}

/// On HTTP/2 a 408 is its stream's answer, the connection open: it is not
/// sent again (on HTTP/1.1 a 408 on a reused connection is the server
/// closing it without the request). Before: the POST reached the server
/// twice.
#[test]
fn an_http2_408_on_a_reused_connection_is_the_answer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let seen = Arc::new(AtomicUsize::new(0));
    let server = H2Server::start({
        let seen = seen.clone();
        move |c| {
            c.preface(&[])?;
            let mut n = 0;
            loop {
                let req = c.request()?;
                if !req.ended {
                    c.body(req.stream)?;
                }
                n += 1;
                seen.fetch_add(1, Ordering::SeqCst);
                if c.conn == 1 && n == 2 {
                    c.respond(req.stream, 408, b"")?;
                } else {
                    c.respond(req.stream, 200, b"ok")?;
                }
            }
        }
    });
    with_client(&server, "/", |c, url| async move {
        assert_eq!(c.get(&url).await.unwrap().status(), 200);
        let post = c.post(&url, "text/plain", "pay once").await.unwrap();
        assert_eq!(post.status(), 408);
    });
    assert_eq!(seen.load(Ordering::SeqCst), 2, "the POST reached the server once");
    assert_eq!(server.accepted(), 1);
}

/// RFC 9113 §8.7: a stream reset with REFUSED_STREAM was not processed;
/// the request can be sent again, whatever its method.
#[test]
fn a_refused_stream_is_sent_again() {
    let server = H2Server::start(|c| {
        c.preface(&[])?;
        if c.conn == 1 {
            let first = c.request()?;
            c.respond(first.stream, 200, b"first")?;
            let second = c.request()?;
            c.reset(second.stream, REFUSED_STREAM)?;
        }
        serve_all(c, b"again")
    });
    with_client(&server, "/", |c, url| async move {
        assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"first");
        let r = c.get(&url).await.unwrap_or_else(|e| panic!("not retried: {e}"));
        assert_eq!(r.body().as_ref(), b"again");
        // Whatever the method: the server says it did not process it.
        let r = c.post(&url, "text/plain", "once").await;
        let r = r.unwrap_or_else(|e| panic!("POST not retried: {e}"));
        assert_eq!(r.body().as_ref(), b"again");
    });
}

/// A pooled HTTP/2 connection closed (no GOAWAY, no TLS close_notify) just
/// as the next request arrives: an idempotent request is sent again.
#[test]
fn a_pooled_connection_cut_under_a_request_is_retried() {
    let server = H2Server::start(|c| {
        c.preface(&[])?;
        if c.conn == 1 {
            let req = c.request()?;
            c.respond(req.stream, 200, b"first")?;
            c.request()?;
            return Ok(()); // dropped: a TLS close and a FIN, no answer
        }
        serve_all(c, b"second")
    });
    with_client(&server, "/", |c, url| async move {
        assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"first");
        let r = c.get(&url).await.unwrap_or_else(|e| panic!("not retried: {e}"));
        assert_eq!(r.body().as_ref(), b"second");
    });
}

/// A POST the server did process (its stream within the GOAWAY's last one),
/// cut off with no answer: an error, never sent twice.
#[test]
fn a_post_within_a_goaway_is_not_sent_again() {
    let server = H2Server::start(|c| {
        c.preface(&[])?;
        let req = c.request()?;
        c.body(req.stream)?;
        c.goaway(req.stream, NO_ERROR)?;
        Ok(())
    });
    with_client(&server, "/", |c, url| async move {
        assert!(c.post(&url, "text/plain", "once").await.is_err());
        assert_eq!(c.stats().requests, 1, "{:?}", c.stats());
    });
    assert_eq!(server.accepted(), 1);
}
