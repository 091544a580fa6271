//! The process-wide panic hook: how a panic inside a shardlet task (or a
//! [`blocking`](crate::blocking) closure) is reported, so that none is lost.
//!
//! A panic in a guarded task is caught and becomes a value
//! (a [`JoinError`](crate::JoinError) that is a panic, with the location
//! this hook records). What else happens to it:
//!
//! - **A host's hook sees it.** The hook in place when shardlet installs
//!   its own (the first [`Runtime::new`](crate::Runtime::new), or the first
//!   task) is kept and called for every panic, shard panics included, so a
//!   crash reporter installed first still sees them. A hook installed
//!   *after* shardlet's replaces it; crash reporters call the hook they
//!   replaced, so shardlet's still records locations; one that does not is
//!   wrapped again by the next `Runtime::new`.
//! - **Without a `tracing` subscriber, stderr.** When no subscriber would
//!   show shardlet's error events, a caught panic is printed on stderr
//!   (`shardlet: task panicked on thread 'shardlet-0' at src/x.rs:3:9: ...`),
//!   at most [`PRINTS_PER_SECOND`] a second; the rest are counted and the
//!   count printed with the next line that gets through. With a subscriber
//!   the panic is logged through it instead (target `shardlet::task` or
//!   `shardlet::net`), where it is caught, and not printed.
//! - **Under `panic = "abort"`** nothing is caught: the process aborts
//!   inside the panic. The hook prints the message first, always, so the
//!   reason is on stderr before the abort (exit status 134, `SIGABRT`).
//!
//! Panics outside shardlet's tasks go to the previous hook unchanged (std's
//! default hook prints them as usual).

use std::panic::{self, PanicHookInfo};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::cell::RefCell;

pub(crate) use crate::sync::panic_message;

/// How many guarded polls are on this thread's stack (the guard's
/// `depth`, passed in so that the hook needs nothing from the guard).
type Depth = fn() -> u32;

thread_local! {
    /// Where the last guarded panic happened, set by the hook.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Most caught panics printed on stderr per second (without a subscriber).
pub const PRINTS_PER_SECOND: u32 = 10;

type Hook = dyn Fn(&PanicHookInfo<'_>) + Send + Sync + 'static;

/// The address of shardlet's hook as installed, to recognise it.
static OURS: AtomicUsize = AtomicUsize::new(0);
/// Installs are serialised (`take_hook` and `set_hook` are two steps).
static INSTALLING: Mutex<()> = Mutex::new(());

fn address(hook: &Hook) -> usize {
    hook as *const Hook as *const () as usize
}

/// Installs shardlet's hook around the current one, unless the current
/// one is shardlet's already. The hook takes a panic for a task's when the
/// guard's `depth` says a guarded poll is on the stack.
pub(crate) fn install(depth: Depth) {
    let _serial = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let current = panic::take_hook();
    if OURS.load(Ordering::Acquire) == address(&*current) {
        panic::set_hook(current);
        return;
    }
    let previous_is_default = is_default(&*current);
    let hook: Box<Hook> = Box::new(move |info| report(info, &*current, previous_is_default, depth));
    OURS.store(address(&*hook), Ordering::Release);
    panic::set_hook(hook);
}

/// Whether `hook` is std's default hook (just taken with `take_hook`).
///
/// `take_hook` hands out the default hook as a fresh box of one
/// zero-sized function item, so any two of them are the same wide pointer
/// (same dangling address, same vtable); a host's hook has a different
/// vtable. The default is taken once more to compare, and put back.
#[allow(ambiguous_wide_pointer_comparisons)]
fn is_default(hook: &Hook) -> bool {
    let default = panic::take_hook();
    let same = std::ptr::eq(hook as *const Hook, &*default as *const Hook);
    panic::set_hook(default);
    same
}

fn report(info: &PanicHookInfo<'_>, previous: &Hook, previous_is_default: bool, depth: Depth) {
    if depth() == 0 {
        // Not in a shardlet task: as if shardlet were not there.
        return previous(info);
    }
    let location = info.location().map(|l| l.to_string());
    let _ = LOCATION.try_with(|l| *l.borrow_mut() = location);
    if cfg!(panic = "abort") {
        eprintln!("{}; the process aborts (panic = \"abort\")", line(info));
    } else if !tracing::event_enabled!(target: "shardlet::task", tracing::Level::ERROR) {
        print_limited(info);
    }
    if !previous_is_default {
        previous(info);
    }
}

/// `shardlet: task panicked on thread 'shardlet-0' at src/x.rs:3:9: boom`
fn line(info: &PanicHookInfo<'_>) -> String {
    let thread = std::thread::current();
    let at = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
    format!(
        "shardlet: task panicked on thread '{}'{at}: {}",
        thread.name().unwrap_or("<unnamed>"),
        panic_message(info.payload())
    )
}

/// Where the guarded panic just caught happened (taken once, by the guard).
pub(crate) fn take_location() -> Option<String> {
    LOCATION.try_with(|l| l.borrow_mut().take()).ok().flatten()
}

struct Rate {
    window: Option<Instant>,
    printed: u32,
    suppressed: u64,
    ever: bool,
}

static RATE: Mutex<Rate> = Mutex::new(Rate {
    window: None,
    printed: 0,
    suppressed: 0,
    ever: false,
});

/// Prints `info` unless [`PRINTS_PER_SECOND`] lines went out this second.
fn print_limited(info: &PanicHookInfo<'_>) {
    let mut rate = RATE.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if rate
        .window
        .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
    {
        rate.window = Some(now);
        rate.printed = 0;
    }
    if rate.printed >= PRINTS_PER_SECOND {
        rate.suppressed += 1;
        return;
    }
    rate.printed += 1;
    let mut text = line(info);
    let suppressed = std::mem::take(&mut rate.suppressed);
    if suppressed > 0 {
        text = format!("{text} (and {suppressed} more since the last one printed, not printed)");
    }
    if !std::mem::replace(&mut rate.ever, true) {
        text.push_str(
            "\nshardlet: (no tracing subscriber shows shardlet's errors, so caught panics are printed \
             here, at most 10 a second; install one to log them instead)",
        );
    }
    eprintln!("{text}");
}
