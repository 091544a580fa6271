//! [`Connection`]: a connection handler's handle on its entry in the
//! shard's connection table (`table.rs`), to mark the connection idle or
//! busy and to hear when the server asks it to close.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::net::server::table::Conns;
#[cfg(doc)]
use crate::net::{EVICTION_GRACE, QUIET_PERIOD};

/// A connection's handle on its shard's server, handed to the handler of
/// [`Server::serve_with`](crate::net::Server::serve_with) (and
/// [`net::serve_with`](crate::net::serve_with)) beside its stream.
///
/// It tells the server when the connection is idle, e.g. an HTTP keep-alive
/// connection between requests, and hears when the server wants an idle
/// connection closed: when the shard holds its connection cap and a new
/// client is waiting, the connection idle the longest is asked to close
/// ([`evicted`](Connection::evicted)), as nginx closes idle keep-alive
/// connections to admit new ones. Busy connections are never asked. When
/// the server stops, every idle connection is asked at once (and each that
/// goes idle later).
///
/// A handler that marks its connection idle should close it (return) soon
/// after `evicted` resolves; one still idle [`EVICTION_GRACE`] later has its
/// task cancelled, which closes the stream. Marking and eviction are O(1).
///
/// Shard-local (`!Send`). Clones refer to the same connection; a handle that
/// outlives its connection does nothing.
///
/// # Examples
///
/// A line echo whose connection is idle while it waits for a line:
///
/// ```
/// use std::io;
/// use futures_lite::{future, AsyncBufReadExt, AsyncWriteExt};
/// use shardlet::net::{Connection, TcpStream};
///
/// async fn lines(stream: TcpStream, conn: Connection) -> io::Result<()> {
///     let mut stream = futures_lite::io::BufReader::new(stream);
///     let mut line = String::new();
///     loop {
///         line.clear();
///         conn.set_idle(true);
///         let read = future::or(
///             async { Some(stream.read_line(&mut line).await) },
///             async {
///                 conn.evicted().await;
///                 None
///             },
///         )
///         .await;
///         conn.set_idle(false);
///         match read {
///             None | Some(Ok(0)) => return Ok(()), // asked to close, or EOF
///             Some(Ok(_)) => stream.get_mut().write_all(line.as_bytes()).await?,
///             Some(Err(e)) => return Err(e),
///         }
///     }
/// }
/// # let _ = shardlet::Server::bind(([127, 0, 0, 1], 0), Default::default());
/// # fn check<F: std::future::Future>(_: impl Fn(TcpStream, Connection) -> F) {}
/// # check(lines);
/// ```
#[derive(Clone)]
pub struct Connection {
    conns: Rc<Conns>,
    key: u32,
    generation: u32,
}

impl Connection {
    /// The handle on entry `key` of `conns`, at `generation`.
    pub(crate) fn new(conns: Rc<Conns>, key: u32, generation: u32) -> Self {
        Connection {
            conns,
            key,
            generation,
        }
    }

    /// Marks the connection idle (e.g. an HTTP keep-alive connection
    /// between requests) or busy. Connections start busy.
    ///
    /// While the shard holds its connection cap and a new client waits, the
    /// server asks the connection that has been idle the longest to close
    /// (see [`evicted`](Connection::evicted)). Marking a connection busy
    /// again after it was asked takes it off the grace timer: it may finish
    /// what it does, and should close after.
    pub fn set_idle(&self, idle: bool) {
        self.conns.set_idle(self.key, self.generation, idle);
    }

    /// Marks the connection *quiet*: busy for [`QUIET_PERIOD`], then idle
    /// unless [`set_idle`](Connection::set_idle) was called meanwhile. For a
    /// new connection that waits for its client to speak first: call
    /// `set_idle(false)` when the first bytes come.
    ///
    /// Idle at once, every newcomer of an overloaded shard would evict the
    /// one before it ahead of its first request; busy until its first byte,
    /// connections that never send one would hold the cap until the
    /// protocol's own timeout (nginx treats them as it treats idle
    /// keep-alive connections, "reusable"). A stop asks a quiet connection
    /// to close at once. It costs no timer: the shard's quiet connections
    /// wait in one queue, and turn idle within an eighth of the period
    /// after it ends, in the order they were marked.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::{future, AsyncReadExt};
    /// use shardlet::net::{Connection, TcpStream};
    ///
    /// async fn greet(mut stream: TcpStream, conn: Connection) -> std::io::Result<()> {
    ///     conn.set_quiet();
    ///     let mut first = [0u8; 1];
    ///     let read = future::or(async { Some(stream.read(&mut first).await) }, async {
    ///         conn.evicted().await;
    ///         None // silent too long while the shard needed room, or a stop
    ///     });
    ///     let Some(read) = read.await else { return Ok(()) };
    ///     conn.set_idle(false);
    ///     // ... serve the client ...
    ///     read.map(drop)
    /// }
    /// # fn check<F: std::future::Future>(_: impl Fn(TcpStream, Connection) -> F) {}
    /// # check(greet);
    /// ```
    pub fn set_quiet(&self) {
        self.conns.set_quiet(self.key, self.generation);
    }

