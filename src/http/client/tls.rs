//! `https://`: rustls over the connection's stream (through futures-rustls),
//! with Mozilla's roots (webpki-roots) and any roots the client adds, ALPN
//! offering `h2` and `http/1.1`. Built only with the `tls` feature.

use std::fmt;
use std::io;
use std::sync::Arc;

use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::net::TcpStream;

use super::error::BuildError;

/// A TLS client configuration, shared by a client's connections.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
}

impl Tls {
    /// rustls with the `ring` provider, TLS 1.2 and 1.3, ALPN `h2` then
    /// `http/1.1`, trusting the webpki roots (when `webpki`) and `extra`
    /// (DER certificates).
    pub(crate) fn new(webpki: bool, extra: &[Vec<u8>]) -> Result<Tls, BuildError> {
        let mut roots = RootCertStore::empty();
        if webpki {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for (i, der) in extra.iter().enumerate() {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| BuildError::new(format!("root certificate #{i} is not usable: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError::new(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls::from_config(Arc::new(config)))
    }

    /// A caller's own rustls configuration.
    pub(crate) fn from_config(config: Arc<ClientConfig>) -> Tls {
        Tls {
            connector: TlsConnector::from(config),
        }
    }

    /// The handshake with `host` (a name or an IP literal) over `stream`;
    /// also whether the server chose HTTP/2.
    pub(crate) async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> io::Result<(TlsStream<TcpStream>, bool)> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad server name: {e}")))?;
        let tls = self.connector.connect(name, stream).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((tls, h2))
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}
