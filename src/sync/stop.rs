//! [`Stopper`]: the stop request a host sends to every shard.
//!
//! Contract: `stop(grace)` is a broadcast, seen by every shard through
//! [`shard::stopped`](crate::shard::stopped) and
//! [`shard::stop_requested`](crate::shard::stop_requested). Code that serves
//! (accept loops, servers) watches it to stop taking new work and drain; the
//! runtime drops any shard entry future still running `grace` after the
//! first request. Several requests keep the earliest deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::atomic::{fence, AtomicBool, Ordering};
use crate::sync::local::{self, Installed};
use crate::sync::wakers::{WakerKey, WakerSet};
use crate::sync::{lock, Arc, Mutex};

/// Asks a running [`Runtime`](crate::Runtime) to stop; `Clone + Send + Sync`,
/// so any thread (a signal handler thread, an admin endpoint) can hold one.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shardlet::{shard, Config, Runtime};
///
/// let runtime = Runtime::new(Config::default().with_shards(1).with_pin(false)).unwrap();
/// let handle = runtime
///     .start(|| async {
///         shard::stopped().await; // a server would drain here
///         "drained"
///     })
///     .unwrap();
/// handle.stopper().stop(Duration::from_secs(5));
/// assert_eq!(handle.join().unwrap(), ["drained"]);
/// ```
#[derive(Clone, Debug)]
pub struct Stopper {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Set on the first stop, before the waiters are woken: what a waiting
    /// future looks at when it is polled again (no lock, no shared write).
    stopped: AtomicBool,
    /// The tasks waiting for the stop, one waker each.
    waiters: Mutex<WakerSet>,
    deadline: Mutex<Option<Instant>>,
}

/// [`Stopper::stopped`]'s future.
///
/// It registers its waker once and, polled again by the same task, only
/// reads the flag. The flag is set before the waiters are taken, and a
/// waiter looks at it after registering, with a fence on each side: either
/// the stop sees the waiter or the waiter sees the flag.
struct Stopped<'a> {
    inner: &'a Inner,
    key: Option<WakerKey>,
    /// The waker registered under `key`.
    registered: Option<Waker>,
}

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.inner.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if this.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        lock(&this.inner.waiters).register(&mut this.key, cx.waker());
        this.registered = Some(cx.waker().clone());
        // Pairs with the fence in `Stopper::stop`.
        fence(Ordering::SeqCst);
        if this.inner.stopped.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.inner.waiters).remove(key);
        }
    }
}

thread_local! {
    /// The stop handle of the runtime whose shard this thread is.
    static CURRENT: std::cell::RefCell<Option<Stopper>> = const { std::cell::RefCell::new(None) };
}

/// Makes `stopper` this shard's stop handle until the guard drops.
pub(crate) fn enter(stopper: Stopper) -> Installed<Stopper> {
    local::install(&CURRENT, stopper)
}

/// This shard's stop handle, or `None` off a shard.
pub(crate) fn current() -> Option<Stopper> {
    local::with(&CURRENT, Stopper::clone)
}

/// Whether this shard's runtime was asked to stop (`false` off a shard).
pub(crate) fn requested() -> bool {
    local::with(&CURRENT, Stopper::is_stopped).unwrap_or(false)
}

impl Stopper {
    pub(crate) fn new() -> Self {
        Stopper {
            inner: Arc::new(Inner {
                stopped: AtomicBool::new(false),
                waiters: Mutex::new(WakerSet::new()),
                deadline: Mutex::new(None),
            }),
        }
    }

    /// Requests a stop: shards see it at once, and entry futures still
    /// running `grace` later are dropped (after a few more scheduling
    /// rounds, not time: an entry that a stalled thread kept from its last
    /// step still takes it).
    pub fn stop(&self, grace: Duration) {
        let deadline = Instant::now().checked_add(grace);
        {
            let mut current = lock(&self.inner.deadline);
            *current = match (*current, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.inner.stopped.store(true, Ordering::Release);
        // Pairs with the fence in `Stopped::poll`.
        fence(Ordering::SeqCst);
        let waiters = lock(&self.inner.waiters).take_all();
        super::wakers::wake_all(waiters);
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Resolves once a stop is requested.
    ///
    /// Cheap to poll again and again (as a future raced against busy work
    /// with `or` is): a poll by the task that is already registered only
    /// reads a flag.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + '_ {
        Stopped {
            inner: &self.inner,
            key: None,
            registered: None,
        }
    }

    /// When the grace period of the stop request runs out: `None` before a
    /// stop, or for a grace too long to represent.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if !self.is_stopped() {
            return None;
        }
        *lock(&self.inner.deadline)
    }

    /// Resolves when the grace period of the stop request runs out (never,
    /// for a grace too long to represent, unless a later stop shortens it).
    pub(crate) async fn grace_over(&self) {
        self.stopped().await;
        // A later stop may bring the deadline forward: look again every 10 ms.
        const RECHECK: Duration = Duration::from_millis(10);
        loop {
            let deadline = *lock(&self.inner.deadline);
            let left = deadline.map_or(RECHECK, |at| at.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return;
            }
            crate::sleep(left.min(RECHECK)).await;
        }
    }
}
