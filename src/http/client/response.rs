//! What the client adds to the `http` crate's responses ([`ResponseExt`]),
//! and the size of an HTTP/1 response head as it came (for `max_head`).

use std::borrow::Cow;

use bytes::Bytes;
use http::Response;
use hyper::body::Incoming;
use url::Url;

/// What the client adds to the `http` crate's response: the URL that gave
/// it (the last one after redirects) and the body as text.
pub trait ResponseExt {
    /// The URL that gave this response (after redirects), without the user
    /// name and password it may have had (they were sent as
    /// `Authorization: Basic`).
    ///
    /// # Panics
    ///
    /// For a response that did not come from [`Client`](super::Client).
    fn url(&self) -> &Url;

    /// The body as text, invalid UTF-8 replaced.
    fn text(&self) -> Cow<'_, str>;
}

impl ResponseExt for Response<Bytes> {
    fn url(&self) -> &Url {
        self.extensions()
            .get::<Url>()
            .expect("a response from shardlet's http::Client")
    }

    fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.body())
    }
}

/// The size of an HTTP/1 response head as it came (status line, fields,
/// the empty line), the reason phrase taken as the status's own. hyper
/// bounds only its read buffer, which a head up to about twice
/// `max_head` could pass through (it reads in growing steps).
pub(crate) fn head_size(response: &Response<Incoming>) -> usize {
    let status = "HTTP/1.1 200 \r\n".len() + response.status().canonical_reason().map_or(0, str::len);
    let fields: usize = response
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    status + fields + 2
}
