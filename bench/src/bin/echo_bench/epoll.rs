//! The default load engine: plain threads on raw epoll, so that the client
//! spends as little CPU per message as a client can (one `read`, one
//! `write` and a share of one `epoll_wait` per round trip, no executor, no
//! task wake-ups) and the server, not the client, sets the pace.
//!
//! Contract with `main.rs` and `monitor.rs`: the same [`Plan`], [`Shared`]
//! and phases as the glommio engine (`load.rs`): connect (paced), wait for
//! the monitor's `go`, run closed-loop ping-pong until `end`, leave every
//! connection open and idle until the monitor's `close` (or the deadline),
//! then close each one cleanly. One thread per client CPU (each pinned to
//! it); thread `t` of `n` owns connections `t, t + n, ...`. Each returns a
//! [`ShardOutcome`].
//!
//! Sockets are level-triggered for reading; writing waits on `EPOLLOUT`
//! only after a short write (large messages).
//!
//! Open loop (`--rate`, see `pacing.rs`): a paced connection whose next
//! message is not due yet waits in a heap of due times, and the thread's
//! `epoll_pwait2` (a timeout to the nanosecond, Linux 5.11) wakes for the
//! earliest one: no more system calls per message than the closed loop's,
//! plus its share of one wait. On an older kernel a `timerfd` in the same
//! epoll set does it instead (two more calls per wake-up: arm, read).
//! With `--tick-us` the thread instead wakes once per tick, sends what fell
//! due and takes what came back without waiting: far fewer sleeps and
//! wake-ups at high rates, for up to a tick of lateness at each end.
//! Each message's latency runs from its intended send time. In a
//! skewed load (`--heavy-fraction`) the heavy connections run closed loop
//! with their larger messages, into a histogram of their own.
//!
//! The heavy connections sit in an epoll set of their own, nested in the
//! thread's main set, and each turn of the loop takes at most
//! [`HEAVY_CHUNK`] of their events, after the paced connections' due sends
//! and events. Otherwise the client itself would make a light message wait:
//! one `epoll_wait` returns up to [`EVENTS`] heavy echoes (4 KiB each), and a
//! paced send that comes due, or a light echo that arrives, would wait until
//! the thread had read and rewritten all of them (milliseconds when the
//! client is busy). A light client on a machine of its own has no such
//! queue; the figures should show the server's, not the load client's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::load::{backoff, fill, new_histogram, Errors, Plan, ShardOutcome, Shared};
use crate::pacing::{latency, Pacing};

/// The epoll token of the pacing timer (connections use their index).
const TIMER: u64 = u64::MAX;

/// The main set's token for the nested set of the heavy connections.
const HEAVY: u64 = u64::MAX - 1;

/// Most heavy connections' events handled per turn of the loop, between
/// looks at the paced connections (see the module docs).
const HEAVY_CHUNK: usize = 32;

/// Events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// How a connection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Closed loop: the next message as soon as the answer is back.
    Closed,
    /// Open loop: on the schedule of `pacing.rs`.
    Paced,
    /// Closed loop with larger messages, in a skewed load.
    Heavy,
}

/// One connection's state.
struct Conn {
    stream: TcpStream,
    id: u64,
    kind: Kind,
    seq: u64,
    /// The message in flight.
    out: Box<[u8]>,
    /// Bytes of it written, and echoed back so far.
    written: usize,
    got: usize,
    /// When the message in flight (or, for a paced connection waiting for
    /// its turn, the next one) was meant to go: latency runs from here.
    intended: Instant,
    /// Waiting for `EPOLLOUT` (a short write).
    want_write: bool,
    /// Done with the load: open and idle, or broken.
    finished: bool,
    /// Broken (an error was counted): closed already.
    broken: bool,
}

