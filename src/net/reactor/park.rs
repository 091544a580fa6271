//! Waiting, through glommio, until an epoll instance has events: how the
//! readiness driver sleeps without blocking its shard.
//!
//! glommio 0.9 has no public "wait until this descriptor is readable". The
//! least hacky way found in its source: a `glommio::net::TcpStream` arms a
//! one-shot io_uring `POLL_ADD` (read readiness) on its descriptor as soon
//! as it is built (`NonBufferedStream::init`), and its first `poll_read`
//! waits on that poll without a syscall. So the driver wraps a *duplicate*
//! of the epoll descriptor in such a stream and reads it once: the read
//! becomes ready when the epoll instance has events, and then fails with
//! `ENOTSOCK` (glommio's `recv` on a non-socket), which here means "ready".
//! Any other outcome also means "look again": the caller always asks epoll
//! itself. The stream is then dropped (closing only the duplicate); a
//! later wait builds a new one, since glommio re-arms a poll only after a
//! `recv` that would block, which an epoll descriptor never returns.
//!
//! Alternatives looked at and rejected: the datagram and listener types
//! issue their operation (a `recv`, an `accept`) directly, which fails at
//! once on an epoll descriptor instead of waiting; a timer would add latency
//! or spin; a blocking `epoll_wait` would stall the shard's other tasks.
//!
//! All of it is safe code: `std::net::TcpStream: From<OwnedFd>` accepts any
//! descriptor (using a non-socket as a socket only fails with errors), and
//! glommio takes the stream through socket2.
//!
//! The cost is one `dup`, one io_uring poll and one failed `recv` per wait,
//! paid only when the driver has found no events, not per message.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::AsyncRead;

/// One wait for readability of a (duplicated) descriptor, through a
/// glommio io_uring poll.
pub(crate) struct Readable {
    waiter: glommio::net::TcpStream,
}

impl std::fmt::Debug for Readable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readable").finish_non_exhaustive()
    }
}

impl Readable {
    /// Arms the poll on `fd`, which the wait owns (and closes when dropped).
    ///
    /// # Panics
    ///
    /// Outside a glommio executor.
    pub(crate) fn new(fd: OwnedFd) -> Readable {
        let socket = socket2_04::Socket::from(std::net::TcpStream::from(fd));
        Readable {
            waiter: glommio::net::TcpStream::from(socket),
        }
    }
}

impl Future for Readable {
    /// What glommio's `recv` said after the poll fired (`ENOTSOCK` for an
    /// epoll descriptor); whatever it is, the descriptor was signalled.
    type Output = io::Result<usize>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut byte = [0u8; 1];
        Pin::new(&mut self.waiter).poll_read(cx, &mut byte)
    }
}
