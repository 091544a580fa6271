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

use crate::global::GlobalLimit;
use crate::pool::{GreenPool, Holding};
use crate::task::{self, GreenThread, JoinError};

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
    bound: PileBound,
    pending: VecDeque<GreenThread<T>>,
}

/// What limits a [`GreenPile`]: a shard-local [`GreenPool`] or a
/// [`GlobalLimit`] shared by every shard. Made from `&GreenPool` or
/// `&GlobalLimit` by [`GreenPile::new`].
#[derive(Debug, Clone)]
pub enum PileBound {
    /// The pile's tasks take slots of this pool.
    Pool(GreenPool),
    /// The pile's tasks take permits of this cross-shard limit.
    Global(GlobalLimit),
}

impl From<&GreenPool> for PileBound {
    fn from(pool: &GreenPool) -> Self {
        PileBound::Pool(pool.clone())
    }
}

impl From<&GlobalLimit> for PileBound {
    fn from(limit: &GlobalLimit) -> Self {
        PileBound::Global(limit.clone())
    }
}

impl<T: 'static> GreenPile<T> {
    /// A pile that runs its tasks under `bound`: `&pool` shares a shard-local
    /// pool's limit with everything else that runs there; `&global_limit`
    /// shares a [`GlobalLimit`] with every shard (the dispatch pattern's
    /// global cap on outgoing work).
    pub fn new(bound: impl Into<PileBound>) -> Self {
        GreenPile {
            bound: bound.into(),
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

    /// Adds `fut` to the pile, waiting for a slot (or permit) first. With a
    /// pool bound, a spawn from a task of the full pool runs inline, as
    /// [`GreenPool::spawn`] does.
    pub async fn spawn<F>(&mut self, fut: F)
    where
        F: Future<Output = T> + 'static,
    {
        let thread = match &self.bound {
            PileBound::Pool(pool) => pool.spawn(fut).await,
            PileBound::Global(limit) => {
                let permit = limit.acquire().await;
                task::spawn(Holding::new(fut, permit))
            }
        };
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

    /// What limits the pile.
    pub fn bound(&self) -> &PileBound {
        &self.bound
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
            .field("bound", &self.bound)
            .field("pending", &self.pending.len())
            .finish()
    }
}
