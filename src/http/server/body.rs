//! [`Body`]: a request body as the handler gets it: hyper's [`Incoming`]
//! stream under the server's body limit and body timeout, both enforced
//! while the handler reads (nothing is buffered by the server).
//!
//! A body that passes a limit gives the handler an error ([`BodyError`]),
//! and whatever the handler answers then, the server answers `413` (too
//! large) or `408` (too slow) instead and closes the connection: the
//! handler cannot forget to.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::http::rt::ShardSleep;

/// Why a request body stopped short of its end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is longer than [`Limits::max_body`](super::Limits::max_body);
    /// the server answers 413.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The body did not arrive within [`Limits::body_timeout`](super::Limits::body_timeout);
    /// the server answers 408.
    #[error("request body not complete within {after:?}")]
    TimedOut {
        /// The limit.
        after: Duration,
    },
    /// The connection failed or broke the protocol (hyper's error).
    #[error("reading the request body: {0}")]
    Hyper(#[from] hyper::Error),
}

/// What a [`Body`] tells the server: while the handler runs, whether it
/// waits for the client's bytes; once it is done, which limit passed.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    what: AtomicU8,
    waiting: AtomicBool,
}

const TOO_LARGE: u8 = 1;
const TIMED_OUT: u8 = 2;
const MALFORMED: u8 = 3;

impl Verdict {
    /// The status that replaces the handler's answer, if any.
    pub(crate) fn status(&self) -> Option<http::StatusCode> {
        match self.what.load(Ordering::Acquire) {
            TOO_LARGE => Some(http::StatusCode::PAYLOAD_TOO_LARGE),
            TIMED_OUT => Some(http::StatusCode::REQUEST_TIMEOUT),
            MALFORMED => Some(http::StatusCode::BAD_REQUEST),
            _ => None,
        }
    }

    fn set(&self, what: u8) {
        self.what.store(what, Ordering::Release);
    }

    /// Whether the body's last read found nothing from the client yet (its
    /// reader waits for the client, not for work of its own).
    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    fn set_waiting(&self, waiting: bool) {
        self.waiting.store(waiting, Ordering::Relaxed);
    }
}

/// A request body: hyper's [`Incoming`] under the server's limits.
///
/// It implements [`http_body::Body`] (`Data = Bytes`), so the ecosystem's
/// tools read it: `http_body_util::BodyExt::collect`, axum's extractors.
/// It is `Send`, as axum wants.
///
/// # Examples
///
/// ```
/// use http_body_util::BodyExt;
/// use shardlet::http::server::Body;
///
/// async fn echo(request: http::Request<Body>) -> http::Response<String> {
///     match request.into_body().collect().await {
///         Ok(body) => http::Response::new(String::from_utf8_lossy(&body.to_bytes()).into_owned()),
///         // Over the limit: the server answers 413 whatever we say.
///         Err(e) => http::Response::new(e.to_string()),
///     }
/// }
/// ```
pub struct Body {
    inner: Incoming,
    left: u64,
    limit: u64,
    timeout: Duration,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<ShardSleep>>>,
    verdict: Option<Told>,
    done: bool,
}

/// The body's [`Verdict`]; a body dropped while it waited for its client
/// waits no more.
struct Told(Arc<Verdict>);

impl Drop for Told {
    fn drop(&mut self) {
        self.0.set_waiting(false);
    }
}

impl Body {
    /// `inner` under `limit` bytes and `timeout`; `verdict` learns which
    /// limit passed.
    pub(crate) fn new(inner: Incoming, limit: u64, timeout: Duration, verdict: Option<Arc<Verdict>>) -> Self {
        Body {
            inner,
            left: limit,
            limit,
            timeout,
            deadline: None,
            sleep: None,
            verdict: verdict.map(Told),
            done: false,
        }
    }

    /// hyper's body stream itself, without the server's limits.
    pub fn into_incoming(self) -> Incoming {
        self.inner
    }

    fn fail(&mut self, what: u8, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        if let Some(Told(verdict)) = &self.verdict {
            verdict.set(what);
        }
        Poll::Ready(Some(Err(error)))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let timeout = this.timeout;
        let deadline = *this.deadline.get_or_insert_with(|| crate::time::after(timeout));
        let polled = this.poll_inner(cx, deadline);
        // Waiting for the client only while nothing came back (a time-out
        // or an error is an answer too).
        if let Some(Told(verdict)) = &this.verdict {
            verdict.set_waiting(polled.is_pending());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body {
    /// One read of hyper's body under the limits (`deadline`: the body's).
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
        deadline: Instant,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self;
        let timeout = this.timeout;
        match http_body::Body::poll_frame(Pin::new(&mut this.inner), cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.left {
                    let limit = this.limit;
                    return this.fail(TOO_LARGE, BodyError::TooLarge { limit });
                }
                this.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            // A client that went away gets no answer; a broken body gets 400.
            Poll::Ready(Some(Err(e))) if e.is_incomplete_message() || e.is_closed() => {
                this.done = true;
                Poll::Ready(Some(Err(BodyError::Hyper(e))))
            }
            Poll::Ready(Some(Err(e))) => this.fail(MALFORMED, BodyError::Hyper(e)),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(ShardSleep::until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => this.fail(TIMED_OUT, BodyError::TimedOut { after: timeout }),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("limit", &self.limit)
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}
