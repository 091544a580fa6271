//! Waking a task on another shard down the lanes ([`wake`]), instead of
//! through glommio's cross-thread wake.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use super::job::{take, Envelope, Job};

/// Where a task lives: a shard of one runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Home {
    mesh: usize,
    shard: usize,
}

impl Home {
    /// The current task's home, or `None` off a shard.
    pub(crate) fn here() -> Option<Home> {
        super::here::here().map(|c| Home {
            mesh: c.mesh.id(),
            shard: c.id,
        })
    }
}

/// A wake sent down a lane: run on the woken task's own shard.
struct WakeJob(Mutex<Option<Waker>>);

impl Job for WakeJob {
    fn run(self: Arc<Self>, _cx: &mut Context<'_>) {
        if let Some(waker) = take(&self.0) {
            wake_here(waker);
        }
    }

    /// Not delivered (a full lane, a shard that ended): wake it directly.
    fn abandon(&self) {
        if let Some(waker) = take(&self.0) {
            wake_here(waker);
        }
    }

    fn take_closure(&self) -> Option<Box<dyn Any + Send>> {
        None
    }

    fn is_user(&self) -> bool {
        false
    }
}

/// Wakes `waker`, whose task lives at `home`.
///
/// From another shard of the same runtime, the wake travels down this
/// shard's lane as a message that the home shard's inbox loop runs at once
/// (a local wake there), instead of glommio's cross-thread wake (an eventfd
/// write that the home shard reads back through io_uring, much slower even
/// when both shards are busy). If the lane is full,
/// or from anywhere else, it wakes directly. Either way a waker that
/// panics is caught (see [`wake_here`]).
pub(crate) fn wake(home: Option<Home>, waker: Waker) {
    if let (Some(home), Some(here)) = (home, super::here::here()) {
        if here.mesh.id() == home.mesh && here.id != home.shard {
            let job = Envelope::new(Arc::new(WakeJob(Mutex::new(Some(waker)))));
            // A failed delivery drops the envelope, whose job then wakes directly.
            let _ = here.mesh.try_deliver(home.shard, job);
            return;
        }
    }
    wake_here(waker);
}

/// Wakes `waker` from this thread. A waker is someone else's code (a
/// foreign executor's, a test's) and may panic; its panic is caught,
/// counted and logged here, so it neither ends the inbox loop that runs a
/// wake from another shard nor comes out of the permit's drop that granted it.
fn wake_here(waker: Waker) {
    crate::sync::wakers::wake_all_counted(std::iter::once(waker));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_is_not_a_users_message() {
        // `Mesh::dropped` counts users' messages, not the mesh's own wake-ups.
        let wake = Envelope::new(Arc::new(WakeJob(Mutex::new(None))));
        assert!(!wake.is_user());
        let job = super::super::job::SpawnJob(Mutex::new(Some(|| async {})));
        assert!(Envelope::new(Arc::new(job)).is_user());
    }
}
