//! `http::Client` and redirects: followed up to the limit, loops, 303 and
//! 307 with a `POST`, a missing or non-HTTP `Location`, a streamed body
//! (never sent again), `HEAD` after a 303, and the fields that stay with
//! their origin.

#[path = "util/origin.rs"]
mod origin;
mod util;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use origin::{raw, respond, Next, TestServer};
use shardlet::http::client::Body;
use shardlet::http::{Client, ErrorKind, ResponseExt};

fn client() -> Client {
    Client::builder()
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn redirects_are_followed_up_to_the_limit() {
    let server = TestServer::start(|req, out| {
        let path = req.path.as_str();
        match path {
            "/loop" => respond(out, 302, &[("Location", "/loop")], b""),
            "/hop/3" => respond(out, 200, &[], format!("arrived by {}", req.method).as_bytes()),
            "/post" => respond(out, 303, &[("Location", "hop/3")], b""),
            "/keep-post" => respond(out, 307, &[("Location", "/echo")], b""),
            "/echo" => respond(out, 200, &[], &req.body),
            "/nowhere" => respond(out, 301, &[], b"no location"),
            "/bad" => respond(out, 302, &[("Location", "ftp://example.com/")], b""),
            _ => {
                let n: u32 = path.trim_start_matches("/hop/").parse().unwrap();
                respond(out, 301, &[("Location", &format!("/hop/{}", n + 1))], b"")
            }
        }
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = client();
            let r = c.get(&format!("{base}/hop/0")).await.unwrap();
            assert_eq!(
                (r.status().as_u16(), r.body().as_ref()),
                (200, &b"arrived by GET"[..])
            );
            assert_eq!(r.url().path(), "/hop/3");

            let err = c.get(&format!("{base}/loop")).await.unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::TooManyRedirects { limit: 5 }),
                "{err}"
            );
            assert!(err.to_string().contains("/loop: more than 5 redirects"), "{err}");

            let two = Client::builder().max_redirects(2).build().unwrap();
            assert!(matches!(
                two.get(&format!("{base}/hop/0")).await.unwrap_err().kind(),
                ErrorKind::TooManyRedirects { limit: 2 }
            ));
            let none = Client::builder().max_redirects(0).build().unwrap();
            let r = none.get(&format!("{base}/loop")).await.unwrap();
            assert_eq!(
                (
                    r.status().as_u16(),
                    r.headers().get("location").unwrap().to_str().unwrap()
                ),
                (302, "/loop")
            );

            let r = c
                .post(&format!("{base}/post"), "text/plain", "data")
                .await
                .unwrap();
            assert_eq!(
                r.body().as_ref(),
                b"arrived by GET",
                "303 turns a POST into a GET"
            );
            let r = c
                .post(&format!("{base}/keep-post"), "text/plain", "data")
                .await
                .unwrap();
            assert_eq!(r.body().as_ref(), b"data", "307 repeats the POST");

            let r = c.get(&format!("{base}/nowhere")).await.unwrap();
            assert_eq!(
                (r.status().as_u16(), r.body().as_ref()),
                (301, &b"no location"[..])
            );
            let err = c.get(&format!("{base}/bad")).await.unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::Protocol(m) if m.contains("non-HTTP")),
                "{err}"
            );
        }
    });
    // The loop went round exactly 6 times: the first request and 5 redirects.
    assert_eq!(server.hits()["/loop"], 6 + 1);
}

/// A redirect that keeps the method (301 and 302 for a `PUT` or `DELETE`,
/// 307 and 308 for any) must send the body again; a streamed body cannot
/// be, so the redirect is the answer. Before: a `PUT` streamed to a 302 was
/// sent again with an empty body.
#[test]
fn a_streamed_body_is_never_sent_again_without_its_bytes() {
    let server = TestServer::start(|req, out| match req.path.as_str() {
        "/found" => respond(out, 302, &[("Location", "/echo")], b"moved"),
        "/moved" => respond(out, 301, &[("Location", "/echo")], b"moved"),
        _ => respond(out, 200, &[], format!("{} {:?}", req.method, req.body).as_bytes()),
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = client();
            let streamed = || Body::stream(Full::new(Bytes::from_static(b"hello")));
            for (method, path, status) in [("PUT", "/found", 302), ("DELETE", "/moved", 301)] {
                let request = ::http::Request::builder()
                    .method(method)
                    .uri(format!("{base}{path}"))
                    .body(streamed())
                    .unwrap();
                let r = c.send(request).await.unwrap();
                assert_eq!(
                    (r.status().as_u16(), r.body().as_ref(), r.url().path()),
                    (status, &b"moved"[..], path),
                    "{method} {path}: the redirect is the answer"
                );
            }
            // A body in full is sent again, with the method.
            let request = ::http::Request::put(format!("{base}/found"))
                .body(Bytes::from_static(b"hello"))
                .unwrap();
            let r = c.send(request).await.unwrap();
            assert_eq!(r.text(), format!("PUT {:?}", b"hello".to_vec()));
        }
    });
    assert_eq!(
        server.hits().get("/echo"),
        Some(&1),
        "only the full body was sent on"
    );
}

