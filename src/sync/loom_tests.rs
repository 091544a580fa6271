//! loom models of the cross-thread protocols: every interleaving (within a
//! preemption bound) of the threads below is run, under the C11 memory
//! model, and each must end with nothing lost and nobody asleep for good
//! (loom reports a thread parked with nobody left to wake it as a deadlock).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --lib --release sync::loom_tests`
//! (`scripts/test.sh` does). Each model prints how many interleavings it ran.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize as StdCount;
use std::sync::atomic::Ordering::Relaxed as StdRelaxed;
use std::task::{Context, Poll, Wake, Waker};

use futures_lite::future::poll_fn;
use loom::future::block_on;
use loom::thread;

use super::answer::AnswerSlot;
use super::gate::Gate;
use super::lanes::{Lanes, RoomWait};
use super::mailbox::{MailError, Mailboxes};
use super::{lock, Arc, Mutex};

/// Runs `model` under loom with a preemption bound of `bound`, and prints
/// how many interleavings it explored.
fn check(name: &str, bound: usize, model: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(StdCount::new(0));
    let counted = runs.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("LOOM_TRACE"))
        .with_writer(std::io::stderr)
        .try_init();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    builder.check(move || {
        counted.fetch_add(1, StdRelaxed);
        model();
    });
    println!(
        "loom model {name}: {} interleavings explored",
        runs.load(StdRelaxed)
    );
}

/// Which of a thread's tasks were woken, under a lock that wakers and the
/// thread share (the lock, not a park token, orders a wake before the poll
/// it leads to).
struct Woken {
    tasks: Mutex<[bool; 2]>,
    ready: loom::sync::Condvar,
}

/// The waker of task `task` of a [`Woken`] thread.
struct TaskWaker {
    woken: std::sync::Arc<Woken>,
    task: usize,
}

impl Wake for TaskWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        lock(&self.woken.tasks)[self.task] = true;
        self.woken.ready.notify_one();
    }
}

