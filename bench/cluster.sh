#!/usr/bin/env bash
# The cluster over NATS (BENCHMARKS.md, "Cluster over NATS"): builds the
# release `cluster` tool, starts a nats-server on a free loopback port, runs
# the tool against it (two nodes in one process, the broadcast's devices in a
# second one it starts itself), and stops nats-server by its PID.
#
#   bench/cluster.sh
#   DEVICES=2000 BROADCASTS=3 bench/cluster.sh
#
# Environment: SENDS (2000), DEVICES (10000), BROADCASTS (5).
set -euo pipefail
cd "$(dirname "$0")/.."

SENDS=${SENDS:-2000}
DEVICES=${DEVICES:-10000}
BROADCASTS=${BROADCASTS:-5}

command -v nats-server >/dev/null || { echo "nats-server is not installed" >&2; exit 1; }
echo "building (release)..." >&2
cargo build --release --quiet -p flexi-socket-bench --features cluster --bin cluster
tool=${CARGO_TARGET_DIR:-target}/release/cluster

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nats-server -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
nats_pid=$!
trap 'kill "$nats_pid" 2>/dev/null || true; wait "$nats_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

echo "load average: $(cat /proc/loadavg)"
"$tool" --nats "nats://127.0.0.1:$port" --sends "$SENDS" --devices "$DEVICES" --broadcasts "$BROADCASTS"
echo "load average: $(cat /proc/loadavg)"
