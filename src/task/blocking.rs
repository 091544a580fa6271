//! [`blocking`]: run blocking code off the shard (Eventlet's `tpool.execute`).
//!
//! A small pool of plain threads takes closures from a bounded queue. The
//! shard awaits the result without stalling: other green threads keep
//! running. A full queue makes callers wait (back-pressure), and a panic in
//! the closure comes back as [`JoinError`] (a panic) instead of hanging the
//! caller (glommio's own `spawn_blocking` hangs on a panic).
//!
//! Each [`Runtime`](crate::Runtime) owns one pool of
//! `SHARDLET_BLOCKING_THREADS` threads, shared by its shards and closed when
//! the last of them ends (joined or not): closures still queued then are
//! dropped unrun, and the threads end once the closures they are running
//! return (a closure that never returns keeps its thread; `join` does not
//! wait for it). On an executor not started by a shardlet runtime, a
//! process-wide pool of that size is created on first use. With CPUs reserved for the host
//! (`SHARDLET_RESERVE_CPUS`), the pool's threads keep to those CPUs, off
//! the shards' own.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::sync::local::{self, Installed};
use crate::task::guard;
use crate::task::JoinError;

type Job = Box<dyn FnOnce() + Send>;

/// Jobs queued per thread before callers wait.
const QUEUE_PER_THREAD: usize = 64;

pub(crate) struct BlockingPool {
    /// The queue's sending end; taken out on close. Callers send through a
    /// clone, so the queue ends (and with it the threads) once the pool is
    /// closed and no caller is still sending into it.
    jobs: Mutex<Option<flume::Sender<Job>>>,
    /// A place in the queue: a caller holds one from before it sends until
    /// a thread takes its closure, so a send never finds the queue full.
    /// Callers wait here in arrival order, each freed place goes to the
    /// next of them, and one that gives up leaves at once (flume's waiting
    /// senders are scanned on each drop).
    room: Arc<tokio::sync::Semaphore>,
    /// Callers waiting for `room`.
    waiting: AtomicUsize,
    /// The threads' end of `jobs`, to empty it on close.
    queued: flume::Receiver<Job>,
    closed: Arc<AtomicBool>,
    threads: usize,
    /// Closures running now.
    busy: Arc<AtomicUsize>,
    /// Panics caught on the pool's threads.
    panics: Arc<AtomicU64>,
}

impl BlockingPool {
    /// Starts `threads` threads, kept to `cpus` unless it is empty.
    ///
    /// # Errors
    ///
    /// The OS refused a thread (the ones started already end, as the
    /// pool's queue closes).
    pub(crate) fn new(threads: usize, cpus: &[usize]) -> std::io::Result<Arc<BlockingPool>> {
        let fence: Arc<[usize]> = cpus.into();
        let capacity = threads.saturating_mul(QUEUE_PER_THREAD);
        let (jobs, queue) = flume::bounded::<Job>(capacity);
        let closed = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicUsize::new(0));
        let panics = Arc::new(AtomicU64::new(0));
        for i in 0..threads {
            let queue = queue.clone();
            let closed = closed.clone();
            let busy = busy.clone();
            let panics = panics.clone();
            let fence = fence.clone();
            std::thread::Builder::new()
                .name(format!("shardlet-blocking-{i}"))
                .spawn(move || {
                    if !fence.is_empty() {
                        crate::config::cpus::keep_to(&fence);
                    }
                    // Ends once the pool is closed and its queue empty.
                    while let Ok(job) = queue.recv() {
                        if closed.load(Ordering::Acquire) {
                            // Dropped unrun (its caller gets `Cancelled`);
                            // a closure whose drop panics must not end the
                            // thread early.
                            let _ = guard::guard_sync(move || drop(job));
                        } else {
                            busy.fetch_add(1, Ordering::Relaxed);
                            // The closure's own panic is caught inside the
                            // job; this catches one from dropping a result
                            // nobody waits for any more (a panicking `Drop`),
                            // which would end the thread with `busy` counting it.
                            if guard::guard_sync(job).is_err() {
                                panics.fetch_add(1, Ordering::Relaxed);
                            }
                            busy.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                })?;
        }
        Ok(Arc::new(BlockingPool {
            jobs: Mutex::new(Some(jobs)),
            room: Arc::new(tokio::sync::Semaphore::new(capacity)),
            waiting: AtomicUsize::new(0),
            queued: queue,
            closed,
            threads,
            busy,
            panics,
        }))
    }

    /// Threads, closures running and closures waiting.
    pub(crate) fn stats(&self) -> BlockingStats {
        BlockingStats {
            threads: self.threads,
            busy: self.busy.load(Ordering::Relaxed),
            queued: self.queued(),
            panics: self.panics.load(Ordering::Relaxed),
        }
    }

    /// Closures queued and not started yet, with those whose callers wait
    /// for room in the queue.
    pub(crate) fn queued(&self) -> usize {
        self.queued.len() + self.waiting.load(Ordering::Relaxed)
    }

    /// The queue's sending end while the pool is open.
    fn sender(&self) -> Option<flume::Sender<Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Closes the pool: closures not started yet are dropped unrun (their
    /// callers get `Cancelled`), and its threads end once the closures they
    /// run return and no caller is still sending (even while a metrics
    /// handle keeps the pool). Closing again does nothing.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        drop(self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take());
        for job in self.queued.drain() {
            let _ = guard::guard_sync(move || drop(job));
        }
    }

    fn global() -> Arc<BlockingPool> {
        static GLOBAL: OnceLock<Arc<BlockingPool>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let threads = threads_outside_a_runtime();
                BlockingPool::new(threads, &[]).unwrap_or_else(|err| {
                    // Unreachable in practice (a process that cannot start
                    // one thread has bigger problems); retried once with one.
                    tracing::error!(target: "shardlet::blocking", threads, %err, "cannot start the blocking pool's threads; using one");
                    BlockingPool::new(1, &[]).expect("cannot start a shardlet blocking thread")
                })
            })
            .clone()
    }
}

