//! [`Error`]: why a request failed, always naming its URL.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::time::Duration;

/// Why a request failed: the URL it was for and what went wrong
/// ([`ErrorKind`]).
///
/// Its message starts with the URL (`http://host/a: connect to 10.0.0.1:80
/// failed: Connection refused`). After a redirect, the URL is the one of
/// the hop that failed. A password in the URL is never shown: it reads
/// `***` (`http://alice:***@host/a`).
///
/// # Examples
///
/// ```
/// use shardlet::http::{self, ErrorKind};
///
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let err = http::get("ftp://example.com/file").await.unwrap_err();
/// assert!(matches!(err.kind(), ErrorKind::BadUrl(_)));
/// assert_eq!(err.url(), "ftp://example.com/file");
/// assert!(err.to_string().starts_with("ftp://example.com/file: bad URL"));
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Error {
    url: String,
    kind: ErrorKind,
}

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL cannot be fetched: unparsable, not `http`/`https`, no host,
    /// or `https` without the `tls` feature.
    #[error("bad URL: {0}")]
    BadUrl(String),
    /// The host name did not resolve.
    #[error("DNS lookup of {host} failed: {reason}")]
    Dns {
        /// The name looked up.
        host: String,
        /// Why it failed.
        reason: String,
    },
    /// No TCP connection could be made.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The address (the last one tried, when the name had several).
        addr: String,
        /// The error from `connect(2)`.
        #[source]
        source: io::Error,
    },
    /// A time limit passed.
    #[error("{phase} timed out after {after:?}")]
    Timeout {
        /// What was running out of time.
        phase: Phase,
        /// The limit.
        after: Duration,
    },
    /// The TLS handshake failed (an untrusted certificate, a wrong name, ...).
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        /// The server name the certificate was checked against.
        host: String,
        /// The error from rustls.
        #[source]
        source: io::Error,
    },
    /// The connection failed after it was made (reset, broken pipe), or a
    /// new one was closed by the server before the request was sent
    /// (`ConnectionAborted`).
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    /// The response breaks HTTP: a malformed status line or header, a bad
    /// length or chunk, a bad redirect, or a connection closed in the middle
    /// of the response (hyper's error, with its causes).
    #[error("malformed response: {0}")]
    Protocol(String),
    /// The body is longer than the client's limit.
    #[error("response body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The redirects went on past the client's limit (or in a loop).
    #[error("more than {limit} redirects")]
    TooManyRedirects {
        /// The limit.
        limit: usize,
    },
}

/// Which time limit passed, for [`ErrorKind::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Resolving the host name.
    Dns,
    /// Connecting (TCP, and the TLS handshake for `https`).
    Connect,
    /// Waiting for the response head, or for the next piece of its body
    /// (the idle read limit).
    Read,
    /// The whole request, redirects included.
    Request,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Dns => "DNS lookup",
            Phase::Connect => "connect",
            Phase::Read => "read",
            Phase::Request => "request",
        })
    }
}

impl Error {
    /// An error for `url`, its password (if it has one) shown as `***`.
    pub(crate) fn new(url: impl Into<String>, kind: ErrorKind) -> Self {
        let url = url.into();
        let url = match super::userinfo::redact(&url) {
            Cow::Borrowed(_) => url,
            Cow::Owned(shown) => shown,
        };
        Error { url, kind }
    }

    /// The URL of the request that failed, a password in it shown as `***`
    /// (`http://alice:***@host/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The kind, by value.
    pub fn into_kind(self) -> ErrorKind {
        self.kind
    }

    /// Whether a time limit passed ([`ErrorKind::Timeout`]). A name whose
    /// lookup timed out within the last few seconds fails at once, as
    /// [`ErrorKind::Dns`] (it did not wait): not a time-out.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.url, self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// What a hyper error means for a request: an I/O error when the
/// connection failed under it (reset, broken pipe), else a protocol error
/// (malformed, or cut short), with hyper's words and their causes.
pub(crate) fn from_hyper(error: hyper::Error) -> ErrorKind {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    match io_kind(&error) {
        // hyper's decoders say "malformed" and "cut short" as these kinds.
        Some(io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData) => {
            ErrorKind::Protocol(text)
        }
        Some(kind) if !error.is_parse() => ErrorKind::Io(io::Error::new(kind, text)),
        _ => ErrorKind::Protocol(text),
    }
}

/// The kind of the first I/O error among `error`'s causes, if any.
fn io_kind(error: &hyper::Error) -> Option<io::ErrorKind> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = cause.source();
    }
    None
}

/// Whether a request failed, with no response, because its connection was
/// closed under it: cut short, closed before hyper could send it, reset
/// (the server closed a kept-alive connection as the request arrived, and
/// its unread request made the close a reset: RFC 9112 §9.3.1), or closed
/// without TLS's `close_notify` (rustls says `UnexpectedEof`; HTTP/2 over
/// TLS sees the close so).
pub(crate) fn closed_under(error: &hyper::Error) -> bool {
    error.is_incomplete_message()
        || error.is_canceled()
        || matches!(
            io_kind(error),
            Some(
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            )
        )
}

/// Whether the server said it never processed the request (RFC 9113 §8.7),
/// so that it can be sent again whatever its method: its HTTP/2 stream was
/// refused (`REFUSED_STREAM`), or lay beyond the last stream a GOAWAY let
/// through (or was opened after it; hyper then ends the connection, and the
/// pool drops it).
pub(crate) fn unprocessed(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.is_remote() && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM));
        }
        source = cause.source();
    }
    false
}

/// What a new connection's failure before its request was sent means: the
/// server closed it (hyper saw it closed, or its task ended), or any other
/// failure, as hyper tells it (a protocol error, a reset, ...).
pub(crate) fn before_sending(error: hyper::Error) -> ErrorKind {
    if error.is_closed() || error.is_canceled() {
        closed_before_sending()
    } else {
        from_hyper(error)
    }
}

/// A new connection that the server closed before the request was sent
/// (hyper says only "channel closed"): an I/O error, `ConnectionAborted`.
fn closed_before_sending() -> ErrorKind {
    ErrorKind::Io(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server closed the connection before the request was sent",
    ))
}

/// Why a [`ClientBuilder`](super::ClientBuilder) could not build a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the HTTP client: {reason}")]
pub struct BuildError {
    reason: String,
}

impl BuildError {
    pub(crate) fn new(reason: String) -> Self {
        BuildError { reason }
    }
}
