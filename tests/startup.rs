//! Start-up validation (issue 11, item 3): glommio's locked-memory floor,
//! upper bounds on the knobs that could abort the process or burn CPU, the
//! warning for an unknown `SHARDLET_*` variable, CPUs left to the host, and
//! the example servers exiting at once, non-zero, with the message.

mod util;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use shardlet::{
    Config, ConfigError, Runtime, RuntimeError, ENV_BLOCKING_THREADS, ENV_MAILBOX, ENV_RESERVE_CPUS,
    ENV_SHARDS, ENV_SPIN_US, MEMLOCK_FLOOR,
};

fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(move |var| map.get(var).cloned())
}

/// The value parses, and `Runtime::new` refuses it with a one-line error
/// naming the variable (instead of aborting later).
fn refused(var: &str, value: &str, reason: &str) {
    let config = parse(&[(var, value)]).unwrap().with_pin(false);
    let err = match Runtime::new(config) {
        Err(RuntimeError::Config(err)) => err,
        other => panic!("{var}={value} accepted: {other:?}"),
    };
    let text = err.to_string();
    assert_eq!(err.var, var, "{text}");
    assert!(
        !text.contains('\n') && text.contains(value) && text.contains(reason),
        "{text}"
    );
}

#[test]
fn knobs_have_upper_bounds() {
    refused(ENV_BLOCKING_THREADS, "100000", "at most 1024");
    refused(ENV_SPIN_US, "99999999999", "at most 1000");
    refused(ENV_MAILBOX, "1000000000", "at most 65536");
    refused(ENV_SHARDS, "100000", "at most 1024");
    // The largest allowed values still run.
    let config = parse(&[
        (ENV_SPIN_US, "1000"),
        (ENV_BLOCKING_THREADS, "8"),
        (ENV_MAILBOX, "65536"),
    ])
    .unwrap()
    .with_shards(1)
    .with_pin(false)
    .with_io_memory(256 << 10);
    assert_eq!(Runtime::new(config).unwrap().run(|| async { 1 }).unwrap(), [1]);
}

#[test]
fn cpus_can_be_left_to_the_host() {
    let config = parse(&[(ENV_RESERVE_CPUS, "1")]).unwrap();
    assert_eq!(config.reserve_cpus(), 1);
    let err = parse(&[(ENV_RESERVE_CPUS, "some")]).unwrap_err();
    assert_eq!(err.var, ENV_RESERVE_CPUS);
    let allowed = core_cpus();
    let err = Config::default()
        .with_reserve_cpus(allowed.len())
        .validate()
        .unwrap_err();
    assert_eq!(err.var, ENV_RESERVE_CPUS, "{err}");
    assert!(err.to_string().contains("leaves no CPU"), "{err}");
    if allowed.len() >= 2 {
        let plan = Config::default().with_reserve_cpus(1).validate().unwrap();
        assert_eq!(plan.host_cpus(), &allowed[..1]);
        assert_eq!(plan.shards(), (allowed.len() - 1).min(quota_cpus()).max(1));
        assert_eq!(plan.cpu(0), Some(allowed[1]), "shards skip the host's CPU");
    }
}

/// The CPUs this process may use (sorted).
fn core_cpus() -> Vec<usize> {
    let plan = Config::default()
        .with_pin(true)
        .with_shards(1)
        .validate()
        .unwrap();
    let first = plan.cpu(0).unwrap();
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (first..first + n).collect()
}

/// This machine's cgroup quota as a whole number of CPUs (huge when none).
fn quota_cpus() -> usize {
    Config::default().with_pin(false).validate().unwrap().shards()
}

/// The default shard count never exceeds the CPUs or the cgroup quota.
#[test]
fn default_shards_respect_affinity_and_quota() {
    let plan = Config::default().validate().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(plan.shards() >= 1 && plan.shards() <= cpus, "{plan:?}");
}

