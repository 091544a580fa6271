//! One client connection: plain TCP or TLS, under an idle read limit, behind
//! the read buffer that the codec works on.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::io::BufReader;
use futures_lite::{AsyncRead, AsyncWrite};

use crate::net::TcpStream;

use super::idle_timeout::IdleTimeout;

/// The byte stream under a connection.
pub(crate) enum Transport {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

/// A connection ready for a request.
pub(crate) struct Conn {
    /// Reads go through the buffer; writes through `io.get_mut()`.
    pub(crate) io: BufReader<IdleTimeout<Transport>>,
    /// When it was last put back in the keep-alive pool.
    pub(crate) idle_since: Instant,
}

impl Conn {
    pub(crate) fn new(transport: Transport, read_timeout: Duration) -> Conn {
        Conn {
            io: BufReader::with_capacity(16 * 1024, IdleTimeout::new(transport, read_timeout)),
            idle_since: Instant::now(),
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Transport::Plain($s) => $e,
            #[cfg(feature = "tls")]
            Transport::Tls($s) => $e,
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_close(cx))
    }
}
