//! `http::Client` against servers the tests start on loopback: bodies framed
//! every way, keep-alive, time limits, broken and hostile servers, redirects,
//! and the input order of the client pattern.

#[path = "util/origin.rs"]
mod origin;
mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use origin::{raw, refused_url, respond, Next, TestServer};
use shardlet::http::{self, Client, ErrorKind, Phase, ResponseExt};
use shardlet::GreenPool;

fn client() -> Client {
    Client::builder()
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn ok(body: &'static [u8]) -> impl Fn(&origin::Request, &mut dyn Write) -> std::io::Result<Next> {
    move |_, out| respond(out, 200, &[("Content-Type", "text/plain")], body)
}

/// `err` is a time-out of `phase`.
#[track_caller]
fn assert_timed_out(err: &http::Error, phase: Phase) {
    assert!(
        matches!(err.kind(), ErrorKind::Timeout { phase: p, .. } if *p == phase),
        "{err}"
    );
}

#[test]
fn smoke_plain_get() {
    let server = TestServer::start(|req, out| respond(out, 200, &[("X-Path", &req.path)], b"hello"));
    let url = server.url("/a/b?q=1#frag");
    util::run1(move || {
        let url = url.clone();
        async move {
            let r = http::get(&url).await.unwrap();
            assert_eq!(
                (r.status().as_u16(), r.version()),
                (200, ::http::Version::HTTP_11)
            );
            assert_eq!(r.body().as_ref(), b"hello");
            assert_eq!(r.text(), "hello");
            assert!(r.status().is_success());
            assert_eq!(
                r.headers().get("x-path").map(|v| v.to_str().unwrap()),
                Some("/a/b?q=1"),
                "no fragment on the wire"
            );
            assert_eq!(r.url().as_str(), url);
        }
    });
    let req = &server.requests()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.header("host"), Some(server.addr.to_string().as_str()));
    assert!(req.header("user-agent").unwrap().starts_with("shardlet/"));
}

#[test]
fn chunked_body_in_pieces_with_trailers() {
    let server = TestServer::start(|_, out| {
        raw(out, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
        for piece in [
            &b"5\r\nhel"[..],
            b"lo\r\n",
            b"7;ext=1\r\n, world\r\n",
            b"0\r\nX-Trailer: 1\r\n",
            b"\r\n",
        ] {
            std::thread::sleep(Duration::from_millis(5));
            raw(out, piece)?;
        }
        Ok(Next::KeepOpen)
    });
    let url = server.url("/");
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = client();
            for _ in 0..3 {
                assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"hello, world");
            }
            assert_eq!(
                c.stats().connections,
                1,
                "a chunked body leaves the connection reusable"
            );
        }
    });
    assert_eq!(server.accepted(), 1);
}

#[test]
fn body_until_close_is_read_and_the_connection_not_reused() {
    let server = TestServer::start(|_, out| {
        raw(out, b"HTTP/1.0 200 OK\r\n\r\nuntil the end")?;
        Ok(Next::Close)
    });
    let url = server.url("/");
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = client();
            for _ in 0..2 {
                let r = c.get(&url).await.unwrap();
                assert_eq!(
                    (r.version(), r.body().as_ref()),
                    (::http::Version::HTTP_10, &b"until the end"[..])
                );
            }
        }
    });
    assert_eq!(server.accepted(), 2);
}

#[test]
fn keep_alive_reuses_connections() {
    let server = TestServer::start(|req, out| respond(out, 200, &[], req.path.as_bytes()));
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = client();
            for i in 0..20 {
                let url = format!("{base}/seq/{i}");
                assert_eq!(
                    c.get(&url).await.unwrap().body().as_ref(),
                    format!("/seq/{i}").as_bytes()
                );
            }
            assert_eq!(c.stats().connections, 1);
            assert_eq!(c.stats().reused, 19);
            // Concurrent: never more connections than requests in flight.
            let pool = GreenPool::new(4);
            let c2 = c.clone();
            let bodies: Vec<bytes::Bytes> = pool
                .imap(0..40, move |i| {
                    let (c, url) = (c2.clone(), format!("{base}/par/{i}"));
                    async move { c.get(&url).await.unwrap().into_body() }
                })
                .map(Result::unwrap)
                .collect()
                .await;
            assert_eq!(bodies[39].as_ref(), b"/par/39");
            assert!(c.stats().connections <= 4, "{:?}", c.stats());
            assert!(c.stats().idle >= 1);
        }
    });
    assert!(server.accepted() <= 4, "accepted {}", server.accepted());
    // Every request on a connection after its first one was a reuse.
    assert!(server.requests().iter().filter(|r| r.nth_on_conn > 0).count() >= 56);
}

