//! [`Server`]: one address served on every shard, with accept spreading,
//! per-shard counters and a stop handle.

pub(crate) mod accept_errors;
pub(crate) mod acceptor;
pub(crate) mod backoff;
pub(crate) mod capacity;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod descriptors;
pub(crate) mod mailboxes;
pub(crate) mod readiness;
pub(crate) mod requests;
pub(crate) mod serving;
pub(crate) mod stats;
pub(crate) mod stops;
pub(crate) mod table;

pub use crate::config::AcceptMode;
pub use config::{ServerConfig, WhenFull, DEFAULT_HANDOFF_CAPACITY};
pub use connection::{Connection, Evicted};
pub use descriptors::{
    default_max_connections, fd_limit, fd_reserve, max_connections_for, FD_RESERVE, FD_RESERVE_DIVISOR,
    FD_RESERVE_PER_SHARD,
};
pub use readiness::Ready;
pub use requests::{latency_histogram, LatencyBuckets, RequestStats, LATENCY_BUCKETS};
pub use serving::{serve, serve_with, DEFAULT_DRAIN_TIMEOUT};
pub use stats::{ServerStats, ShardStats};
pub use table::{EVICTION_GRACE, QUIET_PERIOD};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::net::server::acceptor::Acceptor;
use crate::net::server::capacity::CapOrigin;
use crate::net::server::table::Conns;

use crate::config::current as place;
use crate::net::server::mailboxes::Handoff;
use crate::net::server::serving::{ShardServer, Source};
use crate::net::server::stats::{Counters, Watchers};
use crate::net::server::stops::Stops;
use crate::net::tcp::bind;
use crate::net::{TcpListener, TcpStream};
use crate::sync::stop::Stopper;

/// One address served on every shard (Eventlet's `serve`, thread-per-core).
///
/// Build it before the runtime starts (binding errors show up at once, and
/// port 0 resolves to one port for all shards), then call
/// [`serve`](Server::serve) from every shard's entry. `Server` is a cheap,
/// `Send + Sync` handle: clone it into the entry closure, keep one on the
/// host to read [`stats`](Server::stats) and to [`stop`](Server::stop) it.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
/// use shardlet::{Config, Runtime, Server, ServerConfig};
///
/// let runtime = Runtime::new(Config::default().with_shards(2).with_pin(false))?;
/// let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config()))?;
/// let handle = runtime.start({
///     let server = server.clone();
///     move || {
///         let server = server.clone();
///         async move {
///             server
///                 .serve(|mut stream| async move {
///                     let mut buf = vec![0u8; 4096];
///                     loop {
///                         let n = stream.read(&mut buf).await?;
///                         if n == 0 {
///                             return Ok(());
///                         }
///                         stream.write_all(&buf[..n]).await?;
///                     }
///                 })
///                 .await
///         }
///     }
/// })?;
/// server.wait_ready(Duration::from_secs(10))?;
///
/// let mut client = std::net::TcpStream::connect(server.local_addr())?;
/// client.write_all(b"ping")?;
/// let mut echo = [0u8; 4];
/// client.read_exact(&mut echo)?;
/// assert_eq!(&echo, b"ping");
/// drop(client);
///
/// server.stop(Duration::from_secs(1));
/// for served in handle.join()? {
///     served?;
/// }
/// assert_eq!(server.stats().accepted(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    config: ServerConfig,
    /// The listener bound by [`Server::bind`], taken by the first shard that
    /// serves (reuseport) or by shard 0's acceptor (handoff).
    first: Mutex<Option<Socket>>,
    shards: OnceLock<Shards>,
    stopper: Stopper,
    /// The first serve failure, for [`Server::wait_ready`] and [`Server::ready`].
    failure: Mutex<Option<(io::ErrorKind, String)>>,
    /// [`Server::ready`]'s futures, told of every change.
    watchers: Arc<Watchers>,
}

/// Per-shard state, sized by the first shard that serves.
#[derive(Debug)]
struct Shards {
    counters: Vec<Arc<Counters>>,
    handoff: Option<Arc<Handoff>>,
    /// Each shard's connection cap, resolved when the first shard serves.
    cap: usize,
    origin: CapOrigin,
}

