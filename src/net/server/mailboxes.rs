//! The handoff mailboxes: one bounded channel of accepted connections per
//! shard, filled by the acceptor and emptied by the shard it is meant for.
//!
//! The channels are the crate's per-shard [`Mailboxes`] (the same mechanism
//! as the mesh's inboxes, with its close protocol) carrying connections
//! instead of closures: a connection must only be taken by a shard that
//! has room for it under its connection cap, which a closure inbox cannot
//! express.
//! The contract on top:
//! - a connection travels as a `std::net::TcpStream`: owned and `Send`, so a
//!   connection left in a mailbox is closed when the mailbox is dropped,
//!   whatever thread drops it;
//! - the sender counts a connection in the target shard's `accepted` and
//!   `live` counters *before* sending it, so the load it balances on already
//!   includes connections in flight; whoever drops a connection unserved
//!   (a shard closing its mailbox) takes it back out of `live`;
//! - a shard takes a connection from its mailbox only when it has room
//!   under its cap, or an idle connection to evict for it; the acceptor only
//!   accepts while some listening shard has `live` below its cap, or below
//!   its cap plus its idle connections (the shard evicts one for each
//!   connection beyond its cap): a full server with nothing idle leaves
//!   clients in the kernel backlog instead of queueing them in user space
//!   (or, with [`WhenFull::Close`](crate::net::WhenFull::Close), the
//!   acceptor closes them at once);
//! - a full mailbox makes the sender wait (back-pressure, never an unbounded
//!   queue); a shard whose connection ends wakes a waiting sender through
//!   [`Handoff::freed`].

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::net::server::stats::Counters;
use crate::sync::mailbox::{MailError, Mailbox, Mailboxes};

/// How long a waiting sender sleeps before it looks at its stop flags again.
const TICK: Duration = Duration::from_millis(20);

/// The mailboxes of every shard of one server.
#[derive(Debug)]
pub(crate) struct Handoff {
    mail: Mailboxes<TcpStream>,
    inboxes: Vec<Mailbox<TcpStream>>,
    counters: Vec<Arc<Counters>>,
    /// Where the next search for the least-loaded shard starts (after the
    /// shard picked last), so that ties go round-robin instead of always to
    /// shard 0.
    cursor: AtomicUsize,
    /// Set while the sender waits for room; [`Handoff::freed`] then wakes it.
    waiting: AtomicBool,
    wake_tx: flume::Sender<()>,
    wake_rx: flume::Receiver<()>,
}

impl Handoff {
    /// One mailbox of `capacity` connections per entry of `counters`.
    pub(crate) fn new(counters: &[Arc<Counters>], capacity: usize) -> Self {
        let (mail, inboxes) = Mailboxes::new(counters.len(), capacity);
        let (wake_tx, wake_rx) = flume::bounded(1);
        Handoff {
            mail,
            inboxes,
            counters: counters.to_vec(),
            cursor: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            wake_tx,
            wake_rx,
        }
    }

    /// The receiving end of `shard`'s mailbox.
    pub(crate) fn inbox(&self, shard: usize) -> Mailbox<TcpStream> {
        self.inboxes[shard].clone()
    }

    /// The listening shard with the fewest live connections and room for one
    /// more under its cap; else the full one with the most idle connections
    /// to spare (it evicts one to take the connection); `None` when every
    /// listening shard is full with nothing idle (or none listens).
    ///
    /// Ties go round-robin: the search starts after the shard picked last,
    /// and only a pick that found a shard moves that start. Call it once per
    /// connection; [`has_room`](Handoff::has_room) looks without moving it.
    pub(crate) fn pick(&self) -> Option<usize> {
        let n = self.counters.len();
        let shard = self.find(self.cursor.load(Ordering::Relaxed) % n)?;
        self.cursor.store((shard + 1) % n, Ordering::Relaxed);
        Some(shard)
    }

    /// Whether [`pick`](Handoff::pick) would find a shard now; leaves the
    /// round-robin where it is.
    pub(crate) fn has_room(&self) -> bool {
        self.find(0).is_some()
    }

