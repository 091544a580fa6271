//! [`Client`]: a shard-local HTTP/1.1 client with keep-alive, redirects,
//! time limits and a body limit; [`get`] through a per-shard default client.
//!
//! One request, step by step:
//! 1. the URL is parsed (`url`); `http` and `https` only;
//! 2. an idle connection to the same scheme, host and port is taken from the
//!    keep-alive pool, or a new one made: the name resolved off the shard
//!    (`dns.rs`, cached), TCP connected ([`net::connect`](crate::net::connect)),
//!    TLS negotiated for `https` (`tls.rs`);
//! 3. the request is written, the response head read and parsed (`httparse`),
//!    the body read as framed (`codec.rs`), under the idle read limit;
//! 4. the connection goes back to the pool when the response allows it
//!    (HTTP/1.1 without `Connection: close`, a delimited body read to its end);
//! 5. a redirect (301, 302, 303, 307, 308 with a `Location`) starts again
//!    at step 2, up to the redirect limit.
//!
//! A reused connection that turns out to be closed by the server (the write
//! fails, or it ends before a byte of the response) is retried once on
//! another connection for `GET` and `HEAD`. The whole of it, redirects
//! included, runs under the request time limit.

use std::cell::Cell;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use futures_lite::AsyncWriteExt;
use url::{Host, Position, Url};

use super::builder::{ClientBuilder, Settings};
use super::codec::{self, Framing, WireError};
use super::conn::{Conn, Transport};
use super::dns::{DnsError, Resolver};
use super::error::{Error, ErrorKind, Phase};
use super::headers::Headers;
use super::keepalive::{KeepAlive, Key};
use super::response::Response;
#[cfg(feature = "tls")]
use super::tls::Tls;

/// Header fields one response may have.
const MAX_HEADERS: usize = 128;
/// Addresses tried, in order, for a name that resolves to several.
const MAX_ADDRS: usize = 4;

/// Counts of a client's work, from [`Client::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Requests sent (each redirect hop and retry counts).
    pub requests: u64,
    /// Connections opened.
    pub connections: u64,
    /// Requests sent on a kept-alive connection.
    pub reused: u64,
    /// Idle connections in the keep-alive pool now.
    pub idle: usize,
}

#[derive(Default)]
struct Counters {
    requests: Cell<u64>,
    connections: Cell<u64>,
    reused: Cell<u64>,
}

/// What [`ClientBuilder::build`] hands over.
pub(crate) struct Parts {
    pub(crate) settings: Settings,
    #[cfg(feature = "tls")]
    pub(crate) tls: Tls,
}

struct Inner {
    settings: Settings,
    resolver: Resolver,
    pool: KeepAlive,
    #[cfg(feature = "tls")]
    tls: Tls,
    stats: Counters,
}