#[test]
fn connection_close_and_max_idle_zero_mean_a_connection_per_request() {
    let server = TestServer::start(|_, out| respond(out, 200, &[("Connection", "close")], b"x"));
    let plain = TestServer::start(ok(b"y"));
    let (a, b) = (server.url("/"), plain.url("/"));
    util::run1(move || {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let c = client();
            let no_pool = Client::builder().max_idle_per_host(0).build().unwrap();
            for _ in 0..3 {
                assert_eq!(c.get(&a).await.unwrap().body().as_ref(), b"x");
                assert_eq!(no_pool.get(&b).await.unwrap().body().as_ref(), b"y");
            }
        }
    });
    assert_eq!(server.accepted(), 3);
    assert_eq!(plain.accepted(), 3);
}

#[test]
fn a_kept_alive_connection_closed_by_the_server_is_retried() {
    // Claims keep-alive, then hangs up after every response.
    let server = TestServer::start(|_, out| {
        respond(out, 200, &[], b"once")?;
        Ok(Next::Close)
    });
    let url = server.url("/");
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = client();
            for _ in 0..5 {
                util::bounded(async { assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"once") })
                    .await;
                shardlet::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(c.stats().connections, 5);
        }
    });
    assert_eq!(server.accepted(), 5);
}

/// A 408 sent on a kept-alive connection as the next request comes (a
/// server whose idle timer fired just then) is not that request's answer:
/// it is sent again on a new connection, once. A 408 on a new connection is
/// the answer. Before: the second `GET` returned the 408.
#[test]
fn a_408_on_a_reused_connection_is_not_the_answer() {
    let server = TestServer::start(|req, out| {
        if req.path == "/always" {
            respond(out, 408, &[("Connection", "close")], b"")?;
            return Ok(Next::Close);
        }
        if req.nth_on_conn == 0 {
            respond(out, 200, &[], b"fresh")?;
            Ok(Next::KeepOpen)
        } else {
            respond(out, 408, &[("Connection", "close")], b"")?;
            Ok(Next::Close)
        }
    });
    let (url, always) = (server.url("/"), server.url("/always"));
    util::run1(move || {
        let (url, always) = (url.clone(), always.clone());
        async move {
            let c = client();
            assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"fresh");
            let second = c.get(&url).await.unwrap();
            assert_eq!(
                (second.status().as_u16(), second.body().as_ref()),
                (200, &b"fresh"[..])
            );
            // Any method: the server never processed it.
            let post = c.post(&url, "text/plain", "body").await.unwrap();
            assert_eq!(post.status(), 200);
            // Sent again once; the new connection's 408 stands.
            assert_eq!(c.get(&always).await.unwrap().status(), 408);
        }
    });
    assert_eq!(server.accepted(), 4);
}

/// RFC 9112 §6.3: an answer with both `Content-Length` and
/// `Transfer-Encoding` is read as chunked, and its connection is not used
/// again: neither by the next request nor by a redirect's next hop. Before:
/// the next request (or hop) went on it.
#[test]
fn an_answer_framed_twice_leaves_its_connection_out_of_the_pool() {
    let cases: [(&'static [u8], &[u8]); 2] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        // A redirect: its next hop goes out on a new connection.
        (
            b"HTTP/1.1 302 Found\r\nLocation: /plain\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"plain",
        ),
    ];
    for (answer, body) in cases {
        let server = TestServer::start(move |req, out| {
            if req.path == "/twice" {
                raw(out, answer)?;
                return Ok(Next::KeepOpen);
            }
            respond(out, 200, &[], b"plain")?;
            Ok(Next::KeepOpen)
        });
        let (twice, plain) = (server.url("/twice"), server.url("/plain"));
        util::run1(move || {
            let (twice, plain) = (twice.clone(), plain.clone());
            async move {
                let c = client();
                assert_eq!(c.get(&twice).await.unwrap().body().as_ref(), body);
                assert_eq!(c.get(&plain).await.unwrap().body().as_ref(), b"plain");
                assert_eq!(c.get(&plain).await.unwrap().body().as_ref(), b"plain");
                // One connection for the answer framed twice, used once; one
                // for the plain answers, kept.
                let stats = c.stats();
                assert_eq!((stats.connections, stats.reused > 0), (2, true), "{stats:?}");
            }
        });
        assert_eq!(server.accepted(), 2);
    }
}

/// A server that closes each new connection at once: the error says so,
/// names the URL, and comes after one connection or two, not a loop of
/// them. Before: "malformed response: channel closed".
#[test]
fn a_connection_closed_before_the_request_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = client();
            for _ in 0..20 {
                let err = util::bounded(c.get(&url)).await.unwrap_err();
                assert_eq!(err.url(), url);
                // Closed before the request went out, or after (the request
                // written, then a reset, or the end before any response).
                let text = err.to_string();
                assert!(
                    text.contains("the server closed the connection before the request was sent")
                        || text.contains("Connection reset by peer")
                        || text.contains("connection closed before message completed"),
                    "{text}"
                );
            }
        }
    });
    let accepted = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(accepted <= 40, "{accepted} connections for 20 requests");
}

