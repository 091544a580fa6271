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
//!   ([`Exchange`]): a connection between requests, or still sending its
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
use super::budget::{AnswerBudget, Waits};
use super::precheck::{host_from_target, precheck};
use super::state::ConnState;
use super::Limits;
use crate::pool::GreenPool;
use crate::sync::slots::{Acquire, Permit};
use crate::task::guard::{guard_sync, Isolated};
use crate::task::JoinError;

/// What the connections of one shard share.
pub(crate) struct Shared<S> {
    pub(crate) service: S,
    pub(crate) limits: Limits,
    pub(crate) pool: GreenPool,
    /// The shard's answer bytes held for HTTP/2 clients (`budget.rs`).
    pub(crate) budget: Rc<AnswerBudget>,
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
    /// A named future, not a boxed `async` block: no `async` state to copy
    /// from call to call (see [`Exchange`]).
    type Future = Exchange<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if self.state.refuses_streams() {
            tracing::debug!(target: "shardlet::http", "stream opened after the shutdown's grace; refusing it");
            return Exchange {
                handler: None,
                early: Some(Early::Refused),
                books: None,
            };
        }
        let state = &self.state;
        let shared = &*self.shared;
        let limits = &shared.limits;
        let started = Instant::now();
        let served = state.begin();
        let books = |verdict, close, connect| Books {
            started,
            handling: Handling(state.clone()),
            answering: Answering {
                state: state.clone(),
                held: false,
            },
            pool: shared.pool.clone(),
            permit: None,
            acquire: None,
            verdict,
            close,
            connect,
        };
        if let Some(status) = precheck(&request, limits) {
            tracing::debug!(target: "shardlet::http", %status, uri = %request.uri(), "rejecting request");
            if !request.body().is_end_stream() {
                state.body_left_unread();
            }
            return Exchange {
                handler: None,
                early: Some(Early::Status(status)),
                books: Some(books(None, Close::No, false)),
            };
        }
        host_from_target(&mut request);
        // The last request of the connection (a limit, or HTTP/1.0
        // without keep-alive) says so; an HTTP/1.0 client learns where a
        // body of unknown length ends by the close.
        let close = if limits.max_requests().is_some_and(|max| served >= max)
            || (request.version() == Version::HTTP_10
                && !request
                    .headers()
                    .get(header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive")))
        {
            Close::Always
        } else if request.version() == Version::HTTP_10 {
            Close::UnlessSized
        } else {
            Close::No
        };
        let connect = request.method() == http::Method::CONNECT;
        let verdict = (!request.body().is_end_stream()).then(|| Arc::new(Verdict::default()));
        let request =
            request.map(|body| Body::new(body, limits.max_body(), limits.body_timeout(), verdict.clone()));
        let books = Some(books(verdict, close, connect));
        // The user's `call` runs here, on the connection's task: its panic
        // is caught like the handler's future's (a 500; on HTTP/2, else all
        // of the connection's streams would end with it).
        match guard_sync(|| shared.service.call(request)) {
            Ok(handler) => Exchange {
                handler: Some(Box::pin(Isolated::new(handler, Some(shared.pool.id())))),
                early: None,
                books,
            },
            Err(panic) => Exchange {
                handler: None,
                early: Some(Early::Panic(panic)),
                books,
            },
        }
    }
}

/// One request's exchange, as hyper polls it: the handler, polled only
/// while it holds a slot of the pool, and what the answer needs around it.
/// The handler gives its slot back while it waits for its client's body
/// bytes (the client's pace, like a head still arriving) and takes one
/// again, in turn, when it is woken.
///
/// hyper keeps this future in a slot of each connection, for the
/// connection's whole life: so the handler's future, whose size is the
/// user's, is boxed (one allocation per request, freed with its answer),
/// and what stays inline is 120 bytes (on x86-64; a test keeps it under 160).
///
/// Dropped before it answers (the client went away, a drain ran out), it
/// drops the handler first, while the handler still holds its slot, then
/// ends the request's bookkeeping ([`Books`]): the fields' order.
pub(crate) struct Exchange<F> {
    handler: Option<Pin<Box<Isolated<F>>>>,
    /// An answer settled in `call`, with no handler to poll.
    early: Option<Early>,
    /// `None` for a refused HTTP/2 stream, and once answered.
    books: Option<Books>,
}

/// What `call` settled without a handler to poll.
enum Early {
    /// The server's own answer to a request it refused (`precheck`).
    Status(StatusCode),
    /// The user's `call` panicked: a 500.
    Panic(JoinError),
    /// An HTTP/2 stream opened too late (hyper resets it).
    Refused,
}

/// What an [`Exchange`] keeps beside its handler.
struct Books {
    started: Instant,
    /// Counts the handler as ended (dropped when it does).
    handling: Handling,
    /// Goes on with the answer's body ([`Sending`]).
    answering: Answering,
    pool: GreenPool,
    permit: Option<Permit>,
    acquire: Option<Acquire>,
    /// The request body's limits, when it has one.
    verdict: Option<Arc<Verdict>>,
    close: Close,
    connect: bool,
}

/// Whether the answer closes the connection.
#[derive(Clone, Copy, PartialEq)]
enum Close {
    No,
    Always,
    /// HTTP/1.0 keep-alive: unless the answer's length is known.
    UnlessSized,
}

impl<F, B, E> Future for Exchange<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
    B: HttpBody,
{
    type Output = Result<Response<Sending<Answer<B>>>, h2::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let early = this.early.take();
        if let Some(Early::Refused) = early {
            return Poll::Ready(Err(h2::Error::from(h2::Reason::REFUSED_STREAM)));
        }
        let books = this.books.as_mut().expect("Exchange polled after it answered");
        let (response, panicked) = match early {
            Some(Early::Status(status)) => (reject(status), false),
            Some(Early::Panic(panic)) => books.answer::<B, E>(Err(panic)),
            Some(Early::Refused) => unreachable!("answered above"),
            None => {
                if books.permit.is_none() {
                    let acquire = books.acquire.get_or_insert_with(|| books.pool.acquire());
                    let Poll::Ready(permit) = Pin::new(acquire).poll(cx) else {
                        return Poll::Pending;
                    };
                    books.acquire = None;
                    books.permit = Some(permit);
                }
                let handler = this
                    .handler
                    .as_mut()
                    .expect("a handler, when nothing was settled in call");
                let polled = handler.as_mut().poll(cx);
                if polled.is_ready() || books.verdict.as_deref().is_some_and(Verdict::is_waiting) {
                    books.permit = None;
                }
                let Poll::Ready(outcome) = polled else {
                    return Poll::Pending;
                };
                this.handler = None;
                books.answer(outcome)
            }
        };
        let books = this.books.take().expect("present above");
        drop(books.handling);
        let connection = books.answering.state.connection();
        if panicked {
            connection.record_panic();
        }
        connection.record_request(response.status().as_u16(), books.started.elapsed());
        let budgeted = books.answering.state.is_h2().then(Box::default);
        Poll::Ready(Ok(response.map(|body| Sending {
            body,
            answering: Some(books.answering),
            budgeted,
        })))
    }
}