    /// [`pick`](Handoff::pick)'s search, starting at shard `start`.
    fn find(&self, start: usize) -> Option<usize> {
        let n = self.counters.len();
        let mut best: Option<(usize, u64)> = None;
        let mut spare: Option<(usize, u64)> = None;
        for shard in (start..start + n).map(|i| i % n) {
            let c = &self.counters[shard];
            if !c.listening.load(Ordering::Acquire) {
                continue;
            }
            let live = c.live.load(Ordering::SeqCst);
            let cap = c.capacity.load(Ordering::Relaxed);
            if live < cap {
                if best.is_none_or(|(_, l)| live < l) {
                    best = Some((shard, live));
                }
            } else {
                let headroom = (cap + c.idle.load(Ordering::Relaxed)).saturating_sub(live);
                if headroom > 0 && spare.is_none_or(|(_, h)| headroom > h) {
                    spare = Some((shard, headroom));
                }
            }
        }
        best.or(spare).map(|(shard, _)| shard)
    }

    /// Waits until some shard has room, or `stopping()` says to give up
    /// (then `false`); picks none, so the round-robin of ties does not move
    /// (the acceptor asks this before `accept`, and picks after it).
    pub(crate) fn wait_for_room(&self, stopping: &dyn Fn() -> bool) -> bool {
        self.wait(stopping, &|| self.has_room().then_some(0)).is_some()
    }

    /// Waits until some shard has room and [picks](Handoff::pick) it, or
    /// `stopping()` says to give up (then `None`).
    pub(crate) fn wait_and_pick(&self, stopping: &dyn Fn() -> bool) -> Option<usize> {
        self.wait(stopping, &|| self.pick())
    }

    /// Calls `look` until it finds a shard, sleeping until [`freed`](Handoff::freed)
    /// (or a tick) between tries; `None` once `stopping()`.
    fn wait(&self, stopping: &dyn Fn() -> bool, look: &dyn Fn() -> Option<usize>) -> Option<usize> {
        loop {
            if stopping() {
                return None;
            }
            if let Some(shard) = look() {
                return Some(shard);
            }
            self.waiting.store(true, Ordering::SeqCst);
            // Look again: a connection may have ended before the flag was up.
            if let Some(shard) = look() {
                self.waiting.store(false, Ordering::SeqCst);
                return Some(shard);
            }
            let _ = self.wake_rx.recv_timeout(TICK);
            self.waiting.store(false, Ordering::SeqCst);
        }
    }

    /// A connection ended, a full shard got an idle connection, or a shard
    /// changed state: wake a waiting sender.
    pub(crate) fn freed(&self) {
        if self.waiting.load(Ordering::SeqCst) {
            let _ = self.wake_tx.try_send(());
        }
    }

    /// Sends `stream` to `shard`, counted there first; waits while the
    /// mailbox is full. Gives the stream back if `stopping()` turns true
    /// first; closes it (as `close` would) if the shard stopped taking
    /// connections meanwhile.
    pub(crate) fn send(
        &self,
        shard: usize,
        stream: TcpStream,
        stopping: &dyn Fn() -> bool,
    ) -> Result<(), TcpStream> {
        let counters = &self.counters[shard];
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        counters.live.fetch_add(1, Ordering::SeqCst);
        let mut stream = stream;
        loop {
            match self.mail.send_timeout(shard, stream, TICK) {
                Ok(()) => break,
                Err(MailError::Full(back)) if !stopping() => stream = back,
                Err(MailError::Closed(_)) => {
                    // The shard stopped between `pick` and now: nobody will
                    // take it, so it closes here, as one dropped by `close`.
                    counters.live.fetch_sub(1, Ordering::SeqCst);
                    return Ok(());
                }
                Err(MailError::Full(back) | MailError::NoSuchShard(back)) => {
                    counters.accepted.fetch_sub(1, Ordering::Relaxed);
                    counters.live.fetch_sub(1, Ordering::SeqCst);
                    return Err(back);
                }
            }
        }
        if !counters.listening.load(Ordering::Acquire) {
            // The shard stopped between `pick` and now: nobody will take it.
            self.close(shard);
        }
        Ok(())
    }

    /// Drops (closes) the connections queued for `shard`, which no longer
    /// takes any; returns how many.
    pub(crate) fn close(&self, shard: usize) -> usize {
        let mut dropped = 0;
        self.mail.close(shard, &self.inboxes[shard], |stream| {
            drop(stream);
            dropped += 1;
        });
        if dropped > 0 {
            self.counters[shard]
                .live
                .fetch_sub(dropped as u64, Ordering::SeqCst);
            tracing::debug!(target: "shardlet::net", shard, dropped, "closed connections still queued for a stopped shard");
        }
        dropped
    }

