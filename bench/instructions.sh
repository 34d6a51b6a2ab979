#!/usr/bin/env bash
# User-space instructions per message, counted by valgrind's callgrind while
# a server answers a fixed number of messages: unlike time on a shared VM,
# this repeats to within about 1% from run to run, so it shows what a change
# to the per-message path gave. Kernel work (the system calls themselves,
# most of a ping-pong message's cost) is not counted.
#
#   bench/instructions.sh                      # TCP ping-pong: the echo example and the minimal echo
#   MODE=latency bench/instructions.sh         # the same at 256 connections
#   MODE=pipelined bench/instructions.sh       # 16 connections x 64 lines in flight
#   MODE=pipelined-1k bench/instructions.sh    # the same with 1 KiB lines
#   MODE=tls bench/instructions.sh             # ping-pong over TLS: tls_echo and the tokio-rustls echo
#   MODE=tls-pipelined bench/instructions.sh   # pipelined over TLS
#   MODE=broadcast bench/instructions.sh       # one line to BROADCAST_CONNECTIONS clients, per line delivered
#   MODE=udp bench/instructions.sh             # the udp_echo example and the tokio UDP echo
#   MODE=client bench/instructions.sh          # flexi-socket's client and a plain tokio client
#   SERVERS="/tmp/old/echo" bench/instructions.sh
#   METRICS=1 bench/instructions.sh            # the echo example without and with metrics
#   CACHE=1 MODE=tls-pipelined bench/instructions.sh   # and simulated cache misses per message
#
# Environment:
#   MODE (pingpong): pingpong, latency, pipelined, pipelined-1k, tls,
#     tls-pipelined, broadcast, udp or client. In client mode the
#     load generators are counted (flexi_client_load, loadgen --mode client),
#     both against the minimal echo run without valgrind; each count includes
#     the load generator's own work (making and checking lines, the histogram)
#   MESSAGES (100000): messages the load generator sends, all answered
#     (broadcast: broadcasts, each delivered BROADCAST_CONNECTIONS times;
#     default 100, so 100,000 lines delivered)
#   BROADCAST_CONNECTIONS (1000)
#   SERVERS: the server binaries to count (default: the tree's flexi-socket
#     example for MODE, then its hand-written counterpart)
#   METRICS: 1 counts, instead of SERVERS, the echo example built without
#     the metrics feature (as always otherwise), with it but no recorder, and
#     bench's echo_metrics (a Prometheus recorder installed and rendered every
#     15 s); MODE pingpong or pipelined
#   CACHE: 1 also simulates the caches (callgrind --cache-sim=yes; their
#     sizes printed with the first count) and prints each server's
#     first-level data (D1) and instruction (I1) misses per message, and the
#     misses of the level simulated after them (LL), this CPU's L2 (see
#     below). Simulated, so they repeat like the instructions on a busy
#     machine, where perf's counters would not (this VM has none); start-up
#     is in them as in the instructions (take it out by difference with a
#     smaller MESSAGES); about twice as slow
#   KEEP: a directory to keep the callgrind.out.* files in (for
#     callgrind_annotate, which with CACHE=1 can also sort by D1mr, D1mw, ...;
#     build with CARGO_PROFILE_RELEASE_DEBUG=true to see source lines)
# Needs valgrind (Debian: apt-get install valgrind). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-pingpong}
BROADCAST_CONNECTIONS=${BROADCAST_CONNECTIONS:-1000}
if [[ $MODE == broadcast ]]; then
    MESSAGES=${MESSAGES:-100}
    # Instructions per line delivered.
    per=$((MESSAGES * BROADCAST_CONNECTIONS))
else
    MESSAGES=${MESSAGES:-100000}
    per=$MESSAGES
fi
# Where cargo builds.
target=${CARGO_TARGET_DIR:-target}

# The servers and load of MODE (bench/servers.sh).
source bench/servers.sh
choose_mode
if ! command -v valgrind >/dev/null; then
    echo "error: valgrind is not installed (Debian: apt-get install valgrind)" >&2
    exit 2
fi

build_servers

