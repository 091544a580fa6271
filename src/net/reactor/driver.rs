//! The shard's readiness driver: one edge-triggered epoll instance per
//! shard, so that a connection waits on one registration made when it
//! opens, instead of one io_uring poll armed (and completed, and freed)
//! after every read that found the socket empty.
//!
//! # How it works
//!
//! - Each socket is registered once, edge-triggered, for
//!   `EPOLLIN | EPOLLOUT | EPOLLRDHUP`; its slot in a [`Slab`] holds a
//!   [`ScheduledIo`]: read/write readiness flags and the waker of the task
//!   waiting on each direction. The epoll event carries the slot's
//!   [`Token`].
//! - A *driver task* on the shard (spawned with the first registration, gone
//!   after the last) repeats: `epoll_wait` with timeout 0 for up to
//!   [`EVENTS`] events, set each registration's flags and wake its waiting
//!   tasks, then yield so that those tasks run. After [`YIELDS`] rounds in a
//!   row with events, or once rounds have found nothing for the shard's spin
//!   window (`SHARDLET_SPIN_US`, 50 µs), it parks on the epoll descriptor's
//!   readability through glommio ([`park::Readable`]): an idle shard sleeps
//!   in io_uring like any other, and glommio's own event loop (io_uring
//!   completions such as accepts and cross-shard wake-ups) gets its turn.
//! - Why spin before parking: on loopback (and for any peer on the same
//!   machine) the *sender* pays for waking the receiver. While the driver
//!   polls, a peer's write only queues an epoll event; while it is parked,
//!   the write also completes an io_uring poll and wakes this thread. A
//!   shard with spare CPU spends a little of it so that its peers do not.
//! - Streams ([`TcpStream`](crate::net::TcpStream)) try the syscall while their
//!   flag is set and clear it when the socket says `EAGAIN` (or a read or
//!   write came back short, which means the socket is drained); edge
//!   triggering then guarantees an event for the next data.
//! - "Closed" flags (peer hang-up, error) stay set until the socket itself
//!   says `EAGAIN`: a reader past a hang-up gets EOF or the error at once
//!   instead of waiting forever, and a non-fatal `EPOLLERR` (an error-queue
//!   entry on a live socket) does not make reads spin.
//! - Several tasks may wait on one direction of one socket (green threads
//!   accepting on one listener): each is remembered and woken.
//!
//! Everything is shard-local (`Rc`, `Cell`): the driver and the streams run
//! on the same thread, so a flag can only change while the driver runs, never
//! between a stream's check and its waker registration.
//!
//! The reactor belongs to one glommio executor: a thread that runs several
//! executors one after the other gets a fresh reactor for each.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use crate::net::reactor::park;
use crate::net::reactor::slab::{Slab, Token};

/// Most events taken from epoll in one round.
pub(crate) const EVENTS: usize = 1024;

/// Most rounds in a row the driver yields (instead of parking through
/// glommio) while it keeps finding events; then it parks once, which lets
/// glommio's own loop poll its rings when nothing else on the shard is
/// runnable. The value is not sensitive.
///
/// A known limit, shared with glommio's own streams: while some other task
/// on the shard is always runnable, glommio polls its rings only when its
/// preemption timer fires (100 ms by default), so a *parked* driver can see
/// its wake-up that late. A spinning driver is not affected.
pub(crate) const YIELDS: u32 = 8;

/// After a failed `dup` (out of descriptors) the driver polls on this timer
/// until it can park again.
const PARK_RETRY: Duration = Duration::from_millis(1);

const READABLE: u8 = 1;
const WRITABLE: u8 = 2;
const READ_CLOSED: u8 = 4;
const WRITE_CLOSED: u8 = 8;

/// A direction of readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    /// The flags that make this direction ready.
    fn ready_mask(self) -> u8 {
        match self {
            Direction::Read => READABLE | READ_CLOSED,
            Direction::Write => WRITABLE | WRITE_CLOSED,
        }
    }

    /// The flag a drained socket clears.
    fn clear_mask(self) -> u8 {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }
}

/// The readiness of one registered socket and the tasks waiting on it.
#[derive(Default)]
pub(crate) struct ScheduledIo {
    bits: Cell<u8>,
    reader: Waiters,
    writer: Waiters,
}

/// The tasks waiting for one direction of one socket. Usually one (a stream
/// has one reader and one writer), kept without allocating; more when
/// several tasks share the socket (green threads accepting on one
/// listener), each of which must be woken: a second waiter must not push the
/// first one out.
#[derive(Default)]
struct Waiters {
    first: Cell<Option<Waker>>,
    more: RefCell<Vec<Waker>>,
}

