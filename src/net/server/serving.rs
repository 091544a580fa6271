//! The serving loop of one shard, behind [`serve`], [`serve_with`] and
//! [`Server::serve_with`](crate::net::Server::serve_with) (which every other
//! way to serve wraps).
//!
//! Each turn takes one connection from the [`Source`] (the shard's listener,
//! or its handoff mailbox) and runs the handler on it as a green thread with
//! an entry in the shard's connection table ([`Conns`]). The table holds at
//! most the shard's connection cap; the loop looks at it *before* it takes a
//! connection:
//!
//! - below the cap, it takes the next connection and starts it;
//! - at the cap with an idle connection to evict (or one closing already),
//!   it takes the next client, asks the longest idle connection to close,
//!   and starts the client once that one has gone: the client waits, holding
//!   one descriptor, for as long as the evicted handler takes to close (at
//!   most [`EVICTION_GRACE`](crate::net::EVICTION_GRACE));
//! - at the cap with nothing to evict, it either stops taking connections
//!   ([`WhenFull::Wait`]: new clients wait in the kernel backlog, or in the
//!   mailbox) or takes each one and closes it at once ([`WhenFull::Close`]).
//!
//! Handlers are not counted against any [`GreenPool`](crate::GreenPool): a
//! raw connection's handler lives as long as its connection, and the cap
//! bounds both. When a stop is requested the loop stops taking connections;
//! [`ShardServer::drain`] asks idle connections to close, lets the others
//! finish until the deadline, and cancels the rest.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::config::current as place;
use crate::net::reactor::driver::Reactor;
use crate::net::server::accept_errors::AcceptError;
use crate::net::server::backoff::{log_backoff, Backoff};
use crate::net::server::descriptors;
use crate::net::server::mailboxes::Handoff;
use crate::net::server::stats::Counters;
use crate::net::server::stops::Stops;
use crate::net::server::table::quiet;
use crate::net::server::table::{Conns, Room};
use crate::net::{Connection, TcpListener, TcpStream, WhenFull};
use crate::sync::slots::Holding;
use crate::task;
use crate::task::guard::Isolated;
use crate::time::sleep;

/// How long live connections get to finish after a stop, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Eventlet's `serve`: accepts connections on `listener` and runs
/// `handler(stream)` for each as a green thread on the current shard.
///
/// - It holds at most the shard's connection cap (`SHARDLET_MAX_CONNECTIONS`,
///   or by default the share of the descriptor limit one of the runtime's
///   shards gets: see [`max_connections_for`](crate::net::max_connections_for)).
///   At the cap it stops accepting, and new clients wait in the kernel
///   backlog until a connection ends; reaching the cap is logged and
///   counted.
/// - `EMFILE`, `ENFILE`, `ENOBUFS` and `ENOMEM` from `accept` are retried
///   after a growing delay (5 ms up to 500 ms) instead of ending the server.
/// - A handler that returns an error, or panics, ends only its own
///   connection: the error is logged at `debug` level, the panic at `error`
///   (`tracing` target `shardlet::net`).
/// - When the runtime is asked to stop ([`shard::stopped`](crate::shard::stopped)), it stops
///   accepting and waits for live connections, until the stop's grace period
///   or [`DEFAULT_DRAIN_TIMEOUT`] runs out; then it drops them and returns.
///
/// For a server on every shard, with counters, a choice of what to do at the
/// cap and its own stop handle, use [`Server`](crate::net::Server); for
/// handlers that mark their connection idle, [`serve_with`].
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
    serve_with(listener, move |stream, _| handler(stream)).await
}

/// Like [`serve`], but the handler also gets the connection's
/// [`Connection`] handle, to mark it idle: at the cap, the connection idle
/// the longest is asked to close to admit a new client.
///
/// # Errors
///
/// As [`serve`].
///
/// # Panics
///
/// Outside a shard (a glommio executor).
pub async fn serve_with<H, Fut>(listener: TcpListener, handler: H) -> io::Result<()>
where
    H: Fn(TcpStream, Connection) -> Fut + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    let shards = place::count().unwrap_or(1);
    let configured = place::config().and_then(|c| c.max_connections());
    let (cap, origin) = descriptors::resolve_cap(configured, shards);
    let counters = Arc::new(Counters::default());
    let conns = Conns::new(
        place::try_id().unwrap_or(0),
        cap,
        origin,
        WhenFull::Wait,
        counters.clone(),
        None,
    );
    let server = ShardServer::new(handler, conns, counters, None, DEFAULT_DRAIN_TIMEOUT);
    let stops = Stops::current(None);
    let result = server.accept_loop(Source::Listener(listener), &stops).await;
    server.drain(&stops).await;
    result
}

