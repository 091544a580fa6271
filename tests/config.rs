//! `Config`: `SHARDLET_*` parsing through `Config::from_lookup`, validation
//! against this machine, and the one-line errors that name the variable and
//! the value.

use std::collections::HashMap;
use std::time::Duration;

use shardlet::{
    Config, ConfigError, Runtime, RuntimeError, ENV_BLOCKING_THREADS, ENV_CPUS, ENV_IO_MEMORY, ENV_MAILBOX,
    ENV_MAX_CONNECTIONS, ENV_PIN, ENV_POOL_SIZE, ENV_RESERVE_CPUS, ENV_SHARDS, ENV_SPIN_US,
};

/// A lookup over the given `(variable, value)` pairs only.
fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |var| map.get(var).cloned()
}

fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_lookup(lookup(pairs))
}

/// Checks the error for `var=value`: it names that variable, gives the value
/// back as written, and prints as one line mentioning both.
fn assert_names(err: &ConfigError, var: &str, value: &str) {
    assert_eq!(err.var, var, "{err}");
    assert_eq!(err.value, value, "{err}");
    let text = err.to_string();
    assert!(!text.contains('\n'), "not one line: {text:?}");
    assert!(
        text.starts_with(&format!("{var}=")),
        "does not start with the variable: {text}"
    );
    assert!(
        text.contains(value.trim()),
        "does not show the value {value:?}: {text}"
    );
    assert!(!err.reason.is_empty(), "no reason given: {text}");
}

/// One test per bad value that `from_lookup` itself rejects.
macro_rules! rejected_at_parse {
    ($($name:ident: $var:expr => $value:expr, reason contains $reason:expr;)*) => {$(
        #[test]
        fn $name() {
            let err = parse(&[($var, $value)]).expect_err(concat!("accepted ", $value));
            assert_names(&err, $var, $value);
            assert!(err.reason.contains($reason), "reason {:?} lacks {:?}", err.reason, $reason);
        }
    )*};
}

rejected_at_parse! {
    shards_not_a_number: ENV_SHARDS => "abc", reason contains "positive integer";
    shards_zero: ENV_SHARDS => "0", reason contains "at least 1";
    shards_negative: ENV_SHARDS => "-2", reason contains "positive integer";
    shards_fraction: ENV_SHARDS => "1.5", reason contains "positive integer";
    cpus_garbage: ENV_CPUS => "zero", reason contains "not a CPU number";
    cpus_open_range: ENV_CPUS => "1-", reason contains "not a CPU number";
    cpus_backwards_range: ENV_CPUS => "3-1", reason contains "backwards";
    cpus_empty_item: ENV_CPUS => "0,,1", reason contains "empty item";
    pin_not_a_boolean: ENV_PIN => "maybe", reason contains "on/off";
    pool_size_zero: ENV_POOL_SIZE => "0", reason contains "at least 1";
    pool_size_garbage: ENV_POOL_SIZE => "lots", reason contains "positive integer";
    io_memory_garbage: ENV_IO_MEMORY => "plenty", reason contains "4M";
    io_memory_unknown_suffix: ENV_IO_MEMORY => "4X", reason contains "4M";
    io_memory_overflow: ENV_IO_MEMORY => "18446744073709551615K", reason contains "too large: must be at most 1G";
    io_memory_digits_overflow: ENV_IO_MEMORY => "99999999999999999999", reason contains "too large: must be at most 1G";
    spin_negative: ENV_SPIN_US => "-5", reason contains "microseconds";
    spin_with_unit: ENV_SPIN_US => "50us", reason contains "microseconds";
    blocking_threads_zero: ENV_BLOCKING_THREADS => "0", reason contains "at least 1";
    blocking_threads_garbage: ENV_BLOCKING_THREADS => "four", reason contains "positive integer";
    mailbox_zero: ENV_MAILBOX => "0", reason contains "at least 1";
    // A number too large to hold is a positive integer, only too large:
    // the error says so, with the bound where there is one.
    shards_overflow: ENV_SHARDS => "99999999999999999999", reason contains "too large: must be at most 1024";
    pool_size_overflow: ENV_POOL_SIZE => "99999999999999999999", reason contains "too large: must be at most 18446744073709551615";
    max_connections_overflow: ENV_MAX_CONNECTIONS => "99999999999999999999", reason contains "too large";
    blocking_threads_overflow: ENV_BLOCKING_THREADS => "99999999999999999999", reason contains "too large: must be at most 1024";
    mailbox_overflow: ENV_MAILBOX => "99999999999999999999", reason contains "too large: must be at most 65536";
    spin_overflow: ENV_SPIN_US => "99999999999999999999", reason contains "too large: must be at most 1000";
    reserve_cpus_overflow: ENV_RESERVE_CPUS => "99999999999999999999", reason contains "too large";
    reserve_cpus_negative: ENV_RESERVE_CPUS => "-1", reason contains "whole number of CPUs";
}

