//! [`Request`]: one parsed HTTP/1.x request with its whole body, and its
//! [`Headers`].

use std::fmt;
use std::net::SocketAddr;

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

/// Header fields in the order received; names compare case-insensitively.
///
/// # Examples
///
/// ```
/// use shardlet::http::Request;
///
/// let request = Request::new("GET", "/")
///     .with_header("Accept", "text/plain")
///     .with_header("Connection", "keep-alive, Upgrade");
/// let headers = request.headers();
/// assert_eq!(headers.get("accept"), Some("text/plain"));
/// assert!(headers.has_token("connection", "upgrade"));
/// assert_eq!(headers.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// No fields.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Adds a field (keeping any others of the same name).
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.fields.push((name.into(), value.into()));
    }

    /// The value of the first field called `name`, if it is there and is
    /// UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The raw value of the first field called `name`.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The raw values of every field called `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether a comma-separated list field (`Connection`, `Transfer-Encoding`,
    /// ...) called `name` holds `token`, case-insensitively, in any of its fields.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The comma-separated elements of every field called `name`, trimmed,
    /// empty ones skipped.
    pub(crate) fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
    }

    /// Every field, in order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
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
/// use shardlet::http::{Request, Version};
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
        Request {
            method: method.into(),
            target: target.into(),
            version: Version::Http11,
            headers: Headers::new(),
            body: Vec::new(),
            peer: None,
        }
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
        self.headers.append(name, value);
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
