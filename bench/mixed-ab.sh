#!/usr/bin/env bash
# bench/mixed-ab.sh: interleaved A/B runs of the issue-5 target cell -- mixed, durable, 64
# clients, one unit in flight each -- with the CPU each side spends per unit (ticketqd and
# ticketq-bench share the machine's cores; docs/performance-peers.md, 2026-12-03 afternoon).
#
# Usage: bench/mixed-ab.sh [--build DIR] [--rounds N] [--duration S] [--backlog N]
#                          [--variant 'NAME=TICKETQD ARGS|BENCH ARGS']... [--help]
#
#   --build DIR     Release build tree with server/ticketqd and bench/ticketq-bench
#                   (default build/rel)
#   --rounds N      rounds; every round runs every variant once, in the order given (default 3)
#   --duration S    measured seconds per run, >= 6 (default 10)
#   --backlog N     initial tickets (default 600000: loads in ~3 s; at most ~20% of the units
#                   are claims, so a 10 s run cannot empty it; run-peers.sh uses 1,500,000)
#   --variant V     NAME=ARGS for ticketqd, optionally |ARGS for ticketq-bench, e.g.
#                   --variant 'classic=--turn classic' --variant 'ppoll=|--wait ppoll'
#                   (repeatable; default: classic, poll and reactive turn orders)
#
# Each run starts a fresh ticketqd (--fsync always, a temp directory under /var/tmp, loopback)
# and ticketq-bench --system ticketq --workload mixed --clients 64 --pipeline 1 (100,000
# customers, seed 42); after the load it samples utime+stime of both processes (all threads,
# io-wq workers included) over the middle of the run and prints one line: units/s, p50/p99,
# each side's share of a core and CPU per unit, the load average, and from ticketqd's /metrics
# over the same window the wave width (wave_conns: client connections answered per loop turn
# that answered any, ticketq_turn_answered_connections), and the snapshots ticketqd wrote over
# the whole run (snaps, snap_mb: their MB; the backlog load included) and in the window
# (snaps_window; child_core_pct: the CPU of the snapshot processes reaped in the window).
# Medians per variant at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build/rel"
ROUNDS=3
DURATION=10
BACKLOG=600000
VARIANTS=()

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --backlog) BACKLOG="$2"; shift 2 ;;
    --variant) VARIANTS+=("$2"); shift 2 ;;
    --help|-h) usage; exit 0 ;;
    *) echo "mixed-ab.sh: unknown option '$1' (--help)" >&2; exit 2 ;;
  esac