/// Runs the load on one thread per entry of `cpus` and returns each one's outcome.
pub fn run(plan: &Plan, shared: &Arc<Shared>, cpus: &[Option<usize>]) -> Vec<ShardOutcome> {
    let threads: Vec<_> = cpus
        .iter()
        .enumerate()
        .map(|(t, &cpu)| {
            let (plan, shared, n) = (plan.clone(), shared.clone(), cpus.len());
            std::thread::Builder::new()
                .name(format!("echo-load-{t}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                    }
                    thread_main(&plan, &shared, t, n)
                })
                .expect("spawn a load thread")
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a load thread panicked"))
        .collect()
}

/// Everything one thread does; see the module docs.
fn thread_main(plan: &Plan, shared: &Shared, me: usize, threads: usize) -> ShardOutcome {
    let mut errors = Errors::default();
    // Phase 1: paced connects.
    let began = Instant::now();
    let rate = plan.connect_rate / threads as f64;
    let mut conns = Vec::new();
    let mut connect_failed = 0;
    for (k, id) in (me..plan.connections).step_by(threads).enumerate() {
        let due = began + Duration::from_secs_f64(k as f64 / rate);
        let now = Instant::now();
        if due > now + Duration::from_millis(1) {
            std::thread::sleep(due - now);
        }
        match connect(plan, shared, id) {
            Some(stream) => conns.push(Conn {
                stream,
                id: id as u64,
                kind: match (plan.is_heavy(id), plan.rate) {
                    (true, _) => Kind::Heavy,
                    (false, Some(_)) => Kind::Paced,
                    (false, None) => Kind::Closed,
                },
                seq: 0,
                out: vec![
                    0u8;
                    plan.heavy
                        .filter(|_| plan.is_heavy(id))
                        .map_or(plan.size, |h| h.size)
                ]
                .into_boxed_slice(),
                written: 0,
                got: 0,
                intended: began,
                want_write: false,
                finished: false,
                broken: false,
            }),
            None => connect_failed += 1,
        }
    }
    let connect_time = began.elapsed();

    // Phase 2: wait for the monitor's go (every thread connected, the
    // server's resident set sampled with all connections open and unused).
    shared.shards_ready.fetch_add(1, Relaxed);
    while !shared.go.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = *shared.start.get_or_init(Instant::now);
    let window = (start + plan.warmup, start + plan.warmup + plan.duration);

    // Phase 3: ping-pong until the end of the window.
    let pacing = plan.pacing();
    if pacing.is_some() {
        // Timers due in microseconds: no 50 µs of slack on top of each.
        let _ = nix::sys::prctl::set_timerslack(1);
    }
    let mut load = Load {
        shared,
        window,
        start,
        pacing,
        waiting: BinaryHeap::new(),
        histogram: new_histogram(),
        heavy_histogram: new_histogram(),
        measured: 0,
        total: 0,
        errors: &mut errors,
        scratch: vec![0u8; plan.size.max(plan.heavy.map_or(0, |h| h.size)) + 1],
    };
    let sets = Sets {
        main: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1"),
        heavy: plan
            .heavy
            .map(|_| Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1")),
    };
    if let Some(heavy) = &sets.heavy {
        sets.main
            .add(heavy.0.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, HEAVY))
            .expect("epoll_ctl(heavy set)");
    }
    let epoll = &sets.main;
    let timer = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )
    .expect("timerfd_create");
    epoll
        .add(timer.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TIMER))
        .expect("epoll_ctl(timerfd)");
    let mut armed: Option<Instant> = None;
    // `epoll_pwait2` until the kernel says it has none.
    let mut precise = true;
    let mut tick_at = Instant::now();
    for (token, conn) in conns.iter_mut().enumerate() {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, token as u64);
        if let Err(err) = sets.of(conn).add(conn.stream.as_fd(), event) {
            load.fail(conn, |k| k.io += 1, format!("epoll_ctl: {err}"));
        } else if let (Kind::Paced, Some(pacing)) = (conn.kind, load.pacing) {
            load.schedule(token, conn, pacing.due(start, conn.id, 0));
        } else {
            conn.intended = Instant::now();
            load.start_message(sets.of(conn), token, conn);
        }
        if conn.finished {
            let _ = sets.of(conn).delete(conn.stream.as_fd());
            shared.finished_load.fetch_add(1, Relaxed);
        }
    }
    let mut open = conns.iter().filter(|c| !c.finished).count();
    let mut events = vec![EpollEvent::empty(); EVENTS];
    let deadline = window.1 + plan.drain;
    while open > 0 {
        // In ticks: sleep to the next one, then take what is due and ready
        // without waiting (below).
        if let Some(tick) = plan.tick {
            tick_at += tick;
            let now = Instant::now();
            match tick_at.checked_duration_since(now) {
                Some(left) => std::thread::sleep(left),
                None => tick_at = now, // behind: no catching up in a burst
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Paced connections whose turn has come send now (or, past the
        // window, go idle).
        while let Some(&Reverse((due, token))) = load.waiting.peek() {
            if due > now {
                break;
            }
            load.waiting.pop();
            let conn = &mut conns[token];
            if conn.finished {
                continue; // broke while it waited: counted then
            }
            if due >= window.1 {
                conn.finished = true;
            } else {
                load.start_message(sets.of(conn), token, conn);
            }
            if conn.finished {
                let _ = sets.of(conn).delete(conn.stream.as_fd());
                open -= 1;
                shared.finished_load.fetch_add(1, Relaxed);
            }
        }
        let next = load.waiting.peek().map(|&Reverse((due, _))| due);
        let wait = if plan.tick.is_some() {
            Duration::ZERO
        } else {
            (deadline - now).min(Duration::from_millis(100))
        };
        let mut waited = None;
        if precise {
            let until_due = next.map_or(wait, |due| due.saturating_duration_since(now).min(wait));
            waited = wait_precise(epoll, &mut events, until_due);
            precise = waited.is_some();
        }
        let waited = waited.unwrap_or_else(|| {
            if let Some(due) = next {
                if armed != Some(due) {
                    let left = TimeSpec::from_duration(
                        due.saturating_duration_since(now).max(Duration::from_micros(1)),
                    );
                    timer
                        .set(Expiration::OneShot(left), TimerSetTimeFlags::empty())
                        .expect("timerfd_settime");
                    armed = Some(due);
                }
            }
            let millis = if wait.is_zero() {
                0
            } else {
                wait.as_millis().max(1)
            };
            epoll.wait(&mut events, millis as isize)
        });
        let n = match waited {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(err) => panic!("epoll_wait: {err}"),
        };
        let before = load.total;
        let mut heavy_ready = false;
        for event in &events[..n] {
            match event.data() {
                TIMER => {
                    let _ = timer.wait(); // clears the expiry; the heap says who is due
                    armed = None;
                }
                HEAVY => heavy_ready = true,
                token => {
                    open -= load.handle(&sets, &mut conns[token as usize], token as usize, event.events())
                }
            }
        }
        if let (true, Some(heavy)) = (heavy_ready, &sets.heavy) {
            let n = match heavy.wait(&mut events[..HEAVY_CHUNK], 0) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(err) => panic!("epoll_wait: {err}"),
            };
            for event in &events[..n] {
                let token = event.data() as usize;
                open -= load.handle(&sets, &mut conns[token], token, event.events());
            }
        }
        shared.messages.fetch_add(load.total - before, Relaxed);
    }
    let stalled = conns.iter().filter(|c| !c.finished).count();
    if stalled > 0 {
        load.errors.stalled += stalled as u64;
        shared.note_error(
            stalled as u64,
            format!(
                "{stalled} connection(s) still busy {:?} after the end",
                plan.drain
            ),
        );
    }
    let (histogram, heavy_histogram, measured, total) =
        (load.histogram, load.heavy_histogram, load.measured, load.total);
    drop(sets);

    // Phase 4: idle until the monitor has sampled the server, then close.
    let idle_until = Instant::now() + plan.drain;
    while !shared.close.load(Relaxed) && Instant::now() < idle_until {
        std::thread::sleep(Duration::from_millis(5));
    }
    close_all(&conns, plan, shared, &mut errors);
    ShardOutcome {
        histogram,
        heavy_histogram,
        connected: conns.len(),
        connect_failed,
        measured,
        total,
        errors,
        connect_time,
    }
}

/// A thread's epoll sets: the main one (the timer, the paced or
/// closed-loop connections, and the heavy set), and in a skewed load the
/// heavy connections' own (see the module docs).
struct Sets {
    main: Epoll,
    heavy: Option<Epoll>,
}

impl Sets {
    /// The set `conn` is in.
    fn of(&self, conn: &Conn) -> &Epoll {
        match (&self.heavy, conn.kind) {
            (Some(heavy), Kind::Heavy) => heavy,
            _ => &self.main,
        }
    }
}

/// Waits up to `timeout` for events, to the nanosecond (`epoll_pwait2`);
/// `None` where the kernel lacks that call (before Linux 5.11).
fn wait_precise(epoll: &Epoll, events: &mut [EpollEvent], timeout: Duration) -> Option<Result<usize, Errno>> {
    let timeout = nix::libc::timespec {
        tv_sec: timeout.as_secs() as nix::libc::time_t,
        tv_nsec: timeout.subsec_nanos() as nix::libc::c_long,
    };
    let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
    // SAFETY: `events` is a writable buffer of `max` `epoll_event`s
    // (`EpollEvent` is `repr(transparent)` over one), `timeout` outlives the
    // call, and a null signal mask leaves the thread's mask alone.
    let n = unsafe {
        nix::libc::epoll_pwait2(
            epoll.0.as_raw_fd(),
            events.as_mut_ptr().cast(),
            max,
            &timeout,
            std::ptr::null(),
        )
    };
    match usize::try_from(n) {
        Ok(n) => Some(Ok(n)),
        Err(_) => match Errno::last() {
            Errno::ENOSYS => None,
            errno => Some(Err(errno)),
        },
    }
}

/// One thread's ping-pong state.
struct Load<'a> {
    shared: &'a Shared,
    window: (Instant, Instant),
    /// When the load started: the schedule's origin.
    start: Instant,
    pacing: Option<Pacing>,
    /// Paced connections waiting for their next message's turn: (due, token).
    waiting: BinaryHeap<Reverse<(Instant, usize)>>,
    histogram: Histogram<u64>,
    heavy_histogram: Histogram<u64>,
    measured: u64,
    total: u64,
    errors: &'a mut Errors,
    /// Where echoes are read to (one byte more than a message, so a server
    /// that sends too much is caught).
    scratch: Vec<u8>,
}

