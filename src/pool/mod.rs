//! [`GreenPool`]: a shard-local bound on how many green threads run at once.
//!
//! Every way into the pool ([`spawn`](GreenPool::spawn),
//! [`spawn_n`](GreenPool::spawn_n), [`imap`](GreenPool::imap),
//! [`starmap`](GreenPool::starmap), and [`GreenPile`](crate::GreenPile)s
//! built on it) takes a slot from the same [`Slots`], so the bound holds for
//! all of them together (Eventlet's `imap` used a hidden second pool: #215).
//!
//! **Spawning from inside a full pool.** A task of this pool that spawns into
//! it while no slot is free would wait for a slot that only its own siblings
//! can free, and a recursive crawler whose every task does so deadlocks. As in
//! Eventlet, such a spawn runs the new work *inline*: the spawning task runs
//! it to completion within its own slot, then gets back an already finished
//! [`GreenThread`]. Concurrency stays bounded by `size`, and nothing deadlocks.
//!
//! Inline work nests on the spawning task's stack, so it is bounded too:
//! past [`MAX_DEPTH`](crate::task::green::MAX_DEPTH) nested tasks, such a spawn
//! runs as a task of its own *beyond* the pool's size (counted in
//! [`running`](GreenPool::running) until it ends) instead of overflowing
//! the stack.

pub(crate) mod imap;

use std::cell::Cell;
use std::fmt;
use std::future::Future;

use crate::pool::imap::{Imap, StarFn};
use crate::sync::slots::{Permit, Slots};
use crate::task::guard;
use crate::task::{self, GreenThread};

thread_local! {
    static NEXT_POOL_ID: Cell<u64> = const { Cell::new(1) };
}

/// A bounded set of green threads on the current shard (Eventlet's `GreenPool`).
///
/// `GreenPool` is a cheap handle: clones share the same slots. It is
/// shard-local (`!Send`); for a limit across shards see the cross-shard layer.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// send(shardlet::GreenPool::new(4));
/// ```
///
/// # Examples
///
/// ```
/// use shardlet::GreenPool;
/// use futures_lite::StreamExt;
///
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let pool = GreenPool::new(100);
/// let lengths: Vec<usize> = pool
///     .imap(["a", "bb", "ccc"], |s| async move { s.len() })
///     .map(Result::unwrap)
///     .collect()
///     .await;
/// assert_eq!(lengths, [1, 2, 3]);
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct GreenPool {
    id: u64,
    slots: Slots,
}

impl GreenPool {
    /// A pool running at most `size` green threads at once.
    ///
    /// # Panics
    ///
    /// If `size` is zero.
    pub fn new(size: usize) -> Self {
        assert!(size > 0, "GreenPool size must be at least 1");
        let id = NEXT_POOL_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        GreenPool {
            id,
            slots: Slots::new(size),
        }
    }

    /// The most green threads that may run at once.
    pub fn size(&self) -> usize {
        self.slots.size()
    }

    /// Green threads running now (holding a slot).
    pub fn running(&self) -> usize {
        self.slots.running()
    }

    /// Slots free now. Zero while running tasks exceed a shrunk size.
    pub fn free(&self) -> usize {
        self.size().saturating_sub(self.running())
    }

    /// Spawners queued for a slot.
    pub fn waiting(&self) -> usize {
        self.slots.waiting()
    }

    /// Changes the size. Running tasks are never interrupted: after a shrink,
    /// new work waits until enough of them finish; after a growth, queued
    /// spawners start at once.
    ///
    /// # Panics
    ///
    /// If `size` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
    /// let pool = shardlet::GreenPool::new(10);
    /// pool.resize(2);
    /// assert_eq!(pool.free(), 2);
    /// # }).unwrap();
    /// ```
    pub fn resize(&self, size: usize) {
        assert!(size > 0, "GreenPool size must be at least 1");
        self.slots.resize(size);
    }

