# Sourced by echo-bench.sh and scale-bench.sh: where cargo puts release builds.

# release_dir: the release folder of cargo's target folder, which is
# CARGO_TARGET_DIR, CARGO_BUILD_TARGET_DIR or build.target-dir in a
# .cargo/config.toml, not always target/ (where an old build would be run in
# the new one's place). Without cargo (--no-build): CARGO_TARGET_DIR or target/.
#
# The folder is the one "target_directory" string of `cargo metadata`'s JSON,
# read with sed and bash alone (a fresh machine with cargo need not have
# python3 or jq): the string runs to the first quote that no backslash
# escapes, then its escapes are undone (\" and \/ here, the others, \\ \n \t
# \uXXXX ..., by printf's %b), so spaces, quotes and backslashes in the path
# come out as they are.
release_dir() {
    local raw dir=""
    raw="$(cargo metadata --no-deps --format-version 1 2>/dev/null |
        sed -nE 's/.*"target_directory":"(([^"\\]|\\.)*)".*/\1/p')" || true
    if [[ -n "$raw" ]]; then
        raw="${raw//\\\"/\"}"
        raw="${raw//\\\//\/}"
        printf -v dir '%b' "$raw"
    fi
    echo "${dir:-${CARGO_TARGET_DIR:-target}}/release"
}
