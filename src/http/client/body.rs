//! [`Body`]: what a request sends (nothing, bytes in full, or a stream), and
//! reading a response body under the client's limits.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::deadline::{Sent, Watch};
use super::error::{ErrorKind, Phase};

type BoxError = Box<dyn StdError + Send + Sync>;

/// A request body: empty, bytes in full (which a redirect or a retry can
/// send again), or a stream of bytes (sent once).
///
/// # Examples
///
/// ```
/// use shardlet::http::client::Body;
///
/// let full = Body::from("name=value");
/// let streamed = Body::stream(http_body_util::Full::new(bytes::Bytes::from_static(b"piece")));
/// # drop((full, streamed));
/// ```
pub struct Body {
    kind: Kind,
    /// Counts the pieces taken, for the request's timer (see `deadline.rs`).
    sent: Option<Sent>,
}

/// The most of a full body handed over as one piece: the request's timer
/// sees an upload's progress piece by piece.
const PIECE: usize = 64 << 10;

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream(Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError>>>),
}

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Body {
            kind: Kind::Empty,
            sent: None,
        }
    }

    /// Any [`http_body::Body`], sent as it comes (chunked over HTTP/1.1
    /// unless it knows its length).
    pub fn stream<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + 'static,
        B::Error: Into<BoxError>,
    {
        Body {
            kind: Kind::Stream(Box::pin(body.map_err(Into::into))),
            sent: None,
        }
    }

    /// A copy of this body to send again, when it can be (not a stream).
    pub(crate) fn try_clone(&self) -> Option<Body> {
        match &self.kind {
            Kind::Empty => Some(Body::empty()),
            Kind::Full(bytes) => Some(Body {
                kind: Kind::Full(bytes.clone()),
                sent: None,
            }),
            Kind::Stream(_) => None,
        }
    }

    /// Has each piece taken counted in `sent`.
    pub(crate) fn counted(mut self, sent: Sent) -> Body {
        self.sent = Some(sent);
        self
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            return Body::empty();
        }
        Body {
            kind: Kind::Full(Some(bytes)),
            sent: None,
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::from(Bytes::from(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body::from(Bytes::from(text))
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Body::from(Bytes::from_static(text.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Body::from(Bytes::from_static(bytes))
    }
}

impl From<()> for Body {
    fn from((): ()) -> Self {
        Body::empty()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(match bytes {
                Some(rest) if rest.len() > PIECE => Some(Ok(Frame::data(rest.split_to(PIECE)))),
                _ => bytes.take().map(|b| Ok(Frame::data(b))),
            }),
            Kind::Stream(stream) => stream.as_mut().poll_frame(cx),
        };
        if let (Poll::Ready(Some(Ok(_))), Some(sent)) = (&frame, &this.sent) {
            sent.bump();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(stream) => stream.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(stream) => stream.size_hint(),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("Body::Empty"),
            Kind::Full(bytes) => write!(f, "Body::Full({} bytes)", bytes.as_ref().map_or(0, Bytes::len)),
            Kind::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

/// Reads `body` to its end: at most `limit` bytes, waiting at most `idle`
/// for each piece (on the request's timer, `watch`).
pub(crate) async fn collect(
    mut body: hyper::body::Incoming,
    limit: u64,
    idle: Duration,
    watch: &Watch,
) -> Result<Bytes, ErrorKind> {
    if body.size_hint().lower() > limit {
        return Err(ErrorKind::TooLarge { limit });
    }
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut total = 0u64;
    loop {
        let frame = match watch.within(idle, body.frame()).await {
            Err(_) => {
                return Err(ErrorKind::Timeout {
                    phase: Phase::Read,
                    after: idle,
                })
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(super::error::from_hyper(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        total += data.len() as u64;
        if total > limit {
            return Err(ErrorKind::TooLarge { limit });
        }
        // One piece (the common case) is kept as it came, without a copy.
        match &first {
            None if more.is_empty() => first = Some(data),
            _ => {
                if let Some(first) = first.take() {
                    more.extend_from_slice(&first);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| more.freeze()))
}

/// Reads what of `body` is there already, up to `limit` bytes, without
/// waiting on the network: whether that was all of it (then its connection
/// can serve another request). A body still on its way, or a larger one, is
/// dropped. The connection's own task hands over the bytes it has read, so
/// a body that is not there at once gets a few yields to it ([`HANDOVER`])
/// before it counts as on its way.
pub(crate) async fn drain_ready(mut body: hyper::body::Incoming, limit: usize) -> bool {
    let mut total = 0;
    let mut yields = 0;
    loop {
        match futures_lite::future::poll_once(body.frame()).await {
            Some(None) => return true,
            Some(Some(Ok(frame))) => {
                total += frame.data_ref().map_or(0, Bytes::len);
                if total > limit {
                    return false;
                }
            }
            None if yields < HANDOVER => {
                yields += 1;
                futures_lite::future::yield_now().await;
            }
            Some(Some(Err(_))) | None => return false,
        }
    }
}

/// How many times [`drain_ready`] lets the connection's task run before a
/// body that is not there counts as on its way.
const HANDOVER: u32 = 3;
