#!/usr/bin/env bash
# Instructions per work item of each row of `cargo bench --bench green`,
# shardlet's side against its raw-glommio baseline, counted by callgrind:
# exact and the same from run to run, where the bench's timings drift with a
# shared machine's phases (and miss what instructions do not show: stalls).
#
#   scripts/green-instructions.sh          # loops of 20,000 work items
#   scripts/green-instructions.sh 50000    # loops of 50,000
#
# Each side runs twice under callgrind (`--run GROUP SIDE N`, then 2N
# operations); (Ir(2N) - Ir(N)) / N is its count per operation, with the
# start-up and the executor taken out. An operation of the imap and pile
# rows is a whole imap or pile (100,000 or 1,000 items, as `--rows` says):
# they run N / items of them (at least one), and their counts are divided
# by the items. The `spawn_detached_on_a_shard` row is not counted (`--rows`
# leaves it out: its shard would park inside valgrind). Needs valgrind
# (Debian: `apt-get install valgrind`).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
n=${1:-20000}
case $n in '' | *[!0-9]*) echo "$0: N must be a whole number, not '$n'" >&2; exit 2 ;; esac
n=$((10#$n))
((n > 0)) || { echo "$0: N must be at least 1" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "$0: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
bench=$(cargo bench --quiet --bench green --no-run --message-format=json |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1) || true
[ -x "$bench" ] || { echo "$0: could not build the green bench" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bench" --rows >"$out/rows"
[ -s "$out/rows" ] || { echo "$0: $bench --rows listed nothing" >&2; exit 1; }

# Instructions callgrind counts for `--run GROUP SIDE N` (the whole process).
count() {
  if ! valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bench" --run "$1" "$2" "$3" \
    </dev/null >/dev/null 2>"$out/err"; then
    cat "$out/err" >&2
    echo "$0: --run $1 '$2' $3 failed under valgrind" >&2
    return 1
  fi
  sed -n 's/^summary: //p' "$out/cg"
}
# Per work item, for loops of `ops` operations of `items` items; each side
# counted once (rows share their raw sides).
declare -A counted
per_item() {
  local key="$1/$2" a b
  if [ -z "${counted[$key]:-}" ]; then
    a=$(count "$1" "$2" "$3")
    b=$(count "$1" "$2" $(($3 * 2)))
    counted[$key]=$(((b - a) / $3 / $4))
  fi
  echo "${counted[$key]}"
}

printf '| measurement (instructions per work item) | shardlet | raw glommio | ratio |\n|---|---:|---:|---:|\n'
while IFS=$'\t' read -r group ours raw items; do
  ops=$((n / items))
  ((ops > 0)) || ops=1
  # Not in a command substitution: the cache must outlive the call.
  per_item "$group" "$ours" "$ops" "$items" >"$out/a"
  per_item "$group" "$raw" "$ops" "$items" >"$out/b"
  a=$(<"$out/a")
  b=$(<"$out/b")
  printf '| %s: %s vs %s | %d | %d | %s |\n' "$group" "$ours" "$raw" "$a" "$b" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
done <"$out/rows"
