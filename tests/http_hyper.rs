//! `http::Server` and `http::Client` as the hyper ecosystem sees them: an
//! axum `Router` on two shards, HTTP/2 by prior knowledge (h2c) through
//! hyper's own client on shardlet's runtime traits, keep-alive reuse from
//! shardlet's client, a streamed upload past the body limit (413), and a
//! client hang-up that drops its handler.

#[path = "util/http.rs"]
mod http_util;
#[path = "util/net.rs"]
mod net_util;
mod util;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use http_util::{start_http, Conn};
use shardlet::http::rt::ShardExecutor;
use shardlet::http::server::{Body, Limits};
use shardlet::http::{self as shttp, Client, ResponseExt};
use shardlet::{net, shard, Runtime, ServerConfig};

/// Echoes the body; answers which shard served it.
async fn echo(request: Request<Body>) -> Response<Full<Bytes>> {
    let version = format!("{:?}", request.version());
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => Bytes::from(e.to_string()),
    };
    Response::builder()
        .header("x-shard", shard::id())
        .header("x-version", version)
        .body(Full::new(body))
        .unwrap()
}

#[test]
fn an_axum_router_serves_on_every_shard() {
    use axum::extract::Path;
    use axum::routing::{get, post};

    let runtime = Runtime::new(net_util::runtime(2)).expect("runtime");
    let server =
        shttp::Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config())).expect("bind");
    let handle = runtime
        .start({
            let server = server.clone();
            move || {
                let server = server.clone();
                let app = axum::Router::new()
                    .route("/shard", get(|| async { shard::id().to_string() }))
                    .route(
                        "/hello/{name}",
                        get(|Path(name): Path<String>| async move { format!("hello {name}") }),
                    )
                    .route("/echo", post(|body: String| async move { body }));
                // The one line: the Router, on this shard.
                async move { server.serve_tower(app).await }
            }
        })
        .expect("start");
    server.wait_ready(Duration::from_secs(20)).expect("ready");
    let addr = server.local_addr();
    assert_eq!(http_util::get(addr, "/hello/axum").text(), "hello axum");
    let reply = http_util::request(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody",
    );
    assert_eq!(reply.text(), "body");
    assert_eq!(http_util::get(addr, "/nowhere").status, 404);
    // Connections spread over both shards (reuseport): both answer.
    let mut shards = HashSet::new();
    for _ in 0..200 {
        shards.insert(http_util::get(addr, "/shard").text());
        if shards.len() == 2 {
            break;
        }
    }
    assert_eq!(shards.len(), 2, "only shard(s) {shards:?} answered");
    server.stop(Duration::from_secs(2));
    for served in handle.join().expect("join") {
        served.expect("serve");
    }
}

#[test]
fn h2c_by_prior_knowledge() {
    let server = start_http(1, Limits::default(), || echo);
    let addr = server.addr();
    util::run1(move || async move {
        // hyper's own HTTP/2 client, on shardlet's stream and executor.
        let stream = net::connect(addr, Duration::from_secs(5)).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::Builder::new(ShardExecutor::new())
            .handshake::<_, Full<Bytes>>(stream)
            .await
            .expect("h2 handshake");
        shardlet::spawn_n(async move {
            let _ = conn.await;
        });
        // Several streams at once on the one connection.
        let mut pile = Vec::new();
        for i in 0..8 {
            let mut sender = sender.clone();
            pile.push(shardlet::spawn(async move {
                let request = Request::post(format!("http://{addr}/echo"))
                    .body(Full::new(Bytes::from(format!("stream {i}"))))
                    .unwrap();
                let response = sender.send_request(request).await.expect("a response");
                assert_eq!(response.version(), Version::HTTP_2);
                assert_eq!(response.headers()["x-version"], "HTTP/2.0");
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, format!("stream {i}"));
            }));
        }
        for task in pile {
            task.await.unwrap();
        }
    });
    assert_eq!(server.server.stats().accepted(), 1);
}

#[test]
fn keep_alive_reuses_one_connection_both_ways() {
    let server = start_http(1, Limits::default(), || echo);
    let url = format!("http://{}/echo", server.addr());
    util::run1(move || {
        let url = url.clone();
        async move {
            let c = Client::new();
            for i in 0..20 {
                let r = c.post(&url, "text/plain", format!("n{i}")).await.unwrap();
                assert_eq!(r.text(), format!("n{i}"));
            }
            assert_eq!((c.stats().connections, c.stats().reused), (1, 19));
        }
    });
    assert_eq!(server.server.stats().accepted(), 1);
}

