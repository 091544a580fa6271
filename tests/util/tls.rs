//! TLS for the `https://` tests (`#[path = "util/tls.rs"] mod tls;`): a
//! self-signed certificate made by rcgen, a rustls server configuration that
//! presents it, a client that trusts it alone, and [`Compat`] to serve
//! hyper on the server's TLS stream.
#![allow(dead_code)] // each test file uses a different part

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use shardlet::http::ClientBuilder;

/// A certificate for `localhost` and `127.0.0.1` (DER, for the client to
/// trust), and a server configuration presenting it that offers `alpn`.
pub fn self_signed(alpn: &[&[u8]]) -> (Arc<rustls::ServerConfig>, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = certified.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.clone())], key)
            .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(config), cert)
}

/// A client builder that trusts `cert` and no public root.
pub fn trusting(cert: Vec<u8>) -> ClientBuilder {
    shardlet::http::Client::builder()
        .webpki_roots(false)
        .add_root_certificate(cert)
}

/// futures-io as hyper's I/O, for the test server's TLS stream (a copy
/// per read; fine for a test).
pub struct Compat<T>(pub T);

impl<T: AsyncRead + Unpin> hyper::rt::Read for Compat<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut bounce = [0u8; 8192];
        let room = buf.remaining().min(bounce.len());
        match Pin::new(&mut self.0).poll_read(cx, &mut bounce[..room]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&bounce[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for Compat<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
