//! The `SHARDLET_*` variables themselves: which names exist (and the
//! warning for one that does not), how their values parse, and the upper
//! bounds that keep any value from aborting the process.

use std::num::{IntErrorKind, ParseIntError};

use crate::config::{
    Config, ConfigError, ENV_ACCEPT, ENV_BLOCKING_THREADS, ENV_CPUS, ENV_IO_MEMORY, ENV_MAILBOX,
    ENV_MAX_CONNECTIONS, ENV_PIN, ENV_POOL_SIZE, ENV_RESERVE_CPUS, ENV_SHARDS, ENV_SPIN_US,
    MAX_BLOCKING_THREADS, MAX_IO_MEMORY, MAX_MAILBOX, MAX_SHARDS, MAX_SPIN,
};

/// Every variable shardlet reads.
pub const KNOWN: [&str; 11] = [
    ENV_SHARDS,
    ENV_CPUS,
    ENV_PIN,
    ENV_POOL_SIZE,
    ENV_MAX_CONNECTIONS,
    ENV_IO_MEMORY,
    ENV_SPIN_US,
    ENV_BLOCKING_THREADS,
    ENV_ACCEPT,
    ENV_MAILBOX,
    ENV_RESERVE_CPUS,
];

/// Names under this prefix are left alone (the project's own tests use them).
const UNCHECKED: &str = "SHARDLET_TEST_";

/// Each `SHARDLET_*` name in `names` that shardlet does not read, with the
/// known name nearest to it, in the order given: one that extends it or
/// that it extends (`SHARDLET_SPIN` for `SHARDLET_SPIN_US`) if any, else
/// the one fewest edits away. Names are exact: `shardlet_shards` is not
/// read, so it is reported (nearest `SHARDLET_SHARDS`).
pub(crate) fn unknown(names: impl IntoIterator<Item = String>) -> Vec<(String, &'static str)> {
    names
        .into_iter()
        .filter_map(|n| {
            let upper = n.to_ascii_uppercase();
            if !upper.starts_with("SHARDLET_") || upper.starts_with(UNCHECKED) || KNOWN.contains(&n.as_str())
            {
                return None;
            }
            let nearest = KNOWN
                .iter()
                .min_by_key(|k| {
                    (
                        !(k.starts_with(upper.as_str()) || upper.starts_with(*k)),
                        edits(&upper, k),
                    )
                })
                .copied()
                .unwrap_or(ENV_SHARDS);
            Some((n, nearest))
        })
        .collect()
}

/// Warns about every unknown `SHARDLET_*` name in `names` (`tracing`,
/// target `shardlet::config`; on stderr when no subscriber would show it).
pub(crate) fn warn_unknown(names: impl IntoIterator<Item = String>) {
    for (name, nearest) in unknown(names) {
        let text = format!("unknown variable {name} is ignored (did you mean {nearest}?)");
        if tracing::event_enabled!(target: "shardlet::config", tracing::Level::WARN) {
            tracing::warn!(target: "shardlet::config", "{text}");
        } else {
            eprintln!("shardlet: {text}");
        }
    }
}

/// Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The upper bounds: no setting may make the process abort (out of
/// threads or memory) or keep the host busy for nothing.
pub(crate) fn check_bounds(config: &Config) -> Result<(), ConfigError> {
    let over = |var, value: usize, max: usize, why: &str| {
        (value > max).then(|| config.error(var, value, format!("must be at most {max} ({why})")))
    };
    let checks = [
        config.shards().and_then(|n| {
            over(
                ENV_SHARDS,
                n,
                MAX_SHARDS,
                "the lanes between shards grow with its square",
            )
        }),
        over(
            ENV_BLOCKING_THREADS,
            config.blocking_threads(),
            MAX_BLOCKING_THREADS,
            "one thread each, with its own stack",
        ),
        over(
            ENV_MAILBOX,
            config.mailbox(),
            MAX_MAILBOX,
            "lanes and mailboxes hold about shards x this many messages, allocated up front",
        ),
    ];
    if let Some(err) = checks.into_iter().flatten().next() {
        return Err(err);
    }
    if config.spin() > MAX_SPIN {
        return Err(config.error(
            ENV_SPIN_US,
            config.spin().as_micros(),
            format!(
                "must be at most {} (1 ms): a shard spins this long after each burst of work",
                MAX_SPIN.as_micros()
            ),
        ));
    }
    Ok(())
}

