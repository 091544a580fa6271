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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

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
    /// Set on the first stop, before `signal` is dropped: what a waiting
    /// future looks at when it is polled again (no lock, no shared write).
    stopped: AtomicBool,
    /// Dropped on the first stop: every receiver then sees a disconnect.
    signal: Mutex<Option<flume::Sender<()>>>,
    watch: flume::Receiver<()>,
    deadline: Mutex<Option<Instant>>,
}

/// [`Stopper::stopped`]'s future.
struct Stopped<'a> {
    flag: &'a AtomicBool,
    watch: flume::r#async::RecvFut<'a, ()>,
    /// The waker the channel holds for us, once registered.
    registered: Option<Waker>,
}

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if let Some(waker) = &self.registered {
            if waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        match Pin::new(&mut self.watch).poll(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => {
                self.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Stopper {
    pub(crate) fn new() -> Self {
        let (signal, watch) = flume::bounded(1);
        Stopper {
            inner: Arc::new(Inner {
                stopped: AtomicBool::new(false),
                signal: Mutex::new(Some(signal)),
                watch,
                deadline: Mutex::new(None),
            }),
        }
    }

    /// Requests a stop: shards see it at once, and entry futures still
    /// running `grace` later are dropped.
    pub fn stop(&self, grace: Duration) {
        let deadline = Instant::now().checked_add(grace);
        {
            let mut current = self.inner.deadline.lock().unwrap_or_else(|e| e.into_inner());
            *current = match (*current, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.signal.lock().unwrap_or_else(|e| e.into_inner()).take();
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
            flag: &self.inner.stopped,
            watch: self.inner.watch.recv_async(),
            registered: None,
        }
    }

    /// When the grace period of the stop request runs out: `None` before a
    /// stop, or for a grace too long to represent.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if !self.is_stopped() {
            return None;
        }
        *self.inner.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when the grace period of the stop request runs out (never,
    /// for a grace too long to represent, unless a later stop shortens it).
    pub(crate) async fn grace_over(&self) {
        self.stopped().await;
        // A later stop may bring the deadline forward: look again every 10 ms.
        const RECHECK: Duration = Duration::from_millis(10);
        loop {
            let deadline = *self.inner.deadline.lock().unwrap_or_else(|e| e.into_inner());
            let left = deadline.map_or(RECHECK, |at| at.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return;
            }
            crate::sleep(left.min(RECHECK)).await;
        }
    }
}
