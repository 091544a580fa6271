//! [`Body`]: a request body as the handler gets it: hyper's [`Incoming`]
//! stream under the server's body limit and body timeout, both enforced
//! while the handler reads (nothing is buffered by the server).
//!
//! The body timeout is a budget of time spent waiting for the client: it
//! runs while a read of the handler finds nothing yet, and stands still
//! while the handler does other work between reads (waits for a pool slot,
//! a fetch). A client that trickles its body still runs out of it (the
//! waits add up, unlike a timeout per read), and a handler that reads
//! slowly does not turn its own pace into the client's 408. A wait ends
//! when the client's bytes wake the handler ([`Stamp`]), not when the
//! handler next runs: the time it then spends queued for a pool slot (the
//! server gives the slot back while the body waits) is the server's.
//!
//! A body that passes a limit gives the handler an error ([`BodyError`]),
//! and whatever the handler answers then, the server answers `413` (too
//! large) or `408` (too slow) instead and closes the connection: the
//! handler cannot forget to.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::http::rt::ShardSleep;
use crate::sync::AtomicWaker;
use crate::time::FOREVER;

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
    /// The handler waited for the body's bytes for longer than
    /// [`Limits::body_timeout`](super::Limits::body_timeout) in all; the
    /// server answers 408.
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
    /// Time spent waiting for the client, before the current wait.
    waited: Duration,
    /// Since when a read has found nothing (the current wait), if one has.
    waiting_since: Option<Instant>,
    /// Armed at the first wait, for when the budget would be spent if the
    /// waits had no gaps; it may fire early, never late (then re-armed).
    sleep: Option<Pin<Box<ShardSleep>>>,
    /// Made at the first wait; from then on hyper wakes the task through it.
    stamp: Option<(Arc<Stamp>, Waker)>,
    verdict: Option<Told>,
    done: bool,
    /// Small pieces gathered, not handed over yet.
    gathered: Option<BytesMut>,
    /// The gathering gave the connection's task a turn to decode more.
    yielded: bool,
    /// What a read after small pieces gathered found, for the next read.
    next: Option<Result<Frame<Bytes>, BodyError>>,
}

/// A data frame shorter than this is gathered with the ones that follow
/// at once, up to [`GATHER`] bytes, into one: hyper hands over each piece
/// of a chunked body as a frame (32 bytes kept per piece by a handler that
/// keeps the frames: `BodyExt::collect`, axum's extractors), so a body
/// sent in 1-byte chunks took some 35 times its size. hyper's connection
/// task decodes the next piece only once the body is read again: the
/// gathering gives it one turn (a yield) and hands over what it has as
/// soon as a read finds nothing after that turn, so a body whose client
/// pauses is not held back.
const SMALL: usize = 1 << 10;

/// The most bytes gathered into one frame.
const GATHER: usize = 16 << 10;

/// The waker hyper is given for a body that has waited once: it notes
/// when it was woken (the client's bytes came, or hyper's connection
/// ended), then wakes the task.
struct Stamp {
    task: AtomicWaker,
    base: Instant,
    /// The first wake since the last look: nanoseconds after `base`, plus
    /// one; zero if none.
    woken: AtomicU64,
}

impl Stamp {
    /// When it was woken since the last look, if it was.
    fn take_woken(&self) -> Option<Instant> {
        match self.woken.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n - 1)),
        }
    }
}

