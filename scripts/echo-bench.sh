#!/usr/bin/env bash
# The 10k-client echo benchmark: shardlet's main job.
#
#   scripts/echo-bench.sh                  # shardlet's echo server, 10k connections, 64 B, 10 s
#   scripts/echo-bench.sh --compare        # the same against shardlet, raw glommio and tokio
#   scripts/echo-bench.sh --compare --connections 2000 --duration 5
#   scripts/echo-bench.sh --servers shardlet,tokio --connections 100,1000,10000,19000
#   scripts/echo-bench.sh --compare --repeat 5 --lock /tmp/shardlet-cpu.lock   # medians of 5 rounds
#   scripts/echo-bench.sh --rate 50000     # open loop: 50k msgs/s in all, p50 ... p99.99
#   scripts/echo-bench.sh --servers shardlet,tokio --rate-sweep --rate-base tokio   # latency against load
#
# It builds the release programs, starts the echo server on one set of CPUs
# and the load client (bench/src/bin/echo_bench) on the others, waits for the
# server's "listening on" line, runs the client, stops the server, and prints
# the table. Results (JSON, .hgrm, SVG plots, server logs) go to results/.
#
# Script options (everything else is passed to the client, see
# `cargo run --release -p shardlet-bench --bin echo_bench -- --help`):
#   --compare             run shardlet, raw-glommio and tokio one after the other,
#                         then print a combined table and the ratios shardlet/raw-glommio
#                         and shardlet/tokio (msgs/s and p99)
#   --servers LIST        which servers, in order, comma-separated, from
#                         shardlet, shardlet-glommio (shardlet's server on glommio's streams),
#                         shardlet-acks (shardlet's server with --acks-with-answers),
#                         raw-glommio, tokio (default: shardlet; env ECHO_BENCH_SERVERS)
#   --server-cpus LIST    CPUs for the server (default: SHARDLET_CPUS if set, else the
#                         first CPU; env SERVER_CPUS). Given with a SHARDLET_CPUS that
#                         names other CPUs, it is an error
#   --client-cpus LIST    CPUs for the client (default: the CPUs the server does not use,
#                         or the server's if it has them all; env CLIENT_CPUS)
#   --addr HOST:PORT      where the server listens (default 127.0.0.1:6000)
#   --results DIR         where the files go (default: results/ in the repository;
#                         a relative DIR is taken from the current directory)
#   --no-build            use the binaries already built (in cargo's target/release)
#   --repeat N            N rounds: every server once per round, the order rotated
#                         each round (round 2 starts with the second server, ...);
#                         then every run, and each server's medians with their range
#                         and the ratios of the first server's medians to the others'
#   --lock FILE           hold an exclusive flock on FILE during each run (server
#                         start to stop) and release it between runs (a relative
#                         FILE is taken from the current directory)
#   --connections LIST    connection counts, comma-separated (default 10000). With
#                         more than one, every server runs at every count (servers
#                         interleaved, a fresh server process each run) and the end
#                         prints one cost table per server: msgs/s, server CPU per
#                         message, peak RSS, RSS per connection, p99
#   --rate N              (a client option) open loop: N messages per second in all,
#                         spread evenly over the connections; each latency counted from
#                         the message's intended send time (wrk2's coordinated-omission
#                         correction); p50/p99/p99.9/p99.99, and the achieved rate
#                         ("saturated" when more than 5% short)
#   --rate-sweep          for each server a closed-loop run (its maximum msgs/s), then
#                         open-loop runs at --loads percent of it (servers interleaved at
#                         each load); a table of latency against load and sweep.svg
#   --loads LIST          the sweep's loads in percent (default 25,50,75,90)
#   --rate-base SERVER    with --rate-sweep: also run every other server at the same
#                         absolute rates, the loads of SERVER's maximum, and give the
#                         ratios of their p99.9 to SERVER's at each
#   --label NAME          with one server: name its results NAME rather than the server's
#   --server-metrics HOST:PORT
#                         shardlet's server serves Prometheus metrics there, and the
#                         client reads its per-shard connections and busy time
#   -h, --help            this text
#
# Before building, it checks that the largest count fits the descriptor limit
# (each side holds one descriptor per connection; shardlet's default cap
# follows the limit) and the ephemeral ports to one address, and says what to
# raise when it does not.
#
# Environment: SHARDLET_SHARDS / SHARDLET_ACCEPT / SHARDLET_* reach shardlet's
# server (SHARDLET_CPUS is the server's CPUs, as --server-cpus, which must then
# agree with it; the client gets one shard per CPU of --client-cpus, whatever
# SHARDLET_CPUS says). The exit code is non-zero
# when a server failed to start or any run had errors or failed connections.
set -euo pipefail
# The caller's directory: relative --results and --lock paths are taken from
# it, not from the repository root the script works in.
caller_dir="$PWD"
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() {
    echo "echo-bench: $*" >&2
    exit 2
}
from_caller() { # from_caller PATH: PATH made absolute, from the caller's directory
    if [[ "$1" == /* ]]; then echo "$1"; else echo "$caller_dir/$1"; fi
}

# Step 1: options.
servers="${ECHO_BENCH_SERVERS:-shardlet}"
server_cpus="${SERVER_CPUS:-}"
server_from="${SERVER_CPUS:+SERVER_CPUS}" # where server_cpus came from, for the messages
client_cpus="${CLIENT_CPUS:-}"
addr="127.0.0.1:6000"
results="results"
build=1
compare=0
repeat=1
lock=""
connections=10000
sweep=0
loads="25,50,75,90"
loads_given=0
rate_base=""
server_metrics=""
label_name=""
client_args=()
while (($#)); do
    case "$1" in
    --compare) compare=1 ;;
    --servers) servers="${2:?--servers needs a list}"; shift ;;
    --servers=*) servers="${1#*=}" ;;
    --server-cpus) server_cpus="${2:?--server-cpus needs a list}"; server_from="--server-cpus"; shift ;;
    --server-cpus=*) server_cpus="${1#*=}"; server_from="--server-cpus" ;;
    --client-cpus) client_cpus="${2:?--client-cpus needs a list}"; shift ;;
    --client-cpus=*) client_cpus="${1#*=}" ;;
    --addr) addr="${2:?--addr needs HOST:PORT}"; shift ;;
    --addr=*) addr="${1#*=}" ;;
    --results) results="$(from_caller "${2:?--results needs a folder}")"; shift ;;
    --results=*) results="$(from_caller "${1#*=}")" ;;
    --no-build) build=0 ;;
    --repeat) repeat="${2:?--repeat needs a number}"; shift ;;
    --repeat=*) repeat="${1#*=}" ;;
    --lock) lock="$(from_caller "${2:?--lock needs a file}")"; shift ;;
    --lock=*) lock="$(from_caller "${1#*=}")" ;;
    --rate-sweep) sweep=1 ;;
    --loads) loads="${2:?--loads needs a list}"; loads_given=1; shift ;;
    --loads=*) loads="${1#*=}"; loads_given=1 ;;
    --rate-base) rate_base="${2:?--rate-base needs a server}"; shift ;;
    --rate-base=*) rate_base="${1#*=}" ;;
    --label) label_name="${2:?--label needs a name}"; shift ;;
    --label=*) label_name="${1#*=}" ;;
    --server-metrics) server_metrics="${2:?--server-metrics needs HOST:PORT}"; shift ;;
    --server-metrics=*) server_metrics="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    --connections) connections="${2:?--connections needs a number or a list}"; shift ;;
    --connections=*) connections="${1#*=}" ;;
    *) client_args+=("$1") ;;
    esac
    shift
done
if ((compare)) && [[ -z "${ECHO_BENCH_SERVERS:-}" && "$servers" == shardlet ]]; then
    servers="shardlet,raw-glommio,tokio"
fi
IFS=',' read -r -a labels <<<"$servers"
((${#labels[@]})) || die "--servers is empty"
if [[ -n "$label_name" ]]; then
    ((${#labels[@]} == 1)) || die "--label names the results of one server, not of '$servers'"
    [[ "$label_name" =~ ^[A-Za-z0-9_-]+$ ]] || die "--label '$label_name': letters, digits, '-' and '_' only"
fi
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "--repeat: '$repeat' is not a positive whole number"
IFS=',' read -r -a counts <<<"$connections"
((${#counts[@]})) || die "--connections is empty"
max_count=0
for n in "${counts[@]}"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "--connections: '$n' is not a positive whole number (expected e.g. 100,1000,10000)"
    ((n > max_count)) && max_count=$n
done
IFS=',' read -r -a load_list <<<"$loads"
if ((sweep)); then
    ((${#counts[@]} == 1)) || die "--rate-sweep runs at one connection count, not '$connections'"
    ((repeat == 1)) || die "--rate-sweep does not take --repeat"
    for p in "${load_list[@]}"; do
        [[ "$p" =~ ^[1-9][0-9]?$ ]] || die "--loads: '$p' is not a percentage from 1 to 99"
    done
    for a in ${client_args[@]+"${client_args[@]}"}; do
        [[ "$a" == --rate || "$a" == --rate=* ]] && die "--rate-sweep sets the rates itself: leave out --rate"
    done
    if [[ -n "$rate_base" && ",$servers," != *",$rate_base,"* ]]; then
        die "--rate-base '$rate_base' is not one of the servers ($servers)"
    fi
elif [[ -n "$rate_base" ]]; then
    die "--rate-base goes with --rate-sweep"
elif ((loads_given)); then
    die "--loads goes with --rate-sweep"
fi

# A server's binary, under cargo's target/release: shardlet's is the echo_server
# example, the baselines are binaries of the bench/ member (shardlet-bench).
example_of() {
    case "$1" in
    shardlet | shardlet-glommio | shardlet-acks) echo examples/echo_server ;;
    raw-glommio) echo baseline_glommio_echo ;;
    tokio) echo baseline_tokio_echo ;;
    *) die "unknown server '$1' (choose from shardlet, shardlet-glommio, shardlet-acks, raw-glommio, tokio)" ;;
    esac
}
for label in "${labels[@]}"; do example_of "$label" >/dev/null; done

# Step 2: CPUs. The server gets the first allowed CPU, the client the rest;
# on one CPU they share it (and the figures then measure both together).
# SHARDLET_CPUS in the environment names the server's CPUs too: alone, it is
# used; beside --server-cpus (or SERVER_CPUS) it must say the same, since a
# silent choice between two explicit settings would measure on CPUs the user
# did not expect.
# shellcheck source=scripts/cpus.sh
. scripts/cpus.sh
read -r -a cpus <<<"$(allowed_cpus)"
cpu_list() { # cpu_list WHAT LIST: dies unless LIST is a CPU list (checked before any arithmetic on it)
    [[ "$2" =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] ||
        die "$1 '$2': expected CPU numbers and ranges, e.g. 1 or 1-3,5"
    # A range that runs backwards would expand to nothing, and a long one
    # would be counted out CPU by CPU (for minutes); Linux numbers CPUs below
    # 8192 (NR_CPUS at most). Whether they are allowed is check_cpus's.
    local part lo hi
    IFS=',' read -r -a parts <<<"$2"
    for part in "${parts[@]}"; do
        # 10#: a leading zero is not octal.
        lo=$((10#${part%-*})) hi=$((10#${part#*-}))
        ((lo <= hi)) || die "$1 '$2': the range $part runs backwards"
        ((hi < 8192)) || die "$1 '$2': CPU $hi is past any CPU number Linux has (below 8192)"
    done
}
check_cpus() { # check_cpus WHAT LIST: dies unless LIST is a CPU list of allowed CPUs
    local what="$1 '$2'" c
    cpu_list "$1" "$2"
    for c in $(expand_cpus "$2"); do
        [[ " ${cpus[*]} " == *" $c "* ]] || die "$what: CPU $c is not one this process may use (${cpus[*]})"
    done
}
in_cpus() { # in_cpus CPU LIST: whether LIST names CPU
    [[ " $(expand_cpus "$2") " == *" $1 "* ]]
}
same_cpus() { # same_cpus LIST LIST: whether the two name the same CPUs
    local c
    for c in $(expand_cpus "$1"); do in_cpus "$c" "$2" || return 1; done
    for c in $(expand_cpus "$2"); do in_cpus "$c" "$1" || return 1; done
}
if [[ -n "${SHARDLET_CPUS:-}" ]]; then
    if [[ -z "$server_cpus" ]]; then
        server_cpus="$SHARDLET_CPUS"
        server_from="SHARDLET_CPUS"
    else
        cpu_list "--server-cpus (SERVER_CPUS)" "$server_cpus"
        cpu_list SHARDLET_CPUS "$SHARDLET_CPUS"
        same_cpus "$server_cpus" "$SHARDLET_CPUS" ||
            die "$server_from '$server_cpus' and SHARDLET_CPUS '$SHARDLET_CPUS' name different CPUs for the server: unset SHARDLET_CPUS, or leave out $server_from, or make them the same"
    fi
fi
if [[ -z "$server_cpus" ]]; then
    server_cpus="${cpus[0]}"
    server_from="the first allowed CPU"
fi
if [[ "$server_from" == SHARDLET_CPUS ]]; then
    check_cpus SHARDLET_CPUS "$server_cpus"
else
    check_cpus "--server-cpus (SERVER_CPUS)" "$server_cpus"
fi
if [[ -z "$client_cpus" ]]; then
    # The allowed CPUs the server does not use.
    rest=()
    for c in "${cpus[@]}"; do
        in_cpus "$c" "$server_cpus" || rest+=("$c")
    done
    if ((${#rest[@]})); then
        client_cpus="$(IFS=','; echo "${rest[*]}")"
    else
        client_cpus="$server_cpus"
        echo "echo-bench: no CPU left for the client: it shares the server's CPU(s) $server_cpus" >&2
    fi
fi
check_cpus "--client-cpus (CLIENT_CPUS)" "$client_cpus"
pin() { # pin CPUS: the command prefix that runs a program on CPUS
    if command -v taskset >/dev/null; then echo "taskset -c $1"; fi
}

# Step 3: limits, checked for the largest count before anything runs.
# Each side holds one descriptor per connection: the client needs the count
# plus a margin; shardlet's echo server derives its cap from the limit
# (limit - (256 + 32 x shards + limit/64), over the shards; see
# shardlet::net::max_connections_for), unless SHARDLET_MAX_CONNECTIONS sets it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_soft="$(ulimit -n)"
fd_hard="$(ulimit -Hn)"
if [[ "$fd_soft" != unlimited ]]; then
    need=$((max_count + 256))
    if ((fd_soft < need)); then
        die "$max_count connections need about $need descriptors per process, but the limit is $fd_soft (hard: $fd_hard). Raise the hard limit ('ulimit -Hn $need' in a root shell, nofile in /etc/security/limits.conf, or LimitNOFILE= for a systemd unit) or use fewer connections"
    fi
    server_shards="${SHARDLET_SHARDS:-$(wc -w <<<"$(expand_cpus "$server_cpus")")}"
    # Checked before any arithmetic: bash evaluates a variable's text there.
    server_shards="${server_shards//[[:space:]]/}"
    [[ "$server_shards" =~ ^[0-9]+$ ]] && ((10#$server_shards > 0)) ||
        die "SHARDLET_SHARDS=$server_shards: not a whole number of shards (at least 1)"
    server_shards=$((10#$server_shards))
    if [[ -z "${SHARDLET_MAX_CONNECTIONS:-}" && ",$servers," == *,shardlet* ]]; then
        cap=$(((fd_soft - (256 + 32 * server_shards + fd_soft / 64)) / server_shards))
        # Per shard: an even share, or, with SO_REUSEPORT (the default accept
        # mode) on several shards, the kernel's uneven split: 5,051 and 4,949
        # of 10,000 here, and a full shard evicts while another has room.
        share=$(((max_count + server_shards - 1) / server_shards))
        if ((server_shards > 1)) && [[ "${SHARDLET_ACCEPT:-reuseport}" == reuseport ]]; then
            share=$((share + share / 10 + 64))
        fi
        if ((cap < share)); then
            need=$(((share * server_shards + 256 + 32 * server_shards) * 64 / 63 + 1))
            die "shardlet's echo server derives a cap of $cap connections per shard x $server_shards shard(s) from the descriptor limit $fd_soft, below the $share per shard that $max_count connections need (with reuseport's uneven split across shards): raise the limit to at least $need (see above), use fewer connections, or SHARDLET_ACCEPT=handoff"
        fi
    fi
fi
read -r port_low port_high </proc/sys/net/ipv4/ip_local_port_range
ports=$((port_high - port_low + 1))
if ((max_count > ports)); then
    die "$max_count connections to one address need as many ephemeral ports, but net.ipv4.ip_local_port_range ($port_low-$port_high) gives $ports: widen it (sysctl -w net.ipv4.ip_local_port_range='1024 65535') or use fewer connections"
fi
tw_reuse="$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo 2)"
if ((tw_reuse == 0)) && command -v ss >/dev/null; then
    time_wait="$(ss -Htan state time-wait 2>/dev/null | wc -l)"
    if ((max_count + time_wait > ports)); then
        die "$time_wait ports are in TIME_WAIT (for 60 s after the client closes) and net.ipv4.tcp_tw_reuse is 0: $max_count more connections would run out of the $ports ephemeral ports. Wait a minute, or set net.ipv4.tcp_tw_reuse=1 (or 2: loopback only)"
    fi
fi
if ((${#counts[@]} > 1)) && ((tw_reuse == 0)); then
    echo "echo-bench: warning: net.ipv4.tcp_tw_reuse is 0: each run leaves its ports in TIME_WAIT for 60 s, and later runs may run out" >&2
fi

# Step 4: build.
if ((build)); then
    command -v cargo >/dev/null ||
        die "cargo is not on the PATH: install Rust 1.89 or later (https://rustup.rs), then open a new shell or run '. \"\$HOME/.cargo/env\"'; or pass --no-build to run binaries built before"
    examples=(-p shardlet-bench --bin echo_bench)
    for label in "${labels[@]}"; do
        case "$(example_of "$label")" in
        examples/*) examples+=(-p shardlet --example "$(basename "$(example_of "$label")")") ;;
        *) examples+=(--bin "$(example_of "$label")") ;;
        esac
    done
    echo "echo-bench: building ${examples[*]}" >&2
    cargo build --release --quiet "${examples[@]}"
fi
# shellcheck source=scripts/release-dir.sh
. scripts/release-dir.sh
bin="$(release_dir)"
# Every program this run needs, there before any server starts (not a
# server that "exited (status 127)" with taskset's complaint in its log).
for program in echo_bench $(for label in "${labels[@]}"; do example_of "$label"; done); do
    [[ -x "$bin/$program" ]] && continue
    ((build)) && die "cargo built, but there is no $bin/$program"
    die "no $bin/$program: run without --no-build to build it (release binaries are looked for in cargo's target folder: CARGO_TARGET_DIR, or target/)"
done
# Options this script does not know go to the load client: checked now,
# before any server starts, not reported as a failed run. The ones the
# script gives the client itself cannot be given twice.
for a in ${client_args[@]+"${client_args[@]}"}; do
    case "$a" in
    --server-pid | --server-pid=* | --check | --check=*) die "${a%%=*} is the script's to give the load client: leave it out" ;;
    esac
done
if ! check="$(NO_COLOR=1 CLICOLOR_FORCE=0 "$bin/echo_bench" --check ${client_args[@]+"${client_args[@]}"} 2>&1)"; then
    if ! NO_COLOR=1 CLICOLOR_FORCE=0 "$bin/echo_bench" --check >/dev/null 2>&1; then
        die "$bin/echo_bench is older than this script (it has no --check): run without --no-build to build it"
    fi
    # clap's message, up to its usage line, on one line.
    why="$(sed -n '/^Usage:/q; /^$/d; /^For more information/d; s/^error: //; p' <<<"$check" | tr -s ' \n' ' ' | sed 's/ *$//')"
    die "${why:-the load client refused the options: $check} (options this script does not know go to the load client, echo_bench; see --help)"
fi
mkdir -p "$results"

# Step 5: clean up whatever is still running on any exit.
server_pid=""
client_pid=""
stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 10 s
    local pid="$1" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$client_pid"
    stop_pid "$server_pid"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

host="${addr%:*}"
host="${host#[}"
host="${host%]}"
port="${addr##*:}"
# port_busy: whether something accepts connections on --addr. Bounded: a
# connection to an address that is not this machine's (or to a listener that
# never accepts) can wait minutes for an answer; one that does not come within
# 3 s is an error, where a free local port refuses at once.
port_busy() {
    local rc=0
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null || rc=$?
    if ((rc == 124)); then
        die "no answer from $addr within 3 s (neither accepted nor refused): it is not an address of this machine, or something there listens without accepting; pass --addr with a free local address, e.g. 127.0.0.1:6000"
    fi
    ((rc == 0))
}

# Step 6: one run per server, connection count and round (servers
# interleaved; with --repeat, the order rotates each round).
failed=0
ran=()
echo "echo-bench: servers: ${labels[*]}; server cpus $server_cpus (from $server_from), client cpus $client_cpus;" \
    "kernel $(uname -r); somaxconn $(cat /proc/sys/net/core/somaxconn);" \
    "ephemeral ports $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range)" >&2
lock_fd=""
if [[ -n "$lock" ]]; then exec {lock_fd}>>"$lock"; fi
run_one() { # run_one SERVER LABEL COUNT: one server process, one client run
    local server="$1" label="$2" count="$3" example log rc ready i status
    example="$(example_of "$server")"
    port_busy && die "something already listens on $addr; stop it or pass --addr"
    log="$results/$label.server.log"
    : >"$log"
    # An earlier run's files under this label would pass for this run's
    # figures (in the comparison, the medians, the sweep's rates) if it fails.
    rm -f "$results/$label.json" "$results/$label.hgrm" "$results/$label.svg"
    server_args=(--addr "$addr")
    [[ "$server" == shardlet-glommio ]] && server_args+=(--glommio-streams)
    [[ "$server" == shardlet-acks ]] && server_args+=(--acks-with-answers)
    metrics_args=()
    if [[ -n "$server_metrics" && "$example" == examples/echo_server ]]; then
        server_args+=(--metrics-addr "$server_metrics")
        metrics_args=(--server-metrics "$server_metrics")
    fi
    echo "echo-bench: [$label] starting $example on cpu(s) $server_cpus" >&2
    SHARDLET_CPUS="$server_cpus" $(pin "$server_cpus") "$bin/$example" "${server_args[@]}" >"$log" 2>&1 &
    server_pid=$!
    ready=0
    for ((i = 0; i < 300; i++)); do
        if grep -q "listening on" "$log"; then ready=1; break; fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ((!ready)); then
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "echo-bench: [$label] the server did not print 'listening on' within 30 s; its log ($log):" >&2
        else
            status=0
            wait "$server_pid" || status=$?
            echo "echo-bench: [$label] the server exited (status $status) before it printed 'listening on'; its log ($log):" >&2
        fi
        tail -n 20 "$log" >&2
        stop_pid "$server_pid"
        server_pid=""
        failed=1
        return
    fi
    echo "echo-bench: [$label] $(grep -m1 "listening on" "$log")" >&2

    # The client's shards are its CPUs, whatever SHARDLET_SHARDS says to the server.
    SHARDLET_CPUS="$client_cpus" SHARDLET_SHARDS="$(wc -w <<<"$(expand_cpus "$client_cpus")")" \
        $(pin "$client_cpus") "$bin/echo_bench" --addr "$addr" --label "$label" \
        --results "$results" --server-pid "$server_pid" --connections "$count" ${client_args[@]+"${client_args[@]}"} \
        ${metrics_args[@]+"${metrics_args[@]}"} ${run_args[@]+"${run_args[@]}"} &
    client_pid=$!
    rc=0
    wait "$client_pid" || rc=$?
    client_pid=""
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "echo-bench: [$label] the server died during the run; its log ($log):" >&2
        tail -n 20 "$log" >&2
        rc=1
    fi
    stop_pid "$server_pid"
    server_pid=""
    if ((rc != 0)); then
        echo "echo-bench: [$label] the client reported errors (exit code $rc)" >&2
        failed=1
    fi
    ran+=("$label")
    echo >&2
}
locked_run() { # locked_run SERVER LABEL COUNT: run_one under the lock, with run_args
    [[ -n "$lock_fd" ]] && flock -x "$lock_fd"
    run_one "$@"
    [[ -n "$lock_fd" ]] && flock -u "$lock_fd"
    return 0
}
max_of() { # max_of LABEL: the msgs/s of a finished run
    local json="$results/$1.json" v
    [[ -f "$json" ]] || return 1
    v="$(grep -m1 '^  "msgs_per_sec"' "$json" | sed 's/[^0-9.]//g')"
    [[ -n "$v" ]] && echo "$v"
}
run_args=()
if ((sweep)); then
    # Step 6a: the rate sweep. Each server's closed-loop maximum, then at each
    # load every server (order rotated per load) at that share of its own
    # maximum and, with --rate-base, of the base server's.
    count="${counts[0]}"
    declare -A max=()
    for server in "${labels[@]}"; do
        locked_run "$server" "$server-max" "$count"
        max[$server]="$(max_of "$server-max")" || die "[$server-max] no results: cannot derive its rates"
        echo "echo-bench: [$server] closed-loop maximum ${max[$server]} msgs/s" >&2
    done
    k=0
    for p in "${load_list[@]}"; do
        order=()
        for ((j = 0; j < ${#labels[@]}; j++)); do order+=("${labels[$(((j + k) % ${#labels[@]}))]}"); done
        k=$((k + 1))
        for server in "${order[@]}"; do
            run_args=(--rate "$(awk -v m="${max[$server]}" -v p="$p" 'BEGIN { printf "%.0f", m * p / 100 }')")
            locked_run "$server" "$server-own$p" "$count"
            if [[ -n "$rate_base" && "$server" != "$rate_base" ]]; then
                run_args=(--rate "$(awk -v m="${max[$rate_base]}" -v p="$p" 'BEGIN { printf "%.0f", m * p / 100 }')")
                locked_run "$server" "$server-$rate_base$p" "$count"
            fi
        done
    done
    run_args=()
    echo
    sweep_args=(--sweep "$servers" --loads "$loads")
    [[ -n "$rate_base" ]] && sweep_args+=(--rate-base "$rate_base")
    "$bin/echo_bench" --results "$results" "${sweep_args[@]}" | tee "$results/sweep.txt" || failed=1
    if ((failed)); then
        echo "echo-bench: FAILED: at least one run had errors or failed connections" >&2
        exit 1
    fi
    exit 0
fi
for count in "${counts[@]}"; do
    for ((round = 1; round <= repeat; round++)); do
        order=()
        for ((k = 0; k < ${#labels[@]}; k++)); do
            order+=("${labels[$(((k + round - 1) % ${#labels[@]}))]}")
        done
        ((repeat > 1)) && echo "echo-bench: round $round of $repeat at $count connections: ${order[*]}" >&2
        for server in "${order[@]}"; do
            label="${label_name:-$server}"
            ((${#counts[@]} > 1)) && label="$label-c$count"
            ((repeat > 1)) && label="$label-r$round"
            [[ -n "$lock_fd" ]] && flock -x "$lock_fd"
            run_one "$server" "$label" "$count"
            [[ -n "$lock_fd" ]] && flock -u "$lock_fd"
        done
    done
done

# Step 7: the medians (--repeat), the cost tables (several counts), or the
# combined table and ratios (first server against the others).
if ((repeat > 1)); then
    for count in "${counts[@]}"; do
        bases=()
        for server in "${labels[@]}"; do
            if ((${#counts[@]} > 1)); then bases+=("$server-c$count"); else bases+=("$server"); fi
        done
        suffix=""
        ((${#counts[@]} > 1)) && suffix="-c$count"
        echo
        "$bin/echo_bench" --results "$results" --summary "$(IFS=','; echo "${bases[*]}")" --rounds "$repeat" |
            tee "$results/summary$suffix.txt" || failed=1
    done
elif ((${#counts[@]} > 1)); then
    echo
    "$bin/echo_bench" --results "$results" --curve "$(IFS=','; echo "${labels[*]}")" \
        --points "$(IFS=','; echo "${counts[*]}")" | tee "$results/curve.txt" || failed=1
elif ((${#ran[@]} > 1)); then
    echo
    echo "== comparison (ratios: ${ran[0]} / each other; msgs/s higher is better, p99 lower is better) =="
    "$bin/echo_bench" --results "$results" --compare "$(IFS=','; echo "${ran[*]}")" |
        tee "$results/compare.txt" || failed=1
fi
if ((failed)); then
    echo "echo-bench: FAILED: at least one run had errors or failed connections" >&2
    exit 1
fi
