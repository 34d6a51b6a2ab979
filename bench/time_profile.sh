#!/usr/bin/env bash
# Where a server's CPU time goes, function by function: perf samples the
# software clock (this VM has no hardware counters) while the flexi-socket
# server, then its hand-written counterpart, answers the same load alone,
# and each function's share of the samples becomes microseconds of server
# CPU per message. It sees what bench/instructions.sh does not: the kernel,
# and what instructions cost in time (atomic operations, cache and branch
# misses, calls through pointers). A sample on a shared VM, not a count:
# run it on a quiet machine and compare servers within one run.
#
#   bench/time_profile.sh                      # TLS pipelined: tls_echo and the tokio-rustls echo
#   MODE=pipelined bench/time_profile.sh       # the echo example and the batching echo
#   TOP=30 KEEP=/tmp/profile bench/time_profile.sh
#   perf annotate -i /tmp/profile/perf.data.tls_echo --stdio -s 'SYMBOL'
#
# Environment:
#   MODE (tls-pipelined): pingpong, latency, pipelined, pipelined-1k, tls,
#     tls-pipelined or udp (the servers and load of bench/instructions.sh)
#   DURATION (4): whole seconds sampled, after a second under load
#   TOP (15): functions listed per server
#   SERVERS: the server binaries to profile (default: the tree's
#     flexi-socket example for MODE, then its hand-written counterpart)
#   KEEP: a directory to keep each server's perf.data.<name> in
# Needs perf (Debian: apt-get install linux-perf). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-tls-pipelined}
DURATION=${DURATION:-4}
TOP=${TOP:-15}
target=${CARGO_TARGET_DIR:-target}

# The servers and load of MODE (bench/servers.sh).
source bench/servers.sh
choose_mode
if [[ $MODE == broadcast || $MODE == client ]]; then
    # Broadcast's time is per line delivered, client mode's in the load generators.
    echo "error: MODE=$MODE: profiles one server's messages; use bench/instructions.sh" >&2
    exit 2
fi
if [[ ! $DURATION =~ ^[1-9][0-9]*$ ]]; then
    echo "error: DURATION=$DURATION: a whole number of seconds" >&2
    exit 2
fi
if ! command -v perf >/dev/null; then
    echo "error: perf is not installed (Debian: apt-get install linux-perf)" >&2
    exit 2
fi

build_servers
make_work_directory

# Prints the profile in $2 of server $1, which spent $3 µs of CPU per message.
report() {
    local name=$1 data=$2 cpu=$3
    # One line per (binary or kernel, function): "share% dso [.] symbol".
    perf report -i "$data" --no-children --sort dso,symbol --stdio 2>/dev/null |
        awk -v name="$name" -v cpu="$cpu" -v top="$TOP" '
            /^#/ || NF < 4 { next }
            {
                share = $1 + 0
                kernel = ($2 == "[kernel.kallsyms]")
                if (kernel) kernel_share += share
                if (++listed > top) next
                symbol = $4
                for (i = 5; i <= NF; i++) symbol = symbol " " $i
                sub(/( +-)+ *$/, "", symbol)
                if (length(symbol) > 90) symbol = substr(symbol, 1, 87) "..."
                line[listed] = sprintf("  %7.4f %6.2f%%  %-16s %s", share / 100 * cpu, share, $2, symbol)
            }
            END {
                printf "%s: %.3f µs of server CPU per message; kernel %.1f%%, user space %.1f%%\n",
                    name, cpu, kernel_share, 100 - kernel_share
                print "   µs/msg  share   binary           function"
                for (i = 1; i <= listed && i <= top; i++) print line[i]
            }'
}

for server in $SERVERS; do
    name=$(basename "$server")
    "$server" 127.0.0.1:0 >"$work/stdout" 2>"$work/stderr" &
    server_pid=$!
    wait_for_address "$name"
    # The load runs a second before and a second after the sampling.
    "$target/release/loadgen" --addr "$addr" "${load[@]}" "${tls_ca[@]}" \
        --duration $((DURATION + 2)) --warmup 0 --server-pid "$server_pid" \
        --scenario "$MODE" --server-name "$name" >"$work/load.json" &
    load_pid=$!
    sleep 1
    if ! perf record --quiet -F 2999 -e cpu-clock -p "$server_pid" -o "$work/perf.data.$name" \
        -- sleep "$DURATION" 2>"$work/perf.stderr"; then
        echo "error: perf record failed (kernel.perf_event_paranoid?):" >&2
        cat "$work/perf.stderr" >&2
        kill "$load_pid" 2>/dev/null || true
        exit 1
    fi
    wait "$load_pid"
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    cpu=$(sed -n 's/.*"server_cpu_us_per_message":\([0-9.e-]*\).*/\1/p' "$work/load.json")
    rate=$(sed -n 's/.*"messages_per_s":\([0-9.e+]*\).*/\1/p' "$work/load.json")
    report "$name" "$work/perf.data.$name" "$cpu"
    awk -v rate="$rate" 'BEGIN { printf "  (%.2f million messages/s over the whole load)\n\n", rate / 1e6 }'
    if [[ -n ${KEEP:-} ]]; then
        mkdir -p "$KEEP"
        cp "$work/perf.data.$name" "$KEEP/"
    fi
done
