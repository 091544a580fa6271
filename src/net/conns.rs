//! The connections one shard holds: the table behind its connection cap,
//! the idle list that eviction takes from, and [`Connection`], each
//! handler's handle on its own entry.
//!
//! # How it works
//!
//! - Every connection the shard runs has an entry in one `Vec`, addressed by
//!   its index and a generation (a handle that outlives its connection
//!   finds a newer generation and does nothing). Freed entries form a free
//!   list through the same links: taking and freeing one is O(1), and the
//!   table grows only to the most connections held at once.
//! - A handler marks its connection idle or busy
//!   ([`Connection::set_idle`]). Idle entries form a doubly linked list
//!   through their indices, least recently idle at the head: marking is an
//!   O(1) unlink or append, and eviction takes the head.
//! - **Eviction.** When the shard holds its cap and a new client is waiting
//!   (the serving loop has accepted one, or taken one from its handoff
//!   mailbox), the loop asks the head of the idle list to close: the entry
//!   becomes *closing* and its [`Evicted`] future resolves. The handler
//!   closes the connection, the entry is freed, and the waiting client takes
//!   its place. Busy connections are never asked. One whose handler does not
//!   close it within [`EVICTION_GRACE`] while still idle has its task
//!   cancelled (its stream closed), as nginx closes idle keep-alive
//!   connections outright.
//! - The serving loop waits on [`Conns::changed`]: a connection that ends,
//!   or goes idle while the shard is full, or stops closing, wakes it. Only
//!   the loop waits on it, so it is one waker, not a list.
//! - **Episodes at capacity.** The shard is *at capacity* while it holds its
//!   cap. Each episode is counted, timed and logged once (a warning naming
//!   the cap and the knob that raises it, at most one per
//!   [`WARNING_INTERVAL`]; the others at debug level).
//! - **Counters** (`stats.rs`): `live` drops when an entry is freed; `idle`
//!   mirrors the idle and closing entries, for [`Server::stats`] and for the
//!   handoff acceptor, which may send a full shard a client when it has an
//!   idle connection to evict.
//!
//! Everything here is shard-local (`Rc`, `RefCell`); no borrow of the table
//! is held while a waker runs or a task is dropped.
//!
//! [`Server::stats`]: crate::net::Server::stats

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::net::handoff::Handoff;
use crate::net::stats::{stamp, Counters};
use crate::net::WhenFull;
use crate::task::TaskHandle;

/// How long an idle connection asked to close may take to close itself
/// before its handler is cancelled.
pub const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// At most one warning per shard this often when the shard keeps reaching
/// its cap; the episodes in between are logged at debug level.
pub(crate) const WARNING_INTERVAL: Duration = Duration::from_secs(10);

const NIL: u32 = u32::MAX;

/// Where a shard's connection cap comes from, for the log line that says how
/// to raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapOrigin {
    /// Derived from the descriptor limit, which was this.
    Derived { fd_limit: u64 },
    /// Set by `ServerConfig::with_max_connections` or `SHARDLET_MAX_CONNECTIONS`.
    Configured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Busy,
    Idle,
    /// Asked to close while idle: counted in `closing`, cancelled after the grace.
    Closing,
    /// Asked to close, then marked busy: left to finish what it does.
    ClosingBusy,
}

struct Entry {
    generation: u32,
    state: State,
    /// Idle list links (`next` also links the free list).
    prev: u32,
    next: u32,
    /// The task waiting on [`Evicted`].
    waker: Option<Waker>,
    /// The connection's task, to cancel it.
    task: Option<TaskHandle>,
}

struct Table {
    entries: Vec<Entry>,
    free: u32,
    held: usize,
    idle_head: u32,
    idle_tail: u32,
    idle_len: usize,
    /// Entries in [`State::Closing`].
    closing: usize,
    /// Closing entries and when their grace ends, oldest first (entries that
    /// closed meanwhile are skipped).
    grace: VecDeque<(u32, u32, Instant)>,
    /// The server is stopping: a connection that goes idle is asked to close.
    draining: bool,
}

