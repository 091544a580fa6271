//! [`Request`]: one parsed HTTP/1.x request with its whole body.

use std::fmt;
use std::net::SocketAddr;

use crate::http::Headers;

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`: the connection closes after the response unless the
    /// client asks for `Connection: keep-alive`.
    Http10,
    /// `HTTP/1.1`: the connection stays open unless either side says
    /// `Connection: close`.
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// An HTTP request, head and whole body, as a handler gets it.
///
/// The server reads the body (sized or chunked, within
/// [`Limits::max_body`](crate::http::Limits::max_body)) before it calls the
/// handler. [`Request::new`] builds one by hand, to test a handler without a
/// server.
///
/// # Examples
///
/// ```
/// use shardlet::http::server::{Request, Version};
///
/// let request = Request::new("POST", "/feeds?format=json")
///     .with_header("Content-Type", "text/plain")
///     .with_body("http://example.com/rss\n");
/// assert_eq!(request.method(), "POST");
/// assert_eq!(request.path(), "/feeds");
/// assert_eq!(request.query(), Some("format=json"));
/// assert_eq!(request.version(), Version::Http11);
/// assert_eq!(request.header("content-type"), Some("text/plain"));
/// assert_eq!(request.body(), b"http://example.com/rss\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    version: Version,
    headers: Headers,
    body: Vec<u8>,
    peer: Option<SocketAddr>,
}

impl Request {
    /// A request with no header fields and an empty body, as HTTP/1.1.
    pub fn new(method: impl Into<String>, target: impl Into<String>) -> Self {
        Request::from_parts(
            method.into(),
            target.into(),
            Version::Http11,
            Headers::new(),
            Vec::new(),
            None,
        )
    }

    pub(crate) fn from_parts(
        method: String,
        target: String,
        version: Version,
        headers: Headers,
        body: Vec<u8>,
        peer: Option<SocketAddr>,
    ) -> Self {
        Request {
            method,
            target,
            version,
            headers,
            body,
            peer,
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the HTTP version.
    pub fn with_version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// The method, as sent (`GET`, `POST`, ...; methods are case-sensitive).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: usually a path with an optional query.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The target up to its `?`.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(path, _)| path)
    }

    /// The target after its `?`, if it has one.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first header field called `name`, if it is there and is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The client's address (`None` for a request built by hand).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}
