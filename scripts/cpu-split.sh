#!/usr/bin/env bash
# Where a server's CPU goes per request (HTTP) or per message (echo),
# shardlet's against tokio's, and the most any runtime could gain there on
# this machine's loopback.
#
#   scripts/cpu-split.sh                 # HTTP: both servers, 5 s of wrk -c64 each
#   scripts/cpu-split.sh http 8 1000     # 8 s each, 1,000 connections
#   scripts/cpu-split.sh echo 8 10000    # the echo servers, 10,000 connections
#
# Each server runs on CPU 0 and its load client on CPU 1: for HTTP, `cargo
# bench --bench http`'s `--serve NAME` (the same trivial service on
# shardlet's `http::Server` and on hyper over tokio) and `wrk -t1`; for echo,
# `examples/echo_server` and `baseline_tokio_echo` with `echo_bench`. After a
# warm-up, `perf record -e cpu-clock` samples the server while the load
# runs. The samples are split into:
#
#   kernel    the kernel (TCP on loopback, the syscalls, the wake-ups)
#   hyper     (HTTP only) hyper and the http, httparse and bytes crates: the
#             protocol work, the same code in both servers
#   libc      allocation and copies (malloc, free, memcpy, ...)
#   runtime   everything else: the runtime, the server's own layer, the service
#
# Each part is shown per request (message) as a share of the kernel's. Then
# the ratio of shardlet's CPU per request to tokio's, now and at best: with
# a runtime and server layer that cost nothing (kernel, hyper and libc only,
# the smaller of the two servers' parts). For HTTP the two servers' kernel
# parts are taken as equal (both make one recvfrom and one writev per
# request, in 2 TCP segments); for echo, where the segments per message vary
# from run to run, the CPU per message is the one `echo_bench` measures
# (`srv us`). Where the load client is near 100% of its CPU, it, not the
# server, sets the pace of either.
#
# Needs perf (Debian: `apt-get install linux-perf`), wrk for HTTP, and perf
# allowed to sample the server (kernel.perf_event_paranoid 1 or less, or root).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-http}
secs=${2:-5}
case "$mode" in
  http) conns=${3:-64}; tools="perf wrk" ;;
  echo) conns=${3:-10000}; tools="perf" ;;
  *) echo "usage: $0 [http|echo] [SECS] [CONNECTIONS]" >&2; exit 2 ;;
esac
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (apt-get install linux-perf wrk)" >&2; exit 2; }
done
if [ "$mode" = http ]; then
  bench=$(cargo bench --quiet --bench http --no-run --message-format=json |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1) || true
  [ -x "$bench" ] || { echo "$0: could not build the http bench" >&2; exit 1; }
else
  cargo build --quiet --release -p shardlet --example echo_server
  cargo build --quiet --release -p shardlet-bench --bin echo_bench --bin baseline_tokio_echo
  # shellcheck source=release-dir.sh
  source scripts/release-dir.sh
  release=$(release_dir)
fi
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT

# Starts server NAME on CPU 0; sets pid and addr.
start() {
  if [ "$mode" = http ]; then
    coproc SERVER { exec taskset -c 0 "$bench" --serve "$1" 2>/dev/null; }
    read -r line <&"${SERVER[0]}"
    addr=${line#listening on }
    pid=$SERVER_PID
    return
  fi
  local bin=$release/baseline_tokio_echo
  [ "$1" = shardlet ] && bin=$release/examples/echo_server
  addr=127.0.0.1:6100
  SHARDLET_CPUS=0 taskset -c 0 "$bin" --addr "$addr" >"$out/$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$out/$1.log" && return; sleep 0.1; done
  echo "$0: $1 did not start: $(tail -3 "$out/$1.log")" >&2
  exit 1
}

# Loads the server for secs (after a warm-up) while perf samples it;
# prints the client's requests (messages) per second.
load() {
  if [ "$mode" = http ]; then
    taskset -c 1 wrk -t1 -c"$conns" -d2 "http://$addr/" >/dev/null
    perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$out/$1.data" -- sleep "$secs" 2>/dev/null &
    local perf_pid=$!
    taskset -c 1 wrk -t1 -c"$conns" -d"$secs" "http://$addr/" >"$out/$1.client"
    wait "$perf_pid" || true
    sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$out/$1.client"
    return
  fi
  # Connecting (at 5,000 a second) and 2 s of warm-up come first.
  SHARDLET_CPUS=1 SHARDLET_SHARDS=1 taskset -c 1 "$release/echo_bench" --addr "$addr" \
    --connections "$conns" --duration "$((secs + 1))" --label "$1" --results "$out" >"$out/$1.client" 2>&1 &
  local client=$!
  sleep "$(((conns + 4999) / 5000 + 2))"
  perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$out/$1.data" -- sleep "$secs" 2>/dev/null || true
  wait "$client" || { echo "$0: the echo client failed: $(tail -3 "$out/$1.client")" >&2; exit 1; }
  # Messages/s and the server's CPU µs per message.
  awk -v label="$1" '$1 == label && $2 ~ /^[0-9]+$/ { print $3, $4; exit }' "$out/$1.client"
}

unit=request
[ "$mode" = echo ] && unit=message
printf '%-12s %9s %8s %8s %8s %8s %8s   per %s, kernel = 1\n' server "${unit}s/s" kernel hyper libc runtime total "$unit"
for name in tokio shardlet; do
  server=$name
  [ "$mode" = http ] && [ "$name" = tokio ] && server=hyper-tokio
  start "$server"
  read -r rate cpu < <(load "$name")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  perf report -i "$out/$name.data" --no-children --sort dso,sym --stdio 2>/dev/null |
    awk -v name="$name" -v rate="$rate" -v cpu="${cpu:-0}" '
      /^#/ || NF < 3 { next }
      {
        share = $1; sub("%", "", share)
        line = $0
        if (line ~ /\[kernel/) part = "kernel"
        else if (line ~ /(hyper|http|httparse|bytes)::/ && line !~ /(shardlet|serve_hyper_tokio)::/) part = "hyper"
        else if (line ~ /libc[.-]/ && line ~ /(malloc|free|_int_|realloc|memmove|memcpy|memset|memchr|memcmp)/) part = "libc"
        else part = "runtime"
        sum[part] += share
      }
      END {
        k = sum["kernel"]
        if (k == 0) { print name ": no kernel samples" > "/dev/stderr"; exit 1 }
        total = (k + sum["hyper"] + sum["libc"] + sum["runtime"]) / k
        printf "%-12s %9.0f %8.3f %8.3f %8.3f %8.3f %8.3f\n", name, rate, 1, sum["hyper"] / k, sum["libc"] / k, sum["runtime"] / k, total
        # Per unit: in kernel parts (HTTP), or in µs (echo: the CPU that echo_bench measured).
        scale = cpu > 0 ? cpu / total : 1
        printf "%s %.4f %.4f %.4f %.4f\n", name, total * scale, sum["hyper"] / k * scale, sum["libc"] / k * scale, scale > "/dev/fd/3"
      }' 3>>"$out/split"
done
# The floor: shardlet's kernel part, and the smaller hyper and libc parts of
# the two (shardlet's own calls into the http crate, its request checks,
# count as hyper's).
awk -v unit="$unit" '
  $1 == "tokio" { tokio = $2; h = $3; l = $4 }
  $1 == "shardlet" { shardlet = $2; sh = $3; sl = $4; k = $5 }
  END {
    floor = k + (sh < h ? sh : h) + (sl < l ? sl : l)
    printf "\nshardlet / tokio, CPU per %s: x%.3f now; x%.3f at best, with a runtime and server layer that cost nothing\n", unit, shardlet / tokio, floor / tokio
    printf "(where the server sets the pace, %ss/s go as the inverse: x%.3f now, x%.3f at most)\n", unit, tokio / shardlet, tokio / floor
  }' "$out/split"