/// A URL that `url` takes but `http::Uri` refuses (a path over 64 KiB) is
/// a bad URL before any connection is made or taken. Before: it took the
/// pooled connection (and dropped it).
#[test]
fn a_request_target_http_refuses_costs_no_connection() {
    let server = TestServer::start(ok(b"fine"));
    let (url, long) = (server.url("/ok"), server.url(&format!("/{}", "a".repeat(70_000))));
    util::run1(move || {
        let (url, long) = (url.clone(), long.clone());
        async move {
            let c = client();
            assert_eq!(c.get(&url).await.unwrap().status(), 200);
            let err = c.get(&long).await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::BadUrl(_)), "{err}");
            assert_eq!(c.get(&url).await.unwrap().status(), 200);
            assert_eq!(
                c.stats().connections,
                1,
                "the kept-alive connection was used again"
            );
        }
    });
    assert_eq!(server.accepted(), 1);
}

#[test]
fn head_and_interim_responses() {
    let server = TestServer::start(|req, out| {
        if req.method == "HEAD" {
            return raw(out, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").map(|_| Next::KeepOpen);
        }
        raw(
            out,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )?;
        Ok(Next::KeepOpen)
    });
    let url = server.url("/");
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = client();
            let head = c.head(&url).await.unwrap();
            assert_eq!((head.status().as_u16(), head.body().len()), (200, 0));
            assert_eq!(head.headers().get("content-length").unwrap(), "1000");
            assert_eq!(c.get(&url).await.unwrap().body().as_ref(), b"ok");
            assert_eq!(c.stats().connections, 1);
        }
    });
}

#[test]
fn slow_servers_hit_the_time_limits() {
    let silent = TestServer::start(|_, _| {
        std::thread::sleep(Duration::from_secs(3));
        Ok(Next::Close)
    });
    let trickle = TestServer::start(|_, out| {
        raw(out, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")?;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(30));
            raw(out, b"x")?;
        }
        Ok(Next::KeepOpen)
    });
    let (silent, trickle) = (silent.url("/silent"), trickle.url("/trickle"));
    util::run1(move || {
        let (silent, trickle) = (silent.clone(), trickle.clone());
        async move {
            // The read limit is well above the trickle's 30 ms between
            // bytes, so that a server thread kept off the CPU for a while
            // does not make it fire.
            let c = Client::builder()
                .read_timeout(Duration::from_millis(800))
                .request_timeout(Duration::from_millis(1500))
                .build()
                .unwrap();
            let start = Instant::now();
            let err = c.get(&silent).await.unwrap_err();
            assert_timed_out(&err, Phase::Read);
            assert!(err.is_timeout());
            assert!(start.elapsed() < Duration::from_millis(2500));
            assert!(err.to_string().starts_with(&silent), "{err}");

            // Bytes keep coming, so the idle limit never fires; the whole-request one does.
            let start = Instant::now();
            let err = c.get(&trickle).await.unwrap_err();
            assert_timed_out(&err, Phase::Request);
            let took = start.elapsed();
            assert!(
                took >= Duration::from_millis(1450) && took < Duration::from_secs(3),
                "{took:?}"
            );
        }
    });
}

/// A request's time limit that passes after a redirect names the hop it
/// passed on, as every other error does. Before: it named the first URL.
#[test]
fn a_request_time_out_after_a_redirect_names_the_hop() {
    let server = TestServer::start(|req, out| {
        if req.path == "/moved" {
            return respond(out, 302, &[("Location", "/slow")], b"");
        }
        std::thread::sleep(Duration::from_secs(3));
        Ok(Next::Close)
    });
    let (moved, slow) = (server.url("/moved"), server.url("/slow"));
    util::run1(move || {
        let (moved, slow) = (moved.clone(), slow.clone());
        async move {
            let c = Client::builder()
                .request_timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            let err = c.get(&moved).await.unwrap_err();
            assert_timed_out(&err, Phase::Request);
            assert_eq!(err.url(), slow, "{err}");
        }
    });
}

