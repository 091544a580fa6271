//! [`Exporter`]: a runtime's and its servers' counters in the Prometheus
//! text format, as a `prometheus-client` [`Collector`], so they can join a
//! host's own registry.
//!
//! Every per-shard series carries a `shard="N"` label; a server's series
//! also carry `server="NAME"`. Counters end in `_total`. The runtime's:
//! `shardlet_tasks_spawned_total`, `shardlet_tasks_live`,
//! `shardlet_task_panics_total`, `shardlet_busy_seconds_total`,
//! `shardlet_idle_seconds_total`, `shardlet_polls_total`,
//! `shardlet_longest_poll_seconds`, `shardlet_stalls_total`,
//! `shardlet_polling_seconds`, `shardlet_lanes_queued`,
//! `shardlet_mailbox_queued`, `shardlet_shard_running`,
//! `shardlet_driver_registrations`, `shardlet_driver_rounds_total`,
//! `shardlet_driver_events_total`, `shardlet_driver_parks_total`; and once per
//! runtime `shardlet_blocking_threads`, `shardlet_blocking_busy`,
//! `shardlet_blocking_queued`, `shardlet_blocking_panics_total`,
//! `shardlet_mesh_dropped_total`, `shardlet_mesh_cancelled_total`. A server's:
//! `shardlet_connections_accepted_total`, `shardlet_connections_live`,
//! `shardlet_connections_failed_total`, `shardlet_handler_panics_total`,
//! `shardlet_accept_errors_total`, `shardlet_connection_cap`,
//! `shardlet_connections_idle`, `shardlet_at_capacity_total`,
//! `shardlet_evicted_total`, `shardlet_refused_total`, `shardlet_listening`,
//! `shardlet_responses_total` (with `status="200"`) and the histogram
//! `shardlet_request_duration_seconds`.

use std::fmt;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Metrics, RuntimeStats, ShardMetrics};
use crate::net::{RequestStats, Server, ServerStats, ShardStats, LATENCY_BUCKETS};

/// The Prometheus exporter: a runtime's [`Metrics`] and any number of named
/// [`Server`]s. `Clone + Send + Sync`.
///
/// # Examples
///
/// ```
/// use shardlet::metrics::Exporter;
/// use shardlet::{Config, Runtime, Server, ServerConfig};
///
/// let runtime = Runtime::new(Config::default().with_shards(2).with_pin(false))?;
/// let server = Server::bind(([127, 0, 0, 1], 0), ServerConfig::from(runtime.config()))?;
/// let handle = runtime.start({
///     let server = server.clone();
///     move || {
///         let server = server.clone();
///         async move { server.serve(|_stream| async { Ok(()) }).await }
///     }
/// })?;
/// futures_lite::future::block_on(server.ready(&handle))?;
/// let exporter = Exporter::new().with_runtime(handle.metrics()).with_server("echo", &server);
/// let text = exporter.encode();
/// assert!(text.contains(r#"shardlet_connections_accepted_total{server="echo",shard="1"} 0"#), "{text}");
/// assert!(text.contains(r#"shardlet_tasks_spawned_total{shard="0"}"#), "{text}");
/// server.stop(std::time::Duration::from_secs(1));
/// handle.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Exporter {
    runtime: Option<Metrics>,
    servers: Vec<(String, Server)>,
}

/// The `Content-Type` of [`Exporter::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Exporter {
    /// An exporter of nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exports the runtime's counters.
    pub fn with_runtime(mut self, metrics: Metrics) -> Self {
        self.runtime = Some(metrics);
        self
    }

    /// Exports `server`'s counters, labelled `server="name"`.
    ///
    /// # Panics
    ///
    /// If a server of that name is already exported: its series would
    /// appear twice, with the same labels, and Prometheus rejects the whole
    /// scrape. (Like the rest of the builder, this is set up once, at
    /// start-up, where a mistake should stop the program, not go unnoticed.)
    pub fn with_server(mut self, name: impl Into<String>, server: &Server) -> Self {
        let name = name.into();
        assert!(
            self.servers.iter().all(|(taken, _)| *taken != name),
            "Exporter::with_server: a server named {name:?} is already exported \
             (its series would appear twice; give each server its own name)"
        );
        self.servers.push((name, server.clone()));
        self
    }

    /// A registry holding this exporter (merge it into a host's own with
    /// [`Registry::register_collector`]).
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        registry
    }

    /// Everything, in the Prometheus text format (version 0.0.4; see
    /// [`CONTENT_TYPE`]), as a `/metrics` endpoint serves it.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry())
            .expect("writing to a String cannot fail");
        text
    }
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: a name, a help text, a type, and its samples.
struct Family<V> {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, V)>,
}

fn family<V>(name: &'static str, help: &'static str, kind: MetricType) -> Family<V> {
    Family {
        name,
        help,
        kind,
        samples: Vec::new(),
    }
}

