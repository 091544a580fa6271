//! The HTTP/1.1 wire format shared by the client and the server: read a
//! message head ([`read_head`]), decide how its body is framed
//! ([`Framing`]), and read that body ([`BodyReader`], [`read_body`]).
//!
//! # How to use it (client and server alike)
//!
//! Everything here reads from an `AsyncBufRead` — wrap the connection in
//! [`futures_lite::io::BufReader`] once, for its whole life — and never
//! reads past the end of the current message: after a head and its body,
//! the buffer holds exactly the bytes of the next message, as keep-alive
//! and pipelining need. Pass `&mut reader` to keep the reader.
//!
//! 1. [`read_head`] returns the head bytes up to and including the empty
//!    line, or `None` when the peer closed before sending a byte (a clean
//!    end of a kept-alive connection). Parse them with `httparse`
//!    (`Request` on the server, `Response` on the client), then copy the
//!    fields with [`Headers::from_httparse`](super::Headers::from_httparse).
//! 2. [`Framing::for_response`] / [`Framing::for_request`] apply RFC 9112
//!    §6.3: no body for `HEAD`, 1xx, 204 and 304; `Transfer-Encoding:
//!    chunked` before `Content-Length` (a request with both is refused:
//!    request smuggling); conflicting lengths are refused; a response with
//!    neither runs until the connection closes.
//! 3. [`read_body`] collects the body under a size limit; [`BodyReader`]
//!    streams it instead. A connection can carry another message only when
//!    the body was read to its end and was not [`Framing::UntilClose`].
//!
//! Errors are [`WireError`]s: too large, malformed, truncated (the peer
//! closed mid-message), or I/O. Time limits are the caller's: wrap the
//! stream in an [`IdleTimeout`](super::IdleTimeout), or the calls in
//! [`timeout`](crate::timeout).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};

use super::chunked::ChunkedDecoder;
use super::headers::Headers;

/// The default limit on a message head (start line and fields), in bytes.
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The head did not end within the limit.
    #[error("message head is larger than {limit} bytes")]
    HeadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is longer than the limit (said so by its `Content-Length`,
    /// or found while reading).
    #[error("body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The bytes break the protocol (a bad length, a bad chunk, ...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer closed the connection in the middle of a message.
    #[error("{0}")]
    Truncated(String),
    /// Reading failed.
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for WireError {
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::InvalidData => WireError::Malformed(err.to_string()),
            io::ErrorKind::UnexpectedEof => WireError::Truncated(err.to_string()),
            _ => WireError::Io(err),
        }
    }
}

/// Reads one message head: the bytes up to and including the empty line
/// that ends it (CRLF CRLF, or bare LF LF), at most `limit` bytes.
///
/// # Errors
///
/// [`WireError::HeadTooLarge`] past `limit`, [`WireError::Truncated`] when
/// the stream ends inside the head, [`WireError::Io`] when reading fails.
/// A stream that ends before the first byte is `Ok(None)`.
///
/// # Examples
///
/// ```
/// use futures_lite::{future, io::BufReader};
/// use shardlet::http::read_head;
///
/// let mut reader = BufReader::new(&b"HTTP/1.1 204 No Content\r\n\r\nnext"[..]);
/// let head = future::block_on(read_head(&mut reader, 1024))?.unwrap();
/// assert_eq!(head, b"HTTP/1.1 204 No Content\r\n\r\n");
/// assert_eq!(reader.buffer(), b"next");
/// # Ok::<(), shardlet::http::WireError>(())
/// ```
pub async fn read_head<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut head = Vec::new();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(WireError::Truncated(format!(
                    "connection closed inside the message head, after {} bytes",
                    head.len()
                )))
            };
        }
        let old = head.len();
        let n = available.len();
        head.extend_from_slice(available);
        match find_head_end(&head, old.saturating_sub(3)) {
            Some(end) if end <= limit => {
                reader.consume(end - old);
                head.truncate(end);
                return Ok(Some(head));
            }
            Some(_) => return Err(WireError::HeadTooLarge { limit }),
            None if head.len() > limit => return Err(WireError::HeadTooLarge { limit }),
            None => reader.consume(n),
        }
    }
}