/// The idle read limit counts from the last bytes, not from the request's
/// start: a body that stops after 150 ms fails 600 ms later, as a read
/// time-out, with the request's own (longer) limit not yet reached. (Counted
/// from the start it would fail at 600 ms. A server thread kept off the CPU
/// for up to 450 ms before its second write only makes the right answer later.) (The
/// client keeps both limits on one timer, first armed for the earliest
/// moment either could pass, then again for the later read deadline.)
#[test]
fn the_read_limit_counts_from_the_last_bytes() {
    let stalls = TestServer::start(|_, out| {
        raw(out, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")?;
        std::thread::sleep(Duration::from_millis(150));
        raw(out, b"some")?;
        std::thread::sleep(Duration::from_secs(4));
        Ok(Next::Close)
    });
    let took = read_times_out(
        stalls.url("/stalls"),
        Duration::from_millis(600),
        Duration::from_secs(3),
    );
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// GETs `url` on one shard with these read and request limits: it must
/// fail as a read time-out. How long that took.
fn read_times_out(url: String, read: Duration, request: Duration) -> Duration {
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = Client::builder()
                .read_timeout(read)
                .request_timeout(request)
                .build()
                .unwrap();
            let start = Instant::now();
            let err = c.get(&url).await.unwrap_err();
            let took = start.elapsed();
            assert_timed_out(&err, Phase::Read);
            took
        }
    })
}

/// A listener that never accepts, its accept queue filled by `fillers`
/// connections: the kernel drops further SYNs (and the client sends its
/// SYN again after 1 s, then 3 s).
fn full_listener(fillers: usize) -> (socket2::Socket, std::net::SocketAddr, Vec<socket2::Socket>) {
    let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let fillers = (0..fillers)
        .map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&addr.into());
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    (listener, addr, fillers)
}

/// The idle read limit still holds for a wait that begins after the
/// request's timer fired with no wait in progress (here during a connect
/// that takes about 1 s: the listener's accept queue is full until 0.5 s,
/// so the first SYN is dropped and the kernel sends it again at 1 s). The
/// server then never answers. Before: the timer, armed again for the
/// request's limit when it fired during the connect, never looked at the
/// later read deadline, and the request failed only at its own limit.
#[test]
fn the_read_limit_holds_after_a_slow_connect() {
    let silent = LateSilentListener::start();
    let addr = silent.addr;
    let took = read_times_out(
        format!("http://{addr}/"),
        Duration::from_millis(300),
        Duration::from_secs(8),
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A listener whose accept queue is full until 0.5 s (so a client's first
/// SYN is dropped and sent again at about 1 s), which then accepts every
/// connection and answers nothing, until dropped.
struct LateSilentListener {
    addr: std::net::SocketAddr,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _fillers: Vec<socket2::Socket>,
}

impl LateSilentListener {
    fn start() -> LateSilentListener {
        let (listener, addr, fillers) = full_listener(2);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let done = done.clone();
            move || {
                std::thread::sleep(Duration::from_millis(500));
                listener.set_nonblocking(true).unwrap();
                let mut held = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, _)) => held.push(s),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        LateSilentListener {
            addr,
            done,
            thread: Some(thread),
            _fillers: fillers,
        }
    }
}

impl Drop for LateSilentListener {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A server that takes one request and reads its body `per_tick` bytes
/// every 20 ms (none: it reads nothing and never answers), then answers
/// 200 with the number of body bytes it read.
fn paced_reader(per_tick: Option<usize>) -> std::net::SocketAddr {
    use std::io::Read;
    let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // A small receive buffer: the pace is the server's, not the kernel's.
    listener.set_recv_buffer_size(64 << 10).unwrap();
    listener
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(8).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let mut conn = std::net::TcpStream::from(socket);
        conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let Some(per_tick) = per_tick else {
            std::thread::sleep(Duration::from_secs(10));
            return;
        };
        let mut seen = Vec::new();
        let mut buf = vec![0u8; per_tick];
        let (mut body, mut length) = (0, None);
        let mut this_tick = 0;
        while length.is_none_or(|length| body < length) {
            if this_tick >= per_tick {
                std::thread::sleep(Duration::from_millis(20));
                this_tick = 0;
            }
            let Ok(n) = conn.read(&mut buf[..per_tick - this_tick]) else {
                return;
            };
            if n == 0 {
                return;
            }
            this_tick += n;
            match length {
                Some(_) => body += n,
                None => {
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        let field = head.lines().find_map(|l| l.strip_prefix("content-length:"));
                        length = Some(field.unwrap().trim().parse::<usize>().unwrap());
                        body = seen.len() - end - 4;
                    }
                }
            }
        }
        let text = body.to_string();
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}", text.len());
        let _ = conn.write_all(answer.as_bytes());
        std::thread::sleep(Duration::from_millis(200));
    });
    addr
}

