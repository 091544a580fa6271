//! [`Connecting`]: one connect at a time to a host that may speak HTTP/2,
//! so that a burst of first requests shares one connection instead of each
//! opening its own (hyper-util's legacy pool has the same idea, its
//! `connecting` set; this one is shard-local, and its waiters are not failed
//! with the first connect).
//!
//! Only an `https` connection can become HTTP/2 here (ALPN; plain `http` is
//! always HTTP/1.1), and which one it becomes is known only once TLS is
//! done. So while one request connects to an `https` host (it holds the
//! host's [`Lock`]), the others that found no pooled connection for it
//! [`Wait`] for that connect's [`Outcome`]:
//! - it is HTTP/2 ([`Outcome::Shared`]): the connection is in the pool, and
//!   the waiters take it from there;
//! - it is HTTP/1.1, or it failed ([`Outcome::Own`]): each waiter connects
//!   on its own at once, all together, as if there had been no lock (one
//!   failed connect fails no other request: each gets its own attempt and its
//!   own error);
//! - the connecting request was dropped (its time limit passed) before it
//!   knew ([`Outcome::Again`]): the waiters claim the host again, and one of
//!   them connects.
//!
//! A host found to speak HTTP/1.1 is remembered (up to [`MAX_H1_HOSTS`]
//! hosts, then forgotten all at once), and its requests connect without the
//! lock from then on: HTTP/1.1 requests never wait on each other's connects
//! but for the first burst's first one. A wait is part of its request, so
//! the request's own time limit ends it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::pool::Key;

/// How many `https` hosts known to speak HTTP/1.1 are remembered.
pub(crate) const MAX_H1_HOSTS: usize = 1024;

/// How a host's connect in progress ended, for the requests waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An HTTP/2 connection, now in the pool: take it there.
    Shared,
    /// HTTP/1.1, or an error: connect on your own.
    Own,
    /// Given up before it knew: claim the host again.
    Again,
}

/// The connects in progress to `https` hosts, and the hosts known to speak
/// HTTP/1.1.
#[derive(Default)]
pub(crate) struct Connecting {
    slots: RefCell<HashMap<Key, Rc<Slot>>>,
    h1: RefCell<HashSet<Key>>,
}

/// One connect in progress: its outcome once known, and its waiters' wakers.
#[derive(Default)]
struct Slot {
    outcome: Cell<Option<Outcome>>,
    wakers: RefCell<Vec<Option<Waker>>>,
}

/// What a request that found no pooled connection does.
pub(crate) enum Claim<'a> {
    /// Connect, with no lock (plain `http`, or a host known to speak HTTP/1.1).
    Free,
    /// Connect, holding the host's lock; say how it ended with [`Lock::done`].
    Lead(Lock<'a>),
    /// Wait for the connect in progress.
    Wait(Wait),
}

impl Connecting {
    /// The claim of a request to `key` that found no pooled connection.
    pub(crate) fn claim(&self, key: &Key) -> Claim<'_> {
        let https = key.0;
        if !https || self.h1.borrow().contains(key) {
            return Claim::Free;
        }
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.get(key) {
            return Claim::Wait(Wait {
                slot: slot.clone(),
                index: None,
            });
        }
        let slot = Rc::new(Slot::default());
        slots.insert(key.clone(), slot.clone());
        Claim::Lead(Lock {
            connecting: self,
            key: key.clone(),
            slot,
            outcome: Outcome::Again,
        })
    }

    /// `key`'s host answered with HTTP/1.1 (`h2` false) or HTTP/2.
    pub(crate) fn spoke(&self, key: &Key, h2: bool) {
        let mut h1 = self.h1.borrow_mut();
        if h2 {
            h1.remove(key);
            return;
        }
        if h1.len() >= MAX_H1_HOSTS {
            h1.clear();
        }
        h1.insert(key.clone());
    }

    /// Connects in progress now.
    #[cfg(test)]
    fn in_progress(&self) -> usize {
        self.slots.borrow().len()
    }
}

/// A host's connect in progress. Dropped without [`Lock::done`] (its request
/// was given up), its waiters are told [`Outcome::Again`]. Its drop never
/// unwinds.
pub(crate) struct Lock<'a> {
    connecting: &'a Connecting,
    key: Key,
    slot: Rc<Slot>,
    outcome: Outcome,
}

impl Lock<'_> {
    /// Ends the connect: its waiters go on with `outcome`.
    pub(crate) fn done(mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        let mut slots = self.connecting.slots.borrow_mut();
        if slots.get(&self.key).is_some_and(|s| Rc::ptr_eq(s, &self.slot)) {
            slots.remove(&self.key);
        }
        drop(slots);
        self.slot.outcome.set(Some(self.outcome));
        // Dropped inside a request's future, so inside a task's destructor
        // when the task is cancelled (where glommio aborts on a panic): a
        // waker's panic is caught, counted and logged, and the other
        // waiters are woken all the same.
        let wakers = self.slot.wakers.take();
        crate::sync::wakers::wake_all_counted(wakers.into_iter().flatten());
    }
}

