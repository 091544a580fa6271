//! [`Client`]: a shard-local HTTP client on hyper's client connections,
//! with a keep-alive pool, redirects, time limits and a body limit; [`get`]
//! through a per-shard default client.
//!
//! One request, step by step:
//! 1. the URL is parsed (`url`); `http` and `https` only; a user name and
//!    password in it become `Authorization: Basic` (`userinfo.rs`);
//! 2. the request target is made and checked (`connect.rs`: an `http::Uri`);
//!    then a connection to the same scheme, host and port is taken from the
//!    keep-alive pool (`pool.rs`) once hyper says it is ready, or a new one
//!    made (`connect.rs`: DNS off the shard, TCP, TLS with ALPN, hyper's
//!    HTTP/1.1 or HTTP/2 handshake); for `https`, one connect to a host at a
//!    time, the others waiting to share it should it be HTTP/2
//!    (`connecting.rs`);
//! 3. hyper sends the request and reads the response head (under the idle
//!    read limit); the body is read to its end under the body limit
//!    (`body.rs`);
//! 4. the connection goes back to the pool (hyper keeps it only when the
//!    response allowed it);
//! 5. a redirect (301, 302, 303, 307, 308 with a `Location`) starts again
//!    at step 2, up to the redirect limit.
//!
//! A request that hyper could not even start on a pooled connection (it
//! closed meanwhile) is sent on another; one that a reused connection cut
//! short or reset before any response is retried once, on a new connection
//! (the other pooled ones may be as stale), when its method is idempotent
//! (RFC 9110 §9.2.2: `GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE`)
//! and its body can be sent again (not a stream); whatever its method, once
//! the server says it never processed it (an HTTP/2 stream refused, or past
//! a GOAWAY's last stream: RFC 9113 §8.7).
//! A new connection that the server closes before the request goes out is
//! an error that says so ([`ErrorKind::Io`], `ConnectionAborted`), not a
//! loop of new ones.
//! The whole of it, redirects included, runs under the request time limit
//! (the client's, or the request's own [`Timeout`]).

mod answer;
mod body;
mod builder;
mod connect;
mod connecting;
mod deadline;
mod dns;
mod error;
mod lookups;
mod pool;
mod redirect;
mod response;
mod stats;
#[cfg(feature = "tls")]
mod tls;
mod transport;
mod userinfo;

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use url::Url;

pub use answer::Streamed;
pub use body::Body;
pub use builder::{
    ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MAX_IDLE_PER_HOST,
    DEFAULT_MAX_REDIRECTS, DEFAULT_READ_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};
pub use error::{BuildError, Error, ErrorKind, Phase};
pub use response::ResponseExt;
pub use stats::ClientStats;
pub use userinfo::redact_password;

use answer::Headed;
use builder::Settings;
use connect::Target;
use deadline::Watch;
use dns::Resolver;
use pool::{Pool, Sender};
use response::head_size;
use stats::Counters;
#[cfg(feature = "tls")]
use tls::Tls;
use userinfo::Redacted;

/// The most of a redirect's body read so that its connection can serve the
/// next request (only what is there already).
const REDIRECT_BODY: usize = 64 << 10;

/// A time limit for one request, redirects included, instead of the
/// client's [`request_timeout`](ClientBuilder::request_timeout): put it in
/// the request's extensions.
///
/// ```
/// use std::time::Duration;
/// use shardlet::http::Timeout;
///
/// let mut request = http::Request::get("http://127.0.0.1:9/slow").body(()).unwrap();
/// request.extensions_mut().insert(Timeout(Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

/// What [`ClientBuilder::build`] hands over.
pub(crate) struct Parts {
    pub(crate) settings: Settings,
    #[cfg(feature = "tls")]
    pub(crate) tls: Tls,
}

pub(crate) struct Inner {
    settings: Settings,
    resolver: Resolver,
    pool: Pool,
    #[cfg(feature = "tls")]
    tls: Tls,
    stats: Counters,
}