#[test]
fn a_streamed_upload_past_the_limit_is_413() {
    let server = start_http(1, Limits::default().with_max_body(1000), || echo);
    let addr = server.addr();
    // Raw chunked upload: 5 chunks of 400 bytes; the limit passes in the third.
    let mut conn = Conn::open(addr);
    conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = format!("190\r\n{}\r\n", "u".repeat(400));
    for _ in 0..5 {
        if conn.send(chunk.as_bytes()).is_err() {
            break; // the server answered and closed already
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = conn.send(b"0\r\n\r\n");
    let reply = conn.read().expect("an answer");
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.closes());
    // The same from shardlet's client, with a streamed body.
    let url = format!("http://{addr}/echo");
    util::run1(move || {
        let url = url.clone();
        async move {
            let pieces = futures_lite::stream::iter((0..5).map(|_| {
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b's'; 400])))
            }));
            let request = Request::post(&url)
                .body(shttp::client::Body::stream(StreamBody::new(pieces)))
                .unwrap();
            let r = Client::new().send(request).await.unwrap();
            assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
            // Within the limit is fine.
            let r = Client::new()
                .post(&url, "text/plain", vec![b'k'; 1000])
                .await
                .unwrap();
            assert_eq!((r.status(), r.body().len()), (StatusCode::OK, 1000));
        }
    });
}

/// Counts its own drop.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_client_hang_up_drops_its_handler() {
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let server = start_http(1, Limits::default(), {
        let (started, dropped, finished) = (started.clone(), dropped.clone(), finished.clone());
        move || {
            let (started, dropped, finished) = (started.clone(), dropped.clone(), finished.clone());
            move |_request: Request<Body>| {
                let (started, dropped, finished) = (started.clone(), dropped.clone(), finished.clone());
                async move {
                    let _guard = Dropped(dropped);
                    started.fetch_add(1, Ordering::SeqCst);
                    shardlet::sleep(Duration::from_secs(10)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                    Response::new(Empty::<Bytes>::new())
                }
            }
        }
    });
    let mut client = net_util::client(server.addr());
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the handler never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let left = Instant::now();
    drop(client);
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(
            left.elapsed() < Duration::from_secs(3),
            "the handler still runs after the client left"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(finished.load(Ordering::SeqCst), 0);
}

/// The server's stats count each answer by status (the server's own 413s and
/// 500s too) with its latency, and a handler's panic (answered 500) in
/// `panicked`; `ready()` is an async wait on every shard.
#[test]
fn stats_count_answers_by_status_and_handler_panics() {
    let runtime = Runtime::new(net_util::runtime(2)).expect("runtime");
    let server = shttp::Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config()))
        .expect("bind")
        .with_limits(Limits::default().with_max_body(16));
    let handle = runtime
        .start({
            let server = server.clone();
            move || {
                let server = server.clone();
                async move {
                    server
                        .serve(|request: Request<Body>| async move {
                            match request.uri().path() {
                                "/boom" => panic!("handler panics"),
                                "/" => Response::new(Full::new(Bytes::from_static(b"ok"))),
                                _ => Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            }
                        })
                        .await
                }
            }
        })
        .expect("start");
    futures_lite::future::block_on(server.ready(&handle)).expect("ready");
    let addr = server.local_addr();
    assert_eq!(http_util::get(addr, "/").status, 200);
    assert_eq!(http_util::get(addr, "/").status, 200);
    assert_eq!(http_util::get(addr, "/missing").status, 404);
    assert_eq!(http_util::get(addr, "/boom").status, 500);
    let too_big = http_util::request(
        addr,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(too_big.status, 413);

    let stats = server.stats();
    let all = stats.all_requests();
    assert_eq!(all.requests(), 5, "{:?}", all.statuses);
    assert_eq!(all.statuses.get(&200), Some(&2));
    assert_eq!(all.statuses.get(&404), Some(&1));
    assert_eq!(all.statuses.get(&500), Some(&1));
    assert_eq!(all.statuses.get(&413), Some(&1));
    assert_eq!(
        all.latency.len(),
        5,
        "one latency per answer, merged over the shards"
    );
    assert_eq!(stats.panicked(), 1, "the handler's panic");
    server.stop(Duration::from_secs(1));
    handle.join().expect("join");
}
