//! HTTP on [hyper] and the [`http`] crate's types: a green client
//! ([`Client`], [`get`]) for the client pattern, a [`Server`] on every shard
//! for the dispatch pattern, and hyper's runtime traits on the shard
//! ([`rt`]) for code that drives hyper itself.
//!
//! ```
//! use futures_lite::StreamExt;
//! use shardlet::{http, GreenPool};
//!
//! # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
//! // The seed's client pattern: bodies back in input order, memory bounded by the pool.
//! # let urls: Vec<String> = vec![];
//! let pool = GreenPool::new(200);
//! let mut bodies = pool.imap(urls, |url| async move { http::get(&url).await.map(|r| r.into_body()) });
//! while let Some(body) = bodies.next().await {
//!     match body.unwrap() {
//!         Ok(body) => println!("got body {}", body.len()),
//!         Err(err) => println!("{err}"),
//!     }
//! }
//! # }).unwrap();
//! ```
//!
//! # The layout
//!
//! - **[`rt`]**: hyper's `Executor` and `Timer` on the shard; hyper's `Read`
//!   and `Write` are implemented on [`net::TcpStream`](crate::net::TcpStream)
//!   itself (`src/net/tcp/hyper_io.rs`). The wire protocol, both roles, is
//!   hyper's: shardlet parses nothing.
//! - **[`server`]**: hyper's server connections on `net::Server`, with
//!   shardlet's limits, handler pool, timeouts and graceful stop.
//! - **[`client`]**: hyper's client connections in a per-shard keep-alive
//!   pool, with DNS off the shard (cached), rustls TLS (feature `tls`,
//!   ALPN `h2` and `http/1.1`), redirects, time limits, a body limit, and
//!   one [`Error`] that names the URL.
//!
//! Logs go to `tracing`, target `shardlet::http`.
//!
//! [hyper]: https://docs.rs/hyper

pub mod client;
pub mod rt;
pub mod server;

pub use client::{
    get, redact_password, BuildError, Client, ClientBuilder, ClientStats, Error, ErrorKind, Phase,
    ResponseExt, Streamed, Timeout, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MAX_IDLE_PER_HOST,
    DEFAULT_MAX_REDIRECTS, DEFAULT_READ_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};
pub use server::{Limits, Server};
pub use url::Url;
