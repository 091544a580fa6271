//! The lanes' unit tests (single-threaded; the loom models are in
//! `sync/loom_tests.rs`).

use super::*;
use std::sync::atomic::AtomicUsize as Count;

fn ends(shards: usize, capacity: usize) -> Vec<(Outlanes<u32>, Inlanes<u32>)> {
    Lanes::new(shards, capacity).1
}

fn pair(capacity: usize) -> (Outlanes<u32>, Inlanes<u32>) {
    let mut ends = ends(2, capacity);
    let (_, in1) = ends.pop().unwrap();
    let (out0, _) = ends.pop().unwrap();
    (out0, in1)
}

#[test]
fn values_cross_in_order_and_a_full_lane_hands_the_value_back() {
    let (mut out0, mut in1) = pair(2);
    out0.try_send(1, 1).unwrap();
    out0.try_send(1, 2).unwrap();
    assert!(matches!(out0.try_send(1, 3), Err(MailError::Full(3))));
    assert!(matches!(out0.try_send(7, 4), Err(MailError::NoSuchShard(4))));
    assert_eq!(out0.queued(1), 2);
    let mut got = Vec::new();
    assert_eq!(in1.drain(usize::MAX, |v| got.push(v)), 2);
    assert_eq!(got, [1, 2]);
    assert_eq!(out0.queued(1), 0);
}

/// A sender in the wait queue: its own waker, its place, its value.
struct Sender {
    value: Option<u32>,
    wait: Option<RoomWait>,
    waker: Waker,
    woken: Arc<Count>,
}

impl Sender {
    fn new(value: u32) -> Self {
        let (waker, woken) = counting_waker();
        Sender {
            value: Some(value),
            wait: None,
            waker,
            woken,
        }
    }

    fn poll(&mut self, out: &mut Outlanes<u32>) -> Poll<Result<(), MailError<u32>>> {
        let mut cx = Context::from_waker(&self.waker);
        out.poll_send(1, &mut self.value, &mut self.wait, &mut cx)
    }

    fn woken(&self) -> usize {
        self.woken.load(SeqCst)
    }
}

#[test]
fn every_waiting_sender_is_woken_in_turn_and_sends() {
    // No lost wake-up: two senders of one shard wait on a full lane; each
    // must get its turn, not only the last to wait.
    let (mut out0, mut in1) = pair(1);
    out0.try_send(1, 0).unwrap();
    let (mut a, mut b) = (Sender::new(1), Sender::new(2));
    assert!(a.poll(&mut out0).is_pending());
    assert!(b.poll(&mut out0).is_pending());
    assert_eq!(out0.waiting(1), 2);
    let mut got = Vec::new();
    in1.drain(usize::MAX, |v| got.push(v));
    assert_eq!(a.woken(), 1, "the head waiter is woken by the drain");
    assert!(matches!(a.poll(&mut out0), Poll::Ready(Ok(()))));
    assert_eq!(b.woken(), 1, "the head that sent passed the baton on");
    assert!(b.poll(&mut out0).is_pending(), "no room yet for the second");
    in1.drain(usize::MAX, |v| got.push(v));
    assert_eq!(b.woken(), 2);
    assert!(matches!(b.poll(&mut out0), Poll::Ready(Ok(()))));
    in1.drain(usize::MAX, |v| got.push(v));
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(out0.waiting(1), 0);
}

#[test]
fn a_waiter_that_gives_up_passes_its_turn_on() {
    let (mut out0, mut in1) = pair(1);
    out0.try_send(1, 0).unwrap();
    let (mut a, mut b) = (Sender::new(1), Sender::new(2));
    assert!(a.poll(&mut out0).is_pending());
    assert!(b.poll(&mut out0).is_pending());
    drop(a); // the head gives up (a timeout around the send, say)
    assert_eq!(b.woken(), 1, "the next waiter took over the head's wait");
    assert!(b.poll(&mut out0).is_pending());
    in1.drain(usize::MAX, drop);
    assert_eq!(b.woken(), 2);
    assert!(matches!(b.poll(&mut out0), Poll::Ready(Ok(()))));
}

#[test]
fn new_senders_queue_behind_waiting_ones() {
    let (mut out0, mut in1) = pair(1);
    out0.try_send(1, 0).unwrap();
    let mut a = Sender::new(1);
    assert!(a.poll(&mut out0).is_pending());
    in1.drain(usize::MAX, drop);
    let mut late = Sender::new(9);
    assert!(
        late.poll(&mut out0).is_pending(),
        "the room is the waiting sender's"
    );
    assert!(matches!(a.poll(&mut out0), Poll::Ready(Ok(()))));
}