callgrind=(valgrind --tool=callgrind)
if [[ ${CACHE:-} == 1 ]]; then
    callgrind+=(--cache-sim=yes)
    # valgrind simulates two levels, the second taken as the last (LL). Here
    # that is the L2: every server's working set fits in the L3 (32 MiB),
    # so a miss that costs is one past the L2; and this VM reports its L3 to
    # valgrind as 256 MiB direct-mapped, which would count cold misses only.
    l2=/sys/devices/system/cpu/cpu0/cache/index2
    if [[ -r $l2/size && $(cat "$l2/level") == 2 ]]; then
        size=$(cat "$l2/size")
        callgrind+=("--LL=$((${size%K} * 1024)),$(cat "$l2/ways_of_associativity"),$(cat "$l2/coherency_line_size")")
    else
        echo "warning: no L2 in $l2: LL is what valgrind finds (see the sizes below)" >&2
    fi
fi

make_work_directory

if [[ ${METRICS:-} == 1 ]]; then
    if [[ $example != echo ]]; then
        echo "error: METRICS=1 counts the echo example: MODE pingpong or pipelined" >&2
        exit 2
    fi
    mkdir "$work/bin"
    cp "$target/release/examples/echo" "$work/bin/echo"
    cargo build --release --quiet -p flexi-socket-suite --example echo
    cp "$target/release/examples/echo" "$work/bin/echo_feature_no_recorder"
    cargo build --release --quiet -p flexi-socket-bench --features metrics --bin echo_metrics
    cp "$target/release/echo_metrics" "$work/bin/echo_metrics"
    SERVERS="$work/bin/echo $work/bin/echo_feature_no_recorder $work/bin/echo_metrics"
fi

# Prints the counts in callgrind output $2 for program $1, per message.
report() {
    local total
    # The totals line has one column per event the `events:` line names;
    # instructions (Ir) are the first.
    total=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$2")
    # Start-up and shutdown are in the total too: a few hundred thousand
    # instructions, under 1% at the default MESSAGES.
    echo "$1: $((total / per)) instructions per message ($total for $per)"
    if [[ ${CACHE:-} == 1 ]]; then
        # Once: the simulated caches (`desc: D1 cache: 32768 B, 64 B, 8-way associative`).
        [[ -n ${cache_sizes_printed:-} ]] || sed -n 's/^desc: \(.. cache\)/  \1/p' "$2"
        cache_sizes_printed=1
        awk -v per="$per" '
            /^events:/ { for (i = 2; i <= NF; i++) event[i] = $i }
            /^totals:/ { for (i = 2; i <= NF; i++) count[event[i]] = $i }
            END {
                printf "  per message: D1 misses %.2f (read %.2f, write %.2f), I1 misses %.2f, LL misses %.3f (data %.3f)\n",
                    (count["D1mr"] + count["D1mw"]) / per, count["D1mr"] / per, count["D1mw"] / per,
                    count["I1mr"] / per, (count["ILmr"] + count["DLmr"] + count["DLmw"]) / per,
                    (count["DLmr"] + count["DLmw"]) / per
            }' "$2"
    fi
    if [[ -n ${KEEP:-} ]]; then
        mkdir -p "$KEEP"
        cp "$2" "$KEEP/"
    fi
}

if [[ $MODE == client ]]; then
    "$target/release/$baseline" 127.0.0.1:0 >"$work/stdout" 2>/dev/null &
    server_pid=$!
    wait_for_address "$baseline"
    for client in "$target/release/flexi_client_load" "$target/release/loadgen"; do
        name=$(basename "$client")
        out=$work/callgrind.out.$name
        "${callgrind[@]}" --callgrind-out-file="$out" "$client" --addr "$addr" \
            "${load[@]}" --count "$MESSAGES" --warmup 0 >"$work/load.json" 2>"$work/stderr"
        report "$name" "$out"
    done
    exit 0
fi

for server in $SERVERS; do
    name=$(basename "$server")
    out=$work/callgrind.out.$name
    "${callgrind[@]}" --callgrind-out-file="$out" "$server" 127.0.0.1:0 \
        >"$work/stdout" 2>"$work/stderr" &
    server_pid=$!
    wait_for_address "$server"
    "$target/release/loadgen" --addr "$addr" "${load[@]}" "${tls_ca[@]}" --count "$MESSAGES" --warmup 0 \
        --scenario "$MODE" --server-name "$name" >"$work/load.json"
    # Ctrl-C: the server shuts down and callgrind writes its counts.
    kill -INT "$server_pid"
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    report "$name" "$out"
done
