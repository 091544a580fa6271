//! The one place shardlet hands a raw descriptor to glommio.
//!
//! glommio builds a [`TcpListener`] only by binding it itself (hard-coded
//! `SO_REUSEPORT` and a backlog of 1024) or through `FromRawFd`. Every
//! other conversion in the crate is safe: streams go through
//! `From<socket2::Socket>`.
#![allow(unsafe_code)]

use std::os::fd::IntoRawFd;
use std::os::unix::io::FromRawFd;

use glommio::net::TcpListener;

/// Turns a bound, listening socket into a glommio listener on the current
/// executor.
///
/// # Panics
///
/// Outside a glommio executor (glommio looks up the current reactor).
pub(crate) fn listener(socket: socket2::Socket) -> TcpListener {
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` was just released by `into_raw_fd` from a socket we owned,
    // so it is open, refers to a bound and listening TCP socket (our caller's
    // invariant), and nothing else owns it: the listener takes over closing it.
    unsafe { TcpListener::from_raw_fd(fd) }
}

/// A `std` stream on a duplicate of a glommio stream's descriptor (the same
/// socket; both must be closed before it is). glommio's streams give their
/// descriptor only as a raw number (`AsRawFd`, no `AsFd` or `IntoRawFd`).
pub(crate) fn dup_glommio_stream(stream: &glommio::net::TcpStream) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the descriptor is `stream`'s own, and `stream` is borrowed for
    // this whole call, so it stays open for as long as `borrowed` lives.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    Ok(std::net::TcpStream::from(borrowed.try_clone_to_owned()?))
}
