//! HTTP/1.1: a green client ([`Client`], [`get`]) and the wire format it
//! shares with the server.
//!
//! ```
//! use futures_lite::StreamExt;
//! use shardlet::{http, GreenPool};
//!
//! # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
//! // The seed's client pattern: bodies back in input order, memory bounded by the pool.
//! # let urls: Vec<String> = vec![];
//! let pool = GreenPool::new(200);
//! let mut bodies = pool.imap(urls, |url| async move { http::get(&url).await.map(|r| r.body) });
//! while let Some(body) = bodies.next().await {
//!     match body.unwrap() {
//!         Ok(body) => println!("got body {}", body.len()),
//!         Err(err) => println!("{err}"),
//!     }
//! }
//! # }).unwrap();
//! ```
//!
//! # The contract between the layers here
//!
//! - **Wire format** (`codec.rs`, `chunked.rs`, `headers.rs`), shared by the
//!   client and the server, knows nothing of sockets, shards or time: it
//!   reads from any `AsyncBufRead` and never past the end of the current
//!   message, so the bytes of the next message stay in the caller's buffer.
//!   It decides body framing by RFC 9112 §6.3 ([`Framing`]), reads heads
//!   ([`read_head`], parsed by the caller with `httparse`) and bodies
//!   ([`read_body`], [`BodyReader`], [`ChunkedDecoder`]) under size limits,
//!   and reports [`WireError`]s: too large, malformed, truncated, I/O.
//! - **Time** is the caller's: [`IdleTimeout`] makes any stream's reads fail
//!   after a silence, and [`timeout`](crate::timeout) bounds whole steps.
//! - **The client** (`client.rs`, its settings in `builder.rs`) owns
//!   connections (`conn.rs`: TCP from [`net::connect`](crate::net::connect),
//!   TLS from `tls.rs`), their
//!   keep-alive pool (`keepalive.rs`) and the resolver (`dns.rs`: lookups
//!   on the [`blocking`](crate::blocking) pool, cached per client, so per
//!   shard for [`get`]). Everything it holds is shard-local (`!Send`); it
//!   turns every failure into one [`Error`] that names the URL.
//! - **The server** ([`server`]) parses request heads with `httparse` into
//!   [`Headers`], decides a request's framing itself (it answers each bad
//!   case with its own status: 400, 413, 501), and reads request bodies,
//!   sized or chunked, with the shared [`read_body`]. Its connection loop
//!   (`server/conn.rs`) still reads heads its own way, under its own
//!   per-limit statuses (414 for the request line, 431 for the fields).
//!
//! Logs go to `tracing`, target `shardlet::http`.

mod builder;
mod chunked;
mod client;
mod codec;
mod conn;
mod dns;
mod error;
mod headers;
mod idle_timeout;
mod keepalive;
mod response;
pub mod server;
#[cfg(feature = "tls")]
mod tls;

pub use builder::{
    BuildError, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MAX_IDLE_PER_HOST,
    DEFAULT_MAX_REDIRECTS, DEFAULT_READ_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};
pub use chunked::{ChunkedDecoder, MAX_CHUNK_LINE, MAX_TRAILERS};
pub use client::{get, Client, ClientStats};
pub use codec::{read_body, read_head, BodyReader, Framing, WireError, DEFAULT_MAX_HEAD};
pub use error::{Error, ErrorKind, Phase};
pub use headers::Headers;
pub use idle_timeout::IdleTimeout;
pub use response::Response;
// The server's own `Response` (what a handler answers) stays at
// `http::server::Response`; `http::Response` is what the client gets.
pub use server::{reason, Body, Limits, Request, Server, Version};
pub use url::Url;