    /// Resolves once the server has asked this connection to close, to make
    /// room for a new client while it was idle, or because the server is
    /// stopping. At once if it was asked already, or the connection ended.
    ///
    /// One task at a time should wait on it (the last one to poll is woken).
    pub fn evicted(&self) -> Evicted {
        Evicted { conn: self.clone() }
    }

    /// Whether the server has asked this connection to close.
    pub fn is_evicted(&self) -> bool {
        self.conns.is_evicted(self.key, self.generation)
    }

    /// Records one request answered on this connection, for the server's
    /// counters: `status` is counted per code and `latency` goes into the
    /// shard's latency histogram ([`ServerStats::requests`](crate::net::ServerStats::requests)).
    /// For the protocol layer on top of a server (an HTTP server records
    /// each response's status and the time from the request's head to the
    /// response's end).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use shardlet::net::{Connection, TcpStream};
    ///
    /// async fn handler(stream: TcpStream, conn: Connection) -> std::io::Result<()> {
    ///     let started = Instant::now();
    ///     // ... read a request, answer it ...
    ///     conn.record_request(200, started.elapsed());
    ///     drop(stream);
    ///     Ok(())
    /// }
    /// # fn check<F: std::future::Future>(_: impl Fn(TcpStream, Connection) -> F) {}
    /// # check(handler);
    /// ```
    pub fn record_request(&self, status: u16, latency: std::time::Duration) {
        self.conns.counters().requests.record(status, latency);
    }

