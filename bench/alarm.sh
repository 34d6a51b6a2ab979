#!/usr/bin/env bash
# Durable events per second through the alarm receiver (BENCHMARKS.md, "Alarm
# receiver: durable events"): the release receiver with its SQLite file on
# disk, alarm_commits driving it with PANELS panels at once, each sending
# EVENTS events and waiting for every ACK; once with grouped commits (the
# default --max-batch 256) and once with a commit per event (--max-batch 1),
# interleaved, REPS times. First, what one fdatasync costs on that disk.
#
#   bench/alarm.sh
#   PANELS="1 64" REPS=1 bench/alarm.sh
#
# Environment:
#   PANELS ("1 16 64 256"), EVENTS (100 per panel), BATCHES ("256 1"), REPS (3)
#   DB_DIR (bench/results): where the database goes; it must be on the disk
#     being measured (a tmpfs makes fsync free)
set -euo pipefail
cd "$(dirname "$0")/.."

PANELS=${PANELS:-1 16 64 256}
EVENTS=${EVENTS:-100}
BATCHES=${BATCHES:-256 1}
REPS=${REPS:-3}
DB_DIR=${DB_DIR:-bench/results}

echo "building (release)..." >&2
cargo build --release --quiet --no-default-features -p flexi-socket-suite \
    --example alarm_receiver -p flexi-socket-bench --bin alarm_commits
target=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$DB_DIR"
work=$(mktemp -d "$DB_DIR/alarm.XXXXXX")
receiver_pid=
stop_receiver() {
    if [[ -n $receiver_pid ]]; then
        kill "$receiver_pid" 2>/dev/null || true
        wait "$receiver_pid" 2>/dev/null || true
        receiver_pid=
    fi
}
trap 'stop_receiver; rm -rf "$work"' EXIT

"$target/alarm_commits" --fsync-probe "$work"
for rep in $(seq "$REPS"); do
    for panels in $PANELS; do
        for batch in $BATCHES; do
            rm -f "$work"/events.db*
            "$target/examples/alarm_receiver" 127.0.0.1:0 --accounts 1234 \
                --db "$work/events.db" --max-batch "$batch" \
                >"$work/printed" 2>"$work/log" &
            receiver_pid=$!
            for _ in $(seq 100); do
                grep -q '^listening on ' "$work/printed" && break
                sleep 0.1
            done
            addr=$(sed -n 's/^listening on //p' "$work/printed")
            if [[ -z $addr ]]; then
                echo "the receiver did not start:" >&2
                cat "$work/log" >&2
                exit 1
            fi
            echo -n "rep=$rep max_batch=$batch "
            "$target/alarm_commits" --addr "$addr" --panels "$panels" --events "$EVENTS"
            stop_receiver
        done
    done
done
