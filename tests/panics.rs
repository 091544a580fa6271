//! Panics are never lost (issue 11, item 4): the host's panic hook still
//! sees shard panics (installed before or after shardlet's), `JoinError`
//! keeps its location, stderr gets them (rate-limited) when no `tracing`
//! subscriber does, and under `panic = "abort"` the message is printed
//! before the abort.
//!
//! Panic hooks are process-wide, so every scenario runs in a child process
//! (this binary again, with `SHARDLET_TEST_CHILD` naming it).

mod util;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use shardlet::{spawn, JoinError, Runtime};
use util::config;

static HOST_SAW: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HOST_CALLS: AtomicUsize = AtomicUsize::new(0);

/// A host's crash reporter: records every panic's message; `chain` calls
/// the hook it replaced, as crash reporters do.
fn install_host_hook(chain: bool) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        HOST_CALLS.fetch_add(1, SeqCst);
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        HOST_SAW.lock().unwrap().push(message);
        if chain {
            previous(info);
        }
    }));
}

/// A panic in a shard task: its `JoinError`.
fn shard_panic(message: &'static str) -> JoinError {
    Runtime::new(config(1))
        .unwrap()
        .run(move || async move { spawn(async move { panic!("{message}") }).await.unwrap_err() })
        .unwrap()
        .pop()
        .unwrap()
}

fn location(err: &JoinError) -> Option<String> {
    err.panic_location().map(str::to_owned)
}

fn saw(message: &str) -> bool {
    HOST_SAW.lock().unwrap().iter().any(|m| m == message)
}

#[test]
fn child() {
    let Ok(mode) = std::env::var("SHARDLET_TEST_CHILD") else {
        return;
    };
    match mode.as_str() {
        "host_hook_first" => {
            install_host_hook(false);
            let err = shard_panic("shard panic, host hook first");
            assert!(saw("shard panic, host hook first"), "the host's hook missed it");
            assert!(location(&err).is_some_and(|l| l.contains("panics.rs")), "{err:?}");
            // Panics elsewhere still reach it, once each.
            let before = HOST_CALLS.load(SeqCst);
            let _ = std::thread::spawn(|| panic!("plain thread panic")).join();
            assert_eq!(HOST_CALLS.load(SeqCst), before + 1);
            assert!(saw("plain thread panic"));
        }
        "host_hook_later_chains" => {
            let _ = Runtime::new(config(1)).unwrap();
            install_host_hook(true);
            let err = shard_panic("shard panic, chaining hook later");
            assert!(saw("shard panic, chaining hook later"));
            assert!(location(&err).is_some(), "location lost: {err:?}");
        }
        "host_hook_later_replaces" => {
            let _ = Runtime::new(config(1)).unwrap();
            install_host_hook(false);
            // The next Runtime::new wraps the host's hook again.
            let err = shard_panic("shard panic, replacing hook later");
            assert!(saw("shard panic, replacing hook later"));
            assert!(location(&err).is_some(), "location lost: {err:?}");
        }
        "rate_limited" => {
            // No tracing subscriber: printed, at most PRINTS_PER_SECOND a second.
            Runtime::new(config(1))
                .unwrap()
                .run(|| async {
                    for i in 0..100 {
                        let _ = spawn(async move { panic!("burst panic {i}") }).await;
                    }
                    shardlet::sleep(std::time::Duration::from_millis(1100)).await;
                    let _ = spawn(async { panic!("after the burst") }).await;
                })
                .unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
    println!("CHILD-DONE");
}

fn run_child(mode: &str) -> Output {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("SHARDLET_TEST_CHILD", mode)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("CHILD-DONE"),
        "{mode}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A host hook installed before the runtime sees shard panics, and the
/// `JoinError` keeps its location.
#[test]
fn host_hook_installed_first_sees_shard_panics() {
    run_child("host_hook_first");
}

/// A crash reporter installed after the runtime (it calls the hook it
/// replaced): shard panics reach it, locations are kept.
#[test]
fn host_hook_installed_later_and_chaining() {
    run_child("host_hook_later_chains");
}

/// A hook installed later that does not chain is wrapped again by the next
/// `Runtime::new`.
#[test]
fn host_hook_installed_later_is_wrapped_by_the_next_runtime() {
    run_child("host_hook_later_replaces");
}

/// Without a subscriber, a burst of 100 panics prints at most 10 lines in
/// its second; the next line says how many were left out.
#[test]
fn panics_reach_stderr_rate_limited() {
    let out = run_child("rate_limited");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let burst = stderr.lines().filter(|l| l.contains("burst panic")).count();
    assert!(
        (1..=shardlet::PRINTS_PER_SECOND as usize).contains(&burst),
        "{burst} burst lines:\n{stderr}"
    );
    let after = stderr
        .lines()
        .find(|l| l.contains("after the burst"))
        .unwrap_or_else(|| panic!("the panic after the burst was lost:\n{stderr}"));
    assert!(after.contains(&format!("and {} more", 100 - burst)), "{after}");
    assert!(
        after.contains("shardlet-0") && after.contains("panics.rs:"),
        "{after}"
    );
}

/// Built with `panic = "abort"` (the `panic-abort` profile), a handler's
/// panic aborts the process, and the message is on stderr first.
#[test]
fn under_panic_abort_the_message_is_printed_before_the_abort() {
    let bin = abort_example();
    let out = Command::new(&bin)
        .env("SHARDLET_SHARDS", "1")
        .env("SHARDLET_PIN", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(6),
        "expected SIGABRT: {:?}\n{stderr}",
        out.status
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("handler blew up under panic=abort"))
        .unwrap_or_else(|| panic!("the message was not printed:\n{stderr}"));
    assert!(
        line.contains("panic_abort.rs:") && line.contains("aborts"),
        "{line}"
    );
}

/// `examples/panic_abort.rs` built with the `panic-abort` profile (once;
/// about a minute the first time, since every dependency is built again).
fn abort_example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap().parent().unwrap();
    let bin = target.join("panic-abort").join("examples").join("panic_abort");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--profile", "panic-abort", "--example", "panic_abort"])
        .env("CARGO_TARGET_DIR", target)
        .status()
        .unwrap();
    assert!(
        built.success(),
        "cargo build --profile panic-abort --example panic_abort failed"
    );
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}
