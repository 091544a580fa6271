//! [`ClientBuilder`]: the settings of a [`Client`], with their defaults.

use std::fmt;
use std::time::Duration;

use http::HeaderValue;

use super::error::BuildError;
#[cfg(feature = "tls")]
use super::tls::Tls;
use super::{Client, Parts};

/// Redirects followed by default.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;
/// The default body limit: 16 MiB.
pub const DEFAULT_MAX_BODY: u64 = 16 << 20;
/// The default connect limit (TCP, TLS and the HTTP/2 handshake, together).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default limit on a whole request, redirects included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The default idle read limit: the longest wait for the next bytes.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest response head accepted by default: 64 KiB.
pub(crate) const DEFAULT_MAX_HEAD: usize = 64 << 10;
/// Idle connections kept per host by default.
pub const DEFAULT_MAX_IDLE_PER_HOST: usize = 32;

/// Every setting of a client; [`ClientBuilder`] fills it in.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) dns_timeout: Duration,
    pub(crate) dns_ttl: Duration,
    pub(crate) max_redirects: usize,
    pub(crate) max_body: u64,
    pub(crate) max_head: usize,
    pub(crate) max_idle_per_host: usize,
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) user_agent: HeaderValue,
}

/// Settings for a [`Client`]; every one has a default.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shardlet::http::Client;
///
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let client = Client::builder()
///     .request_timeout(Duration::from_secs(5))
///     .max_redirects(0) // hand 3xx responses back instead of following them
///     .max_body(1 << 20)
///     .build()
///     .unwrap();
/// # drop(client);
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    settings: Settings,
    user_agent: Option<String>,
    #[cfg(feature = "tls")]
    webpki_roots: bool,
    #[cfg(feature = "tls")]
    extra_roots: Vec<Vec<u8>>,
    #[cfg(feature = "tls")]
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            settings: Settings {
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                read_timeout: DEFAULT_READ_TIMEOUT,
                dns_timeout: Duration::from_secs(5),
                dns_ttl: Duration::from_secs(60),
                max_redirects: DEFAULT_MAX_REDIRECTS,
                max_body: DEFAULT_MAX_BODY,
                max_head: DEFAULT_MAX_HEAD,
                max_idle_per_host: DEFAULT_MAX_IDLE_PER_HOST,
                max_idle: 256,
                idle_timeout: Duration::from_secs(30),
                user_agent: HeaderValue::from_static(concat!("shardlet/", env!("CARGO_PKG_VERSION"))),
            },
            user_agent: None,
            #[cfg(feature = "tls")]
            webpki_roots: true,
            #[cfg(feature = "tls")]
            extra_roots: Vec::new(),
            #[cfg(feature = "tls")]
            tls_config: None,
        }
    }
}

impl ClientBuilder {
    /// The limit on making a connection, once the name is resolved (under
    /// [`dns_timeout`](Self::dns_timeout)): TCP connect (shared among the
    /// addresses tried), the TLS handshake for `https` and the HTTP/2
    /// handshake, together (default 10 s). Zero is taken as 1 ms.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.settings.connect_timeout = limit.max(Duration::from_millis(1));
        self
    }

    /// The limit on a whole request, redirects included (default 30 s).
    pub fn request_timeout(mut self, limit: Duration) -> Self {
        self.settings.request_timeout = limit;
        self
    }

    /// The longest wait on the server (default 10 s): for the response's
    /// head, from the request's start (or, while the request's body is
    /// being sent, for the server to take more of it), then for each next
    /// piece of the body. The head's wait is one: a server that sends
    /// interim answers (`102 Processing`) or its head a line at a time
    /// must send the whole head within it.
    pub fn read_timeout(mut self, limit: Duration) -> Self {
        self.settings.read_timeout = limit;
        self
    }

    /// The limit on one name lookup (default 5 s). A lookup that runs out
    /// of it is not stopped (`getaddrinfo` cannot be): the next lookup of
    /// the name waits for that one rather than start another.
    pub fn dns_timeout(mut self, limit: Duration) -> Self {
        self.settings.dns_timeout = limit;
        self
    }

    /// How long a resolved name is cached (default 60 s; zero: not cached).
    /// A failed or timed-out lookup is cached for 5 s at most; a request
    /// that meets a cached time-out fails at once with [`ErrorKind::Dns`](super::ErrorKind::Dns)
    /// (saying when the lookup timed out), not [`ErrorKind::Timeout`](super::ErrorKind::Timeout).
    pub fn dns_ttl(mut self, ttl: Duration) -> Self {
        self.settings.dns_ttl = ttl;
        self
    }

    /// How many redirects to follow (default 5). With 0, a 3xx response is
    /// returned as it is.
    pub fn max_redirects(mut self, limit: usize) -> Self {
        self.settings.max_redirects = limit;
        self
    }

    /// The longest body accepted, in bytes (default 16 MiB); a longer one is
    /// [`ErrorKind::TooLarge`](super::ErrorKind::TooLarge).
    pub fn max_body(mut self, limit: u64) -> Self {
        self.settings.max_body = limit;
        self
    }

    /// The longest response head (status line and fields) accepted, in bytes
    /// (default 64 KiB); a longer one is a
    /// [`ErrorKind::Protocol`](super::ErrorKind::Protocol) error. On HTTP/2,
    /// the field list as that counts it (names and values, decoded, and 32
    /// bytes a field).
    pub fn max_head(mut self, limit: usize) -> Self {
        self.settings.max_head = limit;
        self
    }

    /// Idle keep-alive connections kept per scheme, host and port
    /// (default 32; zero: a connection per request).
    pub fn max_idle_per_host(mut self, n: usize) -> Self {
        self.settings.max_idle_per_host = n;
        self
    }

    /// Keep-alive connections kept in all (default 256): idle HTTP/1.1 ones
    /// and the hosts' shared HTTP/2 ones; at the cap the least recently
    /// used one is closed.
    pub fn max_idle(mut self, n: usize) -> Self {
        self.settings.max_idle = n;
        self
    }

    /// How long an idle connection may wait in the pool before it is closed
    /// instead of reused (default 30 s); a shared HTTP/2 connection is idle
    /// while no request holds it, since the last one let go of it.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.settings.idle_timeout = limit;
        self
    }

    /// The `User-Agent` sent (default `shardlet/VERSION`).
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = Some(agent.into());
        self
    }

    /// Also trusts this root certificate (DER), for `https` to servers with
    /// a private or self-signed certificate.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(der.into());
        self
    }

    /// Whether to trust Mozilla's roots (webpki-roots; default `true`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn webpki_roots(mut self, trust: bool) -> Self {
        self.webpki_roots = trust;
        self
    }

    /// Uses this rustls configuration for `https`, instead of the one built
    /// from the roots above.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// The client.
    ///
    /// # Errors
    ///
    /// [`BuildError`] for a root certificate that rustls cannot use, or a
    /// `User-Agent` that is not a valid field value.
    pub fn build(mut self) -> Result<Client, BuildError> {
        if let Some(agent) = self.user_agent.take() {
            self.settings.user_agent = HeaderValue::try_from(agent.as_str())
                .map_err(|e| BuildError::new(format!("bad User-Agent {agent:?}: {e}")))?;
        }
        #[cfg(feature = "tls")]
        let tls = match self.tls_config {
            Some(config) => Tls::from_config(config),
            None => Tls::new(self.webpki_roots, &self.extra_roots)?,
        };
        Ok(Client::assemble(Parts {
            settings: self.settings,
            #[cfg(feature = "tls")]
            tls,
        }))
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
