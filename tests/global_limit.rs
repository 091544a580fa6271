//! GlobalLimit: a concurrency limit held across shards, FIFO waiters, piles
//! bound to it.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use shardlet::{shard, GlobalLimit, GreenPile};
use util::{assert_send_sync, run1, run2};

/// Counts how many holders are inside at once, across threads.
#[derive(Clone, Default)]
struct SharedMeter {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl SharedMeter {
    async fn inside(&self, hold: Duration) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        shardlet::sleep(hold).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn smoke_acquire_and_release() {
    assert_send_sync::<GlobalLimit>();
    let limit = GlobalLimit::new(2);
    let l = limit.clone();
    run1(move || {
        let l = l.clone();
        async move {
            let a = l.acquire().await;
            let b = l.try_acquire().expect("second permit");
            assert!(l.try_acquire().is_none(), "only two permits");
            assert_eq!((l.in_use(), l.available()), (2, 0));
            drop((a, b));
        }
    });
    assert_eq!(limit.available(), 2);
}

#[test]
fn the_limit_holds_across_two_shards_under_load() {
    const LIMIT: usize = 3;
    const TASKS_PER_SHARD: usize = 60;
    let limit = GlobalLimit::new(LIMIT);
    let meter = SharedMeter::default();
    let (l, m) = (limit.clone(), meter.clone());
    let done = run2(move || {
        let (limit, meter) = (l.clone(), m.clone());
        async move {
            let mut pile = GreenPile::new(&limit);
            for i in 0..TASKS_PER_SHARD {
                let meter = meter.clone();
                pile.spawn(async move {
                    meter
                        .inside(Duration::from_micros(200 + (i as u64 % 7) * 100))
                        .await;
                    (shard::id(), i)
                })
                .await;
            }
            // Results in spawn order, all of them.
            let got: Vec<(usize, usize)> = pile.map(Result::unwrap).collect().await;
            let expected: Vec<(usize, usize)> = (0..TASKS_PER_SHARD).map(|i| (shard::id(), i)).collect();
            assert_eq!(got, expected);
            got.len()
        }
    });
    assert_eq!(done, [TASKS_PER_SHARD, TASKS_PER_SHARD]);
    let max = meter.max.load(Ordering::SeqCst);
    assert!(max <= LIMIT, "{max} tasks ran at once under a limit of {LIMIT}");
    assert_eq!(max, LIMIT, "the load should have filled the limit");
    assert_eq!(limit.available(), LIMIT, "every permit came back");
    assert_eq!(limit.waiting(), 0);
}

#[test]
fn waiters_are_served_in_arrival_order_and_a_dropout_passes_its_turn() {
    let order = run1(|| async {
        let limit = GlobalLimit::new(1);
        let held = limit.acquire().await;
        let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..4 {
            let (limit, order) = (limit.clone(), order.clone());
            waiters.push(shardlet::spawn(async move {
                let permit = limit.acquire().await;
                order.borrow_mut().push(i);
                shardlet::sleep(Duration::from_millis(1)).await;
                drop(permit);
            }));
            util::settle().await; // queue them in this order
        }
        assert_eq!(limit.waiting(), 4);
        waiters[1].cancel(); // gives up while queued
        util::settle().await;
        assert_eq!(limit.waiting(), 3);
        drop(held);
        for w in waiters {
            let _ = w.await;
        }
        assert_eq!(limit.available(), 1);
        let order = order.borrow().clone();
        order
    });
    assert_eq!(order, [0, 2, 3]);
}

#[test]
fn a_cancelled_holder_gives_its_permit_back() {
    run1(|| async {
        let limit = GlobalLimit::new(1);
        let l = limit.clone();
        let holder = shardlet::spawn(async move {
            let _permit = l.acquire().await;
            shardlet::sleep(Duration::from_secs(60)).await;
        });
        util::wait_until("the holder took the permit", || limit.available() == 0).await;
        holder.cancel();
        assert!(holder.await.unwrap_err().is_cancelled());
        util::wait_until("the permit came back", || limit.available() == 1).await;
    });
}

/// A waker is someone else's code, and may touch the limit itself: here the
/// waker of the granted waiter drops another waiter's pending acquire, which
/// takes the limit's queue lock. Woken under that lock, it deadlocked.
#[test]
fn a_waker_that_touches_the_limit_is_woken_outside_its_lock() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Wake, Waker};

    use shardlet::AcquireGlobal;

    struct DropsAnother {
        other: Mutex<Option<AcquireGlobal>>,
        woken: AtomicBool,
    }
    impl Wake for DropsAnother {
        fn wake(self: Arc<Self>) {
            self.other.lock().unwrap().take();
            self.woken.store(true, Ordering::SeqCst);
        }
    }
    fn poll(acquire: &mut AcquireGlobal, waker: &Waker) -> Option<shardlet::GlobalPermit> {
        match std::pin::Pin::new(acquire).poll(&mut Context::from_waker(waker)) {
            Poll::Ready(permit) => Some(permit),
            Poll::Pending => None,
        }
    }
    use std::future::Future;

    let limit = GlobalLimit::new(1);
    let held = limit.try_acquire().expect("a free permit");
    let waking = Arc::new(DropsAnother {
        other: Mutex::new(None),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(waking.clone());
    let mut first = limit.acquire();
    assert!(poll(&mut first, &waker).is_none(), "the permit is held");
    let mut second = limit.acquire();
    assert!(poll(&mut second, Waker::noop()).is_none());
    *waking.other.lock().unwrap() = Some(second);
    assert_eq!(limit.waiting(), 2);

    // The release grants `first` and wakes it; in another thread, so that a
    // deadlock fails the test instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(held);
        let _ = done.send(());
    });
    if finished.recv_timeout(Duration::from_secs(10)).is_err() {
        // Deadlocked: dropping `first` would wait for the lock too.
        std::mem::forget(first);
        panic!("the release never returned: its waker ran under the limit's lock");
    }
    assert!(waking.woken.load(Ordering::SeqCst));
    let permit = poll(&mut first, &waker).expect("the first waiter was granted the permit");
    assert_eq!(
        (limit.waiting(), limit.available()),
        (0, 0),
        "the second waiter left the queue"
    );
    drop(permit);
    assert_eq!(limit.available(), 1);
}
