//! Helpers shared by the integration tests: runtimes sized for a small
//! machine, a time bound around every test body, and small shard-local tools
//! (a gate to hold tasks, a meter that counts how many run at once, a
//! bounded `wait_until`).
//!
//! Each test file does `mod util;` and uses a subset, hence the `dead_code`
//! allowance.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shardlet::{Config, Runtime, RuntimeError, RuntimeHandle, FAILURE_GRACE};

/// The longest any one test body may run before it is failed.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Small io_uring buffers per shard: the tests do no file I/O, and many
/// runtimes run side by side.
pub const IO_MEMORY: usize = 256 << 10;

/// An unpinned configuration with `shards` shards: works on a 1-CPU machine.
pub fn config(shards: usize) -> Config {
    Config::default()
        .with_shards(shards)
        .with_pin(false)
        .with_io_memory(IO_MEMORY)
}

/// The number of CPUs this test process may use (at least 1).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `entry` on one shard and returns its value. The body is bounded by
/// [`LIMIT`]; a panic (a failed assertion) in it fails the test with its message.
pub fn run1<F, Fut, T>(entry: F) -> T
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    run_with(config(1), entry).pop().expect("one shard, one result")
}

/// Runs `entry` on two unpinned shards; the results in shard order.
pub fn run2<F, Fut, T>(entry: F) -> Vec<T>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    run_with(config(2), entry)
}

/// Runs `entry` on every shard of `config`, each body bounded by [`LIMIT`].
pub fn run_with<F, Fut, T>(config: Config, entry: F) -> Vec<T>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let runtime = Runtime::new(config).unwrap_or_else(|e| panic!("cannot build the runtime: {e}"));
    let handle = runtime
        .start(move || bounded(entry()))
        .unwrap_or_else(|e| panic!("{e}"));
    // Bounded from the outside too: a runtime that never reports fails the test.
    let (result, _) = join_within(handle, LIMIT + FAILURE_GRACE + Duration::from_secs(5));
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// `fut`, failed (by a panic) if it runs longer than [`LIMIT`].
pub async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    match shardlet::timeout(LIMIT, fut).await {
        Ok(value) => value,
        Err(elapsed) => panic!("test body did not finish: {elapsed}"),
    }
}

/// Joins `handle` on a helper thread and fails the test if that takes longer
/// than `limit` (a hang becomes a failure, not a stuck test run).
pub fn join_within<T: Send + 'static>(
    handle: RuntimeHandle<T>,
    limit: Duration,
) -> (Result<Vec<T>, RuntimeError>, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    match rx.recv_timeout(limit) {
        Ok(result) => (result, start.elapsed()),
        Err(_) => panic!("RuntimeHandle::join did not return within {limit:?}"),
    }
}

/// Polls `cond` (yielding, then sleeping 1 ms) until it holds; panics naming
/// `what` if it does not within 5 s.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut spins = 0u32;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        if spins < 64 {
            futures_lite::future::yield_now().await;
            spins += 1;
        } else {
            shardlet::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Lets every ready task on this shard run a few times.
pub async fn settle() {
    for _ in 0..32 {
        futures_lite::future::yield_now().await;
    }
}

/// A one-shot gate: tasks `wait()` until someone calls `open()`. Shard-local.
#[derive(Clone)]
pub struct Gate {
    open: Rc<RefCell<Option<flume::Sender<()>>>>,
    rx: flume::Receiver<()>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Self {
        let (tx, rx) = flume::bounded(1);
        Gate {
            open: Rc::new(RefCell::new(Some(tx))),
            rx,
        }
    }

    /// Releases every current and future waiter.
    pub fn open(&self) {
        self.open.borrow_mut().take();
    }

    pub fn is_open(&self) -> bool {
        self.rx.is_disconnected()
    }

    pub async fn wait(&self) {
        let _ = self.rx.recv_async().await;
    }
}

/// Counts how many tasks are inside a section at once (and the most ever).
#[derive(Clone, Default)]
pub struct Meter {
    inner: Rc<MeterInner>,
}

#[derive(Default)]
struct MeterInner {
    now: Cell<usize>,
    max: Cell<usize>,
    entered: Cell<usize>,
    left: Cell<usize>,
}

impl Meter {
    pub fn new() -> Self {
        Meter::default()
    }

    /// Marks one task inside until the guard drops (also on panic or cancel).
    pub fn enter(&self) -> Inside {
        let m = &self.inner;
        m.now.set(m.now.get() + 1);
        m.max.set(m.max.get().max(m.now.get()));
        m.entered.set(m.entered.get() + 1);
        Inside { meter: self.clone() }
    }

    pub fn now(&self) -> usize {
        self.inner.now.get()
    }

    pub fn max(&self) -> usize {
        self.inner.max.get()
    }

    pub fn entered(&self) -> usize {
        self.inner.entered.get()
    }

    pub fn left(&self) -> usize {
        self.inner.left.get()
    }
}

pub struct Inside {
    meter: Meter,
}

impl Drop for Inside {
    fn drop(&mut self) {
        let m = &self.meter.inner;
        m.now.set(m.now.get() - 1);
        m.left.set(m.left.get() + 1);
    }
}

/// A shard-local counter.
#[derive(Clone, Default)]
pub struct Counter(Rc<Cell<usize>>);

impl Counter {
    pub fn new() -> Self {
        Counter::default()
    }

    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }

    pub fn get(&self) -> usize {
        self.0.get()
    }
}

