//! [`RuntimeHandle`]: what the host keeps of a started runtime, to stop it,
//! watch it and join it, blocking ([`RuntimeHandle::join`]) or not
//! ([`RuntimeHandle::finished`], [`RuntimeHandle::try_join`]).
//!
//! Every shard thread tells the runtime's [`Lifecycle`] twice: when its
//! entry is over (*reported*: its value or its failure, which also goes
//! down the outcome channel to the handle) and when the thread is done
//! (*exited*: its executor and every task on it are gone). The handle is
//! finished once every thread it started has exited; then the outcomes are
//! all in the channel and joining the threads does not wait.
//!
//! The lifecycle is shared (`Arc`, no generic parameter), so that other
//! watchers — [`Server::ready`](crate::net::Server::ready) — learn about a
//! shard's failure the moment it is reported, not when the runtime is over.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::mesh::Mesh;
use crate::metrics::Metrics;
use crate::runtime::{RuntimeError, FAILURE_GRACE};
use crate::sync::stop::Stopper;
use crate::sync::wakers::{WakerKey, WakerSet};
use crate::task::blocking::BlockingPool;

/// How a runtime's shards are doing, shared by the shard threads (which
/// report), the handle and other watchers.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    state: Mutex<LifeState>,
    /// Signalled on every change, for blocking waiters.
    changed: Condvar,
}

#[derive(Debug)]
struct LifeState {
    /// Per shard: its entry is over (its outcome was reported).
    reported: Vec<bool>,
    /// The first failure reported.
    failure: Option<RuntimeError>,
    /// Shard threads that have ended.
    exited: usize,
    /// Shard threads that are ending ([`Lifecycle::last_to_leave`]).
    leaving: usize,
    /// Async waiters, woken on every change.
    wakers: WakerSet,
}

