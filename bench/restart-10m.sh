#!/usr/bin/env bash
# bench/restart-10m.sh: restart time after 10 million messages, and ticketqd's resident memory
# per ticket and per message (issue #5 targets: restart <= 10 s, <= 256 B/ticket, <= 32 B/message).
#
# Usage: bench/restart-10m.sh [--messages N] [--tickets N] [--dir DIR] [--restarts R]
#                             [--snapshot-every N] [--snapshot-growth PCT] [--no-sla]
#                             [--server-args "ARGS"] [--build DIR] [--keep] [--help]
#
# Method (Release build; opt-in, not part of the test suite: it writes ~6 GB and takes ~5 minutes):
#   1. a fresh ticketqd --fsync always on DIR/data, loopback, metrics on;
#   2. phase "customers": tq-loadgen --pre-create --sla creates --tickets customers with
#      CustomerCreate (one identity each, the one their messages come from; 100 per Batch), no
#      tickets, and a first-reply SLA policy on every priority (the peer workloads give each new
#      ticket an SLA deadline; --no-sla leaves it out); RSS growth / customers = one customer;
#   3. phase "tickets": tq-loadgen --first-messages sends one ingest from each of those
#      customers (found by its identity; 100 per Batch): one ticket each, no customer created
#      (checked); RSS growth / tickets = one ticket with its first message, and per ticket is
#      that minus one message at the cost measured in phase 4;
#   4. phase "messages": batched ingests from those same customers only (--first-contact 0), so
#      every message lands on an existing open ticket, until the server holds --messages
#      messages; RSS growth / messages added = one message;
#   5. wait until no snapshot is running (the server snapshots by itself every
#      --snapshot-every records once the log grew by --snapshot-growth percent of the last
#      snapshot), print the snapshot figures from /metrics (with the log bytes a restart
#      replays);
#   6. --restarts times: kill -9, start again on the same directory, time until the port file
#      appears (the server accepts requests), and print the server's own "ready in" line
#      (snapshot load and replay split). The median is printed last.
# VmRSS comes from /proc/PID/status. Every figure is printed with `uptime` (the machine is
# shared). DIR is removed at the end unless --keep. Until 2026-12-04 the script had no customers
# phase (each customer came with its first message) and printed only "per ticket with its
# customer"; that figure is still printed, labelled, for comparison.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MESSAGES=10000000
TICKETS=2000000
DIR=/tmp/tq-restart-10m
RESTARTS=3
SNAPSHOT_EVERY=""
SNAPSHOT_GROWTH=""
BUILD="$ROOT/build/rel"
KEEP=0
SLA=--sla
SERVER_ARGS="" # more ticketqd options, split on spaces (e.g. "--state-prefault off")

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --messages) MESSAGES="$2"; shift 2 ;;
    --tickets) TICKETS="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --restarts) RESTARTS="$2"; shift 2 ;;
    --snapshot-every) SNAPSHOT_EVERY="$2"; shift 2 ;;
    --snapshot-growth) SNAPSHOT_GROWTH="$2"; shift 2 ;;
    --build) BUILD="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-sla) SLA=""; shift ;;
    --server-args) SERVER_ARGS="$2"; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    *) echo "restart-10m.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in MESSAGES TICKETS RESTARTS; do
  [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || { echo "restart-10m.sh: bad --${v,,}" >&2; exit 2; }
done
[ "$MESSAGES" -gt "$TICKETS" ] || { echo "restart-10m.sh: --messages must exceed --tickets" >&2; exit 2; }

TICKETQD="$BUILD/server/ticketqd"
LOADGEN="$BUILD/tests/server/tq-loadgen"
if [ ! -x "$TICKETQD" ] || [ ! -x "$LOADGEN" ]; then
  echo "restart-10m.sh: building ticketqd and tq-loadgen (Release) in $BUILD" >&2
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2 --target ticketqd tq-loadgen >/dev/null
fi

log() { echo "[$(date -u +%H:%M:%S)] $*"; }
load() { uptime | sed 's/.*load average: //'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

rm -rf "$DIR"
mkdir -p "$DIR"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -9 "$PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT

# start: starts ticketqd on DIR/data; sets PID, ADDR, METRICS and START_MS (exec to port file).
start() {
  rm -f "$DIR/port"
  local t0; t0=$(now_ms)
  local extra=()
  [ -n "$SNAPSHOT_EVERY" ] && extra=(--snapshot-every "$SNAPSHOT_EVERY")
  [ -n "$SNAPSHOT_GROWTH" ] && extra+=(--snapshot-growth "$SNAPSHOT_GROWTH")
  # shellcheck disable=SC2206
  [ -n "$SERVER_ARGS" ] && extra+=($SERVER_ARGS)
  "$TICKETQD" --data "$DIR/data" --listen 127.0.0.1:0 --port-file "$DIR/port" \
      --metrics 127.0.0.1:0 --fsync always "${extra[@]}" >>"$DIR/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 6000); do
    if [ -s "$DIR/port" ]; then
      START_MS=$(( $(now_ms) - t0 ))
      ADDR="$(cat "$DIR/port")"
      METRICS="$(grep -o 'metrics on http://[^ ]*' "$DIR/server.log" | tail -1 | sed 's/metrics on //')"
      return 0
    fi
    kill -0 "$PID" 2>/dev/null || { echo "ticketqd died (see $DIR/server.log)" >&2; exit 1; }
    sleep 0.01
  done
  echo "ticketqd did not start within 60 s" >&2; exit 1
}

metric() { curl -s "$METRICS" | awk -v m="$1" '$1 == m {print $2}'; }

# counts: "messages customers tickets" from a tq-loadgen line "server: M messages, C customers, T tickets"
counts() { grep '^server:' | tail -1 | awk '{print $2, $4, $6}'; }

log "ticketqd $TICKETQD, data $DIR/data, target $MESSAGES messages on $TICKETS tickets; load $(load)"
start
TOKEN="$DIR/data/admin.token"
RSS0=$(rss_kib "$PID")

log "phase customers: $TICKETS customers (CustomerCreate, one identity each, no ticket)${SLA:+, SLA policy on}"
T0=$(now_ms)
OUT="$("$LOADGEN" --addr "$ADDR" --token-file "$TOKEN" --customers "$TICKETS" --pre-create $SLA --seconds 0)"
echo "$OUT"
read -r MSG1 CU1 TK1 <<<"$(echo "$OUT" | counts)"
TENANT="$(echo "$OUT" | sed -n 's/^setup: tenant \([0-9]*\),.*/\1/p')"
RSS1=$(rss_kib "$PID")
log "phase customers: $CU1 customers, $TK1 tickets, $MSG1 messages in $(( ($(now_ms) - T0) / 1000 )) s; RSS $RSS0 -> $RSS1 KiB; load $(load)"
[ "$CU1" = "$TICKETS" ] && [ "$TK1" = 0 ] && [ "$MSG1" = 0 ] ||
  { echo "restart-10m.sh: phase customers left $CU1 customers, $TK1 tickets, $MSG1 messages" >&2; exit 1; }

log "phase tickets: one message from each existing customer (one ticket each)"
T0=$(now_ms)
OUT="$("$LOADGEN" --addr "$ADDR" --token-file "$TOKEN" --no-setup --tenant "$TENANT" \
      --queues 1,2,3 --customers "$TICKETS" --first-messages --seconds 0)"
echo "$OUT"
read -r MSG2 CU2 TK2 <<<"$(echo "$OUT" | counts)"
RSS2=$(rss_kib "$PID")
log "phase tickets: $TK2 tickets, $MSG2 messages, $CU2 customers in $(( ($(now_ms) - T0) / 1000 )) s; RSS $RSS1 -> $RSS2 KiB; load $(load)"
[ "$CU2" = "$TICKETS" ] && [ "$TK2" = "$TICKETS" ] && [ "$MSG2" = "$TICKETS" ] ||
  { echo "restart-10m.sh: phase tickets: $CU2 customers, $TK2 tickets, $MSG2 messages; want $TICKETS each" >&2; exit 1; }

log "phase messages: batched ingest to the existing tickets until $MESSAGES messages"
T0=$(now_ms)
MSG3=$MSG2
TK3=$TK2
while [ "$MSG3" -lt "$MESSAGES" ]; do
  LEFT=$(( MESSAGES - MSG3 ))
  SECS=$(( LEFT / 400000 )) # slices of <= 10 s at ~400k messages/s, so as not to overshoot much
  [ "$SECS" -gt 10 ] && SECS=10
  [ "$SECS" -lt 1 ] && SECS=1
  OUT="$("$LOADGEN" --addr "$ADDR" --token-file "$TOKEN" --no-setup --tenant "$TENANT" \
        --queues 1,2,3 --customers "$TICKETS" --first-contact 0 --batch 100 --conns 2 --depth 8 \
        --seconds "$SECS")" || { echo "$OUT"; echo "tq-loadgen failed" >&2; exit 1; }
  echo "$OUT" | grep -v '^server:' || true
  read -r MSG3 CU3 TK3 <<<"$(echo "$OUT" | counts)"
  log "  $MSG3 messages, $TK3 tickets"
done
RSS3=$(rss_kib "$PID")
log "phase messages: $(( MSG3 - MSG2 )) messages in $(( ($(now_ms) - T0) / 1000 )) s; RSS $RSS2 -> $RSS3 KiB; load $(load)"
[ "$TK3" = "$TK2" ] && [ "$CU3" = "$CU2" ] ||
  { echo "restart-10m.sh: the messages phase created $(( TK3 - TK2 )) tickets, $(( CU3 - CU2 )) customers" >&2; exit 1; }

# per(a, b, n): RSS growth from a to b KiB, in bytes per item
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.1f", (b - a) * 1024 / n}'; }
PER_MSG=$(per "$RSS2" "$RSS3" "$(( MSG3 - MSG2 ))")
PER_CU=$(per "$RSS0" "$RSS1" "$CU1")
PER_TK_MSG=$(per "$RSS1" "$RSS2" "$TK2")
PER_TK=$(awk -v t="$PER_TK_MSG" -v m="$PER_MSG" 'BEGIN {printf "%.1f", t - m}')
PER_TK_CU=$(awk -v c="$PER_CU" -v t="$PER_TK" 'BEGIN {printf "%.1f", c + t}')

log "waiting for background snapshots to settle"
IDLE=0
for _ in $(seq 1 600); do
  if [ "$(metric ticketq_snapshot_in_progress)" = "0" ]; then IDLE=$((IDLE + 1)); else IDLE=0; fi
  [ "$IDLE" -ge 3 ] && break
  sleep 1
done
SNAP_LSN=$(metric ticketq_snapshot_last_lsn)
STAGED=$(metric ticketq_log_staged_lsn)
log "snapshots: $(metric ticketq_snapshots_total) written, newest at LSN $SNAP_LSN of $STAGED;" \
    "last took $(metric ticketq_snapshot_last_seconds) s, fork pause $(metric ticketq_snapshot_last_fork_seconds) s," \
    "durable after $(metric ticketq_snapshot_last_durable_wait_seconds) s, $(metric ticketq_snapshot_last_bytes) bytes;" \
    "log after it $(metric ticketq_snapshot_log_bytes_since) bytes; RSS $(rss_kib "$PID") KiB"
grep 'snapshot at LSN [0-9]*:' "$DIR/server.log" | tail -5 || true
du -sh "$DIR/data/log" "$DIR/data/snapshots" 2>/dev/null || true

TIMES=()
for i in $(seq 1 "$RESTARTS"); do
  kill -9 "$PID"
  wait "$PID" 2>/dev/null || true
  start
  TIMES+=("$START_MS")
  log "restart $i: accepting after $START_MS ms; $(grep 'ready in' "$DIR/server.log" | tail -1 | sed 's/^ticketqd: //'); load $(load)"
done
MEDIAN=$(printf '%s\n' "${TIMES[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
PID=""

echo
echo "| figure | value | target |"
echo "|---|---|---|"
echo "| messages / tickets / customers loaded | $MSG3 / $TK3 / $CU3 ($([ -n "$SLA" ] && echo "SLA policy on" || echo "no SLA policy")) | 10 M messages |"
echo "| RSS: empty / after customers / after tickets / after messages | $RSS0 / $RSS1 / $RSS2 / $RSS3 KiB | |"
echo "| RSS per customer (one identity, no ticket) | $PER_CU B | |"
echo "| RSS per ticket with its first message (phase tickets) | $PER_TK_MSG B | |"
echo "| RSS per ticket (phase tickets minus one message at $PER_MSG B) | $PER_TK B | <= 256 B |"
echo "| RSS per message (added to existing tickets) | $PER_MSG B | <= 32 B |"
echo "| (old figure, for comparison) per ticket with its customer, message excluded | $PER_TK_CU B | |"
echo "| restart, kill -9 to accepting, median of $RESTARTS | $MEDIAN ms (${TIMES[*]}) | <= 10 s |"
echo "| load average at the end | $(load) | |"