/// A shard-local HTTP/1.1 client (Eventlet's green `urllib2`): requests are
/// green, connections are kept alive and reused per host, names resolve off
/// the shard.
///
/// `Client` is a cheap handle: clones share the keep-alive pool and the DNS
/// cache. It is `!Send`: make one per shard (or use [`get`], which does).
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// send(shardlet::http::Client::new());
/// ```
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use shardlet::http::Client;
///
/// // A one-shot server on a plain thread, for the example.
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let url = format!("http://{}/hello", listener.local_addr()?);
/// std::thread::spawn(move || {
///     let (mut stream, _) = listener.accept().unwrap();
///     let mut buf = [0; 1024];
///     let _ = stream.read(&mut buf).unwrap();
///     stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
/// });
///
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(move || {
/// # let url = url.clone();
/// # async move {
/// let client = Client::new();
/// let response = client.get(&url).await.unwrap();
/// assert_eq!(response.status, 200);
/// assert_eq!(response.body, b"hello");
/// # }}).unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub(crate) fn assemble(parts: Parts) -> Client {
        let s = parts.settings;
        Client {
            inner: Rc::new(Inner {
                resolver: Resolver::new(s.dns_ttl, s.dns_timeout),
                pool: KeepAlive::new(s.max_idle_per_host, s.max_idle, s.idle_timeout),
                #[cfg(feature = "tls")]
                tls: parts.tls,
                stats: Counters::default(),
                settings: s,
            }),
        }
    }

    /// A client with the default settings (see [`ClientBuilder`]).
    pub fn new() -> Client {
        ClientBuilder::default()
            .build()
            .expect("the default client settings are valid")
    }

    /// Settings for a new client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Fetches `url` with `GET`, following redirects.
    ///
    /// # Errors
    ///
    /// An [`Error`] naming the URL; see [`ErrorKind`] for the kinds.
    pub async fn get(&self, url: &str) -> Result<Response, Error> {
        self.send("GET", url, None).await
    }

    /// Fetches `url` with `HEAD`: status and fields, no body.
    ///
    /// # Errors
    ///
    /// As [`get`](Client::get).
    pub async fn head(&self, url: &str) -> Result<Response, Error> {
        self.send("HEAD", url, None).await
    }

    /// Sends `body` to `url` with `POST` and a `Content-Type` of `content_type`.
    /// A 301, 302 or 303 redirect is followed with a `GET` (as browsers do);
    /// 307 and 308 repeat the `POST`.
    ///
    /// # Errors
    ///
    /// As [`get`](Client::get).
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<Response, Error> {
        self.send("POST", url, Some((content_type.to_string(), body.into())))
            .await
    }

    /// What this client has done so far.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.stats;
        ClientStats {
            requests: c.requests.get(),
            connections: c.connections.get(),
            reused: c.reused.get(),
            idle: self.inner.pool.len(),
        }
    }

    async fn send(
        &self,
        method: &'static str,
        url: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Result<Response, Error> {
        let parsed = Url::parse(url).map_err(|e| Error::new(url, ErrorKind::BadUrl(e.to_string())))?;
        let limit = self.inner.settings.request_timeout;
        // Boxed: the request's state lives on the heap, so the future a caller
        // holds (and may nest in its own) stays a few hundred bytes.
        let request = Box::pin(self.follow(method, parsed, body));
        match crate::timeout(limit, request).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                url,
                ErrorKind::Timeout {
                    phase: Phase::Request,
                    after: limit,
                },
            )),
        }
    }

    async fn follow(
        &self,
        mut method: &'static str,
        mut url: Url,
        mut body: Option<(String, Vec<u8>)>,
    ) -> Result<Response, Error> {
        let max = self.inner.settings.max_redirects;
        for hop in 0..=max {
            let response = self.hop(method, &url, body.as_ref()).await?;
            if max == 0 || !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let Some(location) = response.headers.get("location") else {
                return Ok(response);
            };
            if hop == max {
                return Err(Error::new(
                    url.as_str(),
                    ErrorKind::TooManyRedirects { limit: max },
                ));
            }
            let next = url.join(location.trim()).map_err(|e| {
                Error::new(
                    url.as_str(),
                    ErrorKind::Protocol(format!("bad redirect Location {location:?}: {e}")),
                )
            })?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(Error::new(
                    url.as_str(),
                    ErrorKind::Protocol(format!("redirect to a non-HTTP URL {next}")),
                ));
            }
            if response.status == 303 || (method == "POST" && matches!(response.status, 301 | 302)) {
                method = "GET";
                body = None;
            }
            tracing::debug!(target: "shardlet::http", from = %url, to = %next, status = response.status, "redirect");
            url = next;
        }
        unreachable!("the last hop returns")
    }

    /// One request on one connection (retried once on a stale kept-alive one).
    async fn hop(
        &self,
        method: &'static str,
        url: &Url,
        body: Option<&(String, Vec<u8>)>,
    ) -> Result<Response, Error> {
        let fail = |kind| Error::new(url.as_str(), kind);
        let target = Target::of(url).map_err(fail)?;
        let idempotent = matches!(method, "GET" | "HEAD");
        loop {
            let (conn, reused) = match self.inner.pool.take(&target.key) {
                Some(conn) => (conn, true),
                None => (self.connect(&target).await.map_err(fail)?, false),
            };
            let stats = &self.inner.stats;
            stats.requests.set(stats.requests.get() + 1);
            if reused {
                stats.reused.set(stats.reused.get() + 1);
            }
            match self.exchange(conn, method, url, &target, body).await {
                Ok((response, conn)) => {
                    if let Some(conn) = conn {
                        self.inner.pool.put(target.key.clone(), conn);
                    }
                    return Ok(response);
                }
                Err(Failure::Stale(kind)) if reused && idempotent => {
                    tracing::debug!(target: "shardlet::http", %url, "kept-alive connection was closed ({kind}); retrying");
                }
                Err(Failure::Stale(kind) | Failure::Other(kind)) => return Err(fail(kind)),
            }
        }
    }

    async fn connect(&self, target: &Target) -> Result<Conn, ErrorKind> {
        let s = &self.inner.settings;
        let addrs: Vec<SocketAddr> = match target.ip {
            Some(ip) => vec![SocketAddr::new(ip, target.port)],
            None => match self.inner.resolver.resolve(&target.host, target.port).await {
                Ok(addrs) => addrs.iter().copied().take(MAX_ADDRS).collect(),
                Err(DnsError::Timeout(after)) => {
                    return Err(ErrorKind::Timeout {
                        phase: Phase::Dns,
                        after,
                    })
                }
                Err(DnsError::Failed(reason)) => {
                    return Err(ErrorKind::Dns {
                        host: target.host.clone(),
                        reason,
                    })
                }
            },
        };
        let mut stream = None;
        let mut last = None;
        for addr in addrs {
            match crate::net::connect(addr, s.connect_timeout).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    last = Some(ErrorKind::Timeout {
                        phase: Phase::Connect,
                        after: s.connect_timeout,
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
        let Some(stream) = stream else {
            return Err(last.expect("at least one address was tried"));
        };
        self.inner
            .stats
            .connections
            .set(self.inner.stats.connections.get() + 1);
        let transport = if target.key.0 {
            self.handshake(target, stream).await?
        } else {
            Transport::Plain(stream)
        };
        Ok(Conn::new(transport, s.read_timeout))
    }

    #[cfg(feature = "tls")]
    async fn handshake(
        &self,
        target: &Target,
        stream: crate::net::TcpStream,
    ) -> Result<Transport, ErrorKind> {
        let limit = self.inner.settings.connect_timeout;
        match crate::timeout(limit, self.inner.tls.connect(&target.host, stream)).await {
            Ok(Ok(tls)) => Ok(Transport::Tls(Box::new(tls))),
            Ok(Err(source)) => Err(ErrorKind::Tls {
                host: target.host.clone(),
                source,
            }),
            Err(_) => Err(ErrorKind::Timeout {
                phase: Phase::Connect,
                after: limit,
            }),
        }
    }

    #[cfg(not(feature = "tls"))]
    async fn handshake(&self, _: &Target, _: crate::net::TcpStream) -> Result<Transport, ErrorKind> {
        Err(ErrorKind::BadUrl("https needs shardlet's `tls` feature".into()))
    }

    /// Writes the request and reads the response; hands the connection back
    /// when it can carry another request.
    async fn exchange(
        &self,
        mut conn: Conn,
        method: &'static str,
        url: &Url,
        target: &Target,
        body: Option<&(String, Vec<u8>)>,
    ) -> Result<(Response, Option<Conn>), Failure> {
        let s = &self.inner.settings;
        let mut request = Vec::with_capacity(256 + body.map_or(0, |b| b.1.len()));
        request.extend_from_slice(method.as_bytes());
        request.push(b' ');
        request.extend_from_slice(url[Position::BeforePath..Position::AfterQuery].as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        request.extend_from_slice(target.host_header.as_bytes());
        request.extend_from_slice(b"\r\nUser-Agent: ");
        request.extend_from_slice(s.user_agent.as_bytes());
        request.extend_from_slice(b"\r\nAccept: */*\r\n");
        if let Some((content_type, bytes)) = body {
            request.extend_from_slice(
                format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                    bytes.len()
                )
                .as_bytes(),
            );
        }
        request.extend_from_slice(b"\r\n");
        if let Some((_, bytes)) = body {
            request.extend_from_slice(bytes);
        }
        let writer = conn.io.get_mut();
        if let Err(e) = async {
            writer.write_all(&request).await?;
            writer.flush().await
        }
        .await
        {
            return Err(Failure::Stale(io_kind(e)));
        }

        // Interim 1xx responses are skipped.
        let (status, reason, version, headers) = loop {
            let head = match codec::read_head(&mut conn.io, s.max_head).await {
                Ok(Some(head)) => head,
                Ok(None) => {
                    return Err(Failure::Stale(ErrorKind::Protocol(
                        "connection closed before the response".into(),
                    )))
                }
                Err(WireError::Io(e)) if e.kind() != std::io::ErrorKind::TimedOut => {
                    return Err(Failure::Stale(io_kind(e)))
                }
                Err(e) => return Err(Failure::Other(wire_kind(e, s))),
            };
            let parsed = parse_head(&head).map_err(Failure::Other)?;
            if !(100..200).contains(&parsed.0) || parsed.0 == 101 {
                break parsed;
            }
        };
        let framing =
            Framing::for_response(method, status, &headers).map_err(|e| Failure::Other(wire_kind(e, s)))?;
        let body = codec::read_body(&mut conn.io, framing, s.max_body)
            .await
            .map_err(|e| Failure::Other(wire_kind(e, s)))?;
        let keep_alive = if version == 1 {
            !headers.has_token("connection", "close")
        } else {
            headers.has_token("connection", "keep-alive")
        };
        let reusable = keep_alive && framing.reusable() && status != 101 && conn.io.buffer().is_empty();
        let response = Response {
            status,
            reason,
            version,
            headers,
            body,
            url: url.clone(),
        };
        Ok((response, reusable.then_some(conn)))
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.inner.settings)
            .field("stats", &self.stats())
            .finish()
    }
}

/// How an exchange failed: `Stale` when nothing of a response came back (a
/// kept-alive connection the server had closed), so a retry is safe.
enum Failure {
    Stale(ErrorKind),
    Other(ErrorKind),
}

/// Where a URL's request goes.
struct Target {
    key: Key,
    /// The host without brackets (a name, or an IP literal).
    host: String,
    ip: Option<IpAddr>,
    port: u16,
    /// `host[:port]` as the `Host` field wants it.
    host_header: String,
}

impl Target {
    fn of(url: &Url) -> Result<Target, ErrorKind> {
        let https = match url.scheme() {
            "http" => false,
            "https" if cfg!(feature = "tls") => true,
            "https" => return Err(ErrorKind::BadUrl("https needs shardlet's `tls` feature".into())),
            other => return Err(ErrorKind::BadUrl(format!("unsupported scheme {other:?}"))),
        };
        let (host, ip) = match url.host() {
            Some(Host::Domain(name)) => (name.to_string(), None),
            Some(Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            None => return Err(ErrorKind::BadUrl("no host".into())),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| ErrorKind::BadUrl("no port".into()))?;
        Ok(Target {
            key: (https, host.clone(), port),
            host,
            ip,
            port,
            host_header: url[Position::BeforeHost..Position::AfterPort].to_string(),
        })
    }
}

/// Status, reason, minor version and fields of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, String, u8, Headers), ErrorKind> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ErrorKind::Protocol("incomplete response head".into())),
        Err(e) => {
            let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(&line[..line.len().min(80)]);
            return Err(ErrorKind::Protocol(format!(
                "{e} (status line {:?})",
                line.trim_end()
            )));
        }
    }
    let status = response.code.unwrap_or_default();
    Ok((
        status,
        response.reason.unwrap_or_default().to_string(),
        response.version.unwrap_or(1),
        Headers::from_httparse(response.headers),
    ))
}