/// An upload that takes longer than the idle read limit arrives whole while
/// the server keeps reading it: the connection taking the body is progress
/// (which the kernel reports in bursts: a full send buffer is writable
/// again once half of it is free). One the server stops reading still ends
/// by the idle limit. Before: the idle limit ran from the request's start,
/// so any upload longer than it (10 s by default) failed as "read timed
/// out".
#[test]
fn an_upload_slower_than_the_read_limit_goes_through_while_the_server_reads() {
    let paced = paced_reader(Some(128 << 10));
    let deaf = paced_reader(None);
    util::run1(move || async move {
        let c = Client::builder()
            .read_timeout(Duration::from_secs(1))
            .request_timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let upload = vec![b'u'; 16 << 20];
        let start = Instant::now();
        let answer = c
            .post(
                &format!("http://{paced}/"),
                "application/octet-stream",
                upload.clone(),
            )
            .await
            .unwrap();
        let took = start.elapsed();
        assert_eq!(answer.text(), (16 << 20).to_string(), "after {took:?}");
        assert!(
            took > Duration::from_millis(1500),
            "the upload was not paced: {took:?}"
        );

        let start = Instant::now();
        let err = c
            .post(&format!("http://{deaf}/"), "application/octet-stream", upload)
            .await
            .unwrap_err();
        assert_timed_out(&err, Phase::Read);
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    });
}

/// A server that answers each connection's first request (kept alive) and
/// closes it at the second without a word, as a server or a balancer that
/// closes its idle connections as a request arrives does.
fn answers_once_per_connection() -> std::net::SocketAddr {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                // The next request's first byte: then close, unanswered.
                let _ = conn.read(&mut byte);
            });
        }
    });
    addr
}

/// A request cut short on a reused connection is retried on a new one:
/// with two stale pooled connections, the retry used to take the second
/// and fail the same way ("connection closed before message completed").
#[test]
fn a_retry_after_a_stale_pooled_connection_goes_on_a_new_one() {
    let addr = answers_once_per_connection();
    util::run1(move || async move {
        let c = client();
        let url = format!("http://{addr}/");
        // Two connections at once, both pooled after their answer.
        let (a, b) = futures_lite::future::zip(c.get(&url), c.get(&url)).await;
        assert_eq!((a.unwrap().text(), b.unwrap().text()), ("ok".into(), "ok".into()));
        let answer = c.get(&url).await.unwrap();
        assert_eq!(answer.text(), "ok");
        let stats = c.stats();
        assert_eq!(
            (stats.requests, stats.connections),
            (4, 3),
            "two, then one cut short and its retry on a new connection"
        );
    });
}

/// `max_head` holds exactly on HTTP/1: a head just under it is read, one
/// just over it refused. Before: hyper bounds only its read buffer, and
/// heads up to about 110 KiB passed a 64 KiB limit.
#[test]
fn max_head_holds_exactly_on_http1() {
    let server = TestServer::start(|req, out| {
        let fields: usize = req.path.trim_start_matches('/').parse().unwrap();
        let mut head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
        for i in 0..fields {
            head.extend(format!("x-field-{i:04}: {}\r\n", "v".repeat(1000)).as_bytes());
        }
        head.extend(b"\r\nok");
        raw(out, &head)?;
        Ok(Next::Close)
    });
    // Each field is 1,016 bytes with its line end: 60 fit 64 KiB, 70 do not.
    let (under, over) = (server.url("/60"), server.url("/70"));
    util::run1(move || {
        let (under, over) = (under.clone(), over.clone());
        async move {
            let c = Client::builder().max_head(64 << 10).build().unwrap();
            assert_eq!(c.get(&under).await.unwrap().text(), "ok");
            let err = match c.get(&over).await {
                Ok(answer) => panic!("a head of {} fields was accepted", answer.headers().len()),
                Err(err) => err,
            };
            assert!(
                matches!(err.kind(), ErrorKind::Protocol(text) if text.contains("too large")),
                "{err}"
            );
        }
    });
}

#[test]
fn connect_timeout_fires_on_a_full_backlog() {
    // A connect hangs until the client gives up.
    let (listener, addr, fillers) = full_listener(4);
    let url = format!("http://{addr}/");
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = Client::builder()
                .connect_timeout(Duration::from_millis(200))
                .build()
                .unwrap();
            let start = Instant::now();
            let err = c.get(&url).await.unwrap_err();
            assert_timed_out(&err, Phase::Connect);
            assert!(start.elapsed() < Duration::from_secs(3));
        }
    });
    drop((listener, fillers));
}

