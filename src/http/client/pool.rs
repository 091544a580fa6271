//! The client's keep-alive pool: per (scheme, host, port), idle HTTP/1.1
//! connections (most recently used first, with a cap per host) and at most
//! one HTTP/2 connection, shared by every request to that host. Both kinds
//! count against the cap in all (the least recently used one goes first)
//! and are dropped rather than reused once unused for the idle time; an
//! HTTP/2 connection dropped from the pool closes once its requests in
//! flight are done.
//!
//! The pool hands out a connection only once hyper says it can take a
//! request ([`Client`](super::Client) waits on `ready()`): a connection
//! whose server closed it, or sent bytes nobody asked for while it sat
//! idle, has been ended by hyper's connection task by then, and is dropped.
//!
//! A request that finds nothing here for an `https` host claims the host
//! first ([`Pool::claim`], `connecting.rs`): while one request connects to
//! it, the others wait to share its connection should it be HTTP/2.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};

use super::body::Body;
use super::connecting::{Claim, Connecting};

/// Which connections can serve a request: `(https, host, port)`.
pub(crate) type Key = (bool, Rc<str>, u16);

/// A connection's request handle.
pub(crate) enum Sender {
    H1(http1::SendRequest<Body>),
    /// With the request's hold on the shared connection.
    H2(http2::SendRequest<Body>, Held),
}

/// How many requests hold a shared HTTP/2 connection, and when one last
/// took or let go of it.
#[derive(Debug)]
pub(crate) struct Uses {
    in_flight: Cell<u32>,
    since: Cell<Instant>,
}

impl Uses {
    pub(crate) fn new() -> Rc<Uses> {
        Rc::new(Uses {
            in_flight: Cell::new(0),
            since: Cell::new(Instant::now()),
        })
    }

    fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    fn since(&self) -> Instant {
        self.since.get()
    }
}

/// One request's hold on a shared HTTP/2 connection: counted while it
/// lives, however the request ends (answered, failed, timed out, dropped).
#[derive(Debug)]
pub(crate) struct Held(Rc<Uses>);

impl Held {
    pub(crate) fn new(uses: &Rc<Uses>) -> Held {
        uses.in_flight.set(uses.in_flight.get() + 1);
        uses.since.set(Instant::now());
        Held(uses.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let uses = &self.0;
        uses.in_flight.set(uses.in_flight.get().saturating_sub(1));
        uses.since.set(Instant::now());
    }
}

impl Sender {
    /// Waits until hyper says the connection can take a request (an error:
    /// it never will).
    pub(crate) async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s, _) => s.ready().await,
        }
    }

    /// Sends `request`; its response head, or the error (and the request,
    /// when it was never written).
    pub(crate) async fn try_send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Body>>> {
        match self {
            Sender::H1(s) => s.try_send_request(request).await,
            Sender::H2(s, _) => s.try_send_request(request).await,
        }
    }
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// A host's HTTP/2 connection and its [`Uses`]: one that a request holds is
/// not idle, however long the request takes.
struct Shared {
    sender: http2::SendRequest<Body>,
    uses: Rc<Uses>,
}

impl Shared {
    fn unused_for(&self, now: Instant) -> Option<Duration> {
        (self.uses.in_flight() == 0).then(|| now.duration_since(self.uses.since()))
    }
}

pub(crate) struct Pool {
    per_host: usize,
    total: usize,
    max_age: Duration,
    h1: RefCell<HashMap<Key, Vec<Idle>>>,
    h2: RefCell<HashMap<Key, Shared>>,
    count: Cell<usize>,
    connecting: Connecting,
}

impl Pool {
    pub(crate) fn new(per_host: usize, total: usize, max_age: Duration) -> Self {
        Pool {
            per_host,
            total,
            max_age,
            h1: RefCell::new(HashMap::new()),
            h2: RefCell::new(HashMap::new()),
            count: Cell::new(0),
            connecting: Connecting::default(),
        }
    }

    /// The host's HTTP/2 connection (shared), or its most recently used idle
    /// HTTP/1.1 one that is not too old and not closed.
    pub(crate) fn take(&self, key: &Key) -> Option<Sender> {
        {
            let mut h2 = self.h2.borrow_mut();
            if let Some(shared) = h2.get_mut(key) {
                let unused = shared
                    .unused_for(Instant::now())
                    .is_some_and(|d| d >= self.max_age);
                if !shared.sender.is_closed() && !unused {
                    return Some(Sender::H2(shared.sender.clone(), Held::new(&shared.uses)));
                }
                h2.remove(key);
            }
        }
        let mut h1 = self.h1.borrow_mut();
        let conns = h1.get_mut(key)?;
        let held = conns.len();
        let mut found = None;
        while let Some(idle) = conns.pop() {
            if idle.since.elapsed() >= self.max_age {
                conns.clear(); // the rest are older still
                break;
            }
            if !idle.sender.is_closed() {
                found = Some(Sender::H1(idle.sender));
                break;
            }
        }
        let left = conns.len();
        if left == 0 {
            h1.remove(key);
        }
        self.count.set(self.count.get() - (held - left));
        found
    }

