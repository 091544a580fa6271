//! [`Gate`]: the close protocol of every queue that crosses shards (the
//! lanes and the mailboxes).
//!
//! A queue whose receiver goes away must not keep values that nobody will
//! ever look at, and must not lose count of them. A sender *enters* the gate
//! (announces itself) before it looks at `closed`, and leaves after its push;
//! the closer sets `closed`, then drains the queue until no sender is inside.
//! With both sides `SeqCst`, one of them always sees the other: either the
//! sender sees `closed` and keeps its value, or the closer waits for it and
//! drains the value it pushed. Nothing stays behind unaccounted for.

use super::atomic::Ordering::SeqCst;
use super::atomic::{AtomicBool, AtomicUsize};

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    closed: AtomicBool,
    /// Senders between their `closed` check and the end of their push.
    inside: AtomicUsize,
}

/// A sender inside the [`Gate`]; leaves on drop.
#[derive(Debug)]
pub(crate) struct Pass<'a>(&'a AtomicUsize);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Enters to send, or `None` once the gate is closed.
    pub(crate) fn enter(&self) -> Option<Pass<'_>> {
        self.inside.fetch_add(1, SeqCst);
        let pass = Pass(&self.inside);
        (!self.closed.load(SeqCst)).then_some(pass)
    }

    /// Whether the gate is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Closes the gate for good, then calls `drain` until no sender is
    /// inside, and once more after that: every value a sender got in is
    /// seen by `drain`.
    pub(crate) fn close(&self, mut drain: impl FnMut()) {
        self.closed.store(true, SeqCst);
        loop {
            drain();
            // A read-modify-write, not a load: it reads the latest count
            // even under a model weaker than `SeqCst` (loom checks this
            // protocol with acquire/release only), because a sender's
            // increment then either comes after it and sees `closed`, or
            // before it and is counted.
            if self.inside.fetch_add(0, SeqCst) == 0 {
                break;
            }
            super::yield_thread();
        }
        drain();
    }
}