/// The end (exclusive) of the first empty line at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let lf = i + p;
        match &buf[lf + 1..] {
            [b'\n', ..] => return Some(lf + 2),
            [b'\r', b'\n', ..] => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// How a message's body is delimited (RFC 9112 §6.3).
///
/// # Examples
///
/// ```
/// use shardlet::http::{Framing, Headers};
///
/// let mut headers = Headers::new();
/// headers.push("Content-Length", "12");
/// assert_eq!(Framing::for_response("GET", 200, &headers)?, Framing::Length(12));
/// assert_eq!(Framing::for_response("HEAD", 200, &headers)?, Framing::Empty);
/// assert_eq!(Framing::for_response("GET", 200, &Headers::new())?, Framing::UntilClose);
/// assert_eq!(Framing::for_request(&Headers::new())?, Framing::Empty);
/// # Ok::<(), shardlet::http::WireError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only); the connection
    /// cannot be reused.
    UntilClose,
}

impl Framing {
    /// The framing of a response to a `request_method` request.
    ///
    /// # Errors
    ///
    /// [`WireError::Malformed`] for a bad or conflicting `Content-Length`.
    pub fn for_response(request_method: &str, status: u16, headers: &Headers) -> Result<Framing, WireError> {
        if request_method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Ok(Framing::Empty);
        }
        if headers.contains("transfer-encoding") {
            // Chunked must be the last coding; any other coding runs to the close.
            let last = headers.tokens("transfer-encoding").last();
            return Ok(match last {
                Some(t) if t.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
                _ => Framing::UntilClose,
            });
        }
        Ok(match content_length(headers)? {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        })
    }

    /// The framing of a request.
    ///
    /// # Errors
    ///
    /// [`WireError::Malformed`] for a bad or conflicting `Content-Length`,
    /// a `Transfer-Encoding` whose last coding is not `chunked`, or both
    /// `Transfer-Encoding` and `Content-Length` (a request-smuggling vector).
    pub fn for_request(headers: &Headers) -> Result<Framing, WireError> {
        if headers.contains("transfer-encoding") {
            if headers.contains("content-length") {
                return Err(WireError::Malformed(
                    "both Transfer-Encoding and Content-Length".into(),
                ));
            }
            return match headers.tokens("transfer-encoding").last() {
                Some(t) if t.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
                _ => Err(WireError::Malformed(
                    "Transfer-Encoding does not end in chunked".into(),
                )),
            };
        }
        Ok(match content_length(headers)? {
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        })
    }

    /// Whether the connection can carry another message once this body has
    /// been read to its end.
    pub fn reusable(self) -> bool {
        self != Framing::UntilClose
    }
}

/// The `Content-Length`, if any: every field and list element must agree.
fn content_length(headers: &Headers) -> Result<Option<u64>, WireError> {
    let mut length = None;
    for value in headers.tokens("content-length") {
        let n = std::str::from_utf8(value)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                WireError::Malformed(format!("bad Content-Length {:?}", String::from_utf8_lossy(value)))
            })?;
        if length.is_some_and(|l| l != n) {
            return Err(WireError::Malformed("conflicting Content-Length values".into()));
        }
        length = Some(n);
    }
    if length.is_none() && headers.contains("content-length") {
        return Err(WireError::Malformed("empty Content-Length".into()));
    }
    Ok(length)
}

/// A message body as an `AsyncRead` that ends where the body ends.
///
/// Reading past a [`Framing::Length`] body's end gives `Ok(0)`; a peer that
/// closes early gives `UnexpectedEof` (a [`WireError::Truncated`]).
///
/// # Examples
///
/// ```
/// use futures_lite::{future, io::BufReader, AsyncReadExt};
/// use shardlet::http::{BodyReader, Framing};
///
/// let mut conn = BufReader::new(&b"hello, next message"[..]);
/// let mut body = String::new();
/// let mut reader = BodyReader::new(&mut conn, Framing::Length(5));
/// future::block_on(reader.read_to_string(&mut body))?;
/// assert!(reader.is_done());
/// assert_eq!(body, "hello");
/// assert_eq!(conn.buffer(), b", next message");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct BodyReader<R> {
    kind: Kind<R>,
}

enum Kind<R> {
    Empty,
    Length { inner: R, length: u64, remaining: u64 },
    Chunked(ChunkedDecoder<R>),
    UntilClose { inner: R, done: bool },
}

