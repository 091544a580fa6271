//! [`Mailboxes`]: one bounded channel per shard, the one mechanism behind
//! everything that crosses shards: the mesh's closures
//! ([`Mesh`](crate::Mesh)) and the connections a `handoff` acceptor deals
//! out (`net/server/mailboxes.rs`).
//!
//! Contract:
//! - Each mailbox is a bounded `flume` channel: a full mailbox makes an
//!   async sender wait, a thread sender time out, and a `try_send` hand the
//!   value back. Nothing queues without bound.
//! - Every send is a non-blocking `try_send` inside the lanes' [`Gate`]. A
//!   sender that finds the mailbox full waits for room *outside* the gate,
//!   in the mailbox's [`Room`], which the receiving end ([`Mailbox`]) wakes
//!   after it takes a value, and the closer wakes once the gate is closed;
//!   then it tries again. So a closer never waits on a sender that waits for
//!   room, even one whose future is never polled again.
//! - Closing, when the receiving shard is done: flume keeps queued values
//!   alive as long as any *sender* lives, so the receiver empties its mailbox
//!   itself, through the [`Gate`] protocol: a sender either sees the
//!   mailbox closed and gets its value back at once, or its value is drained
//!   by [`Mailboxes::close`], which hands it to the closer. Nothing stays
//!   behind unaccounted for. Senders waiting for room are then woken, find
//!   the mailbox closed, and get their values back.
//! - Order: sends from one thread, one after the other, arrive in order.
//!   Senders waiting for room at the same time are not served in arrival
//!   order (see [`Room`] for why).
//! - Mailboxes are aligned to their own cache lines: neighbours in the array
//!   are written by different shards.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_lite::future::poll_fn;

use super::gate::Gate;
use super::room::{Room, RoomWait};

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
    room: super::Arc<Room>,
}

/// The receiving end of one shard's mailbox; taking a value wakes the
/// senders waiting for room. Cheap to clone; when the last clone goes, the
/// waiting senders are woken too (they find the mailbox disconnected).
pub(crate) struct Mailbox<T> {
    shared: Arc<Receiving<T>>,
}

struct Receiving<T> {
    rx: flume::Receiver<T>,
    /// Declared after `rx`, so dropped after it: the channel is
    /// disconnected before the waiting senders are woken, and a sender that
    /// runs at once cannot find it still full and wait again, with nobody
    /// left to wake it.
    closer: CloseOnDrop,
}

/// Wakes a mailbox's waiting senders when the receiving end goes.
struct CloseOnDrop(super::Arc<Room>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl<T> Mailbox<T> {
    /// Values waiting.
    pub(crate) fn len(&self) -> usize {
        self.shared.rx.len()
    }

    /// Takes a value if one waits.
    pub(crate) fn try_recv(&self) -> Option<T> {
        let value = self.shared.rx.try_recv().ok()?;
        self.shared.closer.0.room_made();
        Some(value)
    }

    /// Waits for a value; an error once every sender is gone.
    pub(crate) async fn recv(&self) -> Result<T, flume::RecvError> {
        let value = self.shared.rx.recv_async().await?;
        self.shared.closer.0.room_made();
        Ok(value)
    }
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox").field("queued", &self.len()).finish()
    }
}

