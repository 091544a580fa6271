#!/usr/bin/env bash
# Instructions per work item of each row of `cargo bench --bench green`,
# shardlet's side against its raw-glommio baseline, counted by callgrind:
# exact and the same from run to run, where the bench's timings drift with a
# shared machine's phases (and miss what instructions do not show: stalls).
#
#   scripts/green-instructions.sh          # every row, loops of 20,000 operations
#   scripts/green-instructions.sh 50000    # loops of 50,000
#
# Each side runs twice under callgrind (`--run GROUP SIDE N`, then 2N
# operations); (Ir(2N) - Ir(N)) / N is its count per operation, with the
# start-up and the executor taken out. Rows whose operation is a whole imap
# or pile (100,000 or 1,000 items) run N/100,000 or N/1,000 of them, and
# their counts are divided by the items. Needs valgrind (Debian:
# `apt-get install valgrind`).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
case $n in '' | *[!0-9]*) echo "$0: N must be a whole number, not '$n'" >&2; exit 2 ;; esac
command -v valgrind >/dev/null || { echo "$0: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
bench=$(cargo bench --quiet --bench green --no-run --message-format=json |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1) || true
[ -x "$bench" ] || { echo "$0: could not build the green bench" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Instructions callgrind counts for `--run GROUP SIDE N` (the whole process).
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bench" --run "$1" "$2" "$3" >/dev/null 2>"$out/err" ||
    { cat "$out/err" >&2; exit 1; }
  sed -n 's/^summary: //p' "$out/cg"
}
# Per operation, for loops of `ops` operations.
per_op() {
  local a b
  a=$(count "$1" "$2" "$3")
  b=$(count "$1" "$2" $(($3 * 2)))
  echo $(((b - a) / $3))
}

printf '| measurement (instructions per work item) | shardlet | raw glommio | ratio |\n|---|---:|---:|---:|\n'
while IFS=$'\t' read -r group ours raw; do
  case $group in
    imap_*) items=100000 ;;
    pile_*) items=1000 ;;
    *) items=1 ;;
  esac
  ops=$((n / items))
  ((ops > 0)) || ops=1
  a=$(($(per_op "$group" "$ours" "$ops") / items))
  b=$(($(per_op "$group" "$raw" "$ops") / items))
  printf '| %s: %s vs %s | %d | %d | %s |\n' "$group" "$ours" "$raw" "$a" "$b" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
done < <("$bench" --rows)