impl<R> BodyReader<R> {
    /// Reads a body framed as `framing` from `inner`.
    pub fn new(inner: R, framing: Framing) -> Self {
        let kind = match framing {
            Framing::Empty | Framing::Length(0) => Kind::Empty,
            Framing::Length(length) => Kind::Length {
                inner,
                length,
                remaining: length,
            },
            Framing::Chunked => Kind::Chunked(ChunkedDecoder::new(inner)),
            Framing::UntilClose => Kind::UntilClose { inner, done: false },
        };
        BodyReader { kind }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Length { remaining, .. } => *remaining == 0,
            Kind::Chunked(decoder) => decoder.is_done(),
            Kind::UntilClose { done, .. } => *done,
        }
    }
}

impl<R: AsyncBufRead + Unpin> AsyncRead for BodyReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(Ok(0)),
            Kind::Length {
                inner,
                length,
                remaining,
            } => {
                if *remaining == 0 || buf.is_empty() {
                    return Poll::Ready(Ok(0));
                }
                let max = usize::try_from(*remaining).unwrap_or(usize::MAX).min(buf.len());
                let n = ready!(Pin::new(inner).poll_read(cx, &mut buf[..max]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed after {} of {length} body bytes",
                            *length - *remaining
                        ),
                    )));
                }
                *remaining -= n as u64;
                Poll::Ready(Ok(n))
            }
            Kind::Chunked(decoder) => Pin::new(decoder).poll_read(cx, buf),
            Kind::UntilClose { inner, done } => {
                let n = ready!(Pin::new(inner).poll_read(cx, buf))?;
                if n == 0 && !buf.is_empty() {
                    *done = true;
                }
                Poll::Ready(Ok(n))
            }
        }
    }
}

impl<R> fmt::Debug for BodyReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let framing = match &self.kind {
            Kind::Empty => Framing::Empty,
            Kind::Length { length, .. } => Framing::Length(*length),
            Kind::Chunked(_) => Framing::Chunked,
            Kind::UntilClose { .. } => Framing::UntilClose,
        };
        f.debug_struct("BodyReader")
            .field("framing", &framing)
            .field("done", &self.is_done())
            .finish()
    }
}