impl Books {
    /// The answer to a request whose handler ended (the server's own for
    /// one whose body broke a limit or a handler that failed, else the
    /// handler's), and whether the handler panicked.
    fn answer<B: HttpBody, E: Into<Box<dyn StdError + Send + Sync>>>(
        &self,
        outcome: Result<Result<Response<B>, E>, JoinError>,
    ) -> (Response<Answer<B>>, bool) {
        if let Some(status) = self.verdict.as_deref().and_then(Verdict::status) {
            self.answering.state.body_left_unread();
            return (reject(status), false);
        }
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
            Ok(Ok(response)) if self.connect && response.status().is_success() => {
                let status = response.status();
                tracing::warn!(target: "shardlet::http", %status, "request handler accepted a CONNECT, whose tunnel this server cannot carry (no upgrades); answering 500");
                status_only(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Ok(Ok(response))
                if self.close == Close::Always
                    || (self.close == Close::UnlessSized
                        && response.body().size_hint().exact().is_none()) =>
            {
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

/// An HTTP/2 answer's part in the shard's answer budget (`budget.rs`).
#[derive(Default)]
struct Budgeted {
    /// Where it waits for the budget, if it does.
    waits: Waits,
    /// Bytes of its frames hyper took, and the largest frame.
    taken: u64,
    largest: u64,
    /// Its last frame was taken (the body said it was at its end).
    ended: bool,
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
        // On HTTP/2 only, boxed: hyper moves an HTTP/1 answer about, and
        // this would be copied with it.
        budgeted: Option<Box<Budgeted>>,
    }

    // Dropped before its end (its stream reset, the connection failed), an
    // HTTP/2 answer takes what hyper and h2 may still have held of it out
    // of its connection's count.
    impl<A> PinnedDrop for Sending<A> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some(answering), Some(budgeted)) = (this.answering.as_ref(), this.budgeted.as_deref_mut()) {
                answering.state.stop_waiting(&mut budgeted.waits);
                if !budgeted.ended {
                    let bytes = cancelled(&answering.state, budgeted.taken, budgeted.largest);
                    answering.state.answer_cancelled(bytes);
                }
            }
        }
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
        let mut body = this.body;
        let Some(answering) = this.answering.as_mut() else {
            return body.poll_frame(cx);
        };
        if std::mem::take(&mut answering.held) {
            answering.state.answer_polled();
        }
        // On HTTP/2, the next frame waits while the connection and the
        // shard hold too much of what clients have not taken.
        let mut budgeted = this.budgeted.as_deref_mut();
        if let Some(budgeted) = budgeted.as_deref_mut() {
            if !answering.state.may_take_answer(&mut budgeted.waits, cx) {
                answering.state.answer_refused();
                answering.held = true;
                return Poll::Pending;
            }
        }
        let polled = body.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let bytes = frame.data_ref().map_or(0, bytes::Buf::remaining) as u64;
                answering.state.answer_held(bytes);
                answering.held = true;
                if let Some(budgeted) = budgeted {
                    budgeted.taken += bytes;
                    budgeted.largest = budgeted.largest.max(bytes);
                    // hyper sends trailers, or a frame after which the
                    // body says it is at its end, as the last.
                    budgeted.ended = frame.is_trailers() || body.is_end_stream();
                }
            }
            Poll::Ready(None) => {
                // A stream woken in its turn that ends with no frame
                // passes the turn on.
                answering.state.no_frame_ready();
                this.answering.take();
            }
            // hyper resets the stream: h2 drops what it held of it.
            Poll::Ready(Some(Err(_))) => {
                if let Some(budgeted) = budgeted {
                    budgeted.ended = true;
                    let bytes = cancelled(&answering.state, budgeted.taken, budgeted.largest);
                    answering.state.answer_cancelled(bytes);
                }
                this.answering.take();
            }
            Poll::Pending => answering.state.no_frame_ready(),
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

/// What hyper and h2 may hold of an answer dropped before its end that
/// took `taken` bytes in frames of at most `largest`: a frame in hyper's
/// hand and one past the stream's window, and, if the connection's
/// writes are blocked, a stream's send buffer in h2 (with writes going
/// through, h2 has written the rest: giving it back would let a client
/// that reads and resets answers hide the bytes of others).
fn cancelled(state: &ConnState, taken: u64, largest: u64) -> u64 {
    let buffered = if state.is_stalled() {
        super::conn::H2_SEND_BUF as u64
    } else {
        0
    };
    taken.min(buffered + 2 * largest)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper keeps an `Exchange` in a slot of every connection for the
    /// connection's whole life (see [`Exchange`]): whatever the handler,
    /// it stays this small, the handler's own future being boxed.
    #[test]
    fn an_exchange_is_small_whatever_its_handler() {
        type Small = std::future::Ready<Result<Response<Empty<bytes::Bytes>>, std::convert::Infallible>>;
        type Large = std::future::Ready<([u8; 4096], Small)>;
        assert_eq!(
            std::mem::size_of::<Exchange<Small>>(),
            std::mem::size_of::<Exchange<Large>>()
        );
        let size = std::mem::size_of::<Exchange<Small>>();
        assert!(size <= 160, "an Exchange is {size} bytes");
    }
}
