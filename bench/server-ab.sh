#!/usr/bin/env bash
# bench/server-ab.sh: interleaved A/B runs of ticketqd variants under tq-loadgen, with the
# figures that survive a shared machine (issue #5; docs/performance-server.md, 2026-12-03).
#
# Usage: bench/server-ab.sh [--build DIR] [--rounds N] [--seconds S] [--workloads LIST] [--rate R]
#                           [--variant NAME=ARGS]... [--help]
#
#   --build DIR       Release build tree with server/ticketqd and tests/server/tq-loadgen
#                     (default build/rel)
#   --rounds N        rounds; every round runs every workload with every variant (default 3)
#   --seconds S       seconds per run (default 5)
#   --workloads LIST  comma-separated from: pipe (4 x 64), mixed (64 x 1, 20% claim-reply),
#                     batch (4 x 8 x 100), open (open loop 4 x 256 at --rate), (default all)
#   --rate R          open-loop rate in requests/s (default 40000)
#   --variant N=ARGS  a ticketqd variant, e.g. old="--ring plain" (repeatable; default
#                     old="--ring plain" and new=""); words after a lone "--" go to
#                     tq-loadgen instead, e.g. procs4="-- --open-procs 4" or
#                     t100="-- --tick-us 100" (the open loop wakes at most every 100 µs);
#                     a word cpus=LIST pins that side with taskset -c LIST, e.g.
#                     split="cpus=0 -- cpus=1" (ticketqd on CPU 0, tq-loadgen on CPU 1);
#                     a word nice=N runs that side under nice -n N, e.g. tn5="-- nice=-5"
#   --keep DIR        keep every run's /metrics and tq-loadgen output in DIR
#
# Each run starts a fresh ticketqd (--fsync always, a temp directory, loopback, metrics on) under
# /usr/bin/time, runs tq-loadgen (100,000 customers set up first), reads /metrics, stops the
# server and prints one line: throughput, the client's p50/p99, ticketqd CPU per message (user +
# sys of every ticketqd thread, io-wq workers included), context switches per message, and the
# server-side share of ingests over 2.5 ms and 10 ms (ticketq_request_seconds: a second latency
# method that the load generator's own scheduling cannot distort), the open loop's send
# lateness p99 (how late tq-loadgen sent against its own schedule: the client's share of a tail),
# the loop thread's run-queue wait (schedstat, % of the run: waiting for a CPU, not for I/O) and
# the longest loop turn (ticketq_turn_max_seconds), tq-loadgen's own CPU per request and (open
# loop) the p99 of the same answers counted from their send, the tool's delay left out. The
# load average is printed next to every line, and the medians per workload and variant at the end.
# With --keep, bench/metrics-phases.py DIR/*.metrics splits the server side (to_ack, release,
# the commit per batch and per record).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build/rel"
ROUNDS=3
SECONDS_RUN=5
WORKLOADS="pipe,mixed,batch,open"
RATE=40000
VARIANTS=()
KEEP=""

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --seconds) SECONDS_RUN="$2"; shift 2 ;;
    --workloads) WORKLOADS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --variant) VARIANTS+=("$2"); shift 2 ;;
    --keep) KEEP="$2"; mkdir -p "$KEEP"; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    *) echo "server-ab.sh: unknown option '$1' (--help)" >&2; exit 2 ;;
  esac
done
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("old=--ring plain" "new=")
SERVER="$BUILD/server/ticketqd"
LOADGEN="$BUILD/tests/server/tq-loadgen"
for b in "$SERVER" "$LOADGEN" /usr/bin/time; do
  [ -x "$b" ] || { echo "server-ab.sh: $b missing (build ticketqd and tq-loadgen)" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "server-ab.sh: curl missing" >&2; exit 2; }

workload_args() {
  case "$1" in
    pipe) echo "--conns 4 --depth 64" ;;
    mixed) echo "--conns 64 --depth 1 --mixed 0.2" ;;
    batch) echo "--conns 4 --depth 8 --batch 100" ;;
    open) echo "--conns 4 --depth 256 --rate $RATE" ;;
    *) echo "server-ab.sh: unknown workload '$1'" >&2; exit 2 ;;
  esac
}

WORK="$(mktemp -d /tmp/tq-server-ab.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
RESULTS="$WORK/results"
RUN_SEQ=0
: >"$RESULTS"