/// Reads a whole body framed as `framing` from `reader`, refusing one
/// longer than `limit` bytes (a `Content-Length` past it is refused before
/// reading anything).
///
/// # Errors
///
/// [`WireError::BodyTooLarge`] past `limit`; [`WireError::Truncated`],
/// [`WireError::Malformed`] or [`WireError::Io`] as the stream gives them.
///
/// # Examples
///
/// ```
/// use futures_lite::{future, io::BufReader};
/// use shardlet::http::{read_body, Framing, WireError};
///
/// let mut conn = BufReader::new(&b"4\r\nwire\r\n0\r\n\r\n"[..]);
/// let body = future::block_on(read_body(&mut conn, Framing::Chunked, 1024))?;
/// assert_eq!(body, b"wire");
///
/// let mut conn = BufReader::new(&b"0123456789"[..]);
/// let err = future::block_on(read_body(&mut conn, Framing::UntilClose, 4)).unwrap_err();
/// assert!(matches!(err, WireError::BodyTooLarge { limit: 4 }));
/// # Ok::<(), WireError>(())
/// ```
pub async fn read_body<R: AsyncBufRead + Unpin>(
    reader: R,
    framing: Framing,
    limit: u64,
) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::new();
    if let Framing::Length(n) = framing {
        if n > limit {
            return Err(WireError::BodyTooLarge { limit });
        }
        body.reserve(usize::try_from(n).unwrap_or(0).min(1 << 20));
    }
    let mut reader = BodyReader::new(reader, framing).take(limit.saturating_add(1));
    reader.read_to_end(&mut body).await?;
    if body.len() as u64 > limit {
        return Err(WireError::BodyTooLarge { limit });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::io::BufReader;

    type Fields = &'static [(&'static str, &'static str)];

    fn headers(fields: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in fields {
            h.push(*n, *v);
        }
        h
    }

    #[test]
    fn head_split_anywhere_is_found_once() {
        let wire = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nBODY";
        for cap in 1..wire.len() {
            let mut r = BufReader::with_capacity(cap, &wire[..]);
            let head = block_on(read_head(&mut r, 1024)).unwrap().unwrap();
            assert_eq!(head, &wire[..wire.len() - 4], "capacity {cap}");
            let mut rest = Vec::new();
            block_on(r.read_to_end(&mut rest)).unwrap();
            assert_eq!(rest, b"BODY");
        }
    }

    #[test]
    fn head_limits_and_ends() {
        let mut r = BufReader::new(&b""[..]);
        assert!(block_on(read_head(&mut r, 10)).unwrap().is_none());
        let mut r = BufReader::new(&b"HTTP/1.1 200"[..]);
        assert!(matches!(
            block_on(read_head(&mut r, 100)),
            Err(WireError::Truncated(_))
        ));
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        assert!(matches!(
            block_on(read_head(&mut r, 10)),
            Err(WireError::HeadTooLarge { limit: 10 })
        ));
        let mut r = BufReader::new(&b"HTTP/1.0 200 OK\n\nx"[..]);
        assert_eq!(
            block_on(read_head(&mut r, 100)).unwrap().unwrap(),
            b"HTTP/1.0 200 OK\n\n"
        );
    }

    #[test]
    fn response_framing() {
        use Framing::*;
        let cases: &[(&str, u16, Fields, Option<Framing>)] = &[
            ("GET", 200, &[("Content-Length", "5")], Some(Length(5))),
            ("GET", 200, &[("Content-Length", "5, 5")], Some(Length(5))),
            (
                "GET",
                200,
                &[("Content-Length", "5"), ("content-length", "6")],
                None,
            ),
            ("GET", 200, &[("Content-Length", "-1")], None),
            ("GET", 200, &[("Content-Length", "+5")], None),
            ("GET", 200, &[("Content-Length", "")], None),
            (
                "GET",
                200,
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
                Some(Chunked),
            ),
            (
                "GET",
                200,
                &[("Transfer-Encoding", "gzip, chunked")],
                Some(Chunked),
            ),
            (
                "GET",
                200,
                &[("Transfer-Encoding", "chunked, gzip")],
                Some(UntilClose),
            ),
            ("GET", 200, &[], Some(UntilClose)),
            ("HEAD", 200, &[("Content-Length", "5")], Some(Empty)),
            ("GET", 204, &[("Content-Length", "5")], Some(Empty)),
            ("GET", 304, &[], Some(Empty)),
            ("GET", 101, &[], Some(Empty)),
        ];
        for (method, status, fields, want) in cases {
            let got = Framing::for_response(method, *status, &headers(fields)).ok();
            assert_eq!(got, *want, "{method} {status} {fields:?}");
        }
    }

    #[test]
    fn request_framing() {
        use Framing::*;
        let cases: &[(Fields, Option<Framing>)] = &[
            (&[], Some(Empty)),
            (&[("Content-Length", "0")], Some(Empty)),
            (&[("Content-Length", "3")], Some(Length(3))),
            (&[("Transfer-Encoding", "chunked")], Some(Chunked)),
            (&[("Transfer-Encoding", "gzip")], None),
            (&[("Transfer-Encoding", "chunked"), ("Content-Length", "3")], None),
        ];
        for (fields, want) in cases {
            assert_eq!(Framing::for_request(&headers(fields)).ok(), *want, "{fields:?}");
        }
    }

    #[test]
    fn body_length_and_truncation() {
        let mut r = BufReader::new(&b"abcdefNEXT"[..]);
        assert_eq!(
            block_on(read_body(&mut r, Framing::Length(6), 6)).unwrap(),
            b"abcdef"
        );
        assert_eq!(r.buffer(), b"NEXT");
        let mut r = BufReader::new(&b"abc"[..]);
        let err = block_on(read_body(&mut r, Framing::Length(6), 100)).unwrap_err();
        assert!(
            matches!(&err, WireError::Truncated(m) if m.contains("3 of 6")),
            "{err}"
        );
        let mut r = BufReader::new(&b"abcdef"[..]);
        assert!(matches!(
            block_on(read_body(&mut r, Framing::Length(6), 5)),
            Err(WireError::BodyTooLarge { limit: 5 })
        ));
        let mut r = BufReader::new(&b"zz\r\n"[..]);
        assert!(matches!(
            block_on(read_body(&mut r, Framing::Chunked, 5)),
            Err(WireError::Malformed(_))
        ));
        let mut r = BufReader::new(&b"until the end"[..]);
        assert_eq!(
            block_on(read_body(&mut r, Framing::UntilClose, 13)).unwrap(),
            b"until the end"
        );
    }
}
