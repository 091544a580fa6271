//! Name resolution that never blocks a shard (Eventlet #511, #560): the
//! system resolver (`getaddrinfo`) runs on resolver threads of its own
//! (`lookups.rs`: not the [`blocking`](crate::blocking) pool, one call per
//! name at a time) under a time limit, and answers are cached per client
//! for a fixed time (`getaddrinfo` tells no TTL).
//!
//! Concurrent lookups of one name share a single call: the first caller
//! resolves, the others wait for its answer (a crawler starting 200 fetches
//! to one host makes one lookup, not 200). If that first caller is
//! cancelled, a waiter takes over. Failures and time-outs are cached for a
//! short while ([`NEGATIVE_TTL`] at most), so that a dead name fails at once
//! rather than costing each request the time limit again. A time-out served
//! from the cache is not called one (this request did not wait): it is a
//! failure that says when the lookup timed out and when it is tried again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::lookups::Lookups;

/// How long a failed lookup is remembered, at most.
pub(crate) const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Entries kept before expired ones are swept (and, if none are, all answers).
const MAX_ENTRIES: usize = 4096;

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnsError {
    /// No answer within the limit.
    Timeout(Duration),
    /// The resolver failed, or gave no address.
    Failed(String),
}

pub(crate) type Addrs = Rc<[SocketAddr]>;
type Answer = Result<Addrs, DnsError>;

enum Entry {
    Resolved {
        answer: Answer,
        expires: Instant,
    },
    /// A lookup is running; these callers wait for its answer.
    Pending(Vec<flume::Sender<Answer>>),
}

/// A shard-local caching resolver.
pub(crate) struct Resolver {
    ttl: Duration,
    timeout: Duration,
    cache: RefCell<HashMap<(String, u16), Entry>>,
    lookups: &'static Lookups,
}

impl Resolver {
    pub(crate) fn new(ttl: Duration, timeout: Duration) -> Self {
        Resolver::with(ttl, timeout, Lookups::global())
    }

    /// A resolver on `lookups` (a test's, with a stand-in system resolver).
    fn with(ttl: Duration, timeout: Duration, lookups: &'static Lookups) -> Self {
        Resolver {
            ttl,
            timeout,
            cache: RefCell::new(HashMap::new()),
            lookups,
        }
    }

    /// The addresses of `host:port`, from the cache or a lookup.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Answer {
        let key = (host.to_string(), port);
        loop {
            let waiting = {
                let mut cache = self.cache.borrow_mut();
                match cache.get_mut(&key) {
                    Some(Entry::Resolved { answer, expires }) => {
                        let now = Instant::now();
                        if *expires > now {
                            return remembered(answer, self.ttl_of(answer), *expires - now);
                        }
                        cache.insert(key.clone(), Entry::Pending(Vec::new()));
                        None
                    }
                    Some(Entry::Pending(waiters)) => {
                        let (tx, rx) = flume::bounded(1);
                        waiters.push(tx);
                        Some(rx)
                    }
                    _ => {
                        cache.insert(key.clone(), Entry::Pending(Vec::new()));
                        None
                    }
                }
            };
            match waiting {
                // The lookup's owner was cancelled: go round, and maybe own the next one.
                Some(rx) => match rx.recv_async().await {
                    Ok(answer) => return answer,
                    Err(_) => continue,
                },
                None => return self.lead(key).await,
            }
        }
    }

    /// Runs the lookup for `key`, whose entry this caller has marked pending.
    async fn lead(&self, key: (String, u16)) -> Answer {
        let mut owner = Owner {
            resolver: self,
            key: Some(key.clone()),
        };
        // Giving up the wait (a time-out) leaves the call running: the next
        // lookup of the name waits for it instead of starting another.
        let found = self.lookups.ask(&key.0, key.1);
        let answer = match crate::timeout(self.timeout, found.recv_async()).await {
            Err(_) => Err(DnsError::Timeout(self.timeout)),
            Ok(Err(_)) => Err(DnsError::Failed("the resolver thread ended".into())),
            Ok(Ok(Err(reason))) => Err(DnsError::Failed(reason)),
            Ok(Ok(Ok(addrs))) => Ok(Addrs::from(addrs)),
        };
        owner.finish(answer.clone());
        answer
    }

    /// How long `answer` is kept in the cache.
    fn ttl_of(&self, answer: &Answer) -> Duration {
        match answer {
            Ok(_) => self.ttl,
            Err(_) => self.ttl.min(NEGATIVE_TTL),
        }
    }
}

/// A cached `answer`, kept for `ttl` of which `left` remains, as a request
/// that finds it in the cache gets it.
fn remembered(answer: &Answer, ttl: Duration, left: Duration) -> Answer {
    match answer {
        Err(DnsError::Timeout(limit)) => Err(DnsError::Failed(format!(
            "no answer within {limit:?} to a lookup {:.1?} ago; asked again in {:.1?}",
            ttl.saturating_sub(left),
            left
        ))),
        other => other.clone(),
    }
}

