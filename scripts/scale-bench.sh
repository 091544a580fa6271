#!/usr/bin/env bash
# Scaling across cores: shardlet's echo server on 1, 2, 4, ... shards, in both
# accept modes, with the load client on CPUs of its own.
#
#   scripts/scale-bench.sh                          # every step, both modes, then the skew runs
#   scripts/scale-bench.sh --connections 2000 --duration 3
#   scripts/scale-bench.sh --lock /tmp/shardlet-cpu.lock --results results/scale
#
# The machine's CPUs are split in two halves: the server's shards on the
# first, the client (scripts/echo-bench.sh's raw-epoll client, one pinned
# thread per CPU) on the second, so the client has as many cores as the
# largest server. The server steps through 1, 2, 4, ... shards
# (SHARDLET_SHARDS, SHARDLET_CPUS) up to its half; with fewer than 4 CPUs
# (one server CPU) it also runs 2 shards on the first two CPUs, which the
# client then shares (the table says so), so that both accept modes are
# exercised. Every step runs in each mode (SHARDLET_ACCEPT=reuseport and
# handoff), closed loop, with the server's metrics endpoint read for its
# per-shard accepted and live connections and busy time.
#
# Then the skew runs, at 1 shard and at the largest step, in each mode: open loop, the
# same paced rate (--skew-rate, default 20% of the 1-shard reuseport
# maximum) once with every connection paced ("even") and once with
# --heavy-fraction of them heavy: back-to-back with --heavy-size messages
# ("skew"). The light (paced) connections' p99 is compared between the two.
#
# At the end: the tables (scale.txt), scale.json, and scale.svg (efficiency
# against shard count: msgs/s at N / (N x msgs/s at 1), per mode).
#
# Options:
#   --connections N       connections per run (default 10000)
#   --duration S          seconds measured per run (default 5), after --warmup S (2)
#   --max-shards N        the largest step (default: half the CPUs; 2 on a machine
#                         with fewer than 4)
#   --modes LIST          accept modes (default reuseport,handoff)
#   --heavy-fraction F    the skew runs' share of heavy connections (default 0.1)
#   --heavy-size BYTES    a heavy connection's message size (default 4096)
#   --skew-rate N         the paced connections' total rate in the skew runs
#   --no-skew             only the closed-loop steps
#   --results DIR         where the files go (default: results/scale in the repository;
#                         a relative DIR is taken from the current directory)
#   --lock FILE           hold an exclusive flock on FILE during each run (a relative
#                         FILE is taken from the current directory)
#   --no-build            use the binaries already built
#   -h, --help            this text
set -euo pipefail
# The caller's directory: relative --results and --lock paths are taken from it.
caller_dir="$PWD"
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() {
    echo "scale-bench: $*" >&2
    exit 2
}
from_caller() { # from_caller PATH: PATH made absolute, from the caller's directory
    if [[ "$1" == /* ]]; then echo "$1"; else echo "$caller_dir/$1"; fi
}

connections=10000
duration=5
warmup=2
max_shards=""
modes="reuseport,handoff"
heavy_fraction=0.1
heavy_size=4096
skew_rate=""
skew=1
results="results/scale"
lock_args=()
build=1
while (($#)); do
    case "$1" in
    --connections) connections="${2:?}"; shift ;;
    --duration) duration="${2:?}"; shift ;;
    --warmup) warmup="${2:?}"; shift ;;
    --max-shards) max_shards="${2:?}"; shift ;;
    --modes) modes="${2:?}"; shift ;;
    --heavy-fraction) heavy_fraction="${2:?}"; shift ;;
    --heavy-size) heavy_size="${2:?}"; shift ;;
    --skew-rate) skew_rate="${2:?}"; shift ;;
    --no-skew) skew=0 ;;
    --results) results="$(from_caller "${2:?}")"; shift ;;
    --lock) lock_args=(--lock "$(from_caller "${2:?}")"); shift ;;
    --no-build) build=0 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
IFS=',' read -r -a mode_list <<<"$modes"
for m in "${mode_list[@]}"; do
    [[ "$m" == reuseport || "$m" == handoff ]] || die "--modes: '$m' is not reuseport or handoff"
done

# The CPUs this process may use, split in halves.
# shellcheck source=scripts/cpus.sh
. scripts/cpus.sh
read -r -a cpus <<<"$(allowed_cpus)"
ncpu=${#cpus[@]}
# Each step sets the server's CPUs; echo-bench.sh would stop at a SHARDLET_CPUS
# that names others (run scale-bench under taskset to narrow the CPUs instead).
[[ -z "${SHARDLET_CPUS:-}" ]] || die "SHARDLET_CPUS='$SHARDLET_CPUS': each step chooses the server's CPUs itself; unset it (to use fewer CPUs, run this script under taskset -c LIST)"
((ncpu >= 2)) || die "needs at least 2 CPUs (one for the server, one for the client); this process may use $ncpu"
half=$((ncpu / 2))
client_cpus="$(IFS=','; echo "${cpus[*]:half}")"
if [[ -z "$max_shards" ]]; then
    max_shards=$half
    ((half == 1)) && max_shards=2 # see the top: 2 shards sharing a CPU with the client
fi
[[ "$max_shards" =~ ^[1-9][0-9]*$ ]] || die "--max-shards: '$max_shards' is not a positive whole number"
steps=()
for ((n = 1; n <= max_shards && n <= half; n *= 2)); do steps+=("$n"); done
shared_step=0
if ((half == 1 && max_shards >= 2)); then
    steps+=(2) # on the first two CPUs: CPU 1 is the client's too
    shared_step=1
fi
largest=${steps[-1]}
server_cpus_for() { # server_cpus_for N: the first N CPUs (past the half: the client's too)
    (IFS=','; echo "${cpus[*]:0:$1}")
}

mkdir -p "$results"
if ((build)); then
    echo "scale-bench: building" >&2
    cargo build --release --quiet -p shardlet-bench --bin echo_bench -p shardlet --example echo_server
fi
# shellcheck source=scripts/release-dir.sh
. scripts/release-dir.sh
bin="$(release_dir)"
echo "scale-bench: $ncpu CPUs (${cpus[*]}): server on the first $half, client on $client_cpus; steps ${steps[*]} shard(s)$( ((shared_step)) && echo " (2 shares CPU ${cpus[1]} with the client)"); modes ${mode_list[*]}" >&2

failed=0
labels=()
bench() { # bench LABEL SHARDS MODE CLIENT-ARGS...: one echo-bench.sh run
    local label="$1" n="$2" mode="$3"
    shift 3
    if ! SHARDLET_SHARDS="$n" SHARDLET_ACCEPT="$mode" scripts/echo-bench.sh --no-build --servers shardlet \
        --label "$label" --server-cpus "$(server_cpus_for "$n")" --client-cpus "$client_cpus" \
        --connections "$connections" --duration "$duration" --warmup "$warmup" \
        --results "$results" --server-metrics 127.0.0.1:9190 ${lock_args[@]+"${lock_args[@]}"} "$@" >&2; then
        failed=1
    fi
    labels+=("$label")
}

# Step 1: closed loop, every step, modes interleaved at each.
for n in "${steps[@]}"; do
    for mode in "${mode_list[@]}"; do
        bench "$mode-s$n" "$n" "$mode"
    done
done

# Step 2: skew at the largest step: even, then skewed, per mode.
if ((skew)); then
    if [[ -z "$skew_rate" ]]; then
        json="$results/${mode_list[0]}-s1.json"
        one="$(grep -m1 '^  "msgs_per_sec"' "$json" 2>/dev/null | sed 's/[^0-9.]//g')"
        [[ -n "$one" ]] || die "no 1-shard result ($json) to derive --skew-rate from; pass --skew-rate"
        skew_rate="$(awk -v m="$one" 'BEGIN { printf "%.0f", m * 0.2 }')"
    fi
    skew_steps=(1)
    ((largest > 1)) && skew_steps+=("$largest")
    echo "scale-bench: skew runs at ${skew_steps[*]} shard(s): paced rate $skew_rate msgs/s, $heavy_fraction of the connections heavy ($heavy_size B)" >&2
    for n in "${skew_steps[@]}"; do
        for mode in "${mode_list[@]}"; do
            bench "$mode-s$n-even" "$n" "$mode" --rate "$skew_rate"
            bench "$mode-s$n-skew" "$n" "$mode" --rate "$skew_rate" \
                --heavy-fraction "$heavy_fraction" --heavy-size "$heavy_size"
        done
    done
fi

echo
"$bin/echo_bench" --results "$results" --scale "$(IFS=','; echo "${labels[*]}")" | tee "$results/scale.txt" || failed=1
if ((failed)); then
    echo "scale-bench: FAILED: at least one run had errors" >&2
    exit 1
fi
