//! # shardlet
//!
//! Eventlet's green-thread design patterns — `GreenPool`, `imap`,
//! `GreenPile`, `spawn_n` — on a thread-per-core runtime: one pinned
//! io_uring executor ([glommio]) per CPU, each *shard* owning its own pools
//! and piles.
//!
//! ```
//! use futures_lite::StreamExt;
//! use shardlet::{shard, Config, GreenPool, Runtime};
//!
//! // Usually `Runtime::from_env()`, tuned through SHARDLET_* variables.
//! let runtime = Runtime::new(Config::default().with_shards(2).with_pin(false))?;
//! let per_shard = runtime.run(|| async {
//!     // The client pattern: many calls through a bounded pool, results in input order.
//!     let pool = GreenPool::new(100);
//!     let lengths: Vec<usize> = pool
//!         .imap(["a", "bb", "ccc"], |s| async move { s.len() * (shard::id() + 1) })
//!         .map(Result::unwrap)
//!         .collect()
//!         .await;
//!     lengths
//! })?;
//! assert_eq!(per_shard, [vec![1, 2, 3], vec![2, 4, 6]]);
//! # Ok::<(), shardlet::RuntimeError>(())
//! ```
//!
//! The pieces:
//! - [`Runtime`] and [`Config`]: shards, CPUs, pinning, from `SHARDLET_*`.
//! - [`spawn`], [`spawn_n`], [`GreenThread`]: green threads whose panics are values.
//! - [`GreenPool`] and [`GreenPile`]: bounded concurrency, ordered results.
//! - [`blocking`]: blocking code off the shard; [`sleep`], [`timeout`].
//! - [`shard`]: which shard am I on, and has a stop been requested.
//! - The cross-shard layer: [`spawn_on`], [`submit_to`], [`broadcast`],
//!   [`map_reduce`] over bounded shard-to-shard lanes and per-shard mailboxes ([`Mesh`]);
//!   [`GlobalLimit`], a concurrency cap held across all shards; and
//!   [`FanoutPile`], a pile whose tasks run on every shard.
//! - [`net`]: the server pattern: [`net::listen`], [`net::serve`],
//!   [`net::connect`], and a [`Server`] on every shard with accept spreading
//!   ([`AcceptMode`]) and per-shard counters; sockets wait on a per-shard
//!   epoll readiness driver ([`net::TcpStream`]).
//! - [`metrics`]: per-shard counters readable from the host
//!   ([`RuntimeHandle::stats`]) and their Prometheus export.
//! - [`http`]: HTTP on hyper and the `http` crate's types: the client
//!   pattern's green client ([`http::Client`], [`http::get`]; HTTP/2 by ALPN
//!   and `https` with the default `tls` feature), the dispatch pattern's
//!   [`http::Server`] on every shard (any tower or hyper service, an axum
//!   `Router` included), and hyper's runtime traits on the shard ([`http::rt`]).
//!
//! # Failure model
//!
//! - **Panics are values.** A panic in a green thread ([`spawn`],
//!   [`spawn_n`], a pool's or pile's task, a cross-shard job) or in a
//!   shard's entry (the closure or its future) is caught, counted
//!   ([`shard::panics`]) and logged through `tracing`; it comes back as
//!   [`JoinError`] (a panic) or [`RuntimeError::ShardPanicked`]. A
//!   destructor that panics while a task is dropped (cancelled, ended with
//!   its shard, dropped with an [`Imap`]) is caught the same way.
//! - **shardlet installs a process-wide panic hook.** The first
//!   [`Runtime::new`] (or the first guarded task) replaces the process's
//!   panic hook with one that chains to the hook that was there before (the
//!   host's own, or the default): panics outside green threads still reach
//!   it unchanged. For a panic it caught, the hook prints it on stderr,
//!   rate-limited ([`PRINTS_PER_SECOND`]), when no `tracing` subscriber would
//!   show it, and before the abort under `panic = "abort"`. A hook the host
//!   sets later replaces it until the next `Runtime::new` wraps it again.
//! - **Stopping is cooperative.** [`RuntimeHandle::stop`] is seen by every
//!   shard ([`shard::stopped`]); servers stop accepting and drain. The grace
//!   period bounds the wait only at `.await` points: an entry that computes
//!   without ever awaiting cannot be interrupted.
//! - **What a shard's end cancels.** Every green thread still waiting is
//!   cancelled (its future dropped, destructors run; `spawn_on` jobs among
//!   them are counted in [`Mesh::cancelled`]). Messages still queued for the
//!   shard are dropped unrun and counted in [`Mesh::dropped`]; a
//!   `submit_to` caller waiting on one gets [`MeshError::ShardGone`].
//! - **Failures are seen at once.** [`RuntimeHandle::failure`] and
//!   [`Server::ready`] return a shard's start error or panic as soon as it
//!   happens; [`RuntimeHandle::finished`] (a `Send` future, any executor)
//!   and [`RuntimeHandle::join`] (blocking) return it once every shard ended.
//! - **After [`RuntimeHandle::join`]** no shard task runs. [`blocking`]
//!   closures that had not started are dropped unrun; one still running
//!   keeps its thread until it returns (`join` does not wait for it).
//! - **What still aborts the process: a stack overflow.** glommio runs a
//!   new task's first step inside `spawn`, and a full pool runs its own
//!   tasks' spawns inline, so tasks nest on the shard's stack; past
//!   64 nested tasks shardlet queues a new task, or spawns inline work
//!   beyond the pool's size, instead. A future that recurses deeply within
//!   one poll can still overflow the stack (2 MiB per shard thread): box
//!   recursive futures and keep large buffers on the heap.
//! - **glommio keeps one eventfd per executor** it ever built
//!   ([glommio#448](https://github.com/DataDog/glommio/issues/448)): a
//!   process that starts many runtimes one after another accumulates them.
//!
//! [glommio]: https://docs.rs/glommio

