//! The stream behind [`GreenPool::imap`](crate::GreenPool::imap) and
//! [`GreenPool::starmap`](crate::GreenPool::starmap).
//!
//! The stream keeps a *window* of calls in input order. It pulls the next
//! input only once it holds a pool slot for it, and the window never holds
//! more than the pool's size, finished or not, so neither inputs nor results
//! pile up when one slow call holds up the head. A finished call gives its
//! slot back at once (other users of the pool can take it); its result waits
//! in the window until the consumer reaches it.
//!
//! The stream waits for a slot in the pool's queue only while it returns
//! `Pending`: it leaves the queue each time it yields a result, so a consumer
//! that spawns into the same pool between results is never kept waiting by
//! a slot granted to the stream it is not polling. (A stream polled once and
//! then neither polled nor dropped keeps its place, and a slot granted to
//! it, as any pending `spawn` does.)
//!
//! The calls run in a [`Crew`]: one green thread of the stream's own polls
//! them all, each under the guard and as a member of the pool, in the
//! background whether or not the consumer polls. (A task per call cost
//! twice what the same work costs on raw glommio tasks.)

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::Stream;

use crate::pool::GreenPool;
use crate::sync::slots::{with_permit, Acquire, Holding, Permit};
use crate::task::crew::{Crew, OnDrop};
use crate::task::guard::{self, Isolated};
use crate::task::JoinError;

/// Stream of results in input order; see [`GreenPool::imap`].
///
/// Dropping it cancels the calls still in flight (their futures are
/// dropped, and their pool slots freed, before the drop returns).
#[must_use = "streams do nothing unless polled"]
pub struct Imap<I, F, Fut: Future> {
    pool: GreenPool,
    iter: Option<I>,
    f: F,
    window: VecDeque<Call<Fut>>,
    crew: Crew<Isolated<Holding<Fut, Permit>>>,
    acquire: Option<Acquire>,
}

enum Call<Fut: Future> {
    /// Runs in the stream's crew, holding a pool slot; its result is the
    /// crew's next.
    Crewed,
    /// `f` panicked before it returned a future.
    Failed(Option<JoinError>),
    /// Runs inside the consumer: the consumer is one of the pool's own tasks
    /// and the pool is full (see the pool's module docs).
    Inline(Pin<Box<Isolated<Fut>>>),
}

// The stream never pins its iterator or closure, and the calls it pins are boxed.
impl<I, F, Fut: Future> Unpin for Imap<I, F, Fut> {}

impl<I, F, Fut> Imap<I, F, Fut>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + 'static,
    Fut::Output: 'static,
{
    pub(crate) fn new(pool: GreenPool, iter: I, f: F) -> Self {
        Imap {
            pool,
            iter: Some(iter),
            f,
            window: VecDeque::new(),
            crew: Crew::new(OnDrop::Cancel),
            acquire: None,
        }
    }

    /// Starts calls while the window has room and slots are free; with
    /// `cx`, queues for a slot when none is (its waker registered).
    fn fill(&mut self, mut cx: Option<&mut Context<'_>>) {
        while self.iter.is_some() && self.window.len() < self.pool.size() {
            match self.next_permit(cx.as_deref_mut()) {
                Some(permit) => match self.next_item() {
                    Some(Ok(fut)) => self.crewed(fut, permit),
                    Some(Err(failed)) => self.window.push_back(Call::Failed(Some(failed))),
                    None => break,
                },
                None => {
                    if self.window.is_empty() && self.pool.is_current_member() {
                        let beyond = self.pool.inline_or_beyond();
                        match (self.next_item(), beyond) {
                            (Some(Ok(fut)), Some(permit)) => self.crewed(fut, permit),
                            (Some(Ok(fut)), None) => {
                                let inline = Isolated::new(fut, Some(self.pool.id()));
                                self.window.push_back(Call::Inline(Box::pin(inline)));
                            }
                            (Some(Err(failed)), _) => self.window.push_back(Call::Failed(Some(failed))),
                            (None, _) => {}
                        }
                    }
                    break;
                }
            }
        }
    }

    /// Starts `fut`, holding `permit`, in the crew (in a finished call's
    /// place when there is one).
    fn crewed(&mut self, fut: Fut, permit: Permit) {
        let call = with_permit(fut, permit);
        let pool = self.pool.id();
        self.crew.add(|finished| match finished {
            Some(mut done) => {
                done.as_mut().refill(call);
                done
            }
            None => Box::pin(Isolated::new(call, Some(pool))),
        });
        self.window.push_back(Call::Crewed);
    }

    /// A free slot, or `None` with this task queued (and its waker
    /// registered) when there is a `cx`.
    fn next_permit(&mut self, cx: Option<&mut Context<'_>>) -> Option<Permit> {
        if self.acquire.is_none() {
            if let Some(permit) = self.pool.try_slot() {
                return Some(permit);
            }
        }
        let cx = cx?;
        let acquire = self.acquire.get_or_insert_with(|| self.pool.acquire());
        match Pin::new(acquire).poll(cx) {
            Poll::Ready(permit) => {
                self.acquire = None;
                Some(permit)
            }
            Poll::Pending => None,
        }
    }

    /// The next call's future; `Err` if `f` itself panicked making it (that
    /// call's result, at its position, like a panic inside the future).
    fn next_item(&mut self) -> Option<Result<Fut, JoinError>> {
        match self.iter.as_mut()?.next() {
            Some(item) => {
                let f = &mut self.f;
                Some(guard::guard_sync(move || f(item)))
            }
            None => {
                self.iter = None;
                self.acquire = None;
                None
            }
        }
    }
}

