//! One server connection: pick HTTP/1.1 or HTTP/2 (h2c, prior knowledge)
//! from its first bytes, hand it to hyper's connection for that version,
//! and drive it with what hyper leaves to its runtime: the header and idle
//! timeouts ([`ConnState`]'s deadlines, on one timer), the 408 for a head
//! that comes too slowly, graceful shutdown on a stop, and a lingering
//! close after a refused request, so that a client still sending gets its
//! answer rather than a reset.

use std::cell::Cell;
use std::error::Error as StdError;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::timer::Timer;
use http_body::Body as HttpBody;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;

use super::body::Body;
use super::closing::{Closing, Wait};
use super::service::{ConnService, Shared};
use super::state::{ConnState, Phase};
use crate::http::rt::{ShardExecutor, ShardTimer};
use crate::net::{Connection, Evicted, TcpStream};

/// How many header fields hyper's HTTP/1 parser takes when given no bound.
const HYPER_MAX_HEADERS: usize = 100;

/// How many streams an HTTP/2 client may have open at once on one
/// connection: nginx's `http2_max_concurrent_streams` (hyper's default is
/// 200). Each may hold an answer's frames the client does not take.
const H2_MAX_STREAMS: u32 = 128;

/// How much of each HTTP/2 answer hyper buffers ahead of the socket: four
/// frames of 16 KiB. hyper's default, 400 KiB, is per stream: a client
/// granting a large window and reading nothing had 200 streams (hyper's
/// most) buffer about 100 MB on one connection.
pub(super) const H2_SEND_BUF: usize = 64 << 10;

/// How much request body an HTTP/2 client may send ahead of its handler,
/// per stream and per connection: the protocol's initial window. hyper's
/// default, 1 MiB for each, let a connection whose handlers read nothing
/// yet (waiting for a permit, say) park 1 MiB in the server: 1,000 such
/// connections took a shard past 1 GiB, where HTTP/1 leaves the bytes in
/// the socket. A handler that reads gets the window back as it reads
/// (nginx's `http2_body_preread_size` is 64 KiB too). The cost: one
/// connection's uploads go at most this much per round trip.
const H2_RECV_WINDOW: u32 = 65_535;

/// What every HTTP/2 connection starts with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The answer to a head that took too long.
const TIMED_OUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// How long a connection the server closes with the client still sending
/// (after a 408, a 413 or a 431) keeps reading (and dropping) what comes,
/// so that its close does not reset the connection, cutting the client's
/// upload short and destroying the answer before the client reads it
/// (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(1);

/// The most a lingering connection reads and drops.
const LINGER_BYTES: usize = 16 << 20;

/// The builders of one shard's connections.
pub(crate) struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<ShardExecutor>,
}

impl Builders {
    pub(crate) fn new(limits: &super::Limits) -> Self {
        // No timer for HTTP/1: the header and idle timeouts are the driver's
        // (hyper would arm a 30 s header timer per request).
        let mut http1 = http1::Builder::new();
        http1
            .header_read_timeout(None)
            .max_buf_size(limits.max_head().max(8192) + 1024)
            .max_header_size(limits.max_head());
        // Up to hyper's own bound the field count is checked after parsing
        // (`precheck::precheck`): given any bound, hyper fills an array of
        // that many entries (twice) for every request head it parses,
        // where its default leaves them uninitialised.
        if limits.max_headers() > HYPER_MAX_HEADERS {
            http1.max_headers(limits.max_headers());
        }
        let mut http2 = http2::Builder::new(ShardExecutor::new());
        http2
            .timer(ShardTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_header_list_size(u32::try_from(limits.max_head()).unwrap_or(u32::MAX))
            .max_send_buf_size(H2_SEND_BUF)
            .initial_stream_window_size(H2_RECV_WINDOW)
            .initial_connection_window_size(H2_RECV_WINDOW);
        Builders { http1, http2 }
    }
}

/// The stream under hyper: shardlet's socket (shared with the driver,
/// which may answer 408 on it), with the bytes read while choosing the
/// version given back first.
struct ConnIo {
    stream: Rc<TcpStream>,
    prefix: Vec<u8>,
    state: Rc<ConnState>,
    /// A read error met while reading on after the prefix, for the next read.
    failed: Option<io::Error>,
}

impl Read for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Err(e));
        }
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.drain(..n);
            if !this.prefix.is_empty() || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            this.prefix = Vec::new();
            // Read on into the same buffer: a first read that gave hyper
            // only the few bytes sniffed for the version made it grow its
            // read buffer (from 8 to 16 KiB, for the connection's life) to
            // read the rest of the head. What is not there yet is read
            // next time; an error is answered then.
            match this.stream.poll_read_counted(cx, buf) {
                Poll::Ready(Ok(n)) if n > 0 => this.state.on_read(),
                Poll::Ready(Err(e)) => this.failed = Some(e),
                _ => {}
            }
            return Poll::Ready(Ok(()));
        }
        match this.stream.poll_read_counted(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.state.on_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ConnIo {
    /// Tells the connection's state whether the client takes what is written.
    #[inline]
    fn wrote(&self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => self.state.on_write(n),
            Poll::Pending => self.state.on_write_blocked(),
            Poll::Ready(Err(_)) => {}
        }
        written
    }
}