/// The caller running a lookup: hands the answer to the waiters, or on
/// drop (cancelled) clears the pending entry so that a waiter takes over.
struct Owner<'a> {
    resolver: &'a Resolver,
    key: Option<(String, u16)>,
}

impl Owner<'_> {
    fn finish(&mut self, answer: Answer) {
        let Some(key) = self.key.take() else { return };
        let mut cache = self.resolver.cache.borrow_mut();
        if let Some(Entry::Pending(waiters)) = cache.remove(&key) {
            for waiter in waiters {
                let _ = waiter.send(answer.clone());
            }
        }
        let ttl = self.resolver.ttl_of(&answer);
        if cache.len() >= MAX_ENTRIES {
            let now = Instant::now();
            cache.retain(|_, e| {
                matches!(e, Entry::Resolved { expires, .. } if *expires > now)
                    || matches!(e, Entry::Pending(_))
            });
            if cache.len() >= MAX_ENTRIES {
                cache.retain(|_, e| matches!(e, Entry::Pending(_)));
            }
        }
        cache.insert(
            key,
            Entry::Resolved {
                answer,
                expires: crate::time::after(ttl),
            },
        );
    }
}

impl Drop for Owner<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Dropping the waiters' senders wakes them to try again.
            if let Ok(mut cache) = self.resolver.cache.try_borrow_mut() {
                cache.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls of [`hanging`].
    static HANGING_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A system resolver whose DNS server never answers (for 60 s: far
    /// longer than the test, however slow the machine; its thread is left
    /// behind).
    fn hanging(_: &str, _: u16) -> super::super::lookups::Found {
        HANGING_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(60));
        Err("no answer".into())
    }

    /// A name that timed out fails at once for a while, then waits again
    /// for the same call: asking again never starts another one.
    #[test]
    fn time_outs_are_cached_and_never_start_another_call() {
        let out = crate::Runtime::new(crate::Config::default().with_shards(1).with_pin(false))
            .unwrap()
            .run(|| async {
                let lookups: &'static Lookups = Box::leak(Box::new(Lookups::new(hanging)));
                let limit = Duration::from_millis(200);
                let resolver = Resolver::with(Duration::from_millis(300), limit, lookups);
                let start = Instant::now();
                assert_eq!(
                    resolver.resolve("a.slow", 80).await,
                    Err(DnsError::Timeout(limit))
                );
                assert!(start.elapsed() >= limit);
                let again = Instant::now();
                // Cached: at once, not after another time-out of 200 ms, and
                // not called a time-out of its own.
                let cached = resolver.resolve("a.slow", 80).await;
                assert!(again.elapsed() < Duration::from_millis(150), "cached");
                let Err(DnsError::Failed(reason)) = cached else {
                    panic!("{cached:?}")
                };
                assert!(
                    reason.starts_with("no answer within 200ms to a lookup "),
                    "{reason}"
                );
                assert!(reason.contains(" ago; asked again in "), "{reason}");
                crate::sleep(Duration::from_millis(350)).await;
                assert_eq!(
                    resolver.resolve("a.slow", 80).await,
                    Err(DnsError::Timeout(limit))
                );
                assert_eq!(
                    HANGING_CALLS.load(std::sync::atomic::Ordering::SeqCst),
                    1,
                    "one call, however often asked"
                );
            });
        out.unwrap();
    }

    #[test]
    fn answers_are_cached_and_shared() {
        let out = crate::Runtime::new(crate::Config::default().with_shards(1).with_pin(false))
            .unwrap()
            .run(|| async {
                let resolver = Rc::new(Resolver::new(Duration::from_secs(60), Duration::from_secs(5)));
                let tasks: Vec<_> = (0..8)
                    .map(|_| {
                        let r = resolver.clone();
                        crate::spawn(async move { r.resolve("localhost", 80).await })
                    })
                    .collect();
                let mut answers = Vec::new();
                for t in tasks {
                    answers.push(t.await.unwrap().unwrap());
                }
                assert!(
                    answers.windows(2).all(|w| Rc::ptr_eq(&w[0], &w[1])),
                    "one shared lookup"
                );
                assert!(answers[0].iter().all(|a| a.ip().is_loopback() && a.port() == 80));
                let again = resolver.resolve("localhost", 80).await.unwrap();
                assert!(Rc::ptr_eq(&again, &answers[0]), "served from the cache");
                let bad = resolver.resolve("no-such-host.invalid", 80).await.unwrap_err();
                assert!(
                    matches!(bad, DnsError::Failed(_) | DnsError::Timeout(_)),
                    "{bad:?}"
                );
            });
        out.unwrap();
    }
}
