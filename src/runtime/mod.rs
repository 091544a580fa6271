//! [`Runtime`]: one pinned glommio executor per shard, started from a
//! [`Config`], running the same entry closure on every shard.
//!
//! Each shard is a plain thread that builds its `LocalExecutor` itself, so
//! every way a shard can end (entry returned, executor failed to build, a
//! panic anywhere, cancelled after a stop) is reported to the host through
//! one channel. The first failure stops the other shards, so `join` never
//! hangs on a sibling of a dead shard.
//!
//! A shard whose entry has returned keeps its executor running, serving its
//! cross-shard inbox, until every shard's entry has returned (the
//! [`Finish`] latch) or a stop's grace period ends: so a call from one shard
//! to another never fails just because the target finished its own work
//! first.

pub(crate) mod handle;
pub(crate) mod ready;
mod start_failure;

use std::cell::RefCell;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::current::{self as place, Place};
use crate::config::memlock::{Memlock, MemlockError};
use crate::config::nofile::DescriptorError;
use crate::config::{Config, ConfigError, ShardPlan};
use crate::mesh::{self, Inbox, Mesh, Outbox};
use crate::metrics::{Metrics, ShardCounters};
use crate::runtime::handle::{Exit, Lifecycle, RuntimeHandle};
use crate::sync::stop::{self, Stopper};
use crate::task::blocking::{self, BlockingPool};
use crate::task::guard::Isolated;
use crate::task::hook::panic_message;
use crate::task::JoinError;

/// How long the other shards get to finish when one shard fails.
pub const FAILURE_GRACE: Duration = Duration::from_secs(2);

/// Why the runtime could not start or a shard did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `RLIMIT_MEMLOCK` is too low for the shards asked for.
    #[error(transparent)]
    Memlock(#[from] MemlockError),
    /// `RLIMIT_NOFILE` is too low for the shards even to start.
    #[error(transparent)]
    Descriptors(#[from] DescriptorError),
    /// A shard's thread or executor could not be built.
    #[error("shard {shard} ({}) failed to start: {reason}", cpu_name(*.cpu))]
    ShardStart {
        /// Shard index.
        shard: usize,
        /// The CPU it was to be pinned to.
        cpu: Option<usize>,
        /// What went wrong.
        reason: String,
    },
    /// A shard's entry future (or a raw glommio task on it) panicked.
    #[error("shard {shard} panicked: {message}")]
    ShardPanicked {
        /// Shard index.
        shard: usize,
        /// The panic message, with its location when known.
        message: String,
    },
    /// A shard's entry future was still running when the stop grace period
    /// ran out, and was dropped.
    #[error("shard {shard} did not finish within the stop grace period and was cancelled")]
    ShardCancelled {
        /// Shard index.
        shard: usize,
    },
    /// The threads behind [`blocking`](crate::blocking) could not be started.
    #[error(
        "cannot start {threads} blocking thread(s) ({}): {reason}",
        crate::config::ENV_BLOCKING_THREADS
    )]
    BlockingThreads {
        /// Threads asked for.
        threads: usize,
        /// What the OS said.
        reason: String,
    },
    /// The runtime's result was already taken
    /// ([`RuntimeHandle::finished`], [`RuntimeHandle::try_join`]).
    #[error("the runtime's result was already taken")]
    Joined,
}

fn cpu_name(cpu: Option<usize>) -> String {
    cpu.map_or_else(|| "unpinned".to_string(), |c| format!("cpu {c}"))
}

/// A validated set of shards, ready to start.
///
/// # Examples
///
/// Embedded in a host program, which keeps its own `main`:
///
/// ```
/// use std::time::Duration;
/// use shardlet::{shard, Config, Runtime};
///
/// let runtime = Runtime::new(Config::default().with_shards(1).with_pin(false))?;
/// let handle = runtime.start(|| async {
///     while !shard::stop_requested() {
///         shardlet::sleep(Duration::from_millis(1)).await; // serve...
///     }
///     shard::id()
/// })?;
/// // ... the host does its own work, then:
/// handle.stop(Duration::from_secs(1));
/// assert_eq!(handle.join()?, [0]);
/// # Ok::<(), shardlet::RuntimeError>(())
/// ```
#[derive(Debug)]
pub struct Runtime {
    config: Arc<Config>,
    plan: ShardPlan,
    io_memory: usize,
}