impl Lifecycle {
    pub(crate) fn new(shards: usize) -> Arc<Lifecycle> {
        Arc::new(Lifecycle {
            state: Mutex::new(LifeState {
                reported: vec![false; shards],
                failure: None,
                exited: 0,
                leaving: 0,
                wakers: WakerSet::new(),
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LifeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state under the lock, then wakes every waiter.
    fn update(&self, f: impl FnOnce(&mut LifeState)) {
        let wakers = {
            let mut state = self.lock();
            f(&mut state);
            state.wakers.take_all()
        };
        self.changed.notify_all();
        crate::sync::wakers::wake_all(wakers);
    }

    /// Shard `shard`'s entry is over, with `failure` if it failed.
    pub(crate) fn report(&self, shard: usize, failure: Option<&RuntimeError>) {
        self.update(|state| {
            if let Some(reported) = state.reported.get_mut(shard) {
                *reported = true;
            }
            if let (None, Some(err)) = (&state.failure, failure) {
                state.failure = Some(err.clone());
            }
        });
    }

    /// A shard thread is ending: true for the last of them. Counted apart
    /// from [`exit`](Self::exit), so that the last one's clean-up is done
    /// before anyone is told that every shard has ended.
    fn last_to_leave(&self) -> bool {
        let mut state = self.lock();
        state.leaving += 1;
        state.leaving == state.reported.len()
    }

    /// A shard thread has ended.
    pub(crate) fn exit(&self) {
        self.update(|state| state.exited += 1);
    }

    /// The first failure reported so far.
    pub(crate) fn failure(&self) -> Option<RuntimeError> {
        self.lock().failure.clone()
    }

    fn exited(&self) -> usize {
        self.lock().exited
    }

    /// Blocks until `threads` shard threads have ended.
    fn wait_exited(&self, threads: usize) {
        let mut state = self.lock();
        while state.exited < threads {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Registers `cx`'s waker under `key` (woken on the next change) unless
    /// `ready` already holds; the check and the registration happen under
    /// one lock, so no change between them is missed.
    pub(crate) fn poll_until(
        &self,
        key: &mut Option<WakerKey>,
        cx: &mut Context<'_>,
        ready: impl FnOnce(&LifecycleView<'_>) -> bool,
    ) -> Poll<()> {
        let mut state = self.lock();
        let view = LifecycleView { state: &state };
        if ready(&view) {
            if let Some(key) = key.take() {
                state.wakers.remove(key);
            }
            return Poll::Ready(());
        }
        state.wakers.register(key, cx.waker());
        Poll::Pending
    }

    /// Gives a waiter's key back (its future was dropped).
    pub(crate) fn forget(&self, key: &mut Option<WakerKey>) {
        if let Some(key) = key.take() {
            self.lock().wakers.remove(key);
        }
    }
}

/// A look at the lifecycle under its lock, for [`Lifecycle::poll_until`].
pub(crate) struct LifecycleView<'a> {
    state: &'a LifeState,
}

impl LifecycleView<'_> {
    pub(crate) fn failure(&self) -> Option<&RuntimeError> {
        self.state.failure.as_ref()
    }

    pub(crate) fn is_reported(&self, shard: usize) -> bool {
        self.state.reported.get(shard).copied().unwrap_or(false)
    }

    pub(crate) fn all_reported(&self) -> bool {
        self.state.reported.iter().all(|r| *r)
    }

    fn exited(&self) -> usize {
        self.state.exited
    }
}

/// Marks a shard thread as ended when dropped: the last thing its thread does.
/// The last shard to end closes the runtime's blocking pool (only its shards
/// use it), whether or not the handle is joined: closures still queued are
/// dropped unrun, and the pool's threads end.
pub(crate) struct Exit {
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) blocking: Arc<BlockingPool>,
}

impl Drop for Exit {
    fn drop(&mut self) {
        if self.lifecycle.last_to_leave() {
            self.blocking.close();
        }
        self.lifecycle.exit();
    }
}

/// A started runtime: stop it, watch it, and join its shards.
///
/// Joining comes in three forms: [`join`](RuntimeHandle::join) blocks the
/// calling thread (for a plain `main`); [`finished`](RuntimeHandle::finished)
/// is a `Send` future that any executor can await (tokio, async-std,
/// `futures::executor::block_on`); [`try_join`](RuntimeHandle::try_join)
/// and [`is_finished`](RuntimeHandle::is_finished) never wait. All give the
/// same result, once: the first shard failure, or every shard's value in
/// shard order.
///
/// Dropping the handle without joining asks the shards to stop (with
/// [`FAILURE_GRACE`]) and lets their threads end by themselves.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shardlet::{shard, Config, Runtime};
///
/// let runtime = Runtime::new(Config::default().with_shards(2).with_pin(false))?;
/// let mut handle = runtime.start(|| async {
///     shard::stopped().await;
///     shard::id()
/// })?;
/// assert!(!handle.is_finished());
/// handle.stop(Duration::from_secs(1));
/// // Any executor: here the simplest one.
/// let ids = futures_lite::future::block_on(handle.finished())?;
/// assert_eq!(ids, [0, 1]);
/// # Ok::<(), shardlet::RuntimeError>(())
/// ```
#[derive(Debug)]
pub struct RuntimeHandle<T> {
    pub(crate) blocking: Arc<BlockingPool>,
    pub(crate) threads: Vec<JoinHandle<()>>,
    pub(crate) outcomes: flume::Receiver<(usize, Result<T, RuntimeError>)>,
    pub(crate) stopper: Stopper,
    pub(crate) mesh: Mesh,
    pub(crate) shards: usize,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) metrics: Metrics,
    /// The results were taken (joined).
    pub(crate) joined: bool,
}

impl<T> RuntimeHandle<T> {
    /// The cross-shard mesh, to hand work to the shards from a host thread.
    pub fn mesh(&self) -> Mesh {
        self.mesh.clone()
    }

    /// A cloneable, `Send` stop handle, for another thread of the host.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Asks every shard to stop; see [`Stopper::stop`].
    pub fn stop(&self, grace: Duration) {
        self.stopper.stop(grace);
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// A per-shard snapshot of the runtime's counters (tasks, busy time,
    /// queues, readiness driver, stalls): see [`Metrics::stats`]. Readable
    /// at any time, from any thread, also after the shards have ended.
    pub fn stats(&self) -> crate::metrics::RuntimeStats {
        self.metrics.stats()
    }

    /// A cloneable, `Send + Sync` handle on the runtime's counters, for an
    /// admin endpoint or a Prometheus exporter
    /// ([`metrics::Exporter`](crate::metrics::Exporter)) that outlives
    /// this borrow.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The first shard failure reported so far (a start error, a panic, a
    /// cancelled entry), at once: the runtime may still be running.
    pub fn failure(&self) -> Option<RuntimeError> {
        self.lifecycle.failure()
    }

    /// Whether every shard thread has ended, so that joining would not wait.
    pub fn is_finished(&self) -> bool {
        self.joined || self.lifecycle.exited() >= self.threads.len()
    }

    /// The result if every shard has ended ([`is_finished`](Self::is_finished)),
    /// without waiting: `None` while shards still run.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join); [`RuntimeError::Joined`] if the result was
    /// already taken.
    pub fn try_join(&mut self) -> Option<Result<Vec<T>, RuntimeError>> {
        self.is_finished().then(|| self.collect())
    }

    /// Waits, as a future, until every shard has ended, and gives their
    /// results in shard order (what [`join`](Self::join) returns).
    ///
    /// The future is `Send` and needs no particular executor: it waits on
    /// a waker that the last shard thread to end wakes, so a tokio (or any
    /// other) task can await it without `spawn_blocking`. A shard that
    /// fails stops the others ([`FAILURE_GRACE`]), so a failure comes back
    /// within that grace. Dropping the future before it is ready takes
    /// nothing: await it again, or join.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    pub fn finished(&mut self) -> Finished<'_, T> {
        Finished {
            handle: self,
            key: None,
        }
    }

    /// Blocks the calling thread until every shard has ended, and returns
    /// their results in shard order.
    ///
    /// # Errors
    ///
    /// The first shard to fail (it failed to start, panicked, or was
    /// cancelled after a stop), after the others were stopped
    /// ([`FAILURE_GRACE`]) and joined. Later failures are logged through
    /// `tracing`. [`RuntimeError::Joined`] if the result was already taken
    /// ([`finished`](Self::finished), [`try_join`](Self::try_join)).
    pub fn join(mut self) -> Result<Vec<T>, RuntimeError> {
        if !self.joined {
            self.lifecycle.wait_exited(self.threads.len());
        }
        self.collect()
    }

    /// Joins the (ended) threads and gathers the outcomes.
    fn collect(&mut self) -> Result<Vec<T>, RuntimeError> {
        if std::mem::replace(&mut self.joined, true) {
            return Err(RuntimeError::Joined);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.blocking.close();
        let mut results: Vec<Option<T>> = (0..self.shards).map(|_| None).collect();
        let mut first_error = None;
        for (id, outcome) in self.outcomes.try_iter() {
            match outcome {
                Ok(value) => results[id] = Some(value),
                Err(err) if first_error.is_none() => first_error = Some(err),
                Err(err) => tracing::warn!(target: "shardlet::runtime", "{err}"),
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        results
            .into_iter()
            .enumerate()
            .map(|(shard, r)| {
                r.ok_or(RuntimeError::ShardPanicked {
                    shard,
                    message: "shard thread ended without reporting".into(),
                })
            })
            .collect()
    }
}

impl<T> Drop for RuntimeHandle<T> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stopper.stop(FAILURE_GRACE);
        }
    }
}

/// The future of [`RuntimeHandle::finished`]: every shard's result, once
/// every shard thread has ended. `Send` when the shards' value type is.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Finished<'a, T> {
    handle: &'a mut RuntimeHandle<T>,
    key: Option<WakerKey>,
}

impl<T> Future for Finished<'_, T> {
    type Output = Result<Vec<T>, RuntimeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.handle.joined {
            let threads = this.handle.threads.len();
            let ended = this
                .handle
                .lifecycle
                .poll_until(&mut this.key, cx, |view| view.exited() >= threads);
            if ended.is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(this.handle.collect())
    }
}

impl<T> Drop for Finished<'_, T> {
    fn drop(&mut self) {
        self.handle.lifecycle.forget(&mut self.key);
    }
}