    /// Runs `fut` as a green thread in this pool, waiting for a free slot
    /// first. See the module docs for a spawn from one of the pool's own tasks
    /// when the pool is full (it runs inline).
    ///
    /// # Panics
    ///
    /// When awaited outside a shard (a glommio executor).
    ///
    /// # Examples
    ///
    /// ```
    /// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
    /// let pool = shardlet::GreenPool::new(2);
    /// let t = pool.spawn(async { 1 + 1 }).await;
    /// assert_eq!(t.await, Ok(2));
    /// # }).unwrap();
    /// ```
    // Not an `async fn`: its body would begin by moving `fut` into a local
    // of its own, one more copy of the spawned future per spawn (the counts
    // are in BENCHMARKS.md, "Green threads").
    #[allow(clippy::manual_async_fn)]
    pub fn spawn<F>(&self, fut: F) -> impl Future<Output = GreenThread<F::Output>> + '_
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        // It yields a handle to await, on purpose.
        #[allow(clippy::async_yields_async)]
        async move {
            // The common case first, with no wait to set up (`slot` tries
            // the same first, but building and polling its future costs:
            // `self.slot().await` alone measured 738 instructions a spawn and
            // join against 707, scripts/green-instructions.sh; `spawn_n` too).
            let permit = match self.slots.try_acquire() {
                Some(permit) => Some(permit),
                None => self.slot().await,
            };
            match permit {
                Some(permit) => task::spawn_in(fut, Some(self.id), permit),
                None => GreenThread::ready(task::run_inline(fut, Some(self.id)).await),
            }
        }
    }

    /// Like [`spawn`](GreenPool::spawn) without a handle (Eventlet's
    /// `spawn_n`): a panic is caught, counted and logged.
    ///
    /// # Panics
    ///
    /// When awaited outside a shard (a glommio executor).
    // Not an `async fn`, for the reason given at `spawn`.
    #[allow(clippy::manual_async_fn)]
    pub fn spawn_n<F>(&self, fut: F) -> impl Future<Output = ()> + '_
    where
        F: Future<Output = ()> + 'static,
    {
        async move {
            let permit = match self.slots.try_acquire() {
                Some(permit) => Some(permit),
                None => self.slot().await,
            };
            match permit {
                Some(permit) => task::spawn_n_in(fut, Some(self.id), permit),
                None => task::log_panic(task::run_inline(fut, Some(self.id)).await),
            }
        }
    }

    /// Applies `f` to every item of `iter` concurrently, at most `size` at a
    /// time (counted against this pool), and yields the results **in input
    /// order** (Eventlet's `imap`).
    ///
    /// Items are pulled from `iter` only as slots free up, and at most `size`
    /// results wait to be consumed, so memory stays bounded by the pool size
    /// whatever the input length. A panic in one call yields `Err` at its
    /// position; the others go on.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::StreamExt;
    /// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
    /// let pool = shardlet::GreenPool::new(8);
    /// let squares: Vec<u64> = pool
    ///     .imap(1..=4u64, |n| async move { n * n })
    ///     .map(Result::unwrap)
    ///     .collect()
    ///     .await;
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// # }).unwrap();
    /// ```
    pub fn imap<I, F, Fut>(&self, iter: I, f: F) -> Imap<I::IntoIter, F, Fut>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future + 'static,
        Fut::Output: 'static,
    {
        Imap::new(self.clone(), iter.into_iter(), f)
    }

    /// Like [`imap`](GreenPool::imap), with each item a tuple spread over
    /// `f`'s arguments (Eventlet's `starmap`).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::StreamExt;
    /// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
    /// let pool = shardlet::GreenPool::new(8);
    /// let sums: Vec<i32> = pool
    ///     .starmap([(1, 2), (3, 4)], |a, b| async move { a + b })
    ///     .map(Result::unwrap)
    ///     .collect()
    ///     .await;
    /// assert_eq!(sums, [3, 7]);
    /// # }).unwrap();
    /// ```
    pub fn starmap<I, F, Fut>(&self, iter: I, mut f: F) -> Imap<I::IntoIter, impl FnMut(I::Item) -> Fut, Fut>
    where
        I: IntoIterator,
        F: StarFn<I::Item, Fut = Fut>,
        Fut: Future + 'static,
        Fut::Output: 'static,
    {
        self.imap(iter, move |args| f.call(args))
    }

    /// Waits until no green thread of this pool is running.
    ///
    /// # Panics
    ///
    /// When called from one of this pool's own tasks: it would wait for itself
    /// forever (Eventlet documents the same trap).
    pub async fn waitall(&self) {
        assert!(
            !self.is_current_member(),
            "GreenPool::waitall called from one of the pool's own tasks would never return"
        );
        self.slots.idle().await
    }

    /// A slot to run in, or `None` when the caller is one of this pool's tasks
    /// and the pool is full (run inline; see the module docs for the depth
    /// past which it gets a slot beyond the size instead).
    pub(crate) async fn slot(&self) -> Option<Permit> {
        if let Some(permit) = self.slots.try_acquire() {
            return Some(permit);
        }
        if self.is_current_member() {
            return self.inline_or_beyond();
        }
        Some(self.slots.acquire().await)
    }

    /// For one of this pool's own tasks, with the pool full: `None` (run
    /// inline), or, too deep in nested tasks, a slot beyond the size.
    pub(crate) fn inline_or_beyond(&self) -> Option<Permit> {
        task::too_deep().then(|| self.slots.acquire_beyond())
    }

    pub(crate) fn try_slot(&self) -> Option<Permit> {
        self.slots.try_acquire()
    }

    pub(crate) fn acquire(&self) -> crate::sync::slots::Acquire {
        self.slots.acquire()
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn is_current_member(&self) -> bool {
        guard::current_pool() == Some(self.id)
    }
}

/// A pool sized by the shard's configuration (`SHARDLET_POOL_SIZE`, default
/// 1000); outside a shardlet runtime, 1000.
impl Default for GreenPool {
    fn default() -> Self {
        GreenPool::new(
            crate::config::current::config().map_or(crate::config::DEFAULT_POOL_SIZE, |c| c.pool_size()),
        )
    }
}

impl fmt::Debug for GreenPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPool")
            .field("size", &self.size())
            .field("running", &self.running())
            .field("waiting", &self.waiting())
            .finish()
    }
}
