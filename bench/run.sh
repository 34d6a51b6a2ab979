#!/usr/bin/env bash
# The benchmark: flexi-socket against hand-written tokio counterparts, every
# scenario interleaved, medians of REPS runs. The TCP echo example against two
# tokio echo servers; the UDP echo example against a tokio UDP echo; and in
# client mode, flexi-socket's TCP client against a plain tokio client, both
# driving the same tokio echo server.
#
#   bench/run.sh                      # 5 repetitions, about 8 minutes on 2 cores after the build
#   REPS=1 DURATION=1 bench/run.sh    # a quick look
#   SCENARIOS="udp client" bench/run.sh
#
# Environment:
#   REPS (5) repetitions; DURATION (3) seconds measured per run, after WARMUP (1)
#   SCENARIOS (all): a subset of pingpong duel pipelined latency latency-duel
#     idle udp udp-duel client pipelined-1k tls tls-duel tls-pipelined
#     tls-pipelined-duel pipelined-duel broadcast scale
#     (duel: the ping-pong of flexi-socket and the minimal echo at the same
#     time, sharing the server CPU, for precise per-run ratios; see
#     BENCHMARKS.md; latency-duel, udp-duel, tls-duel, tls-pipelined-duel,
#     pipelined-duel: the latency, udp, tls, tls-pipelined and pipelined
#     scenarios run the same way;
#     scale: ping-pong at each of SCALE_CONNECTIONS, one scenario scale-N each)
#   IDLE_CONNECTIONS (10000) for the memory scenario
#   BROADCAST_CONNECTIONS (10000): clients that each broadcast reaches
#   SCALE_CONNECTIONS ("1 16 256 4096 10000"): the scale scenario's steps
#   RESULTS (bench/results) where machine.txt, runs.jsonl (one line per run),
#     table.md, summary.json, summary.csv and chart.svg go
#   FLEXI_ECHO, FLEXI_UDP_ECHO, FLEXI_TLS_ECHO: echo binaries to measure instead of this
#     tree's examples
#   COMPARE_ECHO: a second flexi-socket TCP echo binary (say, built from an
#     older commit) run as a fourth server named COMPARE_NAME (flexi-before)
#     in the TCP scenarios
# Prints the tables of medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-5}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
SCENARIOS=${SCENARIOS:-pingpong duel pipelined pipelined-duel latency latency-duel idle udp udp-duel client pipelined-1k tls tls-duel tls-pipelined tls-pipelined-duel broadcast scale}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
BROADCAST_CONNECTIONS=${BROADCAST_CONNECTIONS:-10000}
SCALE_CONNECTIONS=${SCALE_CONNECTIONS:-1 16 256 4096 10000}
RESULTS=${RESULTS:-bench/results}
# Where cargo builds (the binaries are copied from there).
target=${CARGO_TARGET_DIR:-target}

# name|who runs|load generator arguments. A scenario named duel or *-duel
# runs its runners at the same time (run_together).
all_scenarios=(
    "pingpong|tcp|--mode pingpong --connections 16"
    "duel|duel|--mode pingpong --connections 16"
    "pipelined|tcp|--mode pipelined --connections 16 --depth 64"
    "latency|tcp|--mode pingpong --connections 256"
    "idle|tcp|--mode idle --connections $IDLE_CONNECTIONS"
    "udp|udp|--mode udp --connections 16"
    "client|client|--mode client --connections 16"
    # Eighth session: 1 KiB lines, TLS, broadcast, and how cost grows with
    # the connections.
    "pipelined-1k|tcp|--mode pipelined --connections 16 --depth 64 --size 1024"
    "tls|tls|--mode pingpong --connections 16"
    "tls-pipelined|tls|--mode pipelined --connections 16 --depth 64"
    "broadcast|broadcast|--mode broadcast --connections $BROADCAST_CONNECTIONS"
    # Eleventh session: the latency and TLS targets' ratios, each run's
    # precise where separate runs spread wider than the gap.
    "latency-duel|duel|--mode pingpong --connections 256"
    "tls-duel|tls|--mode pingpong --connections 16"
    "tls-pipelined-duel|tls|--mode pipelined --connections 16 --depth 64"
    "pipelined-duel|batching_duel|--mode pipelined --connections 16 --depth 64"
    # Twelfth session: UDP the same way (it was bench/udp_duel.sh's).
    "udp-duel|udp|--mode udp --connections 16"
)
for connections in $SCALE_CONNECTIONS; do
    all_scenarios+=("scale-$connections|tcp|--mode pingpong --connections $connections")
