//! [`GreenPile`]: a batch of green threads whose results come back in spawn
//! order (Eventlet's `GreenPile`).
//!
//! The pile runs its tasks in a [`Crew`] (one green thread of the pile's
//! own polls them all, each under the guard and holding its slot or
//! permit) and, as a [`Stream`], yields their results in spawn order. A result leaves the
//! pile only when it is yielded: a consumer that stops waiting (a timeout
//! around `next()`, a dropped `next()` future) loses nothing, and the next
//! `next()` picks up where it left off (Eventlet #91). When nothing is
//! pending the stream ends at once (Eventlet #53); spawning more afterwards
//! and polling again works.

pub(crate) mod fanout;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::Stream;

use crate::mesh::global::GlobalLimit;
use crate::pool::GreenPool;
use crate::sync::slots::Holding;
use crate::task::crew::{Crew, Item, OnDrop};
use crate::task::guard::Isolated;
use crate::task::{self, JoinError};

/// A pile's task, whatever its future's type.
type Task<T> = dyn Item<Output = T>;

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
pub struct GreenPile<T: 'static> {
    bound: PileBound,
    crew: Crew<Task<T>>,
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
            crew: Crew::new(OnDrop::Detach),
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
    // Not an `async fn`, whose body would begin by moving `fut` into a local
    // of its own: one more copy of the future per spawn (see `GreenPool::spawn`).
    #[allow(clippy::manual_async_fn)]
    pub fn spawn<F>(&mut self, fut: F) -> impl Future<Output = ()> + '_
    where
        F: Future<Output = T> + 'static,
    {
        async move {
            match &self.bound {
                PileBound::Pool(pool) => match pool.slot().await {
                    Some(permit) => {
                        let task = Isolated::new(Holding::new(fut, permit), Some(pool.id()));
                        self.crew.add(|_| Box::pin(task));
                    }
                    None => self.crew.add_done(task::run_inline(fut, Some(pool.id())).await),
                },
                PileBound::Global(limit) => {
                    let permit = limit.acquire().await;
                    self.crew
                        .add(|_| Box::pin(Isolated::new(Holding::new(fut, permit), None)));
                }
            }
        }
    }

    /// Results not yet yielded (running or finished).
    pub fn len(&self) -> usize {
        self.crew.len()
    }

    /// Whether no result is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What limits the pile.
    pub fn bound(&self) -> &PileBound {
        &self.bound
    }
}

impl<T: 'static> Stream for GreenPile<T> {
    type Item = Result<T, JoinError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.crew.poll_next_result(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

// The crew is never pinned.
impl<T: 'static> Unpin for GreenPile<T> {}

impl<T: 'static> fmt::Debug for GreenPile<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPile")
            .field("bound", &self.bound)
            .field("pending", &self.len())
            .finish()
    }
}