/// `connect_timeout` bounds the whole connect, not each of its steps: here
/// TCP takes about 1 s (the accept queue is full until 0.5 s, so the first
/// SYN is dropped and sent again at 1 s) and the TLS handshake never ends.
/// Before, the handshake got a limit of its own and the error came after
/// about 2.5 s.
#[test]
fn the_connect_limit_covers_tcp_and_tls_together() {
    let silent = LateSilentListener::start();
    let addr = silent.addr;
    let url = format!("https://{addr}/");
    let took = util::run1(move || {
        let url = url.clone();
        async move {
            let c = Client::builder()
                .webpki_roots(false)
                .connect_timeout(Duration::from_millis(1500))
                .build()
                .unwrap();
            let start = Instant::now();
            let err = c.get(&url).await.unwrap_err();
            assert_timed_out(&err, Phase::Connect);
            start.elapsed()
        }
    });
    assert!(took < Duration::from_millis(2100), "{took:?}");
}

#[test]
fn a_server_that_closes_mid_body_is_an_error() {
    let server = TestServer::start(|req, out| {
        if req.path == "/length" {
            raw(out, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")?;
        } else {
            raw(
                out,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly some",
            )?;
        }
        Ok(Next::Close)
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = client();
            // hyper's words for a body cut short by the close.
            let err = c.get(&format!("{base}/length")).await.unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::Protocol(m) if m.contains("end of file before message length reached")),
                "{err}"
            );
            let err = c.get(&format!("{base}/chunked")).await.unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::Protocol(m) if m.contains("end of file")),
                "{err}"
            );
            assert_eq!(c.stats().idle, 0);
        }
    });
}

#[test]
fn huge_bodies_are_refused() {
    let server = TestServer::start(|req, out| {
        match req.path.as_str() {
            // Promises 1 GiB; the client must not wait for it.
            "/declared" => raw(out, b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")?,
            "/exact" => return respond(out, 200, &[], &[b'x'; 1000]),
            _ => {
                raw(out, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
                let chunk = format!("{:x}\r\n{}\r\n", 4096, "y".repeat(4096));
                for _ in 0..1024 {
                    if raw(out, chunk.as_bytes()).is_err() {
                        break; // the client hung up, as it should
                    }
                }
            }
        }
        Ok(Next::Close)
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = Client::builder().max_body(1000).build().unwrap();
            for path in ["/declared", "/endless"] {
                let start = Instant::now();
                let err = c.get(&format!("{base}{path}")).await.unwrap_err();
                assert!(matches!(err.kind(), ErrorKind::TooLarge { limit: 1000 }), "{err}");
                assert!(
                    err.to_string().contains("larger than the limit of 1000 bytes"),
                    "{err}"
                );
                assert!(start.elapsed() < Duration::from_secs(2));
            }
            assert_eq!(c.get(&format!("{base}/exact")).await.unwrap().body().len(), 1000);
        }
    });
}

#[test]
fn malformed_responses_are_protocol_errors() {
    let server = TestServer::start(|req, out| {
        let bytes: &[u8] = match req.path.as_str() {
            "/status" => b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
            "/garbage" => b"<html>not http</html>\r\n\r\n",
            "/version" => b"HTTP/2.0 200 OK\r\n\r\n",
            "/header" => b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            "/length" => b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
            "/chunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            _ => b"HTTP/1.1 200 OK\r\nX-Big: ",
        };
        raw(out, bytes)?;
        if req.path == "/huge-head" {
            let _ = raw(out, &vec![b'a'; 200_000]);
        }
        Ok(Next::Close)
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let c = client();
            for path in [
                "/status",
                "/garbage",
                "/version",
                "/header",
                "/length",
                "/chunk",
                "/huge-head",
            ] {
                let url = format!("{base}{path}");
                let err = c.get(&url).await.unwrap_err();
                assert!(matches!(err.kind(), ErrorKind::Protocol(_)), "{path}: {err}");
                assert!(err.to_string().starts_with(&url), "{err}");
            }
        }
    });
}

#[test]
fn errors_name_the_url_and_the_kind() {
    let refused = refused_url();
    util::run1(move || {
        let refused = refused.clone();
        async move {
            let err = http::get(&refused).await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::Connect { .. }), "{err}");
            assert!(err.to_string().starts_with(&refused), "{err}");
            assert!(std::error::Error::source(&err).is_some());

            let err = http::get("not a url").await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::BadUrl(_)), "{err}");
            assert_eq!(err.url(), "not a url");
            let err = http::get("mailto:someone@example.com").await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::BadUrl(_)), "{err}");

            let c = Client::builder()
                .dns_timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let err = c.get("http://no-such-host.invalid/").await.unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::Dns { .. }
                        | ErrorKind::Timeout {
                            phase: Phase::Dns,
                            ..
                        }
                ),
                "{err}"
            );
            assert!(
                err.to_string().starts_with("http://no-such-host.invalid/"),
                "{err}"
            );
        }
    });
}