/// Runs this test binary's `child` test with `mode`, optionally under
/// `prlimit --memlock=65536:65536`.
fn run_child(mode: &str, memlock: bool) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if memlock && has_prlimit() {
        let mut c = Command::new("prlimit");
        c.arg("--memlock=65536:65536").arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("SHARDLET_TEST_CHILD", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn has_prlimit() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The child half: nothing in a normal run.
#[test]
fn child() {
    let Ok(mode) = std::env::var("SHARDLET_TEST_CHILD") else {
        return;
    };
    match mode.as_str() {
        "memlock" => {
            if !has_prlimit() {
                use nix::sys::resource::{setrlimit, Resource};
                setrlimit(Resource::RLIMIT_MEMLOCK, 64 << 10, 64 << 10).unwrap();
            }
            let err = Runtime::new(Config::default().with_shards(1).with_pin(false)).unwrap_err();
            println!("ERROR: {err}");
        }
        "nofile" => {
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_NOFILE, 20, 20).unwrap();
            let err = Runtime::new(Config::default().with_shards(1).with_pin(false)).unwrap_err();
            println!("ERROR: {err}");
        }
        "nofile-held" => {
            // A host holding most of its descriptors already.
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_NOFILE, 64, 64).unwrap();
            let held: Vec<std::fs::File> = (0..50)
                .map(|_| std::fs::File::open("/dev/null").unwrap())
                .collect();
            let err = Runtime::new(Config::default().with_shards(1).with_pin(false)).unwrap_err();
            println!("ERROR: {err}");
            drop(held);
        }
        "typo" => {
            // No tracing subscriber here: the warning goes to stderr.
            std::env::set_var("SHARDLET_SHARDSS", "2");
            std::env::set_var("SHARDLET_SPIN", "10");
            Config::from_env().unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
    println!("CHILD-DONE");
}

/// The error line a child that ran to its end printed.
fn child_error(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CHILD-DONE"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("ERROR: ").map(|(_, e)| e.to_string()))
        .unwrap_or_else(|| panic!("no error line in {stdout}"))
}

/// glommio refuses to start below 512 KiB of locked memory, root or not
/// (this test runs as root in CI): `Runtime::new` says so, and what to raise.
#[test]
fn memlock_below_glommios_floor_is_an_error_with_what_to_raise() {
    let line = child_error(run_child("memlock", true));
    assert!(line.contains("RLIMIT_MEMLOCK is 65536 bytes"), "{line}");
    assert!(line.contains(&MEMLOCK_FLOOR.to_string()), "{line}");
    assert!(
        line.contains("ulimit -l") && line.contains("LimitMEMLOCK="),
        "{line}"
    );
}

/// Too few descriptors for a shard even to start: an error that says what
/// to raise, not a panic inside glommio.
#[test]
fn a_descriptor_limit_too_low_to_start_is_an_error_with_what_to_raise() {
    let line = child_error(run_child("nofile", false));
    assert!(line.contains("RLIMIT_NOFILE is 20 descriptors"), "{line}");
    assert!(line.contains("ulimit -n"), "{line}");
}

/// Descriptors the process holds already count: 50 of 64 held leave too
/// few for a shard, and the error says so before any shard starts. Before:
/// the check passed, and the shard failed inside glommio.
#[test]
fn descriptors_held_already_count_against_the_limit() {
    let line = child_error(run_child("nofile-held", false));
    assert!(line.contains("RLIMIT_NOFILE is 64 descriptors ("), "{line}");
    assert!(line.contains(" open already)"), "{line}");
    assert!(line.contains("ulimit -n"), "{line}");
}

#[test]
fn an_unknown_variable_is_named_with_the_nearest_known_one() {
    let out = run_child("typo", false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("CHILD-DONE"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown variable SHARDLET_SHARDSS is ignored (did you mean SHARDLET_SHARDS?)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("SHARDLET_SPIN is ignored (did you mean SHARDLET_SPIN_US?)"),
        "{stderr}"
    );
}

/// An example's binary, up to date.
fn example(name: &str) -> PathBuf {
    util::example_binary(name)
}

/// Runs `name` with `env`, killed after 10 s; (status code, stderr, time).
fn run_example(name: &str, env: &[(&str, &str)], memlock: bool) -> (Option<i32>, String, Duration) {
    let bin = example(name);
    let mut cmd = if memlock {
        let mut c = Command::new("prlimit");
        c.arg("--memlock=65536:65536").arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let (status, took) = util::exit_within(
        &mut child,
        Duration::from_secs(10),
        &format!("{name} with {env:?} (memlock: {memlock})"),
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr, took)
}

/// The cases, on the example servers: each exits non-zero within
/// 3 s, with the message.
#[test]
fn example_servers_exit_at_once_with_the_message() {
    type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str);
    let cases: [Case<'_>; 5] = [
        (&[], true, "RLIMIT_MEMLOCK is 65536 bytes"),
        (
            &[("SHARDLET_BLOCKING_THREADS", "100000")],
            false,
            "SHARDLET_BLOCKING_THREADS=\"100000\"",
        ),
        (
            &[("SHARDLET_SPIN_US", "99999999999")],
            false,
            "SHARDLET_SPIN_US=\"99999999999\"",
        ),
        (
            &[("SHARDLET_MAILBOX", "1000000000")],
            false,
            "SHARDLET_MAILBOX=\"1000000000\"",
        ),
        (&[("SHARDLET_SHARDS", "abc")], false, "SHARDLET_SHARDS=\"abc\""),
    ];
    for name in ["echo_server", "feed_scraper"] {
        for (env, memlock, message) in cases {
            if memlock && !has_prlimit() {
                continue;
            }
            let (code, stderr, took) = run_example(name, env, memlock);
            assert!(
                code.is_some_and(|c| c != 0),
                "{name} {env:?}: exit {code:?}\n{stderr}"
            );
            assert!(took < Duration::from_secs(3), "{name} {env:?}: took {took:?}");
            assert!(
                stderr.contains(message),
                "{name} {env:?}: no {message:?} in\n{stderr}"
            );
        }
    }
    // A typo is a warning, not an error: the server starts (and is stopped here).
    let (code, stderr, _) = run_example(
        "echo_server",
        &[("SHARDLET_SHARDSS", "1"), ("SHARDLET_SHARDS", "0")],
        false,
    );
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("SHARDLET_SHARDSS is ignored (did you mean SHARDLET_SHARDS?)"),
        "{stderr}"
    );
}
