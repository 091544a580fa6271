//! One connection's request loop: wait for a request, read its head and
//! body within the [`Limits`], run the handler, write the response, and go
//! round again while the connection is kept alive.
//!
//! Every way out of the loop closes the connection: the client closed it or
//! broke the protocol (answered with a 4xx status first), a timeout, the
//! server stopping (between requests only: a request already being read is
//! answered, with `Connection: close`), or a write that failed.

use std::future::Future;
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::io::BufReader;
use futures_lite::{future, AsyncBufReadExt, AsyncWriteExt, Stream, StreamExt};

use crate::net::TcpStream;

use super::closing::Closing;
use super::date::write_date;
use super::request::{Request, Version};
use super::response::{reason, Kind, Response};
use super::Limits;
use crate::catch::Isolated;
use crate::http::codec::{self, WireError};
use crate::http::Headers;
use crate::task::JoinError;

/// What every connection of one shard shares.
pub(crate) struct Shared<H> {
    pub(crate) handler: H,
    pub(crate) limits: Limits,
    pub(crate) closing: Closing,
}

/// The read buffer of a connection; requests pipelined within it are served
/// without another read.
const READ_BUFFER: usize = 8 << 10;
/// A sized body up to this length goes out in the same write as the head.
const COALESCE: usize = 16 << 10;
/// How long a closing connection keeps reading (and dropping) what the
/// client still sends, so that the close does not reset the connection and
/// destroy the response before the client reads it.
const LINGER: Duration = Duration::from_secs(1);
/// How much it reads at most while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// Serves HTTP/1.1 requests on `stream` until the connection closes.
///
/// # Errors
///
/// A failed or timed-out write; the connection is closed either way.
pub(crate) async fn serve_connection<H, Fut>(stream: TcpStream, shared: Rc<Shared<H>>) -> io::Result<()>
where
    H: Fn(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let accepted = Instant::now();
    let limits = &shared.limits;
    let peer = stream.peer_addr().ok();
    let mut conn = Conn {
        io: BufReader::with_capacity(READ_BUFFER, stream),
        head: Vec::new(),
        limits,
    };
    let mut served: u64 = 0;
    loop {
        let first = served == 0;
        // The first request's head is due `header_timeout` after the accept;
        // later ones may wait `idle_timeout` to start, then have
        // `header_timeout` for the head.
        let mut until = if first {
            Deadline::at(accepted + limits.header_timeout())
        } else {
            Deadline::after(limits.idle_timeout())
        };
        match conn.wait_for_request(&mut until, &shared.closing).await {
            Waited::Request => {}
            Waited::Closed => return Ok(()),
            // A connection that never sends a whole first request is the
            // slowloris case: say so. An idle keep-alive one just closes.
            Waited::TimedOut if first => return conn.reject(408).await,
            Waited::TimedOut => return Ok(()),
        }
        if !first {
            until = Deadline::after(limits.header_timeout());
        }
        let head = match conn.read_head(&mut until).await {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(status) => return conn.reject(status).await,
        };
        let framing = match Framing::of(&head, limits) {
            Ok(framing) => framing,
            Err(status) => return conn.reject(status).await,
        };
        let body = match conn.read_body(&framing).await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(()),
            Err(status) => return conn.reject(status).await,
        };
        served += 1;
        let keep_alive = framing.keep_alive && limits.max_requests().is_none_or(|max| served < max);
        let version = head.version;
        let is_head = head.method == "HEAD";
        let request = Request::from_parts(head.method, head.target, version, head.headers, body, peer);
        let response = match Isolated::new(async { (shared.handler)(request).await }, None).await {
            Ok(response) => response,
            Err(JoinError::Cancelled) => return Ok(()),
            Err(panic) => {
                tracing::error!(target: "shardlet::http", peer = ?peer, "request handler {panic}; answering 500");
                Response::error(500)
            }
        };
        let keep_alive = keep_alive && !shared.closing.is_set();
        if !conn.respond(response, version, is_head, keep_alive).await? {
            conn.close().await;
            return Ok(());
        }
    }
}

enum Waited {
    Request,
    Closed,
    TimedOut,
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    version: Version,
    headers: Headers,
}

