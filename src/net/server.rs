//! [`Server`]: one address served on every shard, with accept spreading,
//! per-shard counters and a stop handle.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::config::{Config, DEFAULT_POOL_SIZE};
use crate::net::acceptor::Acceptor;
use crate::net::handoff::Handoff;
use crate::net::listen::{self, ListenOptions, DEFAULT_BACKLOG};
use crate::net::serve::{ShardServer, Source, Stops, DEFAULT_DRAIN_TIMEOUT};
use crate::net::stats::{Counters, ServerStats};
use crate::net::{AcceptMode, TcpListener, TcpStream};
use crate::pool::GreenPool;
use crate::shard;
use crate::stop::Stopper;

/// Connections that may wait in one shard's handoff mailbox, by default.
pub const DEFAULT_HANDOFF_CAPACITY: usize = 64;

/// How a [`Server`] listens and serves.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shardlet::{AcceptMode, Config, ServerConfig};
///
/// // Accept mode from the runtime's configuration (SHARDLET_ACCEPT), the rest here.
/// let config = ServerConfig::from(&Config::default().with_accept(AcceptMode::Handoff))
///     .with_max_connections(10_000)
///     .with_drain_timeout(Duration::from_secs(2));
/// assert_eq!(config.accept(), AcceptMode::Handoff);
/// assert_eq!(config.max_connections(), Some(10_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    accept: AcceptMode,
    backlog: u32,
    max_connections: Option<usize>,
    nodelay: bool,
    drain_timeout: Duration,
    handoff_capacity: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            accept: AcceptMode::default(),
            backlog: DEFAULT_BACKLOG,
            max_connections: None,
            nodelay: true,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            handoff_capacity: DEFAULT_HANDOFF_CAPACITY,
        }
    }
}

/// Takes the accept mode from a runtime [`Config`] (`SHARDLET_ACCEPT`).
impl From<&Config> for ServerConfig {
    fn from(config: &Config) -> Self {
        ServerConfig::default().with_accept(config.accept())
    }
}

impl ServerConfig {
    /// Sets how connections are spread over shards. Default:
    /// [`AcceptMode::ReusePort`]; `ServerConfig::from(&config)` takes it from
    /// `SHARDLET_ACCEPT`.
    pub fn with_accept(mut self, accept: AcceptMode) -> Self {
        self.accept = accept;
        self
    }

    /// Sets the listen backlog of each listener. Default: [`DEFAULT_BACKLOG`]
    /// (capped by the kernel's `net.core.somaxconn`).
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Sets the most connections each shard serves at once (the size of its
    /// pool); clients beyond it wait in the backlog. Default: the runtime's
    /// pool size (`SHARDLET_POOL_SIZE`, 1000).
    ///
    /// # Panics
    ///
    /// If `max` is zero.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        assert!(max > 0, "max_connections must be at least 1");
        self.max_connections = Some(max);
        self
    }

    /// Sets `TCP_NODELAY` on accepted streams. Default: on.
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Sets how long live connections get to finish after a stop before
    /// they are closed. Default: [`DEFAULT_DRAIN_TIMEOUT`]; a stop's own grace
    /// period cuts it shorter.
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sets how many accepted connections may wait in one shard's handoff
    /// mailbox before the acceptor waits. Default: [`DEFAULT_HANDOFF_CAPACITY`].
    pub fn with_handoff_capacity(mut self, capacity: usize) -> Self {
        self.handoff_capacity = capacity.max(1);
        self
    }

    /// The accept mode.
    pub fn accept(&self) -> AcceptMode {
        self.accept
    }

    /// The requested listen backlog.
    pub fn backlog(&self) -> u32 {
        self.backlog
    }

    /// The per-shard connection limit, if set.
    pub fn max_connections(&self) -> Option<usize> {
        self.max_connections
    }

    /// Whether accepted streams get `TCP_NODELAY`.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// The drain timeout.
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// The handoff mailbox capacity per shard.
    pub fn handoff_capacity(&self) -> usize {
        self.handoff_capacity
    }

    /// The options of each listener: `SO_REUSEPORT` only in reuseport mode.
    pub fn listen_options(&self) -> ListenOptions {
        ListenOptions::default()
            .with_backlog(self.backlog)
            .with_reuse_port(self.accept == AcceptMode::ReusePort)
            .with_nodelay(self.nodelay)
    }
}

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
    /// The first serve failure, for [`Server::wait_ready`].
    failure: Mutex<Option<(io::ErrorKind, String)>>,
}

