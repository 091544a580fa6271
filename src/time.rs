//! `sleep` and `timeout` (Eventlet's `eventlet.sleep` and `Timeout`), on the
//! shard's io_uring timers.

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

/// The longest wait a timer is set for: a century. A longer one (a limit
/// of `Duration::MAX`, the usual way to say "none") waits this long
/// instead of overflowing the clock.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The moment `duration` from now (at most [`FOREVER`] away).
#[inline]
pub(crate) fn after(duration: Duration) -> Instant {
    Instant::now() + duration.min(FOREVER)
}

/// Suspends the current green thread for `duration`; other tasks run meanwhile.
///
/// Even for no time at all: `sleep(Duration::ZERO)` (or a duration over
/// before it could wait) lets the shard's other ready tasks run before it
/// returns, as Eventlet's `sleep(0)` yields to other green threads.
///
/// # Panics
///
/// When awaited outside a shard (a glommio executor).
///
/// # Examples
///
/// ```
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// shardlet::sleep(std::time::Duration::from_millis(1)).await;
/// # }).unwrap();
/// ```
pub async fn sleep(duration: Duration) {
    let mut timer = std::pin::pin!(glommio::timer::sleep(duration.min(FOREVER)));
    // glommio's timer is ready at once when its deadline is: a loop of
    // `sleep(ZERO)` (or of a sleep shorter than the step to its second
    // poll) would never let another task run. So it returns only after it
    // has given the shard up at least once (`waited`), and a timer that was
    // ready (`due`) is not polled again.
    let (mut waited, mut due) = (false, false);
    std::future::poll_fn(|cx| {
        if due {
            return Poll::Ready(());
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) if waited => Poll::Ready(()),
            Poll::Ready(()) => {
                due = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => {
                waited = true;
                Poll::Pending
            }
        }
    })
    .await
}

/// The deadline of [`timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub struct Elapsed(pub Duration);

/// Runs `fut` for at most `duration`. On time-out, `fut` is dropped (its
/// destructors run) and [`Elapsed`] is returned.
///
/// # Errors
///
/// [`Elapsed`] when the deadline passes first.
///
/// # Panics
///
/// When awaited outside a shard (a glommio executor) and `fut` is not
/// ready at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shardlet::{sleep, timeout};
/// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
/// assert_eq!(timeout(Duration::from_secs(1), async { 5 }).await, Ok(5));
/// let slow = timeout(Duration::from_millis(1), sleep(Duration::from_secs(60)));
/// assert!(slow.await.is_err());
/// # }).unwrap();
/// ```
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    futures_lite::future::or(async { Ok(fut.await) }, async {
        sleep(duration).await;
        Err(Elapsed(duration))
    })
    .await
}