// `deny`, not `forbid`: `net/tcp/fd.rs` alone allows it, to borrow a glommio
// stream's raw descriptor (glommio gives it only through `AsRawFd`).
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![warn(clippy::undocumented_unsafe_blocks)]

// The layers, lowest first; each imports only from the ones before it
// (scripts/layers.sh checks it).
// Settings, every SHARDLET_* name and default, the shard's place:
mod config;
// Timers on the shard:
mod time;
// Slots, lanes, mailboxes, the stop signal, per-shard state slots:
mod sync;
// Green threads, JoinError, the panic guard and hook, blocking, counters:
mod task;
// GreenPool and imap:
mod pool;
// Cross-shard calls, wakes and GlobalLimit:
mod mesh;
// GreenPile and FanoutPile:
mod pile;
// The readiness driver, TCP sockets, servers:
pub mod net;
// Per-shard metrics and their export:
pub mod metrics;
// HTTP on hyper:
pub mod http;
// The runtime: starts shards and installs each layer's per-shard state:
mod runtime;
// The facade over each layer's per-shard state:
pub mod shard;

pub use config::knobs::KNOWN as KNOWN_VARIABLES;
pub use config::memlock::{MemlockError, MEMLOCK_FLOOR};
pub use config::nofile::DescriptorError;
pub use config::{
    Config, ConfigError, ShardPlan, DEFAULT_BLOCKING_THREADS, DEFAULT_POOL_SIZE, DEFAULT_SPIN, ENV_ACCEPT,
    ENV_BLOCKING_THREADS, ENV_CPUS, ENV_IO_MEMORY, ENV_MAILBOX, ENV_MAX_CONNECTIONS, ENV_PIN, ENV_POOL_SIZE,
    ENV_RESERVE_CPUS, ENV_SHARDS, ENV_SPIN_US, MAX_BLOCKING_THREADS, MAX_IO_MEMORY, MAX_MAILBOX, MAX_SHARDS,
    MAX_SPIN,
};
pub use mesh::global::{AcquireGlobal, GlobalLimit, GlobalPermit};
pub use mesh::{broadcast, map_reduce, spawn_on, submit_to, Mesh, MeshError, TrySpawnError, DEFAULT_MAILBOX};
pub use net::{AcceptMode, Connection, Server, ServerConfig, WhenFull};
pub use pile::fanout::{FanoutPile, Spread};
pub use pile::{GreenPile, PileBound};
pub use pool::imap::{Imap, StarFn};
pub use pool::GreenPool;
pub use runtime::handle::{Finished, RuntimeHandle};
pub use runtime::{Runtime, RuntimeError, FAILURE_GRACE};
pub use sync::stop::Stopper;
pub use task::blocking::blocking;
pub use task::hook::PRINTS_PER_SECOND;
pub use task::{spawn, spawn_n, GreenThread, JoinError};
pub use time::{sleep, timeout, Elapsed};

/// The Rust examples of the README and of docs/ compile and run as doctests.
#[doc = include_str!("../README.md")]
#[doc = include_str!("../docs/design.md")]
#[doc = include_str!("../docs/embedding.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
