//! [`Ready`]: the future of [`Server::ready`], which resolves once every
//! shard serves, or fails at once with the reason none ever will.
//!
//! It lives with the runtime, whose lifecycle it watches, so that `net`
//! needs nothing from the runtime; `net::Ready` re-exports it.
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
use crate::runtime::handle::{Lifecycle, LifecycleView, RuntimeHandle};
use crate::sync::wakers::WakerKey;

/// The future of [`Server::ready`]: `Send + 'static`, for any executor.
#[must_use = "futures do nothing unless polled"]
pub struct Ready {
    server: Server,
    lifecycle: Arc<Lifecycle>,
    shards: usize,
    server_key: Option<WakerKey>,
    runtime_key: Option<WakerKey>,
}

impl Ready {
    pub(crate) fn new(server: Server, lifecycle: Arc<Lifecycle>, shards: usize) -> Self {
        Ready {
            server,
            lifecycle,
            shards,
            server_key: None,
            runtime_key: None,
        }
    }

    /// What the state says now: `None` while it may still become ready.
    fn decide(&self, runtime: &LifecycleView<'_>) -> Option<io::Result<()>> {
        let server = &self.server;
        if let Some(err) = server.serve_failure() {
            return Some(Err(err));
        }
        if let Some(err) = runtime.failure() {
            return Some(Err(io::Error::other(err.clone())));
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

impl Server {
    /// Resolves once every shard of `runtime` is taking connections, or
    /// at once with the reason it never will: the real error of a shard
    /// that failed to start or panicked, of a `serve` that failed, or of an
    /// entry that ended without serving. Never a timeout: wrap it in one
    /// if a shard might take long to get to `serve`.
    ///
    /// The future is `Send + 'static` and needs no particular executor
    /// (tokio, `futures_lite::future::block_on`, ...): it waits on wakers
    /// that the shards wake as they start serving or fail.
    ///
    /// # Errors
    ///
    /// - A shard failed ([`RuntimeError::ShardStart`](crate::RuntimeError::ShardStart),
    ///   [`ShardPanicked`](crate::RuntimeError::ShardPanicked), ...): kind
    ///   `Other`, with the [`RuntimeError`](crate::RuntimeError) inside
    ///   (`err.get_ref()`, `err.into_inner()`).
    /// - A shard's [`serve`](Server::serve) failed: its error.
    /// - A shard's entry returned without serving: kind `Other`.
    /// - The server was stopped first: `Interrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shardlet::{Config, Runtime, RuntimeError, Server, ServerConfig};
    ///
    /// let runtime = Runtime::new(Config::default().with_shards(2).with_pin(false))?;
    /// let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config()))?;
    /// let handle = runtime.start({
    ///     let server = server.clone();
    ///     move || {
    ///         let server = server.clone();
    ///         async move {
    ///             if shardlet::shard::id() == 1 {
    ///                 panic!("no config for shard 1");
    ///             }
    ///             server.serve(|_stream| async { Ok(()) }).await
    ///         }
    ///     }
    /// })?;
    /// let err = futures_lite::future::block_on(server.ready(&handle)).unwrap_err();
    /// let cause = err.get_ref().and_then(|e| e.downcast_ref::<RuntimeError>());
    /// assert!(matches!(cause, Some(RuntimeError::ShardPanicked { shard: 1, .. })), "{err}");
    /// assert!(handle.join().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready<T>(&self, runtime: &RuntimeHandle<T>) -> Ready {
        Ready::new(self.clone(), runtime.lifecycle.clone(), runtime.shards())
    }
}

impl Future for Ready {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.server.watchers().register(&mut this.server_key, cx.waker());
        let mut outcome = None;
        let mut key = this.runtime_key.take();
        let polled = this.lifecycle.poll_until(&mut key, cx, |view| {
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
