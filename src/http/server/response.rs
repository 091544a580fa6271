//! [`Response`] and its [`Body`]: sized (sent with `Content-Length`) or a
//! stream of pieces (sent chunked).

use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;

use futures_lite::{Stream, StreamExt};

/// What a handler answers.
///
/// The server adds the framing (`Content-Length` or
/// `Transfer-Encoding: chunked`), `Date` and `Connection`; the handler's own
/// fields of those names are dropped, except that `Connection: close` is
/// honoured.
///
/// # Examples
///
/// ```
/// use shardlet::http::server::Response;
///
/// let ok = Response::text("hello\n");
/// assert_eq!(ok.status(), 200);
/// assert_eq!(ok.header("content-type"), Some("text/plain; charset=utf-8"));
///
/// let not_allowed = Response::new(405).with_header("Allow", "POST");
/// assert_eq!(not_allowed.header("allow"), Some("POST"));
/// ```
#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    body: Body,
}

impl Response {
    /// A response with `status` and an empty body.
    ///
    /// # Panics
    ///
    /// If `status` is not in `100..=999`.
    pub fn new(status: u16) -> Self {
        assert!((100..=999).contains(&status), "not an HTTP status: {status}");
        Response {
            status,
            headers: Vec::new(),
            body: Body::empty(),
        }
    }

    /// `200 OK` with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Self {
        Response::new(200)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// A response with `status`, its reason phrase as a `text/plain` body.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = shardlet::http::server::Response::error(404);
    /// assert_eq!(r.status(), 404);
    /// assert_eq!(r.body().len(), Some("404 Not Found\n".len()));
    /// ```
    pub fn error(status: u16) -> Self {
        Response::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(format!("{status} {}\n", reason(status)))
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Self {
        assert!((100..=999).contains(&status), "not an HTTP status: {status}");
        self.status = status;
        self
    }

    /// Adds a header field. Static strings are kept as they are, without a
    /// copy.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The header fields the handler set, in order.
    pub fn headers(&self) -> &[(Cow<'static, str>, Cow<'static, str>)] {
        &self.headers
    }

    /// The first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// Takes the body.
    pub fn into_body(self) -> Body {
        self.body
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn into_parts(self) -> (u16, Vec<(Cow<'static, str>, Cow<'static, str>)>, Body) {
        (self.status, self.headers, self.body)
    }
}

/// A response body: bytes of a known length, or a stream of pieces sent
/// as they come (chunked to HTTP/1.1 clients; to HTTP/1.0 clients, ended by
/// closing the connection).
///
/// A streamed body runs on the shard, after the handler has returned: a
/// [`GreenPile`](crate::GreenPile) turned into a stream sends each result
/// as soon as it and those before it are ready.
///
/// # Examples
///
/// ```
/// use futures_lite::stream;
/// use shardlet::http::Body;
///
/// let sized = Body::from("abc");
/// assert_eq!(sized.len(), Some(3));
///
/// let streamed = Body::stream(stream::iter(vec![b"a".to_vec(), b"bc".to_vec()]));
/// assert_eq!(streamed.len(), None);
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(move || {
/// #   let streamed = Body::stream(stream::iter(vec![b"a".to_vec(), b"bc".to_vec()]));
/// #   async move { assert_eq!(streamed.collect().await, b"abc"); }
/// # }).unwrap();
/// ```
pub struct Body {
    kind: Kind,
}

pub(crate) enum Kind {
    Full(Vec<u8>),
    Stream(Pin<Box<dyn Stream<Item = Vec<u8>>>>),
}

impl Body {
    /// No bytes.
    pub fn empty() -> Self {
        Body {
            kind: Kind::Full(Vec::new()),
        }
    }

    /// A body sent piece by piece as `stream` yields them (empty pieces are
    /// skipped).
    pub fn stream(stream: impl Stream<Item = Vec<u8>> + 'static) -> Self {
        Body {
            kind: Kind::Stream(Box::pin(stream)),
        }
    }

    /// The length, when known before sending (`None` for a stream).
    pub fn len(&self) -> Option<usize> {
        match &self.kind {
            Kind::Full(bytes) => Some(bytes.len()),
            Kind::Stream(_) => None,
        }
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// All of the body's bytes (runs a stream to its end).
    pub async fn collect(self) -> Vec<u8> {
        match self.kind {
            Kind::Full(bytes) => bytes,
            Kind::Stream(mut stream) => {
                let mut all = Vec::new();
                while let Some(piece) = stream.next().await {
                    all.extend_from_slice(&piece);
                }
                all
            }
        }
    }

    pub(crate) fn into_kind(self) -> Kind {
        self.kind
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f.debug_tuple("Body").field(&bytes.len()).finish(),
            Kind::Stream(_) => f.write_str("Body(stream)"),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body {
            kind: Kind::Full(bytes),
        }
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body::from(text.into_bytes())
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Self {
        Body::from(text.as_bytes().to_vec())
    }
}

impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Self {
        Body::from(bytes.to_vec())
    }
}

/// The reason phrase of `status` (RFC 9110), or `""` for an unknown one.
///
/// # Examples
///
/// ```
/// assert_eq!(shardlet::http::reason(431), "Request Header Fields Too Large");
/// ```
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
