//! [`GreenPile`]: a batch of green threads whose results come back in spawn
//! order (Eventlet's `GreenPile`).
//!
//! The pile keeps the handles of its pending tasks in spawn order and, as a
//! [`Stream`], yields the head's result once it is ready. A result leaves the
//! pile only when it is yielded: a consumer that stops waiting (a timeout
//! around `next()`, a dropped `next()` future) loses nothing, and the next
//! `next()` picks up where it left off (Eventlet #91). When nothing is
//! pending the stream ends at once (Eventlet #53); spawning more afterwards
//! and polling again works.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::Stream;

use crate::pool::GreenPool;
use crate::task::{GreenThread, JoinError};

/// Green threads whose results are yielded in spawn order.
///
/// Dropping the pile detaches its pending tasks: they run to completion and
/// their results are discarded.
///
/// # Examples
///
/// The dispatch pattern: a pile bound to a pool that caps outgoing work.
///
/// ```
/// use futures_lite::StreamExt;
/// use shardlet::{GreenPile, GreenPool};
///
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let pool = GreenPool::new(2);
/// let mut pile = GreenPile::new(&pool);
/// for name in ["a", "b", "c"] {
///     pile.spawn(async move { format!("title of {name}") }).await;
/// }
/// let titles: Vec<String> = pile.map(Result::unwrap).collect().await;
/// assert_eq!(titles.join("\n"), "title of a\ntitle of b\ntitle of c");
/// # }).unwrap();
/// ```
#[must_use = "a pile does nothing with its results unless polled"]
pub struct GreenPile<T> {
    pool: GreenPool,
    pending: VecDeque<GreenThread<T>>,
}

impl<T: 'static> GreenPile<T> {
    /// A pile that runs its tasks in `pool`, sharing the pool's limit with
    /// everything else that runs there.
    pub fn new(pool: &GreenPool) -> Self {
        GreenPile {
            pool: pool.clone(),
            pending: VecDeque::new(),
        }
    }

    /// A pile with a pool of its own, running at most `size` tasks at once.
    ///
    /// # Panics
    ///
    /// If `size` is zero.
    pub fn with_size(size: usize) -> Self {
        GreenPile::new(&GreenPool::new(size))
    }

    /// Adds `fut` to the pile, waiting for a pool slot first (inline from a
    /// task of a full pool, as [`GreenPool::spawn`] does).
    pub async fn spawn<F>(&mut self, fut: F)
    where
        F: Future<Output = T> + 'static,
    {
        let thread = self.pool.spawn(fut).await;
        self.pending.push_back(thread);
    }

    /// Results not yet yielded (running or finished).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no result is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The pool the pile runs in.
    pub fn pool(&self) -> &GreenPool {
        &self.pool
    }
}

impl<T> Stream for GreenPile<T> {
    type Item = Result<T, JoinError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(head) = self.pending.front_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(head).poll(cx) {
            Poll::Ready(result) => {
                self.pending.pop_front();
                Poll::Ready(Some(result))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.pending.len(), Some(self.pending.len()))
    }
}

impl<T> fmt::Debug for GreenPile<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPile")
            .field("pool", &self.pool)
            .field("pending", &self.pending.len())
            .finish()
    }
}
