//! [`ChunkedDecoder`]: the chunked transfer coding (RFC 9112 §7.1), decoded
//! as an `AsyncRead`, for response bodies (client) and request bodies (server).
//!
//! The decoder reads from an `AsyncBufRead` and never reads past the end of
//! the chunked body (the last chunk, the trailer section and its empty line):
//! whatever follows stays in the buffer for the next message on a kept-alive
//! connection. Wrap a plain stream in [`futures_lite::io::BufReader`], and
//! pass `&mut reader` to keep using it afterwards.
//!
//! Chunk extensions are skipped; trailer fields are read and dropped. Lines
//! are bounded ([`MAX_CHUNK_LINE`], [`MAX_TRAILERS`]) so a peer cannot make
//! the decoder buffer without end. Errors are `io::Error`s: `InvalidData` for
//! a malformed body, `UnexpectedEof` when the stream ends inside it
//! ([`WireError`](super::WireError) tells them apart).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncBufRead, AsyncRead};

/// The longest chunk-size line (with its extensions) accepted, in bytes.
pub const MAX_CHUNK_LINE: usize = 4096;

/// The most trailer-section bytes accepted after the last chunk.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Decodes a chunked body from `R`, yielding the payload bytes; see the
/// module docs.
///
/// # Examples
///
/// ```
/// use futures_lite::{future, io::BufReader, AsyncReadExt};
/// use shardlet::http::ChunkedDecoder;
///
/// let wire = &b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT"[..];
/// let mut reader = BufReader::new(wire);
/// let mut body = Vec::new();
/// future::block_on(ChunkedDecoder::new(&mut reader).read_to_end(&mut body))?;
/// assert_eq!(body, b"hello world");
/// assert_eq!(reader.buffer(), b"NEXT"); // the next message is untouched
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ChunkedDecoder<R> {
    inner: R,
    state: State,
    /// The line being read (a chunk size, a chunk's CRLF, a trailer field).
    line: Vec<u8>,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

impl<R> ChunkedDecoder<R> {
    /// A decoder positioned at the start of a chunked body.
    pub fn new(inner: R) -> Self {
        ChunkedDecoder {
            inner,
            state: State::Size,
            line: Vec::new(),
            trailer_bytes: 0,
        }
    }

    /// Whether the whole body, trailers included, has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The reader, positioned wherever decoding stopped.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncBufRead + Unpin> AsyncRead for ChunkedDecoder<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.state {
                State::Done => return Poll::Ready(Ok(0)),
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Poll::Ready(Ok(0));
                    }
                    let available = ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?;
                    if available.is_empty() {
                        return Poll::Ready(Err(eof("inside a chunk")));
                    }
                    let n = available.len().min(buf.len()).min(clamp(remaining));
                    buf[..n].copy_from_slice(&available[..n]);
                    Pin::new(&mut this.inner).consume(n);
                    let left = remaining - n as u64;
                    this.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Poll::Ready(Ok(n));
                }
                State::Size | State::DataEnd | State::Trailer => {
                    let limit = match this.state {
                        State::Trailer => MAX_TRAILERS.saturating_sub(this.trailer_bytes),
                        _ => MAX_CHUNK_LINE,
                    };
                    ready!(poll_line(&mut this.inner, &mut this.line, limit, cx))?;
                    this.state = match this.state {
                        State::Size => match parse_size(&this.line)? {
                            0 => State::Trailer,
                            n => State::Data(n),
                        },
                        State::DataEnd if this.line.is_empty() => State::Size,
                        State::DataEnd => {
                            return Poll::Ready(Err(invalid("chunk data longer than its size")))
                        }
                        _ if this.line.is_empty() => State::Done,
                        _ => {
                            this.trailer_bytes += this.line.len() + 2;
                            State::Trailer
                        }
                    };
                    this.line.clear();
                }
            }
        }
    }
}

impl<R> fmt::Debug for ChunkedDecoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkedDecoder")
            .field("state", &self.state)
            .finish()
    }
}

fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Reads one line into `line` (without its LF, nor a CR before it).
fn poll_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let available = ready!(Pin::new(&mut *reader).poll_fill_buf(cx))?;
        if available.is_empty() {
            return Poll::Ready(Err(eof("inside a chunk-size line or the trailers")));
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        line.extend_from_slice(&available[..take]);
        Pin::new(&mut *reader).consume(take);
        if line.len() > limit + 2 {
            return Poll::Ready(Err(invalid("chunk-size line or trailer section too long")));
        }
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Poll::Ready(Ok(()));
        }
    }
}

/// The chunk size: hex digits, then optional whitespace and `;extensions`.
fn parse_size(line: &[u8]) -> io::Result<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return Err(invalid("bad chunk size"));
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char)
            .to_digit(16)
            .ok_or_else(|| invalid("bad chunk size"))?;
        Ok(n << 4 | u64::from(d))
    })
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn eof(where_: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed {where_} of a chunked body"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::BufReader;
    use futures_lite::{future, AsyncReadExt};

    /// Decodes `wire`, fed `step` bytes per read, and returns the body and the rest.
    fn decode(wire: &[u8], step: usize) -> (io::Result<Vec<u8>>, Vec<u8>) {
        let mut reader = BufReader::with_capacity(step, wire);
        let mut body = Vec::new();
        let result = future::block_on(ChunkedDecoder::new(&mut reader).read_to_end(&mut body)).map(|_| body);
        let mut rest = reader.buffer().to_vec();
        rest.extend_from_slice(reader.into_inner());
        (result, rest)
    }

    macro_rules! ok {
        ($($name:ident: $wire:expr => $body:expr, rest $rest:expr;)*) => {$(
            #[test]
            fn $name() {
                for step in [1, 2, 3, 7, 64, 4096] {
                    let (body, rest) = decode($wire, step);
                    assert_eq!(body.unwrap(), $body, "step {step}");
                    assert_eq!(rest, $rest, "step {step}");
                }
            }
        )*};
    }

    macro_rules! err {
        ($($name:ident: $wire:expr => $kind:ident;)*) => {$(
            #[test]
            fn $name() {
                for step in [1, 5, 4096] {
                    let err = decode($wire, step).0.unwrap_err();
                    assert_eq!(err.kind(), io::ErrorKind::$kind, "step {step}: {err}");
                }
            }
        )*};
    }

    ok! {
        empty_body: b"0\r\n\r\n" => b"", rest b"";
        two_chunks: b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET /" => b"abcde", rest b"GET /";
        hex_upper_and_lower: b"A\r\n0123456789\r\nb\r\n0123456789a\r\n0\r\n\r\n" => b"01234567890123456789a", rest b"";
        extensions_and_spaces: b"3 ;name=\"v\"\r\nabc\r\n0;last\r\n\r\n" => b"abc", rest b"";
        trailers_are_skipped: b"1\r\nx\r\n0\r\nA: 1\r\nB: 2\r\n\r\nrest" => b"x", rest b"rest";
        bare_lf_lines: b"2\nhi\n0\n\n" => b"hi", rest b"";
    }

    err! {
        eof_in_size: b"1" => UnexpectedEof;
        eof_in_data: b"5\r\nab" => UnexpectedEof;
        eof_before_last_chunk: b"2\r\nab\r\n" => UnexpectedEof;
        eof_in_trailers: b"0\r\nA: 1\r\n" => UnexpectedEof;
        not_hex: b"zz\r\n" => InvalidData;
        empty_size: b"\r\n" => InvalidData;
        size_overflow: b"11111111111111111\r\n" => InvalidData;
        data_longer_than_size: b"2\r\nabc\r\n0\r\n\r\n" => InvalidData;
    }

    #[test]
    fn endless_size_line_is_refused() {
        let wire = vec![b'1'; MAX_CHUNK_LINE * 2];
        assert_eq!(
            decode(&wire, 512).0.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn endless_trailers_are_refused() {
        let mut wire = b"0\r\n".to_vec();
        for _ in 0..MAX_TRAILERS {
            wire.extend_from_slice(b"A: b\r\n");
        }
        assert_eq!(
            decode(&wire, 512).0.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
