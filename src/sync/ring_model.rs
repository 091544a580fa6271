//! A stand-in for `rtrb` under `cfg(loom)`: the same calls, on a loom
//! `Mutex`, so that loom sees every push and pop as a synchronisation point
//! (rtrb's own atomics are invisible to it). A lock orders more strongly
//! than rtrb's acquire/release indices, so the models check the lanes'
//! flags and fences, not rtrb itself (which has its own tests).

use std::collections::VecDeque;

use super::{lock, Arc, Mutex};

struct Ring<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
}

pub(crate) struct RingBuffer;

impl RingBuffer {
    #[allow(clippy::new_ret_no_self)]
    pub(crate) fn new<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
        let ring = Arc::new(Ring {
            items: Mutex::new(VecDeque::new()),
            capacity,
        });
        (Producer { ring: ring.clone() }, Consumer { ring })
    }
}

#[derive(Debug)]
pub(crate) enum PushError<T> {
    Full(T),
}

pub(crate) struct Producer<T> {
    ring: Arc<Ring<T>>,
}

impl<T> Producer<T> {
    pub(crate) fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        let mut items = lock(&self.ring.items);
        if items.len() == self.ring.capacity {
            return Err(PushError::Full(value));
        }
        items.push_back(value);
        Ok(())
    }

    pub(crate) fn slots(&self) -> usize {
        self.ring.capacity - lock(&self.ring.items).len()
    }
}

pub(crate) struct Consumer<T> {
    ring: Arc<Ring<T>>,
}

impl<T> Consumer<T> {
    pub(crate) fn pop(&mut self) -> Result<T, ()> {
        lock(&self.ring.items).pop_front().ok_or(())
    }

    pub(crate) fn slots(&self) -> usize {
        lock(&self.ring.items).len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots() == 0
    }
}
