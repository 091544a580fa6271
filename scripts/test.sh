#!/usr/bin/env bash
# The project's test command: exactly what CI runs (.ci/run calls this).
#   formatting, lints as errors, every test (unit, integration, doc), the loom
#   models, docs as errors; for the whole workspace: the library, apps/ (the
#   examples' logic) and bench/ (the benchmark tools and baselines).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace --all-targets
cargo test --workspace --doc

step "loom models of the cross-shard primitives (RUSTFLAGS=--cfg loom)"
# Every interleaving, within a preemption bound, of the lanes, the close
# gate, the answer slot, GlobalLimit and the stop signal (src/sync/loom_tests.rs).
# A release build of its own: loom is slow unoptimised.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --lib --release sync::loom_tests -- --nocapture

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
