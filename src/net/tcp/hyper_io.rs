//! hyper's I/O traits ([`hyper::rt::Read`], [`hyper::rt::Write`]) on
//! [`TcpStream`], natively: a read goes straight from `recv(2)` into hyper's
//! (uninitialized) read buffer, with no compat layer and no extra copy, and
//! waits on the shard's readiness driver like every other read of the
//! stream (the same ready flags, the same yield budget).
//!
//! The one `unsafe` call here tells hyper how many bytes `recv` wrote into
//! its buffer (`ReadBufCursor::advance` is `unsafe` by design: hyper cannot
//! check it).
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};

use crate::net::reactor::driver::Direction;
use crate::net::TcpStream;

impl TcpStream {
    /// Reads into hyper's buffer; `&self`, so wrappers that share a stream
    /// can read through it too.
    pub(crate) fn poll_read_hyper(
        &self,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.poll_read_counted(cx, buf).map_ok(|_| ())
    }

    /// [`TcpStream::poll_read_hyper`], telling how many bytes came (0: end of stream).
    pub(crate) fn poll_read_counted(
        &self,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<usize>> {
        // SAFETY: `recv` below only writes into these bytes (never reads
        // them), and `advance` is called with the count it wrote.
        let spare = unsafe { buf.as_mut() };
        let len = spare.len();
        let n = match self.poll_io(Direction::Read, cx, len, |io| {
            socket2::SockRef::from(io).recv(spare)
        }) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        // SAFETY: `recv` initialized the first `n` bytes of the cursor's spare room.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(n))
    }

    /// Ready once the peer has closed its end (`EPOLLRDHUP`: a hang-up, or
    /// a half-close, which an HTTP/1 server treats alike), or the socket
    /// failed, even while bytes it sent before wait unread: for a server to
    /// notice a client that left while its request is being handled.
    pub(crate) fn poll_peer_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.registration.poll_read_closed(cx)
    }

    /// Shuts down the write half (the peer reads EOF); an already
    /// disconnected socket is not an error.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self.shutdown_now(Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }

    fn shutdown_now(&self, how: Shutdown) -> io::Result<()> {
        socket2::SockRef::from(self).shutdown(how)
    }
}

/// hyper reads straight into its own buffer from the socket.
///
/// # Examples
///
/// Driving hyper's client connection yourself on a shard:
///
/// ```
/// use std::time::Duration;
/// use http_body_util::{BodyExt, Empty};
/// use shardlet::{http::rt::ShardExecutor, net};
///
/// # let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// # let addr = listener.local_addr().unwrap();
/// # std::thread::spawn(move || {
/// #     use std::io::{Read, Write};
/// #     let (mut s, _) = listener.accept().unwrap();
/// #     let mut buf = [0; 1024];
/// #     let _ = s.read(&mut buf).unwrap();
/// #     s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap();
/// # });
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(move || async move {
/// let stream = net::connect(addr, Duration::from_secs(5)).await.unwrap();
/// let (mut sender, conn) = hyper::client::conn::http1::handshake(stream).await.unwrap();
/// shardlet::spawn_n(async move { let _ = conn.await; });
/// let request = http::Request::get("/").header("host", "x").body(Empty::<bytes::Bytes>::new()).unwrap();
/// let response = sender.send_request(request).await.unwrap();
/// let body = response.into_body().collect().await.unwrap().to_bytes();
/// assert_eq!(&body[..], b"hi");
/// # let _ = ShardExecutor::default();
/// # }).unwrap();
/// ```
impl Read for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        self.poll_read_hyper(cx, buf)
    }
}

/// hyper's writes go straight to `send`/`writev`.
impl Write for TcpStream {
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

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Sends what `write_or_keep` kept (nothing else is buffered).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_kept(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_flush_kept(cx))?;
        Poll::Ready(self.shutdown_write())
    }
}
