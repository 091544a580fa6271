//! [`Mailboxes`]: one bounded channel per shard, the one mechanism behind
//! everything that crosses shards: the mesh's closures
//! ([`Mesh`](crate::Mesh)) and the connections a `handoff` acceptor deals
//! out (`net/server/mailboxes.rs`).
//!
//! Contract:
//! - Each mailbox is a bounded `flume` channel: a full mailbox makes an
//!   async sender wait, a thread sender time out, and a `try_send` hand the
//!   value back. Nothing queues without bound.
//! - Closing, when the receiving shard is done: flume keeps queued values
//!   alive as long as any *sender* lives, so the receiver empties its mailbox
//!   itself, through the lanes' [`Gate`] protocol: a sender either sees the
//!   mailbox closed and gets its value back at once, or its value is drained
//!   by [`Mailboxes::close`], which hands it to the closer. Nothing stays
//!   behind unaccounted for.
//! - Mailboxes are aligned to their own cache lines: neighbours in the array
//!   are written by different shards.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::gate::Gate;

/// Why a value was not delivered; the value comes back.
#[derive(Debug)]
pub(crate) enum MailError<T> {
    /// The mailbox is full (for a timed send: it stayed full).
    Full(T),
    /// The receiving shard closed its mailbox.
    Closed(T),
    /// No mailbox with that index.
    NoSuchShard(T),
}

/// The sending side of every shard's mailbox; cheap to clone, `Send + Sync`.
pub(crate) struct Mailboxes<T> {
    boxes: Arc<[Slot<T>]>,
}

#[repr(align(128))]
struct Slot<T> {
    tx: flume::Sender<T>,
    gate: Gate,
}

impl<T> Mailboxes<T> {
    /// `shards` mailboxes of `capacity` values; the receivers go to the shards.
    pub(crate) fn new(shards: usize, capacity: usize) -> (Self, Vec<flume::Receiver<T>>) {
        let (slots, receivers): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| {
                let (tx, rx) = flume::bounded(capacity.max(1));
                let slot = Slot {
                    tx,
                    gate: Gate::new(),
                };
                (slot, rx)
            })
            .unzip();
        (Mailboxes { boxes: slots.into() }, receivers)
    }

    /// Number of mailboxes.
    pub(crate) fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Values waiting in `shard`'s mailbox (0 for an unknown shard).
    pub(crate) fn queued(&self, shard: usize) -> usize {
        self.boxes.get(shard).map_or(0, |slot| slot.tx.len())
    }

    /// Delivers `value` without waiting.
    pub(crate) fn try_send(&self, shard: usize, value: T) -> Result<(), MailError<T>> {
        let Some(slot) = self.boxes.get(shard) else {
            return Err(MailError::NoSuchShard(value));
        };
        let Some(_pass) = slot.gate.enter() else {
            return Err(MailError::Closed(value));
        };
        slot.tx.try_send(value).map_err(|err| match err {
            flume::TrySendError::Full(v) => MailError::Full(v),
            flume::TrySendError::Disconnected(v) => MailError::Closed(v),
        })
    }

    /// Delivers `value`, waiting (asynchronously) while the mailbox is full.
    pub(crate) async fn send(&self, shard: usize, value: T) -> Result<(), MailError<T>> {
        let Some(slot) = self.boxes.get(shard) else {
            return Err(MailError::NoSuchShard(value));
        };
        let Some(_pass) = slot.gate.enter() else {
            return Err(MailError::Closed(value));
        };
        slot.tx
            .send_async(value)
            .await
            .map_err(|err| MailError::Closed(err.into_inner()))
    }

    /// Delivers `value` from a plain thread, blocking at most `wait` while
    /// the mailbox is full.
    pub(crate) fn send_timeout(&self, shard: usize, value: T, wait: Duration) -> Result<(), MailError<T>> {
        let Some(slot) = self.boxes.get(shard) else {
            return Err(MailError::NoSuchShard(value));
        };
        let Some(_pass) = slot.gate.enter() else {
            return Err(MailError::Closed(value));
        };
        slot.tx.send_timeout(value, wait).map_err(|err| match err {
            flume::SendTimeoutError::Timeout(v) => MailError::Full(v),
            flume::SendTimeoutError::Disconnected(v) => MailError::Closed(v),
        })
    }

    /// Closes `shard`'s mailbox for good and hands each value still in it
    /// to `each` (see the module docs).
    pub(crate) fn close(&self, shard: usize, rx: &flume::Receiver<T>, mut each: impl FnMut(T)) {
        if let Some(slot) = self.boxes.get(shard) {
            slot.gate.close(|| rx.drain().for_each(&mut each));
        }
    }
}

impl<T> Clone for Mailboxes<T> {
    fn clone(&self) -> Self {
        Mailboxes {
            boxes: self.boxes.clone(),
        }
    }
}

impl<T> fmt::Debug for Mailboxes<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued: Vec<usize> = (0..self.len()).map(|i| self.queued(i)).collect();
        f.debug_struct("Mailboxes").field("queued", &queued).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn full_and_closed_hand_the_value_back() {
        let (mail, rx) = Mailboxes::new(2, 1);
        mail.try_send(0, 1).unwrap();
        assert!(matches!(mail.try_send(0, 2), Err(MailError::Full(2))));
        assert!(matches!(mail.try_send(5, 3), Err(MailError::NoSuchShard(3))));
        assert!(matches!(
            mail.send_timeout(0, 4, Duration::from_millis(1)),
            Err(MailError::Full(4))
        ));
        let mut dropped = Vec::new();
        mail.close(0, &rx[0], |v| dropped.push(v));
        assert_eq!(dropped, [1], "the queued value is handed back by the close");
        assert!(matches!(mail.try_send(0, 5), Err(MailError::Closed(5))));
        assert_eq!(mail.queued(1), 0);
        mail.try_send(1, 6).unwrap();
        assert_eq!(rx[1].try_recv().unwrap(), 6);
    }
}
