//! A burst of first requests to one `https` host: while one of them
//! connects, the others wait to share its connection should ALPN choose
//! HTTP/2 (one connection, not one each), go on together when it is
//! HTTP/1.1 or failed, and still end at their own time limits.
//!
//! The server is hyper over rustls on a shard of its own runtime; it counts
//! the TCP connections it accepts, and can drop or hold some before TLS.
#![cfg(feature = "tls")]

#[path = "util/tls.rs"]
mod tls;
mod util;

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::StreamExt;
use http_body_util::Full;
use shardlet::http::rt::ShardExecutor;
use shardlet::http::{ErrorKind, Phase, ResponseExt, Timeout};
use shardlet::{net, GreenPool, Runtime, RuntimeHandle};

/// Requests in a burst.
const BURST: usize = 50;

/// What the server does with the connections it accepts, before TLS.
#[derive(Clone, Copy)]
enum Mode {
    /// TLS, then HTTP/2 or HTTP/1.1 as ALPN chose.
    Serve,
    /// Closes the first `n` at once; serves the rest.
    DropFirst(usize),
    /// Holds each (no TLS) until the server stops.
    Hold,
    /// Serves the first at once; holds each later one until a second later
    /// one is there too (for at most [`GATE`]), counting in `most` how many
    /// were held at once.
    Gate,
}

/// The longest [`Mode::Gate`] holds a connection.
const GATE: Duration = Duration::from_millis(200);

struct Server {
    port: u16,
    accepted: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    runtime: RuntimeHandle<()>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn stop(self) {
        self.runtime.stop(Duration::from_secs(1));
        let _ = self.runtime.join();
    }
}

/// A server offering `alpn`, doing `mode`; the client must trust the
/// certificate returned.
fn start(alpn: &[&[u8]], mode: Mode) -> (Server, Vec<u8>) {
    let (config, cert) = tls::self_signed(alpn);
    let acceptor = futures_rustls::TlsAcceptor::from(config);
    let accepted = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (tell, port) = flume::bounded(1);
    let (count, most2) = (accepted.clone(), most.clone());
    let runtime = Runtime::new(util::config(1))
        .unwrap()
        .start(move || {
            let (acceptor, tell, count, most) = (acceptor.clone(), tell.clone(), count.clone(), most.clone());
            async move {
                let listener = net::listen(([127, 0, 0, 1], 0)).unwrap();
                tell.send(listener.local_addr().unwrap().port()).unwrap();
                let held = Rc::new(RefCell::new(Vec::new()));
                let waiting = Rc::new(AtomicUsize::new(0));
                let serve = async {
                    loop {
                        let stream = listener.accept().await.unwrap();
                        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                        match mode {
                            Mode::DropFirst(first) if n <= first => continue,
                            Mode::Hold => {
                                held.borrow_mut().push(stream);
                                continue;
                            }
                            _ => {}
                        }
                        let (acceptor, waiting, most) = (acceptor.clone(), waiting.clone(), most.clone());
                        shardlet::spawn_n(async move {
                            if matches!(mode, Mode::Gate) && n > 1 {
                                let now = waiting.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                let until = Instant::now() + GATE;
                                while most.load(Ordering::SeqCst) < 2 && Instant::now() < until {
                                    shardlet::sleep(Duration::from_millis(2)).await;
                                }
                                waiting.fetch_sub(1, Ordering::SeqCst);
                            }
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            let service =
                                hyper::service::service_fn(
                                    |request: http::Request<hyper::body::Incoming>| async move {
                                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                                            format!("{:?} {}", request.version(), request.uri().path()),
                                        ))))
                                    },
                                );
                            let io = tls::Compat(tls);
                            let _ = if h2 {
                                hyper::server::conn::http2::Builder::new(ShardExecutor::new())
                                    .serve_connection(io, service)
                                    .await
                            } else {
                                hyper::server::conn::http1::Builder::new()
                                    .serve_connection(io, service)
                                    .await
                            };
                        });
                    }
                };
                futures_lite::future::or(serve, shardlet::shard::stopped()).await;
            }
        })
        .unwrap();
    let port = port.recv_timeout(Duration::from_secs(20)).unwrap();
    let server = Server {
        port,
        accepted,
        most: most2,
        runtime,
    };
    (server, cert)
}

/// `BURST` GETs of `url`/0.. at once from one new client; their results, in order.
async fn burst(client: &shardlet::http::Client, base: &str) -> Vec<Result<String, shardlet::http::Error>> {
    let pool = GreenPool::new(BURST);
    let (c, base) = (client.clone(), base.to_string());
    pool.imap(0..BURST, move |i| {
        let (c, url) = (c.clone(), format!("{base}/{i}"));
        async move { c.get(&url).await.map(|r| r.text().into_owned()) }
    })
    .map(Result::unwrap)
    .collect()
    .await
}

