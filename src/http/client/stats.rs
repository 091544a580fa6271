//! A client's counts of its work ([`ClientStats`]).

use std::cell::Cell;

/// Counts of a client's work, from [`Client::stats`](super::Client::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Requests sent (each redirect hop and retry counts).
    pub requests: u64,
    /// Connections opened.
    pub connections: u64,
    /// Requests sent on a kept-alive (or shared HTTP/2) connection.
    pub reused: u64,
    /// Idle connections in the keep-alive pool now.
    pub idle: usize,
}

/// The counts as the client keeps them (shard-local).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: Cell<u64>,
    pub(crate) connections: Cell<u64>,
    pub(crate) reused: Cell<u64>,
}