impl Load<'_> {
    /// Handles one epoll event of `conn`: more of its message written, its
    /// echo read. Returns 1 when that finished the connection (it leaves
    /// its set then), 0 otherwise.
    fn handle(&mut self, sets: &Sets, conn: &mut Conn, token: usize, flags: EpollFlags) -> usize {
        if conn.finished {
            return 0;
        }
        let epoll = sets.of(conn);
        if conn.want_write
            && flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
        {
            self.write_more(epoll, token, conn);
        }
        if !conn.finished
            && flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
        {
            self.read_echo(epoll, token, conn);
        }
        if !conn.finished {
            return 0;
        }
        // Idle (or broken) from now on: out of the epoll set, so that
        // nothing it might still raise wakes this loop.
        let _ = epoll.delete(conn.stream.as_fd());
        self.shared.finished_load.fetch_add(1, Relaxed);
        1
    }

    /// Sets `conn`'s next message for `due`: at once when that has come
    /// (a connection that fell behind sends at once, its clock already
    /// running), later through the heap; past the window, the connection
    /// goes idle instead.
    fn schedule(&mut self, token: usize, conn: &mut Conn, due: Instant) {
        conn.intended = due;
        if due >= self.window.1 {
            conn.finished = true;
        } else {
            self.waiting.push(Reverse((due, token)));
        }
    }

    /// Fills message `conn.seq` and writes it; a short write waits for `EPOLLOUT`.
    fn start_message(&mut self, epoll: &Epoll, token: usize, conn: &mut Conn) {
        fill(&mut conn.out, conn.id, conn.seq);
        conn.written = 0;
        conn.got = 0;
        self.write_more(epoll, token, conn);
    }

    fn write_more(&mut self, epoll: &Epoll, token: usize, conn: &mut Conn) {
        while conn.written < conn.out.len() {
            match conn.stream.write(&conn.out[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let seq = conn.seq;
                    return self.fail(conn, |k| k.io += 1, format!("message {seq}: {e}"));
                }
            }
        }
        let want_write = conn.written < conn.out.len();
        if want_write != conn.want_write {
            conn.want_write = want_write;
            let flags = if want_write {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
            } else {
                EpollFlags::EPOLLIN
            };
            if let Err(err) = epoll.modify(conn.stream.as_fd(), &mut EpollEvent::new(flags, token as u64)) {
                self.fail(conn, |k| k.io += 1, format!("epoll_ctl: {err}"));
            }
        }
    }

    /// Reads what the server echoed; a complete echo is checked, recorded,
    /// and followed by the next message (until the end of the window).
    fn read_echo(&mut self, epoll: &Epoll, token: usize, conn: &mut Conn) {
        let want = conn.out.len() - conn.got;
        let n = match conn.stream.read(&mut self.scratch[..want + 1]) {
            Ok(0) => {
                let seq = conn.seq;
                return self.fail(
                    conn,
                    |k| k.eof += 1,
                    format!("message {seq}: the server closed the connection"),
                );
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => return,
            Err(e) => {
                let seq = conn.seq;
                return self.fail(conn, |k| k.io += 1, format!("message {seq}: {e}"));
            }
        };
        if n > want || self.scratch[..n] != conn.out[conn.got..conn.got + n] {
            let seq = conn.seq;
            return self.fail(
                conn,
                |k| k.mismatches += 1,
                format!("message {seq}: the echo differs from what was sent"),
            );
        }
        conn.got += n;
        if conn.got < conn.out.len() {
            return;
        }
        let now = Instant::now();
        self.total += 1;
        if now >= self.window.0 && now < self.window.1 {
            let nanos = latency(conn.intended, now).as_nanos() as u64;
            let histogram = match conn.kind {
                Kind::Heavy => &mut self.heavy_histogram,
                Kind::Closed | Kind::Paced => &mut self.histogram,
            };
            histogram.saturating_record(nanos.max(1));
            self.measured += 1;
        }
        if now >= self.window.1 {
            conn.finished = true; // open and idle from now on
            return;
        }
        conn.seq += 1;
        match (conn.kind, self.pacing) {
            (Kind::Paced, Some(pacing)) => {
                let due = pacing.due(self.start, conn.id, conn.seq);
                if due <= now {
                    conn.intended = due; // behind: it goes now, its clock already running
                    self.start_message(epoll, token, conn);
                } else {
                    self.schedule(token, conn, due);
                }
            }
            _ => {
                conn.intended = now;
                self.start_message(epoll, token, conn);
            }
        }
    }

    /// Counts an error on `conn` and closes it.
    fn fail(&mut self, conn: &mut Conn, count: impl FnOnce(&mut Errors), what: String) {
        count(self.errors);
        self.shared
            .note_error(1, format!("connection {}: {what}", conn.id));
        let _ = conn.stream.shutdown(Shutdown::Both);
        conn.finished = true;
        conn.broken = true;
    }
}

