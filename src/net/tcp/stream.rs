//! [`TcpStream`]: a TCP connection that waits on the shard's epoll
//! readiness driver (`net/reactor/driver.rs`) instead of one-shot io_uring polls.

use std::cell::Cell;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use crate::net::reactor::driver::{Direction, Registration};
use crate::net::tcp::acks::after_answer;
use crate::net::tcp::kept::Kept;

/// A TCP connection served by the shard's readiness driver.
///
/// It implements futures-io's `AsyncRead` and `AsyncWrite` (use
/// `futures_lite::{AsyncReadExt, AsyncWriteExt}`). Reads and writes are
/// plain non-blocking `recv`/`send` calls; when one would block, the task
/// waits for the socket's next epoll edge. A read or write that comes back
/// short marks the socket drained, so a connection that reads one message
/// at a time makes one `recv` per message, not two. After 32 reads or writes
/// in a row that did not have to wait, the next one yields once (wakes its
/// task and returns `Pending`), so that a connection that always has data
/// cannot keep the shard's other connections waiting.
///
/// [`read_with`](TcpStream::read_with) reads into the shard's own buffer
/// instead of the caller's, and [`write_or_keep`](TcpStream::write_or_keep)
/// keeps only the bytes the socket did not take: a connection served with
/// these two holds no buffer of its own while it waits (see
/// [`read_with`](TcpStream::read_with)'s example).
///
/// One known limit of the short-read rule: TCP urgent data (`MSG_OOB`,
/// without `SO_OOBINLINE`) makes `recv` stop short at the urgent mark, and
/// the bytes after it wait for the peer's next segment. Vectored calls
/// count only the first 1024 slices (what one `readv`/`writev` takes).
///
/// Bound to the shard that made it (`!Send`); dropping it deregisters and
/// closes the socket, and discards bytes `write_or_keep` still keeps: send
/// them first with [`flush`](futures_lite::AsyncWriteExt::flush),
/// [`close`](futures_lite::AsyncWriteExt::close) or
/// [`shutdown`](TcpStream::shutdown) (a drop cannot wait for the peer). [`TcpStream::into_glommio`] hands the socket to
/// glommio's own stream type instead, for code that needs one.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
/// use shardlet::net;
///
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let listener = net::listen(([127, 0, 0, 1], 0))?;
/// let mut client = net::connect(listener.local_addr()?, Duration::from_secs(5)).await?;
/// let mut server = listener.accept().await?;
/// assert_eq!(server.peer_addr()?, client.local_addr()?);
/// client.write_all(b"ping").await?;
/// let mut buf = [0; 4];
/// server.read_exact(&mut buf).await?;
/// assert_eq!(&buf, b"ping");
/// # std::io::Result::Ok(())
/// # }).unwrap().into_iter().collect::<std::io::Result<()>>().unwrap();
/// ```
pub struct TcpStream {
    io: std::net::TcpStream,
    pub(super) registration: Registration,
    /// Reads and writes in a row that did not wait (see [`BUDGET`]).
    streak: Cell<u8>,
    /// Bytes [`TcpStream::write_or_keep`] could not send yet: none (and no
    /// allocation) unless a write came back short.
    pub(crate) kept: Cell<Option<Box<Kept>>>,
    /// Back to delayed-ACK mode before each read (`acks.rs`).
    pub(crate) acks_with_answers: Cell<bool>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("io", &self.io)
            .field("registration", &self.registration)
            .field("kept", &self.kept_len())
            .finish_non_exhaustive()
    }
}

/// Reads and writes in a row that found the socket ready after which the
/// next one yields once, so that a connection that always has data (or
/// room) cannot keep its shard's other tasks from running.
const BUDGET: u8 = 32;

impl TcpStream {
    /// Registers a connected `std` stream with the current shard's
    /// readiness driver (setting it non-blocking).
    ///
    /// # Errors
    ///
    /// `fcntl` or `epoll_ctl` failed (e.g. out of memory or descriptors).
    ///
    /// # Panics
    ///
    /// Outside a shard (a glommio executor).
    pub fn from_std(io: std::net::TcpStream) -> io::Result<TcpStream> {
        io.set_nonblocking(true)?;
        TcpStream::from_nonblocking(io, true)
    }

