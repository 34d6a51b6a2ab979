#!/usr/bin/env bash
# The UDP duel: flexi-socket's udp_echo and the tokio UDP echo at the same
# time, both servers on CPU 0 and both load generators on CPU 1, each doing
# the udp scenario's load (16 sockets, one datagram in flight each). Whatever
# slows the machine slows both, so each run's throughput ratio says which
# server needs less CPU per datagram (see "Duel" in BENCHMARKS.md). Prints
# each run's ratio, their median, and the load average before and after.
#
#   bench/udp_duel.sh                              # 7 runs
#   REPS=11 bench/udp_duel.sh
#   FLEXI_UDP_ECHO=/tmp/old/udp_echo bench/udp_duel.sh
#   FLEXI_UDP_ECHO=target/release/baseline_udp bench/udp_duel.sh   # the method against itself
#
# Environment: REPS (7), DURATION (3) and WARMUP (1) seconds per run,
# FLEXI_UDP_ECHO and BASELINE_UDP (the two servers; default: this tree's
# release builds, built here), LOADGEN. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-7}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}

if [[ -z ${FLEXI_UDP_ECHO:-} || -z ${BASELINE_UDP:-} || -z ${LOADGEN:-} ]]; then
    cargo build --release --quiet --no-default-features -p flexi-socket-suite --example udp_echo \
        -p flexi-socket-bench --bin baseline_udp --bin loadgen
fi
# Run copies: a build in the same target directory cannot swap them mid-run.
bin=$(mktemp -d)
work=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$bin" "$work"
}
trap cleanup EXIT
cp "${FLEXI_UDP_ECHO:-target/release/examples/udp_echo}" "$bin/flexi"
cp "${BASELINE_UDP:-target/release/baseline_udp}" "$bin/tokio"
cp "${LOADGEN:-target/release/loadgen}" "$bin/loadgen"

server_cpu=()
load_cpu=()
if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
    server_cpu=(taskset -c 0)
    load_cpu=(taskset -c 1)
fi

# Starts server $1 on a free port; prints its address.
start() {
    "${server_cpu[@]}" "$bin/$1" 127.0.0.1:0 >"$work/$1.out" 2>/dev/null &
    pids+=($!)
    eval "${1}_pid=$!"
    for _ in $(seq 200); do
        addr=$(sed -n 's/^listening on //p' "$work/$1.out")
        if [[ -n $addr ]]; then
            eval "${1}_addr=$addr"
            return 0
        fi
        sleep 0.05
    done
    echo "error: $1 did not print 'listening on <addr>'" >&2
    exit 1
}

# The messages/s in loadgen's JSON line $1.
rate() {
    sed -n 's/.*"messages_per_s":\([0-9.]*\).*/\1/p' "$1"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
ratios=()
for rep in $(seq "$REPS"); do
    start flexi
    start tokio
    # The order the load starts in turns with each run.
    order=(flexi tokio)
    if ((rep % 2 == 0)); then
        order=(tokio flexi)
    fi
    loads=()
    for name in "${order[@]}"; do
        addr_var=${name}_addr
        pid_var=${name}_pid
        "${load_cpu[@]}" "$bin/loadgen" --addr "${!addr_var}" --mode udp --connections 16 \
            --duration "$DURATION" --warmup "$WARMUP" --server-pid "${!pid_var}" \
            --scenario udp --server-name "$name" >"$work/$name.json" &
        loads+=($!)
    done
    failed=
    for load in "${loads[@]}"; do
        wait "$load" || failed=1
    done
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    flexi=$(rate "$work/flexi.json")
    tokio=$(rate "$work/tokio.json")
    if [[ -n $failed || -z $flexi || -z $tokio ]]; then
        echo "run $rep: a load generator reported errors; left out" >&2
        continue
    fi
    ratio=$(awk -v a="$flexi" -v b="$tokio" 'BEGIN { printf "%.3f", a / b }')
    ratios+=("$ratio")
    printf 'run %d: flexi-socket %.0f/s, tokio %.0f/s, ratio %s\n' "$rep" "$flexi" "$tokio" "$ratio"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END {
    m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
    printf "median ratio %.3f (runs %s to %s)\n", m, r[1], r[NR]
}'