/// Connects (blocking, with a timeout) with bounded retries; `None` once
/// every try failed.
fn connect(plan: &Plan, shared: &Shared, id: usize) -> Option<TcpStream> {
    let mut last_error = String::new();
    for k in 0..plan.connect_attempts {
        match TcpStream::connect_timeout(&plan.addr, plan.connect_timeout) {
            Ok(stream) => {
                let ready = stream
                    .set_nodelay(true)
                    .and_then(|()| stream.set_nonblocking(true));
                match ready {
                    Ok(()) => {
                        shared.connected.fetch_add(1, Relaxed);
                        return Some(stream);
                    }
                    Err(err) => last_error = err.to_string(),
                }
            }
            Err(err) => last_error = err.to_string(),
        }
        if k + 1 < plan.connect_attempts {
            let jitter = Duration::from_micros(fastrand::u64(0..10_000));
            std::thread::sleep(backoff(k) + jitter);
        }
    }
    shared.connect_failed.fetch_add(1, Relaxed);
    shared.note_first(format!(
        "connection {id}: connect to {} failed {} time(s): {last_error}",
        plan.addr, plan.connect_attempts
    ));
    None
}

/// Closes every connection still open. One that finished its load (open
/// and idle) shuts its write side, then expects the server's end of stream
/// and nothing else, within the drain time. One still busy at the end of
/// the load was counted as stalled then: it is shut down without a look,
/// so that a late echo does not count it a second time (the errors count
/// connections that broke, each once).
fn close_all(conns: &[Conn], plan: &Plan, shared: &Shared, errors: &mut Errors) {
    let open: Vec<&Conn> = conns.iter().filter(|c| c.finished && !c.broken).collect();
    for conn in conns.iter().filter(|c| !c.finished) {
        let _ = conn.stream.shutdown(Shutdown::Both);
    }
    for conn in &open {
        let _ = conn.stream.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + plan.drain;
    let mut byte = [0u8; 1];
    for conn in open {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let _ = conn.stream.set_nonblocking(false);
        let _ = conn.stream.set_read_timeout(Some(left));
        match (&conn.stream).read(&mut byte) {
            Ok(0) => {}
            Ok(_) => {
                errors.unexpected_data += 1;
                shared.note_error(
                    1,
                    format!("connection {}: unexpected bytes after the client closed", conn.id),
                );
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                errors.stalled += 1;
                shared.note_error(
                    1,
                    format!("connection {}: no end of stream from the server", conn.id),
                );
            }
            Err(_) => {} // a reset after our FIN is the server's way to close too
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A client connection to a fresh loopback listener, and the server's end.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn conn(stream: TcpStream, id: u64, finished: bool) -> Conn {
        Conn {
            stream,
            id,
            kind: Kind::Closed,
            seq: 0,
            out: vec![0u8; 8].into_boxed_slice(),
            written: 8,
            got: 0,
            intended: Instant::now(),
            want_write: false,
            finished,
            broken: false,
        }
    }

    /// A connection counted as stalled at the end of the load, whose echo
    /// comes late, is not counted again (as unexpected data) when the
    /// client closes; an idle one that gets bytes after its FIN still is.
    #[test]
    fn a_stalled_connection_is_counted_once() {
        let (stalled, mut stalled_server) = pair();
        let (idle, mut idle_server) = pair();
        stalled_server.write_all(b"late echo").unwrap();
        idle_server.write_all(b"junk").unwrap();
        let conns = [conn(stalled, 0, false), conn(idle, 1, true)];
        let plan = Plan {
            addr: "127.0.0.1:1".parse().unwrap(),
            connections: 2,
            size: 8,
            warmup: Duration::ZERO,
            duration: Duration::ZERO,
            connect_rate: 1.0,
            connect_attempts: 1,
            connect_timeout: Duration::from_secs(1),
            drain: Duration::from_secs(5),
            rate: None,
            tick: None,
            heavy: None,
        };
        let shared = Shared::default();
        let mut errors = Errors::default();
        close_all(&conns, &plan, &shared, &mut errors);
        assert_eq!(
            (errors.unexpected_data, errors.stalled, errors.total()),
            (1, 0, 1),
            "{errors:?}"
        );
        // The stalled connection was shut down: its server sees the end.
        let mut rest = Vec::new();
        stalled_server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(stalled_server.read_to_end(&mut rest).is_ok_and(|n| n == 0));
    }
}
