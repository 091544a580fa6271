//! [`Server`]: a small HTTP/1.1 server on [`net::Server`],
//! for the dispatch pattern (Eventlet's `wsgi`, thread-per-core).
//!
//! # The contract with the net layer
//!
//! - **Accepting, spreading, back-pressure, counters** are the net layer's:
//!   [`Server::serve`] calls [`net::Server::serve`](crate::net::Server::serve)
//!   with a connection handler, so each connection is a green thread under
//!   the shard's connection cap, in the accept mode of the server's
//!   [`ServerConfig`].
//! - **A connection** (`conn.rs`) reads requests through one buffer
//!   (pipelined requests cost no extra read), parses heads with `httparse`,
//!   reads bodies (sized, or chunked: `chunked.rs`) within the [`Limits`],
//!   calls the handler under a panic guard (a panic answers `500` and the
//!   connection goes on), and writes the response (sized, or chunked for a
//!   streamed [`Body`]).
//! - **Stopping** is the net layer's stop and drain: on [`Server::stop`] or
//!   a runtime stop, each shard stops accepting; its watcher sets a
//!   shard-local signal (`closing.rs`) that closes idle keep-alive
//!   connections at once; a request being read or handled is finished and
//!   answered with `Connection: close`. Whatever still runs when the drain
//!   deadline passes is cancelled by the net layer.
//!
//! Logs go to `tracing`, target `shardlet::http`.

mod closing;
mod conn;
mod date;
mod limits;
mod request;
mod response;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;

pub use limits::Limits;
pub use request::{Request, Version};
pub use response::{reason, Body, Response};

use crate::net::{self, ServerConfig, ServerStats};
use closing::Closing;
use conn::Shared;

/// An HTTP/1.1 server on every shard: a [`net::Server`] plus [`Limits`],
/// running a handler `async fn(Request) -> Response` on the shard that
/// accepted the connection (it need not be `Send`).
///
/// Like `net::Server`, build it before the runtime starts, clone it into
/// the entry closure, and keep one on the host to stop it.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use shardlet::http::{self, server::Response};
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
///                 .serve(|request| async move {
///                     Response::text(format!("hello from {}\n", request.path()))
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
    /// shard's entry.
    ///
    /// Connections are kept alive (HTTP/1.1 by default, HTTP/1.0 when asked)
    /// and pipelined requests are answered in order. A request that breaks
    /// the [`Limits`] or the syntax is answered with its 4xx status and the
    /// connection closes; a handler that panics gets its request answered
    /// with `500 Internal Server Error`, and the connection goes on.
    ///
    /// On a stop: no new connections; idle keep-alive connections close at
    /// once; requests in flight are finished and answered with
    /// `Connection: close`; connections still open when
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
    pub async fn serve<H, Fut>(&self, handler: H) -> io::Result<()>
    where
        H: Fn(Request) -> Fut + 'static,
        Fut: Future<Output = Response> + 'static,
    {
        let closing = Closing::default();
        let shared = Rc::new(Shared {
            handler,
            limits: (*self.limits).clone(),
            closing: closing.clone(),
        });
        let stops = self.net.stops();
        let serving = self
            .net
            .serve(move |stream| conn::serve_connection(stream, shared.clone()));
        let watcher = async {
            stops.requested().await;
            tracing::debug!(target: "shardlet::http", "stopping: closing idle connections");
            closing.set();
            future::pending::<io::Result<()>>().await
        };
        future::or(serving, watcher).await
    }
}