/// How many threads the pool used outside any runtime gets: the value of
/// `SHARDLET_BLOCKING_THREADS` alone (a bad value elsewhere is no reason to
/// ignore it), within its bound. A value that is not valid, or above the
/// bound, is named in a warning (there is no `Runtime::new` to return it
/// from) and the default or the bound is used.
fn threads_outside_a_runtime() -> usize {
    use crate::config::{DEFAULT_BLOCKING_THREADS, ENV_BLOCKING_THREADS, MAX_BLOCKING_THREADS};
    let config =
        crate::Config::from_lookup(|var| (var == ENV_BLOCKING_THREADS).then(|| std::env::var(var).ok())?);
    match config.map(|c| c.blocking_threads()) {
        Ok(threads) if threads <= MAX_BLOCKING_THREADS => threads,
        Ok(threads) => {
            tracing::warn!(target: "shardlet::blocking", "{ENV_BLOCKING_THREADS}={threads} is above its bound; using {MAX_BLOCKING_THREADS} threads for blocking() outside a runtime");
            MAX_BLOCKING_THREADS
        }
        Err(err) => {
            tracing::warn!(target: "shardlet::blocking", "{err}; using {DEFAULT_BLOCKING_THREADS} threads for blocking() outside a runtime");
            DEFAULT_BLOCKING_THREADS
        }
    }
}

/// The threads behind [`blocking()`], shared by every shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingStats {
    /// Threads in the pool.
    pub threads: usize,
    /// Closures running now.
    pub busy: usize,
    /// Closures waiting for a thread: in the pool's queue, or with their
    /// callers waiting for room in it.
    pub queued: usize,
    /// Panics caught on the pool's threads since it started: closures that
    /// panicked (their callers got a [`JoinError`]), and results whose drop
    /// panicked after their caller had gone.
    pub panics: u64,
}

thread_local! {
    /// The blocking pool of the runtime whose shard this thread is.
    static CURRENT: std::cell::RefCell<Option<Arc<BlockingPool>>> = const { std::cell::RefCell::new(None) };
}

/// Makes `pool` this shard's blocking pool until the guard drops.
pub(crate) fn enter(pool: Arc<BlockingPool>) -> Installed<Arc<BlockingPool>> {
    local::install(&CURRENT, pool)
}

/// Runs `f` on a thread of the blocking pool and waits for its result
/// without blocking the shard.
///
/// Use it for std file or socket I/O, a synchronous library, or heavy
/// parsing. If the awaiting future is dropped once `f` is queued, `f` still
/// runs to completion and its result is discarded; dropped before that
/// (never polled, or while it waits for room in a full queue), `f` never
/// runs.
///
/// # Errors
///
/// [`JoinError`] (a panic) when `f` panics (the pool thread survives).
///
/// # Examples
///
/// ```
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// let len = shardlet::blocking(|| std::fs::read("Cargo.toml").map(|b| b.len())).await;
/// assert!(len.unwrap().unwrap() > 0);
/// # }).unwrap();
/// ```
pub async fn blocking<F, R>(f: F) -> Result<R, JoinError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let pool = local::with(&CURRENT, Arc::clone).unwrap_or_else(BlockingPool::global);
    blocking_on(&pool, f).await
}