# run_one WORKLOAD VARIANT_NAME VARIANT_ARGS: one fresh server, one load, one line.
run_one() {
  local w="$1" name="$2" all="$3" d="$WORK/data" t vargs="" largs="" word side=server
  local spin="" lpin="" # taskset prefixes (a word cpus=LIST)
  for word in $all; do # a lone "--" switches to tq-loadgen's arguments
    if [ "$word" = "--" ]; then side=loadgen
    elif [ "${word%%=*}" = cpus ] && [ "$side" = server ]; then spin="$spin taskset -c ${word#cpus=}"
    elif [ "${word%%=*}" = cpus ]; then lpin="$lpin taskset -c ${word#cpus=}"
    elif [ "${word%%=*}" = nice ] && [ "$side" = server ]; then spin="$spin nice -n ${word#nice=}"
    elif [ "${word%%=*}" = nice ]; then lpin="$lpin nice -n ${word#nice=}"
    elif [ "$side" = server ]; then vargs="$vargs $word"
    else largs="$largs $word"; fi
  done
  rm -rf "$d" && mkdir -p "$d"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%U %S %w %c" -o "$WORK/time" $spin "$SERVER" --data "$d" --listen 127.0.0.1:0 \
    --port-file "$d/port" --fsync always --metrics 127.0.0.1:0 $vargs 2>"$WORK/err" >/dev/null &
  t=$!
  for _ in $(seq 300); do [ -f "$d/port" ] && break; sleep 0.1; done
  [ -f "$d/port" ] || { echo "server-ab.sh: ticketqd did not start:" >&2; cat "$WORK/err" >&2; exit 1; }
  SERVER_PID="$(pgrep -P "$t" ticketqd)"
  local metrics load out
  metrics="$(grep -o 'http://[^ ]*' "$WORK/err")"
  load="$(cut -d' ' -f1 /proc/loadavg)"
  local sched0 sched1
  sched0="$(cat "/proc/$SERVER_PID/task/$SERVER_PID/schedstat" 2>/dev/null || echo "0 0 0")"
  local flt0 flt1 # the loop thread's minor faults (a snapshot's copy-on-write lands here)
  flt0="$(awk '{print $10}' "/proc/$SERVER_PID/task/$SERVER_PID/stat" 2>/dev/null || echo 0)"
  # shellcheck disable=SC2046,SC2086
  out="$(/usr/bin/time -f "client-cpu %U %S" $lpin "$LOADGEN" --addr "$(cat "$d/port")" \
    --token-file "$d/admin.token" --seconds "$SECONDS_RUN" $(workload_args "$w") $largs 2>&1)" ||
    { echo "$out" >&2; exit 1; }
  sched1="$(cat "/proc/$SERVER_PID/task/$SERVER_PID/schedstat" 2>/dev/null || echo "0 0 0")"
  flt1="$(awk '{print $10}' "/proc/$SERVER_PID/task/$SERVER_PID/stat" 2>/dev/null || echo 0)"
  curl -s "$metrics" >"$WORK/metrics"
  if [ -n "$KEEP" ]; then
    RUN_SEQ=$((RUN_SEQ + 1))
    cp "$WORK/metrics" "$KEEP/$RUN_SEQ-$w-$name.metrics"
    echo "$out" >"$KEEP/$RUN_SEQ-$w-$name.loadgen"
  fi
  kill "$SERVER_PID"; wait "$t" || true; SERVER_PID=""
  local rps mps p50 p99 msgs
  rps="$(echo "$out" | sed -n 's/.*: \([0-9]*\) requests\/s.*/\1/p' | tail -1)"
  mps="$(echo "$out" | sed -n 's/.* \([0-9]*\) messages\/s.*/\1/p' | tail -1)"
  p50="$(echo "$out" | grep 'requests/s' | sed -n 's/.*p50 \([0-9]*\) us.*/\1/p' | tail -1)"
  p99="$(echo "$out" | grep 'requests/s' | sed -n 's/.*p99 \([0-9]*\) us.*/\1/p' | tail -1)"
  msgs="$(echo "$out" | sed -n 's/.*server: \([0-9]*\) messages.*/\1/p' | tail -1)"
  local late rqwait ccpu
  ccpu="$(echo "$out" | awk -v r="$rps" -v s="$SECONDS_RUN" '/^client-cpu/ { printf "%.2f", ($2 + $3) * 1e6 / (r * s) }')"
  late="$(echo "$out" | sed -n 's/^send lateness.* p99 \([0-9]*\) us.*/\1/p' | tail -1)"
  [ -n "$late" ] || late=-1000
  local sendp99 # the same answers' p99 counted from their send: the figure minus the tool's delay
  sendp99="$(echo "$out" | sed -n 's/^latency p99.9 .*from the send.* p99 \([0-9]*\) us.*/\1/p' | tail -1)"
  [ -n "$sendp99" ] || sendp99=-1000
  rqwait="$(echo "$sched0 $sched1" | awk -v s="$SECONDS_RUN" '{printf "%.1f", ($5 - $2) / 1e7 / s}')"
  local tu ts tw tc
  read -r tu ts tw tc <"$WORK/time"
  awk -v w="$w" -v v="$name" -v load="$load" -v rps="$rps" -v mps="$mps" -v p50="$p50" \
    -v p99="$p99" -v msgs="$msgs" -v u="$tu" -v s="$ts" -v cw="$tw" -v cc="$tc" \
    -v late="$late" -v sendp99="$sendp99" -v rqwait="$rqwait" -v ccpu="$ccpu" -v tmax="$(sed -n 's/^ticketq_turn_max_seconds //p' "$WORK/metrics")" \
    -v flt=$((flt1 - flt0)) -v snaps="$(sed -n 's/^ticketq_snapshots_total //p' "$WORK/metrics")" \
    -v pcb="$(sed -n 's/^ticketq_snapshot_last_precopy_bytes //p' "$WORK/metrics")" \
    -v pcs="$(sed -n 's/^ticketq_snapshot_last_precopy_seconds //p' "$WORK/metrics")" '
    /^ticketq_request_seconds_bucket/ && index($0, "op=\"ingest\"") {
      split($0, a, "le=\""); split(a[2], b, "\""); h[b[1]] = $NF; if (b[1] == "+Inf") tot = $NF }
    END {
      o25 = tot > 0 ? 100 * (tot - h["0.0025"]) / tot : -1
      o10 = tot > 0 ? 100 * (tot - h["0.01"]) / tot : -1
      printf "%s %s load %s req/s %s msg/s %s p50_ms %.2f p99_ms %.1f cpu_us_msg %.2f cs_msg %.3f srv_over_2.5ms_pct %.2f srv_over_10ms_pct %.2f late_p99_ms %.1f loop_rqwait_pct %s turn_max_ms %.1f client_cpu_us_req %s send_p99_ms %.1f loop_minflt %d snapshots %d precopy_mb %.1f precopy_ms %.1f\n",
        w, v, load, rps, mps, p50 / 1000, p99 / 1000, (u + s) * 1e6 / msgs, (cw + cc) / msgs, o25, o10, late / 1000, rqwait, tmax * 1000, ccpu, sendp99 / 1000,
        flt, snaps, pcb / 1e6, pcs * 1000
    }' "$WORK/metrics" | tee -a "$RESULTS"
  grep 'snapshot' "$WORK/err" | sed 's/^/    /' || true # the server's line per snapshot
}