/// A positive integer.
pub(crate) fn positive(var: &'static str, value: &str) -> Result<usize, ConfigError> {
    match whole(var, value, "not a positive integer")? {
        0 => Err(ConfigError::new(var, value, "must be at least 1")),
        n => Ok(n),
    }
}

/// A whole number, or `not_one` as the reason. A number too large to hold
/// is an error that says so, with the variable's bound where it has one
/// (`99999999999999999999` is a positive integer, only too large).
pub(crate) fn whole(var: &'static str, value: &str, not_one: &str) -> Result<usize, ConfigError> {
    value.trim().parse::<usize>().map_err(|err| {
        let reason = match err.kind() {
            IntErrorKind::PosOverflow => too_large(var),
            _ => not_one.to_string(),
        };
        ConfigError::new(var, value, reason)
    })
}

/// The reason for a value too large to hold: the variable's bound where it
/// has one, else the largest number there is.
fn too_large(var: &str) -> String {
    let max = match var {
        ENV_SHARDS => MAX_SHARDS.to_string(),
        ENV_BLOCKING_THREADS => MAX_BLOCKING_THREADS.to_string(),
        ENV_MAILBOX => MAX_MAILBOX.to_string(),
        ENV_SPIN_US => format!("{} (1 ms)", MAX_SPIN.as_micros()),
        ENV_IO_MEMORY => format!("{}G per shard", MAX_IO_MEMORY >> 30),
        _ => usize::MAX.to_string(),
    };
    format!("too large: must be at most {max}")
}

/// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
pub(crate) fn boolean(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            var,
            value,
            "expected 1/0, true/false, yes/no or on/off",
        )),
    }
}

/// `65536`, `64K`, `4M`, `1G` (binary multiples; a trailing `B`/`iB` is allowed).
pub(crate) fn bytes(var: &'static str, value: &str) -> Result<usize, ConfigError> {
    let bad = || ConfigError::new(var, value, "expected a size such as 65536, 512K or 4M");
    let text = value.trim().to_ascii_uppercase();
    let text = text
        .strip_suffix("IB")
        .or_else(|| text.strip_suffix('B'))
        .unwrap_or(&text);
    let (digits, shift) = match text.chars().last() {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|err: ParseIntError| match err.kind() {
            IntErrorKind::PosOverflow => ConfigError::new(var, value, too_large(var)),
            _ => bad(),
        })?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| ConfigError::new(var, value, too_large(var)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(bytes(ENV_IO_MEMORY, "65536").unwrap(), 65536);
        assert_eq!(bytes(ENV_IO_MEMORY, "512K").unwrap(), 512 << 10);
        assert_eq!(bytes(ENV_IO_MEMORY, "4MiB").unwrap(), 4 << 20);
        assert_eq!(bytes(ENV_IO_MEMORY, "1g").unwrap(), 1 << 30);
        assert!(bytes(ENV_IO_MEMORY, "4X").is_err());
        assert!(bytes(ENV_IO_MEMORY, "M").is_err());
    }

    #[test]
    fn unknown_names_come_with_the_nearest_known_one() {
        let names = [
            "SHARDLET_SHARDSS",
            "SHARDLET_SHARDS",
            "PATH",
            "SHARDLET_SPIN",
            "SHARDLET_TEST_FAULT",
            "shardlet_shards",
            "Shardlet_Spin",
        ];
        let found = unknown(names.iter().map(|s| s.to_string()));
        assert_eq!(
            found,
            [
                ("SHARDLET_SHARDSS".to_string(), ENV_SHARDS),
                ("SHARDLET_SPIN".to_string(), ENV_SPIN_US),
                ("shardlet_shards".to_string(), ENV_SHARDS),
                ("Shardlet_Spin".to_string(), ENV_SPIN_US),
            ]
        );
        assert_eq!(edits("kitten", "sitting"), 3);
    }
}