impl Runtime {
    /// Validates `config` against this machine and checks `RLIMIT_MEMLOCK`
    /// and `RLIMIT_NOFILE`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Config`] naming the bad setting, or
    /// [`RuntimeError::Memlock`] or [`RuntimeError::Descriptors`] saying
    /// what limit to raise.
    pub fn new(config: Config) -> Result<Runtime, RuntimeError> {
        crate::task::guard::reinstall_hook();
        let plan = config.validate()?;
        let io_memory = Memlock::current().io_memory(plan.shards(), config.io_memory())?;
        crate::config::nofile::check(plan.shards())?;
        Ok(Runtime {
            config: Arc::new(config),
            plan,
            io_memory,
        })
    }

    /// [`Runtime::new`] with [`Config::from_env`].
    ///
    /// # Errors
    ///
    /// As [`Runtime::new`], plus a [`ConfigError`] for a bad `SHARDLET_*` value.
    pub fn from_env() -> Result<Runtime, RuntimeError> {
        Runtime::new(Config::from_env()?)
    }

    /// The number of shards this runtime starts.
    pub fn shards(&self) -> usize {
        self.plan.shards()
    }

    /// Where each shard runs.
    pub fn plan(&self) -> &ShardPlan {
        &self.plan
    }

    /// The configuration the shards will run with (for settings other
    /// layers read, such as [`Config::accept`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::{AcceptMode, Config, Runtime};
    ///
    /// let runtime = Runtime::new(Config::default().with_shards(1).with_pin(false))?;
    /// assert_eq!(runtime.config().accept(), AcceptMode::ReusePort);
    /// # Ok::<(), shardlet::RuntimeError>(())
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts every shard, each running `entry()`, and returns at once with
    /// a handle to stop and join them. A shard ends when its entry future
    /// returns; tasks it spawned and did not wait for are dropped with it.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::ShardStart`] when a shard thread cannot be created
    /// (the shards already started are stopped and joined first),
    /// [`RuntimeError::BlockingThreads`] when the blocking pool's cannot.
    /// Executor failures inside a shard are reported by
    /// [`RuntimeHandle::join`] (and at once by [`RuntimeHandle::failure`]
    /// and [`Server::ready`](crate::net::Server::ready)).
    pub fn start<F, Fut, T>(self, entry: F) -> Result<RuntimeHandle<T>, RuntimeError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let shards = self.plan.shards();
        let entry = Arc::new(entry);
        let threads = self.config.blocking_threads();
        let blocking = BlockingPool::new(threads, self.plan.host_cpus()).map_err(|err| {
            RuntimeError::BlockingThreads {
                threads,
                reason: err.to_string(),
            }
        })?;
        let stopper = Stopper::new();
        let (report, outcomes) = flume::bounded(shards);
        let (mesh, inboxes) = Mesh::new(shards, self.config.mailbox());
        let finish = Finish::new(shards);
        let lifecycle = Lifecycle::new(shards);
        let metrics = Metrics::new(shards, blocking.clone(), mesh.clone());
        let mut handle = RuntimeHandle {
            blocking: blocking.clone(),
            threads: Vec::with_capacity(shards),
            outcomes,
            stopper: stopper.clone(),
            mesh: mesh.clone(),
            shards,
            lifecycle: lifecycle.clone(),
            metrics: metrics.clone(),
            joined: false,
        };
        for (id, (outbox, inbox)) in inboxes.into_iter().enumerate() {
            let shard = ShardSpec {
                id,
                count: shards,
                cpu: self.plan.cpu(id),
                fence: self.plan.fence().map(<[usize]>::to_vec),
                io_memory: self.io_memory,
                config: self.config.clone(),
                stopper: stopper.clone(),
                blocking: blocking.clone(),
                mesh: mesh.clone(),
                outbox,
                inbox,
                finish: Arrival(Some(finish.clone())),
                counters: metrics.shard(id),
            };
            let entry = entry.clone();
            let mut reporter = Reporter {
                id,
                tx: Some(report.clone()),
                stopper: stopper.clone(),
                lifecycle: lifecycle.clone(),
            };
            let exit = Exit {
                lifecycle: lifecycle.clone(),
                blocking: blocking.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("shardlet-{id}"))
                .spawn(move || {
                    // Dropped last: the thread is done, its executor gone.
                    let _exit = exit;
                    let ran = panic::catch_unwind(AssertUnwindSafe(|| shard.run(&*entry, &mut reporter)));
                    // Reports only if the shard did not get to report itself.
                    reporter.report(Err(RuntimeError::ShardPanicked {
                        shard: id,
                        message: match ran {
                            Err(payload) => panic_message(&*payload),
                            Ok(()) => "shard ended without reporting".into(),
                        },
                    }));
                });
            match spawned {
                Ok(thread) => handle.threads.push(thread),
                Err(err) => {
                    stopper.stop(Duration::ZERO);
                    let _ = handle.join();
                    return Err(RuntimeError::ShardStart {
                        shard: id,
                        cpu: self.plan.cpu(id),
                        reason: err.to_string(),
                    });
                }
            }
        }
        Ok(handle)
    }

    /// Starts every shard with `entry` and waits for all of them: the
    /// results in shard order.
    ///
    /// # Errors
    ///
    /// The first shard failure (see [`RuntimeHandle::join`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shardlet::{shard, Config, Runtime};
    ///
    /// let config = Config::default().with_shards(2).with_pin(false);
    /// let ids = Runtime::new(config)?.run(|| async { shard::id() * 10 })?;
    /// assert_eq!(ids, [0, 10]);
    /// # Ok::<(), shardlet::RuntimeError>(())
    /// ```
    pub fn run<F, Fut, T>(self, entry: F) -> Result<Vec<T>, RuntimeError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.start(entry)?.join()
    }
}