impl Table {
    fn entry(&mut self, key: u32, generation: u32) -> Option<&mut Entry> {
        self.entries
            .get_mut(key as usize)
            .filter(|e| e.generation == generation && e.state != State::Free)
    }

    fn push_idle(&mut self, key: u32) {
        let tail = self.idle_tail;
        {
            let e = &mut self.entries[key as usize];
            e.prev = tail;
            e.next = NIL;
        }
        match tail {
            NIL => self.idle_head = key,
            tail => self.entries[tail as usize].next = key,
        }
        self.idle_tail = key;
        self.idle_len += 1;
    }

    fn unlink_idle(&mut self, key: u32) {
        let (prev, next) = {
            let e = &self.entries[key as usize];
            (e.prev, e.next)
        };
        match prev {
            NIL => self.idle_head = next,
            prev => self.entries[prev as usize].next = next,
        }
        match next {
            NIL => self.idle_tail = prev,
            next => self.entries[next as usize].prev = prev,
        }
        self.idle_len -= 1;
    }

    /// The least recently idle connection, now closing; its waker.
    fn close_oldest_idle(&mut self, grace_until: Instant) -> Option<Option<Waker>> {
        let key = self.idle_head;
        if key == NIL {
            return None;
        }
        self.unlink_idle(key);
        self.closing += 1;
        let e = &mut self.entries[key as usize];
        e.state = State::Closing;
        let waker = e.waker.take();
        let generation = e.generation;
        self.grace.push_back((key, generation, grace_until));
        Some(waker)
    }

    /// Drops grace records of connections that are no longer closing.
    fn prune_grace(&mut self) {
        while let Some(&(key, generation, _)) = self.grace.front() {
            let e = &self.entries[key as usize];
            if e.generation == generation && e.state == State::Closing {
                break;
            }
            self.grace.pop_front();
        }
    }

    fn idle_gauge(&self) -> u64 {
        (self.idle_len + self.closing) as u64
    }
}

/// How a waiting client can get in; see [`Conns::room`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// Below the cap.
    Free,
    /// At the cap, but a connection asked to close will make room.
    Soon,
    /// At the cap; an idle connection can be asked to close.
    Evict,
    /// At the cap, and nothing to evict.
    None,
}

/// One shard's table of connections, shared by its serving loop, its
/// connection tasks and their [`Connection`] handles.
pub(crate) struct Conns {
    table: RefCell<Table>,
    shard: usize,
    cap: usize,
    origin: CapOrigin,
    when_full: WhenFull,
    counters: Arc<Counters>,
    handoff: Option<Arc<Handoff>>,
    /// Bumped by every change the serving loop may wait for.
    epoch: Cell<u64>,
    waiter: Cell<Option<Waker>>,
    full_since: Cell<Option<Instant>>,
    last_warning: Cell<Option<Instant>>,
}

impl Conns {
    pub(crate) fn new(
        shard: usize,
        cap: usize,
        origin: CapOrigin,
        when_full: WhenFull,
        counters: Arc<Counters>,
        handoff: Option<Arc<Handoff>>,
    ) -> Rc<Conns> {
        counters.capacity.store(cap as u64, Ordering::Relaxed);
        Rc::new(Conns {
            table: RefCell::new(Table {
                entries: Vec::new(),
                free: NIL,
                held: 0,
                idle_head: NIL,
                idle_tail: NIL,
                idle_len: 0,
                closing: 0,
                grace: VecDeque::new(),
                draining: false,
            }),
            shard,
            cap,
            origin,
            when_full,
            counters,
            handoff,
            epoch: Cell::new(0),
            waiter: Cell::new(None),
            full_since: Cell::new(None),
            last_warning: Cell::new(None),
        })
    }