/// A [`burst`] from a client trusting `cert`, every answer served over
/// `version`; the client's stats after it.
fn burst_served(server: &Server, cert: Vec<u8>, version: &'static str) -> shardlet::http::ClientStats {
    let base = server.url("/n");
    util::run1(move || {
        let (cert, base) = (cert.clone(), base.clone());
        async move {
            let client = tls::trusting(cert).build().unwrap();
            let bodies = burst(&client, &base).await;
            for (i, body) in bodies.into_iter().enumerate() {
                assert_eq!(body.unwrap(), format!("{version} /n/{i}"));
            }
            client.stats()
        }
    })
}

#[test]
fn a_burst_of_first_requests_shares_one_http2_connection() {
    let (server, cert) = start(&[b"h2", b"http/1.1"], Mode::Serve);
    let stats = burst_served(&server, cert, "HTTP/2.0");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1, "{stats:?}");
    assert_eq!(stats.connections, 1, "{stats:?}");
    assert_eq!(stats.reused, BURST as u64 - 1, "{stats:?}");
    server.stop();
}

#[test]
fn when_the_first_connect_fails_the_waiters_connect_on_their_own() {
    let (server, cert) = start(&[b"h2"], Mode::DropFirst(1));
    let base = server.url("/n");
    let failed = util::run1(move || {
        let (cert, base) = (cert.clone(), base.clone());
        async move {
            let client = tls::trusting(cert).build().unwrap();
            let mut failed = 0;
            for (i, result) in burst(&client, &base).await.into_iter().enumerate() {
                match result {
                    Ok(body) => assert_eq!(body, format!("HTTP/2.0 /n/{i}")),
                    Err(e) => {
                        // Only the request whose connection was closed, with its own URL.
                        assert_eq!(e.url(), format!("{base}/{i}"), "{e}");
                        failed += 1;
                    }
                }
            }
            failed
        }
    });
    assert!(
        failed <= 1,
        "{failed} requests failed; only the first connect was refused"
    );
    assert!(server.accepted.load(Ordering::SeqCst) >= 2);
    server.stop();
}

#[test]
fn when_every_connect_fails_every_request_says_so_with_its_url() {
    let (server, cert) = start(&[b"h2"], Mode::DropFirst(usize::MAX));
    let base = server.url("/n");
    util::run1(move || {
        let (cert, base) = (cert.clone(), base.clone());
        async move {
            let client = tls::trusting(cert).build().unwrap();
            for (i, result) in burst(&client, &base).await.into_iter().enumerate() {
                let e = result.unwrap_err();
                assert_eq!(e.url(), format!("{base}/{i}"), "{e}");
                assert!(!e.is_timeout(), "{e}");
            }
        }
    });
    // The first connect's waiters each had an attempt of their own.
    assert!(server.accepted.load(Ordering::SeqCst) >= 2);
    server.stop();
}

#[test]
fn http1_by_alpn_still_connects_in_parallel() {
    let (server, cert) = start(&[b"http/1.1"], Mode::Gate);
    let stats = burst_served(&server, cert, "HTTP/1.1");
    assert!(stats.connections > 1, "{stats:?}");
    // After the first connection, others were being made at the same time.
    let most = server.most.load(Ordering::SeqCst);
    assert!(most >= 2, "at most {most} connection(s) at once after the first");
    server.stop();
}

#[test]
fn a_waiter_ends_at_its_own_time_limit() {
    let (server, cert) = start(&[b"h2"], Mode::Hold);
    let (lead, waiter) = (server.url("/lead"), server.url("/waiter"));
    let (error, took) = util::run1(move || {
        let (cert, lead, waiter) = (cert.clone(), lead.clone(), waiter.clone());
        async move {
            let client = tls::trusting(cert).build().unwrap();
            // The first request's connect hangs in TLS (the server never answers).
            let first = async {
                let _ = client.get(&lead).await;
                panic!("the first request ended before the waiter's time limit");
            };
            let second = async {
                let mut request = http::Request::get(&waiter).body(()).unwrap();
                request
                    .extensions_mut()
                    .insert(Timeout(Duration::from_millis(300)));
                let start = Instant::now();
                let error = client.send(request).await.unwrap_err();
                (error, start.elapsed())
            };
            futures_lite::future::or(second, first).await
        }
    });
    assert!(
        matches!(
            error.kind(),
            ErrorKind::Timeout {
                phase: Phase::Request,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.url(), server.url("/waiter"));
    assert!(took < Duration::from_secs(5), "{took:?}");
    // It waited for the first request's connect rather than making its own.
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    server.stop();
}
