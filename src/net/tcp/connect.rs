//! [`connect`]: an outgoing TCP connection as a green stream, made with a
//! non-blocking `connect` that waits on the shard's readiness driver.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::future::poll_fn;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::net::reactor::driver::Direction;
use crate::net::TcpStream;

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
    match crate::timeout(timeout, connect_now(addr)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {addr} timed out after {timeout:?}"),
        )),
    }
}

/// A non-blocking `connect`, waiting for the socket to turn writable on the
/// shard's readiness driver, then `SO_ERROR` says how it went.
async fn connect_now(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_nodelay(true)?;
    let pending = match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => false,
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => true,
        Err(e) => return Err(e),
    };
    let stream = TcpStream::from_nonblocking(std::net::TcpStream::from(socket), !pending)?;
    if pending {
        poll_fn(|cx| stream.poll_ready(Direction::Write, cx)).await;
        if let Some(err) = stream.take_error()? {
            return Err(err);
        }
    }
    Ok(stream)
}
