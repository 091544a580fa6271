//! `https://` with HTTP/2 chosen by ALPN: a local hyper HTTP/2 server over
//! rustls on a shard (the test's own), and `http::Client` multiplexing its
//! requests over the one connection it negotiates.
#![cfg(feature = "tls")]

#[path = "util/tls.rs"]
mod tls;
mod util;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::StreamExt;
use http_body_util::Full;
use shardlet::http::rt::ShardExecutor;
use shardlet::http::ResponseExt;
use shardlet::{net, GreenPool, Runtime};

/// A hyper HTTP/2 server over rustls on a one-shard runtime of its own,
/// for `localhost` and `127.0.0.1`: the runtime, its port, the certificate.
fn h2_server() -> (shardlet::RuntimeHandle<()>, u16, Vec<u8>) {
    let (config, cert) = tls::self_signed(&[b"h2"]);
    let acceptor = futures_rustls::TlsAcceptor::from(config);

    // The server: its own one-shard runtime, accepting one connection at a time.
    let (tell, port) = flume::bounded(1);
    let server = Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false))
        .unwrap()
        .start(move || {
            let (acceptor, tell) = (acceptor.clone(), tell.clone());
            async move {
                let listener = net::listen(([127, 0, 0, 1], 0)).unwrap();
                tell.send(listener.local_addr().unwrap().port()).unwrap();
                let stop = shardlet::shard::stopped();
                let serve = async {
                    loop {
                        let stream = listener.accept().await.unwrap();
                        let tls = acceptor.accept(stream).await.unwrap();
                        let service = hyper::service::service_fn(
                            |request: http::Request<hyper::body::Incoming>| async move {
                                if request.uri().path() == "/slow" {
                                    shardlet::sleep(Duration::from_millis(700)).await;
                                }
                                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                                    "{:?} {}",
                                    request.version(),
                                    request.uri().path()
                                )))))
                            },
                        );
                        shardlet::spawn_n(async move {
                            let _ = hyper::server::conn::http2::Builder::new(ShardExecutor::new())
                                .serve_connection(tls::Compat(tls), service)
                                .await;
                        });
                    }
                };
                futures_lite::future::or(serve, stop).await;
            }
        })
        .unwrap();
    let port = port.recv_timeout(Duration::from_secs(20)).unwrap();
    (server, port, cert)
}

#[test]
fn https_negotiates_http2_and_multiplexes_one_connection() {
    let (server, port, cert) = h2_server();

    util::run1(move || {
        let cert = cert.clone();
        async move {
            let client = tls::trusting(cert).build().unwrap();
            // Prime the connection, then many requests at once on it.
            let first = client
                .get(&format!("https://localhost:{port}/first"))
                .await
                .unwrap();
            assert_eq!(first.version(), http::Version::HTTP_2);
            assert_eq!(first.text(), "HTTP/2.0 /first");
            let pool = GreenPool::new(16);
            let c = client.clone();
            let bodies: Vec<String> = pool
                .imap(0..64, move |i| {
                    let c = c.clone();
                    async move {
                        c.get(&format!("https://localhost:{port}/n/{i}"))
                            .await
                            .unwrap()
                            .text()
                            .into_owned()
                    }
                })
                .map(Result::unwrap)
                .collect()
                .await;
            assert_eq!(bodies[63], "HTTP/2.0 /n/63");
            assert_eq!(client.stats().connections, 1, "{:?}", client.stats());
            assert_eq!(client.stats().reused, 64);
        }
    });
    server.stop(Duration::from_secs(1));
    let _ = server.join();
}

/// Shared HTTP/2 connections count against the pool's cap in all and are
/// dropped once unused for the idle time, as idle HTTP/1.1 ones are.
/// Before: one per host was kept for as long as its server kept it open
/// (400 hosts: 400 connections, with a cap of 256).
#[test]
fn shared_http2_connections_keep_to_the_pools_cap_and_idle_time() {
    let (server, port, cert) = h2_server();
    util::run1(move || {
        let cert = cert.clone();
        async move {
            let hosts = ["localhost", "127.0.0.1"].map(|h| format!("https://{h}:{port}/"));
            let client = tls::trusting(cert)
                .max_idle(1)
                // Long enough that a busy machine's pause between two
                // requests does not expire a connection the test keeps.
                .idle_timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            for url in &hosts {
                let answer = client.get(url).await.unwrap();
                assert_eq!(answer.version(), http::Version::HTTP_2);
            }
            assert_eq!(client.stats().idle, 1, "the cap in all is 1");
            // The first host's connection made room for the second's.
            client.get(&hosts[0]).await.unwrap();
            assert_eq!((client.stats().connections, client.stats().reused), (3, 0));
            client.get(&hosts[0]).await.unwrap();
            assert_eq!(client.stats().reused, 1, "kept while in use");
            shardlet::sleep(Duration::from_millis(1300)).await;
            client.get(&hosts[0]).await.unwrap();
            assert_eq!(
                (client.stats().connections, client.stats().reused),
                (4, 1),
                "unused for the idle time: a new connection"
            );
        }
    });
    server.stop(Duration::from_secs(1));
    let _ = server.join();
}

/// A shared HTTP/2 connection in use is not idle, however long its request
/// takes: the next request to the host shares it. Before: one request
/// longer than the idle time made the next open a second connection.
#[test]
fn a_shared_http2_connection_in_use_is_not_idle() {
    let (server, port, cert) = h2_server();
    util::run1(move || {
        let cert = cert.clone();
        async move {
            let client = tls::trusting(cert)
                .idle_timeout(Duration::from_millis(300))
                .build()
                .unwrap();
            let base = format!("https://localhost:{port}");
            client.get(&format!("{base}/")).await.unwrap();
            let slow = {
                let (c, url) = (client.clone(), format!("{base}/slow"));
                shardlet::spawn(async move { c.get(&url).await.map(|_| ()) })
            };
            shardlet::sleep(Duration::from_millis(450)).await;
            client.get(&format!("{base}/")).await.unwrap();
            slow.await.unwrap().unwrap();
            assert_eq!(client.stats().connections, 1, "{:?}", client.stats());
            // Unused for the idle time now: a new one.
            shardlet::sleep(Duration::from_millis(400)).await;
            client.get(&format!("{base}/")).await.unwrap();
            assert_eq!(client.stats().connections, 2, "{:?}", client.stats());
        }
    });
    server.stop(Duration::from_secs(1));
    let _ = server.join();
}

/// A request that ends without giving its shared HTTP/2 connection back
/// (here dropped by a time limit of the caller's) lets go of it all the
/// same: the connection turns idle and is not reused past the idle time.
/// Before: it counted as in use for good.
#[test]
fn a_request_dropped_midway_lets_go_of_its_http2_connection() {
    let (server, port, cert) = h2_server();
    util::run1(move || {
        let cert = cert.clone();
        async move {
            let client = tls::trusting(cert)
                .idle_timeout(Duration::from_millis(300))
                .build()
                .unwrap();
            let base = format!("https://localhost:{port}");
            client.get(&format!("{base}/")).await.unwrap();
            let cut =
                shardlet::timeout(Duration::from_millis(100), client.get(&format!("{base}/slow"))).await;
            assert!(cut.is_err());
            shardlet::sleep(Duration::from_millis(1000)).await;
            client.get(&format!("{base}/")).await.unwrap();
            assert_eq!(client.stats().connections, 2, "{:?}", client.stats());
        }
    });
    server.stop(Duration::from_secs(1));
    let _ = server.join();
}
