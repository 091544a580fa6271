//! [`ConnService`]: what hyper calls for each request of a connection. It
//! wraps the user's service with what shardlet adds:
//!
//! - for an HTTP/1 target in absolute form, its host as the `Host` field
//!   (RFC 9112 §3.2.2);
//! - the limits hyper does not check itself: the request line (414) and a
//!   `Content-Length` past the body limit (413, before the handler runs);
//! - the request body under the body limit and timeout ([`Body`]), and the
//!   413/408 that replaces the handler's answer when one of them passed;
//! - a slot of the shard's handler pool, held only while the handler runs
//!   ([`Slotted`]): a connection between requests, or still sending its
//!   head, holds none, nor does a handler while it waits for its client's
//!   body bytes (else clients that send a head and no body would take
//!   every slot: five HTTP/2 connections of 200 such streams did);
//! - a panic or an error of the handler answered with 500;
//! - an HTTP/2 stream opened after its client had its time to heed the
//!   connection's shutdown refused with `REFUSED_STREAM`, no handler run
//!   ([`ConnState::refuses_streams`]);
//! - the connection's phase ([`ConnState`]): Busy from the parsed head
//!   until the answer's body has been handed over whole ([`Sending`]), so
//!   a long answer to a slow reader is neither idle nor evicted;
//! - each answer's status and latency (from the parsed head to the answer's
//!   head, the body's streaming not included) and each handler panic,
//!   recorded on the connection for the server's stats.
//!
//! Dropping the future (the client went away, or a drain ran out) drops
//! the handler's future with it.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;

use super::body::{Body, Verdict};
use super::state::ConnState;
use super::Limits;
use crate::pool::GreenPool;
use crate::sync::slots::{Acquire, Permit};
use crate::task::guard::Isolated;

/// What the connections of one shard share.
pub(crate) struct Shared<S> {
    pub(crate) service: S,
    pub(crate) limits: Limits,
    pub(crate) pool: GreenPool,
}

/// The answer body: the handler's, or an empty one for the server's own
/// error statuses.
pub(crate) type Answer<B> = Either<B, Empty<<B as HttpBody>::Data>>;

/// The service hyper runs for one connection.
pub(crate) struct ConnService<S> {
    pub(crate) shared: Rc<Shared<S>>,
    pub(crate) state: Rc<ConnState>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: hyper::service::Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: HttpBody + 'static,
{
    type Response = Response<Sending<Answer<B>>>;
    /// Only a stream refused (hyper resets it with the error's reason).
    type Error = h2::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, h2::Error>>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if self.state.refuses_streams() {
            tracing::debug!(target: "shardlet::http", "stream opened after the shutdown's grace; refusing it");
            return Box::pin(async { Err(h2::Error::from(h2::Reason::REFUSED_STREAM)) });
        }
        let started = Instant::now();
        let served = self.state.begin();
        let handling = Handling(self.state.clone());
        let answering = Answering {
            state: self.state.clone(),
            held: false,
        };
        let shared = self.shared.clone();
        Box::pin(async move {
            let (response, panicked) = answer(request, &shared, &answering.state, served).await;
            drop(handling);
            let connection = answering.state.connection();
            if panicked {
                connection.record_panic();
            }
            connection.record_request(response.status().as_u16(), started.elapsed());
            Ok(response.map(|body| Sending {
                body,
                answering: Some(answering),
            }))
        })
    }
}

