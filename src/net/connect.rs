//! [`connect`]: an outgoing TCP connection as a green stream.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use glommio::net::TcpStream;

/// Opens a TCP connection to `addr`, giving up after `timeout`, with
/// `TCP_NODELAY` set (request/response traffic should not wait for Nagle).
///
/// The stream implements `AsyncRead` and `AsyncWrite` (futures-io), so any
/// code written against those traits works with it. The address is not
/// resolved here: pass a [`SocketAddr`] (name lookups block, and a shard
/// must not).
///
/// # Errors
///
/// - `InvalidInput` for a zero `timeout`;
/// - `TimedOut` when the connection is not made within `timeout`;
/// - any other error of `connect(2)`, such as `ConnectionRefused`.
///
/// # Panics
///
/// Outside a shard (a glommio executor).
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
/// let addr = listener.local_addr()?;
/// let mut client = net::connect(addr, Duration::from_secs(5)).await?;
/// let mut server = listener.accept().await?;
/// client.write_all(b"hi").await?;
/// let mut buf = [0; 2];
/// server.read_exact(&mut buf).await?;
/// assert_eq!(&buf, b"hi");
/// # std::io::Result::Ok(())
/// # }).unwrap().into_iter().collect::<std::io::Result<()>>().unwrap();
/// ```
pub async fn connect(addr: impl Into<SocketAddr>, timeout: Duration) -> io::Result<TcpStream> {
    let addr = addr.into();
    if timeout.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "connect timeout must be greater than zero",
        ));
    }
    let stream = TcpStream::connect_timeout(addr, timeout).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