/// A `HEAD` answered 303 stays a `HEAD` (RFC 9110 §15.4.4; curl and
/// reqwest keep it). Before: it became a `GET`, and the caller of `head()`
/// got the body.
#[test]
fn head_stays_head_after_a_303() {
    let server = TestServer::start(|req, out| match req.path.as_str() {
        "/see-other" => respond(out, 303, &[("Location", "/target")], b""),
        _ => respond(out, 200, &[("X-Method", &req.method)], req.method.as_bytes()),
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let r = client().head(&format!("{base}/see-other")).await.unwrap();
            assert_eq!(
                (r.status().as_u16(), r.url().path(), r.body().as_ref()),
                (200, "/target", &b""[..])
            );
            assert_eq!(r.headers()["x-method"], "HEAD");
        }
    });
    let methods: Vec<_> = server.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["HEAD", "HEAD"]);
}

/// A redirect to another origin must not carry the credentials or cookies
/// meant for the first; one to the same origin keeps them. Before:
/// `Proxy-Authorization` (and `Cookie2`, `WWW-Authenticate`) went on to the
/// other origin.
#[test]
fn credentials_stay_with_their_origin() {
    let other = TestServer::start(|_, out| respond(out, 200, &[], b"other"));
    let elsewhere = other.url("/landed");
    let server = TestServer::start(move |req, out| match req.path.as_str() {
        "/away" => respond(out, 302, &[("Location", &elsewhere)], b""),
        "/stay" => respond(out, 302, &[("Location", "/landed")], b""),
        _ => respond(out, 200, &[], b"same"),
    });
    let base = server.url("");
    const FIELDS: [&str; 5] = [
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "cookie",
        "cookie2",
    ];
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = client();
            for path in ["/away", "/stay"] {
                let mut request = ::http::Request::get(format!("{base}{path}"));
                for name in FIELDS {
                    request = request.header(name, "secret");
                }
                let r = c.send(request.body(()).unwrap()).await.unwrap();
                assert_eq!(r.status(), 200, "{path}");
            }
        }
    });
    let landed = &other.requests()[0];
    for name in FIELDS {
        assert_eq!(landed.header(name), None, "{name} went to another origin");
    }
    let same = server.requests();
    let same = same.iter().find(|r| r.path == "/landed").unwrap();
    for name in FIELDS {
        assert_eq!(
            same.header(name),
            Some("secret"),
            "{name} dropped on the same origin"
        );
    }
}

/// A `Location` with bytes that are not UTF-8 (a Latin-1 `é`) is followed
/// to those bytes, percent-encoded, as curl does. Before: each was replaced
/// by U+FFFD, and the redirect went to `/caf%EF%BF%BD`.
#[test]
fn a_location_that_is_not_utf8_keeps_its_bytes() {
    let server = TestServer::start(|req, out| match req.path.as_str() {
        "/latin" => origin::raw(
            out,
            b"HTTP/1.1 302 Found\r\nLocation: /caf\xe9?q=\xff\r\nContent-Length: 0\r\n\r\n",
        )
        .map(|()| origin::Next::KeepOpen),
        path => respond(out, 200, &[], path.as_bytes()),
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let r = client().get(&format!("{base}/latin")).await.unwrap();
            assert_eq!(r.body().as_ref(), b"/caf%E9?q=%FF");
        }
    });
}

/// A redirect whose body is still on its way (a stalled chunked body) is
/// followed at once: its body is not read, its connection not kept, and a
/// small body that came with the head leaves the connection to serve the
/// next hop. Before: the redirect's body was read whole first, so a
/// stalled one held the request until its limit.
#[test]
fn a_redirect_is_followed_without_waiting_for_its_body() {
    let server = TestServer::start(|req, out| match req.path.as_str() {
        "/stalls" => {
            raw(
                out,
                b"HTTP/1.1 302 Found\r\nLocation: /there\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n",
            )?;
            std::thread::sleep(Duration::from_secs(5));
            Ok(Next::Close)
        }
        // Head and body in one write: the body comes with the head.
        "/small" => raw(
            out,
            b"HTTP/1.1 302 Found\r\nLocation: /there\r\nContent-Length: 11\r\n\r\nmoved there",
        )
        .map(|()| Next::KeepOpen),
        _ => respond(out, 200, &[], b"there"),
    });
    let (stalls, small) = (server.url("/stalls"), server.url("/small"));
    util::run1(move || {
        let (stalls, small) = (stalls.clone(), small.clone());
        async move {
            let c = Client::builder()
                .request_timeout(Duration::from_secs(3))
                .build()
                .unwrap();
            let start = std::time::Instant::now();
            let answer = c.get(&stalls).await.unwrap();
            assert_eq!(answer.text(), "there");
            assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
            let before = c.stats();
            assert_eq!(c.get(&small).await.unwrap().text(), "there");
            let after = c.stats();
            assert_eq!(
                after.connections - before.connections,
                0,
                "the small redirect's connection (or the one before) served its next hop"
            );
        }
    });
}
