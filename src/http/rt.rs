//! hyper's runtime traits on a shard: [`ShardExecutor`]
//! ([`hyper::rt::Executor`], for the `!Send` futures of the current shard)
//! and [`ShardTimer`] ([`hyper::rt::Timer`], on glommio's timers). The third
//! piece, hyper's I/O traits, is implemented on
//! [`net::TcpStream`](crate::net::TcpStream) itself.
//!
//! With these, hyper runs on a shard as it runs on tokio: `http::Server`
//! and `http::Client` use them, and so can code that drives hyper's
//! connections itself.
//!
//! ```
//! use std::time::Duration;
//! use shardlet::http::rt::{ShardExecutor, ShardTimer};
//!
//! # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
//! let mut http1 = hyper::server::conn::http1::Builder::new();
//! http1.timer(ShardTimer::new()).header_read_timeout(Duration::from_secs(5));
//! let http2 = hyper::server::conn::http2::Builder::new(ShardExecutor::new());
//! # drop((http1, http2));
//! # }).unwrap();
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;

/// Runs the futures hyper hands it (HTTP/2 streams, client connections) as
/// green threads of the current shard: they need not be `Send`, and a panic
/// in one is caught and logged like any [`spawn_n`](crate::spawn_n)'s.
///
/// # Panics
///
/// `execute` outside a shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardExecutor {
    _private: (),
}

impl ShardExecutor {
    /// The executor of whichever shard calls `execute`.
    pub fn new() -> Self {
        ShardExecutor { _private: () }
    }
}

impl<F> hyper::rt::Executor<F> for ShardExecutor
where
    F: Future<Output = ()> + 'static,
{
    fn execute(&self, fut: F) {
        crate::spawn_n(fut);
    }
}

/// hyper's timer on the shard's timers (glommio's io_uring timers).
///
/// hyper wants its sleeps `Send + Sync`, and glommio's timers are
/// shard-local: so a [`ShardSleep`] holds only its deadline and a shared
/// flag, and the first poll starts a small timer task on the shard, which
/// sets the flag and wakes the sleeper at the deadline. A sleep dropped
/// early ends its timer task at once.
///
/// # Panics
///
/// Polling a sleep outside a shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardTimer {
    _private: (),
}

impl ShardTimer {
    /// The timer of whichever shard polls its sleeps.
    pub fn new() -> Self {
        ShardTimer { _private: () }
    }
}

impl hyper::rt::Timer for ShardTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ShardSleep::until(crate::time::after(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ShardSleep::until(deadline))
    }
}

/// One sleep of a [`ShardTimer`].
#[derive(Debug)]
pub struct ShardSleep {
    deadline: Instant,
    shared: Option<Arc<Shared>>,
}

#[derive(Debug, Default)]
struct Shared {
    fired: AtomicBool,
    /// The sleeper.
    waker: AtomicWaker,
    /// Set when the sleep is dropped; then `task` is woken to end.
    dropped: AtomicBool,
    task: AtomicWaker,
}

impl ShardSleep {
    /// A sleep that ends at `deadline`.
    pub fn until(deadline: Instant) -> Self {
        ShardSleep {
            deadline,
            shared: None,
        }
    }

    /// When it ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for ShardSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let shared = match &self.shared {
            Some(shared) => shared,
            None => {
                let now = Instant::now();
                if now >= deadline {
                    return Poll::Ready(());
                }
                let shared = Arc::new(Shared::default());
                let task = shared.clone();
                glommio::spawn_local(async move {
                    let mut timer = glommio::timer::Timer::new(deadline - now);
                    let ended = std::future::poll_fn(|cx| {
                        task.task.register(cx.waker());
                        if task.dropped.load(Ordering::Acquire) {
                            return Poll::Ready(false);
                        }
                        Pin::new(&mut timer).poll(cx).map(|_| true)
                    })
                    .await;
                    if ended {
                        task.fired.store(true, Ordering::Release);
                        task.waker.wake();
                    }
                })
                .detach();
                self.shared.insert(shared)
            }
        };
        shared.waker.register(cx.waker());
        if shared.fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for ShardSleep {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.dropped.store(true, Ordering::Release);
            shared.task.wake();
        }
    }
}

impl hyper::rt::Sleep for ShardSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    #[test]
    fn sleeps_end_at_their_deadline() {
        crate::Runtime::new(crate::Config::default().with_shards(1).with_pin(false))
            .unwrap()
            .run(|| async {
                let start = Instant::now();
                ShardTimer::new().sleep(Duration::from_millis(30)).await;
                assert!(start.elapsed() >= Duration::from_millis(30));
                // One dropped before its deadline does not get in the way.
                let early = ShardTimer::new().sleep(Duration::from_millis(5));
                drop(early);
                ShardTimer::new().sleep_until(Instant::now()).await;
            })
            .unwrap();
    }
}