/// `user:password@` in a URL is sent as `Authorization: Basic` (unless the
/// request has its own), and the password never shows: not in `url()`, not
/// in an error. Before: the credentials were not sent, and the password was
/// in both.
#[test]
fn credentials_in_a_url_are_sent_and_never_shown() {
    let server = TestServer::start(|req, out| {
        respond(
            out,
            200,
            &[],
            req.header("authorization").unwrap_or("none").as_bytes(),
        )
    });
    let url = server.url("/private").replace("://", "://alice:s3cret@");
    let refused = refused_url().replace("://", "://alice:s3cret@");
    util::run1(move || {
        let (url, refused) = (url.clone(), refused.clone());
        async move {
            let c = client();
            let r = c.get(&url).await.unwrap();
            // base64("alice:s3cret")
            assert_eq!(r.text(), "Basic YWxpY2U6czNjcmV0");
            assert!(!r.url().as_str().contains("alice"), "{}", r.url());
            let own = ::http::Request::get(&url)
                .header("authorization", "Bearer token")
                .body(())
                .unwrap();
            assert_eq!(c.send(own).await.unwrap().text(), "Bearer token");

            let err = c.get(&refused).await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::Connect { .. }), "{err}");
            assert!(err.url().starts_with("http://alice:***@127.0.0.1:"), "{err}");
            let err = c.get("http://alice:s3cret@[::1/").await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::BadUrl(_)), "{err}");
            assert_eq!(err.url(), "http://alice:***@[::1/");
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains("s3cret"), "{shown}");
            }
        }
    });
}

/// Names resolve on threads of their own: a `blocking()` pool kept busy
/// (by the application, or by lookups a DNS server never answers) does not
/// hold them up. Before: lookups queued behind every `blocking()` call, and
/// timed out there.
#[test]
fn names_resolve_while_the_blocking_pool_is_busy() {
    let server = TestServer::start(ok(b"by name"));
    let url = format!("http://localhost:{}/", server.addr.port());
    let config = util::config(1).with_blocking_threads(1);
    util::run_with(config, move || {
        let url = url.clone();
        async move {
            let busy = shardlet::spawn(shardlet::blocking(|| std::thread::sleep(Duration::from_secs(3))));
            shardlet::sleep(Duration::from_millis(50)).await;
            let c = Client::builder()
                .dns_timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            let r = c.get(&url).await.unwrap();
            assert_eq!(r.body().as_ref(), b"by name");
            drop(busy);
        }
    });
}

#[test]
fn names_resolve_off_the_shard() {
    let server = TestServer::start(ok(b"by name"));
    let url = format!("http://localhost:{}/", server.addr.port());
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = client();
            // Many at once: one shared lookup, one cached answer.
            let pool = GreenPool::new(8);
            let c2 = c.clone();
            let n = pool
                .imap(0..16, move |_| {
                    let (c, url) = (c2.clone(), url.clone());
                    async move { c.get(&url).await }
                })
                .filter(|r| matches!(r, Ok(Ok(r)) if r.body().as_ref() == b"by name"))
                .count()
                .await;
            assert_eq!(n, 16);
        }
    });
}

#[test]
fn imap_gives_bodies_in_input_order_whatever_the_delays() {
    let server = TestServer::start(|req, out| {
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..30)));
        respond(out, 200, &[], req.path.as_bytes())
    });
    let base = server.url("");
    util::run1(move || {
        let base = base.clone();
        async move {
            let pool = GreenPool::new(16);
            let urls = (0..100).map(|i| format!("{base}/item/{i}"));
            let bodies: Vec<String> = pool
                .imap(urls, |url| async move {
                    http::get(&url).await.unwrap().text().into_owned()
                })
                .map(Result::unwrap)
                .collect()
                .await;
            let want: Vec<String> = (0..100).map(|i| format!("/item/{i}")).collect();
            assert_eq!(bodies, want);
        }
    });
    assert!(server.accepted() <= 16);
}

/// `Duration::MAX` is the usual way to say "no limit": every limit takes
/// it (a century, in effect) instead of overflowing the clock.
#[test]
fn limits_of_duration_max_mean_none() {
    let server = TestServer::start(ok(b"hello"));
    let url = server.url("/");
    util::run1(move || {
        let url = url.clone();
        async move {
            let client = Client::builder()
                .connect_timeout(Duration::MAX)
                .request_timeout(Duration::MAX)
                .read_timeout(Duration::MAX)
                .dns_timeout(Duration::MAX)
                .dns_ttl(Duration::MAX)
                .idle_timeout(Duration::MAX)
                .build()
                .unwrap();
            for _ in 0..2 {
                assert_eq!(client.get(&url).await.unwrap().text(), "hello");
            }
            let slept = shardlet::timeout(Duration::from_millis(5), shardlet::sleep(Duration::MAX)).await;
            assert!(slept.is_err());
        }
    });
}

