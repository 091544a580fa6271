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
//! - [`http`]: HTTP/1.1: the client pattern's green client ([`http::Client`],
//!   [`http::get`]; `https` with the default `tls` feature), the dispatch
//!   pattern's [`http::Server`] on every shard, and the wire format they share.
//!
//! [glommio]: https://docs.rs/glommio

// `deny`, not `forbid`: `net/fd.rs` alone allows it, to borrow a glommio
// stream's raw descriptor (glommio gives it only through `AsRawFd`).
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod blocking;
mod catch;
mod config;
mod cpulist;
mod fanout;
mod global;
pub mod http;
mod imap;
mod lanes;
mod mailbox;
mod memlock;
mod mesh;
pub mod net;
mod pile;
mod pool;
mod runtime;
pub mod shard;
mod slots;
mod stop;
mod task;
mod time;

pub use blocking::blocking;
pub use config::{
    Config, ConfigError, ShardPlan, DEFAULT_BLOCKING_THREADS, DEFAULT_POOL_SIZE, DEFAULT_SPIN, ENV_ACCEPT,
    ENV_BLOCKING_THREADS, ENV_CPUS, ENV_IO_MEMORY, ENV_MAILBOX, ENV_MAX_CONNECTIONS, ENV_PIN, ENV_POOL_SIZE,
    ENV_SHARDS, ENV_SPIN_US,
};
pub use fanout::{FanoutPile, Spread};
pub use global::{AcquireGlobal, GlobalLimit, GlobalPermit};
pub use imap::{Imap, StarFn};
pub use memlock::MemlockError;
pub use mesh::{broadcast, map_reduce, spawn_on, submit_to, Mesh, MeshError, TrySpawnError, DEFAULT_MAILBOX};
pub use net::{AcceptMode, Connection, Server, ServerConfig, WhenFull};
pub use pile::{GreenPile, PileBound};
pub use pool::GreenPool;
pub use runtime::{Runtime, RuntimeError, RuntimeHandle, FAILURE_GRACE};
pub use stop::Stopper;
pub use task::{spawn, spawn_n, GreenThread, JoinError};
pub use time::{sleep, timeout, Elapsed};

/// The README's Rust examples compile and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
