//! [`Backoff`]: the bounded, growing delay between accept retries when the
//! process is out of descriptors or kernel memory.

use std::io;
use std::time::{Duration, Instant};

/// First delay after a failure.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(5);
/// The delay never grows past this, so a server resumes at most this long
/// after descriptors free up.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(500);

/// Doubles from [`MIN_DELAY`] up to [`MAX_DELAY`] while failures last;
/// [`recovered`](Backoff::recovered) starts over.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u64,
    since: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff::default()
    }

    /// Records a failure; returns how long to wait before the next try.
    pub(crate) fn fail(&mut self) -> Duration {
        self.failures += 1;
        self.since.get_or_insert_with(Instant::now);
        let doublings = (self.failures - 1).min(16) as u32;
        MIN_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
    }

    /// Failures in a row so far.
    pub(crate) fn failures(&self) -> u64 {
        self.failures
    }

    /// A try succeeded: returns how many failures and how long the outage
    /// lasted, if there was one, and starts over.
    pub(crate) fn recovered(&mut self) -> Option<(u64, Duration)> {
        let since = self.since.take()?;
        let failures = std::mem::take(&mut self.failures);
        Some((failures, since.elapsed()))
    }
}

/// Logs an accept back-off: a warning the first time, then at debug level.
pub(crate) fn log_backoff(err: &io::Error, delay: Duration, failures: u64) {
    if failures == 1 {
        tracing::warn!(target: "shardlet::net", error = %err, ?delay, "accept failed; backing off and retrying");
    } else {
        tracing::debug!(target: "shardlet::net", error = %err, ?delay, failures, "accept still failing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_bound_and_resets() {
        let mut b = Backoff::new();
        assert_eq!(b.recovered(), None);
        assert_eq!(b.fail(), MIN_DELAY);
        assert_eq!(b.fail(), MIN_DELAY * 2);
        assert_eq!(b.fail(), MIN_DELAY * 4);
        for _ in 0..100 {
            assert!(b.fail() <= MAX_DELAY);
        }
        assert_eq!(b.fail(), MAX_DELAY);
        assert_eq!(b.recovered().map(|(n, _)| n), Some(104));
        assert_eq!(b.fail(), MIN_DELAY);
    }
}
