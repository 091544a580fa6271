//! [`AcceptMode`]: how connections reach shards (`SHARDLET_ACCEPT`). A
//! setting, so it lives with the configuration; the servers in `net` read it.

use std::fmt;
use std::str::FromStr;

/// How a [`Server`](crate::net::Server) spreads accepted connections over
/// its shards; set by `SHARDLET_ACCEPT` or [`Config::with_accept`](crate::Config::with_accept).
///
/// # Examples
///
/// ```
/// use shardlet::AcceptMode;
///
/// assert_eq!("handoff".parse::<AcceptMode>(), Ok(AcceptMode::Handoff));
/// assert_eq!(AcceptMode::default().to_string(), "reuseport");
/// assert!("roundrobin".parse::<AcceptMode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AcceptMode {
    /// Every shard binds its own `SO_REUSEPORT` listener on the same address
    /// and accepts on it; the kernel spreads new connections by a hash of
    /// their addresses. No cross-shard traffic, but the spread can skew when
    /// clients are few or long-lived. The connection cap is per shard, and
    /// the kernel does not know it: a client hashed to a full shard waits in
    /// that shard's backlog (or is refused) while another shard has room.
    /// Near the cap, prefer `Handoff`, which always picks a shard with room.
    #[default]
    ReusePort,
    /// One acceptor (beside shard 0, on its CPU) accepts every connection and
    /// hands it to the shard with the fewest live connections, through a
    /// bounded mailbox per shard. Even spread, one extra hop per connection
    /// (Seastar's default).
    Handoff,
}

impl AcceptMode {
    /// The name `SHARDLET_ACCEPT` uses: `reuseport` or `handoff`.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptMode::ReusePort => "reuseport",
            AcceptMode::Handoff => "handoff",
        }
    }
}

impl fmt::Display for AcceptMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AcceptMode {
    type Err = String;

    /// Case-insensitive; `reuse_port` and `reuse-port` are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "reuseport" => Ok(AcceptMode::ReusePort),
            "handoff" => Ok(AcceptMode::Handoff),
            _ => Err("expected reuseport or handoff".to_string()),
        }
    }
}
