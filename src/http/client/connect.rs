//! Making a client connection: the host name resolved off the shard
//! (`dns.rs`, cached), TCP connected ([`net::connect`](crate::net::connect)),
//! TLS negotiated for `https` (`tls.rs`, ALPN), and hyper's HTTP/1.1 or
//! HTTP/2 handshake, whose connection task then runs as a green thread of
//! the shard.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, InvalidHeaderValue};
use http::uri::{Parts, Uri};

use hyper::client::conn::{http1, http2};
use url::{Host, Position, Url};

use super::connecting::{Claim, Outcome};
use super::dns::DnsError;
use super::error::{ErrorKind, Phase};
use super::pool::{Held, Key, Sender, Uses};
use super::transport::Transport;
use super::Inner;
use crate::http::rt::{ShardExecutor, ShardTimer};
use crate::net::TcpStream;

/// Addresses tried, in order, for a name that resolves to several.
const MAX_ADDRS: usize = 4;

/// Where a URL's request goes.
pub(crate) struct Target {
    /// `(https, host, port)`; the host without brackets (a name, or an IP
    /// literal), shared with the pool's key (a count, not a copy).
    pub(crate) key: Key,
    ip: Option<IpAddr>,
    port: u16,
    /// `host[:port]` as the `Host` field wants it (HTTP/1.1), made once per
    /// URL; an error (never seen: the URL parser's hosts are printable
    /// ASCII) fails an HTTP/1.1 request as a bad URL.
    pub(crate) host_field: Result<HeaderValue, InvalidHeaderValue>,
    /// The request's URI, absolute and without the URL's credentials: made
    /// (and so checked: `url` takes some that `http` refuses, such as one
    /// over 64 KiB) before a connection is taken for it.
    uri: Uri,
}

impl Target {
    pub(crate) fn of(url: &Url) -> Result<Target, ErrorKind> {
        let https = match url.scheme() {
            "http" => false,
            "https" if cfg!(feature = "tls") => true,
            "https" => return Err(ErrorKind::BadUrl("https needs shardlet's `tls` feature".into())),
            other => return Err(ErrorKind::BadUrl(format!("unsupported scheme {other:?}"))),
        };
        let (host, ip): (Rc<str>, _) = match url.host() {
            Some(Host::Domain(name)) => (name.into(), None),
            // The URL's own text of it (the parser writes an IPv4 address in
            // dotted decimal, as `Display` does), without a second string.
            Some(Host::Ipv4(ip)) => (url.host_str().unwrap_or_default().into(), Some(IpAddr::V4(ip))),
            Some(Host::Ipv6(ip)) => (ip.to_string().into(), Some(IpAddr::V6(ip))),
            None => return Err(ErrorKind::BadUrl("no host".into())),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| ErrorKind::BadUrl("no port".into()))?;
        let authority = &url[Position::BeforeHost..Position::AfterPort];
        let path = &url[Position::BeforePath..Position::AfterQuery];
        let uri = Uri::try_from(format!("{}://{authority}{path}", url.scheme()))
            .map_err(|e| ErrorKind::BadUrl(format!("not a valid request target: {e}")))?;
        Ok(Target {
            key: (https, host, port),
            ip,
            port,
            host_field: HeaderValue::from_str(authority),
            uri,
        })
    }

    /// The URI a request carries: absolute for HTTP/2 (hyper makes it
    /// `:scheme`, `:authority` and `:path`), origin-form (path and query)
    /// for HTTP/1.1. Shares the bytes made by [`Target::of`].
    pub(crate) fn uri(&self, h2: bool) -> Uri {
        if h2 {
            return self.uri.clone();
        }
        let mut parts = Parts::default();
        parts.path_and_query = self.uri.path_and_query().cloned();
        Uri::from_parts(parts).expect("a path and query alone is a valid URI")
    }

    /// The host without brackets (a name, or an IP literal).
    pub(crate) fn host(&self) -> &str {
        &self.key.1
    }
}

impl Inner {
    /// A connection for a request to `target` that found none in the pool,
    /// and whether it is shared: a new one, or for `https`, the HTTP/2
    /// connection another request to the host was making meanwhile (see
    /// `connecting.rs`). A wait here is part of the request, under its time
    /// limit.
    pub(crate) async fn open(&self, target: &Target) -> Result<(Sender, bool), ErrorKind> {
        let key = &target.key;
        loop {
            let lock = match self.pool.claim(key) {
                Claim::Free => None,
                Claim::Lead(lock) => Some(lock),
                Claim::Wait(wait) => match wait.await {
                    Outcome::Shared => match self.pool.take(key) {
                        Some(sender) => return Ok((sender, true)),
                        // Closed already: claim the host again.
                        None => continue,
                    },
                    Outcome::Own => None,
                    Outcome::Again => continue,
                },
            };
            // Boxed: a connection is made once and used many times; its
            // state (TCP, TLS, handshakes) would otherwise add some 2.5 KB
            // to every request's future, copied into its box.
            let made = Box::pin(self.connect(target)).await;
            if let Ok(sender) = &made {
                let h2 = matches!(sender, Sender::H2(..));
                if key.0 {
                    self.pool.spoke(key, h2);
                }
                if let (Sender::H2(shared, held), Some(_)) = (sender, &lock) {
                    // Shared now, so the waiters find it.
                    self.pool.share(key, shared, held);
                }
            }
            if let Some(lock) = lock {
                let shared = matches!(made, Ok(Sender::H2(..)));
                lock.done(if shared { Outcome::Shared } else { Outcome::Own });
            }
            return made.map(|sender| (sender, false));
        }
    }