/// How a request's body is framed (in the wire format shared with the
/// client), and what the connection does after it.
struct Framing {
    body: codec::Framing,
    keep_alive: bool,
    expect_continue: bool,
}

impl Framing {
    /// Checks the head's framing fields (RFC 9112 §6): the status to answer
    /// when they are unusable.
    fn of(head: &Head, limits: &Limits) -> Result<Framing, u16> {
        let h = &head.headers;
        if head.version == Version::Http11 && h.get_all("host").count() != 1 {
            return Err(400);
        }
        let chunked = h.get_bytes("transfer-encoding").is_some();
        let sized = h.get_bytes("content-length").is_some();
        let body = match (chunked, sized) {
            (true, true) => return Err(400),
            (true, false) => {
                let codings: Vec<&[u8]> = h.tokens("transfer-encoding").collect();
                match codings.as_slice() {
                    [only] if only.eq_ignore_ascii_case(b"chunked") => codec::Framing::Chunked,
                    [.., last] if last.eq_ignore_ascii_case(b"chunked") => return Err(501),
                    _ => return Err(400),
                }
            }
            (false, true) => {
                let mut length = None;
                for value in h.tokens("content-length") {
                    if !value.iter().all(u8::is_ascii_digit) {
                        return Err(400);
                    }
                    // All digits: only a length beyond u64 fails to parse.
                    let n = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or(413u16)?;
                    if length.is_some_and(|l| l != n) {
                        return Err(400);
                    }
                    length = Some(n);
                }
                let n = length.ok_or(400u16)?;
                if n > limits.max_body() as u64 {
                    return Err(413);
                }
                if n == 0 {
                    codec::Framing::Empty
                } else {
                    codec::Framing::Length(n)
                }
            }
            (false, false) => codec::Framing::Empty,
        };
        let expect_continue = match h.get_bytes("expect") {
            None => false,
            Some(v) if v.trim_ascii().eq_ignore_ascii_case(b"100-continue") => {
                head.version == Version::Http11
            }
            Some(_) => return Err(417),
        };
        let keep_alive = match head.version {
            Version::Http11 => !h.has_token("connection", "close"),
            Version::Http10 => h.has_token("connection", "keep-alive"),
        };
        Ok(Framing {
            body,
            keep_alive,
            expect_continue,
        })
    }
}

struct Conn<'a> {
    io: BufReader<TcpStream>,
    /// The request head read so far.
    head: Vec<u8>,
    limits: &'a Limits,
}

