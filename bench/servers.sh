# What bench/instructions.sh and bench/time_profile.sh share (sourced, not
# run): which servers and which load a MODE means, building them, a work
# directory removed on exit (when a server still running is stopped too),
# and waiting for a server started in the background to print its address.

# Sets, for MODE: `load` (the load generator's arguments), `example` (the
# flexi-socket example measured), `bench_server` (a bench binary measured
# instead, if set) and `baseline` (its hand-written counterpart); exits
# with a message for a mode it does not know.
choose_mode() {
    bench_server=
    case $MODE in
        pingpong) load=(--mode pingpong --connections 16) example=echo baseline=baseline_minimal ;;
        latency) load=(--mode pingpong --connections 256) example=echo baseline=baseline_minimal ;;
        pipelined) load=(--mode pipelined --connections 16 --depth 64) example=echo baseline=baseline_batching ;;
        pipelined-1k) load=(--mode pipelined --connections 16 --depth 64 --size 1024) example=echo baseline=baseline_batching ;;
        tls) load=(--mode pingpong --connections 16) example=tls_echo baseline=baseline_tls ;;
        tls-pipelined) load=(--mode pipelined --connections 16 --depth 64) example=tls_echo baseline=baseline_tls ;;
        broadcast)
            load=(--mode broadcast --connections "$BROADCAST_CONNECTIONS")
            example=echo bench_server=flexi_broadcast baseline=baseline_broadcast
            ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
            ;;
        udp) load=(--mode udp --connections 16) example=udp_echo baseline=baseline_udp ;;
        client) load=(--mode client --connections 16) example=echo baseline=baseline_minimal ;;
        *)
            echo "error: MODE=$MODE: expected pingpong, latency, pipelined, pipelined-1k, tls, tls-pipelined, broadcast, udp or client" >&2
            exit 2
            ;;
    esac
}

# Sets `addr` from what the server started in the background prints into
# $work/stdout, and in the TLS modes `tls_ca` to the flags for the
# certificate it prints. $1: the server's name, for the error.
wait_for_address() {
    local ca
    addr=
    tls_ca=()
    for _ in $(seq 600); do
        addr=$(sed -n 's/^listening on //p' "$work/stdout")
        ca=$(sed -n 's/.* -CAfile //p' "$work/stdout")
        [[ -n $ca ]] && tls_ca=(--tls-ca "$ca")
        [[ -n $addr && ($MODE != tls* || -n $ca) ]] && return 0
        sleep 0.05
    done
    echo "error: $1 did not print 'listening on' within 30 s" >&2
    exit 1
}

# Builds the servers of MODE (after `choose_mode`) and sets SERVERS, unless
# given, to the flexi-socket one and its hand-written counterpart. Without
# the suite's default `metrics` feature: the servers record no metrics.
# `target`: where cargo builds.
build_servers() {
    cargo build --release --quiet --no-default-features -p flexi-socket-suite --example "$example" \
        -p flexi-socket-bench --bins
    if [[ -n $bench_server ]]; then
        SERVERS=${SERVERS:-$target/release/$bench_server $target/release/$baseline}
    else
        SERVERS=${SERVERS:-$target/release/examples/$example $target/release/$baseline}
    fi
}

# Sets `work` to a new directory, removed on exit, when the server whose
# PID is in `server_pid` (if any) is stopped too.
make_work_directory() {
    work=$(mktemp -d)
    server_pid=
    trap cleanup EXIT
}

cleanup() {
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