/// Compile-time check that `T` is *not* `Send`: with a `Send` type the two
/// blanket impls below make the call ambiguous and the test stops compiling.
/// (The `static_assertions::assert_not_impl_any!` trick.)
#[macro_export]
macro_rules! assert_not_send {
    ($t:ty) => {{
        #[allow(dead_code)]
        trait AmbiguousIfSend<A> {
            fn some_item() {}
        }
        impl<T: ?Sized> AmbiguousIfSend<()> for T {}
        #[allow(dead_code)]
        struct Invalid;
        impl<T: ?Sized + Send> AmbiguousIfSend<Invalid> for T {}
        let _ = <$t as AmbiguousIfSend<_>>::some_item;
    }};
}

/// Compile-time check that `T` is `Send + Sync + 'static`.
pub fn assert_send_sync<T: Send + Sync + 'static>() {}

/// A green thread that counts ticks every millisecond until stopped: proof
/// that the shard keeps running other tasks.
pub struct Ticker {
    pub ticks: Counter,
    stop: Gate,
    task: shardlet::GreenThread<()>,
}

impl Ticker {
    pub fn start() -> Self {
        let (ticks, stop) = (Counter::new(), Gate::new());
        let task = shardlet::spawn({
            let (ticks, stop) = (ticks.clone(), stop.clone());
            async move {
                while !stop.is_open() {
                    ticks.inc();
                    shardlet::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        Ticker { ticks, stop, task }
    }

    /// Stops the ticker and waits for it to end.
    pub async fn stop(self) {
        self.stop.open();
        self.task.await.expect("the ticker ends cleanly");
    }
}

/// Starts two shards that wait for the stop, shard 1 first holding its
/// thread (so nothing drains its mailbox or lanes) until the returned sender
/// is used. Returns once shard 1 is held. (Shard 0 is free: send work there
/// with `handle.mesh().submit_to(0, ..)`.)
pub fn start_with_shard1_held(config: Config) -> (RuntimeHandle<()>, flume::Sender<()>) {
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = flume::bounded::<()>(1);
    let handle = Runtime::new(config)
        .unwrap()
        .start(move || {
            let (held_tx, release_rx) = (held_tx.clone(), release_rx.clone());
            async move {
                if shardlet::shard::id() == 1 {
                    held_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                }
                shardlet::shard::stopped().await;
            }
        })
        .unwrap();
    held_rx.recv().unwrap();
    (handle, release_tx)
}

/// An example's binary, built (or brought up to date) first: a binary left
/// from an older build must not stand in for the current code.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps")
        .join("examples")
        .join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--example", name])
        .status()
        .unwrap();
    assert!(built.success(), "cargo build --example {name} failed");
    bin
}

/// The calling thread's affinity mask: the CPUs it may run on.
pub fn affinity() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// A waker that panics when woken (someone else's broken waker).
pub fn panicking_waker() -> std::task::Waker {
    struct Boom;
    impl std::task::Wake for Boom {
        fn wake(self: std::sync::Arc<Self>) {
            panic!("this waker panics when woken")
        }
    }
    std::task::Waker::from(std::sync::Arc::new(Boom))
}

/// Sends SIGTERM to `child` (through `kill(1)`: no unsafe code here).
pub fn sigterm(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {}", child.id());
}

/// Waits for `child` to exit: its status and how long that took. Past
/// `limit` it is killed and the test fails, saying that `what` did not end.
pub fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A loopback address where nothing listens: a socket bound there and never
/// listening (a connect to it is refused), left open until the test binary
/// exits (one socket per call), so that no other test of the binary gets its
/// port. A port freed by closing a listener could be taken by a test running
/// beside it before the connect that was meant to be refused.
pub fn refused_addr() -> std::net::SocketAddr {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    socket.bind(&any.into()).expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    std::mem::forget(socket); // keeps the port taken until the binary exits
    addr
}

/// The address an example names on its `listening on ADDR ...` line, the
/// first such line of `lines` (its stdout); the lines before it are read.
pub fn listening_on(lines: impl Iterator<Item = std::io::Result<String>>) -> std::net::SocketAddr {
    let mut lines = lines;
    lines
        .find_map(|l| {
            l.unwrap()
                .strip_prefix("listening on ")
                .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        })
        .expect("the example says where it listens")
}