impl Waiters {
    /// Remembers `waker` (once: a task polled again is not added twice).
    fn add(&self, waker: &Waker) {
        match self.first.take() {
            None => self.first.set(Some(waker.clone())),
            Some(first) => {
                let known = first.will_wake(waker);
                self.first.set(Some(first));
                if !known {
                    let mut more = self.more.borrow_mut();
                    if !more.iter().any(|w| w.will_wake(waker)) {
                        more.push(waker.clone());
                    }
                }
            }
        }
    }

    /// Moves every waiting task into `wake`.
    fn take_into(&self, wake: &mut Vec<Waker>) {
        wake.extend(self.first.take());
        let mut more = self.more.borrow_mut();
        if !more.is_empty() {
            wake.append(&mut more);
        }
    }
}

impl std::fmt::Debug for ScheduledIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledIo")
            .field("bits", &self.bits.get())
            .finish_non_exhaustive()
    }
}

impl ScheduledIo {
    fn waiters(&self, direction: Direction) -> &Waiters {
        match direction {
            Direction::Read => &self.reader,
            Direction::Write => &self.writer,
        }
    }

    /// Sets `bits` and moves the wakers of the directions they make ready
    /// into `wake`.
    fn set(&self, bits: u8, wake: &mut Vec<Waker>) {
        self.bits.set(self.bits.get() | bits);
        for direction in [Direction::Read, Direction::Write] {
            if bits & direction.ready_mask() != 0 {
                self.waiters(direction).take_into(wake);
            }
        }
    }
}

/// Counters of one shard's readiness driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadyStats {
    /// Sockets registered now.
    pub registrations: usize,
    /// `epoll_wait` calls.
    pub rounds: u64,
    /// Events those calls returned.
    pub events: u64,
    /// Times the driver parked through glommio (an io_uring poll on the
    /// epoll descriptor).
    pub parks: u64,
    /// Driver tasks started (one per stretch with registrations).
    pub drivers: u64,
}

/// One shard's epoll instance, registrations and driver state.
pub(crate) struct Reactor {
    executor: usize,
    epoll: Epoll,
    slab: RefCell<Slab<Rc<ScheduledIo>>>,
    events: RefCell<Vec<EpollEvent>>,
    wake: RefCell<Vec<Waker>>,
    /// A driver task is running on this executor.
    driving: Cell<bool>,
    /// The parked driver's waker, so that the last deregistration can end it.
    parked: RefCell<Option<Waker>>,
    /// Parking failed for want of a descriptor (logged once per episode).
    cannot_park: Cell<bool>,
    /// The duplicate of the epoll descriptor the next park waits on, taken
    /// as the last one closed: a process out of descriptors still parks.
    spare: RefCell<Option<OwnedFd>>,
    /// How long rounds that find nothing go on before the driver parks.
    spin: Duration,
    stats: Cell<ReadyStats>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("executor", &self.executor)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
}

