//! [`Closing`]: a shard-local signal telling idle keep-alive connections
//! that the server is stopping.
//!
//! The net layer's stop requests are cross-thread (`Stopper`); thousands of
//! idle connections waiting on them would each register with one shared
//! channel, on every request. Instead one watcher per shard waits for the
//! stop and sets this signal, and connections wait on it: a `Cell` and a
//! slab of wakers, no lock, no allocation per wait once the slab has grown.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Clone, Default)]
pub(crate) struct Closing {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    set: Cell<bool>,
    wakers: RefCell<Wakers>,
}

#[derive(Default)]
struct Wakers {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Closing {
    /// Sets the signal and wakes every waiter.
    pub(crate) fn set(&self) {
        self.inner.set.set(true);
        let wakers: Vec<Waker> = self
            .inner
            .wakers
            .borrow_mut()
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        crate::sync::wakers::wake_all(wakers);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.inner.set.get()
    }

    /// Resolves once the signal is set.
    pub(crate) fn wait(&self) -> Wait<'_> {
        Wait {
            closing: self,
            slot: None,
        }
    }
}

pub(crate) struct Wait<'a> {
    closing: &'a Closing,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.closing.is_set() {
            return Poll::Ready(());
        }
        let mut wakers = self.closing.inner.wakers.borrow_mut();
        match self.slot {
            // A connection polls this on every step of its driver: the
            // same task's waker, kept without a clone (and a drop) each time.
            Some(i) => match &mut wakers.slots[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            },
            None => {
                let i = wakers.free.pop().unwrap_or_else(|| {
                    wakers.slots.push(None);
                    wakers.slots.len() - 1
                });
                wakers.slots[i] = Some(cx.waker().clone());
                drop(wakers);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut wakers = self.closing.inner.wakers.borrow_mut();
            wakers.slots[i] = None;
            wakers.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn waiters_wake_on_set_and_slots_are_reused() {
        let closing = Closing::default();
        future::block_on(async {
            let mut first = Box::pin(closing.wait());
            assert!(future::poll_once(first.as_mut()).await.is_none());
            {
                let mut second = Box::pin(closing.wait());
                assert!(future::poll_once(second.as_mut()).await.is_none());
            }
            assert_eq!(closing.inner.wakers.borrow().free, [1]);
            closing.set();
            assert!(future::poll_once(first.as_mut()).await.is_some());
            closing.wait().await;
        });
    }
}