echo "server-ab.sh: $(nproc) CPUs, $(uptime)"
for r in $(seq "$ROUNDS"); do
  for w in ${WORKLOADS//,/ }; do
    for v in "${VARIANTS[@]}"; do
      run_one "$w" "${v%%=*}" "${v#*=}"
    done
  done
done
echo "medians of $ROUNDS (workload variant: msg/s, p99 ms, CPU µs/msg, server-side % over 10 ms," \
  "% over 2.5 ms, client send lateness p99 ms, loop thread's run-queue wait %, longest turn ms," \
  "client CPU µs/request: tq-loadgen's user+sys, setup included, open loop's p99 from the send" \
  "instead of the due time ms, the loop thread's minor faults):"
awk '{k = $1 " " $2; m[k] = m[k] " " $8; p[k] = p[k] " " $12; c[k] = c[k] " " $14; o[k] = o[k] " " $20
  q[k] = q[k] " " $18; l[k] = l[k] " " $22; r[k] = r[k] " " $24; t[k] = t[k] " " $26; x[k] = x[k] " " $28
  y[k] = y[k] " " $30; f[k] = f[k] " " $32}
  function med(s,   a, n, i, j, t) { n = split(s, a, " ");
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)] }
  END { for (k in m) printf "  %-14s %10s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", k, med(m[k]), med(p[k]), med(c[k]),
    med(o[k]), med(q[k]), med(l[k]), med(r[k]), med(t[k]), med(x[k]), med(y[k]), med(f[k]) }' \
  "$RESULTS" | sort