fn io_kind(e: std::io::Error) -> ErrorKind {
    ErrorKind::Io(e)
}

fn wire_kind(e: WireError, s: &Settings) -> ErrorKind {
    match e {
        WireError::BodyTooLarge { limit } => ErrorKind::TooLarge { limit },
        WireError::HeadTooLarge { limit } => {
            ErrorKind::Protocol(format!("response head larger than {limit} bytes"))
        }
        WireError::Malformed(reason) | WireError::Truncated(reason) => ErrorKind::Protocol(reason),
        WireError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ErrorKind::Timeout {
            phase: Phase::Read,
            after: s.read_timeout,
        },
        WireError::Io(e) => ErrorKind::Io(e),
    }
}

thread_local! {
    static DEFAULT: Client = Client::new();
}

/// Fetches `url` with the shard's default [`Client`] (default settings; its
/// keep-alive pool and DNS cache are shared by every `get` on the shard).
///
/// # Errors
///
/// An [`Error`] naming the URL.
///
/// # Examples
///
/// ```
/// use futures_lite::StreamExt;
/// use shardlet::{http, GreenPool};
///
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// // The seed's client pattern; nothing listens on port 9 here, so both fail.
/// let urls = ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"];
/// let pool = GreenPool::new(200);
/// let mut results = pool.imap(urls, |url| async move { http::get(url).await });
/// while let Some(result) = results.next().await {
///     let err = result.unwrap().unwrap_err();
///     assert!(err.url().starts_with("http://127.0.0.1:9/"));
/// }
/// # }).unwrap();
/// ```
pub async fn get(url: &str) -> Result<Response, Error> {
    let client = DEFAULT.with(Client::clone);
    client.get(url).await
}
