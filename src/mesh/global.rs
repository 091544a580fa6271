//! [`GlobalLimit`]: a concurrency limit counted across all shards (the seed's
//! "global (gasp) GreenPool" for the dispatcher's outgoing work).
//!
//! Invariants:
//! - `available` counts free permits; `waiters` counts queued acquirers.
//! - Fast path (no queue): an acquire is one compare-and-swap on `available`,
//!   a release one `fetch_add`, so an uncontended permit costs about what a
//!   shard-local slot does.
//! - Slow path: an acquirer announces itself (`waiters += 1`) *before* its
//!   last try, and a releaser looks at `waiters` *after* giving its permit
//!   back (both `SeqCst`), so one of them always sees the other: no permit is
//!   left free while someone waits.
//! - Waiters are served in arrival order, each woken on its own shard: from
//!   another shard of the runtime, the wake goes down that shard's lane to
//!   the waiter's shard (`mesh::wake`), not through glommio's slower
//!   cross-thread wake. A permit is handed over directly to the
//!   waiter at the head of the queue; a waiter that gives up passes its grant on.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering::SeqCst};
use crate::sync::{lock, Arc, Mutex, MutexGuard};

use crate::mesh::Home;

/// A limit on work in flight across every shard; `Clone + Send + Sync`.
///
/// Create it before the runtime starts and move a clone into the entry
/// closure; every shard then shares the same count. Bind a
/// [`GreenPile`](crate::GreenPile) to it with `GreenPile::new(&limit)`.
///
/// # Examples
///
/// ```
/// use shardlet::{Config, GlobalLimit, Runtime};
///
/// let limit = GlobalLimit::new(2);
/// let l = limit.clone();
/// Runtime::new(Config::default().with_shards(2).with_pin(false))?.run(move || {
///     let l = l.clone();
///     async move {
///         let permit = l.acquire().await; // at most 2 held across both shards
///         drop(permit);
///     }
/// })?;
/// assert_eq!(limit.available(), 2);
/// # Ok::<(), shardlet::RuntimeError>(())
/// ```
#[derive(Clone)]
pub struct GlobalLimit {
    inner: Arc<Inner>,
}

struct Inner {
    size: usize,
    available: AtomicUsize,
    waiters: AtomicUsize,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
}

struct Waiter {
    granted: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// The waiting task's shard: a grant from another shard wakes it
    /// through the mesh (see `mesh::wake`).
    home: Option<Home>,
}

impl Waiter {
    fn new(waker: &Waker) -> Self {
        Waiter {
            granted: AtomicBool::new(false),
            waker: Mutex::new(Some(waker.clone())),
            home: Home::here(),
        }
    }
}