    /// What a request to `key` that found nothing to [`take`](Pool::take)
    /// does: connect, connect holding the host's lock, or wait for the
    /// connect in progress (`connecting.rs`). With no pool, nothing is
    /// shared, so nobody waits.
    pub(crate) fn claim(&self, key: &Key) -> Claim<'_> {
        if self.per_host == 0 || self.total == 0 {
            return Claim::Free;
        }
        self.connecting.claim(key)
    }

    /// `key`'s host answered a new connection with HTTP/2 (`h2`) or
    /// HTTP/1.1: from now on its connects take the lock, or do not.
    pub(crate) fn spoke(&self, key: &Key, h2: bool) {
        self.connecting.spoke(key, h2);
    }

    /// Keeps `sender` for the next request to `key`: an HTTP/2 connection
    /// as the host's shared one, an HTTP/1.1 one as idle (closing the oldest
    /// idle connection when a cap is reached).
    pub(crate) fn put(&self, key: &Key, sender: Sender) {
        if self.per_host == 0 || self.total == 0 {
            return;
        }
        let (mut h1, mut h2) = (self.h1.borrow_mut(), self.h2.borrow_mut());
        let sender = match sender {
            // The request's hold ends as `held` drops, here.
            Sender::H2(sender, held) => {
                match h2.get(key) {
                    // Given back by one of its requests.
                    Some(shared) if Rc::ptr_eq(&shared.uses, &held.0) => {
                        if sender.is_closed() {
                            h2.remove(key);
                        }
                    }
                    // The host has a newer one: this one closes once its
                    // requests are done.
                    Some(_) => {}
                    None if sender.is_closed() => {}
                    None => {
                        self.make_room(&mut h1, &mut h2);
                        let uses = held.0.clone();
                        h2.insert(key.clone(), Shared { sender, uses });
                    }
                }
                return;
            }
            Sender::H1(sender) if sender.is_closed() => return,
            Sender::H1(sender) => sender,
        };
        self.make_room(&mut h1, &mut h2);
        let conns = h1.entry(key.clone()).or_default();
        if conns.len() >= self.per_host {
            conns.remove(0);
        } else {
            self.count.set(self.count.get() + 1);
        }
        conns.push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Shares `key`'s new HTTP/2 connection, held by the request that made
    /// it, with the requests that come for the host meanwhile.
    pub(crate) fn share(&self, key: &Key, sender: &http2::SendRequest<Body>, held: &Held) {
        if self.per_host == 0 || self.total == 0 || sender.is_closed() {
            return;
        }
        let (mut h1, mut h2) = (self.h1.borrow_mut(), self.h2.borrow_mut());
        if !h2.contains_key(key) {
            self.make_room(&mut h1, &mut h2);
        }
        let shared = Shared {
            sender: sender.clone(),
            uses: held.0.clone(),
        };
        h2.insert(key.clone(), shared);
    }

    /// Idle HTTP/1.1 connections held now, plus shared HTTP/2 ones.
    pub(crate) fn len(&self) -> usize {
        self.count.get() + self.h2.borrow().len()
    }

    /// At the cap in all, drops the connections unused for the idle time
    /// or closed, then, if still at it, the least recently used one.
    fn make_room(&self, h1: &mut HashMap<Key, Vec<Idle>>, h2: &mut HashMap<Key, Shared>) {
        if self.count.get() + h2.len() < self.total {
            return;
        }
        let now = Instant::now();
        h1.retain(|_, conns| {
            conns.retain(|c| now.duration_since(c.since) < self.max_age && !c.sender.is_closed());
            !conns.is_empty()
        });
        self.recount(h1);
        h2.retain(|_, s| s.unused_for(now).is_none_or(|d| d < self.max_age) && !s.sender.is_closed());
        if self.count.get() + h2.len() < self.total {
            return;
        }
        let oldest_h1 = h1
            .iter()
            .min_by_key(|(_, conns)| conns[0].since)
            .map(|(k, conns)| (conns[0].since, k.clone()));
        // An HTTP/2 connection in use goes only when nothing else can.
        let oldest_h2 = h2
            .iter()
            .min_by_key(|(_, s)| (s.uses.in_flight() > 0, s.uses.since()))
            .map(|(k, s)| (s.uses.since(), s.uses.in_flight() > 0, k.clone()));
        let h1_first = match (&oldest_h1, &oldest_h2) {
            (Some(_), Some((_, true, _))) => true,
            (Some((a, _)), Some((b, _, _))) => a <= b,
            (first, _) => first.is_some(),
        };
        if h1_first {
            let (_, k) = oldest_h1.expect("an HTTP/1.1 connection goes first");
            let conns = h1.get_mut(&k).expect("key just found");
            conns.remove(0);
            if conns.is_empty() {
                h1.remove(&k);
            }
            self.count.set(self.count.get() - 1);
        } else if let Some((_, _, k)) = oldest_h2 {
            h2.remove(&k);
        }
    }

    fn recount(&self, h1: &HashMap<Key, Vec<Idle>>) {
        self.count.set(h1.values().map(Vec::len).sum());
    }
}