    /// Counts a request handler's panic that the protocol caught and
    /// answered (an HTTP server's 500), in
    /// [`ShardStats::panicked`](crate::net::ShardStats::panicked) beside
    /// the connection handlers that panicked.
    pub fn record_panic(&self) {
        self.conns
            .counters()
            .panicked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Its entry in the table: index and generation.
    pub(crate) fn key(&self) -> (u32, u32) {
        (self.key, self.generation)
    }

    /// The shard-wide end of this connection: frees its entry when dropped.
    pub(crate) fn end_guard(&self) -> EndGuard {
        EndGuard {
            conns: self.conns.clone(),
            key: self.key,
            generation: self.generation,
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("shard", &self.conns.shard())
            .field("key", &self.key)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Future of [`Connection::evicted`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Evicted {
    conn: Connection,
}

impl Future for Evicted {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let conn = &self.conn;
        conn.conns.poll_evicted(conn.key, conn.generation, cx)
    }
}

/// Dropped when a connection task ends, however it ends (finished, panicked,
/// cancelled): frees the connection's entry and uncounts it.
pub(crate) struct EndGuard {
    conns: Rc<Conns>,
    key: u32,
    generation: u32,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.conns.remove(self.key, self.generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use crate::net::server::capacity::CapOrigin;
    use crate::net::server::stats::Counters;
    use crate::net::server::table::Room;
    use crate::net::WhenFull;

    fn conns(cap: usize) -> Rc<Conns> {
        Conns::new(
            0,
            cap,
            CapOrigin::Configured,
            WhenFull::Wait,
            Arc::new(Counters::default()),
            None,
        )
    }

    /// A connection as the serving loop makes it: counted live, with its guard.
    fn open(conns: &Rc<Conns>) -> (Connection, EndGuard) {
        conns.counters().live.fetch_add(1, Ordering::SeqCst);
        let conn = conns.insert();
        let end = conn.end_guard();
        (conn, end)
    }

    #[test]
    fn evicts_the_longest_idle_and_never_a_busy_one() {
        let conns = conns(4);
        let c: Vec<_> = (0..4).map(|_| open(&conns)).collect();
        assert_eq!(conns.room(), Room::None, "full, nothing idle");
        // Idle in the order 2, 0, 3; 1 stays busy.
        for i in [2, 0, 3] {
            c[i].0.set_idle(true);
        }
        assert_eq!(conns.room(), Room::Evict);
        assert!(conns.evict_oldest());
        assert!(c[2].0.is_evicted());
        assert_eq!(conns.room(), Room::Soon, "2 will make room");
        assert!(conns.evict_oldest());
        assert!(conns.evict_oldest());
        assert!(!conns.evict_oldest(), "1 is busy");
        assert!(!c[1].0.is_evicted());
        assert_eq!([0, 3].map(|i| c[i].0.is_evicted()), [true, true], "0 then 3");
        assert_eq!(conns.counters().evicted.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn marking_busy_takes_a_connection_off_the_idle_list() {
        let conns = conns(2);
        let (a, _ea) = open(&conns);
        let (b, _eb) = open(&conns);
        a.set_idle(true);
        b.set_idle(true);
        a.set_idle(false); // a request came in on a
        assert!(conns.evict_oldest());
        assert!(b.is_evicted() && !a.is_evicted());
        assert_eq!(conns.counters().idle.load(Ordering::Relaxed), 1, "b, closing");
    }

    #[test]
    fn freed_entries_are_reused_and_stale_handles_do_nothing() {
        let conns = conns(2);
        let (a, end_a) = open(&conns);
        a.set_idle(true);
        drop(end_a);
        assert_eq!((conns.held(), conns.room()), (0, Room::Free));
        assert!(a.is_evicted(), "a handle whose connection ended reads as evicted");
        let (b, _eb) = open(&conns);
        assert_eq!(b.key, a.key, "the entry is reused");
        a.set_idle(true); // stale: must not touch b's entry
        assert_eq!(conns.counters().idle.load(Ordering::Relaxed), 0);
        assert!(!conns.evict_oldest());
        assert_eq!(conns.counters().live.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn episodes_at_capacity_are_counted() {
        let conns = conns(2);
        let (_a, end_a) = open(&conns);
        let (_b, _eb) = open(&conns);
        assert_eq!(conns.counters().at_capacity.load(Ordering::Relaxed), 1);
        assert_ne!(conns.counters().at_capacity_since.load(Ordering::Relaxed), 0);
        drop(end_a);
        assert_eq!(conns.counters().at_capacity_since.load(Ordering::Relaxed), 0);
        let (_c, _ec) = open(&conns);
        assert_eq!(conns.counters().at_capacity.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_quiet_connection_turns_idle_when_its_period_ends_unless_heard_from() {
        use crate::net::QUIET_PERIOD;
        use std::time::Instant;
        let conns = conns(3);
        let (a, _ea) = open(&conns);
        let (b, _eb) = open(&conns);
        let (c, _ec) = open(&conns);
        let marked = Instant::now();
        a.set_quiet();
        b.set_quiet();
        c.set_idle(true);
        b.set_idle(false); // b's client spoke
        assert_eq!(conns.age_quiet(marked), 0, "the period has not ended");
        assert!(conns.evict_oldest() && c.is_evicted(), "c was idle already");
        assert!(!conns.evict_oldest(), "a is quiet, b busy: nothing to evict");
        let later = Instant::now() + QUIET_PERIOD;
        assert_eq!(conns.age_quiet(later), 1, "a, not b");
        assert_eq!(conns.next_quiet(), None, "every period is accounted for");
        assert!(conns.evict_oldest() && a.is_evicted());
        assert!(!b.is_evicted() && !conns.evict_oldest());
    }

    #[test]
    fn quiet_connections_turn_idle_in_the_order_they_were_marked() {
        use crate::net::QUIET_PERIOD;
        use std::time::Instant;
        let conns = conns(3);
        let c: Vec<_> = (0..3).map(|_| open(&conns)).collect();
        for i in [2, 0, 1] {
            c[i].0.set_quiet();
        }
        c[0].0.set_idle(false);
        c[0].0.set_idle(true); // heard from, then idle: idle before the others
        assert_eq!(conns.age_quiet(Instant::now() + QUIET_PERIOD), 2);
        let mut order = Vec::new();
        while conns.evict_oldest() {
            let next = (0..3).find(|&i| c[i].0.is_evicted() && !order.contains(&i));
            order.extend(next);
        }
        assert_eq!(order, [0, 2, 1]);
    }

    #[test]
    fn a_connection_marked_quiet_again_keeps_a_whole_period() {
        use crate::net::QUIET_PERIOD;
        use std::time::{Duration, Instant};
        let conns = conns(3);
        let (a, _ea) = open(&conns);
        let first = Instant::now();
        a.set_quiet();
        a.set_idle(false); // heard from
        std::thread::sleep(Duration::from_millis(100));
        a.set_quiet(); // waits for its client again: a new period
                       // The first period's end, well before the second's.
        let aged = conns.age_quiet(first + QUIET_PERIOD + Duration::from_millis(10));
        assert_eq!(aged, 0, "idle 10 ms into its second quiet period");
        assert_eq!(
            conns.age_quiet(Instant::now() + QUIET_PERIOD),
            1,
            "at the second's end"
        );
    }

    #[test]
    fn a_stop_asks_quiet_connections_to_close_at_once() {
        let conns = conns(4);
        let (a, _ea) = open(&conns);
        let (b, _eb) = open(&conns);
        let (c, _ec) = open(&conns);
        a.set_quiet();
        conns.close_idle();
        assert!(a.is_evicted() && !b.is_evicted());
        b.set_quiet(); // marked while the server stops
        assert!(b.is_evicted());
        assert!(!c.is_evicted(), "busy: left to finish");
        assert_eq!(
            conns.counters().idle.load(Ordering::Relaxed),
            2,
            "a and b, closing"
        );
    }

    #[test]
    fn a_connection_that_goes_idle_while_draining_is_asked_at_once() {
        let conns = conns(4);
        let (a, _ea) = open(&conns);
        let (b, _eb) = open(&conns);
        a.set_idle(true);
        conns.close_idle();
        assert!(a.is_evicted() && !b.is_evicted());
        b.set_idle(true);
        assert!(b.is_evicted());
        assert_eq!(
            conns.counters().evicted.load(Ordering::Relaxed),
            0,
            "not evictions"
        );
    }
}
