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
//! shard (`ready.rs`); a driver task takes events from it without blocking
//! and wakes the waiting tasks, and only an idle shard parks, on one
//! io_uring poll of the epoll descriptor (`park.rs`). In the 10k-client
//! echo benchmark this took shardlet's server from 0.87-0.90x of tokio's
//! throughput to 1.01-1.24x (see the README). Everything else stays on
//! glommio: timers, the executor, files, the cross-shard layer.
//!
//! # The contract between the layers here
//!
//! - **Sockets** (`listen.rs`) are built with socket2 and need no executor;
//!   only registering one with a shard's readiness driver does. The crate's
//!   one `unsafe` block (`fd.rs`) borrows a glommio stream's raw descriptor
//!   for [`TcpStream::from_glommio`]. Listeners set `SO_REUSEADDR`,
//!   `TCP_NODELAY` (accepted streams inherit it on Linux) and a backlog of
//!   [`DEFAULT_BACKLOG`];
//!   `SO_REUSEPORT` only when asked, as reuseport mode does.
//! - **Sources** (`serve.rs`): a shard takes connections either from its own
//!   listener or from its handoff mailbox (`handoff.rs`, filled by the
//!   acceptor thread in `acceptor.rs`). Either way the serving loop looks at
//!   the shard's connection table (`conns.rs`) *before* it takes a
//!   connection: below the cap it takes one; at the cap it takes one only to
//!   evict an idle connection for it ([`Connection::set_idle`]) or, with
//!   [`WhenFull::Close`], to close it at once; otherwise clients wait in the
//!   kernel backlog.
//! - **The connection cap** (`descriptors.rs`) is set, or derived from
//!   `RLIMIT_NOFILE` when a server starts: the limit less a reserve, divided
//!   among the shards. It is separate from the [`GreenPool`](crate::GreenPool)
//!   size (`SHARDLET_POOL_SIZE`), which bounds handlers run in a pool, not
//!   connections held.
//! - **Readiness** (`ready.rs`, `stream.rs`, `listener.rs`): every socket
//!   of a shard is registered with that shard's epoll instance for its whole
//!   life, edge-triggered; a read or write tries the syscall while its
//!   direction is flagged ready and clears the flag on `EAGAIN` or a short
//!   count; dropping the socket deregisters it. Connections handed off by
//!   the acceptor are registered by the shard that takes them.
//! - **Buffers** (`read_with.rs`, `kept.rs`): [`TcpStream::read_with`]
//!   reads a ready socket into the shard's one read buffer
//!   ([`SHARD_READ_BUFFER`]) and hands the bytes to a callback;
//!   [`TcpStream::write_or_keep`] sends without waiting and keeps, in a
//!   buffer of the connection's own, only what the socket did not take,
//!   until a flush (or the next write) sends it. A connection that waits
//!   holds no buffer. [`TcpStream::set_acks_with_answers`] (`acks.rs`)
//!   puts the socket back in delayed-ACK mode after each write.
//! - **Connections** run as green threads, each with an entry in the
//!   table (O(1) to add, free, mark idle or evict). The handler's error or
//!   panic ends only its connection; both are counted and logged.
//! - **Counters** (`stats.rs`) are per-shard atomics, written by the shard
//!   (and, for `accepted`/`live` in handoff mode, by the acceptor before it
//!   sends) and read from any thread through [`Server::stats`].
//! - **Stopping**: a serving loop obeys the runtime's stop
//!   ([`shard::stopped`](crate::shard::stopped)) and its server's
//!   ([`Server::stop`]): it stops taking connections at once, asks idle
//!   ones to close, drains the others until the drain timeout or the stop's
//!   grace period, then cancels the rest and returns.
//! - **Errors from `accept`** (`accept.rs`): running out of descriptors or
//!   memory backs off (`backoff.rs`, 5 ms doubling to 500 ms) and recovers;
//!   aborted connections are skipped; only a broken listener ends the loop.
//!
//! Logs go to `tracing`, target `shardlet::net`.

mod accept;
mod acceptor;
mod acks;
mod backoff;
mod capacity;
mod connect;
mod connection;
mod conns;
mod descriptors;
mod fd;
mod handoff;
mod hyper_io;
mod kept;
mod listen;
mod listener;
mod park;
mod read_with;
mod readiness;
mod ready;
mod requests;
mod serve;
mod server;
mod server_config;
mod slab;
mod stats;
mod stream;

pub use accept::AcceptMode;
pub use connect::connect;
pub use connection::{Connection, Evicted};
pub use conns::EVICTION_GRACE;
pub use descriptors::{
    default_max_connections, fd_limit, fd_reserve, max_connections_for, FD_RESERVE, FD_RESERVE_DIVISOR,
    FD_RESERVE_PER_SHARD,
};
pub use listen::{listen, listen_with, ListenOptions, DEFAULT_BACKLOG};
pub use listener::TcpListener;
pub use read_with::{ReadWith, SHARD_READ_BUFFER};
pub use readiness::Ready;
pub use ready::{ready_stats, ReadyStats};
pub use requests::{latency_histogram, RequestStats};
pub use serve::{serve, serve_with, DEFAULT_DRAIN_TIMEOUT};
pub use server::Server;
pub use server_config::{ServerConfig, WhenFull, DEFAULT_HANDOFF_CAPACITY};
pub use stats::{ServerStats, ShardStats};
pub use stream::TcpStream;