#[test]
fn a_drain_takes_what_was_there_and_no_more_than_its_budget() {
    let (mut out0, mut in1) = pair(8);
    for v in 0..6 {
        out0.try_send(1, v).unwrap();
    }
    let mut got = Vec::new();
    assert_eq!(in1.drain(4, |v| got.push(v)), 4);
    assert_eq!(got, [0, 1, 2, 3]);
    assert_eq!(in1.queued(), 2);
    assert_eq!(in1.drain(4, |v| got.push(v)), 2);
    assert_eq!(got, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_parked_receiver_is_rung_by_a_send_and_only_then() {
    let (mut out0, in1) = pair(4);
    let (waker, woken) = counting_waker();
    assert!(in1.poll_park(&mut Context::from_waker(&waker)).is_pending());
    out0.try_send(1, 9).unwrap();
    assert_eq!(woken.load(SeqCst), 1);
    assert!(in1.poll_park(&mut Context::from_waker(&waker)).is_ready());
    in1.unpark();
    out0.try_send(1, 10).unwrap();
    assert_eq!(woken.load(SeqCst), 1, "an unparked receiver is not rung");
}

#[test]
fn close_hands_back_what_waits_refuses_later_sends_and_wakes_waiters() {
    let (mut out0, mut in1) = pair(2);
    out0.try_send(1, 1).unwrap();
    out0.try_send(1, 2).unwrap();
    let (mut a, mut b) = (Sender::new(3), Sender::new(4));
    assert!(a.poll(&mut out0).is_pending());
    assert!(b.poll(&mut out0).is_pending());
    let mut dropped = Vec::new();
    in1.close(|v| dropped.push(v));
    assert_eq!(dropped, [1, 2]);
    assert!(matches!(out0.try_send(1, 5), Err(MailError::Closed(5))));
    assert_eq!(a.woken(), 1);
    assert!(matches!(
        a.poll(&mut out0),
        Poll::Ready(Err(MailError::Closed(3)))
    ));
    assert_eq!(b.woken(), 1);
    assert!(matches!(
        b.poll(&mut out0),
        Poll::Ready(Err(MailError::Closed(4)))
    ));
}

fn counting_waker() -> (Waker, Arc<Count>) {
    struct Counter(Arc<Count>);
    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let count = Arc::new(Count::new(0));
    (Waker::from(Arc::new(Counter(count.clone()))), count)
}

/// The queue of senders waiting for room: the baton passes to the next
/// sender still queued, over those that left from the middle, and gaps are
/// swept once they are half the queue.
#[test]
fn room_queue_passes_the_baton_over_senders_that_left() {
    let wakers: Vec<Waker> = (0..6).map(|_| counting_waker().0).collect();
    let mut queue = RoomQueue::default();
    let tickets: Vec<u64> = wakers.iter().map(|w| queue.join(w)).collect();
    assert!(queue.is_head(tickets[0]));
    assert!(queue.leave(tickets[2]).is_none(), "not the head: nobody to wake");
    assert!(queue.leave(tickets[1]).is_none());
    assert_eq!(queue.len(), 4);
    // The head leaves: its successor is 3 (1 and 2 left), woken through its
    // latest waker.
    let newer = counting_waker().0;
    queue.update(tickets[3], &newer);
    let next = queue.leave(tickets[0]).expect("a sender is still queued");
    assert!(next.will_wake(&newer));
    assert!(queue.is_head(tickets[3]));
    assert_eq!(
        (queue.len(), queue.gaps),
        (3, 0),
        "the gaps before the head are gone"
    );
    // Gaps behind the head are swept once they are half the queue.
    assert!(queue.leave(tickets[4]).is_none());
    assert_eq!(queue.gaps, 1);
    assert!(queue.leave(tickets[5]).is_none());
    assert_eq!((queue.waiting.len(), queue.gaps), (1, 0));
    assert!(
        queue.leave(tickets[3]).is_none(),
        "the last one leaves: nobody to wake"
    );
    assert_eq!(queue.len(), 0);
    // A ticket that left is not found again.
    assert!(queue.leave(tickets[3]).is_none());
    queue.update(tickets[3], &newer);
    assert_eq!(queue.len(), 0);
}
