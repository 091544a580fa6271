//! The readiness driver's table of registrations: a slab whose keys carry a
//! generation, so that an event for a slot that was freed and reused (a
//! stale key) finds nothing instead of the wrong socket.

/// A registration's key as epoll carries it in `epoll_event.data`: the
/// slot index in the low 32 bits, the slot's generation in the high 32.
pub(crate) type Token = u64;

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Values addressed by [`Token`]s; freed slots are reused (last freed,
/// first reused), with their generation bumped.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` and returns its token.
    pub(crate) fn insert(&mut self, value: T) -> Token {
        self.len += 1;
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.value = Some(value);
                token(index, slot.generation)
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 registrations");
                self.slots.push(Slot {
                    generation: 0,
                    value: Some(value),
                });
                token(index, 0)
            }
        }
    }

    /// The value behind `token`, unless it was removed.
    pub(crate) fn get(&self, token: Token) -> Option<&T> {
        let (index, generation) = split(token);
        self.slots
            .get(index as usize)
            .filter(|slot| slot.generation == generation)
            .and_then(|slot| slot.value.as_ref())
    }

    /// Removes and returns the value behind `token`; its slot's next value
    /// gets a new generation.
    pub(crate) fn remove(&mut self, token: Token) -> Option<T> {
        let (index, generation) = split(token);
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation != generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    /// How many values are stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

fn token(index: u32, generation: u32) -> Token {
    u64::from(generation) << 32 | u64::from(index)
}

fn split(token: Token) -> (u32, u32) {
    (token as u32, (token >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_slot_does_not_answer_to_its_old_token() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!(
            (slab.get(a), slab.get(b), slab.len()),
            (Some(&"a"), Some(&"b"), 2)
        );
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None, "removed twice");
        let c = slab.insert("c");
        assert_eq!(c as u32, a as u32, "the slot is reused");
        assert_eq!(slab.get(a), None, "the old token is stale");
        assert_eq!(slab.get(c), Some(&"c"));
        assert_eq!(slab.len(), 2);
    }
}
