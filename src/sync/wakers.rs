//! [`WakerSet`]: shard-local wakers kept by key, one per waiter.
//!
//! A future that waits keeps its key between polls, so polling it again
//! (a `timeout` or `select` around it does) replaces its waker instead of
//! adding one more; dropping the future gives the key back. Used by the
//! registry of waiting tasks (`task/guard.rs`) and by a pool's idle watchers.
//!
//! [`wake_all`], [`wake_all_counted`] and [`wake_all_then_panic`] wake a batch of wakers taken
//! out of any such set.

use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::task::Waker;

/// Wakes every waker of `wakers`, even when one of them panics (a waker is
/// someone else's code: a test's, another executor's), so that the waiters
/// after it are not left unwoken with what was granted to them. A waker's
/// panic is logged and goes no further: the caller (a stop, a shard's
/// outcome, the readiness driver, a connection's close) could do nothing
/// with it, and some are destructors.
pub(crate) fn wake_all(wakers: impl IntoIterator<Item = Waker>) {
    if let Some(panic) = wake_each(wakers) {
        log(&*panic);
    }
}

/// [`wake_all`], each panic also counted with the shard's caught panics
/// ([`shard::panics`](crate::shard::panics)): for a pool slot given back,
/// or an HTTP client's per-host connecting lock let go, inside a task's
/// destructor or a stream's, where nobody could catch it.
pub(crate) fn wake_all_counted(wakers: impl IntoIterator<Item = Waker>) {
    for waker in wakers {
        if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| waker.wake())) {
            super::count_panic();
            log(&*panic);
        }
    }
}

/// [`wake_all`], and then the last panic goes on to the caller (the panic
/// hook's record of where a panic happened is the last one's; earlier ones
/// are logged): for the user who resized a pool.
pub(crate) fn wake_all_then_panic(wakers: impl IntoIterator<Item = Waker>) {
    if let Some(panic) = wake_each(wakers) {
        panic::resume_unwind(panic);
    }
}

/// Wakes each waker; the last panic, if any (earlier ones logged).
fn wake_each(wakers: impl IntoIterator<Item = Waker>) -> Option<Box<dyn std::any::Any + Send>> {
    let mut last = None;
    for waker in wakers {
        if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| waker.wake())) {
            if let Some(earlier) = last.replace(panic) {
                log(&*earlier);
            }
        }
    }
    last
}

fn log(panic: &(dyn std::any::Any + Send)) {
    let message = super::panic_message(panic);
    tracing::error!(target: "shardlet::task", "a waker panicked when woken: {message}");
}

/// A waiter's key in a [`WakerSet`]. A full word, as `Option<WakerKey>` is:
/// a task's guard is built field by field and then copied into glommio's
/// allocation in whole words, and a 4-byte field beside 4 bytes of padding
/// made that copy wait for a store it could not forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WakerKey(NonZeroUsize);

impl WakerKey {
    fn index(self) -> usize {
        self.0.get() - 1
    }

    fn of(index: usize) -> Self {
        WakerKey(NonZeroUsize::new(index + 1).expect("index + 1 is never zero"))
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct WakerSet {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
    live: usize,
}

impl WakerSet {
    pub(crate) const fn new() -> Self {
        WakerSet {
            wakers: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// Keeps `waker` under `key`, taking a key the first time.
    pub(crate) fn register(&mut self, key: &mut Option<WakerKey>, waker: &Waker) {
        match *key {
            Some(k) => match &mut self.wakers[k.index()] {
                Some(old) if old.will_wake(waker) => {}
                entry => *entry = Some(waker.clone()),
            },
            None => {
                let i = self.free.pop().unwrap_or_else(|| {
                    self.wakers.push(None);
                    self.wakers.len() - 1
                });
                self.wakers[i] = Some(waker.clone());
                self.live += 1;
                *key = Some(WakerKey::of(i));
            }
        }
    }

    /// Gives `key` back.
    pub(crate) fn remove(&mut self, key: WakerKey) {
        self.wakers[key.index()] = None;
        self.free.push(key.index());
        self.live -= 1;
    }

    /// Takes one waker out, the first at or after slot `from` (going round
    /// to the start), and the slot after it: a caller that passes that back
    /// next time wakes its waiters in turn, none of them starved by others
    /// in lower slots. The key stays taken until removed.
    pub(crate) fn take_one(&mut self, from: usize) -> Option<(Waker, usize)> {
        let n = self.wakers.len();
        let start = if from < n { from } else { 0 };
        (start..n)
            .chain(0..start)
            .find_map(|i| self.wakers[i].take().map(|w| (w, i + 1)))
    }

    /// Takes every waker out (the keys stay taken until removed).
    pub(crate) fn take_all(&mut self) -> Vec<Waker> {
        self.wakers.iter_mut().filter_map(Option::take).collect()
    }

    /// Keys taken.
    pub(crate) fn len(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    /// A waker that counts its wakes, and panics when woken if `panics`.
    struct Count {
        woken: AtomicUsize,
        panics: bool,
    }

    impl Count {
        fn new(panics: bool) -> Arc<Count> {
            Arc::new(Count {
                woken: AtomicUsize::new(0),
                panics,
            })
        }

        fn woken(&self) -> usize {
            self.woken.load(SeqCst)
        }
    }

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.woken.fetch_add(1, SeqCst);
            if self.panics {
                panic!("bad waker {:p}", Arc::as_ptr(&self));
            }
        }
    }

    #[test]
    fn polling_again_replaces_the_waker_and_removing_frees_the_key() {
        let mut set = WakerSet::new();
        let (mut a, mut b) = (None, None);
        for _ in 0..100 {
            set.register(&mut a, Waker::noop());
        }
        set.register(&mut b, Waker::noop());
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.take_all().len(),
            2,
            "one waker per key, however often it registered"
        );
        set.remove(a.unwrap());
        let mut c = None;
        set.register(&mut c, Waker::noop());
        assert_eq!(c, a, "a freed key is reused");
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn a_new_waker_replaces_the_old_one() {
        let (first, second) = (Count::new(false), Count::new(false));
        let mut set = WakerSet::new();
        let mut key = None;
        set.register(&mut key, &Waker::from(first.clone()));
        set.register(&mut key, &Waker::from(second.clone()));
        wake_all(set.take_all());
        assert_eq!((first.woken(), second.woken()), (0, 1));
    }

    #[test]
    fn wake_all_wakes_the_others_when_one_panics() {
        // The first and the third panic.
        let counts: Vec<_> = (0..4).map(|i| Count::new(i % 2 == 0)).collect();
        let wakers: Vec<Waker> = counts.iter().map(|c| Waker::from(c.clone())).collect();
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| wake_all_then_panic(wakers)));
        let panic = caught.expect_err("a panic goes on");
        assert_eq!(
            panic.downcast_ref::<String>(),
            Some(&format!("bad waker {:p}", Arc::as_ptr(&counts[2]))),
            "the last one's"
        );
        let woken: Vec<usize> = counts.iter().map(|c| c.woken()).collect();
        assert_eq!(woken, [1, 1, 1, 1], "every waker woken once");
    }

    #[test]
    fn wake_all_logs_a_panic_and_goes_on() {
        let counts: Vec<_> = (0..3).map(|_| Count::new(true)).collect();
        wake_all(counts.iter().map(|c| Waker::from(c.clone())));
        let woken: Vec<usize> = counts.iter().map(|c| c.woken()).collect();
        assert_eq!(woken, [1, 1, 1], "every waker woken once, and no panic came out");
    }
}
