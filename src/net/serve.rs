//! The serving loop of one shard, behind [`serve`] and
//! [`Server::serve`](crate::net::Server::serve).
//!
//! Each turn takes a slot of the shard's [`GreenPool`] *first*, then one
//! connection from the [`Source`] (the shard's listener, or its handoff
//! mailbox), and runs the handler on it as a green thread holding that slot.
//! A full pool therefore stops the loop before `accept`, and new clients wait
//! in the kernel backlog. When a stop is requested the loop stops taking
//! connections; [`ShardServer::drain`] then lets live ones finish until the
//! deadline and drops the rest.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::catch::Guarded;
use crate::net::accept::AcceptError;
use crate::net::acceptor::log_backoff;
use crate::net::backoff::Backoff;
use crate::net::handoff::Handoff;
use crate::net::ready::Reactor;
use crate::net::stats::Counters;
use crate::net::{TcpListener, TcpStream};
use crate::pool::{with_permit, GreenPool};
use crate::stop::Stopper;
use crate::sync::slots::Permit;
use crate::task::{self, GreenThread};
use crate::{shard, sleep};

/// How long live connections get to finish after a stop, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Eventlet's `serve`: accepts connections on `listener` and runs
/// `handler(stream)` for each as a green thread of a pool of the shard's
/// default size (`SHARDLET_POOL_SIZE`), on the current shard.
///
/// - When the pool is full it stops accepting, and new clients wait in the
///   kernel backlog until a connection ends.
/// - `EMFILE`, `ENFILE`, `ENOBUFS` and `ENOMEM` from `accept` are retried
///   after a growing delay (5 ms up to 500 ms) instead of ending the server.
/// - A handler that returns an error, or panics, ends only its own
///   connection: the error is logged at `debug` level, the panic at `error`
///   (`tracing` target `shardlet::net`).
/// - When the runtime is asked to stop ([`shard::stopped`]), it stops
///   accepting and waits for live connections, until the stop's grace period
///   or [`DEFAULT_DRAIN_TIMEOUT`] runs out; then it drops them and returns.
///
/// For a server on every shard, with counters and its own stop handle, use
/// [`Server`](crate::net::Server).
///
/// # Errors
///
/// An `accept` error that leaves the listener unusable (`EBADF`, `EINVAL`,
/// ...), after draining.
///
/// # Panics
///
/// Outside a shard (a glommio executor).
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
/// use shardlet::{net, Config, Runtime};
///
/// let (tell, addr) = flume::bounded(1);
/// let runtime = Runtime::new(Config::default().with_shards(1).with_pin(false))?;
/// let handle = runtime.start(move || {
///     let tell = tell.clone();
///     async move {
///         let listener = net::listen(([127, 0, 0, 1], 0))?;
///         tell.send(listener.local_addr()?).unwrap();
///         net::serve(listener, |mut stream| async move {
///             let mut buf = [0u8; 4096];
///             loop {
///                 let n = stream.read(&mut buf).await?;
///                 if n == 0 {
///                     return Ok(());
///                 }
///                 stream.write_all(&buf[..n]).await?;
///             }
///         })
///         .await
///     }
/// })?;
///
/// let mut client = std::net::TcpStream::connect(addr.recv()?)?;
/// client.write_all(b"ping")?;
/// let mut echo = [0; 4];
/// client.read_exact(&mut echo)?;
/// assert_eq!(&echo, b"ping");
///
/// handle.stop(Duration::from_secs(1)); // serve drains, then returns
/// for served in handle.join()? {
///     served?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn serve<H, Fut>(listener: TcpListener, handler: H) -> io::Result<()>
where
    H: Fn(TcpStream) -> Fut + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    let counters = Arc::new(Counters::default());
    let pool = GreenPool::default();
    counters.capacity.store(pool.size() as u64, Ordering::Relaxed);
    let server = ShardServer::new(
        shard::try_id().unwrap_or(0),
        handler,
        pool,
        counters,
        None,
        DEFAULT_DRAIN_TIMEOUT,
    );
    let stops = Stops::current(None);
    let result = server.accept_loop(Source::Listener(listener), &stops).await;
    server.drain(&stops).await;
    result
}

/// The stop requests a serving loop obeys: the runtime's (when on a
/// shardlet shard) and its server's (when it has one).
#[derive(Debug, Clone)]
pub(crate) struct Stops {
    runtime: Option<Stopper>,
    server: Option<Stopper>,
}

impl Stops {
    /// The current shard's runtime stop, plus `server`.
    pub(crate) fn current(server: Option<Stopper>) -> Self {
        Stops {
            runtime: shard::try_stopper(),
            server,
        }
    }

    pub(crate) fn is_requested(&self) -> bool {
        [&self.runtime, &self.server]
            .into_iter()
            .flatten()
            .any(Stopper::is_stopped)
    }