/// Two tasks of one thread, each with its own waker (the lost wake-up was
/// about *different* tasks waiting on one lane): polls each when woken,
/// and waits when neither is, until both are done.
fn run_two<'a>(
    mut a: Pin<&mut (dyn Future<Output = ()> + 'a)>,
    mut b: Pin<&mut (dyn Future<Output = ()> + 'a)>,
) {
    let woken = std::sync::Arc::new(Woken {
        tasks: Mutex::new([true, true]),
        ready: loom::sync::Condvar::new(),
    });
    let wakers: Vec<Waker> = (0..2)
        .map(|task| {
            Waker::from(std::sync::Arc::new(TaskWaker {
                woken: woken.clone(),
                task,
            }))
        })
        .collect();
    let mut done = [false, false];
    while !(done[0] && done[1]) {
        let runnable = {
            let mut tasks = lock(&woken.tasks);
            while !(0..2).any(|i| tasks[i] && !done[i]) {
                tasks = woken.ready.wait(tasks).unwrap();
            }
            std::mem::take(&mut *tasks)
        };
        for i in 0..2 {
            if !runnable[i] || done[i] {
                continue;
            }
            let mut cx = Context::from_waker(&wakers[i]);
            done[i] = if i == 0 {
                a.as_mut().poll(&mut cx).is_ready()
            } else {
                b.as_mut().poll(&mut cx).is_ready()
            };
        }
    }
}

/// No lost wake-up: two tasks of one shard wait for room in a full
/// lane of one slot; the receiver takes three values, parking in between.
/// Every sender must get through, and the receiver must get all three.
#[test]
fn lanes_every_waiting_sender_gets_through() {
    check("lanes_every_waiting_sender_gets_through", 3, || {
        let (_lanes, mut ends) = Lanes::new::<u32>(2, 1);
        let (_, mut inbox) = ends.pop().unwrap();
        let (mut outbox, _) = ends.pop().unwrap();
        outbox.try_send(1, 0).unwrap();
        let receiver = thread::spawn(move || {
            let mut got = Vec::new();
            block_on(poll_fn(|cx| loop {
                inbox.drain(usize::MAX, |v| got.push(v));
                if got.len() == 3 {
                    return Poll::Ready(());
                }
                if inbox.poll_park(cx).is_pending() {
                    return Poll::Pending;
                }
                inbox.unpark();
            }));
            got.sort_unstable();
            assert_eq!(got, [0, 1, 2]);
        });
        let outbox = std::cell::RefCell::new(outbox);
        let sender = |v: u32| {
            let outbox = &outbox;
            async move {
                let (mut value, mut wait): (Option<u32>, Option<RoomWait>) = (Some(v), None);
                poll_fn(|cx| outbox.borrow_mut().poll_send(1, &mut value, &mut wait, cx))
                    .await
                    .unwrap();
            }
        };
        let (a, b) = (sender(1), sender(2));
        futures_lite::pin!(a, b);
        run_two(a, b);
        receiver.join().unwrap();
    });
}

/// A sender waiting for room while the receiving shard closes its lanes:
/// the sender is woken and gets its value back; nothing is lost.
#[test]
fn lanes_close_wakes_a_waiting_sender() {
    check("lanes_close_wakes_a_waiting_sender", 3, || {
        let (_lanes, mut ends) = Lanes::new::<u32>(2, 1);
        let (_, mut inbox) = ends.pop().unwrap();
        let (mut outbox, _) = ends.pop().unwrap();
        outbox.try_send(1, 0).unwrap();
        let closer = thread::spawn(move || {
            let mut dropped = Vec::new();
            inbox.close(|v| dropped.push(v));
            dropped
        });
        let (mut value, mut wait) = (Some(1u32), None);
        let sent = block_on(poll_fn(|cx| outbox.poll_send(1, &mut value, &mut wait, cx)));
        let dropped = closer.join().unwrap();
        match sent {
            // Sent before the close: the closer dropped it with the first.
            Ok(()) => assert_eq!(dropped, [0, 1]),
            Err(MailError::Closed(back)) => {
                assert_eq!(back, 1);
                assert_eq!(dropped, [0]);
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    });
}

/// No lost wake-up in a mailbox: two tasks of a host thread wait for room
/// in a full mailbox of one slot (outside its gate); the receiver takes
/// three values. Every sender must get through, and the receiver must get
/// all three.
#[test]
fn mailbox_every_waiting_sender_gets_through() {
    check("mailbox_every_waiting_sender_gets_through", 3, || {
        let (mail, mut inboxes) = Mailboxes::<u32>::new(1, 1);
        let inbox = inboxes.pop().unwrap();
        mail.try_send(0, 0).unwrap();
        let receiver = thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 3 {
                match inbox.try_recv() {
                    Some(v) => got.push(v),
                    None => thread::yield_now(),
                }
            }
            got.sort_unstable();
            assert_eq!(got, [0, 1, 2]);
        });
        let sender = |v: u32| {
            let mail = &mail;
            async move { mail.send(0, v).await.unwrap() }
        };
        let (a, b) = (sender(1), sender(2));
        futures_lite::pin!(a, b);
        run_two(a, b);
        receiver.join().unwrap();
    });
}

/// A sender waiting for room in a mailbox while its shard closes it: the
/// sender is woken and gets its value back, or the closer drained it;
/// nothing is lost, and the closer does not wait for the sender.
#[test]
fn mailbox_close_wakes_a_waiting_sender() {
    check("mailbox_close_wakes_a_waiting_sender", 3, || {
        let (mail, mut inboxes) = Mailboxes::<u32>::new(1, 1);
        let inbox = inboxes.pop().unwrap();
        mail.try_send(0, 0).unwrap();
        let closer = {
            let mail = mail.clone();
            thread::spawn(move || {
                let mut dropped = Vec::new();
                mail.close(0, &inbox, |v| dropped.push(v));
                dropped
            })
        };
        let sent = block_on(mail.send(0, 1));
        let dropped = closer.join().unwrap();
        match sent {
            // Sent before the close: the closer dropped it with the first.
            Ok(()) => assert_eq!(dropped, [0, 1]),
            Err(MailError::Closed(back)) => {
                assert_eq!(back, 1);
                assert_eq!(dropped, [0]);
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    });
}

/// The close protocol of lanes and mailboxes: a sender either sees the
/// gate closed and keeps its value, or the closer drains what it sent.
#[test]
fn gate_nothing_stays_behind() {
    check("gate_nothing_stays_behind", 3, || {
        let shared = Arc::new((Gate::new(), Mutex::new(Vec::new())));
        let sender = {
            let shared = shared.clone();
            thread::spawn(move || {
                let (gate, queue) = &*shared;
                let mut kept = 0;
                for v in 0..2u32 {
                    match gate.enter() {
                        Some(_pass) => lock(queue).push(v),
                        None => kept += 1,
                    }
                }
                kept
            })
        };
        let (gate, queue) = &*shared;
        let mut drained = 0;
        gate.close(|| drained += lock(queue).drain(..).count());
        let kept = sender.join().unwrap();
        assert_eq!(kept + drained, 2, "every value is kept by its sender or drained");
        assert!(lock(queue).is_empty());
    });
}

/// `submit_to`'s answer: the caller parks while the target answers; it
/// always wakes with the answer (or learns there will be none).
#[test]
fn answer_slot_reaches_a_parked_caller() {
    for abandon in [false, true] {
        check("answer_slot_reaches_a_parked_caller", 3, move || {
            let slot = Arc::new(AnswerSlot::<u32>::new());
            let writer = {
                let slot = slot.clone();
                thread::spawn(move || {
                    if abandon {
                        slot.abandon();
                    } else {
                        slot.fill(7);
                        slot.abandon(); // after an answer: changes nothing
                    }
                })
            };
            let got = block_on(poll_fn(|cx| {
                if let Some(answer) = slot.try_take() {
                    return Poll::Ready(answer);
                }
                slot.park(cx.waker());
                match slot.try_take() {
                    Some(answer) => Poll::Ready(answer),
                    None => Poll::Pending,
                }
            }));
            writer.join().unwrap();
            assert_eq!(got, (!abandon).then_some(7));
        });
    }
}

/// `GlobalLimit`: a permit released on one thread is granted to a waiter
/// on another, and a waiter that gives up a grant passes it on.
#[test]
fn global_limit_grant_and_hand_off() {
    check("global_limit_grant_and_hand_off", 2, || {
        let limit = crate::GlobalLimit::new(1);
        let held = limit.try_acquire().expect("a free permit");
        let releaser = thread::spawn(move || drop(held));
        let waiter = {
            let limit = limit.clone();
            thread::spawn(move || {
                let permit = block_on(limit.acquire());
                drop(permit);
            })
        };
        releaser.join().unwrap();
        waiter.join().unwrap();
        assert_eq!(limit.available(), 1);
        assert_eq!(limit.waiting(), 0);
    });
    check("global_limit_abandoned_grant_passes_on", 2, || {
        let limit = crate::GlobalLimit::new(1);
        let held = limit.try_acquire().expect("a free permit");
        // First in line, then gives up (granted or not).
        let mut first = Box::pin(limit.acquire());
        assert!(poll_once(first.as_mut()).is_pending());
        let second = {
            let limit = limit.clone();
            thread::spawn(move || drop(block_on(limit.acquire())))
        };
        let releaser = thread::spawn(move || drop(held));
        drop(first);
        releaser.join().unwrap();
        second.join().unwrap();
        assert_eq!(limit.available(), 1);
    });
}

/// The stop signal: a task waiting for the stop is always woken.
#[test]
fn stop_reaches_a_waiting_task() {
    check("stop_reaches_a_waiting_task", 3, || {
        let stopper = crate::Stopper::new();
        let waiter = {
            let stopper = stopper.clone();
            thread::spawn(move || block_on(stopper.stopped()))
        };
        stopper.stop(std::time::Duration::from_secs(1));
        waiter.join().unwrap();
        assert!(stopper.is_stopped());
    });
}

fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}
