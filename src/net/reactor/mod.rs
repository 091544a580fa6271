//! The per-shard readiness driver: epoll under the shard's sockets.
//!
//! # Contract
//!
//! What the layers above (`net::tcp`, `net::server`) may rely on:
//!
//! - **One driver per shard, shard-local.** [`Reactor::current`](driver::Reactor::current) gives the
//!   calling shard's driver (built on first use, dropped with its executor);
//!   everything in it is `Rc`/`Cell`, never shared across threads.
//! - **Register once.** A socket is registered with [`Registration::new`](driver::Registration::new)
//!   when it opens and deregistered when it drops; it stays registered,
//!   edge-triggered, for its whole life. There is no per-read arming.
//! - **Flags, then syscall.** A caller tries its syscall while
//!   [`Registration::is_ready`](driver::Registration::is_ready) says so, and calls
//!   [`Registration::would_block`](driver::Registration::would_block) (or [`Registration::clear`](driver::Registration::clear)) on `EAGAIN`
//!   or a short count; [`Registration::poll_ready`](driver::Registration::poll_ready) then waits for the next
//!   edge. A "closed" flag (hang-up, error) stays set until the socket
//!   itself says `EAGAIN`.
//! - **Parking.** An idle driver parks on the epoll descriptor through
//!   glommio (`park.rs`), relying on a private side effect of glommio 0.9.0
//!   (which is why `Cargo.toml` pins it exactly); a parked driver costs the
//!   shard nothing until an event arrives.
//! - **Counters.** [`ready_stats`] reads the calling shard's driver counters
//!   (rounds, events, parks); they only grow while the driver runs.

pub(crate) mod driver;
pub(crate) mod park;
pub(crate) mod slab;

pub use driver::{ready_stats, ReadyStats};