    /// A new connection to `target`, ready for a request. Once the name is
    /// resolved (under its own limit), `connect_timeout` bounds the rest as
    /// a whole, as curl's and reqwest's do: TCP (shared among the addresses
    /// tried), TLS and hyper's handshake.
    pub(crate) async fn connect(&self, target: &Target) -> Result<Sender, ErrorKind> {
        let limit = self.settings.connect_timeout;
        let (stream, until) = self.tcp(target).await?;
        self.stats.connections.set(self.stats.connections.get() + 1);
        let left = || until.saturating_duration_since(Instant::now());
        let (transport, h2) = if target.key.0 {
            self.handshake(target, stream, left()).await?
        } else {
            (Transport::Plain(stream), false)
        };
        let shaken = async {
            if h2 {
                let mut builder = http2::Builder::new(ShardExecutor::new());
                builder.timer(ShardTimer::new());
                // The head limit, as on HTTP/1.1 (hyper's own is 16 KiB).
                let max_head = u32::try_from(self.settings.max_head).unwrap_or(u32::MAX);
                builder.max_header_list_size(max_head);
                let (sender, conn) = builder.handshake(transport).await?;
                crate::spawn_n(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(target: "shardlet::http", error = %e, "HTTP/2 client connection ended");
                    }
                });
                Ok(Sender::H2(sender, Held::new(&Uses::new())))
            } else {
                let mut builder = http1::Builder::new();
                builder.max_buf_size(self.settings.max_head.max(8192));
                let (sender, conn) = builder.handshake(transport).await?;
                crate::spawn_n(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(target: "shardlet::http", error = %e, "HTTP/1.1 client connection ended");
                    }
                });
                Ok(Sender::H1(sender))
            }
        };
        match crate::timeout(left(), shaken).await {
            Ok(Ok(sender)) => Ok(sender),
            Ok(Err(e)) => Err(super::error::from_hyper(e)),
            Err(_) => Err(ErrorKind::Timeout {
                phase: Phase::Connect,
                after: limit,
            }),
        }
    }

    /// A TCP connection to `target`, and when the connect limit, started
    /// once the name is resolved, ends.
    async fn tcp(&self, target: &Target) -> Result<(TcpStream, Instant), ErrorKind> {
        let limit = self.settings.connect_timeout;
        let addrs: Vec<SocketAddr> = match target.ip {
            Some(ip) => vec![SocketAddr::new(ip, target.port)],
            None => match self.resolver.resolve(target.host(), target.port).await {
                Ok(addrs) => addrs.iter().copied().take(MAX_ADDRS).collect(),
                Err(DnsError::Timeout(after)) => {
                    return Err(ErrorKind::Timeout {
                        phase: Phase::Dns,
                        after,
                    })
                }
                Err(DnsError::Failed(reason)) => {
                    return Err(ErrorKind::Dns {
                        host: target.host().to_string(),
                        reason,
                    })
                }
            },
        };
        let until = crate::time::after(limit);
        let mut last = None;
        for (i, &addr) in addrs.iter().enumerate() {
            // What is left, shared by the addresses left (hyper-util's way):
            // one that never answers leaves the others their turn.
            let share = until.saturating_duration_since(Instant::now()) / (addrs.len() - i) as u32;
            if share.is_zero() {
                // Spent by the addresses before (their timers came late).
                last = Some(ErrorKind::Timeout {
                    phase: Phase::Connect,
                    after: limit,
                });
                break;
            }
            match crate::net::connect(addr, share).await {
                Ok(stream) => return Ok((stream, until)),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    last = Some(ErrorKind::Timeout {
                        phase: Phase::Connect,
                        after: limit,
                    })
                }
                Err(source) => {
                    last = Some(ErrorKind::Connect {
                        addr: addr.to_string(),
                        source,
                    })
                }
            }
        }
        Err(last.expect("at least one address was tried"))
    }

    #[cfg(feature = "tls")]
    async fn handshake(
        &self,
        target: &Target,
        stream: TcpStream,
        left: Duration,
    ) -> Result<(Transport, bool), ErrorKind> {
        let limit = self.settings.connect_timeout;
        match crate::timeout(left, self.tls.connect(target.host(), stream)).await {
            Ok(Ok((tls, h2))) => Ok((Transport::Tls(Box::new(tls)), h2)),
            Ok(Err(source)) => Err(ErrorKind::Tls {
                host: target.host().to_string(),
                source,
            }),
            Err(_) => Err(ErrorKind::Timeout {
                phase: Phase::Connect,
                after: limit,
            }),
        }
    }

    #[cfg(not(feature = "tls"))]
    async fn handshake(&self, _: &Target, _: TcpStream, _: Duration) -> Result<(Transport, bool), ErrorKind> {
        Err(ErrorKind::BadUrl("https needs shardlet's `tls` feature".into()))
    }
}
