//! [`Server::ready`] and [`http::Server::ready`]: defined with the runtime,
//! whose handle they take, so that `net` and `http` need nothing from the
//! runtime. The future itself,
//! [`Ready`], is `net`'s (`net/server/readiness.rs`); the runtime's
//! lifecycle is its [`Shards`].

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::http;
use crate::net::server::readiness::{Shards, ShardsNow};
use crate::net::{Ready, Server};
use crate::runtime::handle::{Lifecycle, LifecycleView, RuntimeHandle};
use crate::sync::wakers::WakerKey;

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
        let lifecycle: Arc<dyn Shards> = runtime.lifecycle.clone();
        Ready::new(self.clone(), lifecycle, runtime.shards())
    }
}

impl http::Server {
    /// Ready once every shard serves; fails at once with a shard's real
    /// start error or panic: [`net::Server::ready`](Server::ready), a `Send` future any
    /// executor (a tokio host's too) can await.
    ///
    /// # Errors
    ///
    /// As [`net::Server::ready`](Server::ready).
    pub fn ready<T>(&self, runtime: &RuntimeHandle<T>) -> Ready {
        self.net().ready(runtime)
    }
}

impl Shards for Lifecycle {
    fn poll_until(
        &self,
        key: &mut Option<WakerKey>,
        cx: &mut Context<'_>,
        ready: &mut dyn FnMut(&dyn ShardsNow) -> bool,
    ) -> Poll<()> {
        Lifecycle::poll_until(self, key, cx, |view| ready(view))
    }

    fn forget(&self, key: &mut Option<WakerKey>) {
        Lifecycle::forget(self, key)
    }
}

impl ShardsNow for LifecycleView<'_> {
    fn failure(&self) -> Option<io::Error> {
        LifecycleView::failure(self).map(|err| io::Error::other(err.clone()))
    }

    fn is_reported(&self, shard: usize) -> bool {
        LifecycleView::is_reported(self, shard)
    }

    fn all_reported(&self) -> bool {
        LifecycleView::all_reported(self)
    }
}
