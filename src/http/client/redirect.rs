//! What a redirect asks of the client (RFC 9110 §15.4): whether to follow
//! it, to which URL, with which method and body, and which fields stay
//! behind.

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use percent_encoding::{percent_encode, CONTROLS};
use url::Url;

use super::body::Body;
use super::error::ErrorKind;
use super::userinfo::{self, Redacted};

/// Fields a redirect to another origin (scheme, host or port) does not
/// carry: credentials and cookies meant for the first one (the list reqwest
/// strips).
const SENSITIVE: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::WWW_AUTHENTICATE,
    header::COOKIE,
    HeaderName::from_static("cookie2"),
];

/// A redirect to follow.
pub(super) struct Redirect {
    /// Where it leads.
    pub(super) next: Url,
    /// Whether it asks for a retrieval (`GET`, no body) instead of the
    /// request again.
    to_get: bool,
}

/// The redirect `status` and `location` ask for, answering `method` on
/// `url`: `None` when the answer is the response itself (no redirect, no
/// `Location`, or one that would send a body that cannot be sent again,
/// `replayable` false). An error for a `Location` that is no URL or no
/// HTTP one.
pub(super) fn of(
    status: StatusCode,
    method: &Method,
    location: Option<&HeaderValue>,
    url: &Url,
    replayable: bool,
) -> Result<Option<Redirect>, ErrorKind> {
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    // 303 asks for a retrieval: a `GET`, or a `HEAD` kept (RFC 9110
    // §15.4.4, as curl and reqwest do); 301 and 302 turn a `POST` into a
    // `GET`, as browsers do. Every other redirect repeats the method, and
    // so the body.
    let to_get = (status == StatusCode::SEE_OTHER && method != Method::HEAD)
        || (method == Method::POST && matches!(status.as_u16(), 301 | 302));
    // A streamed body cannot be sent again: a redirect that would repeat
    // it is the answer (never the request again without it).
    let Some(location) = location.filter(|_| to_get || replayable) else {
        return Ok(None);
    };
    // Bytes that are not ASCII (UTF-8 or not) and controls, percent-encoded
    // as they are (as curl does), not replaced: the URL parser encodes UTF-8
    // in a path or query the same way.
    let location = percent_encode(location.as_bytes().trim_ascii(), CONTROLS).to_string();
    let next = url.join(&location).map_err(|e| {
        let location = userinfo::redact(&location);
        ErrorKind::Protocol(format!("bad redirect Location {location:?}: {e}"))
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(ErrorKind::Protocol(format!(
            "redirect to a non-HTTP URL {}",
            Redacted(&next)
        )));
    }
    Ok(Some(Redirect { next, to_get }))
}

impl Redirect {
    /// Makes the request from `url` the one to `self.next`, and gives its
    /// body: a retrieval has none (nor its fields), and another origin does
    /// not get [`SENSITIVE`] fields. `again` is the body to send again, if
    /// it could be copied.
    pub(super) fn apply(
        &self,
        url: &Url,
        method: &mut Method,
        headers: &mut HeaderMap,
        again: Option<Body>,
    ) -> Body {
        if self.next.origin() != url.origin() {
            for name in SENSITIVE {
                headers.remove(name);
            }
        }
        match again {
            Some(again) if !self.to_get => again,
            _ => {
                *method = Method::GET;
                headers.remove(header::CONTENT_TYPE);
                headers.remove(header::CONTENT_LENGTH);
                Body::empty()
            }
        }
    }
}
