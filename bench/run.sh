#!/usr/bin/env bash
# The benchmark: flexi-socket's echo example against two hand-written tokio
# echo servers, every scenario interleaved, medians of REPS runs.
#
#   bench/run.sh                      # 5 repetitions, 3-4 minutes on 2 cores
#   REPS=1 DURATION=1 bench/run.sh    # a quick look
#
# Environment:
#   REPS (5) repetitions; DURATION (3) seconds measured per run, after WARMUP (1)
#   IDLE_CONNECTIONS (10000) for the memory scenario
#   RESULTS (bench/results) where machine.txt, runs.jsonl (one line per run),
#     table.md, summary.json, summary.csv and chart.svg go
#   FLEXI_ECHO: an echo binary to measure instead of this tree's example
#   COMPARE_ECHO: a second flexi-socket echo binary (say, built from an older
#     commit) run as a fourth server named COMPARE_NAME (flexi-before)
# Prints the table of medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-5}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
RESULTS=${RESULTS:-bench/results}

echo "building (release)..." >&2
if [[ -z ${FLEXI_ECHO:-} ]]; then
    cargo build --release --quiet --example echo
fi
cargo build --release --quiet -p flexi-socket-bench --bins
bin=target/release

# name=binary; the first one is the server under test.
servers=(
    "flexi-socket=${FLEXI_ECHO:-$bin/examples/echo}"
    "minimal=$bin/baseline_minimal"
    "batching=$bin/baseline_batching"
)
if [[ -n ${COMPARE_ECHO:-} ]]; then
    servers+=("${COMPARE_NAME:-flexi-before}=$COMPARE_ECHO")
fi
# name=loadgen arguments
scenarios=(
    "pingpong=--mode pingpong --connections 16"
    "pipelined=--mode pipelined --connections 16 --depth 64"
    "latency=--mode pingpong --connections 256"
    "idle=--mode idle --connections $IDLE_CONNECTIONS"
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

# The idle scenario holds IDLE_CONNECTIONS sockets in the server and as many in
# the load generator (each a separate process with this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $((IDLE_CONNECTIONS + 100)) ]]; then
    echo "warning: ulimit -n is $(ulimit -n); IDLE_CONNECTIONS=$IDLE_CONNECTIONS will fail" >&2
fi

mkdir -p "$RESULTS"
runs=$RESULTS/runs.jsonl
: >"$runs"
# What was measured and how busy the machine was: numbers mean little without it.
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "tree: $(git describe --always --dirty 2>/dev/null || echo unknown)"
    echo "flexi-socket server: ${FLEXI_ECHO:-target/release/examples/echo}"
    if [[ -n ${COMPARE_ECHO:-} ]]; then
        echo "compared with: ${COMPARE_NAME:-flexi-before}=$COMPARE_ECHO"
    fi
    echo "cpus: $(nproc), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
    echo "kernel: $(uname -r)"
    echo "pinning: ${server_cpu[*]:-none} / ${load_cpu[*]:-none}"
    echo "REPS=$REPS DURATION=$DURATION WARMUP=$WARMUP IDLE_CONNECTIONS=$IDLE_CONNECTIONS"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS/machine.txt"
server_out=$(mktemp)
server_pid=
stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap 'stop_server; rm -f "$server_out"' EXIT

# Starts server $1 (a binary) on a free port; sets server_pid and server_addr.
start_server() {
    : >"$server_out"
    # taskset execs the server, so $! is the server's own PID. Its stderr
    # (tracing) is not part of the measurement.
    "${server_cpu[@]}" "$1" 127.0.0.1:0 >"$server_out" 2>/dev/null &
    server_pid=$!
    for _ in $(seq 100); do
        server_addr=$(sed -n 's/^listening on //p' "$server_out")
        [[ -n $server_addr ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "error: $1 did not print 'listening on <addr>'" >&2
    return 1
}

failures=0
total=$(( ${#scenarios[@]} * REPS * ${#servers[@]} ))
done_runs=0
for scenario in "${scenarios[@]}"; do
    name=${scenario%%=*}
    read -ra args <<<"${scenario#*=}"
    if [[ $name == idle ]]; then
        bound=()
    else
        bound=(--duration "$DURATION" --warmup "$WARMUP")
    fi
    for rep in $(seq "$REPS"); do
        # Interleaved, and each repetition starts with a different server so
        # that none is always the one running right after another's teardown.
        for i in $(seq 0 $(( ${#servers[@]} - 1 ))); do
            server=${servers[$(( (i + rep - 1) % ${#servers[@]} ))]}
            server_name=${server%%=*}
            done_runs=$((done_runs + 1))
            printf '[%d/%d] %-9s %-12s rep %d\n' "$done_runs" "$total" "$name" "$server_name" "$rep" >&2
            start_server "${server#*=}"
            if ! "${load_cpu[@]}" "$bin/loadgen" --addr "$server_addr" "${args[@]}" "${bound[@]}" \
                --server-pid "$server_pid" --scenario "$name" --server-name "$server_name" \
                >>"$runs"; then
                failures=$((failures + 1))
                echo "warning: loadgen reported errors (recorded in $runs)" >&2
            fi
            stop_server
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
