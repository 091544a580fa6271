# Sourced by echo-bench.sh and scale-bench.sh: where cargo puts release builds.

# release_dir: the release folder of cargo's target folder, which is
# CARGO_TARGET_DIR, CARGO_BUILD_TARGET_DIR or build.target-dir in a
# .cargo/config.toml, not always target/ (where an old build would be run in
# the new one's place). Without cargo (--no-build): CARGO_TARGET_DIR or target/.
release_dir() {
    local dir
    dir="$(cargo metadata --no-deps --format-version 1 2>/dev/null |
        grep -o '"target_directory":"[^"]*"' | sed 's/^"target_directory":"//; s/"$//')" || true
    echo "${dir:-${CARGO_TARGET_DIR:-target}}/release"
}
