//! How connections reach shards ([`AcceptMode`]), and what an `accept`
//! failure means for the loop that got it.

use std::fmt;
use std::io;
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
    /// clients are few or long-lived.
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

/// What an accept loop does with an error from `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// Out of descriptors or kernel memory (`EMFILE`, `ENFILE`, `ENOBUFS`,
    /// `ENOMEM`): wait a growing, bounded delay and retry. Retrying at once
    /// would spin, since the pending connection keeps the listener readable.
    Resource,
    /// The connection died before it was accepted, or a signal interrupted
    /// the call (`accept(2)` lists the network errors to treat like `EAGAIN`):
    /// retry at once.
    Transient,
    /// The listener itself is unusable (`EBADF`, `EINVAL`, `ENOTSOCK`,
    /// `EFAULT`): give up.
    Fatal,
    /// Anything else: retry after the same delay as [`AcceptError::Resource`],
    /// so an unexpected error neither kills the server nor spins.
    Unknown,
}

impl AcceptError {
    pub(crate) fn classify(err: &io::Error) -> AcceptError {
        use nix::errno::Errno;
        let Some(code) = err.raw_os_error() else {
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => AcceptError::Transient,
                _ => AcceptError::Unknown,
            };
        };
        match Errno::from_i32(code) {
            Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM => AcceptError::Resource,
            Errno::EAGAIN
            | Errno::EINTR
            | Errno::ECONNABORTED
            | Errno::ECONNRESET
            | Errno::EPROTO
            | Errno::EPERM
            | Errno::ENETDOWN
            | Errno::ENOPROTOOPT
            | Errno::EHOSTDOWN
            | Errno::ENONET
            | Errno::EHOSTUNREACH
            | Errno::EOPNOTSUPP
            | Errno::ENETUNREACH
            | Errno::ETIMEDOUT => AcceptError::Transient,
            Errno::EBADF | Errno::EINVAL | Errno::ENOTSOCK | Errno::EFAULT => AcceptError::Fatal,
            _ => AcceptError::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_errno() {
        use nix::errno::Errno::*;
        let cases = [
            (EMFILE, AcceptError::Resource),
            (ENFILE, AcceptError::Resource),
            (ENOBUFS, AcceptError::Resource),
            (ENOMEM, AcceptError::Resource),
            (ECONNABORTED, AcceptError::Transient),
            (EAGAIN, AcceptError::Transient),
            (EINTR, AcceptError::Transient),
            (EBADF, AcceptError::Fatal),
            (EINVAL, AcceptError::Fatal),
            (EIO, AcceptError::Unknown),
        ];
        for (errno, class) in cases {
            let err = io::Error::from_raw_os_error(errno as i32);
            assert_eq!(AcceptError::classify(&err), class, "{errno}");
        }
        assert_eq!(
            AcceptError::classify(&io::Error::other("?")),
            AcceptError::Unknown
        );
    }
}