impl Write for ConnIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.wrote(self.stream.poll_write_ref(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote(self.stream.poll_write_vectored_ref(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.shutdown_write())
    }
}

/// hyper's connection, of either version: a future that can be asked to
/// shut down gracefully.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<S, B> Graceful for http1::Connection<ConnIo, S>
where
    S: Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: HttpBody + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

impl<S, B> Graceful for http2::Connection<ConnIo, S, ShardExecutor>
where
    S: Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Future: 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: HttpBody + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    http2::Connection<ConnIo, S, ShardExecutor>: Future<Output = Result<(), hyper::Error>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Serves one connection until it closes, times out, or the shard stops.
pub(crate) async fn serve_connection<S, B>(
    stream: TcpStream,
    connection: Connection,
    shared: Rc<Shared<S>>,
    builders: Rc<Builders>,
    closing: Closing,
) -> io::Result<()>
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: HttpBody + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let state = Rc::new(ConnState::new(&shared.limits, shared.budget.clone(), connection));
    let mut stream = Rc::new(stream);
    let deadline = state.deadline().expect("a new connection has a deadline");

    // Quiet until its first byte: idle after a quiet period of silence, so
    // that at the cap it is closed to make room for a new client, as an idle
    // keep-alive one is (`net::Connection::set_quiet`).
    let connection = state.connection().clone();
    connection.set_quiet();
    let heard = Cell::new(false);
    // Which version: HTTP/2's preface, or anything else (HTTP/1.x).
    let mut prefix = Vec::new();
    let sniffed = async {
        let mut buf = [0u8; PREFACE.len()];
        let reader = Rc::get_mut(&mut stream).expect("not shared yet");
        while prefix.len() < PREFACE.len() && PREFACE.starts_with(&prefix) {
            let n = reader.read(&mut buf[..PREFACE.len() - prefix.len()]).await?;
            if n == 0 {
                return Ok(false);
            }
            if !heard.replace(true) {
                connection.set_idle(false);
            }
            prefix.extend_from_slice(&buf[..n]);
        }
        io::Result::Ok(true)
    };
    let wait = deadline.saturating_duration_since(Instant::now());
    let closed = futures_lite::future::or(async { Some(sniffed.await) }, async {
        futures_lite::future::or(closing.wait(), connection.evicted()).await;
        None
    });
    // Boxed, here and for the 408 below: the connection's future lives as
    // long as the connection, and these steps' state (timers, buffers) would
    // otherwise take room in it for its whole life.
    match Box::pin(crate::timeout(wait, closed)).await {
        Err(_) => return Box::pin(answer_408(stream)).await,
        Ok(None | Some(Ok(false))) => return Ok(()),
        Ok(Some(Err(e))) => return Err(e),
        Ok(Some(Ok(true))) => {}
    }
    let h2 = prefix == PREFACE;
    if h2 {
        state.set_h2();
    } else {
        state.on_read();
    }

    let io = ConnIo {
        stream: stream.clone(),
        prefix,
        state: state.clone(),
        failed: None,
    };
    let service = ConnService {
        shared,
        state: state.clone(),
    };
    let conn: Pin<Box<dyn Graceful>> = if h2 {
        Box::pin(builders.http2.serve_connection(io, service))
    } else {
        Box::pin(builders.http1.serve_connection(io, service))
    };
    let driven = Drive {
        conn,
        evicted: state.connection().evicted(),
        stream: stream.clone(),
        state: state.clone(),
        closing: closing.wait(),
        shutting_down: false,
        timer: None,
    }
    .await;
    state.release_answers();
    match driven {
        Driven::Closed(result, unread) => {
            // hyper answered and closed with the client maybe still
            // sending: a request it could not parse (400, 431), a body
            // refused (413) or left unread.
            if unread || result.as_ref().is_err_and(hyper::Error::is_parse) || has_unread(&stream) {
                Box::pin(linger(stream)).await;
            }
            result.map_err(io::Error::other)
        }
        Driven::Dropped => Ok(()),
        Driven::HeadTimedOut => Box::pin(answer_408(stream)).await,
    }
}

/// How a driven connection ended.
enum Driven {
    /// hyper closed it; whether a request's body was left unread.
    Closed(Result<(), hyper::Error>, bool),
    /// The server dropped it: its client left, read nothing for the send
    /// timeout, or hyper did not close it after a graceful shutdown.
    Dropped,
    HeadTimedOut,
}