/// Everything one shard thread needs.
struct ShardSpec {
    id: usize,
    count: usize,
    cpu: Option<usize>,
    /// For an unpinned shard, the CPUs it may use, if narrowed.
    fence: Option<Vec<usize>>,
    io_memory: usize,
    config: Arc<Config>,
    stopper: Stopper,
    blocking: Arc<BlockingPool>,
    mesh: Mesh,
    outbox: Outbox,
    inbox: Inbox,
    finish: Arrival,
    counters: Arc<ShardCounters>,
}

/// Counts down the shards whose entry future is still running.
struct Finish {
    running: AtomicUsize,
    /// Dropped when `running` reaches zero: every watcher sees a disconnect.
    all_done: Mutex<Option<flume::Sender<()>>>,
    watch: flume::Receiver<()>,
}

impl Finish {
    fn new(shards: usize) -> Arc<Finish> {
        let (all_done, watch) = flume::bounded(1);
        Arc::new(Finish {
            running: AtomicUsize::new(shards),
            all_done: Mutex::new(Some(all_done)),
            watch,
        })
    }

    async fn all_done(&self) {
        let _ = self.watch.recv_async().await;
    }
}

/// One shard's count in [`Finish`]: given exactly once, when its entry is
/// over, or when the shard ends any other way (dropped).
struct Arrival(Option<Arc<Finish>>);

impl Arrival {
    fn arrive(&mut self) {
        if let Some(finish) = self.0.take() {
            if finish.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                finish.all_done.lock().unwrap_or_else(|e| e.into_inner()).take();
            }
        }
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.arrive();
    }
}

/// Sends a shard's outcome to the handle, exactly once, as soon as it is
/// known; a failure also stops the other shards at once.
struct Reporter<T> {
    id: usize,
    tx: Option<flume::Sender<(usize, Result<T, RuntimeError>)>>,
    stopper: Stopper,
    lifecycle: Arc<Lifecycle>,
}

impl<T> Reporter<T> {
    fn report(&mut self, outcome: Result<T, RuntimeError>) {
        let Some(tx) = self.tx.take() else { return };
        // Known to watchers before the stop it causes ends other shards'
        // entries: what they see first is this failure. (A watcher's waker
        // that panics is logged by the wake: the outcome is sent all the same.)
        self.lifecycle.report(self.id, outcome.as_ref().err());
        if outcome.is_err() {
            self.stopper.stop(FAILURE_GRACE);
        }
        let _ = tx.send((self.id, outcome));
    }
}