    /// Wakes a sender waiting for room so that it looks at its stop flags.
    pub(crate) fn interrupt(&self) {
        let _ = self.wake_tx.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn shards(capacities: &[u64]) -> Vec<Arc<Counters>> {
        capacities
            .iter()
            .map(|&cap| {
                let c = Counters::default();
                c.capacity.store(cap, Relaxed);
                c.listening.store(true, Relaxed);
                Arc::new(c)
            })
            .collect()
    }

    #[test]
    fn picks_the_least_loaded_listening_shard_with_room() {
        let counters = shards(&[4, 4, 4]);
        let handoff = Handoff::new(&counters, 8);
        counters[0].live.store(2, Relaxed);
        counters[1].live.store(1, Relaxed);
        counters[2].live.store(3, Relaxed);
        assert_eq!(handoff.pick(), Some(1));
        counters[1].listening.store(false, Relaxed);
        assert_eq!(handoff.pick(), Some(0));
        counters[0].live.store(4, Relaxed);
        counters[2].live.store(4, Relaxed);
        assert_eq!(handoff.pick(), None, "all full or not listening");
        assert_eq!(handoff.wait_and_pick(&|| true), None);
        assert!(!handoff.wait_for_room(&|| true));
    }

    #[test]
    fn a_full_shard_with_idle_connections_is_picked_last() {
        let counters = shards(&[2, 2]);
        let handoff = Handoff::new(&counters, 8);
        counters[0].live.store(2, Relaxed);
        counters[1].live.store(2, Relaxed);
        assert_eq!(handoff.pick(), None, "both full, nothing idle");
        counters[1].idle.store(1, Relaxed);
        assert_eq!(handoff.pick(), Some(1), "shard 1 can evict one");
        counters[1].live.store(3, Relaxed); // it took one, still evicting
        assert_eq!(handoff.pick(), None, "its one idle connection is spoken for");
        counters[0].live.store(1, Relaxed);
        assert_eq!(handoff.pick(), Some(0), "room beats eviction");
    }

    #[test]
    fn ties_rotate() {
        let counters = shards(&[10, 10]);
        let handoff = Handoff::new(&counters, 8);
        let picks: Vec<_> = (0..4).map(|_| handoff.pick().unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    /// The acceptor asks whether there is room before each `accept` and
    /// picks after it: only the pick moves the round-robin, so ties still
    /// alternate over two shards.
    #[test]
    fn looking_for_room_leaves_the_rotation_alone() {
        let counters = shards(&[10, 10]);
        let handoff = Handoff::new(&counters, 8);
        let picks: Vec<_> = (0..4)
            .map(|_| {
                assert!(handoff.wait_for_room(&|| false));
                handoff.wait_and_pick(&|| false).unwrap()
            })
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    /// A tie after an uneven pick goes to the shard after the one picked.
    #[test]
    fn ties_go_to_the_shard_after_the_last_one_picked() {
        let counters = shards(&[10, 10, 10]);
        let handoff = Handoff::new(&counters, 8);
        counters[0].live.store(1, Relaxed);
        counters[1].live.store(1, Relaxed);
        assert_eq!(handoff.pick(), Some(2));
        counters[2].live.store(1, Relaxed);
        assert_eq!(handoff.pick(), Some(0), "after shard 2 comes shard 0");
        assert_eq!(handoff.pick(), Some(1));
    }

    #[test]
    fn send_counts_and_close_uncounts() {
        let counters = shards(&[10]);
        let handoff = Handoff::new(&counters, 8);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        handoff.send(0, server, &|| false).unwrap();
        assert_eq!(
            (counters[0].accepted.load(Relaxed), counters[0].live.load(Relaxed)),
            (1, 1)
        );
        assert_eq!(handoff.close(0), 1);
        assert_eq!(
            (counters[0].accepted.load(Relaxed), counters[0].live.load(Relaxed)),
            (1, 0)
        );
        // A closed mailbox takes nothing more: the connection is closed, not queued.
        let late = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        handoff.send(0, server, &|| false).unwrap();
        assert_eq!(
            (counters[0].accepted.load(Relaxed), counters[0].live.load(Relaxed)),
            (2, 0)
        );
        assert_eq!(handoff.close(0), 0);
        drop((client, late));
    }
}