impl GlobalLimit {
    /// A limit of `size` permits.
    ///
    /// # Panics
    ///
    /// If `size` is zero.
    pub fn new(size: usize) -> Self {
        assert!(size > 0, "GlobalLimit size must be at least 1");
        GlobalLimit {
            inner: Arc::new(Inner {
                size,
                available: AtomicUsize::new(size),
                waiters: AtomicUsize::new(0),
                queue: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// The number of permits.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.inner.available.load(SeqCst)
    }

    /// Permits held now, on all shards.
    pub fn in_use(&self) -> usize {
        self.size() - self.available()
    }

    /// Acquirers waiting now, on all shards.
    pub fn waiting(&self) -> usize {
        self.inner.waiters.load(SeqCst)
    }

    /// Takes a permit if one is free and nobody is waiting.
    pub fn try_acquire(&self) -> Option<GlobalPermit> {
        (self.inner.waiters.load(SeqCst) == 0 && self.inner.take()).then(|| self.permit())
    }

    /// Waits for a permit, in arrival order across all shards.
    pub fn acquire(&self) -> AcquireGlobal {
        AcquireGlobal {
            limit: self.clone(),
            waiter: None,
        }
    }

    fn permit(&self) -> GlobalPermit {
        GlobalPermit { limit: self.clone() }
    }

    fn release(&self) {
        self.inner.available.fetch_add(1, SeqCst);
        // Pairs with the fence in `AcquireGlobal::poll` (a `SeqCst` pair of
        // accesses would do; the fences make it explicit, and checkable by loom).
        fence(SeqCst);
        if self.inner.waiters.load(SeqCst) > 0 {
            let mut queue = self.inner.queue();
            let granted = self.inner.dispatch(&mut queue);
            drop(queue);
            granted.wake();
        }
    }
}

impl Inner {
    /// One compare-and-swap loop: takes a free permit if there is one.
    fn take(&self) -> bool {
        self.available
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        lock(&self.queue)
    }

    /// Hands free permits to queued waiters, head first. Their wakers are
    /// for the caller to wake once it has let go of the queue's lock: a
    /// waker is someone else's code, and one that touches this limit (drops
    /// or polls another acquire) would deadlock under it.
    fn dispatch(&self, queue: &mut VecDeque<Arc<Waiter>>) -> Granted {
        let mut granted = Granted(Vec::new());
        while !queue.is_empty() && self.take() {
            let waiter = queue.pop_front().expect("queue is not empty");
            self.waiters.fetch_sub(1, SeqCst);
            waiter.granted.store(true, SeqCst);
            let waker = lock(&waiter.waker).take();
            if let Some(waker) = waker {
                granted.0.push((waiter.home, waker));
            }
        }
        granted
    }
}

/// The wakers of waiters just granted a permit, with their shards.
#[must_use = "the granted waiters sleep until woken"]
struct Granted(Vec<(Option<Home>, Waker)>);

impl Granted {
    /// Wakes each on its own shard (see `mesh::wake`), panics caught there.
    fn wake(self) {
        for (home, waker) in self.0 {
            crate::mesh::wake(home, waker);
        }
    }
}

impl fmt::Debug for GlobalLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalLimit")
            .field("size", &self.size())
            .field("available", &self.available())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// A permit of a [`GlobalLimit`]; dropping it (on any shard) gives it back.
pub struct GlobalPermit {
    limit: GlobalLimit,
}

impl Drop for GlobalPermit {
    fn drop(&mut self) {
        self.limit.release();
    }
}

impl fmt::Debug for GlobalPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GlobalPermit")
    }
}

/// Future of [`GlobalLimit::acquire`].
#[must_use = "futures do nothing unless awaited"]
pub struct AcquireGlobal {
    limit: GlobalLimit,
    waiter: Option<Arc<Waiter>>,
}

impl Future for AcquireGlobal {
    type Output = GlobalPermit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<GlobalPermit> {
        let this = &mut *self;
        if let Some(waiter) = &this.waiter {
            if waiter.granted.load(SeqCst) {
                this.waiter = None;
                return Poll::Ready(this.limit.permit());
            }
            *lock(&waiter.waker) = Some(cx.waker().clone());
            // Granted between the check and storing the waker: don't sleep on it.
            if waiter.granted.load(SeqCst) {
                this.waiter = None;
                return Poll::Ready(this.limit.permit());
            }
            return Poll::Pending;
        }
        if let Some(permit) = this.limit.try_acquire() {
            return Poll::Ready(permit);
        }
        let inner = &this.limit.inner;
        let mut queue = inner.queue();
        inner.waiters.fetch_add(1, SeqCst);
        // Pairs with the fence in `GlobalLimit::release`.
        fence(SeqCst);
        if queue.is_empty() && inner.take() {
            inner.waiters.fetch_sub(1, SeqCst);
            return Poll::Ready(this.limit.permit());
        }
        let waiter = Arc::new(Waiter::new(cx.waker()));
        queue.push_back(waiter.clone());
        // A permit freed before we queued: serve the queue (maybe us) now.
        let granted = inner.dispatch(&mut queue);
        drop(queue);
        granted.wake();
        if waiter.granted.load(SeqCst) {
            return Poll::Ready(this.limit.permit());
        }
        this.waiter = Some(waiter);
        Poll::Pending
    }
}

impl Drop for AcquireGlobal {
    fn drop(&mut self) {
        let Some(waiter) = self.waiter.take() else { return };
        let inner = &self.limit.inner;
        let mut queue = inner.queue();
        if waiter.granted.load(SeqCst) {
            drop(queue);
            // Granted but never picked up: pass it on.
            self.limit.release();
        } else {
            let before = queue.len();
            queue.retain(|w| !Arc::ptr_eq(w, &waiter));
            if queue.len() < before {
                inner.waiters.fetch_sub(1, SeqCst);
            }
        }
    }
}

impl fmt::Debug for AcquireGlobal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireGlobal")
            .field("queued", &self.waiter.is_some())
            .finish()
    }
}