/// A server whose keep-alive ended as the next request arrived: it reads
/// that request and closes without an answer. An idempotent request (RFC
/// 9110 §9.2.2: GET, HEAD, PUT, DELETE, OPTIONS, TRACE) is sent again on a
/// new connection; a POST is not (the server may have acted on it), and
/// its error says the connection closed. Before: PUT and DELETE failed.
#[test]
fn a_request_cut_off_by_a_keep_alive_close_is_sent_again_only_if_idempotent() {
    let server = TestServer::start(|req, out| {
        if req.nth_on_conn > 0 {
            return Ok(Next::Close);
        }
        let echo = format!("{} {}", req.method, String::from_utf8_lossy(&req.body));
        respond(out, 200, &[], echo.as_bytes())
    });
    let url = server.url("/");
    util::run1(move || {
        let url = url.clone();
        async move {
            let request = |method: &str, body: &'static str| {
                let request = ::http::Request::builder().method(method).uri(url.as_str());
                request.body(body).unwrap()
            };
            // Each pair, on a client of its own: the first request makes a
            // connection and leaves it pooled, the second reuses it and is
            // cut off.
            for (method, body) in [("GET", ""), ("PUT", "put"), ("DELETE", ""), ("OPTIONS", "")] {
                let c = client();
                for _ in 0..2 {
                    let answer = util::bounded(c.send(request(method, body))).await;
                    let answer = answer.unwrap_or_else(|e| panic!("{method}: {e}"));
                    assert_eq!(answer.body().as_ref(), format!("{method} {body}").as_bytes());
                }
                assert_eq!(c.stats().connections, 2, "{method}: {:?}", c.stats());
            }
            let c = client();
            assert_eq!(
                util::bounded(c.send(request("POST", "once")))
                    .await
                    .unwrap()
                    .body()
                    .as_ref(),
                b"POST once"
            );
            let err = util::bounded(c.send(request("POST", "once"))).await.unwrap_err();
            assert_eq!(err.url(), url);
            assert!(
                err.to_string()
                    .contains("connection closed before message completed"),
                "{err}"
            );
        }
    });
    let requests = server.requests();
    let posts = requests.iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 2, "the cut-off POST was not sent again");
    for method in ["GET", "PUT", "DELETE", "OPTIONS"] {
        let sent = requests.iter().filter(|r| r.method == method).count();
        assert_eq!(sent, 3, "{method}: two answered, one cut off and sent again");
    }
}

/// A server that answers the first request on each connection (keep-alive)
/// and resets the connection when the next request arrives, unanswered (a
/// close with the request unread, as a server whose idle timeout raced the
/// request does). Returns its URL and how many requests it read.
fn resetting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = read.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                for nth in 0.. {
                    // A head, then its body (Content-Length only).
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let stream = reader.get_mut();
                    if nth > 0 {
                        socket2::SockRef::from(&*stream)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        return;
                    }
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .unwrap();
                }
            });
        }
    });
    (url, read)
}

/// The same race as above, with the close a reset (RFC 9112 §9.3.1: a
/// request on a connection the server closed may be retried if
/// idempotent). Before: the reset was an I/O error, never retried: about
/// 4% of a crawl against servers that close kept-alive connections failed
/// with "Connection reset by peer".
#[test]
fn a_request_reset_on_a_reused_connection_is_sent_again_only_if_idempotent() {
    let (url, read) = resetting_server();
    util::run1(move || {
        let url = url.clone();
        async move {
            for method in ["GET", "PUT"] {
                let c = client();
                for _ in 0..2 {
                    let request = ::http::Request::builder()
                        .method(method)
                        .uri(url.as_str())
                        .body("x")
                        .unwrap();
                    let answer = util::bounded(c.send(request)).await;
                    let answer = answer.unwrap_or_else(|e| panic!("{method}: {e}"));
                    assert_eq!(answer.body().as_ref(), b"ok");
                }
                assert_eq!(c.stats().connections, 2, "{method}: {:?}", c.stats());
            }
            let c = client();
            let post = || ::http::Request::post(url.as_str()).body("x").unwrap();
            assert_eq!(
                util::bounded(c.send(post())).await.unwrap().body().as_ref(),
                b"ok"
            );
            let err = util::bounded(c.send(post())).await.unwrap_err();
            assert_eq!(err.url(), url);
            assert!(err.to_string().contains("reset"), "{err}");
        }
    });
    // GET and PUT: two answered, one reset and sent again, each; POST: two.
    assert_eq!(read.load(std::sync::atomic::Ordering::SeqCst), 3 + 3 + 2);
}