impl Conn<'_> {
    /// Waits for the first byte of a request, until `until`, or until the
    /// server closes (unless bytes are already there).
    async fn wait_for_request(&mut self, until: &mut Deadline, closing: &Closing) -> Waited {
        if !self.io.buffer().is_empty() {
            return Waited::Request;
        }
        let read = within(until, self.io.fill_buf());
        let outcome = future::or(async { Some(read.await) }, async {
            closing.wait().await;
            None
        })
        .await;
        match outcome {
            None => Waited::Closed,
            Some(Err(Elapsed)) => Waited::TimedOut,
            Some(Ok(Ok(bytes))) if !bytes.is_empty() => Waited::Request,
            Some(Ok(_)) => Waited::Closed,
        }
    }

    /// Reads and parses a request head. `Ok(None)`: the client went away
    /// inside it; `Err(status)`: the answer to a head that breaks a limit or
    /// the syntax.
    async fn read_head(&mut self, until: &mut Deadline) -> Result<Option<Head>, u16> {
        let (max_line, max_head) = (self.limits.max_request_line(), self.limits.max_head());
        self.head.clear();
        let mut line_known = false;
        loop {
            let old = self.head.len();
            let take = match within(until, self.io.fill_buf()).await {
                Err(Elapsed) => return Err(408),
                Ok(Err(_)) => return Ok(None),
                Ok(Ok([])) => return Ok(None),
                Ok(Ok(available)) => {
                    let take = available.len().min(max_head + 1 - old);
                    self.head.extend_from_slice(&available[..take]);
                    take
                }
            };
            if !line_known {
                let end = self.head[old..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|at| old + at);
                line_known = end.is_some();
                if end.unwrap_or(self.head.len()) > max_line {
                    return Err(414);
                }
            }
            match parse(&self.head, self.limits.max_headers()) {
                Parsed::Complete(len, _) if len > max_head => return Err(431),
                Parsed::Complete(len, head) => {
                    self.io.consume(len - old);
                    return Ok(Some(head));
                }
                Parsed::Partial => {
                    self.io.consume(take);
                    if self.head.len() > max_head {
                        return Err(431);
                    }
                }
                Parsed::Error(status) => return Err(status),
            }
        }
    }

    /// Reads the body `framing` announces; `Ok(None)` when the client went
    /// away, `Err(status)` for the answer to a body that breaks a limit.
    async fn read_body(&mut self, framing: &Framing) -> Result<Option<Vec<u8>>, u16> {
        if framing.body == codec::Framing::Empty {
            return Ok(Some(Vec::new()));
        }
        if framing.expect_continue
            && self.io.buffer().is_empty()
            && self.write(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
        {
            return Ok(None);
        }
        let mut until = Deadline::after(self.limits.body_timeout());
        let until = &mut until;
        let max = self.limits.max_body();
        match within(until, codec::read_body(&mut self.io, framing.body, max as u64)).await {
            Err(Elapsed) => Err(408),
            Ok(Ok(body)) => Ok(Some(body)),
            Ok(Err(WireError::BodyTooLarge { .. })) => Err(413),
            Ok(Err(WireError::Malformed(_))) => Err(400),
            // Truncated, or the connection failed: the client went away.
            Ok(Err(_)) => Ok(None),
        }
    }

    /// Writes `response`; returns whether the connection stays open.
    async fn respond(
        &mut self,
        response: Response,
        version: Version,
        is_head: bool,
        keep_alive: bool,
    ) -> io::Result<bool> {
        let (status, fields, body) = response.into_parts();
        let body = body.into_kind();
        let no_body = is_head || status < 200 || status == 204 || status == 304;
        let streamed = matches!(body, Kind::Stream(_));
        let chunked = streamed && !no_body && version == Version::Http11;
        let wants_close = fields.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        });
        // An HTTP/1.0 client learns where a streamed body ends by the close.
        let keep_alive = keep_alive && !wants_close && !(streamed && !no_body && !chunked);

        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(&mut out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(reason(status).as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut dated = false;
        for (name, value) in &fields {
            let framing = ["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f));
            let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
            if framing || bad(name) || bad(value) || name.is_empty() {
                continue;
            }
            dated |= name.eq_ignore_ascii_case("date");
            for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                out.extend_from_slice(part);
            }
        }
        if !dated {
            write_date(&mut out);
        }
        match &body {
            _ if status < 200 || status == 204 => {}
            Kind::Full(bytes) if status != 304 => {
                out.extend_from_slice(b"content-length: ");
                push_decimal(&mut out, bytes.len() as u64);
                out.extend_from_slice(b"\r\n");
            }
            _ if chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            _ => {}
        }
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if version == Version::Http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");

        match body {
            Kind::Full(bytes) if !no_body && !bytes.is_empty() => {
                if bytes.len() <= COALESCE {
                    out.extend_from_slice(&bytes);
                    self.write(&out).await?;
                } else {
                    self.write(&out).await?;
                    self.write(&bytes).await?;
                }
            }
            Kind::Stream(stream) if !no_body => self.write_stream(out, stream, chunked).await?,
            _ => self.write(&out).await?,
        }
        Ok(keep_alive)
    }

    /// Writes `out` (the head) and then the pieces of `stream`, gathering
    /// the pieces that are ready into one write.
    async fn write_stream(
        &mut self,
        mut out: Vec<u8>,
        mut stream: Pin<Box<dyn Stream<Item = Vec<u8>>>>,
        chunked: bool,
    ) -> io::Result<()> {
        loop {
            let next = match future::poll_once(stream.next()).await {
                Some(next) => next,
                None => {
                    if !out.is_empty() {
                        self.write(&out).await?;
                        out.clear();
                    }
                    stream.next().await
                }
            };
            match next {
                Some(piece) if piece.is_empty() => {}
                Some(piece) => {
                    if chunked {
                        let _ = write!(out, "{:x}\r\n", piece.len());
                        out.extend_from_slice(&piece);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&piece);
                    }
                    if out.len() >= COALESCE {
                        self.write(&out).await?;
                        out.clear();
                    }
                }
                None => {
                    if chunked {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    return self.write(&out).await;
                }
            }
        }
    }

    /// Writes all of `bytes` within the write timeout.
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut until = Deadline::after(self.limits.write_timeout());
        let stream = self.io.get_mut();
        match within(&mut until, stream.write_all(bytes)).await {
            Ok(result) => result,
            Err(Elapsed) => Err(io::Error::new(io::ErrorKind::TimedOut, "client is not reading")),
        }
    }

    /// Answers a request the server will not serve with `status`, then
    /// closes.
    async fn reject(&mut self, status: u16) -> io::Result<()> {
        let peer: Option<SocketAddr> = self.io.get_ref().peer_addr().ok();
        tracing::debug!(target: "shardlet::http", ?peer, status, "rejecting request");
        self.respond(Response::error(status), Version::Http11, false, false)
            .await?;
        self.close().await;
        Ok(())
    }

    /// Closes gracefully: no more writes, then reads what the client still
    /// sends for a moment (see [`LINGER`]).
    async fn close(&mut self) {
        let _ = self.io.get_ref().shutdown(Shutdown::Write).await;
        let mut until = Deadline::after(LINGER);
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            let n = match within(&mut until, self.io.fill_buf()).await {
                Ok(Ok(bytes)) if !bytes.is_empty() => bytes.len(),
                _ => return,
            };
            self.io.consume(n);
            dropped += n;
        }
    }
}

