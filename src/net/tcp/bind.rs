//! [`listen`]: a listening socket built with socket2, registered with the
//! shard's readiness driver as a [`TcpListener`].
//!
//! (glommio's own `TcpListener::bind` always sets `SO_REUSEPORT`, so a
//! second server on the same port silently splits the traffic, and a
//! backlog of 1024, too short for ten thousand clients connecting at once.
//! Here both are explicit, and a [`Server`](crate::net::Server) in
//! reuseport mode checks that its port is free before it binds the first
//! of its listeners: [`bind_first`].)

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::net::TcpListener;

/// Default listen backlog: connections the kernel completes and queues
/// before the server accepts them. The kernel caps it at
/// `net.core.somaxconn` (4096 on current kernels).
pub const DEFAULT_BACKLOG: u32 = 4096;

const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";

/// How [`listen_with`] builds its socket.
///
/// # Examples
///
/// ```
/// use shardlet::net::ListenOptions;
///
/// let options = ListenOptions::default().with_backlog(128).with_reuse_port(true);
/// assert_eq!(options.backlog(), 128);
/// assert!(options.reuse_port() && options.nodelay());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOptions {
    backlog: u32,
    reuse_port: bool,
    nodelay: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: DEFAULT_BACKLOG,
            reuse_port: false,
            nodelay: true,
        }
    }
}

impl ListenOptions {
    /// Sets the listen backlog. Default: [`DEFAULT_BACKLOG`]; values above
    /// the kernel's `net.core.somaxconn` are lowered to it.
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Sets `SO_REUSEPORT`, so that several sockets (one per shard) can
    /// listen on the same address and the kernel spreads connections over
    /// them. Default: off, so binding a port already in use fails.
    ///
    /// With it, [`listen_with`] joins any listener on the address that set
    /// `SO_REUSEPORT` too and belongs to the same user, in this process or
    /// another: a second program on that port does not fail, it takes a
    /// share of the connections. A [`Server`](crate::net::Server) in
    /// reuseport mode checks that the port is free first.
    pub fn with_reuse_port(mut self, reuse_port: bool) -> Self {
        self.reuse_port = reuse_port;
        self
    }

    /// Sets `TCP_NODELAY` on the listener; on Linux accepted streams inherit
    /// it. Default: on (small request/response messages go out at once).
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// The requested backlog.
    pub fn backlog(&self) -> u32 {
        self.backlog
    }

    /// Whether `SO_REUSEPORT` is set.
    pub fn reuse_port(&self) -> bool {
        self.reuse_port
    }

    /// Whether accepted streams get `TCP_NODELAY`.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// The backlog the kernel will use: the requested one, capped by
    /// `net.core.somaxconn` when that can be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::net::ListenOptions;
    ///
    /// let effective = ListenOptions::default().with_backlog(1 << 30).effective_backlog();
    /// assert!(effective >= 128 && effective < 1 << 30);
    /// ```
    pub fn effective_backlog(&self) -> u32 {
        let cap = std::fs::read_to_string(SOMAXCONN)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let backlog = cap.map_or(self.backlog, |cap| self.backlog.min(cap));
        backlog.clamp(1, i32::MAX as u32)
    }
}

/// Eventlet's `listen`: a TCP listener on `addr` (IPv4 or IPv6) with
/// `SO_REUSEADDR`, `TCP_NODELAY` inherited by accepted streams, and a
/// backlog of [`DEFAULT_BACKLOG`]. Port 0 picks a free port; ask
/// [`TcpListener::local_addr`] which.
///
/// For several shards on one address use a [`Server`](crate::net::Server),
/// or [`listen_with`] and [`ListenOptions::with_reuse_port`].
///
/// # Errors
///
/// The error of `socket(2)`, `bind(2)` or `listen(2)`, with the address in
/// its message (e.g. `AddrInUse`).
///
/// # Panics
///
/// Outside a shard (a glommio executor).
///
/// # Examples
///
/// ```
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let listener = shardlet::net::listen(([127, 0, 0, 1], 0)).unwrap();
/// assert_ne!(listener.local_addr().unwrap().port(), 0);
/// # }).unwrap();
/// ```
pub fn listen(addr: impl Into<SocketAddr>) -> io::Result<TcpListener> {
    listen_with(addr, &ListenOptions::default())
}

/// [`listen`] with explicit [`ListenOptions`].
///
/// # Errors
///
/// As [`listen`].
///
/// # Panics
///
/// Outside a shard (a glommio executor).
///
/// # Examples
///
/// ```
/// use shardlet::net::{listen_with, ListenOptions};
///
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let options = ListenOptions::default().with_reuse_port(true);
/// let a = listen_with(([127, 0, 0, 1], 0), &options).unwrap();
/// let b = listen_with(a.local_addr().unwrap(), &options).unwrap(); // same port
/// assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
/// # }).unwrap();
/// ```
pub fn listen_with(addr: impl Into<SocketAddr>, options: &ListenOptions) -> io::Result<TcpListener> {
    TcpListener::from_std(bind(addr.into(), options)?.into())
}

/// [`bind`] for the first listener of a group that shares `addr` through
/// `SO_REUSEPORT` (a [`Server`](crate::net::Server) in reuseport mode):
/// first fails with `AddrInUse` if something already listens on `addr`,
/// which `SO_REUSEPORT` alone would let this socket join. Port 0 needs no
/// check (the kernel picks a port nobody uses), and neither does a socket
/// without `SO_REUSEPORT` (its own bind fails).
///
/// The check and the bind are two steps: another program binding the same
/// port with `SO_REUSEPORT` between them (microseconds) still joins, and so
/// does one that binds it later without checking (glommio's
/// `TcpListener::bind`, or [`listen_with`] with `SO_REUSEPORT`). A second
/// `Server` started any time after the first one's bind fails.
pub(crate) fn bind_first(addr: SocketAddr, options: &ListenOptions) -> io::Result<Socket> {
    if options.reuse_port && addr.port() != 0 {
        check_free(addr)?;
    }
    bind(addr, options)
}

/// Fails with `AddrInUse` when a socket listens on `addr`: binds a
/// throwaway socket there with `SO_REUSEADDR` but without `SO_REUSEPORT`,
/// which the kernel refuses next to any listener, whatever its options,
/// and allows next to connections left in `TIME_WAIT` (as the real bind
/// does). The throwaway socket never listens and is closed at once.
fn check_free(addr: SocketAddr) -> io::Result<()> {
    let context = |err: io::Error| io::Error::new(err.kind(), format!("listen on {addr}: {err}"));
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(context)?;
    probe.set_reuse_address(true).map_err(context)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            err.kind(),
            format!(
                "listen on {addr}: {err} (another socket listens there; with SO_REUSEPORT \
                 this server would silently share its connections)"
            ),
        )),
        Err(err) => Err(context(err)),
    }
}

/// The socket behind [`listen_with`]; needs no executor, so a
/// [`Server`](crate::net::Server) binds before its runtime starts.
pub(crate) fn bind(addr: SocketAddr, options: &ListenOptions) -> io::Result<Socket> {
    let context = |err: io::Error| io::Error::new(err.kind(), format!("listen on {addr}: {err}"));
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(context)?;
    socket.set_reuse_address(true).map_err(context)?;
    if options.reuse_port {
        socket.set_reuse_port(true).map_err(context)?;
    }
    if options.nodelay {
        socket.set_nodelay(true).map_err(context)?;
    }
    socket.bind(&addr.into()).map_err(context)?;
    socket
        .listen(options.effective_backlog() as i32)
        .map_err(context)?;
    Ok(socket)
}
