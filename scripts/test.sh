#!/usr/bin/env bash
# The project's test command: exactly what CI runs (.ci/run calls this).
#   formatting, the layering rule, lints as errors (also without default features), every test
#   (unit, integration, doc), the loom models, docs as errors (private items too); for the
#   whole workspace: the library, apps/ (the examples' logic) and bench/ (the benchmark
#   tools and baselines).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Keep the build small enough for a CI machine's disk: with full debug info and
# incremental caches, the ~90 test binaries took 13 GB of target/, with line tables
# 5.0 GB (two CI runs ran out of space), with no debug info 2.7 GB. A panic's
# message still names its file:line (the panic's location is not debug info);
# only backtraces lose line numbers.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=false

step "cargo fmt --check"
cargo fmt --all -- --check

step "layers: each refers only to the ones below it (scripts/layers.sh)"
scripts/layers.sh

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build and clippy --no-default-features (the code paths without tls)"
cargo build --no-default-features
cargo clippy --no-default-features -- -D warnings

step "cargo test"
cargo test --workspace --all-targets
cargo test --workspace --doc

step "loom models of the cross-shard primitives (RUSTFLAGS=--cfg loom)"
# Every interleaving, within a preemption bound, of the lanes, the mailboxes'
# senders waiting for room, the close gate, the answer slot, GlobalLimit and
# the stop signal (src/sync/loom_tests.rs).
# A release build of its own: loom is slow unoptimised.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom CARGO_PROFILE_RELEASE_DEBUG=false cargo test --lib --release sync::loom_tests -- --nocapture

step "cargo doc (warnings are errors), private items included"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet --document-private-items
