//! TLS for the `https://` tests (`#[path = "util/tls.rs"] mod tls;`): a
//! self-signed certificate made by rcgen, a rustls server configuration that
//! presents it, and a client that trusts it alone.
#![allow(dead_code)] // each test file uses a different part

use std::sync::Arc;

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
