//! [`Server`]: HTTP/1.1 and HTTP/2 (h2c) on hyper, on every shard, for the
//! dispatch pattern (Eventlet's `wsgi.server`, thread-per-core). The
//! handler is any hyper or tower `Service` over the `http` crate's types (an
//! axum `Router` included), or a plain `async` closure.
//!
//! # The contract with the net layer and with hyper
//!
//! - **Accepting, spreading, back-pressure, counters** are the net layer's:
//!   [`Server::serve`] and [`Server::serve_tower`] go through
//!   [`Server::serve_service`], which calls
//!   [`net::Server::serve_with`](crate::net::Server::serve_with) with a
//!   connection handler, so each connection is a green thread under the
//!   shard's connection cap, in the accept mode of the server's
//!   [`ServerConfig`]. The connection marks itself idle between requests
//!   ([`net::Connection`]), and when the net layer
//!   evicts it (at the cap, the one idle the longest) it shuts down
//!   gracefully.
//! - **The wire protocol is hyper's** (`conn.rs`): a connection starting
//!   with HTTP/2's preface is served by hyper's HTTP/2 connection, any
//!   other by its HTTP/1.1 one (keep-alive, pipelining, chunked bodies,
//!   `Expect: 100-continue`, strict parsing), on the shard's own stream,
//!   executor and timer ([`rt`](crate::http::rt)).
//! - **What shardlet adds** (`service.rs`, `precheck.rs`, `body.rs`,
//!   `state.rs`): the
//!   [`Limits`] hyper does not check, each with its status; a slot of the
//!   shard's handler pool (`SHARDLET_POOL_SIZE`) held only while a handler
//!   runs, so idle and slow connections cannot lock clients out; the header
//!   and idle timeouts; a panicking handler (in its `call` or its future)
//!   answered with 500.
//! - **Stopping** is the net layer's stop and drain: on [`Server::stop`] or
//!   a runtime stop, each shard stops accepting; its watcher sets a
//!   shard-local signal (`closing.rs`) on which every connection calls
//!   hyper's graceful shutdown: idle connections close at once, requests in
//!   flight finish (answered with `Connection: close`). Whatever still
//!   runs when the drain deadline passes is dropped by the net layer.
//!
//! Logs go to `tracing`, target `shardlet::http`.

mod body;
mod budget;
mod closing;
mod conn;
mod limits;
mod precheck;
mod service;
mod state;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::future;
use http::{Request, Response};
use http_body::Body as HttpBody;

pub use body::{Body, BodyError};
pub use limits::Limits;

use crate::net::{self, ServerConfig, ServerStats};
use crate::pool::GreenPool;
use closing::Closing;
use conn::Builders;
use service::Shared;

/// An HTTP server on every shard: a [`net::Server`] plus [`Limits`],
/// running a handler on the shard that accepted the connection (it need
/// not be `Send`).
///
/// Like `net::Server`, build it before the runtime starts, clone it into
/// the entry closure, and keep one on the host to stop it.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use shardlet::http::{self, server::Body};
/// use shardlet::{Config, Runtime, ServerConfig};
///
/// let runtime = Runtime::new(Config::default().with_shards(2).with_pin(false))?;
/// let server = http::Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config()))?;
/// let handle = runtime.start({
///     let server = server.clone();
///     move || {
///         let server = server.clone();
///         async move {
///             server
///                 .serve(|request: ::http::Request<Body>| async move {
///                     ::http::Response::new(format!("hello from {}\n", request.uri().path()))
///                 })
///                 .await
///         }
///     }
/// })?;
/// server.wait_ready(Duration::from_secs(10))?;
///
/// let mut client = std::net::TcpStream::connect(server.local_addr())?;
/// client.write_all(b"GET /there HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
/// let mut answer = String::new();
/// client.read_to_string(&mut answer)?;
/// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(answer.ends_with("\r\n\r\nhello from /there\n"));
///
/// server.stop(Duration::from_secs(1));
/// for served in handle.join()? {
///     served?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    net: net::Server,
    limits: Arc<Limits>,
}

impl Server {
    /// Binds `addr` with `config` (see [`net::Server::bind`]), with the
    /// default [`Limits`].
    ///
    /// Each shard holds up to its connection cap
    /// ([`ServerConfig::connection_cap`]: `SHARDLET_MAX_CONNECTIONS`, by
    /// default what the descriptor limit allows). A connection between
    /// requests costs a descriptor and a few KiB, not a handler slot, and
    /// at the cap the one idle the longest is closed (hyper's graceful
    /// shutdown) to admit a new client, as nginx does.
    ///
    /// # Errors
    ///
    /// The error of `socket(2)`, `bind(2)` or `listen(2)`.
    pub fn bind(addr: impl Into<SocketAddr>, config: ServerConfig) -> io::Result<Server> {
        Ok(Server::from_net(net::Server::bind(addr, config)?))
    }

    /// Serves HTTP on an already bound [`net::Server`].
    pub fn from_net(net: net::Server) -> Server {
        Server {
            net,
            limits: Arc::new(Limits::default()),
        }
    }

    /// Sets the size limits and timeouts.
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::http::{Limits, Server};
    ///
    /// let server = Server::bind(([127, 0, 0, 1], 0), Default::default())?
    ///     .with_limits(Limits::default().with_max_body(4096));
    /// assert_eq!(server.limits().max_body(), 4096);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// The size limits and timeouts.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The underlying [`net::Server`] (accept mode, stop, counters).
    pub fn net(&self) -> &net::Server {
        &self.net
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr()
    }

