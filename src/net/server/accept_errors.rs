//! What an `accept` failure means for the loop that got it ([`AcceptError`]).
//! (How connections reach shards, [`AcceptMode`](crate::AcceptMode), is a
//! setting: it lives in `config/accept.rs`.)

use std::io;

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