    /// [`TcpStream::from_std`] for a stream already non-blocking; with
    /// `ready`, reads and writes try the socket before the first event.
    pub(crate) fn from_nonblocking(io: std::net::TcpStream, ready: bool) -> io::Result<TcpStream> {
        let registration = Registration::new(io.as_fd(), ready)?;
        Ok(TcpStream {
            io,
            registration,
            streak: Cell::new(0),
            kept: Cell::new(None),
            acks_with_answers: Cell::new(false),
        })
    }

    /// Moves a glommio stream's socket over to the readiness driver (for a
    /// stream made by glommio's own `connect` or `accept`).
    ///
    /// # Errors
    ///
    /// As [`TcpStream::from_std`], or `dup` failed.
    ///
    /// # Panics
    ///
    /// Outside a shard (a glommio executor).
    pub fn from_glommio(stream: glommio::net::TcpStream) -> io::Result<TcpStream> {
        let io = crate::net::tcp::fd::dup_glommio_stream(&stream)?;
        drop(stream);
        TcpStream::from_std(io)
    }

    /// Hands the socket over to glommio's stream type (which waits with
    /// io_uring polls), for code written against `glommio::net::TcpStream`
    /// (its `peek`, timeouts, `buffered`). Deregisters it here first.
    ///
    /// # Errors
    ///
    /// `dup` failed (out of descriptors); the stream is closed then.
    ///
    /// # Panics
    ///
    /// Outside a shard (a glommio executor).
    pub fn into_glommio(self) -> io::Result<glommio::net::TcpStream> {
        let io = self.into_std()?;
        Ok(glommio::net::TcpStream::from(socket2_04::Socket::from(io)))
    }

    /// Deregisters the socket and returns it as a `std` stream (still
    /// non-blocking). Bytes [`write_or_keep`](TcpStream::write_or_keep)
    /// kept and no flush sent yet are dropped: flush first.
    ///
    /// # Errors
    ///
    /// `dup` failed (out of descriptors); the stream is closed then.
    pub fn into_std(mut self) -> io::Result<std::net::TcpStream> {
        self.registration.deregister(self.io.as_fd());
        // `Drop` closes `self.io`: keep a duplicate of the descriptor.
        self.io.try_clone()
    }

    /// The address of the other end.
    ///
    /// # Errors
    ///
    /// `getpeername` failed (e.g. `ENOTCONN`).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// The address of this end.
    ///
    /// # Errors
    ///
    /// `getsockname` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Sets `TCP_NODELAY` (send small writes at once, no Nagle delay).
    ///
    /// # Errors
    ///
    /// `setsockopt` failed.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    ///
    /// `getsockopt` failed.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.nodelay()
    }

    /// Shuts down the read half, the write half (the peer reads EOF), or
    /// both. Shutting down the write half first sends the bytes
    /// [`write_or_keep`](TcpStream::write_or_keep) kept, waiting for room
    /// as a flush does, so that the peer gets them before EOF; otherwise it
    /// completes at once. (It is `async` also so that code written for
    /// glommio's stream, `stream.shutdown(how).await`, works unchanged.)
    ///
    /// # Errors
    ///
    /// Sending the kept bytes failed (nothing was shut down then), or
    /// `shutdown(2)` failed (e.g. `ENOTCONN` after a reset).
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read {
            std::future::poll_fn(|cx| self.poll_flush_kept(cx)).await?;
        }
        self.io.shutdown(how)
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.registration.deregister(self.io.as_fd());
    }
}

impl TcpStream {
    /// Ready when `direction` may make progress (for `connect`).
    pub(crate) fn poll_ready(&self, direction: Direction, cx: &Context<'_>) -> Poll<()> {
        self.registration.poll_ready(direction, cx)
    }

