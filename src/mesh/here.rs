//! This shard's end of the mesh: the mesh handle and the sending ends of
//! its lanes, kept in a thread-local of the mesh's own. The runtime installs
//! it when the shard starts ([`enter`]) and it is emptied when the shard
//! ends; the free functions ([`spawn_on`](crate::spawn_on) and the rest),
//! cross-shard wakes and [`shard::mesh`](crate::shard::mesh) read it.

use std::cell::RefCell;
use std::rc::Rc;

use crate::sync::lanes::Lanes;
use crate::sync::local::{self, Installed};

use super::{Mesh, Outbox};

/// A shard's place in its runtime's mesh.
pub(crate) struct Here {
    /// This shard's index.
    pub(crate) id: usize,
    /// The runtime's mesh.
    pub(crate) mesh: Mesh,
    /// This shard's sending ends of the mesh's lanes.
    pub(crate) outbox: RefCell<Outbox>,
}

thread_local! {
    static HERE: RefCell<Option<Rc<Here>>> = const { RefCell::new(None) };
}

/// Makes this thread shard `id` of `mesh`, sending on `outbox`, until the guard drops.
pub(crate) fn enter(id: usize, mesh: Mesh, outbox: Outbox) -> Installed<Rc<Here>> {
    local::install(
        &HERE,
        Rc::new(Here {
            id,
            mesh,
            outbox: RefCell::new(outbox),
        }),
    )
}

/// This shard's place in the mesh (an `Rc` clone: no shared counter
/// touched per call), or `None` off a shard.
pub(crate) fn here() -> Option<Rc<Here>> {
    local::with(&HERE, Rc::clone)
}

/// Calls `f` with this shard's outbox, if this thread is a shard that
/// sends on `lanes` (and the outbox is not in use further up the stack).
pub(crate) fn with_outbox<R>(lanes: &Lanes, f: impl FnOnce(&mut Outbox) -> R) -> Option<R> {
    HERE.try_with(|c| {
        let here = c.borrow();
        let here = here.as_deref()?;
        let mut outbox = here.outbox.try_borrow_mut().ok()?;
        lanes.owns(&outbox).then(|| f(&mut outbox))
    })
    .ok()
    .flatten()
}