impl Server {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port) with `config`'s
    /// listen options. Needs no runtime: call it before starting one.
    ///
    /// # Errors
    ///
    /// The error of `socket(2)`, `bind(2)` or `listen(2)`, with the address
    /// in its message: `AddrInUse` when something listens on `addr`
    /// already, in either accept mode. (In reuseport mode the port is
    /// checked just before the bind; a program that binds it with
    /// `SO_REUSEPORT` in between, or later without such a check, can still
    /// share it.)
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::{Server, ServerConfig};
    ///
    /// let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::default())?;
    /// assert_ne!(server.local_addr().port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind(addr: impl Into<SocketAddr>, config: ServerConfig) -> io::Result<Server> {
        let socket = bind::bind_first(addr.into(), &config.listen_options())?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))?;
        tracing::debug!(
            target: "shardlet::net",
            %addr,
            accept = %config.accept(),
            backlog = config.listen_options().effective_backlog(),
            "server bound"
        );
        Ok(Server {
            inner: Arc::new(Inner {
                addr,
                config,
                first: Mutex::new(Some(socket)),
                shards: OnceLock::new(),
                stopper: Stopper::new(),
                failure: Mutex::new(None),
                watchers: Arc::default(),
            }),
        })
    }

    /// The address the server listens on (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Serves connections on the current shard until the server or the
    /// runtime is asked to stop, running `handler(stream)` for each as a
    /// green thread; call it from every shard's entry.
    ///
    /// The same as [`serve_with`](Server::serve_with) with a handler that
    /// never marks its connection idle (so none is ever evicted).
    ///
    /// # Errors
    ///
    /// As [`serve_with`](Server::serve_with).
    ///
    /// # Panics
    ///
    /// Outside a shard (a glommio executor).
    pub async fn serve<H, Fut>(&self, handler: H) -> io::Result<()>
    where
        H: Fn(TcpStream) -> Fut + 'static,
        Fut: Future<Output = io::Result<()>> + 'static,
    {
        self.serve_with(move |stream, _| handler(stream)).await
    }

    /// Like [`serve`](Server::serve), but the handler also gets the
    /// connection's [`Connection`] handle, to mark it idle (e.g. an HTTP
    /// keep-alive connection between requests) and to hear when the server
    /// wants it closed.
    ///
    /// Each shard holds at most its connection cap
    /// ([`ServerConfig::connection_cap`]: the one set, or one derived from
    /// the descriptor limit when the first shard starts serving). At the cap,
    /// a new client makes the connection idle the longest close
    /// ([`Connection::evicted`]) and takes its place; with nothing idle, new
    /// clients wait in the kernel backlog or are refused at once
    /// ([`WhenFull`]). Reaching the cap is logged (a
    /// warning naming the cap and how to raise it) and counted
    /// ([`ShardStats::at_capacity`](crate::net::ShardStats::at_capacity)).
    /// In [`AcceptMode::ReusePort`] each shard accepts on its own listener;
    /// in [`AcceptMode::Handoff`] shard 0 runs the acceptor, which hands
    /// each connection to the least loaded shard with room (or, all full, to
    /// one with an idle connection to evict). Accept errors from exhausted
    /// descriptors or memory back off and recover; a handler's error or
    /// panic closes only its own connection (see [`serve`](crate::net::serve())).
    ///
    /// On a stop it stops taking connections at once, asks idle ones to
    /// close, lets the others finish until [`ServerConfig::drain_timeout`]
    /// or the stop's grace period runs out, closes the rest, and returns. A
    /// stopped server does not serve again.
    ///
    /// # Errors
    ///
    /// This shard's listener could not be bound (reuseport), the acceptor
    /// could not start (handoff), the listener failed for good, or the shard
    /// is beyond the shard count the server was first served with.
    ///
    /// # Panics
    ///
    /// Outside a shard (a glommio executor).
    pub async fn serve_with<H, Fut>(&self, handler: H) -> io::Result<()>
    where
        H: Fn(TcpStream, Connection) -> Fut + 'static,
        Fut: Future<Output = io::Result<()>> + 'static,
    {
        let result = self.serve_here(handler).await;
        if let Err(err) = &result {
            let mut failure = self.inner.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert_with(|| (err.kind(), err.to_string()));
            drop(failure);
            self.inner.watchers.wake_all();
        }
        result
    }

    async fn serve_here<H, Fut>(&self, handler: H) -> io::Result<()>
    where
        H: Fn(TcpStream, Connection) -> Fut + 'static,
        Fut: Future<Output = io::Result<()>> + 'static,
    {
        let id = place::try_id().unwrap_or(0);
        let count = place::count().unwrap_or(1);
        let shards = self.shards(count);
        let counters = shards.counters.get(id).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "shard {id} cannot serve: this server was first served by a runtime of {} shards",
                    shards.counters.len()
                ),
            )
        })?;
        let config = &self.inner.config;
        let conns = Conns::new(
            id,
            shards.cap,
            shards.origin,
            config.when_full(),
            counters.clone(),
            shards.handoff.clone(),
        );
        let stops = Stops::current(Some(self.inner.stopper.clone()));
        let server = ShardServer::new(
            handler,
            conns,
            counters.clone(),
            shards.handoff.clone(),
            config.drain_timeout(),
        );
        match (&shards.handoff, config.accept()) {
            (Some(handoff), AcceptMode::Handoff) => {
                let acceptor = if id == 0 {
                    let socket = self.listener_socket()?;
                    let stops = stops.clone();
                    Some(Acceptor::start(
                        socket,
                        handoff.clone(),
                        counters,
                        stops,
                        place::cpu(),
                        config.when_full(),
                    )?)
                } else {
                    None
                };
                let result = server
                    .accept_loop(Source::Mailbox(handoff.inbox(id)), &stops)
                    .await;
                if let Some(acceptor) = &acceptor {
                    acceptor.stop();
                }
                server.drain(&stops).await;
                if let Some(acceptor) = &acceptor {
                    acceptor.finished().await;
                }
                result
            }
            _ => {
                let listener = TcpListener::from_std(self.listener_socket()?.into())?;
                let result = server.accept_loop(Source::Listener(listener), &stops).await;
                server.drain(&stops).await;
                result
            }
        }
    }

    /// The socket bound by [`Server::bind`] if no shard took it yet, or a
    /// new one on the same address.
    fn listener_socket(&self) -> io::Result<Socket> {
        let first = self.inner.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        match first {
            Some(socket) => Ok(socket),
            None => bind::bind(self.inner.addr, &self.inner.config.listen_options()),
        }
    }

    fn shards(&self, count: usize) -> &Shards {
        self.inner.shards.get_or_init(|| {
            let config = &self.inner.config;
            let watchers = &self.inner.watchers;
            let counters: Vec<_> = (0..count)
                .map(|_| Arc::new(Counters::watched(watchers.clone())))
                .collect();
            let handoff = (config.accept() == AcceptMode::Handoff)
                .then(|| Arc::new(Handoff::new(&counters, config.handoff_capacity())));
            let (cap, origin) = descriptors::resolve_cap(config.max_connections(), count);
            check_caps(self.inner.addr, cap, count, origin);
            Shards {
                counters,
                handoff,
                cap,
                origin,
            }
        })
    }

    /// Every shard's counters, readable from any thread; empty until a shard
    /// starts serving.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = shardlet::Server::bind(([127, 0, 0, 1], 0), Default::default())?;
    /// assert!(server.stats().shards.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stats(&self) -> ServerStats {
        let counters = self.inner.shards.get().map_or(&[][..], |s| &s.counters[..]);
        ServerStats {
            shards: counters.iter().map(|c| c.snapshot()).collect(),
            requests: counters.iter().map(|c| c.requests.snapshot()).collect(),
        }
    }

    /// Asks every shard to stop serving: they stop taking connections at
    /// once and close the ones still open `grace` later (or after the drain
    /// timeout, whichever comes first). The runtime keeps running.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let server = shardlet::Server::bind(([127, 0, 0, 1], 0), Default::default())?;
    /// server.stop(Duration::from_secs(1));
    /// assert!(server.is_stopped());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(&self, grace: Duration) {
        self.inner.stopper.stop(grace);
        self.inner.watchers.wake_all();
    }

    /// Whether [`stop`](Server::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopper.is_stopped()
    }

    /// The stop requests this server's serving loops obey on the current
    /// shard: the runtime's and the server's own.
    pub(crate) fn stops(&self) -> Stops {
        Stops::current(Some(self.inner.stopper.clone()))
    }

    /// The first failure of a shard's `serve`, if any.
    pub(crate) fn serve_failure(&self) -> Option<io::Error> {
        let failure = self.inner.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure
            .as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    /// Whether shard `shard` is taking connections now.
    pub(crate) fn is_listening(&self, shard: usize) -> bool {
        self.inner
            .shards
            .get()
            .and_then(|s| s.counters.get(shard))
            .is_some_and(|c| c.listening.load(std::sync::atomic::Ordering::Acquire))
    }

    pub(crate) fn watchers(&self) -> &Watchers {
        &self.inner.watchers
    }

    /// Blocks the calling (host) thread until every shard of the runtime is
    /// taking connections. [`ready`](Server::ready) is its async
    /// counterpart, which also fails at once when a shard fails to start.
    ///
    /// # Errors
    ///
    /// The error of a shard's [`serve`](Server::serve) that failed first,
    /// `TimedOut` after `timeout`, or `Interrupted` when the server was
    /// stopped first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let server = shardlet::Server::bind(([127, 0, 0, 1], 0), Default::default())?;
    /// // No shard serves it: not ready.
    /// let err = server.wait_ready(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_ready(&self, timeout: Duration) -> io::Result<()> {
        let until = crate::time::after(timeout);
        loop {
            if let Some((kind, message)) = &*self.inner.failure.lock().unwrap_or_else(|e| e.into_inner()) {
                return Err(io::Error::new(*kind, message.clone()));
            }
            if self.is_stopped() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "server was stopped"));
            }
            if self.stats().ready() {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("server on {} not ready after {timeout:?}", self.inner.addr),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Logs the caps a server starts with, and warns ([`caps_warning`]) when
/// they add up to more than the descriptor limit leaves for connections.
fn check_caps(addr: SocketAddr, cap: usize, shards: usize, origin: CapOrigin) {
    let limit = match origin {
        CapOrigin::Derived { fd_limit } => fd_limit,
        CapOrigin::Configured => fd_limit(),
    };
    tracing::debug!(target: "shardlet::net", %addr, cap, shards, fd_limit = limit, ?origin, "connection cap per shard");
    if let Some(warning) = caps_warning(cap, shards, limit, origin) {
        tracing::warn!(target: "shardlet::net", %addr, cap, shards, fd_limit = limit, "{warning}");
    }
}

/// Why caps of `cap` per shard over `shards` shards, under a descriptor
/// limit of `limit`, are too high, and what to change; `None` when they
/// fit. Near such caps, accepts fail with `EMFILE` (and back off) instead
/// of the cap being reached cleanly.
///
/// A cap derived from the limit exceeds it only at its floor (1 per
/// shard, the limit below the reserve): then only a higher `ulimit -n` (or
/// fewer shards) helps. A configured cap can also be lowered, or left
/// unset to follow the limit.
fn caps_warning(cap: usize, shards: usize, limit: u64, origin: CapOrigin) -> Option<String> {
    let reserve = fd_reserve(limit, shards);
    let total = (cap as u64).saturating_mul(shards as u64);
    if total.saturating_add(reserve) <= limit {
        return None;
    }
    let over = format!(
        "the server's connection caps add up to {total} ({shards} shards x {cap}), more than the \
         descriptor limit (RLIMIT_NOFILE {limit}) leaves after a reserve of {reserve} for the \
         process: near the caps, accepts fail with EMFILE and back off."
    );
    let advice = match origin {
        CapOrigin::Derived { .. } => {
            // The smallest limit that leaves `total` after its reserve.
            let mut need = total.saturating_add(fd_reserve(0, shards));
            while need.saturating_sub(fd_reserve(need, shards)) < total {
                need += 1;
            }
            format!(
                "The cap was derived from that limit and is at its floor: raise `ulimit -n` (to at \
                 least {need}), or run fewer shards"
            )
        }
        CapOrigin::Configured => "Raise `ulimit -n`, or lower ServerConfig::with_max_connections / \
                                  SHARDLET_MAX_CONNECTIONS (or leave it unset to derive it from the limit)"
            .to_owned(),
    };
    Some(format!("{over} {advice}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handles a host thread keeps are `Send + Sync`.
    #[test]
    fn handles_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Server>();
        send_sync::<ServerConfig>();
        send_sync::<ServerStats>();
        send_sync::<Stops>();
    }

    /// A derived cap over the limit is at its floor: the warning says to
    /// raise `ulimit -n` (to a limit that fits), not to lower or unset a
    /// setting nobody set; a configured one names the setting.
    #[test]
    fn the_caps_warning_fits_where_the_cap_came_from() {
        assert_eq!(caps_warning(100, 2, 20_000, CapOrigin::Configured), None);
        let derived = CapOrigin::Derived { fd_limit: 200 };
        assert_eq!(max_connections_for(200, 1), 1);
        let warning = caps_warning(1, 1, 200, derived).expect("1 + a reserve of 291 > 200");
        assert!(
            warning.contains("raise `ulimit -n` (to at least 293)"),
            "{warning}"
        );
        assert!(!warning.contains("SHARDLET_MAX_CONNECTIONS"), "{warning}");
        assert!(!warning.contains("unset"), "{warning}");
        assert_eq!(max_connections_for(293, 1), 1);
        assert_eq!(
            caps_warning(1, 1, 293, CapOrigin::Derived { fd_limit: 293 }),
            None
        );
        assert!(caps_warning(1, 1, 292, CapOrigin::Derived { fd_limit: 292 }).is_some());

        let configured = caps_warning(10_000, 2, 20_000, CapOrigin::Configured).unwrap();
        assert!(configured.contains("RLIMIT_NOFILE 20000"), "{configured}");
        assert!(configured.contains("SHARDLET_MAX_CONNECTIONS"), "{configured}");
        assert!(configured.contains("Raise `ulimit -n`"), "{configured}");
    }
}
