//! Reads into the shard's buffer: [`TcpStream::read_with`] waits until a
//! socket has data, reads it into one buffer the shard owns, and hands the
//! bytes to a callback. A connection waiting for data then holds no read
//! buffer at all: with 10,000 connections, one 64 KiB buffer per shard
//! instead of 10,000 buffers of 4 KiB (40 MiB), nearly all idle at any
//! instant.
//!
//! This is what io_uring's provided-buffer rings give the kernel side,
//! and what Seastar and nginx do with shared input buffers; the readiness
//! driver (`reactor/driver.rs`) makes it plain here, since a read runs only once the
//! socket is known to have data.
//!
//! The bytes are valid only inside the callback: it cannot wait, so the
//! next connection's read cannot overwrite them while they are in use. To
//! answer from them, send with [`TcpStream::write_or_keep`] (`kept.rs`),
//! which keeps whatever the socket did not take.
//!
//! The buffer is taken out of the shard's slot for the read and the
//! callback and put back after; a read that finds the slot empty (a
//! callback that itself reads with a second buffer's worth) uses a
//! buffer of its own for that once.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::net::reactor::driver::Direction;
use crate::net::TcpStream;

/// The size of the shard's read buffer: the most one
/// [`read_with`](TcpStream::read_with) hands over at once. A read that
/// fills it leaves the socket marked readable, so the next call reads on.
pub const SHARD_READ_BUFFER: usize = 64 << 10;

thread_local! {
    /// The shard's read buffer (a shard is one thread), made on first use.
    static BUFFER: RefCell<Option<Box<[u8]>>> = const { RefCell::new(None) };
}

/// Takes the shard's buffer out of its slot (or makes one).
fn take_buffer() -> Box<[u8]> {
    BUFFER
        .with(|b| b.borrow_mut().take())
        .unwrap_or_else(|| vec![0u8; SHARD_READ_BUFFER].into_boxed_slice())
}

/// Puts the buffer back for the next read.
fn give_back(buffer: Box<[u8]>) {
    BUFFER.with(|b| {
        let mut slot = b.borrow_mut();
        if slot.is_none() {
            *slot = Some(buffer);
        }
    });
}

impl TcpStream {
    /// Waits until the socket has data, reads it into the shard's own read
    /// buffer, and calls `f` with the bytes: at most
    /// [`SHARD_READ_BUFFER`], and none (an empty slice) at end of stream.
    /// The connection holds no read buffer of its own, before, during or
    /// after the call.
    ///
    /// The bytes are only valid inside `f` (the next read on the shard
    /// reuses the buffer); `f` cannot wait, so to answer from them, send
    /// with [`write_or_keep`](TcpStream::write_or_keep), which keeps (in a
    /// buffer of this connection's own) only what the socket did not take.
    /// `f` runs on the shard, like the task: keep it short.
    ///
    /// Cancel-safe: dropped before `f` ran, it read nothing.
    ///
    /// # Errors
    ///
    /// The socket's error (e.g. a reset); `f` is not called then.
    ///
    /// # Examples
    ///
    /// An echo handler whose connection holds no buffer while it waits:
    ///
    /// ```
    /// use std::io;
    /// use futures_lite::AsyncWriteExt;
    /// use shardlet::net::TcpStream;
    ///
    /// async fn echo(mut stream: TcpStream) -> io::Result<()> {
    ///     loop {
    ///         let open = stream
    ///             .read_with(|bytes| stream.write_or_keep(bytes).map(|()| !bytes.is_empty()))
    ///             .await??;
    ///         if !open {
    ///             return Ok(()); // end of stream
    ///         }
    ///         // Sends what the socket did not take, if anything: a slow
    ///         // reader holds at most one read's worth here.
    ///         stream.flush().await?;
    ///     }
    /// }
    /// # fn check<F: std::future::Future>(_: impl Fn(TcpStream) -> F) {}
    /// # check(echo);
    /// ```
    pub fn read_with<F, R>(&self, f: F) -> ReadWith<'_, F>
    where
        F: FnOnce(&[u8]) -> R,
    {
        ReadWith {
            stream: self,
            f: Some(f),
        }
    }

    /// The poll form of [`read_with`](TcpStream::read_with), for code that
    /// implements poll-based traits: when the socket has data (or is at its
    /// end), reads it into the shard's buffer and returns `f`'s result;
    /// otherwise `Pending`, with the task woken when there is data, and `f`
    /// dropped uncalled.
    ///
    /// # Errors
    ///
    /// As [`read_with`](TcpStream::read_with).
    pub fn poll_read_with<R>(&self, cx: &Context<'_>, f: impl FnOnce(&[u8]) -> R) -> Poll<io::Result<R>> {
        let mut buffer = take_buffer();
        let read = self.poll_io(Direction::Read, cx, buffer.len(), |mut io| io.read(&mut buffer));
        let result = match read {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(f(&buffer[..n]))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        give_back(buffer);
        result
    }
}

/// The future of [`TcpStream::read_with`].
#[must_use = "futures do nothing unless awaited"]
pub struct ReadWith<'a, F> {
    stream: &'a TcpStream,
    f: Option<F>,
}

impl<F> Unpin for ReadWith<'_, F> {}

impl<F> std::fmt::Debug for ReadWith<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadWith")
            .field("stream", self.stream)
            .field("done", &self.f.is_none())
            .finish()
    }
}

impl<F, R> Future for ReadWith<'_, F>
where
    F: FnOnce(&[u8]) -> R,
{
    type Output = io::Result<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let this = &mut *self;
        let f = &mut this.f;
        this.stream.poll_read_with(cx, |bytes| {
            let f = f.take().expect("ReadWith polled after it completed");
            f(bytes)
        })
    }
}