impl Reactor {
    /// The current executor's reactor, made on first use.
    ///
    /// # Panics
    ///
    /// Outside a glommio executor.
    pub(crate) fn current() -> io::Result<Rc<Reactor>> {
        let executor = glommio::executor().id();
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            match &*current {
                Some(reactor) if reactor.executor == executor => Ok(reactor.clone()),
                _ => {
                    let reactor = Rc::new(Reactor::new(executor)?);
                    *current = Some(reactor.clone());
                    Ok(reactor)
                }
            }
        })
    }

    /// The current executor's counters; zeros when it has no reactor yet.
    pub(crate) fn current_stats() -> ReadyStats {
        let executor = glommio::executor().id();
        CURRENT.with(|current| match &*current.borrow() {
            Some(reactor) if reactor.executor == executor => reactor.stats(),
            _ => ReadyStats::default(),
        })
    }

    fn new(executor: usize) -> io::Result<Reactor> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        // The first park's duplicate, taken now: the process may be out of
        // descriptors by the time the driver first runs out of work.
        let spare = epoll.0.try_clone()?;
        Ok(Reactor {
            executor,
            epoll,
            slab: RefCell::new(Slab::default()),
            events: RefCell::new(vec![EpollEvent::empty(); EVENTS]),
            wake: RefCell::new(Vec::new()),
            driving: Cell::new(false),
            parked: RefCell::new(None),
            cannot_park: Cell::new(false),
            spare: RefCell::new(Some(spare)),
            spin: crate::config::current::config().map_or(Duration::ZERO, |c| c.spin()),
            stats: Cell::new(ReadyStats::default()),
        })
    }

    fn stats(&self) -> ReadyStats {
        ReadyStats {
            registrations: self.slab.borrow().len(),
            ..self.stats.get()
        }
    }

    fn count(&self, f: impl FnOnce(&mut ReadyStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// Registers `fd` (edge-triggered, both directions) and starts the
    /// driver if none runs.
    fn register(self: &Rc<Self>, fd: BorrowedFd<'_>) -> io::Result<(Token, Rc<ScheduledIo>)> {
        // The flags start clear; the registration itself queues an event
        // for whatever the socket is ready for now.
        let io = Rc::new(ScheduledIo::default());
        let token = self.slab.borrow_mut().insert(io.clone());
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        if let Err(errno) = self.epoll.add(fd, EpollEvent::new(flags, token)) {
            self.slab.borrow_mut().remove(token);
            return Err(errno.into());
        }
        if !self.driving.get() {
            self.driving.set(true);
            self.count(|s| s.drivers += 1);
            // Into the executor's default task queue, whatever queue the
            // first socket's task runs in: network readiness for the whole
            // shard must not inherit one user queue's share.
            glommio::spawn_local_into(drive(self.clone()), glommio::TaskQueueHandle::default())
                .expect("an executor's default task queue always exists")
                .detach();
        }
        Ok((token, io))
    }

    /// Forgets `token`; `fd`, when given, is taken out of the epoll set
    /// first. The last deregistration wakes a parked driver so it can end.
    fn deregister(&self, token: Token, fd: Option<BorrowedFd<'_>>) {
        if let Some(fd) = fd {
            if let Err(errno) = self.epoll.delete(fd) {
                tracing::debug!(target: "shardlet::net", %errno, "epoll: deregistering a socket failed");
            }
        }
        let empty = {
            let mut slab = self.slab.borrow_mut();
            slab.remove(token);
            slab.len() == 0
        };
        if empty {
            if let Some(driver) = self.parked.borrow_mut().take() {
                driver.wake();
            }
        }
    }

    /// One `epoll_wait` without blocking: sets flags and wakes waiting
    /// tasks. Returns the number of events.
    fn turn(&self) -> usize {
        let mut events = self.events.borrow_mut();
        let n = match self.epoll.wait(&mut events, 0) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(errno) => {
                tracing::error!(target: "shardlet::net", %errno, "epoll_wait failed");
                0
            }
        };
        self.count(|s| {
            s.rounds += 1;
            s.events += n as u64;
        });
        if n == 0 {
            return 0;
        }
        let mut wake = std::mem::take(&mut *self.wake.borrow_mut());
        {
            let slab = self.slab.borrow();
            for event in &events[..n] {
                if let Some(io) = slab.get(event.data()) {
                    io.set(bits(event.events()), &mut wake);
                }
            }
        }
        drop(events);
        // Every waker is woken even if one panics; nothing above the
        // driver could handle that panic (it would end the shard): logged.
        crate::sync::wakers::wake_all(wake.drain(..));
        *self.wake.borrow_mut() = wake;
        n
    }

    /// Waits until the epoll descriptor is readable (or the last
    /// registration is gone), through an io_uring poll.
    async fn park(&self) {
        self.count(|s| s.parks += 1);
        let spare = self.spare.borrow_mut().take();
        let fd = match spare.map_or_else(|| self.epoll.0.try_clone(), Ok) {
            Ok(fd) => {
                if self.cannot_park.replace(false) {
                    tracing::info!(target: "shardlet::net", "epoll driver parks again");
                }
                fd
            }
            Err(err) => {
                if !self.cannot_park.replace(true) {
                    tracing::warn!(target: "shardlet::net", error = %err, "epoll driver cannot park (dup failed); polling every {PARK_RETRY:?} until it can");
                }
                glommio::timer::sleep(PARK_RETRY).await;
                return;
            }
        };
        let mut readable = park::Readable::new(fd);
        futures_lite::future::poll_fn(|cx| {
            if self.slab.borrow().len() == 0 || Pin::new(&mut readable).poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut parked = self.parked.borrow_mut();
            match &*parked {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *parked = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await;
        self.parked.borrow_mut().take();
        // Close this wait's duplicate and take the next one at once, before
        // any other task can take the descriptor it frees (`dup` returns the
        // lowest free one): out of descriptors (EMFILE), the driver still
        // parks instead of polling every `PARK_RETRY`.
        drop(readable);
        *self.spare.borrow_mut() = self.epoll.0.try_clone().ok();
    }
}

/// The readiness flags an epoll event sets.
fn bits(events: EpollFlags) -> u8 {
    let mut bits = 0;
    if events.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLPRI) {
        bits |= READABLE;
    }
    if events.contains(EpollFlags::EPOLLOUT) {
        bits |= WRITABLE;
    }
    if events.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
        bits |= READ_CLOSED;
    }
    if events.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
        bits |= WRITE_CLOSED;
    }
    bits
}