    /// Resolves once either stop is requested.
    pub(crate) async fn requested(&self) {
        future::or(stopped(&self.runtime), stopped(&self.server)).await
    }

    /// When draining must end: `limit`, or [`DRAIN_MARGIN`] before the
    /// earliest grace deadline of the stops requested so far, so that a
    /// serving loop returns before the runtime drops its shard's entry.
    pub(crate) fn drain_until(&self, limit: Instant) -> Instant {
        [&self.runtime, &self.server]
            .into_iter()
            .flatten()
            .filter_map(Stopper::deadline)
            .map(|at| at.checked_sub(DRAIN_MARGIN).unwrap_or(at))
            .fold(limit, Instant::min)
    }
}

/// How much earlier than a stop's grace deadline a drain gives up, leaving
/// time to close the remaining connections and return.
const DRAIN_MARGIN: Duration = Duration::from_millis(25);
/// How often a drain looks for a newer, earlier deadline.
const DRAIN_TICK: Duration = Duration::from_millis(50);

async fn stopped(stopper: &Option<Stopper>) {
    match stopper {
        Some(s) => s.stopped().await,
        None => future::pending().await,
    }
}

/// Where a shard's connections come from.
pub(crate) enum Source {
    /// The shard's own listener (reuseport, or a plain [`serve`]).
    Listener(TcpListener),
    /// The shard's handoff mailbox; the acceptor already counted them.
    Mailbox(flume::Receiver<std::net::TcpStream>),
}

impl Source {
    /// The next connection, registered with this shard's readiness driver;
    /// `None` when the mailbox is closed. From the mailbox, an error means
    /// that a connection could not be registered here (and is closed).
    async fn next(&self) -> io::Result<Option<TcpStream>> {
        match self {
            Source::Listener(listener) => Ok(Some(listener.accept().await?)),
            Source::Mailbox(inbox) => match inbox.recv_async().await {
                Ok(stream) => TcpStream::from_std(stream).map(Some),
                Err(_) => Ok(None),
            },
        }
    }

    fn counted_by_sender(&self) -> bool {
        matches!(self, Source::Mailbox(_))
    }
}

enum Next<T> {
    Stop,
    Got(T),
}

/// Runs `fut` unless `stop` resolves first (it is polled first).
async fn unless<S, F>(stop: Pin<&mut S>, fut: F) -> Next<F::Output>
where
    S: Future<Output = ()>,
    F: Future,
{
    future::or(
        async {
            stop.await;
            Next::Stop
        },
        async { Next::Got(fut.await) },
    )
    .await
}

/// One shard's server: its pool, handler, counters and live connections.
///
/// Dropping it cancels the connections still running.
pub(crate) struct ShardServer<H> {
    shard: usize,
    pool: GreenPool,
    handler: Rc<H>,
    counters: Arc<Counters>,
    handoff: Option<Arc<Handoff>>,
    live: Rc<Live>,
    drain_timeout: Duration,
}

/// The running connection tasks, so that a drain past its deadline (or a
/// dropped server) can cancel them.
#[derive(Default)]
struct Live {
    tasks: RefCell<HashMap<u64, GreenThread<()>>>,
    next_id: Cell<u64>,
}

impl Live {
    fn cancel_all(&self) -> usize {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        tasks.values().for_each(GreenThread::cancel);
        tasks.len()
    }
}

