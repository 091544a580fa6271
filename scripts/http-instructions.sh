#!/usr/bin/env bash
# User-space instructions per HTTP request, shardlet's server against hyper on
# tokio, counted by callgrind: within about 1% from run to run, where the
# requests/s of `cargo bench --bench http` move by 10-20% on a shared machine.
#
#   scripts/http-instructions.sh              # both servers, 8 s of wrk -c64 each
#   scripts/http-instructions.sh shardlet 4   # one server, 4 s
#
# Each server (`cargo bench --bench http`'s `--serve NAME`) runs under
# valgrind on CPU 0; `wrk -t1 -c64` on CPU 1 warms it up for 2 s, callgrind's
# counts are zeroed, `wrk` runs again, and the counts since are divided by
# the requests `wrk` made. The kernel's part (most of a request) is not counted.
# Needs valgrind and wrk (Debian: `apt-get install valgrind wrk`), and
# callgrind_control must be allowed to reach the server (ptrace: it fails
# under `kernel.yama.ptrace_scope` 2 or more).
set -euo pipefail
cd "$(dirname "$0")/.."
servers=${1:-shardlet hyper-tokio}
secs=${2:-8}
for tool in valgrind callgrind_control wrk; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (apt-get install valgrind wrk)" >&2; exit 2; }
done
bench=$(cargo bench --quiet --bench http --no-run --message-format=json |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1) || true
[ -x "$bench" ] || { echo "$0: could not build the http bench" >&2; exit 1; }
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT
for name in $servers; do
  coproc SERVER { exec taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/$name.%p" \
    "$bench" --serve "$name" 2>/dev/null; }
  read -r line <&"${SERVER[0]}"
  addr=${line#listening on }
  pid=$SERVER_PID
  taskset -c 1 wrk -t1 -c64 -d2 "http://$addr/" >/dev/null
  callgrind_control -z "$pid" 2>&1 >/dev/null | { grep -v '^sending command' >&2 || true; }
  taskset -c 1 wrk -t1 -c64 -d"$secs" "http://$addr/" >"$out/$name.wrk"
  callgrind_control -d "$pid" 2>&1 >/dev/null | { grep -v '^sending command' >&2 || true; }
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$out/$name.wrk")
  instructions=$(sed -n 's/^summary: //p' "$out/$name.$pid.1")
  pid=
  printf '%-12s %9d requests  %6d instructions per request\n' "$name" "$requests" $((instructions / requests))
done
