//! [`ServerConfig`]: how a [`Server`](crate::net::Server) listens, how many
//! connections each shard holds, and what happens to clients beyond that
//! ([`WhenFull`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::Config;
use crate::net::server::descriptors;
use crate::net::server::serving::DEFAULT_DRAIN_TIMEOUT;
use crate::net::tcp::bind::{ListenOptions, DEFAULT_BACKLOG};
use crate::net::AcceptMode;

/// Connections that may wait in one shard's handoff mailbox, by default.
pub const DEFAULT_HANDOFF_CAPACITY: usize = 64;

/// What a shard does with a new client while it holds its connection cap
/// and has no idle connection to close for it.
///
/// Either way, a shard with idle connections (marked with
/// [`Connection::set_idle`](crate::net::Connection::set_idle)) asks the one
/// idle the longest to close, and serves the new client in its place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WhenFull {
    /// Leave it in the kernel's listen backlog until a connection ends
    /// (Eventlet's behaviour): the client's `connect` succeeds, and it is
    /// served late. Beyond the backlog, the kernel drops its handshakes and
    /// the client retries them. The default.
    #[default]
    Wait,
    /// Accept it and close it at once, so that the client fails fast (its
    /// first read sees the end of the stream) and can go elsewhere; counted
    /// in [`ShardStats::refused`](crate::net::ShardStats::refused).
    Close,
}

impl WhenFull {
    /// The name `FromStr` accepts: `wait` or `close`.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::Wait => "wait",
            WhenFull::Close => "close",
        }
    }
}

impl fmt::Display for WhenFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `wait` or `close` (any case, surrounding spaces ignored).
///
/// # Examples
///
/// ```
/// use shardlet::WhenFull;
///
/// assert_eq!(" Close ".parse::<WhenFull>(), Ok(WhenFull::Close));
/// assert_eq!("drop".parse::<WhenFull>().unwrap_err(), "expected wait or close");
/// ```
impl FromStr for WhenFull {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "wait" => Ok(WhenFull::Wait),
            "close" => Ok(WhenFull::Close),
            _ => Err("expected wait or close".to_owned()),
        }
    }
}

/// How a [`Server`](crate::net::Server) listens and serves.
///
/// Two limits are separate: the **connection cap** (how many connections a
/// shard holds at once: [`with_max_connections`](ServerConfig::with_max_connections),
/// by default derived from the descriptor limit) and the size of a
/// [`GreenPool`](crate::GreenPool) (how many handlers run at once:
/// `SHARDLET_POOL_SIZE`). A raw TCP server's handler lives as long as its
/// connection, so only the cap bounds it; a protocol layer that runs
/// requests in a pool bounds those by the pool.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shardlet::{AcceptMode, Config, ServerConfig, WhenFull};
///
/// // Accept mode and cap from the runtime's configuration (SHARDLET_ACCEPT,
/// // SHARDLET_MAX_CONNECTIONS), the rest here.
/// let config = ServerConfig::from(&Config::default().with_accept(AcceptMode::Handoff))
///     .with_max_connections(10_000)
///     .with_when_full(WhenFull::Close)
///     .with_drain_timeout(Duration::from_secs(2));
/// assert_eq!(config.accept(), AcceptMode::Handoff);
/// assert_eq!(config.max_connections(), Some(10_000));
/// assert_eq!(config.connection_cap(4), 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub(crate) accept: AcceptMode,
    backlog: u32,
    max_connections: Option<usize>,
    when_full: WhenFull,
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
            when_full: WhenFull::default(),
            nodelay: true,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            handoff_capacity: DEFAULT_HANDOFF_CAPACITY,
        }
    }
}

/// Takes the accept mode (`SHARDLET_ACCEPT`) and the connection cap
/// (`SHARDLET_MAX_CONNECTIONS`) from a runtime [`Config`].
///
/// # Panics
///
/// If the config's connection cap is zero (which
/// [`Config::validate`] and [`Runtime::new`](crate::Runtime::new) refuse).
impl From<&Config> for ServerConfig {
    fn from(config: &Config) -> Self {
        let server = ServerConfig::default().with_accept(config.accept());
        match config.max_connections() {
            Some(max) => server.with_max_connections(max),
            None => server,
        }
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

    /// Sets the connection cap: the most connections each shard holds at
    /// once. Beyond it, idle connections are closed to make room, and
    /// otherwise new clients wait or are refused ([`WhenFull`]).
    ///
    /// Default (`None`): derived from the descriptor limit each time the
    /// server starts serving, divided among the shards, less a reserve (see
    /// [`max_connections_for`](crate::net::max_connections_for));
    /// `ServerConfig::from(&config)` takes `SHARDLET_MAX_CONNECTIONS`.
    ///
    /// # Panics
    ///
    /// If `max` is zero.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        assert!(max > 0, "max_connections must be at least 1");
        self.max_connections = Some(max);
        self
    }

    /// Sets what a full shard does with new clients. Default:
    /// [`WhenFull::Wait`].
    pub fn with_when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
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
    /// mailbox before the acceptor waits (zero counts as one). Default:
    /// [`DEFAULT_HANDOFF_CAPACITY`].
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

    /// The per-shard connection cap, if one was set (`None`: derived from
    /// the descriptor limit at start; see [`connection_cap`](ServerConfig::connection_cap)).
    pub fn max_connections(&self) -> Option<usize> {
        self.max_connections
    }

    /// The per-shard connection cap a server of `shards` shards gets if it
    /// starts now: the one set, or the one derived from the descriptor
    /// limit as it is now.
    pub fn connection_cap(&self, shards: usize) -> usize {
        self.max_connections
            .unwrap_or_else(|| descriptors::default_max_connections(shards))
    }

    /// What a full shard does with new clients.
    pub fn when_full(&self) -> WhenFull {
        self.when_full
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reuseport_sets_so_reuseport() {
        let reuse = ServerConfig::default().with_accept(AcceptMode::ReusePort);
        let handoff = ServerConfig::default().with_accept(AcceptMode::Handoff);
        assert!(reuse.listen_options().reuse_port());
        assert!(!handoff.listen_options().reuse_port());
    }

    #[test]
    fn the_runtime_config_gives_accept_mode_and_cap() {
        let config = Config::default()
            .with_accept(AcceptMode::Handoff)
            .with_max_connections(123);
        let server = ServerConfig::from(&config);
        assert_eq!(
            (server.accept(), server.max_connections(), server.when_full()),
            (AcceptMode::Handoff, Some(123), WhenFull::Wait)
        );
        assert_eq!(ServerConfig::from(&Config::default()).max_connections(), None);
    }
}
