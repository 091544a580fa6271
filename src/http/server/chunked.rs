//! A decoder for the chunked transfer coding (RFC 9112 §7.1) of request
//! bodies: reads a whole body from any `AsyncBufRead` (wrap an `AsyncRead`
//! in `futures_lite::io::BufReader`), within a size limit.
//!
//! Chunk extensions are ignored; trailer fields are read and dropped. The
//! limit counts body bytes only; chunk-size lines and trailers have limits
//! of their own ([`MAX_LINE`], [`MAX_TRAILERS`]).

use std::io;

use futures_lite::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// The longest chunk-size line (size and extensions).
pub(crate) const MAX_LINE: usize = 4 << 10;
/// The most bytes of trailer fields.
pub(crate) const MAX_TRAILERS: usize = 16 << 10;

/// Why a chunked body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChunkedError {
    /// The body is longer than the limit.
    #[error("chunked body larger than {0} bytes")]
    TooLarge(usize),
    /// The framing is broken.
    #[error("malformed chunked body: {0}")]
    Malformed(&'static str),
    /// Reading failed, or the stream ended inside the body (`UnexpectedEof`).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads a chunked body from `reader` up to its last chunk and trailers,
/// leaving whatever follows (the next request) unread.
pub(crate) async fn read_chunked<R>(reader: &mut R, max: usize) -> Result<Vec<u8>, ChunkedError>
where
    R: AsyncBufRead + Unpin,
{
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        read_line(reader, &mut line, MAX_LINE).await?;
        let size = chunk_size(&line)?;
        if size == 0 {
            break;
        }
        if size > max.saturating_sub(body.len()) {
            return Err(ChunkedError::TooLarge(max));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).await?;
        if &crlf != b"\r\n" {
            return Err(ChunkedError::Malformed("chunk data not followed by CRLF"));
        }
    }
    let mut trailers = 0;
    loop {
        read_line(reader, &mut line, MAX_TRAILERS.saturating_sub(trailers)).await?;
        if line.is_empty() {
            return Ok(body);
        }
        trailers += line.len() + 2;
    }
}

/// Reads one line into `line` without its line ending (CRLF, or a bare LF).
async fn read_line<R>(reader: &mut R, line: &mut Vec<u8>, max: usize) -> Result<(), ChunkedError>
where
    R: AsyncBufRead + Unpin,
{
    line.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        if line.len() + take > max {
            return Err(ChunkedError::Malformed("line too long"));
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(());
        }
    }
}

/// The size of a chunk-size line: hex digits, then nothing, or extensions
/// after `;` (with optional whitespace before it).
fn chunk_size(line: &[u8]) -> Result<usize, ChunkedError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkedError::Malformed("chunk size is not hexadecimal"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(ChunkedError::Malformed("junk after the chunk size"));
    }
    let mut size: usize = 0;
    for &b in &line[..digits] {
        let digit = (b as char).to_digit(16).expect("a hex digit") as usize;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(digit))
            .ok_or(ChunkedError::Malformed("chunk size overflows"))?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::io::{BufReader, Cursor};

    fn decode(input: &[u8], max: usize) -> (Result<Vec<u8>, ChunkedError>, Vec<u8>) {
        block_on(async {
            let mut reader = BufReader::with_capacity(3, Cursor::new(input.to_vec()));
            let result = read_chunked(&mut reader, max).await;
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).await.unwrap();
            (result, rest)
        })
    }

    macro_rules! ok {
        ($input:expr, $body:expr, $rest:expr) => {{
            let (result, rest) = decode($input, 1 << 20);
            assert_eq!(result.unwrap(), $body.to_vec(), "input {:?}", $input);
            assert_eq!(rest, $rest.to_vec());
        }};
    }

    macro_rules! malformed {
        ($input:expr) => {{
            let (result, _) = decode($input, 1 << 20);
            assert!(
                matches!(result, Err(ChunkedError::Malformed(_))),
                "input {:?}: {result:?}",
                $input
            );
        }};
    }

    #[test]
    fn decodes_chunks_and_leaves_the_rest() {
        ok!(b"0\r\n\r\n", b"", b"");
        ok!(b"5\r\nhello\r\n0\r\n\r\nGET /", b"hello", b"GET /");
        ok!(b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n", b"abc0123456789", b"");
        ok!(b"3;name=value\r\nabc\r\n0 ; last\r\n\r\n", b"abc", b"");
        ok!(b"3\nabc\r\n0\n\n", b"abc", b"");
        ok!(
            b"2\r\nhi\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\nnext",
            b"hi",
            b"next"
        );
        ok!(b"00000002\r\nhi\r\n0\r\n\r\n", b"hi", b"");
    }

    #[test]
    fn rejects_broken_framing() {
        malformed!(b"\r\n");
        malformed!(b"x\r\n");
        malformed!(b"-1\r\n");
        malformed!(b"3 x\r\nabc\r\n0\r\n\r\n");
        malformed!(b"3\r\nabcd\r\n0\r\n\r\n");
        malformed!(b"fffffffffffffffffffff\r\n");
        let long = [b"1;".as_slice(), &[b'x'; MAX_LINE], b"\r\n"].concat();
        malformed!(&long);
    }

    #[test]
    fn stops_at_the_limit() {
        let (result, _) = decode(b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n", 5);
        assert!(matches!(result, Err(ChunkedError::TooLarge(5))), "{result:?}");
        let (result, _) = decode(b"4\r\nabcd\r\n1\r\ne\r\n0\r\n\r\n", 5);
        assert_eq!(result.unwrap(), b"abcde");
        let (result, _) = decode(b"ffffffff\r\n", 5);
        assert!(matches!(result, Err(ChunkedError::TooLarge(5))));
    }

    #[test]
    fn a_cut_body_is_an_eof() {
        for input in [&b""[..], b"5\r\nhel", b"5\r\nhello", b"5\r\nhello\r\n0\r\n"] {
            let (result, _) = decode(input, 100);
            match result {
                Err(ChunkedError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }
}