/// Per-shard state, sized by the first shard that serves.
#[derive(Debug)]
struct Shards {
    counters: Vec<Arc<Counters>>,
    handoff: Option<Arc<Handoff>>,
}

impl Server {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port) with `config`'s
    /// listen options. Needs no runtime: call it before starting one.
    ///
    /// # Errors
    ///
    /// The error of `socket(2)`, `bind(2)` or `listen(2)` (e.g. `AddrInUse`).
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
        let socket = listen::bind(addr.into(), &config.listen_options())?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))?;
        tracing::debug!(
            target: "shardlet::net",
            %addr,
            accept = %config.accept,
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
    /// green thread of this shard's pool; call it from every shard's entry.
    ///
    /// Each shard serves at most [`ServerConfig::max_connections`] at once;
    /// beyond that it stops taking connections, and clients wait in the
    /// kernel backlog. In [`AcceptMode::ReusePort`] each shard accepts on its
    /// own listener; in [`AcceptMode::Handoff`] shard 0 runs the acceptor, and
    /// every shard serves the connections handed to it. Accept errors from
    /// exhausted descriptors or memory back off and recover; a handler's
    /// error or panic closes only its own connection (see [`serve`](crate::net::serve)).
    ///
    /// On a stop it stops taking connections at once, lets live ones finish
    /// until [`ServerConfig::drain_timeout`] or the stop's grace period runs
    /// out, closes the rest, and returns. A stopped server does not serve
    /// again.
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
    pub async fn serve<H, Fut>(&self, handler: H) -> io::Result<()>
    where
        H: Fn(TcpStream) -> Fut + 'static,
        Fut: Future<Output = io::Result<()>> + 'static,
    {
        let result = self.serve_here(handler).await;
        if let Err(err) = &result {
            let mut failure = self.inner.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert_with(|| (err.kind(), err.to_string()));
        }
        result
    }

    async fn serve_here<H, Fut>(&self, handler: H) -> io::Result<()>
    where
        H: Fn(TcpStream) -> Fut + 'static,
        Fut: Future<Output = io::Result<()>> + 'static,
    {
        let id = shard::try_id().unwrap_or(0);
        let count = shard::try_id().map_or(1, |_| shard::count());
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
        let size = config
            .max_connections
            .unwrap_or_else(|| shard::config().map_or(DEFAULT_POOL_SIZE, |c| c.pool_size()));
        counters
            .capacity
            .store(size as u64, std::sync::atomic::Ordering::Relaxed);
        let stops = Stops::current(Some(self.inner.stopper.clone()));
        let server = ShardServer::new(
            id,
            handler,
            GreenPool::new(size),
            counters.clone(),
            shards.handoff.clone(),
            config.drain_timeout,
        );
        match (&shards.handoff, config.accept) {
            (Some(handoff), AcceptMode::Handoff) => {
                let acceptor = if id == 0 {
                    let socket = self.listener_socket()?;
                    let stops = stops.clone();
                    Some(Acceptor::start(
                        socket,
                        handoff.clone(),
                        counters,
                        stops,
                        shard::cpu(),
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
            None => listen::bind(self.inner.addr, &self.inner.config.listen_options()),
        }
    }

    fn shards(&self, count: usize) -> &Shards {
        self.inner.shards.get_or_init(|| {
            let counters: Vec<_> = (0..count).map(|_| Arc::new(Counters::default())).collect();
            let handoff = (self.inner.config.accept == AcceptMode::Handoff)
                .then(|| Arc::new(Handoff::new(&counters, self.inner.config.handoff_capacity)));
            Shards { counters, handoff }
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
        ServerStats {
            shards: self
                .inner
                .shards
                .get()
                .map(|s| s.counters.iter().map(|c| c.snapshot()).collect())
                .unwrap_or_default(),
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

    /// Blocks the calling (host) thread until every shard of the runtime is
    /// taking connections.
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
        let until = Instant::now() + timeout;
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

    #[test]
    fn only_reuseport_sets_so_reuseport() {
        let reuse = ServerConfig::default().with_accept(AcceptMode::ReusePort);
        let handoff = ServerConfig::default().with_accept(AcceptMode::Handoff);
        assert!(reuse.listen_options().reuse_port());
        assert!(!handoff.listen_options().reuse_port());
    }
}
