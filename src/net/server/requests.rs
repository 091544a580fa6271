//! Per-shard request counters for the protocol on top of a
//! [`Server`](crate::net::Server): how many answers of each status, and a
//! latency histogram. The protocol layer records through its connection's
//! handle ([`Connection::record_request`](crate::net::Connection::record_request));
//! the host reads them in [`ServerStats::requests`](crate::net::ServerStats::requests).
//!
//! The histogram is an [HdrHistogram](hdrhistogram) per shard, in
//! microseconds (2 significant digits, 1 µs to an hour): shards' histograms
//! merge without losing anything ([`RequestStats::merge`]), so a p99 over
//! the whole server is a true p99, not an average of the shards' ones.
//! Beside it, exact counts in [`LATENCY_BUCKETS`] and the sum (to the microsecond), for
//! Prometheus's histogram: the HdrHistogram's 2 digits would count a request
//! of up to 1% over a bucket's bound in that bucket.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Status codes counted one by one (`0..STATUSES`); a larger one counts as
/// [`STATUSES`]` - 1`.
const STATUSES: usize = 1000;
/// The histogram's range, in microseconds: 1 µs to an hour.
const MAX_MICROS: u64 = 3_600_000_000;
const SIGFIG: u8 = 2;

/// The upper bounds of the latency buckets counted exactly
/// ([`RequestStats::buckets`]): `shardlet_request_duration_seconds`'s `le`.
pub const LATENCY_BUCKETS: [Duration; 16] = [
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(10),
];

/// [`RequestStats::buckets`]: one count per bound, and one past the last.
pub type LatencyBuckets = [u64; LATENCY_BUCKETS.len() + 1];

/// An empty latency histogram of the kind [`RequestStats::latency`] holds.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGFIG).expect("valid histogram bounds")
}

/// One shard's live request counters.
pub(crate) struct Requests {
    statuses: Box<[AtomicU64]>,
    latency: Mutex<Histogram<u64>>,
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// In microseconds: a u64 of them holds 584,000 years of latency (of
    /// nanoseconds, 584: 10,000 hour-long requests at once every hour
    /// would wrap it in 21 days, a counter reset to Prometheus).
    sum_micros: AtomicU64,
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            statuses: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
            latency: Mutex::new(latency_histogram()),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl fmt::Debug for Requests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requests").finish_non_exhaustive()
    }
}

impl Requests {
    /// Counts one answer with `status` that took `latency`.
    pub(crate) fn record(&self, status: u16, latency: Duration) {
        let at = usize::from(status).min(STATUSES - 1);
        self.statuses[at].fetch_add(1, Relaxed);
        let bucket = LATENCY_BUCKETS.partition_point(|bound| *bound < latency);
        self.buckets[bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // Saturating: a sum that wrapped would go backwards (a Prometheus
        // `_sum` must not), and `Duration::MAX` is a latency one may pass.
        let _ = self
            .sum_micros
            .fetch_update(Relaxed, Relaxed, |sum| Some(sum.saturating_add(micros)));
        let micros = micros.max(1);
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_record(micros);
    }

    pub(crate) fn snapshot(&self) -> RequestStats {
        let statuses = self
            .statuses
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Relaxed);
                (n > 0).then_some((code as u16, n))
            })
            .collect();
        RequestStats {
            statuses,
            latency: self.latency.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            latency_sum: Duration::from_micros(self.sum_micros.load(Relaxed)),
        }
    }
}

/// One shard's requests: answers per status code and their latency.
///
/// # Examples
///
/// ```
/// use shardlet::net::RequestStats;
///
/// let mut total = RequestStats::default();
/// let mut shard = RequestStats::default();
/// shard.statuses.insert(200, 3);
/// shard.latency.record(150).unwrap(); // µs
/// total.merge(&shard);
/// total.merge(&shard);
/// assert_eq!(total.requests(), 6);
/// assert_eq!(total.latency.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RequestStats {
    /// Answers by status code (only codes seen).
    pub statuses: BTreeMap<u16, u64>,
    /// Request latencies in microseconds.
    pub latency: Histogram<u64>,
    /// Requests by latency, counted exactly: `buckets[i]` took at most
    /// [`LATENCY_BUCKETS`]`[i]` and more than the bound before it; the last,
    /// more than every bound.
    pub buckets: LatencyBuckets,
    /// The requests' latencies added up, each to the microsecond.
    pub latency_sum: Duration,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats {
            statuses: BTreeMap::new(),
            latency: latency_histogram(),
            buckets: [0; LATENCY_BUCKETS.len() + 1],
            latency_sum: Duration::ZERO,
        }
    }
}

impl RequestStats {
    /// Requests answered (all statuses).
    pub fn requests(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Adds `other`'s counts and latencies to these (another shard's, or
    /// another process's).
    pub fn merge(&mut self, other: &RequestStats) {
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        // Same bounds on both sides: nothing is out of range.
        let _ = self.latency.add(&other.latency);
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.latency_sum += other.latency_sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_counts_in_the_first_bucket_whose_bound_it_does_not_pass() {
        let requests = Requests::default();
        let at_bound = LATENCY_BUCKETS[0];
        for latency in [
            Duration::ZERO,
            at_bound,
            at_bound + Duration::from_nanos(1),
            Duration::from_secs(3600),
        ] {
            requests.record(200, latency);
        }
        let one = requests.snapshot();
        let mut expected: LatencyBuckets = [0; LATENCY_BUCKETS.len() + 1];
        expected[0] = 2;
        expected[1] = 1;
        expected[LATENCY_BUCKETS.len()] = 1;
        assert_eq!(one.buckets, expected);
        assert_eq!(one.latency_sum, Duration::from_micros(3_600_000_100));

        let mut both = one.clone();
        both.merge(&one);
        assert_eq!(both.buckets, expected.map(|n| 2 * n));
        assert_eq!(both.latency_sum, 2 * one.latency_sum);
    }

    /// The sum of latencies never goes backwards (a Prometheus `_sum`):
    /// before, a latency of `Duration::MAX` made it wrap.
    #[test]
    fn the_latency_sum_saturates() {
        let requests = Requests::default();
        requests.record(200, Duration::from_millis(1));
        requests.record(200, Duration::MAX);
        let top = requests.snapshot().latency_sum;
        assert_eq!(top, Duration::from_micros(u64::MAX));
        requests.record(200, Duration::from_millis(1));
        assert_eq!(requests.snapshot().latency_sum, top);
    }
}
