//! [`IdleTimeout`]: a stream whose reads fail when the peer sends nothing
//! for too long.
//!
//! The timer runs only while a read is waiting: it starts when a read finds
//! no data, stops when data comes, and is not running while nobody reads
//! (a connection resting in a keep-alive pool does not time out there).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite, Future};
use glommio::timer::Timer;

/// Wraps a stream so that a read waiting longer than the idle time fails
/// with `io::ErrorKind::TimedOut`. Writes pass through.
///
/// # Panics
///
/// Reading from it outside a shard (the timer is glommio's).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_lite::AsyncReadExt;
/// use shardlet::{http::IdleTimeout, net};
///
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let listener = net::listen(([127, 0, 0, 1], 0)).unwrap();
/// let stream = net::connect(listener.local_addr().unwrap(), Duration::from_secs(5)).await.unwrap();
/// let _peer = listener.accept().await.unwrap(); // connected, and silent
/// let mut stream = IdleTimeout::new(stream, Duration::from_millis(20));
/// let err = stream.read(&mut [0; 16]).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// # }).unwrap();
/// ```
pub struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    /// Running while a read waits; `None` otherwise.
    timer: Option<Timer>,
}

impl<S> IdleTimeout<S> {
    /// `inner`, whose reads may wait at most `idle` for data.
    pub fn new(inner: S, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            timer: None,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Changes the idle limit, for the next wait.
    pub fn set_idle(&mut self, idle: Duration) {
        self.idle = idle;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.timer = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this.timer.get_or_insert_with(|| Timer::new(idle));
                match Pin::new(timer).poll(cx) {
                    Poll::Ready(_) => {
                        this.timer = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no data for {idle:?}"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

impl<S> fmt::Debug for IdleTimeout<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleTimeout")
            .field("idle", &self.idle)
            .field("waiting", &self.timer.is_some())
            .finish()
    }
}
