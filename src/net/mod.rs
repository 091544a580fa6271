//! The server pattern: [`listen`], [`serve`], [`connect`], and [`Server`] to
//! serve one address on every shard.
//!
//! Streams are shardlet's [`TcpStream`]: it implements futures-io's
//! `AsyncRead`/`AsyncWrite` (use `futures_lite::{AsyncReadExt, AsyncWriteExt}`),
//! so any code written against those traits works with it.
//! [`TcpStream::into_glommio`] gives glommio's own stream type for code that
//! needs one, and [`TcpStream::from_glommio`] takes one over.
//!
//! # Why not glommio's streams
//!
//! glommio 0.9's stream reads with a non-blocking `recv` and, after every
//! read that leaves the socket empty, arms a *one-shot* io_uring poll for
//! it: an allocation, a submission, a completion and a task-work wake-up per
//! message, and on loopback the peer pays for that wake-up too. shardlet's
//! sockets are registered once, edge-triggered, with one epoll instance per
//! shard (`reactor/`, its contract at the top of `reactor/mod.rs`); a driver
//! task takes events from it without blocking and wakes the waiting tasks,
//! and only an idle shard parks, on one io_uring poll of the epoll
//! descriptor (`reactor/park.rs`). BENCHMARKS.md has the echo benchmark's
//! figures against raw glommio's own streams. Everything else stays on glommio:
//! timers, the executor, files, the cross-shard layer.
//!
//! # The contract between the layers here
//!
//! Three layers, each importing only from those below it: `reactor/` (the
//! per-shard epoll driver), `tcp/` (sockets on it) and `server/` (serving
//! loops, accept modes, connection tables and counters on the sockets).
//!
//! - **Sockets** (`tcp/bind.rs`) are built with socket2 and need no executor;
//!   only registering one with a shard's readiness driver does. The crate's
//!   one `unsafe` block (`tcp/fd.rs`) borrows a glommio stream's raw descriptor
//!   for [`TcpStream::from_glommio`]. Listeners set `SO_REUSEADDR`,
//!   `TCP_NODELAY` (accepted streams inherit it on Linux) and a backlog of
//!   [`DEFAULT_BACKLOG`];
//!   `SO_REUSEPORT` only when asked, as reuseport mode does.
//! - **Sources** (`server/serving.rs`): a shard takes connections either from its own
//!   listener or from its handoff mailbox (`server/mailboxes.rs`, filled by the
//!   acceptor thread in `server/acceptor.rs`). Either way the serving loop looks at
//!   the shard's connection table (`server/table.rs`) *before* it takes a
//!   connection: below the cap it takes one; at the cap it takes one only to
//!   evict an idle connection for it ([`Connection::set_idle`]) or, with
//!   [`WhenFull::Close`], to close it at once; otherwise clients wait in the
//!   kernel backlog.
//! - **The connection cap** (`server/descriptors.rs`) is set, or derived from
//!   `RLIMIT_NOFILE` when a server starts: the limit less a reserve, divided
//!   among the shards. It is separate from the [`GreenPool`](crate::GreenPool)
//!   size (`SHARDLET_POOL_SIZE`), which bounds handlers run in a pool, not
//!   connections held.
//! - **Readiness** (`reactor/`, `tcp/stream.rs`, `tcp/listener.rs`): every socket
//!   of a shard is registered with that shard's epoll instance for its whole
//!   life, edge-triggered; a read or write tries the syscall while its
//!   direction is flagged ready and clears the flag on `EAGAIN` or a short
//!   count; dropping the socket deregisters it. Connections handed off by
//!   the acceptor are registered by the shard that takes them.
//! - **Buffers** (`tcp/read_with.rs`, `tcp/kept.rs`): [`TcpStream::read_with`]
//!   reads a ready socket into the shard's one read buffer
//!   ([`SHARD_READ_BUFFER`]) and hands the bytes to a callback;
//!   [`TcpStream::write_or_keep`] sends without waiting and keeps, in a
//!   buffer of the connection's own, only what the socket did not take,
//!   until a flush (or the next write) sends it. A connection that waits
//!   holds no buffer. [`TcpStream::set_acks_with_answers`] (`tcp/acks.rs`)
//!   puts the socket back in delayed-ACK mode after each write.
//! - **Connections** run as green threads, each with an entry in the
//!   table (O(1) to add, free, mark idle or evict). The handler's error or
//!   panic ends only its connection; both are counted and logged.
//! - **Counters** (`server/stats.rs`) are per-shard atomics, written by the shard
//!   (and, for `accepted`/`live` in handoff mode, by the acceptor before it
//!   sends) and read from any thread through [`Server::stats`].
//! - **Stopping**: a serving loop obeys the runtime's stop
//!   ([`shard::stopped`](crate::shard::stopped)) and its server's
//!   ([`Server::stop`]): it stops taking connections at once, asks idle
//!   ones to close, drains the others until the drain timeout or the stop's
//!   grace period, then cancels the rest and returns.
//! - **Errors from `accept`** (`server/accept_errors.rs`): running out of descriptors or
//!   memory backs off (`server/backoff.rs`, 5 ms doubling to 500 ms) and recovers;
//!   aborted connections are skipped; only a broken listener ends the loop.
//!
//! Logs go to `tracing`, target `shardlet::net`.

pub(crate) mod reactor;
pub(crate) mod server;
pub(crate) mod tcp;

pub use reactor::{ready_stats, ReadyStats};
pub use server::{
    default_max_connections, fd_limit, fd_reserve, latency_histogram, max_connections_for, serve, serve_with,
    AcceptMode, Connection, Evicted, LatencyBuckets, Ready, RequestStats, Server, ServerConfig, ServerStats,
    ShardStats, WhenFull, DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDOFF_CAPACITY, EVICTION_GRACE, FD_RESERVE,
    FD_RESERVE_DIVISOR, FD_RESERVE_PER_SHARD, LATENCY_BUCKETS, QUIET_PERIOD,
};
pub use tcp::{
    connect, listen, listen_with, ListenOptions, ReadWith, TcpListener, TcpStream, DEFAULT_BACKLOG,
    SHARD_READ_BUFFER,
};
