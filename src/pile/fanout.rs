//! [`FanoutPile`]: a pile whose tasks run on other shards, results still in
//! spawn order on the shard that owns the pile.
//!
//! Each `spawn` picks a shard ([`Spread`]), sends the closure through the
//! mesh, and keeps the call's reply in spawn order. With a
//! [`GlobalLimit`], the permit is taken on the owning shard *before* sending
//! (so a full limit stops the fan-out at the source) and given back on the
//! target shard when the task ends.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::Stream;

use crate::mesh::global::GlobalLimit;
use crate::mesh::{Mesh, MeshError, Reply};

/// How a [`FanoutPile`] picks the shard for each task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spread {
    /// Shards in turn, starting with the one after the owner.
    #[default]
    RoundRobin,
    /// The shard with the fewest messages waiting for it that the owning
    /// shard can see: its own not yet taken, plus those from outside
    /// threads ([`Mesh::queued`]; ties: lowest index).
    LeastQueued,
}

enum Pending<T: 'static> {
    Sent(Reply<T>),
    Failed(MeshError),
}

/// Tasks spread over every shard, results yielded in spawn order.
///
/// # Examples
///
/// ```
/// use futures_lite::StreamExt;
/// use shardlet::{shard, Config, FanoutPile, GlobalLimit, Runtime};
///
/// let limit = GlobalLimit::new(8);
/// let config = Config::default().with_shards(2).with_pin(false);
/// let out = Runtime::new(config)?.run(move || {
///     let limit = limit.clone();
///     async move {
///         if shard::id() != 0 {
///             return vec![];
///         }
///         let mut pile = FanoutPile::with_limit(&limit);
///         for i in 0..4 {
///             pile.spawn(move || async move { (i, shard::id()) }).await;
///         }
///         pile.map(Result::unwrap).collect().await
///     }
/// })?;
/// assert_eq!(out[0], [(0, 1), (1, 0), (2, 1), (3, 0)]);
/// # Ok::<(), shardlet::RuntimeError>(())
/// ```
#[must_use = "a pile does nothing with its results unless polled"]
pub struct FanoutPile<T: 'static> {
    mesh: Mesh,
    limit: Option<GlobalLimit>,
    spread: Spread,
    next: usize,
    pending: VecDeque<Pending<T>>,
}

impl<T: Send + 'static> FanoutPile<T> {
    /// A fan-out pile over the current runtime's shards, with no limit.
    ///
    /// # Panics
    ///
    /// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
    pub fn new() -> Self {
        let mesh = crate::mesh::here::here()
            .map(|h| h.mesh.clone())
            .expect("FanoutPile needs a shardlet Runtime");
        let next = crate::config::current::try_id().map_or(0, |id| id + 1);
        FanoutPile {
            mesh,
            limit: None,
            spread: Spread::default(),
            next,
            pending: VecDeque::new(),
        }
    }

    /// A fan-out pile whose tasks, on all shards together, hold at most
    /// `limit.size()` permits.
    ///
    /// # Panics
    ///
    /// Outside a shard of a shardlet [`Runtime`](crate::Runtime).
    pub fn with_limit(limit: &GlobalLimit) -> Self {
        FanoutPile {
            limit: Some(limit.clone()),
            ..FanoutPile::new()
        }
    }

    /// Chooses how shards are picked.
    pub fn spread(mut self, spread: Spread) -> Self {
        self.spread = spread;
        self
    }

    fn pick(&mut self) -> usize {
        let n = self.mesh.shards();
        match self.spread {
            Spread::RoundRobin => {
                let shard = self.next % n;
                self.next = (shard + 1) % n;
                shard
            }
            Spread::LeastQueued => (0..n).min_by_key(|&s| self.mesh.queued(s)).unwrap_or(0),
        }
    }

    /// Runs `f()` on another shard (waiting for a permit of the limit, and
    /// for room in the lane to that shard). A failure to deliver is not returned
    /// here: it is yielded as `Err` at this task's position.
    pub async fn spawn<F, Fut>(&mut self, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let permit = match &self.limit {
            Some(limit) => Some(limit.acquire().await),
            None => None,
        };
        let shard = self.pick();
        // The permit travels with the closure and is dropped on the target
        // shard with the task's future (finished, panicked or cancelled).
        let sent = self
            .mesh
            .call(shard, move || async move {
                let _permit = permit;
                f().await
            })
            .await;
        self.pending.push_back(match sent {
            Ok(reply) => Pending::Sent(reply),
            Err(err) => Pending::Failed(err),
        });
    }

    /// Results not yet yielded.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no result is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Same as [`FanoutPile::new`] (panics outside a shard).
impl<T: Send + 'static> Default for FanoutPile<T> {
    fn default() -> Self {
        FanoutPile::new()
    }
}

impl<T: 'static> Stream for FanoutPile<T> {
    type Item = Result<T, MeshError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let result = match self.pending.front_mut() {
            None => return Poll::Ready(None),
            Some(Pending::Failed(err)) => Err(err.clone()),
            Some(Pending::Sent(reply)) => match Pin::new(reply).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => result,
            },
        };
        self.pending.pop_front();
        Poll::Ready(Some(result))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.pending.len(), Some(self.pending.len()))
    }
}

impl<T: 'static> fmt::Debug for FanoutPile<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanoutPile")
            .field("shards", &self.mesh.shards())
            .field("limit", &self.limit)
            .field("spread", &self.spread)
            .field("pending", &self.pending.len())
            .finish()
    }
}