/// The driver task: runs while the reactor has registrations.
async fn drive(reactor: Rc<Reactor>) {
    // glommio runs a task spawned from its own queue at once, inside
    // `spawn_local`: let the registration that started the driver finish
    // first.
    futures_lite::future::yield_now().await;
    let mut yielded = 0;
    let mut idle_since: Option<Instant> = None;
    while reactor.slab.borrow().len() > 0 {
        let spin = if reactor.turn() > 0 {
            idle_since = None;
            yielded += 1;
            yielded <= YIELDS
        } else {
            yielded = 0; // "in a row": an empty round ends the run
            let since = *idle_since.get_or_insert_with(Instant::now);
            since.elapsed() < reactor.spin
        };
        if spin {
            futures_lite::future::yield_now().await;
        } else {
            yielded = 0;
            idle_since = None;
            reactor.park().await;
        }
    }
    reactor.driving.set(false);
}

/// One socket's registration with the shard's reactor; owned by the stream
/// that reads and writes the socket.
pub(crate) struct Registration {
    reactor: Rc<Reactor>,
    io: Rc<ScheduledIo>,
    token: Token,
    registered: bool,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("token", &self.token)
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Registers `fd` with the current shard's reactor. With `ready`, both
    /// directions start ready (the first read or write tries the syscall);
    /// without, the first wait is for a real event (a `connect` in
    /// progress is not writable yet).
    ///
    /// # Panics
    ///
    /// Outside a glommio executor.
    pub(crate) fn new(fd: BorrowedFd<'_>, ready: bool) -> io::Result<Registration> {
        let reactor = Reactor::current()?;
        let (token, io) = reactor.register(fd)?;
        if ready {
            // Events can only have set flags, never cleared them: or them in.
            io.bits.set(io.bits.get() | READABLE | WRITABLE);
        }
        Ok(Registration {
            reactor,
            io,
            token,
            registered: true,
        })
    }

    /// Ready when `direction` may make progress; otherwise remembers the
    /// task to wake.
    #[inline]
    pub(crate) fn poll_ready(&self, direction: Direction, cx: &Context<'_>) -> Poll<()> {
        if self.io.bits.get() & direction.ready_mask() != 0 {
            return Poll::Ready(());
        }
        self.io.waiters(direction).add(cx.waker());
        Poll::Pending
    }

    /// Whether `direction` may make progress now (no waker is registered).
    #[inline]
    pub(crate) fn is_ready(&self, direction: Direction) -> bool {
        self.io.bits.get() & direction.ready_mask() != 0
    }

    /// Ready once the peer has hung up (or the socket failed), even while
    /// data it sent before waits to be read; otherwise remembers the task
    /// to wake (at the socket's next read event).
    pub(crate) fn poll_read_closed(&self, cx: &Context<'_>) -> Poll<()> {
        if self.io.bits.get() & READ_CLOSED != 0 {
            return Poll::Ready(());
        }
        self.io.waiters(Direction::Read).add(cx.waker());
        Poll::Pending
    }

    /// A read or write came back short: the socket is drained in
    /// `direction`, wait for the next edge.
    #[inline]
    pub(crate) fn clear(&self, direction: Direction) {
        self.io.bits.set(self.io.bits.get() & !direction.clear_mask());
    }

    /// The socket said `EAGAIN` in `direction`: drained, and not closed
    /// either, whatever an event said. (An `EPOLLERR` need not be fatal: an
    /// entry on the socket's error queue, a transmit timestamp or a
    /// zero-copy completion, raises it on a live socket. Kept, its "closed"
    /// flag would make every read try again at once, forever, and freeze
    /// the shard. A real hang-up or reset never answers `EAGAIN`, and a
    /// later one raises a new edge.)
    #[inline]
    pub(crate) fn would_block(&self, direction: Direction) {
        self.io.bits.set(self.io.bits.get() & !direction.ready_mask());
    }

    /// Takes `fd` out of the epoll set and forgets the registration.
    pub(crate) fn deregister(&mut self, fd: BorrowedFd<'_>) {
        if std::mem::replace(&mut self.registered, false) {
            self.reactor.deregister(self.token, Some(fd));
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.registered {
            // The owner did not say which descriptor. Closing it takes it
            // out of the epoll set only if it is the socket's last
            // descriptor (a `dup` keeps it in): owners deregister with the
            // descriptor before they close it, and this path is a backstop.
            self.reactor.deregister(self.token, None);
        }
    }
}

/// The readiness driver's counters on the current shard (diagnostics: how
/// many sockets are registered, how many events a round finds).
///
/// # Panics
///
/// Outside a shard (a glommio executor).
///
/// # Examples
///
/// ```
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// assert_eq!(shardlet::net::ready_stats().registrations, 0);
/// # }).unwrap();
/// ```
pub fn ready_stats() -> ReadyStats {
    Reactor::current_stats()
}