    /// Every shard's connection counters.
    pub fn stats(&self) -> ServerStats {
        self.net.stats()
    }

    /// Asks every shard to stop: see [`Server::serve`] for what happens to
    /// connections.
    pub fn stop(&self, grace: Duration) {
        self.net.stop(grace);
    }

    /// Whether [`stop`](Server::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.net.is_stopped()
    }

    /// Blocks the calling (host) thread until every shard serves.
    ///
    /// # Errors
    ///
    /// As [`net::Server::wait_ready`].
    pub fn wait_ready(&self, timeout: Duration) -> io::Result<()> {
        self.net.wait_ready(timeout)
    }

    /// Serves HTTP on the current shard until the server or the runtime is
    /// asked to stop, calling `handler` for each request; call it from every
    /// shard's entry. The simple form of [`serve_service`](Server::serve_service):
    /// an `async` closure from the `http` crate's request to its response.
    ///
    /// # Errors
    ///
    /// As [`net::Server::serve`].
    ///
    /// # Panics
    ///
    /// Outside a shard (a glommio executor).
    pub async fn serve<F, Fut, B>(&self, handler: F) -> io::Result<()>
    where
        F: Fn(Request<Body>) -> Fut + 'static,
        Fut: Future<Output = Response<B>> + 'static,
        B: HttpBody + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        self.serve_service(FnService(handler)).await
    }

    /// Serves any tower [`Service`](tower_service::Service) (an axum
    /// `Router`, a tower stack) on the current shard; see
    /// [`serve_service`](Server::serve_service). Each request calls a clone
    /// of `service`.
    ///
    /// ```no_run
    /// # async fn on_a_shard(server: shardlet::http::Server) -> std::io::Result<()> {
    /// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    /// server.serve_tower(app).await
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`net::Server::serve`].
    ///
    /// # Panics
    ///
    /// Outside a shard (a glommio executor).
    pub async fn serve_tower<S, B>(&self, service: S) -> io::Result<()>
    where
        S: tower_service::Service<Request<Body>, Response = Response<B>> + Clone + 'static,
        S::Future: 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: HttpBody + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        self.serve_service(hyper_util::service::TowerToHyperService::new(service))
            .await
    }

    /// Serves any hyper [`Service`](hyper::service::Service) on the current
    /// shard until the server or the runtime is asked to stop; call it from
    /// every shard's entry.
    ///
    /// Each connection speaks HTTP/1.1 (keep-alive, pipelining) or, when it
    /// opens with HTTP/2's preface, HTTP/2 (h2c by prior knowledge). The
    /// handler runs in a slot of this shard's handler pool
    /// (`SHARDLET_POOL_SIZE`): when all are taken, requests wait for one,
    /// while connections (idle, or still sending a head) hold none, nor
    /// does a handler while it waits for its client's body bytes. A
    /// request that breaks the [`Limits`] or the syntax is answered with its
    /// 4xx status and the connection closes; a handler that panics or fails
    /// gets its request answered with `500 Internal Server Error`. When a
    /// client goes away mid-request, its handler's future is dropped.
    ///
    /// On a stop: no new connections; idle keep-alive connections close at
    /// once; requests in flight are finished and answered with
    /// `Connection: close` (on HTTP/2, a GOAWAY: streams the client opens
    /// more than [`EVICTION_GRACE`](crate::net::EVICTION_GRACE) later are
    /// refused with `REFUSED_STREAM`); connections still open when
    /// [`ServerConfig::drain_timeout`] or the stop's grace period ends are
    /// closed. Then it returns.
    ///
    /// # Errors
    ///
    /// As [`net::Server::serve`].
    ///
    /// # Panics
    ///
    /// Outside a shard (a glommio executor).
    pub async fn serve_service<S, B>(&self, service: S) -> io::Result<()>
    where
        S: hyper::service::Service<Request<Body>, Response = Response<B>> + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: HttpBody + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let closing = Closing::default();
        let limits = (*self.limits).clone();
        let builders = Rc::new(Builders::new(&limits));
        let shared = Rc::new(Shared {
            service,
            budget: Rc::new(budget::AnswerBudget::new(limits.answer_budget())),
            limits,
            pool: GreenPool::default(),
        });
        let stops = self.net.stops();
        let serving = self.net.serve_with({
            let closing = closing.clone();
            move |stream, connection| {
                conn::serve_connection(
                    stream,
                    connection,
                    shared.clone(),
                    builders.clone(),
                    closing.clone(),
                )
            }
        });
        let watcher = async {
            stops.requested().await;
            tracing::debug!(target: "shardlet::http", "stopping: closing idle connections");
            closing.set();
            future::pending::<io::Result<()>>().await
        };
        future::or(serving, watcher).await
    }
}

/// A closure as a hyper service.
struct FnService<F>(F);

impl<F, Fut, B> hyper::service::Service<Request<Body>> for FnService<F>
where
    F: Fn(Request<Body>) -> Fut,
    Fut: Future<Output = Response<B>>,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = AlwaysOk<Fut>;

    fn call(&self, request: Request<Body>) -> Self::Future {
        AlwaysOk {
            fut: (self.0)(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// A closure's answer as a service's `Ok`.
    struct AlwaysOk<F> {
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for AlwaysOk<F> {
    type Output = Result<F::Output, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().fut.poll(cx).map(Ok)
    }
}