impl<H, Fut> ShardServer<H>
where
    H: Fn(TcpStream) -> Fut + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    pub(crate) fn new(
        shard: usize,
        handler: H,
        pool: GreenPool,
        counters: Arc<Counters>,
        handoff: Option<Arc<Handoff>>,
        drain_timeout: Duration,
    ) -> Self {
        ShardServer {
            shard,
            pool,
            handler: Rc::new(handler),
            counters,
            handoff,
            live: Rc::new(Live::default()),
            drain_timeout,
        }
    }

    /// Takes connections from `source` until a stop is requested (`Ok`) or
    /// the source fails for good (`Err`). The shard counts as listening
    /// meanwhile; the source is closed on return.
    pub(crate) async fn accept_loop(&self, source: Source, stops: &Stops) -> io::Result<()> {
        // The shard's epoll instance, made now if not yet: registering a
        // handed-off connection must not be what needs a new descriptor
        // (it may come when there are none left).
        Reactor::current()?;
        let stop = stops.requested();
        futures_lite::pin!(stop);
        let mut backoff = Backoff::new();
        let counted = source.counted_by_sender();
        self.set_listening(true);
        let result = loop {
            let Next::Got(permit) = unless(stop.as_mut(), self.pool.acquire()).await else {
                break Ok(());
            };
            let Next::Got(next) = unless(stop.as_mut(), source.next()).await else {
                break Ok(());
            };
            match next {
                Ok(Some(stream)) => {
                    if let Some((failures, outage)) = backoff.recovered() {
                        tracing::info!(target: "shardlet::net", shard = self.shard, failures, ?outage, "accepting again");
                    }
                    self.start(stream, permit, counted);
                }
                Ok(None) => break Ok(()),
                Err(err) if counted => {
                    // A handed-off connection this shard could not register
                    // (out of memory or descriptors): it is closed.
                    self.uncount();
                    tracing::warn!(target: "shardlet::net", shard = self.shard, error = %err, "cannot register a handed-off connection; closed it");
                }
                Err(err) => match AcceptError::classify(&err) {
                    AcceptError::Transient => {
                        tracing::debug!(target: "shardlet::net", shard = self.shard, error = %err, "accept: transient error");
                    }
                    AcceptError::Fatal => {
                        tracing::error!(target: "shardlet::net", shard = self.shard, error = %err, "accept failed; no longer accepting");
                        break Err(err);
                    }
                    AcceptError::Resource | AcceptError::Unknown => {
                        self.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                        let delay = backoff.fail();
                        log_backoff(&err, delay, backoff.failures());
                        drop(permit);
                        if let Next::Stop = unless(stop.as_mut(), sleep(delay)).await {
                            break Ok(());
                        }
                    }
                },
            }
        };
        self.set_listening(false);
        drop(source);
        if let Some(handoff) = &self.handoff {
            handoff.close(self.shard);
        }
        result
    }

    /// Waits for live connections to finish, until `drain_timeout` or
    /// (shortly before) the grace period of a stop runs out; then cancels
    /// (closes) the rest.
    pub(crate) async fn drain(&self, stops: &Stops) {
        let running = self.pool.running();
        if running == 0 {
            return;
        }
        tracing::debug!(target: "shardlet::net", shard = self.shard, live = running, "draining");
        let finished = future::or(
            async {
                self.pool.waitall().await;
                true
            },
            async {
                let limit = Instant::now() + self.drain_timeout;
                loop {
                    let until = stops.drain_until(limit);
                    let now = Instant::now();
                    if now >= until {
                        return false;
                    }
                    sleep((until - now).min(DRAIN_TICK)).await;
                }
            },
        )
        .await;
        if !finished {
            let dropped = self.live.cancel_all();
            tracing::warn!(target: "shardlet::net", shard = self.shard, dropped, "drain deadline passed; closing live connections");
            self.pool.waitall().await;
        }
    }

    /// Takes a connection counted by the acceptor back out of `live`.
    fn uncount(&self) {
        self.counters.live.fetch_sub(1, Ordering::SeqCst);
        if let Some(handoff) = &self.handoff {
            handoff.freed();
        }
    }

    fn set_listening(&self, on: bool) {
        self.counters.listening.store(on, Ordering::Release);
        if let Some(handoff) = &self.handoff {
            handoff.freed();
        }
    }

    /// Runs the handler on `stream` as a green thread holding `permit`.
    fn start(&self, stream: TcpStream, permit: Permit, counted: bool) {
        if !counted {
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            self.counters.live.fetch_add(1, Ordering::SeqCst);
        }
        let id = self.live.next_id.get();
        self.live.next_id.set(id + 1);
        let end = End {
            shard: self.shard,
            id,
            counters: self.counters.clone(),
            handoff: self.handoff.clone(),
            live: Rc::downgrade(&self.live),
        };
        let handler = self.handler.clone();
        let connection = async move {
            let end = end;
            // The handler is called inside the guard, so a panic while it
            // builds its future is caught too.
            match Guarded::new(async move { handler(stream).await }, None).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    end.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "shardlet::net", shard = end.shard, error = %err, "connection handler failed");
                }
                Err(panic) => {
                    end.counters.panicked.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(target: "shardlet::net", shard = end.shard, "connection handler {panic}; connection closed");
                }
            }
        };
        let thread = task::spawn_in(with_permit(connection, permit), Some(self.pool.id()));
        self.live.tasks.borrow_mut().insert(id, thread);
    }
}

impl<H> Drop for ShardServer<H> {
    fn drop(&mut self) {
        self.live.cancel_all();
    }
}

/// Dropped when a connection task ends, however it ends (finished, panicked,
/// cancelled): uncounts the connection and forgets its task.
struct End {
    shard: usize,
    id: u64,
    counters: Arc<Counters>,
    handoff: Option<Arc<Handoff>>,
    live: Weak<Live>,
}

impl Drop for End {
    fn drop(&mut self) {
        self.counters.live.fetch_sub(1, Ordering::SeqCst);
        if let Some(handoff) = &self.handoff {
            handoff.freed();
        }
        if let Some(live) = self.live.upgrade() {
            if let Ok(mut tasks) = live.tasks.try_borrow_mut() {
                tasks.remove(&self.id);
            }
        }
    }
}
