//! What the server checks in a request before any handler sees it
//! ([`precheck`]), and the `Host` it gives the handler ([`host_from_target`]):
//! the statuses of the README's limits table that hyper does not answer
//! itself (431 past the field count, 414, 413 by `Content-Length`, 417, 501,
//! and the 400s of RFC 9110, 9112 and 9113 for a bad `Host`, target or
//! framing).

use http::{header, HeaderValue, Request, StatusCode, Version};
use http_body::Body as HttpBody;
use hyper::body::Incoming;

use super::Limits;

/// The status for a request the server answers itself, before any handler.
///
/// One pass over the fields collects what the checks below read (a hashed
/// lookup per field name cost about a tenth of a trivial request's user
/// time); the checks then run in their fixed order, so a request with
/// several faults always gets the same status.
pub(super) fn precheck(request: &Request<Incoming>, limits: &Limits) -> Option<StatusCode> {
    let fields = request.headers();
    // More than hyper's bound was refused by hyper already (see `conn::Builders`).
    if fields.len() > limits.max_headers() {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let seen = Seen::of(fields);
    if request.version() == Version::HTTP_11 && seen.hosts != 1 {
        return Some(StatusCode::BAD_REQUEST);
    }
    // RFC 9112 §3.2: a Host whose value is not `host[:port]` is a 400
    // (as nginx answers; an empty one is allowed).
    if seen.host.is_some_and(|host| !is_host(host.as_bytes())) {
        return Some(StatusCode::BAD_REQUEST);
    }
    if seen.unknown_expectation {
        return Some(StatusCode::EXPECTATION_FAILED);
    }
    // RFC 9110 §4.2.4: userinfo in a received URI is to be treated as an
    // error (nginx: 400); no target form carries it in a request, nor may
    // HTTP/2's `:authority` (RFC 9113 §8.3.1).
    if request
        .uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Some(StatusCode::BAD_REQUEST);
    }
    // RFC 9113 §8.3.1: an HTTP/2 request whose `Host` names another
    // authority than its `:authority` is malformed.
    if request.version() == Version::HTTP_2 {
        if let (Some(host), Some(authority)) = (seen.host, request.uri().authority()) {
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
            {
                return Some(StatusCode::BAD_REQUEST);
            }
        }
    }
    // hyper decodes `chunked` (last, as it must be) once and passes other
    // codings through; shardlet decodes none of them. `chunked` more than
    // once (RFC 9112 §7.1: a sender MUST NOT) would reach the handler
    // still framed: a 400.
    if seen.unknown_coding {
        return Some(StatusCode::NOT_IMPLEMENTED);
    }
    if seen.chunked > 1 {
        return Some(StatusCode::BAD_REQUEST);
    }
    if matches!(request.version(), Version::HTTP_10 | Version::HTTP_11) {
        // `METHOD SP request-target SP HTTP/1.1`, the target in any form
        // (origin, absolute, authority, asterisk).
        let uri = request.uri();
        let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path_and_query().map_or(0, |p| p.as_str().len());
        if request.method().as_str().len() + target + 10 > limits.max_request_line() {
            return Some(StatusCode::URI_TOO_LONG);
        }
        // RFC 9112 §3.2.3-4: the authority form (`host:port`) is for
        // CONNECT only, the asterisk form for OPTIONS only (nginx: 400).
        let authority_form = uri.scheme().is_none() && uri.authority().is_some();
        if authority_form != (request.method() == http::Method::CONNECT)
            || (uri.path_and_query().is_some_and(|p| p.as_str() == "*")
                && request.method() != http::Method::OPTIONS)
        {
            return Some(StatusCode::BAD_REQUEST);
        }
        // RFC 9110 §4.2.1-2: an `http(s)` URI with an empty host is
        // invalid, and its recipient MUST reject it (nginx: 400); its host
        // would be the handler's `Host` (`host_from_target`).
        if uri.scheme().is_some() && uri.host().is_none_or(str::is_empty) {
            return Some(StatusCode::BAD_REQUEST);
        }
    }
    if request.body().size_hint().lower() > limits.max_body() {
        return Some(StatusCode::PAYLOAD_TOO_LARGE);
    }
    None
}

/// What [`precheck`] reads from a request's fields, gathered in one pass.
#[derive(Default)]
struct Seen<'a> {
    /// `Host` fields.
    hosts: usize,
    /// The first `Host` value.
    host: Option<&'a HeaderValue>,
    /// An expectation other than `100-continue`, in any `Expect` field
    /// (one list, RFC 9110 §5.3).
    unknown_expectation: bool,
    /// `chunked` codings, over all `Transfer-Encoding` fields.
    chunked: usize,
    /// A transfer coding other than `chunked`.
    unknown_coding: bool,
}

impl<'a> Seen<'a> {
    fn of(fields: &'a http::HeaderMap) -> Self {
        let mut seen = Seen::default();
        for (name, value) in fields {
            if name == header::HOST {
                seen.hosts += 1;
                seen.host = seen.host.or(Some(value));
            } else if name == header::EXPECT {
                seen.unknown_expectation |=
                    list(value).any(|e| !e.is_empty() && !e.eq_ignore_ascii_case(b"100-continue"));
            } else if name == header::TRANSFER_ENCODING {
                for coding in list(value) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        seen.chunked += 1;
                    } else if !coding.is_empty() {
                        seen.unknown_coding = true;
                    }
                }
            }
        }
        seen
    }
}

/// The items of a comma-separated field value, trimmed.
fn list(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// RFC 9112 §3.2.2: for an HTTP/1 target in absolute form
/// (`GET http://a.example/ HTTP/1.1`) the server MUST ignore the `Host`
/// field and use the target's host: it replaces the field's value (still
/// checked by [`precheck`]), so that a handler reading `Host` sees the host
/// nginx's `$host` and Go's `Request.Host` give, whatever the client sent
/// there. A target in origin form has no authority: nothing to do.
pub(super) fn host_from_target(request: &mut Request<Incoming>) {
    if request.version() > Version::HTTP_11 || request.method() == http::Method::CONNECT {
        return;
    }
    let Some(authority) = request.uri().authority() else {
        return;
    };
    // `host[:port]` (a target with userinfo is a 400 in `precheck`).
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        request.headers_mut().insert(header::HOST, host);
    }
}

/// Whether a `Host` value is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC
/// 3986 §3.2.2: an IP literal in brackets, or a name of unreserved,
/// percent-encoded and sub-delimiter characters), or empty. A scan of the
/// bytes, on every request: no parse, no allocation.
fn is_host(value: &[u8]) -> bool {
    let port = match value.first() {
        None => return true,
        Some(b'[') => {
            let Some(end) = value.iter().position(|&b| b == b']') else {
                return false;
            };
            // IPv6 (a zone ID too, RFC 6874) or IPvFuture: their characters.
            let literal = &value[1..end];
            if literal.is_empty() || !literal.iter().all(|&b| is_host_char(b) || b == b':') {
                return false;
            }
            &value[end + 1..]
        }
        Some(_) => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            if end == 0 || !value[..end].iter().all(|&b| is_host_char(b)) {
                return false;
            }
            &value[end..]
        }
    };
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// RFC 3986's unreserved, sub-delimiter and percent-encoding characters.
#[inline]
fn is_host_char(b: u8) -> bool {
    HOST_CHARS[usize::from(b)]
}

/// [`is_host_char`] as a table: a load per byte of every request's `Host`.
static HOST_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};
