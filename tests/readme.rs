//! The README stays a front door that tells the truth: short, and its
//! configuration table names exactly the `SHARDLET_*` variables that
//! shardlet reads (`shardlet::KNOWN_VARIABLES`). Its Rust examples are
//! compiled and run as doctests (`ReadmeDoctests` in src/lib.rs).

use std::collections::BTreeSet;
use std::path::Path;

/// The issue that made the README a front door set this bound (mio's is
/// 7 KB, tokio's 9 KB); details go to docs/ and figures to BENCHMARKS.md.
const MAX_README_BYTES: usize = 16 * 1024;

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `SHARDLET_*` name in `text` (the project's own `SHARDLET_TEST_*`
/// left out, as shardlet leaves them unchecked).
fn names(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("SHARDLET_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let name = name.trim_end_matches('_').to_string();
        if !name.starts_with("SHARDLET_TEST_") && name != "SHARDLET" {
            found.insert(name);
        }
        rest = &rest[at + "SHARDLET_".len()..];
    }
    found
}

#[test]
fn readme_is_at_most_16_kib() {
    let size = read("README.md").len();
    assert!(
        size <= MAX_README_BYTES,
        "README.md is {size} bytes, over {MAX_README_BYTES}: move details to docs/ or BENCHMARKS.md"
    );
}

#[test]
fn the_configuration_table_lists_every_variable() {
    let readme = read("README.md");
    let rows: BTreeSet<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `SHARDLET_"))
        .map(|rest| format!("SHARDLET_{}", rest.split('`').next().unwrap()))
        .collect();
    let known: BTreeSet<String> = shardlet::KNOWN_VARIABLES.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        rows, known,
        "the README's configuration table against KNOWN_VARIABLES"
    );
}

#[test]
fn readme_and_docs_name_no_unknown_variable() {
    let known: BTreeSet<String> = shardlet::KNOWN_VARIABLES.iter().map(|s| s.to_string()).collect();
    for file in [
        "README.md",
        "docs/design.md",
        "docs/http.md",
        "docs/embedding.md",
        "docs/echo-bench.md",
    ] {
        let unknown: Vec<String> = names(&read(file)).difference(&known).cloned().collect();
        assert!(
            unknown.is_empty(),
            "{file} names variables shardlet does not read: {unknown:?}"
        );
    }
}

#[test]
fn the_name_scanner_finds_names_and_skips_test_ones() {
    let found = names("set `SHARDLET_SHARDS=2`, SHARDLET_SPIN_US; not SHARDLET_TEST_FAULT or SHARDLET_*");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["SHARDLET_SHARDS", "SHARDLET_SPIN_US"]
    );
}