    /// Takes the socket's pending error (`SO_ERROR`), such as how a
    /// `connect` failed.
    ///
    /// # Errors
    ///
    /// `getsockopt` failed.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }

    /// Runs `op` once if `direction` is ready, without waiting: `EAGAIN`
    /// (`WouldBlock`) when it is not, or when the socket says so. Clears the
    /// flag as [`TcpStream::poll_io`] does.
    #[inline]
    pub(crate) fn try_io(
        &self,
        direction: Direction,
        len: usize,
        mut op: impl FnMut(&std::net::TcpStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            if !self.registration.is_ready(direction) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match op(&self.io) {
                Ok(n) => {
                    if n > 0 && n < len {
                        self.registration.clear(direction);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.registration.would_block(direction),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `op` while `direction` is ready; clears it on `EAGAIN`, or when
    /// `op` moved fewer than `len` bytes (the socket is drained). Yields
    /// once after [`BUDGET`] operations in a row that did not wait.
    #[inline]
    pub(crate) fn poll_io(
        &self,
        direction: Direction,
        cx: &Context<'_>,
        len: usize,
        mut op: impl FnMut(&std::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let streak = self.streak.get();
        if streak >= BUDGET {
            self.streak.set(0);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if self.registration.poll_ready(direction, cx).is_pending() {
                self.streak.set(0);
                return Poll::Pending;
            }
            match op(&self.io) {
                Ok(n) => {
                    if n > 0 && n < len {
                        self.registration.clear(direction);
                    }
                    self.streak.set(streak + 1);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.registration.would_block(direction),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// At most this many slices go into one `readv`/`writev` (std passes no
/// more: Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

impl TcpStream {
    /// Writes `buf` (after any bytes `write_or_keep` kept): the write of
    /// both `AsyncWrite` and hyper's `Write`, on `&self`.
    pub(crate) fn poll_write_ref(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_flush_kept(cx))?;
        let acks = self.acks_with_answers.get();
        self.poll_io(Direction::Write, cx, buf.len(), |mut io| {
            let n = io.write(buf)?;
            after_answer(acks, io);
            Ok(n)
        })
    }

    /// Writes `bufs` with one `writev`, or one slice (a request or
    /// response head alone) with `send`, which the kernel takes a little
    /// faster than a `writev` of one; after any kept bytes, as
    /// [`TcpStream::poll_write_ref`].
    pub(crate) fn poll_write_vectored_ref(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let [one] = bufs {
            return self.poll_write_ref(cx, one);
        }
        std::task::ready!(self.poll_flush_kept(cx))?;
        let (len, acks) = (
            vectored_len(bufs.iter().map(|b| b.len())),
            self.acks_with_answers.get(),
        );
        self.poll_io(Direction::Write, cx, len, |mut io| {
            let n = io.write_vectored(bufs)?;
            after_answer(acks, io);
            Ok(n)
        })
    }
}

/// What a vectored call can move at most: a count short of it means the
/// socket is drained (a count short of the sum of *all* slices may only
/// mean that the slices past `IOV_MAX` were left out).
fn vectored_len(lens: impl Iterator<Item = usize>) -> usize {
    lens.take(IOV_MAX).sum()
}

impl AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.poll_io(Direction::Read, cx, len, |mut io| io.read(buf))
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = vectored_len(bufs.iter().map(|b| b.len()));
        self.poll_io(Direction::Read, cx, len, |mut io| io.read_vectored(bufs))
    }
}

impl AsyncWrite for TcpStream {
    /// Sends what [`TcpStream::write_or_keep`] kept first, so bytes go out
    /// in the order they were written.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_ref(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored_ref(cx, bufs)
    }

    /// Sends the bytes [`TcpStream::write_or_keep`] kept (ready at once
    /// when there are none: other writes are not buffered).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_kept(cx)
    }

    /// Sends what was kept, then shuts down the write half: the peer reads EOF.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_flush_kept(cx))?;
        Poll::Ready(match self.io.shutdown(Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}