enum Parsed {
    Complete(usize, Head),
    Partial,
    Error(u16),
}

/// Parses a request head with room for `max_headers` fields (on the stack
/// up to [`STACK_FIELDS`]).
fn parse(buf: &[u8], max_headers: usize) -> Parsed {
    if max_headers <= STACK_FIELDS {
        let mut fields = [const { MaybeUninit::uninit() }; STACK_FIELDS];
        parse_into(buf, &mut fields[..max_headers])
    } else {
        let mut fields: Vec<_> = (0..max_headers).map(|_| MaybeUninit::uninit()).collect();
        parse_into(buf, &mut fields)
    }
}

const STACK_FIELDS: usize = 64;

fn parse_into<'b>(buf: &'b [u8], fields: &mut [MaybeUninit<httparse::Header<'b>>]) -> Parsed {
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(buf, fields) {
        Ok(httparse::Status::Complete(len)) => {
            let version = match request.version {
                Some(0) => Version::Http10,
                _ => Version::Http11,
            };
            let headers = Headers::from_httparse(request.headers);
            Parsed::Complete(
                len,
                Head {
                    method: request.method.unwrap_or_default().to_owned(),
                    target: request.path.unwrap_or_default().to_owned(),
                    version,
                    headers,
                },
            )
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Error(431),
        Err(_) => Parsed::Error(400),
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The deadline passed first.
struct Elapsed;

/// A deadline, possibly not started yet: [`Deadline::after`] starts its
/// clock the first time something has to wait for it, so reads and writes
/// that complete at once never read the clock.
struct Deadline {
    at: Option<Instant>,
    after: Duration,
}

impl Deadline {
    fn at(at: Instant) -> Self {
        Deadline {
            at: Some(at),
            after: Duration::ZERO,
        }
    }

    fn after(after: Duration) -> Self {
        Deadline { at: None, after }
    }

    /// The time left, starting the clock now if it has not started.
    fn left(&mut self) -> Duration {
        match self.at {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => {
                self.at = Some(Instant::now() + self.after);
                self.after
            }
        }
    }
}

/// Runs `fut` until `until`. A future that is ready at once costs no timer
/// and no clock reading.
async fn within<F: Future>(until: &mut Deadline, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    if let Some(value) = future::poll_once(fut.as_mut()).await {
        return Ok(value);
    }
    crate::timeout(until.left(), fut).await.map_err(|_| Elapsed)
}
