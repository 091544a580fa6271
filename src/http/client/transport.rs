//! [`Transport`]: the byte stream under a client connection, plain TCP or
//! TLS, as hyper's I/O. Plain reads go straight into hyper's buffer
//! (`net/tcp/hyper_io.rs`); TLS reads decrypt through rustls into a stack
//! buffer and copy into hyper's (rustls keeps the plaintext in its own
//! buffers, so a copy happens there anyway).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};

use crate::net::TcpStream;

/// The byte stream under a connection.
pub(crate) enum Transport {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Read for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => stream.poll_read_hyper(cx, buf),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => {
                let mut buf = buf;
                let mut bounce = [0u8; 16 << 10];
                let room = buf.remaining().min(bounce.len());
                match futures_lite::AsyncRead::poll_read(Pin::new(tls), cx, &mut bounce[..room]) {
                    Poll::Ready(Ok(n)) => {
                        buf.put_slice(&bounce[..n]);
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl Write for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => stream.poll_write_ref(cx, buf),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => futures_lite::AsyncWrite::poll_write(Pin::new(tls), cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => stream.poll_write_vectored_ref(cx, bufs),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => futures_lite::AsyncWrite::poll_write_vectored(Pin::new(tls), cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = &cx; // used with the `tls` feature
        match self.get_mut() {
            Transport::Plain(_) => Poll::Ready(Ok(())),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => futures_lite::AsyncWrite::poll_flush(Pin::new(tls), cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = &cx; // used with the `tls` feature
        match self.get_mut() {
            Transport::Plain(stream) => Poll::Ready(stream.shutdown_write()),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => futures_lite::AsyncWrite::poll_close(Pin::new(tls), cx),
        }
    }
}