#[test]
fn the_documented_example_message() {
    let err = parse(&[(ENV_SHARDS, "abc")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"SHARDLET_SHARDS="abc": not a positive integer"#
    );
}

#[test]
fn the_first_bad_variable_is_reported_even_when_others_are_bad_too() {
    let err = parse(&[(ENV_SHARDS, "2"), (ENV_POOL_SIZE, "x"), (ENV_SPIN_US, "y")]).unwrap_err();
    assert_eq!(err.var, ENV_POOL_SIZE);
}

#[test]
fn good_values_parse() {
    let config = parse(&[
        (ENV_SHARDS, " 3 "),
        (ENV_CPUS, "1, 0,2-3"),
        (ENV_PIN, "OFF"),
        (ENV_POOL_SIZE, "64"),
        (ENV_IO_MEMORY, "512K"),
        (ENV_SPIN_US, "250"),
        (ENV_BLOCKING_THREADS, "7"),
    ])
    .unwrap();
    assert_eq!(config.shards(), Some(3));
    assert_eq!(config.cpus(), Some(&[0, 1, 2, 3][..]));
    assert!(!config.pin());
    assert_eq!(config.pool_size(), 64);
    assert_eq!(config.io_memory(), Some(512 * 1024));
    assert_eq!(config.spin(), Duration::from_micros(250));
    assert_eq!(config.blocking_threads(), 7);
}

#[test]
fn every_boolean_spelling_of_pin() {
    for (text, want) in [
        ("1", true),
        ("true", true),
        ("Yes", true),
        ("on", true),
        ("0", false),
        ("FALSE", false),
        ("no", false),
        ("off", false),
    ] {
        assert_eq!(parse(&[(ENV_PIN, text)]).unwrap().pin(), want, "{ENV_PIN}={text}");
    }
}

#[test]
fn io_memory_suffixes() {
    for (text, want) in [
        ("65536", 65536),
        ("64K", 64 << 10),
        ("4m", 4 << 20),
        ("4MiB", 4 << 20),
        ("1G", 1 << 30),
        ("2kb", 2 << 10),
    ] {
        assert_eq!(
            parse(&[(ENV_IO_MEMORY, text)]).unwrap().io_memory(),
            Some(want),
            "{text}"
        );
    }
}

#[test]
fn unset_and_blank_variables_keep_the_defaults() {
    let defaults = Config::default();
    assert_eq!(parse(&[]).unwrap(), defaults);
    let blank = parse(&[(ENV_SHARDS, ""), (ENV_POOL_SIZE, "  "), (ENV_PIN, "\t")]).unwrap();
    assert_eq!(blank, defaults);
    // The documented defaults.
    assert_eq!(defaults.shards(), None);
    assert_eq!(defaults.cpus(), None);
    assert!(defaults.pin());
    assert_eq!(defaults.pool_size(), 1000, "Eventlet's default pool size");
    assert_eq!(defaults.spin(), Duration::from_micros(50));
    assert!(defaults.blocking_threads() >= 1);
}

#[test]
fn builder_overrides_the_environment() {
    let config = parse(&[(ENV_SHARDS, "3"), (ENV_POOL_SIZE, "10")])
        .unwrap()
        .with_shards(1)
        .with_pool_size(20)
        .with_pin(false)
        .with_cpus([0])
        .with_io_memory(1 << 20)
        .with_spin(Duration::from_micros(3))
        .with_blocking_threads(2);
    assert_eq!(config.shards(), Some(1));
    assert_eq!(config.pool_size(), 20);
    assert!(!config.pin());
    assert_eq!(config.cpus(), Some(&[0][..]));
    assert_eq!(config.io_memory(), Some(1 << 20));
    assert_eq!(config.spin(), Duration::from_micros(3));
    assert_eq!(config.blocking_threads(), 2);
}

// --- validation against this machine -------------------------------------

/// The CPUs this process may use, as `validate` sees them by default.
fn allowed() -> Vec<usize> {
    let plan = Config::default().with_pin(true).validate().unwrap();
    (0..plan.shards()).map(|i| plan.cpu(i).unwrap()).collect()
}

#[test]
fn default_plan_pins_one_shard_per_allowed_cpu() {
    let cpus = allowed();
    assert!(!cpus.is_empty());
    assert!(
        cpus.windows(2).all(|w| w[0] < w[1]),
        "each shard on its own CPU, in order: {cpus:?}"
    );
}

#[test]
fn more_shards_than_cpus_when_pinned() {
    let n = allowed().len() + 1;
    let value = n.to_string();
    let err = parse(&[(ENV_SHARDS, &value)]).unwrap().validate().unwrap_err();
    assert_names(&err, ENV_SHARDS, &value);
    assert!(
        err.reason.contains(ENV_PIN),
        "should say how to get out: {}",
        err.reason
    );
    // Unpinned, the same count is fine: shards share CPUs.
    let plan = parse(&[(ENV_SHARDS, &value), (ENV_PIN, "0")])
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(plan.shards(), n);
    assert_eq!(plan.cpu(n - 1), None);
}

#[test]
fn more_shards_than_listed_cpus_when_pinned() {
    let first = allowed()[0];
    let err = Config::default()
        .with_cpus([first])
        .with_shards(2)
        .validate()
        .unwrap_err();
    assert_names(&err, ENV_SHARDS, "2");
}

#[test]
fn unknown_cpu_in_the_list() {
    let bad = 60_000; // a CPU id Linux could have, past this machine's
    let text = format!("0,{bad}");
    let config = parse(&[(ENV_CPUS, &text)]).unwrap(); // parses: a syntactically fine list
    let err = config.validate().unwrap_err();
    assert_eq!(err.var, ENV_CPUS);
    let line = err.to_string();
    assert!(line.contains(&bad.to_string()), "{line}");
    assert!(!line.contains('\n'), "{line}");
    assert!(err.reason.contains("unknown CPU"), "{line}");
}

#[test]
fn zero_shards_from_the_builder() {
    let err = Config::default().with_shards(0).validate().unwrap_err();
    assert_names(&err, ENV_SHARDS, "0");
}

#[test]
fn zero_sizes_from_the_builder() {
    let err = Config::default().with_pool_size(0).validate().unwrap_err();
    assert_names(&err, ENV_POOL_SIZE, "0");
    let err = Config::default().with_blocking_threads(0).validate().unwrap_err();
    assert_names(&err, ENV_BLOCKING_THREADS, "0");
    // A cap of no connection at all: refused, not a server that serves
    // nobody (before: accepted, and the server never accepted anyone).
    let err = Config::default().with_max_connections(0).validate().unwrap_err();
    assert_names(&err, ENV_MAX_CONNECTIONS, "0");
    assert!(err.to_string().contains("must be at least 1"), "{err}");
}

#[test]
fn io_memory_below_the_minimum() {
    let config = parse(&[(ENV_IO_MEMORY, "1K")]).unwrap();
    let err = config.validate().unwrap_err();
    // The value as given, not the bytes it parsed to.
    assert_names(&err, ENV_IO_MEMORY, "1K");
    assert!(err.to_string().contains("at least 64K"), "{err}");
    assert!(Config::default().with_io_memory(64 << 10).validate().is_ok());
    // Set again by the builder: the builder's value is the one shown.
    let err = config.with_io_memory(2048).validate().unwrap_err();
    assert_names(&err, ENV_IO_MEMORY, "2048");
}

#[test]
fn bounds_checked_after_parsing_show_the_value_as_given() {
    let err = parse(&[(ENV_IO_MEMORY, "2G")]).unwrap().validate().unwrap_err();
    assert_names(&err, ENV_IO_MEMORY, "2G");
    let err = parse(&[(ENV_SHARDS, "+5000")]).unwrap().validate().unwrap_err();
    assert_names(&err, ENV_SHARDS, "+5000");
}

#[test]
fn huge_cpu_ranges_are_refused_before_they_are_expanded() {
    // Repeated, a range is merged, not expanded again each time.
    let repeated = vec!["0-65535"; 16_000].join(",");
    let started = std::time::Instant::now();
    let err = parse(&[(ENV_CPUS, &repeated)]).unwrap().validate().unwrap_err();
    assert_eq!(err.var, ENV_CPUS);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    for (list, says) in [
        ("0-1000000000", "past the largest CPU id"),
        ("0-18446744073709551615", "past the largest CPU id"),
        ("99999999999999999999999", "not a CPU number"),
        ("-1", "`-1` is not a CPU number or range"),
        ("0-", "`0-` is not a CPU number or range"),
    ] {
        let started = std::time::Instant::now();
        let err = parse(&[(ENV_CPUS, list)]).unwrap_err();
        assert_names(&err, ENV_CPUS, list);
        assert!(err.reason.contains(says), "{list}: {err}");
        // Microseconds; expanded, the first two would take seconds and
        // gigabytes. The bound leaves room for a loaded machine.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{list}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn listed_cpus_pin_in_order() {
    let cpus = allowed();
    let chosen: Vec<usize> = cpus.iter().rev().copied().collect();
    let plan = Config::default().with_cpus(chosen).validate().unwrap();
    assert_eq!(plan.shards(), cpus.len());
    for (i, cpu) in cpus.iter().enumerate() {
        assert_eq!(plan.cpu(i), Some(*cpu), "sorted order");
    }
}

#[test]
fn runtime_new_reports_config_errors_as_config_errors() {
    let err = Runtime::new(Config::default().with_shards(0)).unwrap_err();
    match &err {
        RuntimeError::Config(e) => assert_eq!(e.var, ENV_SHARDS),
        other => panic!("expected a config error, got {other:?}"),
    }
    // `transparent`: the runtime error prints the same one line.
    assert!(err.to_string().starts_with("SHARDLET_SHARDS="), "{err}");
}

/// The only test in this file that touches the process environment (the
/// others use `from_lookup`), so it cannot race with them.
#[test]
fn from_env_reads_the_process_environment() {
    std::env::set_var(ENV_SHARDS, "abc");
    let config_err = Config::from_env().unwrap_err();
    let runtime_err = Runtime::from_env().unwrap_err();
    std::env::remove_var(ENV_SHARDS);
    assert_names(&config_err, ENV_SHARDS, "abc");
    assert_eq!(runtime_err, RuntimeError::Config(config_err));
    assert!(Config::from_env().is_ok());
    // A value that is not UTF-8 is an error, not an unset variable.
    use std::os::unix::ffi::OsStrExt;
    std::env::set_var(ENV_CPUS, std::ffi::OsStr::from_bytes(b"\xff0"));
    let err = Config::from_env().unwrap_err();
    std::env::remove_var(ENV_CPUS);
    assert_eq!((err.var, err.reason.as_str()), (ENV_CPUS, "not valid UTF-8"));
    assert!(Config::from_env().is_ok());
}