    /// The shard this table belongs to.
    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    /// What the serving loop does with clients while full.
    pub(crate) fn when_full(&self) -> WhenFull {
        self.when_full
    }

    /// Connections held now (running, closing ones included).
    pub(crate) fn held(&self) -> usize {
        self.table.borrow().held
    }

    /// How a client waiting now could get in.
    pub(crate) fn room(&self) -> Room {
        let t = self.table.borrow();
        if t.held < self.cap {
            Room::Free
        } else if t.held - t.closing < self.cap {
            Room::Soon
        } else if t.idle_len > 0 {
            Room::Evict
        } else {
            Room::None
        }
    }

    /// Takes an entry for a new connection (the caller checked for room).
    pub(crate) fn insert(self: &Rc<Self>) -> Connection {
        let (key, generation, held) = {
            let mut t = self.table.borrow_mut();
            let key = match t.free {
                NIL => {
                    let key = u32::try_from(t.entries.len()).expect("fewer than 2^32 connections per shard");
                    t.entries.push(Entry {
                        generation: 0,
                        state: State::Free,
                        prev: NIL,
                        next: NIL,
                        waker: None,
                        task: None,
                    });
                    key
                }
                key => {
                    t.free = t.entries[key as usize].next;
                    key
                }
            };
            let e = &mut t.entries[key as usize];
            e.state = State::Busy;
            e.prev = NIL;
            e.next = NIL;
            let generation = e.generation;
            t.held += 1;
            (key, generation, t.held)
        };
        if held == self.cap {
            self.enter_capacity();
        }
        Connection {
            conns: self.clone(),
            key,
            generation,
        }
    }

    /// Remembers the task of `conn`, to cancel it. A task that already
    /// finished (inside its spawn) left no entry: the handle is dropped.
    pub(crate) fn set_task(&self, conn: &Connection, task: TaskHandle) {
        let mut t = self.table.borrow_mut();
        if let Some(e) = t.entry(conn.key, conn.generation) {
            e.task = Some(task);
            return;
        }
        drop(t);
        drop(task);
    }

    /// Frees the entry of a connection that ended, however it ended.
    pub(crate) fn remove(&self, key: u32, generation: u32) {
        let (waker, task, held) = {
            let mut t = self.table.borrow_mut();
            let Some(e) = t.entry(key, generation) else { return };
            let state = e.state;
            let waker = e.waker.take();
            let task = e.task.take();
            e.state = State::Free;
            e.generation = e.generation.wrapping_add(1);
            match state {
                State::Idle => t.unlink_idle(key),
                State::Closing => {
                    t.closing -= 1;
                    t.prune_grace();
                }
                _ => {}
            }
            t.entries[key as usize].next = t.free;
            t.free = key;
            t.held -= 1;
            self.counters.idle.store(t.idle_gauge(), Ordering::Relaxed);
            (waker, task, t.held)
        };
        drop((waker, task));
        if held + 1 == self.cap {
            self.leave_capacity();
        }
        self.counters.live.fetch_sub(1, Ordering::SeqCst);
        if let Some(handoff) = &self.handoff {
            handoff.freed();
        }
        self.notify();
    }

    fn set_idle(&self, key: u32, generation: u32, idle: bool) {
        let mut wake = None;
        let mut news = false;
        {
            let mut t = self.table.borrow_mut();
            let draining = t.draining;
            let Some(e) = t.entry(key, generation) else { return };
            match (e.state, idle) {
                (State::Busy, true) if draining => {
                    e.state = State::Closing;
                    wake = e.waker.take();
                    t.closing += 1;
                }
                (State::Busy, true) => {
                    e.state = State::Idle;
                    t.push_idle(key);
                    news = t.held >= self.cap;
                }
                (State::Idle, false) => {
                    e.state = State::Busy;
                    t.unlink_idle(key);
                }
                (State::Closing, false) => {
                    e.state = State::ClosingBusy;
                    t.closing -= 1;
                    t.prune_grace();
                    news = true;
                }
                (State::ClosingBusy, true) => {
                    e.state = State::Closing;
                    let generation = e.generation;
                    t.closing += 1;
                    t.grace
                        .push_back((key, generation, Instant::now() + EVICTION_GRACE));
                }
                _ => return,
            }
            self.counters.idle.store(t.idle_gauge(), Ordering::Relaxed);
        }
        if let Some(waker) = wake {
            waker.wake();
        }
        if news {
            // A full shard has something to evict now.
            self.notify();
            if let Some(handoff) = &self.handoff {
                handoff.freed();
            }
        }
    }

