//! The system resolver (`getaddrinfo`, through `ToSocketAddrs`) on threads
//! of its own, process-wide, with one call per name at a time.
//!
//! `getaddrinfo` cannot be cancelled: a DNS server that never answers keeps
//! the thread that asked for as long as the system's resolver retries (30 s
//! and more). On the [`blocking`](crate::blocking) pool (4 threads, shared
//! with the application) a few such names held every thread, so that every
//! other lookup, and every other `blocking()` call, waited behind them. So:
//!
//! - lookups have their own threads, started as lookups come (never more
//!   than [`MAX_THREADS`]) and ended after [`IDLE`] without work: a hanging
//!   name holds one of these, never a `blocking()` thread;
//! - a name (with its port) is looked up once at a time: whoever asks for a
//!   name already being looked up waits for that call's answer, even after
//!   the caller who started it gave up (timed out). However often a
//!   hanging name is asked for, it holds one thread; [`MAX_THREADS`]
//!   different hanging names are needed to hold them all;
//! - a name queued whose askers all gave up before a thread took it is
//!   dropped unlooked-up; at most [`MAX_NAMES`] names are queued or being
//!   looked up, past which a lookup fails at once.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Resolver threads at most, in the process.
pub(crate) const MAX_THREADS: usize = 32;

/// How long a resolver thread waits for work before it ends.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// Names queued or being looked up at most.
pub(crate) const MAX_NAMES: usize = 4096;

/// What a lookup finds: the addresses, or why there are none.
pub(crate) type Found = Result<Vec<SocketAddr>, String>;

/// A name and port to look up.
type Name = (String, u16);

/// The function that looks a name up (the system's, but for tests).
type System = fn(&str, u16) -> Found;

/// The resolver threads and the names they look up.
pub(crate) struct Lookups {
    system: System,
    state: Mutex<State>,
    /// Signalled when a name is queued.
    work: Condvar,
}

#[derive(Default)]
struct State {
    /// Names not taken by a thread yet, in the order asked.
    queue: VecDeque<Name>,
    /// Every name queued or being looked up, with who waits for its answer.
    askers: HashMap<Name, Vec<flume::Sender<Found>>>,
    /// Threads started and not ended.
    threads: usize,
    /// Threads waiting for work.
    waiting: usize,
}

impl Lookups {
    /// The process's lookups, through the system resolver.
    pub(crate) fn global() -> &'static Lookups {
        static GLOBAL: OnceLock<Lookups> = OnceLock::new();
        GLOBAL.get_or_init(|| Lookups::new(system))
    }

    /// Lookups through `system` (a test's stand-in for the system resolver).
    pub(crate) fn new(system: System) -> Lookups {
        Lookups {
            system,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
        }
    }

    /// Asks for the addresses of `host:port`: the answer comes on the
    /// receiver (dropping it gives up the wait, not the lookup).
    pub(crate) fn ask(&'static self, host: &str, port: u16) -> flume::Receiver<Found> {
        let (tx, rx) = flume::bounded(1);
        let mut state = self.lock();
        let name = (host.to_string(), port);
        if let Some(askers) = state.askers.get_mut(&name) {
            askers.push(tx);
            return rx;
        }
        if state.askers.len() >= MAX_NAMES {
            let _ = tx.send(Err(format!("more than {MAX_NAMES} names being looked up")));
            return rx;
        }
        state.askers.insert(name.clone(), vec![tx]);
        state.queue.push_back(name);
        if state.queue.len() <= state.waiting {
            self.work.notify_one();
        } else if state.threads < MAX_THREADS {
            let n = state.threads;
            match std::thread::Builder::new()
                .name(format!("shardlet-dns-{n}"))
                .spawn(move || self.serve())
            {
                Ok(_) => state.threads += 1,
                Err(err) if n == 0 => {
                    // No thread to take it: it fails now rather than never.
                    let name = state.queue.pop_back().expect("just queued");
                    for asker in state.askers.remove(&name).unwrap_or_default() {
                        let _ = asker.send(Err(format!("cannot start a resolver thread: {err}")));
                    }
                }
                // The running threads take it in turn.
                Err(err) => {
                    tracing::warn!(target: "shardlet::http", %err, "cannot start another resolver thread")
                }
            }
        }
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between statements: a panic elsewhere
        // cannot leave it half-changed.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A resolver thread: takes names until none comes for [`IDLE`].
    fn serve(&self) {
        let mut state = self.lock();
        loop {
            let Some(name) = state.queue.pop_front() else {
                state.waiting += 1;
                let (next, waited) = self
                    .work
                    .wait_timeout(state, IDLE)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                state = next;
                state.waiting -= 1;
                if waited.timed_out() && state.queue.is_empty() {
                    state.threads -= 1;
                    return;
                }
                continue;
            };
            let wanted = state
                .askers
                .get(&name)
                .is_some_and(|askers| askers.iter().any(|asker| !asker.is_disconnected()));
            if !wanted {
                state.askers.remove(&name);
                continue;
            }
            drop(state);
            let found = (self.system)(&name.0, name.1);
            state = self.lock();
            for asker in state.askers.remove(&name).unwrap_or_default() {
                let _ = asker.send(found.clone());
            }
        }
    }
}

/// The system resolver.
fn system(host: &str, port: u16) -> Found {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .collect();
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// Calls of the stand-in resolver, per kind of name.
    static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);

    /// Names ending in `.slow` hang for 2 s (a DNS server that does not
    /// answer); others resolve to loopback at once.
    fn stand_in(host: &str, port: u16) -> Found {
        if host.ends_with(".slow") {
            SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(2));
            return Err("no answer".into());
        }
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }

    /// Hanging names hold a thread each, once however often they are asked
    /// for, and other names still resolve at once.
    #[test]
    fn hanging_names_hold_one_thread_each_and_starve_no_one() {
        let lookups: &'static Lookups = Box::leak(Box::new(Lookups::new(stand_in)));
        let mut waits = Vec::new();
        for round in 0..10 {
            for name in ["a.slow", "b.slow", "c.slow", "d.slow", "e.slow", "f.slow"] {
                let rx = lookups.ask(name, 80);
                if round == 0 {
                    waits.push(rx); // the others give up at once
                }
            }
        }
        let start = Instant::now();
        let found = lookups.ask("fast", 80).recv_timeout(Duration::from_secs(1));
        assert_eq!(found, Ok(Ok(vec![SocketAddr::from(([127, 0, 0, 1], 80))])));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        for rx in waits {
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(5)),
                Ok(Err("no answer".into()))
            );
        }
        assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 6, "one call per name");
        assert_eq!(lookups.lock().threads, 7);
    }
}
