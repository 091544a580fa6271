//! A request's final answer: read whole ([`Client::finish`], behind
//! `get`, `send` and the rest), or handed over with its body still to come
//! ([`Client::send_streamed`], [`Streamed`]).

use bytes::Bytes;
use http::{header, Method, Response};
use hyper::body::Incoming;
use url::Url;

use super::deadline::Watch;
use super::pool::{Key, Sender};
use super::{body, userinfo, Client, Error};

/// The final answer of a request (after redirects): its head, its
/// connection, and the request that got it.
pub(crate) struct Headed {
    pub(crate) response: Response<Incoming>,
    pub(crate) sender: Sender,
    pub(crate) key: Key,
    /// The method of the last hop (a redirect may have made it a `GET`).
    pub(crate) method: Method,
    pub(crate) url: Url,
}

/// Whether the connection of an answer with this head may serve another
/// request once the answer is read: RFC 9112 §6.3, both framings in one
/// answer is a sign of smuggling or response splitting; hyper reads it as
/// chunked, and the connection is not trusted again.
pub(crate) fn reusable(sender: &Sender, head: &http::response::Parts) -> bool {
    !(matches!(sender, Sender::H1(_))
        && head.headers.contains_key(header::CONTENT_LENGTH)
        && head.headers.contains_key(header::TRANSFER_ENCODING))
}

impl Client {
    /// Reads the body of the answer and puts its connection back.
    pub(crate) async fn finish(&self, headed: Headed, watch: &Watch) -> Result<Response<Bytes>, Error> {
        let Headed {
            response,
            sender,
            key,
            method,
            mut url,
        } = headed;
        let s = &self.inner.settings;
        let (mut parts, incoming) = response.into_parts();
        let reusable = reusable(&sender, &parts);
        let body = if method == Method::HEAD {
            drop(incoming);
            Ok(Bytes::new())
        } else {
            body::collect(incoming, s.max_body, s.read_timeout, watch).await
        };
        // An HTTP/2 connection outlives a stream that failed (its other
        // streams go on): it is given back either way.
        if reusable && (body.is_ok() || matches!(sender, Sender::H2(..))) {
            self.inner.pool.put(&key, sender);
        }
        let body = body.map_err(|kind| Error::new(url.as_str(), kind))?;
        // The credentials went in `Authorization`; the URL shown is without them.
        userinfo::strip(&mut url);
        parts.extensions.insert(url);
        Ok(Response::from_parts(parts, body))
    }
}

impl Client {
    /// Sends `request` as [`send`](Client::send) does, and hands back the
    /// answer once its head has come, its body still to be read: for
    /// answers too large to hold, or to act on as they come. The body
    /// ([`Streamed`]) holds to the client's `max_body`, to its
    /// `read_timeout` for each piece, and to the request's time limit
    /// (`request_timeout`, or the request's own [`Timeout`](super::Timeout):
    /// give a long one to a long download), which covers the body too. Read
    /// to its end, the body gives its connection back to the pool; dropped
    /// before, it closes an HTTP/1.1 connection (an HTTP/2 one goes back:
    /// only the stream is reset).
    ///
    /// # Errors
    ///
    /// As [`get`](Client::get), up to the head; an answer whose
    /// `Content-Length` passes `max_body` fails here with
    /// [`ErrorKind::TooLarge`](super::ErrorKind::TooLarge).
    ///
    /// # Examples
    ///
    /// ```
    /// use http_body_util::BodyExt;
    ///
    /// // Counts an answer's bytes without holding them.
    /// async fn length(client: &shardlet::http::Client, url: &str) -> Result<u64, shardlet::http::Error> {
    ///     let request = http::Request::get(url).body(()).expect("a valid request");
    ///     let mut body = client.send_streamed(request).await?.into_body();
    ///     let mut length = 0;
    ///     while let Some(frame) = body.frame().await {
    ///         length += frame?.data_ref().map_or(0, |data| data.len() as u64);
    ///     }
    ///     Ok(length)
    /// }
    /// ```
    pub async fn send_streamed<B: Into<super::Body>>(
        &self,
        request: http::Request<B>,
    ) -> Result<Response<Streamed>, Error> {
        let (parts, body) = request.into_parts();
        let limit = parts.extensions.get::<super::Timeout>().map(|t| t.0);
        let url = parts.uri.to_string();
        self.streamed(parts.method, &url, parts.headers, body.into(), limit)
            .await
    }

    /// A `GET` of `url` as [`get`](Client::get) makes it, its answer's body
    /// to be read as it comes, as [`send_streamed`](Client::send_streamed)
    /// hands it over.
    ///
    /// # Errors
    ///
    /// As [`send_streamed`](Client::send_streamed).
    pub async fn get_streamed(&self, url: &str) -> Result<Response<Streamed>, Error> {
        self.streamed(
            Method::GET,
            url,
            http::HeaderMap::new(),
            super::Body::empty(),
            None,
        )
        .await
    }