impl<I, F, Fut> Stream for Imap<I, F, Fut>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + 'static,
    Fut::Output: 'static,
{
    type Item = Result<Fut::Output, JoinError>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.fill(Some(cx));
        let Some(head) = this.window.front_mut() else {
            // Empty window: done, or queued for a slot (waker registered in fill).
            return if this.iter.is_none() {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        };
        let polled = match head {
            Call::Crewed => this
                .crew
                .poll_next_result(cx)
                .map(|r| r.expect("a crewed call has its result in the crew")),
            Call::Inline(fut) => fut.as_mut().poll(cx),
            Call::Failed(failed) => Poll::Ready(Err(failed.take().expect("yielded once"))),
        };
        match polled {
            Poll::Ready(result) => {
                this.window.pop_front();
                // The consumer goes away with this result, and may wait on
                // the pool itself (spawning into it): a slot request left
                // queued would be granted to a stream nobody polls, and the
                // consumer's own spawn would wait for it forever. Dropped,
                // it leaves the queue (or passes on a slot granted already);
                // the next poll queues again. Free slots are still taken.
                this.acquire = None;
                this.fill(None);
                Poll::Ready(Some(result))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I, F, Fut: Future> fmt::Debug for Imap<I, F, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("pool", &self.pool)
            .field("in_window", &self.window.len())
            .field("exhausted", &self.iter.is_none())
            .finish()
    }
}

/// A function taking its arguments as one tuple, for
/// [`GreenPool::starmap`](crate::GreenPool::starmap). Implemented for every
/// `FnMut` of one to eight arguments.
pub trait StarFn<Args> {
    /// The future the function returns.
    type Fut: Future;
    /// Calls the function with the tuple spread over its arguments.
    fn call(&mut self, args: Args) -> Self::Fut;
}

macro_rules! star_fn {
    ($($arg:ident),+) => {
        impl<Func, Fut, $($arg),+> StarFn<($($arg,)+)> for Func
        where
            Func: FnMut($($arg),+) -> Fut,
            Fut: Future,
        {
            type Fut = Fut;
            #[allow(non_snake_case)]
            fn call(&mut self, ($($arg,)+): ($($arg,)+)) -> Fut {
                self($($arg),+)
            }
        }
    };
}

star_fn!(A);
star_fn!(A, B);
star_fn!(A, B, C);
star_fn!(A, B, C, D);
star_fn!(A, B, C, D, E);
star_fn!(A, B, C, D, E, G);
star_fn!(A, B, C, D, E, G, H);
star_fn!(A, B, C, D, E, G, H, J);
