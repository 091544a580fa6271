//! The reusable parts of shardlet's example applications, apart from their
//! command lines so that the tests and benchmarks can run them in-process:
//!
//! - [`crawler`]: Eventlet's client pattern (`GreenPool::imap`), run by
//!   `examples/crawler.rs` and measured by `crawl_bench` (bench/).
//! - [`feed_scraper`]: Eventlet's dispatch pattern (a `GreenPile` bound to a
//!   `GlobalLimit`, behind an HTTP server), run by `examples/feed_scraper/`
//!   and measured by `cargo bench --bench http`.
//!
//! Not published: the examples are what users copy, and this crate is
//! where their logic lives.

pub mod crawler;
pub mod feed_scraper;
