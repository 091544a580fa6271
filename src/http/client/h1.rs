//! [`H1`]: an HTTP/1.1 client connection driven by the request that uses
//! it, not by a green thread of its own.
//!
//! hyper splits a connection into a request handle (`SendRequest`) and the
//! `Connection` future that does the reading and writing. Spawned as a task,
//! that future costs every request two extra trips through the shard's run
//! queue: the request wakes the connection's task to write it, and the
//! connection's task wakes the request's task with the response (and again
//! for the body). An HTTP/1.1 connection serves one request at a time, so
//! the request's own task can poll both: [`H1::drive`] polls what the
//! request waits on (hyper's answer, the next piece of the body), then the
//! connection, then what it waits on again, which usually finds what the
//! connection just read. The socket's readiness wakes the request's task
//! directly.
//!
//! The pair stays together in the keep-alive pool. While it idles there
//! nothing polls it, so before it is reused [`H1::alive`] polls it once: a
//! connection that the server closed, or that received bytes nobody asked
//! for (a `408` before a close, a late stray body), ends in hyper right
//! there and is dropped, as it did in its own task before.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::client::conn::TrySendError;

use super::body::Body;
use super::transport::Transport;

type Connection = http1::Connection<Transport, Body>;

/// An HTTP/1.1 connection: hyper's request handle and its connection,
/// polled by whoever waits on it.
pub(crate) struct H1 {
    sender: http1::SendRequest<Body>,
    /// `None` once hyper's connection has ended (and been dropped, which
    /// closed the socket).
    conn: Option<Connection>,
}

impl H1 {
    pub(crate) fn new(sender: http1::SendRequest<Body>, conn: Connection) -> Box<H1> {
        Box::new(H1 {
            sender,
            conn: Some(conn),
        })
    }

    /// Whether the connection has ended (as far as anyone polled it).
    pub(crate) fn is_closed(&self) -> bool {
        self.conn.is_none() || self.sender.is_closed()
    }

    /// Polls the connection once, then says whether it is still open: for
    /// a pooled connection, whatever happened while it idled (a close,
    /// unsolicited bytes) ends it now.
    pub(crate) async fn alive(&mut self) -> bool {
        poll_fn(|cx| {
            let _ = poll_conn(&mut self.conn, cx);
            Poll::Ready(())
        })
        .await;
        !self.is_closed()
    }

    /// Waits until hyper can take a request on this connection.
    pub(crate) async fn ready(&mut self) -> hyper::Result<()> {
        let sender = &mut self.sender;
        drive(&mut self.conn, poll_fn(|cx| sender.poll_ready(cx))).await
    }

    /// Sends `request` and waits for the response head.
    pub(crate) async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Body>>> {
        let answer = self.sender.try_send_request(request);
        drive(&mut self.conn, answer).await
    }

    /// Runs `fut` (a wait on this connection, such as the next piece of a
    /// response body) while polling the connection.
    pub(crate) async fn drive<F: Future>(&mut self, fut: F) -> F::Output {
        drive(&mut self.conn, fut).await
    }
}

/// `fut`, with `conn` polled whenever `fut` is not ready; `fut` is polled
/// again after the connection, which often made it ready.
async fn drive<F: Future>(conn: &mut Option<Connection>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if conn.is_none() {
            return Poll::Pending;
        }
        let _ = poll_conn(conn, cx);
        fut.as_mut().poll(cx)
    })
    .await
}

/// Polls the connection; once it ends, drops it (closing the socket) and
/// leaves `None`. Ready when it ended now or before.
fn poll_conn(conn: &mut Option<Connection>, cx: &mut Context<'_>) -> Poll<()> {
    let Some(c) = conn else {
        return Poll::Ready(());
    };
    match std::pin::Pin::new(c).poll(cx) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(result) => {
            if let Err(e) = result {
                tracing::debug!(target: "shardlet::http", error = %e, "HTTP/1.1 client connection ended");
            }
            *conn = None;
            Poll::Ready(())
        }
    }
}