    /// Asks the least recently idle connection to close, to make room for
    /// a waiting client. False when none is idle.
    pub(crate) fn evict_oldest(&self) -> bool {
        let closed = {
            let mut t = self.table.borrow_mut();
            t.prune_grace();
            let closed = t.close_oldest_idle(Instant::now() + EVICTION_GRACE);
            self.counters.idle.store(t.idle_gauge(), Ordering::Relaxed);
            closed
        };
        let Some(waker) = closed else { return false };
        self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "shardlet::net", shard = self.shard, cap = self.cap, "at the connection cap: asked the longest idle connection to close");
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// When the grace of the oldest closing connection ends.
    pub(crate) fn next_grace(&self) -> Option<Instant> {
        self.table.borrow().grace.front().map(|&(_, _, at)| at)
    }

    /// Cancels the connections asked to close whose grace ended while they
    /// stayed idle; returns how many.
    pub(crate) fn expire_grace(&self, now: Instant) -> usize {
        let mut overdue = Vec::new();
        {
            let mut t = self.table.borrow_mut();
            while let Some(&(key, generation, at)) = t.grace.front() {
                if at > now {
                    break;
                }
                t.grace.pop_front();
                if let Some(e) = t.entry(key, generation) {
                    if e.state == State::Closing {
                        overdue.extend(e.task.take());
                    }
                }
            }
        }
        for task in &overdue {
            task.cancel();
        }
        if !overdue.is_empty() {
            tracing::debug!(target: "shardlet::net", shard = self.shard, cancelled = overdue.len(), grace = ?EVICTION_GRACE, "idle connections did not close when asked; cancelled them");
        }
        overdue.len()
    }

    /// The server is stopping: every idle connection is asked to close, and
    /// so is each that goes idle from now on.
    pub(crate) fn close_idle(&self) {
        let mut wake = Vec::new();
        {
            let mut t = self.table.borrow_mut();
            t.draining = true;
            let far = Instant::now() + EVICTION_GRACE;
            while let Some(waker) = t.close_oldest_idle(far) {
                wake.extend(waker);
            }
            // The serving loop is done: nobody enforces the grace now, the
            // drain deadline does.
            t.grace.clear();
            self.counters.idle.store(t.idle_gauge(), Ordering::Relaxed);
        }
        wake.into_iter().for_each(Waker::wake);
    }

    /// Cancels every connection task; returns how many.
    pub(crate) fn cancel_all(&self) -> usize {
        let tasks: Vec<TaskHandle> = {
            let mut t = self.table.borrow_mut();
            t.entries.iter_mut().filter_map(|e| e.task.take()).collect()
        };
        tasks.iter().for_each(TaskHandle::cancel);
        tasks.len()
    }