impl<T> Mailboxes<T> {
    /// `shards` mailboxes of `capacity` values; the receiving ends go to the shards.
    pub(crate) fn new(shards: usize, capacity: usize) -> (Self, Vec<Mailbox<T>>) {
        let (slots, receivers): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| {
                let (tx, rx) = flume::bounded(capacity.max(1));
                let room = super::Arc::new(Room::new());
                let slot = Slot {
                    tx,
                    gate: Gate::new(),
                    room: room.clone(),
                };
                (
                    slot,
                    Mailbox {
                        shared: Arc::new(Receiving {
                            rx,
                            closer: CloseOnDrop(room),
                        }),
                    },
                )
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

    /// Delivers `value` without waiting (it may pass senders that wait for room).
    pub(crate) fn try_send(&self, shard: usize, value: T) -> Result<(), MailError<T>> {
        let Some(slot) = self.boxes.get(shard) else {
            return Err(MailError::NoSuchShard(value));
        };
        slot.push(value)
    }

    /// Sends `*value` to `shard`, waiting for room while the mailbox is
    /// full. `wait` keeps this sender's registration between polls: start
    /// with `None`, keep it while the send is pending, drop it to give up
    /// (the value stays in `*value` until it is sent).
    pub(crate) fn poll_send(
        &self,
        shard: usize,
        value: &mut Option<T>,
        wait: &mut Option<RoomWait>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), MailError<T>>> {
        let v = value.take().expect("a pending send holds its value");
        let Some(slot) = self.boxes.get(shard) else {
            return Poll::Ready(Err(MailError::NoSuchShard(v)));
        };
        match slot.push(v) {
            Err(MailError::Full(back)) => *value = Some(back),
            done => return Poll::Ready(done),
        }
        Room::register(&slot.room, wait, cx.waker());
        // Once more after registering: room made before it is seen here.
        let v = value.take().expect("a pending send holds its value");
        match slot.push(v) {
            Err(MailError::Full(back)) => {
                *value = Some(back);
                Poll::Pending
            }
            done => Poll::Ready(done),
        }
    }

    /// Delivers `value`, waiting (asynchronously) while the mailbox is full.
    pub(crate) async fn send(&self, shard: usize, value: T) -> Result<(), MailError<T>> {
        let (mut value, mut wait) = (Some(value), None);
        poll_fn(|cx| self.poll_send(shard, &mut value, &mut wait, cx)).await
    }

    /// Delivers `value` from a plain thread, blocking at most `wait` while
    /// the mailbox is full.
    pub(crate) fn send_timeout(&self, shard: usize, value: T, wait: Duration) -> Result<(), MailError<T>> {
        let deadline = Instant::now() + wait;
        let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let (mut value, mut room) = (Some(value), None);
        loop {
            if let Poll::Ready(done) = self.poll_send(shard, &mut value, &mut room, &mut cx) {
                return done;
            }
            let now = Instant::now();
            if now >= deadline {
                let value = value.take().expect("a pending send holds its value");
                return Err(MailError::Full(value));
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Closes `shard`'s mailbox for good and hands each value still in it
    /// to `each`; then wakes the senders waiting for room (see the module
    /// docs).
    pub(crate) fn close(&self, shard: usize, inbox: &Mailbox<T>, mut each: impl FnMut(T)) {
        if let Some(slot) = self.boxes.get(shard) {
            slot.gate.close(|| inbox.shared.rx.drain().for_each(&mut each));
            slot.room.close();
        }
    }
}

impl<T> Slot<T> {
    /// One non-blocking push through the gate: the pass covers nothing that waits.
    fn push(&self, value: T) -> Result<(), MailError<T>> {
        let Some(_pass) = self.gate.enter() else {
            return Err(MailError::Closed(value));
        };
        self.tx.try_send(value).map_err(|err| match err {
            flume::TrySendError::Full(v) => MailError::Full(v),
            flume::TrySendError::Disconnected(v) => MailError::Closed(v),
        })
    }
}

/// Wakes a thread blocked in [`Mailboxes::send_timeout`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.unpark();
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
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

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

    /// Polls `send` once with `waker`.
    fn poll(
        send: Pin<&mut impl Future<Output = Result<(), MailError<u32>>>>,
        waker: &Waker,
    ) -> Poll<Result<(), MailError<u32>>> {
        send.poll(&mut Context::from_waker(waker))
    }

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn counter() -> (std::sync::Arc<Count>, Waker) {
        let count = std::sync::Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// A sender waiting for room, never polled again, does not hold up the
    /// close (the close once spun forever on its pass through the gate);
    /// woken by the close, it gets its value back.
    #[test]
    fn a_waiting_sender_never_polled_again_does_not_hold_up_the_close() {
        let (mail, rx) = Mailboxes::new(1, 1);
        mail.try_send(0, 1).unwrap();
        let (wakes, waker) = counter();
        let mut parked = Box::pin(mail.send(0, 2));
        assert!(poll(parked.as_mut(), &waker).is_pending());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let closer = {
            let (mail, rx) = (mail.clone(), rx[0].clone());
            std::thread::spawn(move || {
                let mut dropped = Vec::new();
                mail.close(0, &rx, |v| dropped.push(v));
                done_tx.send(dropped).unwrap();
            })
        };
        let dropped = done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the close finishes while a sender waits for room");
        closer.join().unwrap();
        assert_eq!(dropped, [1]);
        assert_eq!(wakes.0.load(SeqCst), 1, "the close wakes the waiting sender");
        assert!(matches!(
            poll(parked.as_mut(), &waker),
            Poll::Ready(Err(MailError::Closed(2)))
        ));
    }

    /// Senders waiting for room are woken as the receiver takes values, and
    /// each gets through; one that gives up leaves no waker behind.
    #[test]
    fn waiting_senders_get_through_as_room_is_made() {
        let (mail, rx) = Mailboxes::new(1, 1);
        mail.try_send(0, 0).unwrap();
        let ((wakes_a, a), (wakes_b, b)) = (counter(), counter());
        let (mut send_a, mut send_b) = (Box::pin(mail.send(0, 1)), Box::pin(mail.send(0, 2)));
        assert!(poll(send_a.as_mut(), &a).is_pending());
        assert!(poll(send_b.as_mut(), &b).is_pending());
        assert_eq!(mail.boxes[0].room.waiting(), 2);
        assert_eq!(rx[0].try_recv(), Some(0));
        assert_eq!(
            (wakes_a.0.load(SeqCst), wakes_b.0.load(SeqCst)),
            (1, 1),
            "both are woken"
        );
        assert!(matches!(poll(send_b.as_mut(), &b), Poll::Ready(Ok(()))));
        assert!(poll(send_a.as_mut(), &a).is_pending(), "b took the room");
        assert_eq!(rx[0].try_recv(), Some(2));
        assert_eq!(wakes_a.0.load(SeqCst), 2);
        assert!(matches!(poll(send_a.as_mut(), &a), Poll::Ready(Ok(()))));
        assert_eq!(rx[0].try_recv(), Some(1));
        // One that gives up while it waits leaves no waker behind.
        mail.try_send(0, 3).unwrap();
        let mut gives_up = Box::pin(mail.send(0, 4));
        assert!(poll(gives_up.as_mut(), &a).is_pending());
        assert_eq!(mail.boxes[0].room.waiting(), 1);
        drop(gives_up);
        assert_eq!(mail.boxes[0].room.waiting(), 0);
    }

    /// A thread sender blocked in `send_timeout` is woken by the receiver
    /// and gets through; one that stays blocked times out with its value.
    #[test]
    fn a_thread_sender_waits_for_room() {
        let (mail, rx) = Mailboxes::new(1, 1);
        mail.try_send(0, 0).unwrap();
        assert!(matches!(
            mail.send_timeout(0, 1, Duration::from_millis(20)),
            Err(MailError::Full(1))
        ));
        let sender = {
            let mail = mail.clone();
            std::thread::spawn(move || mail.send_timeout(0, 2, Duration::from_secs(10)))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while mail.boxes[0].room.waiting() == 0 {
            assert!(Instant::now() < deadline, "the sender never waited");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(rx[0].try_recv(), Some(0));
        assert!(sender.join().unwrap().is_ok());
        assert_eq!(rx[0].try_recv(), Some(2));
    }
}