/// A shard-local HTTP client (Eventlet's green `urllib2`): requests are
/// green, connections are kept alive and reused per host (HTTP/1.1) or
/// shared (HTTP/2, negotiated by ALPN on `https`), names resolve off the
/// shard. Requests and responses are the `http` crate's; a response comes
/// back with its whole body (`Response<Bytes>`), read under the body limit.
///
/// `Client` is a cheap handle: clones share the keep-alive pool and the DNS
/// cache. It is `!Send`: make one per shard (or use [`get`], which does).
/// It can be made anywhere, but its requests panic when awaited outside a
/// shard (a glommio executor).
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
/// use shardlet::http::{Client, ResponseExt};
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
/// let request = http::Request::get(&url).header("x-trace", "1").body(()).unwrap();
/// let response = client.send(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.text(), "hello");
/// assert_eq!(response.url().as_str(), url);
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
                pool: Pool::new(s.max_idle_per_host, s.max_idle, s.idle_timeout),
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
    pub async fn get(&self, url: &str) -> Result<Response<Bytes>, Error> {
        self.fetch(Method::GET, url, HeaderMap::new(), Body::empty(), None)
            .await
    }

    /// Fetches `url` with `HEAD`: status and fields, no body.
    ///
    /// # Errors
    ///
    /// As [`get`](Client::get).
    pub async fn head(&self, url: &str) -> Result<Response<Bytes>, Error> {
        self.fetch(Method::HEAD, url, HeaderMap::new(), Body::empty(), None)
            .await
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
        body: impl Into<Body>,
    ) -> Result<Response<Bytes>, Error> {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::try_from(content_type).map_err(|e| {
            Error::new(
                url,
                ErrorKind::BadUrl(format!("bad content type {content_type:?}: {e}")),
            )
        })?;
        headers.insert(header::CONTENT_TYPE, value);
        self.fetch(Method::POST, url, headers, body.into(), None).await
    }

    /// Sends any request: any method, any header fields (the client adds
    /// `Host`; `User-Agent` and `Accept` unless given; `Authorization:
    /// Basic` for a URI with `user:password@`, unless given), a body in full
    /// or streamed ([`Body`]), and a time limit of its own ([`Timeout`] in
    /// its extensions). The URI must be absolute (`http://host/path`).
    ///
    /// A streamed body cannot be sent twice: a redirect that would repeat
    /// the method, and so the body (307 and 308; 301 and 302 for any method
    /// but `POST`), comes back as the response, as it is, rather than be
    /// followed with the body missing.
    ///
    /// # Errors
    ///
    /// As [`get`](Client::get).
    pub async fn send<B: Into<Body>>(&self, request: Request<B>) -> Result<Response<Bytes>, Error> {
        let (parts, body) = request.into_parts();
        let limit = parts.extensions.get::<Timeout>().map(|t| t.0);
        let url = parts.uri.to_string();
        self.fetch(parts.method, &url, parts.headers, body.into(), limit)
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

    /// A request, redirects and all. Boxed whole: its state lives on the
    /// heap, so the future a caller holds (and may nest in its own, as a
    /// server's handler does, in every connection's task) stays small.
    fn fetch<'a>(
        &'a self,
        method: Method,
        url: &'a str,
        headers: HeaderMap,
        body: Body,
        limit: Option<Duration>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, Error>> + 'a>> {
        Box::pin(
            self.fetch_inner(method, url, headers, body, limit, async |headed, watch| {
                self.finish(headed, watch).await
            }),
        )
    }

    /// A request, redirects and all, under its time limit; `finish` takes
    /// the final answer's head (reading its body, or not) within it.
    async fn fetch_inner<T>(
        &self,
        method: Method,
        url: &str,
        mut headers: HeaderMap,
        body: Body,
        limit: Option<Duration>,
        finish: impl AsyncFnOnce(Headed, &Watch) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let parsed = Url::parse(url).map_err(|e| Error::new(url, ErrorKind::BadUrl(e.to_string())))?;
        if !headers.contains_key(header::AUTHORIZATION) {
            if let Some(basic) = userinfo::basic(&parsed) {
                headers.insert(header::AUTHORIZATION, basic);
            }
        }
        let limit = limit.unwrap_or(self.inner.settings.request_timeout);
        // One timer for the request's limit and its reads' idle limits.
        let watch = Watch::default();
        let idle = self.inner.settings.read_timeout;
        // Where a redirect led: the URL a time-out names (none: `url`).
        let led = Cell::new(None);
        let request = async {
            let headed = self.follow(method, parsed, headers, body, &watch, &led).await?;
            finish(headed, &watch).await
        };
        match watch.run(limit, idle, request).await {
            Ok(result) => result,
            Err(_) => {
                let hop = led.take();
                Err(Error::new(
                    hop.as_ref().map_or(url, Url::as_str),
                    ErrorKind::Timeout {
                        phase: Phase::Request,
                        after: limit,
                    },
                ))
            }
        }
    }

    async fn follow(
        &self,
        mut method: Method,
        mut url: Url,
        mut headers: HeaderMap,
        mut body: Body,
        watch: &Watch,
        led: &Cell<Option<Url>>,
    ) -> Result<Headed, Error> {
        let max = self.inner.settings.max_redirects;
        for hop in 0..=max {
            let again = body.try_clone();
            let target = Target::of(&url).map_err(|kind| Error::new(url.as_str(), kind))?;
            let (response, sender) = self
                .hop(&method, &url, &target, &headers, body, watch)
                .await
                .map_err(|kind| Error::new(url.as_str(), kind))?;
            let status = response.status();
            let location = response.headers().get(header::LOCATION).filter(|_| max > 0);
            let redirect = redirect::of(status, &method, location, &url, again.is_some());
            if let Ok(None) = redirect {
                let key = target.key;
                return Ok(Headed {
                    response,
                    sender,
                    key,
                    method,
                    url,
                });
            }
            // What came with the redirect, if it is all there already, so
            // its connection can serve the next request. A body still on
            // its way costs the connection instead (as in hyper's own
            // client): read whole, a stalled or endless one held the
            // redirect up to the read or the request limit.
            let (head, incoming) = response.into_parts();
            let drained = body::drain_ready(incoming, REDIRECT_BODY).await;
            if answer::reusable(&sender, &head) && (drained || matches!(sender, Sender::H2(..))) {
                self.inner.pool.put(&target.key, sender);
            }
            if hop == max {
                return Err(Error::new(
                    url.as_str(),
                    ErrorKind::TooManyRedirects { limit: max },
                ));
            }
            let redirect = redirect
                .map_err(|kind| Error::new(url.as_str(), kind))?
                .expect("no redirect returned above");
            body = redirect.apply(&url, &mut method, &mut headers, again);
            let next = redirect.next;
            tracing::debug!(target: "shardlet::http", from = %Redacted(&url), to = %Redacted(&next), %status, "redirect");
            // A redirect is rare: its URL is copied for the error a time-out makes.
            led.set(Some(next.clone()));
            url = next;
        }
        unreachable!("the last hop returns")
    }

    /// One request on one connection; its response head, and the connection.
    async fn hop(
        &self,
        method: &Method,
        url: &Url,
        target: &Target,
        headers: &HeaderMap,
        mut body: Body,
        watch: &Watch,
    ) -> Result<(Response<Incoming>, Sender), ErrorKind> {
        let inner = &*self.inner;
        // RFC 9110 §9.2.2: a request with an idempotent method (GET, HEAD,
        // PUT, DELETE, OPTIONS, TRACE) may be sent again after the connection
        // failed before its answer; a POST or PATCH may not.
        let idempotent = method.is_idempotent();
        let mut retried = false;
        // The retry goes on a new connection: a pooled one may be as stale
        // as the one that failed (a server or balancer that closed all of
        // its idle connections at once).
        let mut fresh = false;
        loop {
            let pooled = if fresh { None } else { inner.pool.take(&target.key) };
            let (mut sender, reused) = match pooled {
                Some(sender) => (sender, true),
                // A new connection, or the HTTP/2 one that another request
                // to the host was making meanwhile (then `reused`).
                None => inner.open(target).await?,
            };
            // hyper says whether the connection can take a request: a closed
            // one, or one that got bytes nobody asked for, cannot.
            if let Err(e) = sender.ready().await {
                if reused {
                    tracing::debug!(target: "shardlet::http", url = %Redacted(url), error = %e, "pooled connection not ready; dropped");
                    continue;
                }
                tracing::debug!(target: "shardlet::http", url = %Redacted(url), error = %e, "new connection failed before the request");
                return Err(error::before_sending(e));
            }
            let again = body.try_clone();
            let h2 = matches!(sender, Sender::H2(..));
            // The body's pieces count as progress for the read limit.
            if !http_body::Body::is_end_stream(&body) {
                body = body.counted(watch.sent());
            }
            let request = self.request(method, target, headers, body, h2)?;
            let stats = &inner.stats;
            stats.requests.set(stats.requests.get() + 1);
            if reused {
                stats.reused.set(stats.reused.get() + 1);
            }
            let sending = sender.try_send(request);
            let idle = inner.settings.read_timeout;
            let Ok(sent) = watch.within(idle, sending).await else {
                return Err(ErrorKind::Timeout {
                    phase: Phase::Read,
                    after: idle,
                });
            };
            match sent {
                Ok(response) if !h2 && head_size(&response) > inner.settings.max_head => {
                    return Err(ErrorKind::Protocol(format!(
                        "message head is too large (over the limit of {} bytes)",
                        inner.settings.max_head
                    )));
                }
                // RFC 9110 §15.5.9: a 408 says the server closed the
                // connection without the request; on a reused HTTP/1.1 one,
                // it was sent as (or before) the request came, so the
                // request was never processed (Chromium sends it again too).
                // On HTTP/2 a 408 is the stream's own answer.
                Ok(response)
                    if reused
                        && !h2
                        && !retried
                        && response.status() == http::StatusCode::REQUEST_TIMEOUT
                        && again.is_some() =>
                {
                    tracing::debug!(target: "shardlet::http", url = %Redacted(url), "408 on a reused connection; retrying on a new one");
                    retried = true;
                    fresh = true;
                    body = again.expect("checked above");
                }
                Ok(response) => return Ok((response, sender)),
                Err(mut failed) => {
                    if let Some(unsent) = failed.take_message() {
                        if !reused {
                            // A new connection failed too: no loop of them.
                            return Err(error::before_sending(failed.into_error()));
                        }
                        // Never written: safe to send on another connection.
                        body = unsent.into_body();
                        continue;
                    }
                    let error = failed.into_error();
                    let stale = reused && idempotent && error::closed_under(&error);
                    match again {
                        Some(again) if (stale || error::unprocessed(&error)) && !retried => {
                            tracing::debug!(target: "shardlet::http", url = %Redacted(url), %error, "request not answered on a closed or refusing connection; retrying");
                            retried = true;
                            fresh = true;
                            body = again;
                        }
                        _ => return Err(error::from_hyper(error)),
                    }
                }
            }
        }
    }

    /// The request as hyper sends it: origin-form with `Host` for HTTP/1.1,
    /// absolute for HTTP/2 (hyper turns it into `:authority`), never with
    /// the URL's credentials.
    fn request(
        &self,
        method: &Method,
        target: &Target,
        headers: &HeaderMap,
        body: Body,
        h2: bool,
    ) -> Result<Request<Body>, ErrorKind> {
        let s = &self.inner.settings;
        let mut request = Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = target.uri(h2);
        let fields = request.headers_mut();
        fields.clone_from(headers);
        if !h2 {
            let host = target.host_field.as_ref();
            let host = host.map_err(|e| ErrorKind::BadUrl(e.to_string()))?;
            fields.insert(header::HOST, host.clone());
        }
        if !fields.contains_key(header::USER_AGENT) {
            fields.insert(header::USER_AGENT, s.user_agent.clone());
        }
        if !fields.contains_key(header::ACCEPT) {
            fields.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        Ok(request)
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
/// # Panics
///
/// When awaited outside a shard (a glommio executor), as every request of
/// a [`Client`] does.
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
pub async fn get(url: &str) -> Result<Response<Bytes>, Error> {
    let client = DEFAULT.with(Client::clone);
    client.get(url).await
}