done
scenarios=()
for wanted in $SCENARIOS; do
    found=
    for scenario in "${all_scenarios[@]}"; do
        name=${scenario%%|*}
        if [[ $name == "$wanted" || ($wanted == scale && $name == scale-*) ]]; then
            scenarios+=("$scenario")
            found=1
        fi
    done
    if [[ -z $found ]]; then
        echo "error: SCENARIOS: no scenario named $wanted" >&2
        exit 2
    fi
done

echo "building (release)..." >&2
examples=()
if [[ -z ${FLEXI_ECHO:-} ]]; then
    examples+=(--example echo)
fi
if [[ -z ${FLEXI_UDP_ECHO:-} ]]; then
    examples+=(--example udp_echo)
fi
if [[ -z ${FLEXI_TLS_ECHO:-} ]]; then
    examples+=(--example tls_echo)
fi
if [[ ${#examples[@]} -gt 0 ]]; then
    examples=(-p flexi-socket-suite "${examples[@]}")
fi
# One cargo call: the examples and the benchmark's client share one build of
# flexi-socket.
# flexi-socket-suite's default `metrics` feature off: the examples record
# no metrics (their cost is measured apart: METRICS=1 bench/instructions.sh).
cargo build --release --quiet --no-default-features "${examples[@]}" -p flexi-socket-bench --bins
# Run copies, so that a build in the same target directory while the
# benchmark runs cannot swap a binary between repetitions.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for program in loadgen flexi_client_load baseline_minimal baseline_batching baseline_udp report chart \
    baseline_tls baseline_broadcast flexi_broadcast; do
    cp "$target/release/$program" "$bin/"
done
for example in echo udp_echo tls_echo; do
    if [[ -x $target/release/examples/$example ]]; then
        cp "$target/release/examples/$example" "$bin/"
    fi
done
flexi_echo=${FLEXI_ECHO:-$bin/echo}
flexi_udp_echo=${FLEXI_UDP_ECHO:-$bin/udp_echo}
flexi_tls_echo=${FLEXI_TLS_ECHO:-$bin/tls_echo}

# Who runs in each kind of scenario, as name|server|load generator; the first
# is the one under test.
tcp=(
    "flexi-socket|$flexi_echo|$bin/loadgen"
    "minimal|$bin/baseline_minimal|$bin/loadgen"
    "batching|$bin/baseline_batching|$bin/loadgen"
)
if [[ -n ${COMPARE_ECHO:-} ]]; then
    tcp+=("${COMPARE_NAME:-flexi-before}|$COMPARE_ECHO|$bin/loadgen")
fi
# The duels' flexi-socket and minimal echo (the TLS duels run the `tls`
# pair), both servers at the same time on the server CPU (and both load
# generators on the load CPU): the machine's ups and downs hit both alike, so
# each run's ratio is precise where separate runs are not.
duel=(
    "flexi-socket|$flexi_echo|$bin/loadgen"
    "minimal|$bin/baseline_minimal|$bin/loadgen"
)
# Pipelined the same way, against the batching echo.
batching_duel=(
    "flexi-socket|$flexi_echo|$bin/loadgen"
    "batching|$bin/baseline_batching|$bin/loadgen"
)
udp=(
    "flexi-socket|$flexi_udp_echo|$bin/loadgen"
    "tokio|$bin/baseline_udp|$bin/loadgen"
)
# Client mode measures the clients: the server is the same for both.
client=(
    "flexi-socket|$bin/baseline_minimal|$bin/flexi_client_load"
    "tokio|$bin/baseline_minimal|$bin/loadgen"
)
# The line echo over TLS (rustls, ring provider, both with their defaults);
# the load generator trusts the certificate each server prints.
tls=(
    "flexi-socket|$flexi_tls_echo|$bin/loadgen"
    "tokio|$bin/baseline_tls|$bin/loadgen"
)
# One line to every connected client: Connections::broadcast against a
# hand-written loop of try_write over every socket.
broadcast=(
    "flexi-socket|$bin/flexi_broadcast|$bin/loadgen"
    "tokio|$bin/baseline_broadcast|$bin/loadgen"
)

# Server on CPU 0, load generator on CPU 1, so neither steals the other's core.
server_cpu=()
load_cpu=()
if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
    server_cpu=(taskset -c 0)
    load_cpu=(taskset -c 1)
else
    echo "warning: fewer than 2 CPUs or no taskset (util-linux): not pinning" >&2
fi

# The idle, broadcast and scale scenarios hold thousands of sockets in the
# server and as many in the load generator (each a separate process with
# this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
most=$IDLE_CONNECTIONS
for connections in $BROADCAST_CONNECTIONS $SCALE_CONNECTIONS; do
    ((connections > most)) && most=$connections
done
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $((most + 100)) ]]; then
    echo "warning: ulimit -n is $(ulimit -n); $most connections will fail" >&2
fi

mkdir -p "$RESULTS"
runs=$RESULTS/runs.jsonl
: >"$runs"
# What was measured and how busy the machine was: numbers mean little without it.
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "tree: $(git describe --always --dirty 2>/dev/null || echo unknown)"
    echo "flexi-socket servers: ${FLEXI_ECHO:-examples/echo}, ${FLEXI_UDP_ECHO:-examples/udp_echo} (built from the tree unless given)"
    if [[ -n ${COMPARE_ECHO:-} ]]; then
        echo "compared with: ${COMPARE_NAME:-flexi-before}=$COMPARE_ECHO"
    fi
    echo "cpus: $(nproc), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
    echo "kernel: $(uname -r)"
    echo "pinning: ${server_cpu[*]:-none} / ${load_cpu[*]:-none}"
    echo "REPS=$REPS DURATION=$DURATION WARMUP=$WARMUP IDLE_CONNECTIONS=$IDLE_CONNECTIONS"
    echo "BROADCAST_CONNECTIONS=$BROADCAST_CONNECTIONS SCALE_CONNECTIONS=$SCALE_CONNECTIONS"
    echo "SCENARIOS=$SCENARIOS"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS/machine.txt"
server_out=$(mktemp)
# Every server running, to stop after the run (or on exit).
server_pids=()
stop_servers() {
    local pid
    for pid in "${server_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    server_pids=()
}
trap 'stop_servers; rm -f "$server_out" "$server_out".*; rm -rf "$bin"' EXIT

# Starts server $1 (a binary) on a free port, its stdout to file $2
# ($server_out); sets server_pid and server_addr, and `tls_ca` to the
# load generator's flags for the certificate a TLS server prints (after
# its address, as `... -CAfile <file>`) when the scenario is a TLS one.
start_server() {
    local out=${2:-$server_out} ca
    : >"$out"
    # taskset execs the server, so $! is the server's own PID. Its stderr
    # (tracing) is not part of the measurement.
    "${server_cpu[@]}" "$1" 127.0.0.1:0 >"$out" 2>/dev/null &
    server_pid=$!
    server_pids+=("$server_pid")
    tls_ca=()
    for _ in $(seq 100); do
        server_addr=$(sed -n 's/^listening on //p' "$out")
        ca=$(sed -n 's/.* -CAfile //p' "$out")
        if [[ ${group:-} == tls && -n $ca ]]; then
            tls_ca=(--tls-ca "$ca")
        fi
        [[ -n $server_addr && (${group:-} != tls || -n $ca) ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "error: $1 did not print 'listening on <addr>'" >&2
    return 1
}

# Whether scenario $1 runs its runners at the same time.
is_duel() {
    [[ $1 == duel || $1 == *-duel ]]
}

# Runs every runner of the duel at once (started in an order that turns
# with repetition $1), then records them in runner order: the report pairs
# the n-th record of each, so a repetition is recorded whole or not at all.
# Adds the runners that reported errors to `failures`.
run_together() {
    local i j runner server load n=${#who[@]} pids=() addrs=() cas=() loads=() complete=1
    for i in "${!who[@]}"; do
        IFS='|' read -r runner server load <<<"${who[$i]}"
        start_server "$server" "$server_out.server$i"
        pids+=("$server_pid")
        addrs+=("$server_addr")
        # Each TLS server prints a certificate of its own.
        cas+=("${tls_ca[*]}")
    done
    for j in $(seq 0 $((n - 1))); do
        i=$(( (j + $1 - 1) % n ))
        IFS='|' read -r runner server load <<<"${who[$i]}"
        read -ra tls_ca <<<"${cas[$i]}"
        "${load_cpu[@]}" "$load" --addr "${addrs[$i]}" "${args[@]}" "${bound[@]}" "${tls_ca[@]}" \
            --server-pid "${pids[$i]}" --scenario "$name" --server-name "$runner" \
            >"$server_out.load$i" &
        loads[i]=$!
    done
    for i in "${!who[@]}"; do
        if ! wait "${loads[$i]}"; then
            failures=$((failures + 1))
            echo "warning: ${who[$i]%%|*} reported errors in the duel (recorded in $runs)" >&2
        fi
        [[ -s $server_out.load$i ]] || complete=
    done
    if [[ -n $complete ]]; then
        for i in "${!who[@]}"; do
            cat "$server_out.load$i" >>"$runs"
        done
    else
        failures=$((failures + 1))
        echo "warning: a duel runner printed no record; repetition $1 left out" >&2
    fi
    stop_servers
}

# Sets `who` to the runners of scenario $1 (name|who|arguments).
runners_of() {
    local group
    IFS='|' read -r _ group _ <<<"$1"
    local -n runners=$group
    who=("${runners[@]}")
}

failures=0
total=0
for scenario in "${scenarios[@]}"; do
    runners_of "$scenario"
    total=$((total + REPS * ${#who[@]}))
done
done_runs=0
for scenario in "${scenarios[@]}"; do
    IFS='|' read -r name group arguments <<<"$scenario"
    read -ra args <<<"$arguments"
    runners_of "$scenario"
    if [[ $name == idle ]]; then
        bound=()
    else
        bound=(--duration "$DURATION" --warmup "$WARMUP")
    fi
    for rep in $(seq "$REPS"); do
        if is_duel "$name"; then
            done_runs=$((done_runs + ${#who[@]}))
            printf '[%d/%d] %-9s %-12s rep %d\n' "$done_runs" "$total" "$name" "together" "$rep" >&2
            run_together "$rep"
            continue
        fi
        # Interleaved, and each repetition starts with a different runner so
        # that none is always the one running right after another's teardown.
        for i in $(seq 0 $(( ${#who[@]} - 1 ))); do
            IFS='|' read -r runner server load <<<"${who[$(( (i + rep - 1) % ${#who[@]} ))]}"
            done_runs=$((done_runs + 1))
            printf '[%d/%d] %-9s %-12s rep %d\n' "$done_runs" "$total" "$name" "$runner" "$rep" >&2
            start_server "$server"
            if ! "${load_cpu[@]}" "$load" --addr "$server_addr" "${args[@]}" "${bound[@]}" "${tls_ca[@]}" \
                --server-pid "$server_pid" --scenario "$name" --server-name "$runner" \
                >>"$runs"; then
                failures=$((failures + 1))
                echo "warning: $runner reported errors (recorded in $runs)" >&2
            fi
            stop_servers
        done
    done
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/machine.txt"
echo >&2
cat "$RESULTS/machine.txt"
echo
"$bin/report" "$runs"
"$bin/chart" "$runs" "$RESULTS/chart.svg"
echo "results: $RESULTS/{machine.txt,runs.jsonl,table.md,summary.json,summary.csv,chart.svg}" >&2
if [[ $failures -gt 0 ]]; then
    echo "$failures runs had errors" >&2
    exit 1
fi