impl ShardSpec {
    /// Builds the executor and runs the shard: the entry, then serving other
    /// shards until every entry is over, then ending its tasks.
    fn run<F, Fut, T>(self, entry: &F, reporter: &mut Reporter<T>)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = T>,
    {
        let ShardSpec { id, cpu, .. } = self;
        let (fence, io_memory, spin) = (self.fence, self.io_memory, self.config.spin());
        // Each layer's per-shard state outlives the executor, so tasks
        // dropped with it still see it; a tuple drops first to last: the
        // mesh's part first, the shard's place last.
        let stopper = self.stopper.clone();
        let _layers = (
            mesh::here::enter(id, self.mesh.clone(), self.outbox),
            blocking::enter(self.blocking),
            stop::enter(self.stopper),
            place::enter(Place {
                id,
                count: self.count,
                cpu,
                config: self.config,
            }),
        );
        let (mesh, mut arrival) = (self.mesh, self.finish);
        // However the shard ends (its executor failed to build, it ran to
        // the end, or a raw glommio task panicked through `run`), no message
        // stays behind in its lanes and mailbox.
        let inbox = Rc::new(RefCell::new(self.inbox));
        let _close = CloseOnExit {
            mesh: mesh.clone(),
            id,
            inbox: inbox.clone(),
        };
        let finish = arrival.0.clone().expect("a shard arrives once");
        // glommio panics (an `unwrap` deep in its ring setup or its
        // placement code) for some settings and limits it cannot meet,
        // instead of returning an error: all of the building is guarded.
        // An unpinned shard keeps to its CPUs by its thread's mask, which
        // glommio leaves alone (an `Unbound` executor reads no topology and
        // does not spin; a `Fenced` one would do both).
        if let (None, Some(cpus)) = (cpu, &fence) {
            crate::config::cpus::keep_to(cpus);
        }
        let made = panic::catch_unwind(AssertUnwindSafe(|| {
            let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
            let mut builder = LocalExecutorBuilder::new(placement)
                .name(&format!("shardlet-{id}"))
                .io_memory(io_memory);
            if !spin.is_zero() {
                builder = builder.spin_before_park(spin);
            }
            builder.make()
        }));
        let executor = match made {
            Ok(Ok(executor)) => executor,
            Ok(Err(err)) => {
                return reporter.report(Err(start_failure::start_error(
                    id,
                    cpu,
                    err.to_string(),
                    io_memory,
                )))
            }
            Err(payload) => {
                let reason = format!("glommio panicked: {}", panic_message(&*payload));
                return reporter.report(Err(start_failure::start_error(id, cpu, reason, io_memory)));
            }
        };
        tracing::debug!(target: "shardlet::runtime", shard = id, cpu, "shard started");
        crate::metrics::attach(self.counters);
        let drain = inbox.clone();
        executor.run(async {
            let outcome = future::or(
                async {
                    crate::task::spawn_n(mesh::drain(drain));
                    crate::task::spawn_n(publish_stats(mesh.clone()));
                    // The entry closure is called inside the guard too: its
                    // panic is an error value like the future's.
                    Some(Isolated::new(async { entry().await }, None).await)
                },
                async {
                    stopper.grace_over().await;
                    last_rounds().await;
                    None
                },
            )
            .await;
            reporter.report(outcome_of(id, outcome));
            // Serve other shards until every entry is over (or the grace ends).
            arrival.arrive();
            future::or(finish.all_done(), stopper.grace_over()).await;
            crate::task::guard::end_tasks().await;
            publish(&mesh);
        });
        crate::metrics::detach();
    }
}

/// Scheduling rounds (not time) an entry still gets once its grace is over,
/// before it is cancelled. A serving loop ends its drain a margin before the
/// grace; if its shard was kept off the CPU past both, its drain timer and
/// the grace fire together: the loop has just dropped its connections and
/// waits for their tasks to end, which takes a round or two. Without these
/// rounds it was cancelled there (a 40 ms stall of the shard's thread did it).
/// They help only work that ends on the shard: glommio runs its ready tasks
/// again without waiting for I/O, timers or other threads between them.
async fn last_rounds() {
    const LAST_ROUNDS: usize = 4;
    for _ in 0..LAST_ROUNDS {
        future::yield_now().await;
    }
}

/// Samples what only the shard can read into its counters: the readiness
/// driver's counters, the panics caught, the mesh's outgoing lanes.
fn publish(mesh: &Mesh) {
    let ready = crate::net::ready_stats();
    crate::metrics::publish(&crate::metrics::Sample {
        outgoing: &mesh.outgoing_queued(),
        panics: crate::task::guard::panics(),
        registrations: ready.registrations as u64,
        rounds: ready.rounds,
        events: ready.events,
        parks: ready.parks,
        drivers: ready.drivers,
    });
}

/// Samples the shard's counters that only it can read, every
/// [`PUBLISH_EVERY`](crate::metrics::PUBLISH_EVERY), until the shard ends.
async fn publish_stats(mesh: Mesh) {
    loop {
        publish(&mesh);
        crate::sleep(crate::metrics::PUBLISH_EVERY).await;
    }
}

/// Closes a shard's lanes and mailbox when it ends, whatever the way.
struct CloseOnExit {
    mesh: Mesh,
    id: usize,
    inbox: Rc<RefCell<Inbox>>,
}

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.mesh.close(self.id, &self.inbox);
    }
}

/// What the end of a shard's entry means for the host.
fn outcome_of<T>(shard: usize, outcome: Option<Result<T, JoinError>>) -> Result<T, RuntimeError> {
    match outcome.map(|result| result.map_err(JoinError::into_panic)) {
        Some(Ok(value)) => Ok(value),
        Some(Err(Some((message, location)))) => Err(RuntimeError::ShardPanicked {
            shard,
            message: match location {
                Some(at) => format!("{message} (at {at})"),
                None => message,
            },
        }),
        Some(Err(None)) | None => Err(RuntimeError::ShardCancelled { shard }),
    }
}
