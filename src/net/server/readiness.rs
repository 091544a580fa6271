//! [`Ready`]: the future of [`Server::ready`], which resolves once every
//! shard serves, or fails at once with the reason none ever will.
//!
//! The runtime's side is the [`Shards`] trait, which the runtime's
//! lifecycle implements (`runtime/handle.rs`) and `Server::ready` (defined
//! with the runtime, `runtime/ready.rs`) hands in: `net` imports nothing
//! from the runtime.
//!
//! It watches two things, each through wakers woken on every change: the
//! server (a shard starts or stops listening, a `serve` fails, a stop) and
//! the runtime's lifecycle (a shard's entry is over, a failure is
//! reported). It registers with both, then looks at the state, so a change
//! in between wakes it.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::net::Server;
use crate::sync::wakers::WakerKey;

/// The runtime's shards as [`Ready`] watches them.
pub(crate) trait Shards: Send + Sync {
    /// Registers `cx`'s waker under `key` (woken on the next change) unless
    /// `ready` already holds; the check and the registration happen under
    /// one lock, so no change between them is missed.
    fn poll_until(
        &self,
        key: &mut Option<WakerKey>,
        cx: &mut Context<'_>,
        ready: &mut dyn FnMut(&dyn ShardsNow) -> bool,
    ) -> Poll<()>;

    /// Gives a waiter's key back (its future was dropped).
    fn forget(&self, key: &mut Option<WakerKey>);
}

/// A look at the shards under the lifecycle's lock.
pub(crate) trait ShardsNow {
    /// The first failure reported so far, as the error `Ready` gives.
    fn failure(&self) -> Option<io::Error>;
    /// Whether `shard`'s entry is over.
    fn is_reported(&self, shard: usize) -> bool;
    /// Whether every shard's entry is over.
    fn all_reported(&self) -> bool;
}

/// The future of [`Server::ready`]: `Send + 'static`, for any executor.
#[must_use = "futures do nothing unless polled"]
pub struct Ready {
    server: Server,
    lifecycle: Arc<dyn Shards>,
    shards: usize,
    server_key: Option<WakerKey>,
    runtime_key: Option<WakerKey>,
}

impl Ready {
    pub(crate) fn new(server: Server, lifecycle: Arc<dyn Shards>, shards: usize) -> Self {
        Ready {
            server,
            lifecycle,
            shards,
            server_key: None,
            runtime_key: None,
        }
    }

    /// What the state says now: `None` while it may still become ready.
    fn decide(&self, runtime: &dyn ShardsNow) -> Option<io::Result<()>> {
        let server = &self.server;
        if let Some(err) = server.serve_failure() {
            return Some(Err(err));
        }
        if let Some(err) = runtime.failure() {
            return Some(Err(err));
        }
        let listening = |shard| server.is_listening(shard);
        if self.shards > 0 && (0..self.shards).all(listening) {
            return Some(Ok(()));
        }
        if server.is_stopped() {
            return Some(Err(io::Error::new(
                io::ErrorKind::Interrupted,
                format!(
                    "server on {} was stopped before it was ready",
                    server.local_addr()
                ),
            )));
        }
        if let Some(shard) = (0..self.shards).find(|&s| runtime.is_reported(s) && !listening(s)) {
            return Some(Err(io::Error::other(format!(
                "shard {shard}'s entry ended without serving {}",
                server.local_addr()
            ))));
        }
        if runtime.all_reported() {
            return Some(Err(io::Error::other(format!(
                "the runtime ended before {} was served",
                server.local_addr()
            ))));
        }
        None
    }
}

impl Future for Ready {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.server.watchers().register(&mut this.server_key, cx.waker());
        let mut outcome = None;
        let mut key = this.runtime_key.take();
        let polled = this.lifecycle.poll_until(&mut key, cx, &mut |view| {
            outcome = this.decide(view);
            outcome.is_some()
        });
        this.runtime_key = key;
        match (polled, outcome) {
            (Poll::Ready(()), Some(outcome)) => {
                this.server.watchers().forget(&mut this.server_key);
                Poll::Ready(outcome)
            }
            _ => Poll::Pending,
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        self.server.watchers().forget(&mut self.server_key);
        self.lifecycle.forget(&mut self.runtime_key);
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready")
            .field("addr", &self.server.local_addr())
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}