/// A wait for a host's connect in progress; its [`Outcome`].
pub(crate) struct Wait {
    slot: Rc<Slot>,
    /// Where this waiter's waker is in the slot's list, once it is there.
    index: Option<usize>,
}

impl Future for Wait {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        if let Some(outcome) = self.slot.outcome.get() {
            return Poll::Ready(outcome);
        }
        let mut wakers = self.slot.wakers.borrow_mut();
        match self.index {
            Some(i) => match &mut wakers[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            },
            None => {
                wakers.push(Some(cx.waker().clone()));
                let i = wakers.len() - 1;
                drop(wakers);
                self.index = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(i) = self.index {
            if let Some(w) = self.slot.wakers.borrow_mut().get_mut(i) {
                *w = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(https: bool) -> Key {
        (https, "example.test".into(), 443)
    }

    fn poll(wait: &mut Wait) -> Poll<Outcome> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(wait).poll(&mut cx)
    }

    #[test]
    fn plain_http_never_waits() {
        let c = Connecting::default();
        let _first = c.claim(&key(false));
        assert!(matches!(c.claim(&key(false)), Claim::Free));
        assert_eq!(c.in_progress(), 0);
    }

    #[test]
    fn waiters_get_the_outcome_and_the_host_is_free_again() {
        for outcome in [Outcome::Shared, Outcome::Own] {
            let c = Connecting::default();
            let Claim::Lead(lock) = c.claim(&key(true)) else {
                panic!("first claim leads")
            };
            let Claim::Wait(mut wait) = c.claim(&key(true)) else {
                panic!("second claim waits")
            };
            assert_eq!(poll(&mut wait), Poll::Pending);
            lock.done(outcome);
            assert_eq!(poll(&mut wait), Poll::Ready(outcome));
            assert_eq!(c.in_progress(), 0);
            assert!(matches!(c.claim(&key(true)), Claim::Lead(_)));
        }
    }

    #[test]
    fn a_dropped_lock_says_again() {
        let c = Connecting::default();
        let lock = c.claim(&key(true));
        let Claim::Wait(mut wait) = c.claim(&key(true)) else {
            panic!("second claim waits")
        };
        drop(lock);
        assert_eq!(poll(&mut wait), Poll::Ready(Outcome::Again));
    }

    /// A waker that panics when woken (a foreign executor's, a test's).
    struct Panics;

    impl std::task::Wake for Panics {
        fn wake(self: std::sync::Arc<Self>) {
            panic!("a waker that panics");
        }
    }

    /// The lock is dropped inside a request's future, and so inside a
    /// task's destructor when that task is cancelled, where glommio aborts
    /// the process on a panic: a waiter's panicking waker is caught,
    /// counted and logged there, and the other waiters are still woken with
    /// the outcome. Before: the panic came out of the lock's drop.
    #[test]
    fn a_waiters_panicking_waker_does_not_unwind_out_of_the_lock() {
        let c = Connecting::default();
        let Claim::Lead(lock) = c.claim(&key(true)) else {
            panic!("first claim leads")
        };
        let Claim::Wait(mut bad) = c.claim(&key(true)) else {
            panic!("second claim waits")
        };
        let Claim::Wait(mut good) = c.claim(&key(true)) else {
            panic!("third claim waits")
        };
        let panicking = Waker::from(std::sync::Arc::new(Panics));
        assert!(Pin::new(&mut bad)
            .poll(&mut Context::from_waker(&panicking))
            .is_pending());
        assert_eq!(poll(&mut good), Poll::Pending);
        let panics = crate::sync::panics();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(lock)));
        assert!(dropped.is_ok(), "a waker's panic came out of the lock's drop");
        assert_eq!(crate::sync::panics(), panics + 1, "the panic is counted");
        assert_eq!(poll(&mut good), Poll::Ready(Outcome::Again));
        assert_eq!(poll(&mut bad), Poll::Ready(Outcome::Again));
    }

    #[test]
    fn a_host_that_spoke_http1_is_free_until_it_speaks_http2() {
        let c = Connecting::default();
        c.spoke(&key(true), false);
        assert!(matches!(c.claim(&key(true)), Claim::Free));
        c.spoke(&key(true), true);
        assert!(matches!(c.claim(&key(true)), Claim::Lead(_)));
    }

    #[test]
    fn the_http1_memory_is_bounded() {
        let c = Connecting::default();
        for port in 0..=MAX_H1_HOSTS as u16 {
            c.spoke(&(true, "h".into(), port), false);
        }
        assert!(c.h1.borrow().len() <= MAX_H1_HOSTS);
    }
}
