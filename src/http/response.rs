//! [`Response`]: a whole HTTP response, body included.

use std::borrow::Cow;

use url::Url;

use super::headers::Headers;

/// A response read to its end: status, header fields and the whole body.
///
/// # Examples
///
/// ```no_run
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let response = shardlet::http::get("http://127.0.0.1:8080/").await?;
/// if response.is_success() {
///     println!("{} bytes of {:?}", response.body.len(), response.headers.get("content-type"));
/// }
/// # Ok::<(), shardlet::http::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Response {
    /// The status code (`200`, `404`, ...).
    pub status: u16,
    /// The reason phrase as sent (`OK`); may be empty.
    pub reason: String,
    /// The HTTP minor version of the response: `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
    /// The header fields.
    pub headers: Headers,
    /// The body (empty for `HEAD`, 204 and 304).
    pub body: Vec<u8>,
    /// The URL that gave this response: the last one after redirects.
    pub url: Url,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the status is 3xx.
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The `Content-Type` field, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("content-type")
    }
}