impl std::task::Wake for Stamp {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let at = u64::try_from(self.base.elapsed().as_nanos()).map_or(u64::MAX, |n| n.saturating_add(1));
        let _ = self
            .woken
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
        self.task.wake();
    }
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
            waited: Duration::ZERO,
            waiting_since: None,
            sleep: None,
            stamp: None,
            verdict: verdict.map(Told),
            done: false,
            gathered: None,
            yielded: false,
            next: None,
        }
    }

    /// Reads on while the frames are small data frames (see [`SMALL`]).
    fn poll_gathering(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            let polled = self.poll_inner(cx);
            let Some(gathered) = self.gathered.as_mut() else {
                match polled {
                    Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(|d| d.len() < SMALL) => {
                        let data = frame.into_data().expect("a data frame");
                        self.gathered = Some(BytesMut::from(&data[..]));
                        self.yielded = false;
                        continue;
                    }
                    polled => return polled,
                }
            };
            match polled {
                Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(|d| d.len() < SMALL) => {
                    gathered.extend_from_slice(frame.data_ref().expect("a data frame"));
                    self.yielded = false;
                    if gathered.len() < GATHER {
                        continue;
                    }
                }
                Poll::Pending if !self.yielded => {
                    self.yielded = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                // Nothing more after the connection's turn: what the reads
                // that found nothing began was no wait of the handler's
                // (it gets data now), so its time does not count.
                Poll::Pending => self.waiting_since = None,
                Poll::Ready(None) => {}
                // A large piece (as it came, not copied), trailers or an
                // error: after the data.
                Poll::Ready(Some(next)) => self.next = Some(next),
            }
            let data = self.gathered.take().expect("gathered").freeze();
            return Poll::Ready(Some(Ok(Frame::data(data))));
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
        if let Some(next) = this.next.take() {
            return Poll::Ready(Some(next));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let polled = this.poll_gathering(cx);
        // Waiting for the client only while nothing came back (a time-out
        // or an error is an answer too).
        if let Some(Told(verdict)) = &this.verdict {
            // (A yield while gathering is no wait for the client.)
            verdict.set_waiting(polled.is_pending() && this.gathered.is_none());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.next.is_none() && self.gathered.is_none() && (self.done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        // Bytes gathered and not handed over yet are still to come.
        let gathered = self.gathered.as_ref().map_or(0, |g| g.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + gathered);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + gathered);
        }
        hint
    }
}

impl Body {
    /// One read of hyper's body under the limits.
    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self;
        let polled = match &this.stamp {
            Some((stamp, waker)) => {
                stamp.task.register(cx.waker());
                http_body::Body::poll_frame(Pin::new(&mut this.inner), &mut Context::from_waker(waker))
            }
            None => http_body::Body::poll_frame(Pin::new(&mut this.inner), cx),
        };
        if let Some(since) = this.waiting_since {
            // The wait ended when hyper woke the task, if it did: what came
            // after (a slot wait, the handler's other work) is not the client's.
            let woken = this.stamp.as_ref().and_then(|(stamp, _)| stamp.take_woken());
            if polled.is_ready() || woken.is_some() {
                let now = Instant::now();
                let end = woken.map_or(now, |at| at.min(now));
                this.waited += end.saturating_duration_since(since);
                this.waiting_since = None;
            }
        }
        match polled {
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
            Poll::Pending => this.wait(cx),
        }
    }

    /// A read found nothing: the budget runs until the next read finds
    /// something. Pending, or the time-out once the budget is spent.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.stamp.is_none() {
            let stamp = Arc::new(Stamp {
                task: AtomicWaker::new(),
                base: Instant::now(),
                woken: AtomicU64::new(0),
            });
            let waker = Waker::from(stamp.clone());
            self.stamp = Some((stamp, waker));
            // hyper holds the task's own waker from the read just made:
            // read again to hand it the stamp.
            return self.poll_inner(cx);
        }
        let since = match self.waiting_since {
            Some(since) => since,
            None => {
                // A wake from before this wait says nothing about it.
                if let Some((stamp, _)) = &self.stamp {
                    stamp.take_woken();
                }
                *self.waiting_since.insert(Instant::now())
            }
        };
        // When this wait spends the budget.
        let deadline = since + self.timeout.saturating_sub(self.waited).min(FOREVER);
        loop {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(ShardSleep::until(deadline)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                let after = self.timeout;
                return self.fail(TIMED_OUT, BodyError::TimedOut { after });
            }
            // Armed at an earlier wait, as if the waits had no gaps: fired
            // early. Sleep on to this wait's deadline.
            self.sleep = None;
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