/// A family with one sample per shard, `get` of each shard's metrics.
fn per_shard<V>(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    shards: &[ShardMetrics],
    get: fn(&ShardMetrics) -> V,
) -> Family<V> {
    let mut f = family(name, help, kind);
    f.samples = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (shard_label(i), get(s)))
        .collect();
    f
}

fn encode_u64(encoder: &mut DescriptorEncoder<'_>, family: &Family<u64>) -> fmt::Result {
    encode_with(encoder, family, |m, v| match family.kind {
        MetricType::Counter => ConstCounter::new(*v).encode(m),
        _ => ConstGauge::new(*v).encode(m),
    })
}

fn encode_f64(encoder: &mut DescriptorEncoder<'_>, family: &Family<f64>) -> fmt::Result {
    encode_with(encoder, family, |m, v| match family.kind {
        MetricType::Counter => ConstCounter::new(*v).encode(m),
        _ => ConstGauge::new(*v).encode(m),
    })
}

fn encode_with<V>(
    encoder: &mut DescriptorEncoder<'_>,
    family: &Family<V>,
    mut each: impl FnMut(prometheus_client::encoding::MetricEncoder<'_>, &V) -> fmt::Result,
) -> fmt::Result {
    if family.samples.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
    for (labels, value) in &family.samples {
        each(metric.encode_family(labels)?, value)?;
    }
    Ok(())
}

fn shard_label(shard: usize) -> Labels {
    vec![("shard", shard.to_string())]
}

fn server_labels(server: &str, shard: usize) -> Labels {
    vec![("server", server.to_string()), ("shard", shard.to_string())]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Exporter {
    fn encode_runtime(&self, stats: &RuntimeStats, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        type Get = fn(&ShardMetrics) -> u64;
        let counts: [(&'static str, &'static str, MetricType, Get); 12] = [
            (
                "shardlet_tasks_spawned",
                "Green threads started on the shard.",
                Counter,
                |s| s.tasks_spawned,
            ),
            (
                "shardlet_tasks_live",
                "Green threads started and not finished.",
                Gauge,
                |s| s.tasks_live,
            ),
            (
                "shardlet_task_panics",
                "Panics caught in the shard's tasks.",
                Counter,
                |s| s.panics,
            ),
            (
                "shardlet_polls",
                "Task polls made by the shard's executor.",
                Counter,
                |s| s.polls,
            ),
            (
                "shardlet_stalls",
                "Polls that ran at least 10 ms without yielding.",
                Counter,
                |s| s.stalls,
            ),
            (
                "shardlet_lanes_queued",
                "Cross-shard messages waiting in the lanes to the shard.",
                Gauge,
                |s| s.lanes_queued,
            ),
            (
                "shardlet_mailbox_queued",
                "Messages from other threads waiting in the shard's mailbox.",
                Gauge,
                |s| s.mailbox_queued,
            ),
            (
                "shardlet_shard_running",
                "1 while the shard's executor runs.",
                Gauge,
                |s| u64::from(s.running),
            ),
            (
                "shardlet_driver_registrations",
                "Sockets registered with the shard's readiness driver.",
                Gauge,
                |s| s.ready.registrations as u64,
            ),
            (
                "shardlet_driver_rounds",
                "epoll_wait calls of the shard's readiness driver.",
                Counter,
                |s| s.ready.rounds,
            ),
            (
                "shardlet_driver_events",
                "Events those epoll_wait calls returned.",
                Counter,
                |s| s.ready.events,
            ),
            (
                "shardlet_driver_parks",
                "Times the readiness driver parked.",
                Counter,
                |s| s.ready.parks,
            ),
        ];
        for (name, help, kind, get) in counts {
            encode_u64(encoder, &per_shard(name, help, kind, &stats.shards, get))?;
        }
        type GetF = fn(&ShardMetrics) -> f64;
        let times: [(&'static str, &'static str, MetricType, GetF); 4] = [
            (
                "shardlet_busy_seconds",
                "Time the shard spent running tasks.",
                Counter,
                |s| secs(s.busy),
            ),
            (
                "shardlet_idle_seconds",
                "Time the shard slept or only polled for work.",
                Counter,
                |s| secs(s.idle()),
            ),
            (
                "shardlet_longest_poll_seconds",
                "The longest a task ran without yielding.",
                Gauge,
                |s| secs(s.longest_poll),
            ),
            (
                "shardlet_polling_seconds",
                "How long the poll running now has run (0 between polls).",
                Gauge,
                |s| secs(s.polling_for),
            ),
        ];
        for (name, help, kind, get) in times {
            encode_f64(encoder, &per_shard(name, help, kind, &stats.shards, get))?;
        }
        let whole: [(&'static str, &'static str, MetricType, u64); 6] = [
            (
                "shardlet_blocking_threads",
                "Threads behind blocking().",
                Gauge,
                stats.blocking.threads as u64,
            ),
            (
                "shardlet_blocking_busy",
                "blocking() closures running.",
                Gauge,
                stats.blocking.busy as u64,
            ),
            (
                "shardlet_blocking_queued",
                "blocking() closures waiting for a thread: queued, or their callers waiting for room in the queue.",
                Gauge,
                stats.blocking.queued as u64,
            ),
            (
                "shardlet_blocking_panics",
                "Panics caught on blocking() threads.",
                Counter,
                stats.blocking.panics,
            ),
            (
                "shardlet_mesh_dropped",
                "Cross-shard messages dropped unrun.",
                Counter,
                stats.mesh_dropped,
            ),
            (
                "shardlet_mesh_cancelled",
                "spawn_on jobs cancelled with their shard.",
                Counter,
                stats.mesh_cancelled,
            ),
        ];
        for (name, help, kind, value) in whole {
            let mut f = family(name, help, kind);
            f.samples = vec![(Vec::new(), value)];
            encode_u64(encoder, &f)?;
        }
        Ok(())
    }

    fn encode_servers(
        &self,
        servers: &[(String, ServerStats)],
        encoder: &mut DescriptorEncoder<'_>,
    ) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        type Get = fn(&ShardStats) -> u64;
        let counts: [(&'static str, &'static str, MetricType, Get); 11] = [
            (
                "shardlet_connections_accepted",
                "Connections given to the shard.",
                Counter,
                |s| s.accepted,
            ),
            (
                "shardlet_connections_live",
                "Connections open on the shard, and those queued for it (handoff mode); above the cap while evicted ones close.",
                Gauge,
                |s| s.live,
            ),
            (
                "shardlet_connections_failed",
                "Connections whose handler returned an error.",
                Counter,
                |s| s.failed,
            ),
            (
                "shardlet_handler_panics",
                "Connection and request handlers that panicked.",
                Counter,
                |s| s.panicked,
            ),
            (
                "shardlet_accept_errors",
                "accept calls that failed and backed off.",
                Counter,
                |s| s.accept_errors,
            ),
            (
                "shardlet_connection_cap",
                "The most connections the shard holds.",
                Gauge,
                |s| s.capacity,
            ),
            (
                "shardlet_connections_idle",
                "Connections marked idle.",
                Gauge,
                |s| s.idle,
            ),
            (
                "shardlet_at_capacity",
                "Times the shard reached its connection cap.",
                Counter,
                |s| s.at_capacity,
            ),
            (
                "shardlet_evicted",
                "Idle connections closed to make room.",
                Counter,
                |s| s.evicted,
            ),
            (
                "shardlet_refused",
                "Clients closed at once at the cap.",
                Counter,
                |s| s.refused,
            ),
            (
                "shardlet_listening",
                "1 while the shard takes connections.",
                Gauge,
                |s| u64::from(s.listening),
            ),
        ];
        for (name, help, kind, get) in counts {
            let mut f = family(name, help, kind);
            for (server, stats) in servers {
                for (i, s) in stats.shards.iter().enumerate() {
                    f.samples.push((server_labels(server, i), get(s)));
                }
            }
            encode_u64(encoder, &f)?;
        }
        let mut responses = family(
            "shardlet_responses",
            "Answers the protocol recorded, by status.",
            Counter,
        );
        for (server, stats) in servers {
            for (i, requests) in stats.requests.iter().enumerate() {
                for (status, n) in &requests.statuses {
                    let mut labels = server_labels(server, i);
                    labels.push(("status", status.to_string()));
                    responses.samples.push((labels, *n));
                }
            }
        }
        encode_u64(encoder, &responses)?;
        if servers.iter().all(|(_, stats)| stats.requests.is_empty()) {
            return Ok(());
        }
        let mut metric = encoder.encode_descriptor(
            "shardlet_request_duration_seconds",
            "Request latencies the protocol recorded.",
            None,
            MetricType::Histogram,
        )?;
        for (server, stats) in servers {
            for (i, requests) in stats.requests.iter().enumerate() {
                let (sum, count, buckets) = histogram(requests);
                metric
                    .encode_family(&server_labels(server, i))?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        Ok(())
    }
}

/// A shard's latency histogram from its exact counts: sum (seconds), count,
/// and `(upper bound, count in the bucket)`. Each bucket's own count: the
/// encoder adds them up into Prometheus's cumulative ones.
fn histogram(requests: &RequestStats) -> (f64, u64, Vec<(f64, u64)>) {
    let bounds = LATENCY_BUCKETS
        .iter()
        .map(Duration::as_secs_f64)
        .chain([f64::INFINITY]);
    let buckets: Vec<(f64, u64)> = bounds.zip(requests.buckets).collect();
    let count = requests.buckets.iter().sum();
    (requests.latency_sum.as_secs_f64(), count, buckets)
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        if let Some(runtime) = &self.runtime {
            self.encode_runtime(&runtime.stats(), &mut encoder)?;
        }
        let servers: Vec<(String, ServerStats)> = self
            .servers
            .iter()
            .map(|(name, server)| (name.clone(), server.stats()))
            .collect();
        self.encode_servers(&servers, &mut encoder)
    }
}

impl fmt::Display for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}