struct Drive<'a> {
    conn: Pin<Box<dyn Graceful>>,
    /// The net layer asks an idle connection to close (at its cap, or on a stop).
    evicted: Evicted,
    stream: Rc<TcpStream>,
    state: Rc<ConnState>,
    closing: Wait<'a>,
    shutting_down: bool,
    /// The one timer, and the deadline it was set for.
    timer: Option<(Timer, Instant)>,
}

impl Drive<'_> {
    /// Whether the client of an HTTP/1 request being handled has gone away
    /// (hyper notices only when it next reads or writes): then dropping the
    /// connection drops the handler's future. HTTP/2 streams are reset by
    /// their client instead.
    fn client_left(&mut self, cx: &mut Context<'_>) -> bool {
        self.state.is_handling() && !self.state.is_h2() && self.stream.poll_peer_closed(cx).is_ready()
    }

    fn shut_down(&mut self) {
        if !self.shutting_down {
            self.shutting_down = true;
            self.state.shutting_down();
            self.conn.as_mut().graceful_shutdown();
        }
    }
}

impl Future for Drive<'_> {
    type Output = Driven;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Driven> {
        let this = self.get_mut();
        this.state.driver_is(cx.waker());
        if !this.shutting_down && Pin::new(&mut this.closing).poll(cx).is_ready() {
            this.shut_down();
        }
        loop {
            if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(Driven::Closed(result, this.state.left_body_unread()));
            }
            if !this.shutting_down && this.state.last_begun() {
                tracing::debug!(target: "shardlet::http", "the connection's last request (max_requests) began; shutting it down");
                this.shut_down();
                continue;
            }
            if !this.shutting_down
                && this.state.phase() == Phase::Idle
                && Pin::new(&mut this.evicted).poll(cx).is_ready()
            {
                tracing::debug!(target: "shardlet::http", "idle connection evicted; closing");
                this.shut_down();
                continue;
            }
            if this.client_left(cx) {
                tracing::debug!(target: "shardlet::http", "client went away mid-request; dropping its handler");
                return Poll::Ready(Driven::Dropped);
            }
            let Some(deadline) = this.state.deadline() else {
                return Poll::Pending;
            };
            // The timer may be set for a later deadline (a head started
            // while idle): set it again for this one. A timer polled once
            // has this task's waker: until its time it need not be polled
            // again (each poll would file it with the reactor anew).
            match &mut this.timer {
                Some((timer, at)) if *at <= deadline => {
                    // Near its time, ask the timer itself (it may fire a
                    // hair before the clock says so).
                    let now = Instant::now();
                    if now + Duration::from_millis(2) < *at
                        || (now < *at && Pin::new(timer).poll(cx).is_pending())
                    {
                        return Poll::Pending;
                    }
                }
                _ => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let mut timer = Timer::new(left);
                    let fired = Pin::new(&mut timer).poll(cx).is_ready();
                    this.timer = Some((timer, deadline));
                    if !fired {
                        return Poll::Pending;
                    }
                }
            }
            this.timer = None;
            let now = Instant::now();
            if now < deadline {
                continue; // not yet: a newer, later deadline
            }
            if this.state.send_timed_out(now) {
                tracing::debug!(target: "shardlet::http", "client read nothing of its answer for the send timeout; closing");
                return Poll::Ready(Driven::Dropped);
            }
            match this.state.phase() {
                Phase::Busy => continue,
                Phase::Head if !this.shutting_down => return Poll::Ready(Driven::HeadTimedOut),
                Phase::Head | Phase::Idle => {
                    if this.shutting_down {
                        // hyper did not close after a graceful shutdown and
                        // a whole phase more: close now.
                        return Poll::Ready(Driven::Dropped);
                    }
                    this.shut_down();
                }
            }
        }
    }
}

/// Answers 408 on a connection whose head did not come in time, then
/// closes it, lingering so that the answer reaches the client.
async fn answer_408(stream: Rc<TcpStream>) -> io::Result<()> {
    tracing::debug!(target: "shardlet::http", peer = ?stream.peer_addr().ok(), "request head timed out; answering 408");
    let written = futures_lite::future::poll_fn(|cx| stream.poll_write_ref(cx, TIMED_OUT));
    let _ = crate::timeout(Duration::from_secs(1), written).await;
    linger(stream).await;
    Ok(())
}

/// Whether the client sent bytes the server has not read (closing on them
/// would reset the connection); does not wait.
fn has_unread(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::uninit()];
    // The socket does not block: nothing there is `WouldBlock`.
    matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(1))
}

/// Closes the connection's sending side (the client reads the end of the
/// answer), then reads and drops what the client still sends, for
/// [`LINGER`] and [`LINGER_BYTES`] at most, before the close.
async fn linger(mut stream: Rc<TcpStream>) {
    let _ = stream.shutdown_write();
    let Some(stream) = Rc::get_mut(&mut stream) else {
        return;
    };
    let _ = crate::timeout(LINGER, async {
        let mut sink = [0u8; 16 << 10];
        let mut dropped = 0usize;
        while dropped < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    })
    .await;
}
