//! Writes that never wait: [`TcpStream::write_or_keep`] sends what the
//! socket takes now and keeps only the rest, in a buffer the connection
//! holds until a flush has sent it.
//!
//! This is the write half of serving a connection without a buffer of its
//! own (the read half is `read_with.rs`): a handler that answers from the
//! shard's read buffer cannot wait with those bytes (another connection's
//! read will overwrite them), so it hands them to the socket at once, and
//! the socket's send buffer usually takes them all. Only a write that comes
//! back short (a slow reader on the other side, a full send buffer) costs
//! the connection memory, and only for the bytes not sent.

use std::io::{self, Write};
use std::task::{Context, Poll};

use crate::net::reactor::driver::Direction;
use crate::net::tcp::acks::after_answer;
use crate::net::TcpStream;

/// Bytes a connection could not send yet: `bytes[sent..]`.
#[derive(Debug)]
pub(crate) struct Kept {
    bytes: Vec<u8>,
    sent: usize,
}

impl Kept {
    fn unsent(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }
}

impl TcpStream {
    /// Writes `bytes` without waiting: sends what the socket takes now and
    /// keeps the rest (a copy, in a buffer this connection allocates only
    /// then, sized to what was not sent) for the next
    /// [`flush`](futures_lite::AsyncWriteExt::flush), which also runs
    /// before any other write, so bytes go out in order.
    ///
    /// It takes `&self`, so it can be called from inside
    /// [`read_with`](TcpStream::read_with)'s callback, with the bytes just
    /// read. While bytes are kept, it only appends to them: call `flush`
    /// before reading more, so that a peer that does not read holds at most
    /// one read's worth of this connection's memory and the socket's own
    /// back-pressure does the rest.
    ///
    /// # Errors
    ///
    /// The socket's error (a reset, `EPIPE` after the peer closed, ...);
    /// nothing is kept then.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::{AsyncReadExt, AsyncWriteExt};
    /// use shardlet::net;
    /// # use std::time::Duration;
    /// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
    /// # let listener = net::listen(([127, 0, 0, 1], 0))?;
    /// # let mut client = net::connect(listener.local_addr()?, Duration::from_secs(5)).await?;
    /// # let mut server = listener.accept().await?;
    /// server.write_or_keep(b"hello")?; // the socket takes all five bytes
    /// assert_eq!(server.kept_len(), 0);
    /// server.flush().await?; // sends whatever was kept (nothing here)
    /// let mut buf = [0; 5];
    /// client.read_exact(&mut buf).await?;
    /// assert_eq!(&buf, b"hello");
    /// # std::io::Result::Ok(())
    /// # }).unwrap().into_iter().collect::<std::io::Result<()>>().unwrap();
    /// ```
    pub fn write_or_keep(&self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(mut kept) = self.kept.take() {
            // Drop what partial flushes already sent before adding more, once
            // it is as large as what is left: the buffer holds at most twice
            // the unsent bytes, not all that went through, and each byte is
            // moved down at most once per halving (not once per call).
            if kept.sent > 0 && kept.sent >= kept.bytes.len() - kept.sent {
                kept.bytes.drain(..kept.sent);
                kept.sent = 0;
            }
            kept.bytes.extend_from_slice(bytes);
            self.kept.set(Some(kept));
            return Ok(());
        }
        let mut sent = 0;
        while sent < bytes.len() {
            let rest = &bytes[sent..];
            let acks = self.acks_with_answers.get();
            let written = self.try_io(Direction::Write, rest.len(), |mut io| {
                let n = io.write(rest)?;
                after_answer(acks, io);
                Ok(n)
            });
            match written {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if sent < bytes.len() {
            tracing::trace!(target: "shardlet::net", kept = bytes.len() - sent, "short write: keeping the rest");
            self.kept.set(Some(Box::new(Kept {
                bytes: bytes[sent..].to_vec(),
                sent: 0,
            })));
        }
        Ok(())
    }

    /// Bytes [`write_or_keep`](TcpStream::write_or_keep) kept that no flush
    /// has sent yet (0 when the connection holds no write buffer).
    pub fn kept_len(&self) -> usize {
        let kept = self.kept.take();
        let len = kept.as_ref().map_or(0, |k| k.unsent().len());
        self.kept.set(kept);
        len
    }

    /// Sends the kept bytes, waiting for room as a write does; the buffer is
    /// freed once they are all sent.
    pub(crate) fn poll_flush_kept(&self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        let Some(mut kept) = self.kept.take() else {
            return Poll::Ready(Ok(()));
        };
        let acks = self.acks_with_answers.get();
        loop {
            let rest = kept.unsent();
            let len = rest.len();
            let written = self.poll_io(Direction::Write, cx, len, |mut io| {
                let n = io.write(rest)?;
                after_answer(acks, io);
                Ok(n)
            });
            match written {
                Poll::Ready(Ok(0)) => {
                    self.kept.set(Some(kept));
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) if n == len => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => kept.sent += n,
                Poll::Ready(Err(e)) => {
                    self.kept.set(Some(kept));
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    self.kept.set(Some(kept));
                    return Poll::Pending;
                }
            }
        }
    }
}