    async fn streamed(
        &self,
        method: Method,
        url: &str,
        headers: http::HeaderMap,
        body: super::Body,
        limit: Option<std::time::Duration>,
    ) -> Result<Response<Streamed>, Error> {
        let started = std::time::Instant::now();
        let fetch = self.fetch_inner(method, url, headers, body, limit, async |headed, _| Ok(headed));
        let headed = Box::pin(fetch).await?;
        let limit = limit.unwrap_or(self.inner.settings.request_timeout);
        Streamed::start(self, headed, (started, limit))
    }
}

/// The body of an answer from [`Client::send_streamed`], read as it comes
/// ([`http_body::Body`]: `BodyExt::frame`, `collect`, a stream of pieces).
///
/// It ends with an [`Error`] naming the URL when the answer passes the
/// client's `max_body` ([`TooLarge`](super::ErrorKind::TooLarge)), when a
/// piece does not come within its `read_timeout` (a
/// [`Timeout`](super::ErrorKind::Timeout) of the read phase), when the
/// request's time limit passes (a `Timeout` of the request phase), or when
/// the connection fails. Shard-local, as the client is.
pub struct Streamed {
    incoming: Incoming,
    /// The client and the connection's place in its pool, for the end.
    back: Option<(Client, Key, Sender)>,
    url: Url,
    /// The URL errors name.
    named: Box<str>,
    left: u64,
    limit: u64,
    idle: std::time::Duration,
    /// The request's time limit, and when it passes.
    time_limit: std::time::Duration,
    deadline: std::time::Instant,
    /// The wait for the next piece, armed when a read finds nothing.
    wait: Option<glommio::timer::Timer>,
    done: bool,
}

impl Streamed {
    fn start(
        client: &Client,
        headed: Headed,
        (started, limit): (std::time::Instant, std::time::Duration),
    ) -> Result<Response<Streamed>, Error> {
        let Headed {
            response,
            sender,
            key,
            method: _,
            mut url,
        } = headed;
        let s = &client.inner.settings;
        let (mut parts, incoming) = response.into_parts();
        // Errors name the URL as the client's others do (the password
        // hidden by `Error`); `url()` is without the credentials.
        let named: Box<str> = url.as_str().into();
        userinfo::strip(&mut url);
        if http_body::Body::size_hint(&incoming).lower() > s.max_body {
            let limit = s.max_body;
            return Err(Error::new(&*named, super::ErrorKind::TooLarge { limit }));
        }
        let back = reusable(&sender, &parts).then(|| (client.clone(), key, sender));
        parts.extensions.insert(url.clone());
        let body = Streamed {
            incoming,
            back,
            url,
            named,
            left: s.max_body,
            limit: s.max_body,
            idle: s.read_timeout,
            time_limit: limit,
            deadline: started + limit.min(crate::time::FOREVER),
            wait: None,
            done: false,
        };
        Ok(Response::from_parts(parts, body))
    }

    /// The URL that gave this answer (after redirects), without its
    /// credentials.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The next piece of the body, or `None` at its end (trailers skipped).
    ///
    /// # Errors
    ///
    /// As the body's frames: see [`Streamed`].
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            let frame =
                std::future::poll_fn(|cx| http_body::Body::poll_frame(std::pin::Pin::new(&mut *self), cx))
                    .await;
            match frame {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    fn fail(
        &mut self,
        kind: super::ErrorKind,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        self.done = true;
        self.give_back(false);
        std::task::Poll::Ready(Some(Err(Error::new(&*self.named, kind))))
    }

    /// Puts the connection back in the pool: an HTTP/1.1 one only after the
    /// whole body (else it closes), an HTTP/2 one also after a stream that
    /// failed or was dropped (its other streams go on).
    fn give_back(&mut self, whole: bool) {
        if let Some((client, key, sender)) = self.back.take() {
            if whole || matches!(sender, Sender::H2(..)) {
                client.inner.pool.put(&key, sender);
            }
        }
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.wait = None;
                if std::time::Instant::now() >= this.deadline {
                    return this.fail(super::ErrorKind::Timeout {
                        phase: super::Phase::Request,
                        after: this.time_limit,
                    });
                }
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.left {
                    let limit = this.limit;
                    return this.fail(super::ErrorKind::TooLarge { limit });
                }
                this.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(super::error::from_hyper(e)),
            Poll::Ready(None) => {
                this.done = true;
                this.wait = None;
                this.give_back(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let (idle, deadline) = (this.idle, this.deadline);
                let wait = this.wait.get_or_insert_with(|| {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    glommio::timer::Timer::new(idle.min(left))
                });
                if std::future::Future::poll(std::pin::Pin::new(wait), cx).is_pending() {
                    return Poll::Pending;
                }
                let (phase, after) = if std::time::Instant::now() >= deadline {
                    (super::Phase::Request, this.time_limit)
                } else {
                    (super::Phase::Read, idle)
                };
                this.fail(super::ErrorKind::Timeout { phase, after })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.incoming)
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        // A body with nothing left to read (a `HEAD`, an empty one, the last
        // byte read) leaves its connection ready for the next request.
        let whole = !self.done && http_body::Body::is_end_stream(&self.incoming);
        self.give_back(whole);
    }
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("url", &self.url.as_str())
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}