/// [`blocking`] on `pool`.
async fn blocking_on<F, R>(pool: &BlockingPool, f: F) -> Result<R, JoinError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // A place in the queue first, in arrival order.
    let room = {
        let _waiting = Waiting::new(&pool.waiting);
        // Never closed: an error would be a bug, and is a cancel here.
        match pool.room.clone().acquire_owned().await {
            Ok(room) => room,
            Err(_) => return Err(JoinError::CANCELLED),
        }
    };
    let (tx, rx) = flume::bounded(1);
    let panics = pool.panics.clone();
    let job: Job = Box::new(move || {
        // Taken by a thread: its place in the queue goes to the next caller.
        drop(room);
        let result = guard::guard_sync(f);
        if result.is_err() {
            panics.fetch_add(1, Ordering::Relaxed);
        }
        // The caller may have gone away; then the result is dropped.
        let _ = tx.send(result);
    });
    // A closure sent while the pool closes is dropped by a thread, which
    // ends only once this sender is gone.
    let Some(jobs) = pool.sender() else {
        return Err(JoinError::CANCELLED);
    };
    // Never full: this caller holds one of the queue's places.
    if jobs.try_send(job).is_err() {
        return Err(JoinError::CANCELLED);
    }
    drop(jobs);
    rx.recv_async().await.unwrap_or(Err(JoinError::CANCELLED))
}

/// Counts a caller waiting for room while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("queued", &self.queued())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `blocking_on(pool, f)` on a thread of its own.
    fn call<R: Send + 'static>(
        pool: &Arc<BlockingPool>,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<Result<R, JoinError>> {
        let pool = pool.clone();
        std::thread::spawn(move || futures_lite::future::block_on(blocking_on(&pool, f)))
    }

    fn wait_until(what: &str, check: impl Fn() -> bool) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !check() {
            assert!(std::time::Instant::now() < until, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// A queue of one thread, running a closure until `release`, with
    /// every place taken.
    fn full_pool() -> (Arc<BlockingPool>, std::sync::mpsc::Sender<()>) {
        let pool = BlockingPool::new(1, &[]).unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        call(&pool, move || {
            started_tx.send(()).unwrap();
            let _ = released.recv();
        });
        started.recv().unwrap();
        for _ in 0..QUEUE_PER_THREAD {
            call(&pool, || ());
        }
        wait_until("the queue fills", || pool.queued.len() == QUEUE_PER_THREAD);
        (pool, release)
    }

    /// A closure whose caller was still waiting for room in the full queue
    /// as the pool closes is dropped, not left queued for threads that have
    /// ended: its caller gets `Cancelled` (the future can be polled on any
    /// thread, so it may outlive the shards). Before, close woke each thread
    /// with one empty job: they ended, the closure sent after them stayed
    /// queued, and its caller waited for good.
    #[test]
    fn a_caller_waiting_for_room_as_the_pool_closes_is_cancelled() {
        let (pool, release) = full_pool();
        // The queue is full: this caller waits for room.
        let waiting = call(&pool, || 7);
        wait_until("the caller waits for room", || {
            pool.waiting.load(Ordering::Relaxed) == 1
        });
        assert_eq!(
            pool.stats().queued,
            QUEUE_PER_THREAD + 1,
            "the waiting caller is counted"
        );
        pool.close();
        release.send(()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(waiting.join().unwrap()));
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(got, Ok(Err(JoinError::CANCELLED)), "the caller waited for good");
    }

    /// Each place freed in the queue goes to a waiting caller of its own: a
    /// caller that was given one but is not polled (its shard busy, its
    /// future kept for later) holds up no one behind it. On async-lock's
    /// semaphore, which wakes one waiter at a time, the second caller here
    /// waited until the first was polled again.
    #[test]
    fn a_caller_given_a_place_but_not_polled_holds_up_no_one() {
        let (pool, release) = full_pool();
        let mut first = Box::pin(blocking_on(&pool, || 1));
        let polled = futures_lite::future::block_on(futures_lite::future::poll_once(first.as_mut()));
        assert!(polled.is_none(), "the first caller waits for room");
        let second = call(&pool, || 2);
        wait_until("the second caller waits", || {
            pool.waiting.load(Ordering::Relaxed) == 2
        });
        release.send(()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(second.join().unwrap()));
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(got, Ok(Ok(2)), "the second caller waited on the first");
        assert_eq!(futures_lite::future::block_on(first), Ok(1));
    }

    /// Callers that give up while waiting for room leave without a trace:
    /// the ones behind them still get their turn, and the count of waiting
    /// callers falls back.
    #[test]
    fn callers_that_give_up_waiting_for_room_leave_their_turn() {
        let (pool, release) = full_pool();
        let given_up: Vec<_> = (0..100)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let call = blocking_on(&pool, || ());
                    futures_lite::future::block_on(futures_lite::future::or(
                        async { Some(call.await) },
                        async {
                            futures_lite::future::yield_now().await;
                            None
                        },
                    ))
                })
            })
            .collect();
        for caller in given_up {
            assert_eq!(caller.join().unwrap(), None, "gave up while the queue was full");
        }
        let last = call(&pool, || 7);
        wait_until("the last caller waits", || {
            pool.waiting.load(Ordering::Relaxed) == 1
        });
        release.send(()).unwrap();
        assert_eq!(last.join().unwrap(), Ok(7));
        assert_eq!(pool.stats().queued, 0);
    }
}
