//! The connections one shard holds: the table behind its connection cap
//! and the idle list that eviction takes from. Each handler's handle on its
//! entry is a [`Connection`] (`connection.rs`).
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
//!   becomes *closing* and its [`Evicted`](crate::net::Evicted) future resolves. The handler
//!   closes the connection, the entry is freed, and the waiting client takes
//!   its place. Busy connections are never asked. One whose handler does not
//!   close it within [`EVICTION_GRACE`] while still idle has its task
//!   cancelled (its stream closed), as nginx closes idle keep-alive
//!   connections outright.
//! - **Quiet connections** (`quiet.rs`): a new connection waiting for its
//!   client's first bytes is busy for a quiet period, then idle; the
//!   serving loop runs the one task that turns them idle.
//! - The serving loop waits on [`Conns::changed`]: a connection that ends,
//!   or goes idle while the shard is full, or stops closing, wakes it. Only
//!   the loop waits on it, so it is one waker, not a list.
//! - **Episodes at capacity** (`capacity.rs`): the shard is *at capacity*
//!   while it holds its cap. Each episode is counted, timed and logged once
//!   (a warning naming the cap and the knob that raises it, at most one per
//!   ten seconds; the others at debug level).
//! - **Counters** (`stats.rs`): `live` drops when an entry is freed; `idle`
//!   mirrors the idle and closing entries, for [`Server::stats`] and for the
//!   handoff acceptor, which may send a full shard a client when it has an
//!   idle connection to evict.
//!
//! Everything here is shard-local (`Rc`, `RefCell`); no borrow of the table
//! is held while a waker runs or a task is dropped.
//!
//! [`Server::stats`]: crate::net::Server::stats

pub(crate) mod quiet;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::net::server::capacity::{CapOrigin, Capacity};
use crate::net::server::mailboxes::Handoff;
use crate::net::server::stats::Counters;
use crate::net::{Connection, WhenFull};
use crate::task::TaskHandle;

use quiet::QuietQueue;
pub use quiet::QUIET_PERIOD;

/// How long an idle connection asked to close may take to close itself
/// before its handler is cancelled.
pub const EVICTION_GRACE: Duration = Duration::from_secs(1);

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Busy,
    /// Busy until its quiet period ends, then idle (`quiet.rs`).
    Quiet,
    Idle,
    /// Asked to close while idle: counted in `closing`, cancelled after the grace.
    Closing,
    /// Asked to close, then marked busy: left to finish what it does.
    ClosingBusy,
}

struct Entry {
    generation: u32,
    state: State,
    /// Counts the times the connection was marked quiet: a queue entry of
    /// an earlier period does not end a later one (`quiet.rs`).
    quiet_mark: u16,
    /// Idle list links (`next` also links the free list).
    prev: u32,
    next: u32,
    /// The task waiting on [`Evicted`](crate::net::Evicted).
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
    /// Quiet entries (and some no longer quiet), by the end of their period.
    quiet: QuietQueue,
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
    when_full: WhenFull,
    counters: Arc<Counters>,
    handoff: Option<Arc<Handoff>>,
    /// Bumped by every change the serving loop may wait for.
    epoch: Cell<u64>,
    waiter: Cell<Option<Waker>>,
    /// The task that ages quiet connections, waiting for one (`quiet.rs`).
    ager: Cell<Option<Waker>>,
    capacity: Capacity,
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
                quiet: QuietQueue::default(),
                draining: false,
            }),
            shard,
            cap,
            when_full,
            capacity: Capacity::new(shard, cap, origin, when_full, counters.clone()),
            counters,
            handoff,
            epoch: Cell::new(0),
            waiter: Cell::new(None),
            ager: Cell::new(None),
        })
    }

    /// The shard this table belongs to.
    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    /// The shard's counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
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
                        quiet_mark: 0,
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
            self.capacity.enter();
        }
        Connection::new(self.clone(), key, generation)
    }

    /// Remembers the task of `conn`, to cancel it. A task that already
    /// finished (inside its spawn) left no entry: the handle is dropped.
    pub(crate) fn set_task(&self, conn: &Connection, task: TaskHandle) {
        let mut t = self.table.borrow_mut();
        let (key, generation) = conn.key();
        if let Some(e) = t.entry(key, generation) {
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
            self.capacity.leave();
        }
        self.counters.live.fetch_sub(1, Ordering::SeqCst);
        if let Some(handoff) = &self.handoff {
            handoff.freed();
        }
        self.notify();
    }

    pub(crate) fn set_idle(&self, key: u32, generation: u32, idle: bool) {
        let mut wake = None;
        let mut news = false;
        {
            let mut t = self.table.borrow_mut();
            let draining = t.draining;
            let Some(e) = t.entry(key, generation) else { return };
            match (e.state, idle) {
                (State::Quiet, false) => {
                    // Heard from: busy like any other (its queue entry is
                    // skipped when its turn comes).
                    e.state = State::Busy;
                    return;
                }
                (State::Busy | State::Quiet, true) if draining => {
                    e.state = State::Closing;
                    wake = e.waker.take();
                    t.closing += 1;
                }
                (State::Busy | State::Quiet, true) => {
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
                    // A new grace to watch: a serving loop that waits for room
                    // saw none when it began to wait, and must wake to time it.
                    news = true;
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
            // Quiet ones too: a client that has not spoken yet has nothing
            // in flight.
            let quiet: Vec<_> = t.quiet.take_all().collect();
            for (key, generation) in quiet {
                if let Some(e) = t.entry(key, generation).filter(|e| e.state == State::Quiet) {
                    e.state = State::Closing;
                    wake.extend(e.waker.take());
                    t.closing += 1;
                }
            }
            // The serving loop is done: nobody enforces the grace now, the
            // drain deadline does.
            t.grace.clear();
            self.counters.idle.store(t.idle_gauge(), Ordering::Relaxed);
        }
        crate::sync::wakers::wake_all(wake);
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

    pub(crate) fn poll_evicted(&self, key: u32, generation: u32, cx: &Context<'_>) -> Poll<()> {
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

    pub(crate) fn is_evicted(&self, key: u32, generation: u32) -> bool {
        let mut t = self.table.borrow_mut();
        t.entry(key, generation)
            .is_none_or(|e| matches!(e.state, State::Closing | State::ClosingBusy))
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
