#!/usr/bin/env bash
# bench/compact_online.sh: the figures of docs/performance-ops.md "Online compaction".
#
# For each run: a fresh ticketqd (Release build, 16 MiB segments) on a temp directory, filled by
# tq-loadgen (closed loop, FILL_SECONDS); then two open-loop windows of WINDOW seconds at RATE
# durable ingests/s (4 connections): one without compaction (baseline), one with an online
# compaction started 0.5 s in (`ticketq compact`, I/O budget BUDGET, "0" = unlimited). Prints
# p50/p99 of both windows, the compaction's time and space before/after, and the load average.
# Not a test: no assertions on speed. Usage:
#   bench/compact_online.sh [BUILD_DIR (build/rel)] [RUNS (3)] [BUDGET (0)]
#   env: RATE (2000), WINDOW (8), FILL_SECONDS (10)
set -euo pipefail
B=${1:-build/rel}
RUNS=${2:-3}
BUDGET=${3:-0}
RATE=${RATE:-2000}
WINDOW=${WINDOW:-8}
FILL_SECONDS=${FILL_SECONDS:-10}
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n 2,12p "$0"
    exit 0
fi
for bin in server/ticketqd client/cli/ticketq tests/server/tq-loadgen; do
    [[ -x "$B/$bin" ]] || { echo "missing $B/$bin (build target ticketqd ticketq_cli tq-loadgen)"; exit 2; }
done
budget_arg=()
[[ "$BUDGET" != "0" ]] && budget_arg=(--io-budget "$BUDGET")
echo "machine: $(nproc) cpus, $(uname -r); rate $RATE/s, window ${WINDOW}s, budget $BUDGET"
for run in $(seq 1 "$RUNS"); do
    D=$(mktemp -d /tmp/tq-compact-bench-XXXXXX)
    "$B/server/ticketqd" --data "$D" --listen 127.0.0.1:0 --port-file "$D/port" \
        --segment-bytes 16777216 2> "$D/server.log" &
    pid=$!
    for _ in $(seq 1 100); do [[ -s "$D/port" ]] && break; sleep 0.1; done
    A=$(head -1 "$D/port")
    LG=("$B/tests/server/tq-loadgen" --addr "$A" --token-file "$D/admin.token")
    "${LG[@]}" --conns 4 --depth 32 --seconds "$FILL_SECONDS" --customers 20000 > "$D/fill.txt"
    filled=$(du -sm "$D/log" | cut -f1)
    noset=(--no-setup --tenant 1 --queues 1,2,3 --customers 20000 --conns 4 --depth 64)
    base=$("${LG[@]}" "${noset[@]}" --rate "$RATE" --seconds "$WINDOW" | head -1)
    "${LG[@]}" "${noset[@]}" --rate "$RATE" --seconds "$WINDOW" > "$D/during.txt" &
    lg=$!
    sleep 0.5
    "$B/client/cli/ticketq" --addr "$A" --token-file "$D/admin.token" --tenant 1 --json \
        compact "${budget_arg[@]}" > "$D/compact.json"
    wait $lg
    during=$(head -1 "$D/during.txt")
    echo "run $run: load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "  log after fill: $filled MiB allocated; $(sed -n 2p "$D/fill.txt")"
    echo "  baseline:   $base"
    echo "  compacting: $during"
    echo "  compaction: $(cat "$D/compact.json")"
    kill "$pid"
    wait "$pid" || true
    rm -rf "$D"
done