    /// Resolves after the next change the serving loop may wait for: a
    /// connection ended, went idle while the shard was full, or stopped
    /// closing.
    pub(crate) fn changed(&self) -> Changed<'_> {
        Changed {
            conns: self,
            seen: self.epoch.get(),
        }
    }

    fn notify(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
    }

    fn enter_capacity(&self) {
        let now = Instant::now();
        self.full_since.set(Some(now));
        let episode = self.counters.at_capacity.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters
            .at_capacity_since
            .store(stamp(now), Ordering::Relaxed);
        let quiet = self
            .last_warning
            .get()
            .is_some_and(|at| now.duration_since(at) < WARNING_INTERVAL);
        let then = match self.when_full {
            WhenFull::Wait => "new clients wait in the listen backlog",
            WhenFull::Close => "new clients are accepted and closed at once (WhenFull::Close)",
        };
        let knob = match self.origin {
            CapOrigin::Derived { fd_limit } => format!(
                "the cap follows the descriptor limit (RLIMIT_NOFILE {fd_limit}, less a reserve, over the shards): \
                 raise `ulimit -n`, or set SHARDLET_MAX_CONNECTIONS or ServerConfig::with_max_connections"
            ),
            CapOrigin::Configured => {
                "raise it with SHARDLET_MAX_CONNECTIONS or ServerConfig::with_max_connections".to_owned()
            }
        };
        if quiet {
            tracing::debug!(target: "shardlet::net", shard = self.shard, cap = self.cap, episode, "at the connection cap again");
        } else {
            self.last_warning.set(Some(now));
            tracing::warn!(
                target: "shardlet::net",
                shard = self.shard,
                cap = self.cap,
                episode,
                "shard {} holds {} connections, its connection cap: {then} until a connection \
                 closes (idle ones marked with Connection::set_idle are closed to make room); {knob}",
                self.shard,
                self.cap,
            );
        }
    }

    fn leave_capacity(&self) {
        let Some(since) = self.full_since.take() else {
            return;
        };
        let spent = since.elapsed();
        self.counters
            .at_capacity_nanos
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        self.counters.at_capacity_since.store(0, Ordering::Relaxed);
        tracing::debug!(target: "shardlet::net", shard = self.shard, cap = self.cap, ?spent, "below the connection cap again");
    }

    fn poll_evicted(&self, key: u32, generation: u32, cx: &Context<'_>) -> Poll<()> {
        let mut t = self.table.borrow_mut();
        let Some(e) = t.entry(key, generation) else {
            return Poll::Ready(()); // the connection is gone
        };
        match e.state {
            State::Closing | State::ClosingBusy => Poll::Ready(()),
            _ => {
                match &e.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => e.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    fn is_evicted(&self, key: u32, generation: u32) -> bool {
        let mut t = self.table.borrow_mut();
        t.entry(key, generation)
            .is_none_or(|e| matches!(e.state, State::Closing | State::ClosingBusy))
    }
}

impl Drop for Conns {
    fn drop(&mut self) {
        self.leave_capacity();
    }
}

/// Future of [`Conns::changed`].
pub(crate) struct Changed<'a> {
    conns: &'a Conns,
    seen: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.conns.epoch.get() != self.seen {
            return Poll::Ready(());
        }
        self.conns.waiter.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

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
            .field("shard", &self.conns.shard)
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
        conns.counters.live.fetch_add(1, Ordering::SeqCst);
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
        assert_eq!(conns.counters.evicted.load(Ordering::Relaxed), 3);
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
        assert_eq!(conns.counters.idle.load(Ordering::Relaxed), 1, "b, closing");
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
        assert_eq!(conns.counters.idle.load(Ordering::Relaxed), 0);
        assert!(!conns.evict_oldest());
        assert_eq!(conns.counters.live.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn episodes_at_capacity_are_counted() {
        let conns = conns(2);
        let (_a, end_a) = open(&conns);
        let (_b, _eb) = open(&conns);
        assert_eq!(conns.counters.at_capacity.load(Ordering::Relaxed), 1);
        assert_ne!(conns.counters.at_capacity_since.load(Ordering::Relaxed), 0);
        drop(end_a);
        assert_eq!(conns.counters.at_capacity_since.load(Ordering::Relaxed), 0);
        let (_c, _ec) = open(&conns);
        assert_eq!(conns.counters.at_capacity.load(Ordering::Relaxed), 2);
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
        assert_eq!(conns.counters.evicted.load(Ordering::Relaxed), 0, "not evictions");
    }
}