done
[ "$DURATION" -ge 6 ] 2>/dev/null || { echo "mixed-ab.sh: --duration must be >= 6" >&2; exit 2; }
[ ${#VARIANTS[@]} -gt 0 ] ||
  VARIANTS=("classic=--turn classic" "poll=--turn poll" "reactive=--turn reactive")
SERVER="$BUILD/server/ticketqd"
BENCH="$BUILD/bench/ticketq-bench"
command -v curl >/dev/null || { echo "mixed-ab.sh: curl missing" >&2; exit 2; }
for b in "$SERVER" "$BENCH"; do
  [ -x "$b" ] || { echo "mixed-ab.sh: $b missing (build ticketqd and ticketq-bench)" >&2; exit 2; }
done

WORK="$(mktemp -d /var/tmp/tq-mixed-ab.XXXXXX)"
SERVER_PID=""
BENCH_PID=""
cleanup() {
  if [ -n "$BENCH_PID" ]; then kill "$BENCH_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
RESULTS="$WORK/results"
: >"$RESULTS"
TCK="$(getconf CLK_TCK)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU of the children ticketqd reaped (its snapshot processes): cutime + cstime
child_ticks() { awk '{print $16 + $17}' "/proc/$1/stat"; }
# mdelta NAME: the unlabelled metric NAME in $WORK/m1 minus $WORK/m0 (0 if absent).
mdelta() { awk -v k="$1" '$1 == k { v[FILENAME] = $2 } END { printf "%.0f", v[ARGV[2]] - v[ARGV[1]] }' "$WORK/m0" "$WORK/m1"; }
jnum() { grep -o "\"$1\":[0-9.]*" "$2" | head -1 | cut -d: -f2; }

# run_one NAME SERVER_ARGS BENCH_ARGS: one fresh server, one bench run, one line.
run_one() {
  local name="$1" sargs="$2" bargs="$3" d="$WORK/data"
  rm -rf "$d" && mkdir -p "$d"
  # shellcheck disable=SC2086
  "$SERVER" --data "$d" --listen 127.0.0.1:0 --port-file "$d/port" --fsync always \
    --metrics 127.0.0.1:0 $sargs >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 500); do [ -s "$d/port" ] && break; sleep 0.01; done
  [ -s "$d/port" ] || { echo "mixed-ab.sh: ticketqd did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
  # shellcheck disable=SC2086
  "$BENCH" --system ticketq --addr "$(head -1 "$d/port")" --token-file "$d/admin.token" \
    --workload mixed --clients 64 --pipeline 1 --duration "$DURATION" --seed 42 \
    --customers 100000 --backlog "$BACKLOG" --json $bargs >"$WORK/out.json" 2>"$WORK/bench.log" &
  BENCH_PID=$!
  for _ in $(seq 6000); do
    grep -q " in .* s: " "$WORK/bench.log" 2>/dev/null && break
    kill -0 "$BENCH_PID" 2>/dev/null || break
    sleep 0.05
  done
  sleep 2
  local window=$((DURATION - 4)) s0 b0 c0 s1 b1 c1 load url
  url="$(grep -o 'http://[^ ]*' "$WORK/server.log" | head -1)"
  s0="$(cpu_ticks "$SERVER_PID")"; b0="$(cpu_ticks "$BENCH_PID")"; c0="$(child_ticks "$SERVER_PID")"
  curl -s "$url" >"$WORK/m0" || : >"$WORK/m0"
  load="$(cut -d' ' -f1 /proc/loadavg)"
  sleep "$window"
  s1="$(cpu_ticks "$SERVER_PID")"; b1="$(cpu_ticks "$BENCH_PID")"; c1="$(child_ticks "$SERVER_PID")"
  curl -s "$url" >"$WORK/m1" || : >"$WORK/m1"
  local rc=0
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=""
  kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
  # snapshots the server completed over the whole run (backlog load included), and in the window
  local snaps snaps_w snap_mb
  snaps="$(grep -c '^ticketqd: snapshot at LSN [0-9]*: ' "$WORK/server.log" || true)"
  snap_mb="$(awk '/^ticketqd: snapshot at LSN [0-9]*: / { s += $6 } END { printf "%.0f", s }' "$WORK/server.log")"
  snaps_w="$(mdelta ticketq_snapshots_total)"
  [ "$rc" = 0 ] || { echo "mixed-ab.sh: ticketq-bench exited $rc:" >&2; cat "$WORK/bench.log" >&2; exit 1; }
  awk -v v="$name" -v ops="$(jnum ops_per_sec "$WORK/out.json")" \
    -v p50="$(jnum p50_us "$WORK/out.json")" -v p99="$(jnum p99_us "$WORK/out.json")" \
    -v ds=$((s1 - s0)) -v db=$((b1 - b0)) -v w="$window" -v t="$TCK" -v load="$load" \
    -v wsum="$(mdelta ticketq_turn_answered_connections_sum)" \
    -v wcnt="$(mdelta ticketq_turn_answered_connections_count)" \
    -v snaps="$snaps" -v snaps_w="$snaps_w" -v snap_mb="$snap_mb" -v dc=$((c1 - c0)) \
    'BEGIN {
      srv = ds / t; bn = db / t; n = ops * w
      printf "%s units/s %.0f p50_ms %.2f p99_ms %.2f srv_core_pct %.1f srv_us_unit %.2f bench_core_pct %.1f bench_us_unit %.2f load %s wave_conns %.1f snaps %d snaps_window %d snap_mb %d child_core_pct %.1f\n",
        v, ops, p50 / 1000, p99 / 1000, 100 * srv / w, 1e6 * srv / n, 100 * bn / w, 1e6 * bn / n, load,
        (wcnt > 0 ? wsum / wcnt : 0), snaps, snaps_w, snap_mb, 100 * dc / t / w
    }' | tee -a "$RESULTS"
}

echo "mixed-ab.sh: $(nproc) CPUs, $(uptime)"
for _ in $(seq "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    spec="${v#*=}"
    sargs="${spec%%|*}"
    bargs=""
    [[ "$spec" == *"|"* ]] && bargs="${spec#*|}"
    run_one "${v%%=*}" "$sargs" "$bargs"
  done
done
echo "medians of $ROUNDS (variant: units/s, p99 ms, ticketqd us/unit, ticketq-bench us/unit):"
awk '{k = $1; u[k] = u[k] " " $3; p[k] = p[k] " " $7; s[k] = s[k] " " $11; b[k] = b[k] " " $15}
  function med(x,   a, n, i, j, t) { n = split(x, a, " ");
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)] }
  END { for (k in u) printf "  %-12s %9s %7s %7s %7s\n", k, med(u[k]), med(p[k]), med(s[k]), med(b[k]) }' \
  "$RESULTS" | sort
