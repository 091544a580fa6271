//! The one place shardlet handles a raw descriptor number.
//!
//! glommio's streams give their descriptor only as a raw number
//! (`AsRawFd`; no `AsFd`, no `IntoRawFd`), so taking a socket over from
//! one ([`TcpStream::from_glommio`](crate::net::TcpStream::from_glommio))
//! has to borrow that number. Every other conversion in the crate is safe:
//! sockets are built with socket2 and travel as `std` types and `OwnedFd`s.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// A `std` stream on a duplicate of a glommio stream's descriptor (the same
/// socket, which stays open until both are closed).
pub(crate) fn dup_glommio_stream(stream: &glommio::net::TcpStream) -> std::io::Result<std::net::TcpStream> {
    // SAFETY: the descriptor is `stream`'s own, and `stream` is borrowed for
    // this whole call, so it stays open for as long as `borrowed` lives.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    Ok(std::net::TcpStream::from(borrowed.try_clone_to_owned()?))
}