/// The answer to one request (the server's own for a request it rejects or
/// a handler that failed, else the handler's), and whether the handler
/// panicked.
async fn answer<S, B>(
    mut request: Request<Incoming>,
    shared: &Shared<S>,
    state: &ConnState,
    served: u64,
) -> (Response<Answer<B>>, bool)
where
    S: hyper::service::Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: HttpBody + 'static,
{
    let limits = &shared.limits;
    if let Some(status) = precheck(&request, limits) {
        tracing::debug!(target: "shardlet::http", %status, uri = %request.uri(), "rejecting request");
        if !request.body().is_end_stream() {
            state.body_left_unread();
        }
        return (reject(status), false);
    }
    host_from_target(&mut request);
    let request_version = request.version();
    let connect = request.method() == http::Method::CONNECT;
    let close_10 = request.version() == Version::HTTP_10
        && !request
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive"));
    let verdict = (!request.body().is_end_stream()).then(|| Arc::new(Verdict::default()));
    let request =
        request.map(|body| Body::new(body, limits.max_body(), limits.body_timeout(), verdict.clone()));
    let outcome = Slotted {
        pool: &shared.pool,
        permit: None,
        acquire: None,
        handler: Isolated::new(shared.service.call(request), Some(shared.pool.id())),
        body: verdict.clone(),
    }
    .await;
    if let Some(status) = verdict.as_deref().and_then(Verdict::status) {
        state.body_left_unread();
        return (reject(status), false);
    }
    // The last request of the connection (a limit, or HTTP/1.0
    // without keep-alive) says so.
    let last = limits.max_requests().is_some_and(|max| served >= max) || close_10;
    let is_10 = request_version == Version::HTTP_10;
    let panicked = outcome.is_err();
    let response = match outcome {
        // A 1xx is interim, never an answer of its own (RFC 9110 §15.2):
        // the client would wait on for the final one (HTTP/2 sent it as
        // the stream's head, its body after; hyper's HTTP/1 fails the
        // connection). And no protocol switch can follow (hyper's upgrades
        // need a `Send` connection; RFC 9113 §8.6 has no 101 in HTTP/2): a
        // 101 would tell the client that one did (RFC 9110 §15.2.2).
        Ok(Ok(response)) if response.status().is_informational() => {
            let status = response.status();
            tracing::warn!(target: "shardlet::http", %status, "request handler answered with an interim (1xx) status, which cannot end a request here (no upgrades, no interim answers); answering 500");
            status_only(StatusCode::INTERNAL_SERVER_ERROR)
        }
        // A 2xx to CONNECT says the tunnel is open (RFC 9110 §9.3.6): the
        // same switch that cannot follow here.
        Ok(Ok(response)) if connect && response.status().is_success() => {
            let status = response.status();
            tracing::warn!(target: "shardlet::http", %status, "request handler accepted a CONNECT, whose tunnel this server cannot carry (no upgrades); answering 500");
            status_only(StatusCode::INTERNAL_SERVER_ERROR)
        }
        // An HTTP/1.0 client learns where a body of unknown length
        // ends by the close.
        Ok(Ok(response)) if last || (is_10 && response.body().size_hint().exact().is_none()) => {
            let mut response = response.map(Either::Left);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Ok(Ok(response)) => response.map(Either::Left),
        Ok(Err(error)) => {
            let error: Box<dyn StdError + Send + Sync> = error.into();
            tracing::warn!(target: "shardlet::http", %error, "request handler failed; answering 500");
            status_only(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(panic) => {
            tracing::error!(target: "shardlet::http", "request handler {panic}; answering 500");
            status_only(StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    (response, panicked)
}

pin_project_lite::pin_project! {
    /// A handler polled only while it holds a slot of the pool, which it
    /// gives back while it waits for its client's body bytes (the client's
    /// pace, like a head still arriving) and takes again, in turn, when it
    /// is woken.
    struct Slotted<'a, H> {
        pool: &'a GreenPool,
        permit: Option<Permit>,
        acquire: Option<Acquire>,
        #[pin]
        handler: H,
        body: Option<Arc<Verdict>>,
    }
}

impl<H: Future> Future for Slotted<'_, H> {
    type Output = H::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<H::Output> {
        let this = self.project();
        if this.permit.is_none() {
            let acquire = this.acquire.get_or_insert_with(|| this.pool.acquire());
            let Poll::Ready(permit) = Pin::new(acquire).poll(cx) else {
                return Poll::Pending;
            };
            *this.acquire = None;
            *this.permit = Some(permit);
        }
        let polled = this.handler.poll(cx);
        if polled.is_ready() || this.body.as_deref().is_some_and(Verdict::is_waiting) {
            *this.permit = None;
        }
        polled
    }
}

/// Counts the handler as ended however its future ends.
struct Handling(Rc<ConnState>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handled();
    }
}

/// Ends the request's part of the connection's Busy phase when its answer
/// is sent whole or dropped (with the handler's future, if it never
/// answered), and its hold on the connection if hyper held a frame of it.
struct Answering {
    state: Rc<ConnState>,
    /// hyper took a frame and has not asked for the next yet.
    held: bool,
}

impl Drop for Answering {
    fn drop(&mut self) {
        if self.held {
            self.state.answer_polled();
        }
        self.state.end();
    }
}

pin_project_lite::pin_project! {
    /// An answer body that keeps its request counted as Busy until its last
    /// frame is taken (or it fails, or hyper drops it): an answer that takes
    /// longer to send than the idle timeout is not cut short as idle, nor
    /// evicted at the connection cap.
    pub(crate) struct Sending<A> {
        #[pin]
        body: A,
        answering: Option<Answering>,
    }
}

impl<A: HttpBody> HttpBody for Sending<A> {
    type Data = A::Data;
    type Error = A::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(answering) = this.answering.as_mut() else {
            return this.body.poll_frame(cx);
        };
        if std::mem::take(&mut answering.held) {
            answering.state.answer_polled();
        }
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let bytes = frame.data_ref().map_or(0, bytes::Buf::remaining);
                answering.state.answer_held(bytes as u64);
                answering.held = true;
            }
            Poll::Ready(None | Some(Err(_))) => {
                this.answering.take();
            }
            Poll::Pending => {}
        }
        polled
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The status for a request the server answers itself, before any handler.
fn precheck(request: &Request<Incoming>, limits: &Limits) -> Option<StatusCode> {
    let fields = request.headers();
    // More than hyper's bound was refused by hyper already (see `conn::Builders`).
    if fields.len() > limits.max_headers() {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    if request.version() == Version::HTTP_11 && fields.get_all(header::HOST).iter().count() != 1 {
        return Some(StatusCode::BAD_REQUEST);
    }
    // RFC 9112 §3.2: a Host whose value is not `host[:port]` is a 400
    // (as nginx answers; an empty one is allowed).
    if fields
        .get(header::HOST)
        .is_some_and(|host| !is_host(host.as_bytes()))
    {
        return Some(StatusCode::BAD_REQUEST);
    }
    // Every expectation, in every `Expect` field (one list, RFC 9110 §5.3).
    for expect in fields.get_all(header::EXPECT) {
        let mut expectations = expect.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii);
        if expectations.any(|e| !e.is_empty() && !e.eq_ignore_ascii_case(b"100-continue")) {
            return Some(StatusCode::EXPECTATION_FAILED);
        }
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
        if let (Some(host), Some(authority)) = (fields.get(header::HOST), request.uri().authority()) {
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
    let mut chunked = 0;
    for coding in fields.get_all(header::TRANSFER_ENCODING) {
        for coding in coding.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if coding.eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
            } else if !coding.is_empty() {
                return Some(StatusCode::NOT_IMPLEMENTED);
            }
        }
    }
    if chunked > 1 {
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
            || (uri == "*" && request.method() != http::Method::OPTIONS)
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

/// RFC 9112 §3.2.2: for an HTTP/1 target in absolute form
/// (`GET http://a.example/ HTTP/1.1`) the server MUST ignore the `Host`
/// field and use the target's host: it replaces the field's value (still
/// checked by [`precheck`]), so that a handler reading `Host` sees the host
/// nginx's `$host` and Go's `Request.Host` give, whatever the client sent
/// there. A target in origin form has no authority: nothing to do.
fn host_from_target(request: &mut Request<Incoming>) {
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
fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)
}

/// A status-only answer that also closes the connection.
fn reject<B: HttpBody>(status: StatusCode) -> Response<Answer<B>> {
    let mut response = status_only(status);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn status_only<B: HttpBody>(status: StatusCode) -> Response<Answer<B>> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = status;
    response
}
