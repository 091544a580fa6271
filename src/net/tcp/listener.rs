//! [`TcpListener`]: a listening socket whose `accept` waits on the shard's
//! readiness driver and gives [`TcpStream`]s registered with it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use futures_lite::future::poll_fn;

use crate::net::reactor::driver::{Direction, Registration};
use crate::net::TcpStream;

/// A TCP listener on the current shard, made by [`listen`](crate::net::listen)
/// or [`listen_with`](crate::net::listen_with).
///
/// `accept` takes a pending connection with a non-blocking `accept4` and,
/// when there is none, waits for the listener's next epoll edge. The stream
/// it returns is already registered with this shard's readiness driver.
///
/// Bound to the shard that made it (`!Send`).
#[derive(Debug)]
pub struct TcpListener {
    io: std::net::TcpListener,
    registration: Registration,
}

impl TcpListener {
    /// Registers a bound, listening `std` listener with the current shard's
    /// readiness driver (setting it non-blocking).
    ///
    /// # Errors
    ///
    /// `fcntl` or `epoll_ctl` failed.
    ///
    /// # Panics
    ///
    /// Outside a shard (a glommio executor).
    pub fn from_std(io: std::net::TcpListener) -> io::Result<TcpListener> {
        io.set_nonblocking(true)?;
        let registration = Registration::new(io.as_fd(), true)?;
        Ok(TcpListener { io, registration })
    }

    /// Waits for the next connection.
    ///
    /// # Errors
    ///
    /// The error of `accept4(2)` (`EMFILE` when out of descriptors, a
    /// connection aborted before it was taken, ...), or registering the new
    /// stream failed.
    pub async fn accept(&self) -> io::Result<TcpStream> {
        let io = poll_fn(|cx| loop {
            std::task::ready!(self.registration.poll_ready(Direction::Read, cx));
            match self.io.accept() {
                Ok((io, _)) => return std::task::Poll::Ready(Ok(io)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.registration.would_block(Direction::Read)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        })
        .await?;
        TcpStream::from_std(io)
    }

    /// The address it listens on (with the port picked for port 0).
    ///
    /// # Errors
    ///
    /// `getsockname` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.registration.deregister(self.io.as_fd());
    }
}
