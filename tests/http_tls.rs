//! `https://` against a local rustls server with a self-signed certificate
//! (made by rcgen), trusted through `ClientBuilder::add_root_certificate`.
#![cfg(feature = "tls")]

#[path = "util/origin.rs"]
mod origin;
#[path = "util/tls.rs"]
mod tls;
mod util;

use std::sync::Arc;

use origin::{respond, Next, ReadWrite, TestServer};
use shardlet::http::{Client, ErrorKind};

/// A TLS test server for `localhost` and `127.0.0.1`; returns it and the certificate (DER).
fn tls_server() -> (TestServer, Vec<u8>) {
    tls_server_with(|req, out| respond(out, 200, &[], format!("secure {}", req.path).as_bytes()))
}

/// [`tls_server`] answering with `handler`.
fn tls_server_with<H>(handler: H) -> (TestServer, Vec<u8>)
where
    H: Fn(&origin::Request, &mut dyn std::io::Write) -> std::io::Result<Next> + Send + Sync + 'static,
{
    let (config, cert_der) = tls::self_signed(&[]);
    let server = TestServer::start_wrapped(
        Arc::new(move |stream| {
            let conn = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
            Ok(Box::new(rustls::StreamOwned::new(conn, stream)) as Box<dyn ReadWrite>)
        }),
        handler,
    );
    (server, cert_der)
}

#[test]
fn https_with_a_trusted_self_signed_certificate() {
    let (server, cert) = tls_server();
    let port = server.addr.port();
    util::run1(move || {
        let cert = cert.clone();
        async move {
            let client = tls::trusting(cert).build().unwrap();
            // By name (SNI and the certificate's DNS name) and by IP literal.
            for i in 0..3 {
                let r = client
                    .get(&format!("https://localhost:{port}/n/{i}"))
                    .await
                    .unwrap();
                assert_eq!(r.body().as_ref(), format!("secure /n/{i}").as_bytes());
            }
            let r = client.get(&format!("https://127.0.0.1:{port}/ip")).await.unwrap();
            assert_eq!(r.body().as_ref(), b"secure /ip");
            assert_eq!(
                client.stats().connections,
                2,
                "kept alive over TLS: {:?}",
                client.stats()
            );
        }
    });
    assert_eq!(server.accepted(), 2);
}

#[test]
fn an_untrusted_certificate_is_a_tls_error() {
    let (server, _) = tls_server();
    let url = format!("https://localhost:{}/", server.addr.port());
    util::run1(move || {
        let url = url.clone();
        async move {
            // The webpki roots do not include our self-signed certificate.
            let err = Client::new().get(&url).await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::Tls { .. }), "{err}");
            assert!(err.to_string().starts_with(&url), "{err}");
        }
    });
}

#[test]
fn a_bad_root_certificate_fails_the_build() {
    let err = Client::builder()
        .add_root_certificate(b"not DER".to_vec())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("root certificate #0"), "{err}");
}

/// A kept-alive TLS connection that the server closes (no `close_notify`)
/// as the next request arrives: a `GET` is sent again (rustls tells the
/// close as `UnexpectedEof`, which was not taken as a close).
#[test]
fn a_kept_alive_tls_connection_closed_under_a_get_is_retried() {
    let (server, cert) = tls_server_with(|req, out| {
        if req.conn == 1 && req.nth_on_conn == 1 {
            return Ok(Next::Close); // no answer, no close_notify
        }
        respond(out, 200, &[], format!("secure {}", req.path).as_bytes())
    });
    let port = server.addr.port();
    util::run1(move || {
        let cert = cert.clone();
        async move {
            let client = tls::trusting(cert).build().unwrap();
            for path in ["/one", "/two"] {
                let r = client.get(&format!("https://localhost:{port}{path}")).await;
                let r = r.unwrap_or_else(|e| panic!("{path}: {e}"));
                assert_eq!(r.body().as_ref(), format!("secure {path}").as_bytes());
            }
        }
    });
    assert_eq!(server.accepted(), 2);
}
