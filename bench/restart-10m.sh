#!/usr/bin/env bash
# bench/restart-10m.sh: restart time after 10 million messages, and ticketqd's resident memory
# per ticket and per message (issue #5 targets: restart <= 10 s, <= 256 B/ticket, <= 32 B/message).
#
# Usage: bench/restart-10m.sh [--messages N] [--tickets N] [--dir DIR] [--restarts R]
#                             [--snapshot-every N] [--snapshot-growth PCT] [--build DIR]
#                             [--keep] [--help]
#
# Method (Release build; opt-in, not part of the test suite: it writes ~6 GB and takes ~4 minutes):
#   1. a fresh ticketqd --fsync always on DIR/data, loopback, metrics on;
#   2. phase "tickets": tq-loadgen's setup creates --tickets customers, each with one ticket
#      holding one message (batched ingest); RSS growth / tickets = one ticket with its customer
#      and first message;
#   3. phase "messages": batched ingests from those same customers only (--first-contact 0), so
#      every message lands on an existing open ticket, until the server holds --messages
#      messages; RSS growth / messages added = one message;
#   4. wait until no snapshot is running (the server snapshots by itself every
#      --snapshot-every records once the log grew by --snapshot-growth percent of the last
#      snapshot), print the snapshot figures from /metrics (with the log bytes a restart
#      replays);
#   5. --restarts times: kill -9, start again on the same directory, time until the port file
#      appears (the server accepts requests), and print the server's own "ready in" line
#      (snapshot load and replay split). The median is printed last.
# VmRSS comes from /proc/PID/status. Every figure is printed with `uptime` (the machine is
# shared). DIR is removed at the end unless --keep.
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

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
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

# counts: "messages tickets" from a tq-loadgen output line "server: M messages, C customers, T tickets"
counts() { grep '^server:' | tail -1 | awk '{print $2, $6}'; }

log "ticketqd $TICKETQD, data $DIR/data, target $MESSAGES messages on $TICKETS tickets; load $(load)"
start
TOKEN="$DIR/data/admin.token"
RSS0=$(rss_kib "$PID")

log "phase tickets: $TICKETS customers, each one ticket with one message"
T0=$(now_ms)
OUT="$("$LOADGEN" --addr "$ADDR" --token-file "$TOKEN" --customers "$TICKETS" --seconds 0)"
echo "$OUT"
read -r MSG1 TK1 <<<"$(echo "$OUT" | counts)"
TENANT="$(echo "$OUT" | sed -n 's/^setup: tenant \([0-9]*\),.*/\1/p')"
RSS1=$(rss_kib "$PID")
log "phase tickets: $TK1 tickets, $MSG1 messages in $(( ($(now_ms) - T0) / 1000 )) s; RSS $RSS0 -> $RSS1 KiB; load $(load)"

log "phase messages: batched ingest to the existing tickets until $MESSAGES messages"
T0=$(now_ms)
MSG2=$MSG1
TK2=$TK1
while [ "$MSG2" -lt "$MESSAGES" ]; do
  LEFT=$(( MESSAGES - MSG2 ))
  SECS=10
  [ "$LEFT" -lt 1000000 ] && SECS=2
  OUT="$("$LOADGEN" --addr "$ADDR" --token-file "$TOKEN" --no-setup --tenant "$TENANT" \
        --queues 1,2,3 --customers "$TICKETS" --first-contact 0 --batch 100 --conns 2 --depth 8 \
        --seconds "$SECS")" || { echo "$OUT"; echo "tq-loadgen failed" >&2; exit 1; }
  echo "$OUT" | grep -v '^server:' || true
  read -r MSG2 TK2 <<<"$(echo "$OUT" | counts)"
  log "  $MSG2 messages, $TK2 tickets"
done
RSS2=$(rss_kib "$PID")
log "phase messages: $(( MSG2 - MSG1 )) messages in $(( ($(now_ms) - T0) / 1000 )) s; RSS $RSS1 -> $RSS2 KiB; load $(load)"
[ "$TK2" = "$TK1" ] || log "warning: the messages phase created $(( TK2 - TK1 )) tickets"

PER_MSG=$(awk -v a="$RSS1" -v b="$RSS2" -v n="$(( MSG2 - MSG1 ))" 'BEGIN {printf "%.1f", (b - a) * 1024 / n}')
PER_TK_ALL=$(awk -v a="$RSS0" -v b="$RSS1" -v n="$TK1" 'BEGIN {printf "%.1f", (b - a) * 1024 / n}')
PER_TK=$(awk -v t="$PER_TK_ALL" -v m="$PER_MSG" 'BEGIN {printf "%.1f", t - m}')

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
echo "| messages / tickets loaded | $MSG2 / $TK2 | 10 M messages |"
echo "| RSS: empty / after tickets / after messages | $RSS0 / $RSS1 / $RSS2 KiB | |"
echo "| RSS per ticket (with its customer and first message) | $PER_TK_ALL B | |"
echo "| RSS per ticket + customer, message excluded | $PER_TK B | <= 256 B per ticket |"
echo "| RSS per message (added to existing tickets) | $PER_MSG B | <= 32 B |"
echo "| restart, kill -9 to accepting, median of $RESTARTS | $MEDIAN ms (${TIMES[*]}) | <= 10 s |"
echo "| load average at the end | $(load) | |"