/// How often a drain looks for a newer, earlier deadline.
const DRAIN_TICK: Duration = Duration::from_millis(50);

/// Where a shard's connections come from.
pub(crate) enum Source {
    /// The shard's own listener (reuseport, or a plain [`serve`]).
    Listener(TcpListener),
    /// The shard's handoff mailbox; the acceptor already counted them.
    Mailbox(crate::sync::mailbox::Mailbox<std::net::TcpStream>),
}

impl Source {
    /// The next connection, registered with this shard's readiness driver;
    /// `None` when the mailbox is closed. From the mailbox, an error means
    /// that a connection could not be registered here (and is closed).
    async fn next(&self) -> io::Result<Option<TcpStream>> {
        match self {
            Source::Listener(listener) => Ok(Some(listener.accept().await?)),
            Source::Mailbox(inbox) => match inbox.recv().await {
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

/// One shard's server: its handler, connection table and counters.
///
/// Dropping it cancels the connections still running.
pub(crate) struct ShardServer<H> {
    shard: usize,
    handler: Rc<H>,
    conns: Rc<Conns>,
    counters: Arc<Counters>,
    handoff: Option<Arc<Handoff>>,
    drain_timeout: Duration,
}

impl<H, Fut> ShardServer<H>
where
    H: Fn(TcpStream, Connection) -> Fut + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    pub(crate) fn new(
        handler: H,
        conns: Rc<Conns>,
        counters: Arc<Counters>,
        handoff: Option<Arc<Handoff>>,
        drain_timeout: Duration,
    ) -> Self {
        ShardServer {
            shard: conns.shard(),
            handler: Rc::new(handler),
            conns,
            counters,
            handoff,
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
        let close_when_full = self.conns.when_full() == WhenFull::Close;
        // A client taken while the shard is full, waiting for an evicted
        // connection to go (counted in `live`).
        let mut waiting: Option<TcpStream> = None;
        self.set_listening(true);
        // Cleared however the loop ends: also when its future is dropped
        // (its shard's entry panicked or was cancelled).
        let listening = Listening(self);
        // Turns quiet connections idle as their periods end, while the loop
        // runs (a stop then asks them to close).
        let ager = task::spawn_cancellable(quiet::age(self.conns.clone()));
        let _ager = Cancel(ager);
        let result = loop {
            if let Some(stream) = waiting.take() {
                match self.conns.room() {
                    Room::Free => {
                        self.start(stream);
                        continue;
                    }
                    Room::None if close_when_full => {
                        self.refuse(stream);
                        continue;
                    }
                    Room::Evict => {
                        self.conns.evict_oldest();
                    }
                    Room::Soon | Room::None => {}
                }
                waiting = Some(stream);
                if let Next::Stop = unless(stop.as_mut(), self.room_changed()).await {
                    break Ok(());
                }
                continue;
            }
            if self.conns.room() == Room::None && !close_when_full {
                // Full, and nothing to evict: clients wait in the backlog
                // (or the mailbox) until a connection ends or goes idle.
                if let Next::Stop = unless(stop.as_mut(), self.conns.changed()).await {
                    break Ok(());
                }
                continue;
            }
            let Next::Got(next) = unless(stop.as_mut(), source.next()).await else {
                break Ok(());
            };
            match next {
                Ok(Some(stream)) => {
                    if let Some((failures, outage)) = backoff.recovered() {
                        tracing::info!(target: "shardlet::net", shard = self.shard, failures, ?outage, "accepting again");
                    }
                    if !counted {
                        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                        self.counters.live.fetch_add(1, Ordering::SeqCst);
                    }
                    waiting = Some(stream);
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
                        if let Next::Stop = unless(stop.as_mut(), sleep(delay)).await {
                            break Ok(());
                        }
                    }
                },
            }
        };
        if let Some(stream) = waiting.take() {
            drop(stream);
            self.uncount();
        }
        drop(listening);
        drop(source);
        if let Some(handoff) = &self.handoff {
            handoff.close(self.shard);
        }
        result
    }

    /// Waits until a waiting client may have room: a connection ended, went
    /// idle or stopped closing, or the grace of an evicted one ran out (it
    /// is then cancelled).
    async fn room_changed(&self) {
        let Some(at) = self.conns.next_grace() else {
            return self.conns.changed().await;
        };
        let expired = future::or(
            async {
                self.conns.changed().await;
                false
            },
            async {
                sleep(at.saturating_duration_since(Instant::now())).await;
                true
            },
        )
        .await;
        if expired {
            self.conns.expire_grace(Instant::now());
        }
    }

    /// Waits for live connections to finish, until `drain_timeout` or
    /// (shortly before) the grace period of a stop runs out; then cancels
    /// (closes) the rest. Idle connections are asked to close at once.
    pub(crate) async fn drain(&self, stops: &Stops) {
        self.conns.close_idle();
        let running = self.conns.held();
        if running == 0 {
            return;
        }
        tracing::debug!(target: "shardlet::net", shard = self.shard, live = running, "draining");
        let finished = future::or(
            async {
                self.all_ended().await;
                true
            },
            async {
                let limit = crate::time::after(self.drain_timeout);
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
            let dropped = self.conns.cancel_all();
            tracing::warn!(target: "shardlet::net", shard = self.shard, dropped, "drain deadline passed; closing live connections");
            self.all_ended().await;
        }
    }

    async fn all_ended(&self) {
        while self.conns.held() > 0 {
            self.conns.changed().await;
        }
    }

    /// Takes a connection counted in `live` (by the acceptor, or by this
    /// loop for one it accepted) back out, unserved.
    fn uncount(&self) {
        self.counters.live.fetch_sub(1, Ordering::SeqCst);
        if let Some(handoff) = &self.handoff {
            handoff.freed();
        }
    }

    /// Closes a client at once: the shard is full ([`WhenFull::Close`]).
    fn refuse(&self, stream: TcpStream) {
        // Counted first: whoever sees the stream close sees it counted.
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        self.uncount();
        drop(stream);
        tracing::trace!(target: "shardlet::net", shard = self.shard, "at the connection cap: refused a client");
    }

    fn set_listening(&self, on: bool) {
        self.counters.set_listening(on);
        if let Some(handoff) = &self.handoff {
            handoff.freed();
        }
    }

    /// Runs the handler on `stream` as a green thread with its own entry in
    /// the connection table (the caller checked for room).
    fn start(&self, stream: TcpStream) {
        let conn = self.conns.insert();
        let end = conn.end_guard();
        let handler = self.handler.clone();
        let counters = self.counters.clone();
        let shard = self.shard;
        let handle = conn.clone();
        let connection = async move {
            // The handler is called inside the guard, so a panic while it
            // builds its future is caught too.
            match Isolated::new(async move { handler(stream, handle).await }, None).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "shardlet::net", shard, error = %err, "connection handler failed");
                }
                Err(panic) => {
                    counters.panicked.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(target: "shardlet::net", shard, "connection handler {panic}; connection closed");
                }
            }
        };
        // The guard drops after the handler's future (and its stream).
        let task = task::spawn_cancellable(Holding::new(connection, end));
        self.conns.set_task(&conn, task);
    }
}

/// Clears the shard's `listening` flag when dropped.
struct Listening<'a, H>(&'a ShardServer<H>);

/// Cancels a task when dropped.
struct Cancel(task::TaskHandle);

impl Drop for Cancel {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl<H> Drop for Listening<'_, H> {
    fn drop(&mut self) {
        self.0.counters.set_listening(false);
        if let Some(handoff) = &self.0.handoff {
            handoff.freed();
        }
    }
}

impl<H> Drop for ShardServer<H> {
    fn drop(&mut self) {
        self.conns.cancel_all();
    }
}
