#!/usr/bin/env bash
# bench/peers/run-peers.sh: the peer comparison in ONE command (issue 5).
#
#   bash bench/peers/run-peers.sh [--quick] [--duration S] [--customers N] [--backlog N]
#        [--clients "1 16 64"] [--workloads "ingest claim-reply mixed"]
#        [--systems "pg-fn pg-plain redis ticketq"] [--durability "durable relaxed"]
#        [--redis-pipeline N] [--out DIR] [--bench-bin PATH] [--probe-bin PATH]
#        [--ticketqd-bin PATH] [--ticketq-interval-ms MS] [--subscribers K]
#        [--ticketqd-args "ARGS"] [--bench-args "ARGS"] [--ticketq-snapshots peer|default]
# --ticketqd-args / --bench-args: extra options for every ticketqd / ticketq-bench run of the
# ticketq systems (A/B of variants, e.g. --ticketqd-args "--turn reactive", --bench-args
# "--wait ppoll"); the table's header names them.
# --ticketq-snapshots: peer (default) runs ticketqd with --snapshot-every 40000000 (about 16 GB of
# log), the counterpart of the peers' set-up in PEER-WORKLOADS.md (PostgreSQL max_wal_size=16GB,
# checkpoint_timeout=30min, a CHECKPOINT before each run; Redis save ""): no system's background
# persistence (checkpoint, RDB fork, snapshot) starts inside a measured run. default keeps
# ticketqd's own --snapshot-every (2,000,000 records) and --snapshot-growth (300%): in a 20 s
# mixed run on the 1.5 M-ticket backlog, 2 snapshots (load included) where the record count
# alone made 3-4, which cost 8-12% of its throughput (docs/performance-peers.md, 2026-12-03;
# docs/performance-server.md, 2026-12-04).
# Systems: pg-fn (PL/pgSQL functions), pg-plain (plain statements), redis (Lua, one unit in
# flight per client), redis-pipelined (Lua, N in flight per client, default 16; not default),
# ticketq (ticketqd --fsync always; relaxed: --fsync interval=MS, default 1000 like Redis
# everysec), ticketq-pipelined (N in flight per client, like redis-pipelined; not default).
# Workload dashboard (not default): 50% ingest, 50% reads, for every system.
# Workload fanout (not default; Redis and ticketq only, PostgreSQL rows are skipped): ingest while
# K subscribers (--subscribers, default 4) follow the events: ticketq Subscribe (MESSAGE_ADDED),
# Redis XREAD BLOCK on a stream the ingest script XADDs to; delivery lag in a second table.
#
# What it does, in order:
#   1. installs PostgreSQL, Redis and gnuplot from Debian if missing (tests/install-deps.sh with
#      TQ_WITH_BENCH_DEPS=1) and builds ticketq-bench + ticketq-diskprobe (Release) if no binary
#      is given;
#   2. measures the disk of the temp directory: fdatasync latency of a 4 KiB append (and of an
#      overwrite) and sequential write bandwidth;
#   3. starts PostgreSQL (initdb/pg_ctl, as user postgres when run as root) and Redis on free
#      loopback ports in a temp directory (never the system services), loads the same initial
#      state (PEER-WORKLOADS.md sizes by default: 100,000 customers, 1,500,000 tickets);
#   4. for every durability x workload x clients: restores the initial state (PostgreSQL: a
#      database copied from a template, prewarmed, CHECKPOINT; Redis: a restart from the saved
#      RDB, then AOF switched on and its rewrite awaited), runs the load (pgbench -M prepared with
#      bench/peers/pg/*.sql; ticketq-bench --system redis), records ops/s and p50/p99;
#      ticketq: every run starts a fresh ticketqd (Release) on its own data directory and a free
#      loopback port, and ticketq-bench loads the same initial state into it (part of the run,
#      timed separately); after the run the script reads the server's VmRSS and the bench's Stats
#      counts (memory per ticket / per message), stops the server, starts it again on the same
#      directory and times the restart (until the port file appears; the server's "recovered"
#      log line is kept), then stops it;
#   5. stops everything, removes the temp directory (trap, also on ^C), prints one table, with
#      the ratio ticketq / peer for each peer row (same durability, workload and clients; the
#      plain ticketq row for plain peers, ticketq-pipelined for redis-pipelined), and the
#      ticketq memory and restart figures. Results are also kept in OUT (default
#      ./peer-results-<time>).
set -euo pipefail

# The whole body is one block: bash parses it before running, so editing this file while a
# run is in progress cannot change the running script.
{
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DURATION=30
CUSTOMERS=100000
BACKLOG=1500000
CLIENTS="1 16 64"
WORKLOADS="ingest claim-reply mixed"
SYSTEMS="pg-fn pg-plain redis ticketq"
TICKETQD=""
TQ_INTERVAL_MS=1000
DURABILITY="durable relaxed"
OUT=""
BENCH=""
PROBE=""
PROBE_APPENDS=1000
PROBE_SEQ_MIB=1024
SEED=42
REDIS_PIPELINE=16
SUBSCRIBERS=4
TICKETQD_ARGS=""
BENCH_ARGS=""
TQ_SNAPSHOTS=peer
TQ_PEER_SNAPSHOT_EVERY=40000000 # ~400 B of log per record: ~16 GB, PostgreSQL's max_wal_size

usage() { sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) DURATION=5; CUSTOMERS=10000; BACKLOG=200000; PROBE_APPENDS=300; PROBE_SEQ_MIB=256;
             shift ;;
    --duration) DURATION="$2"; shift 2 ;;
    --customers) CUSTOMERS="$2"; shift 2 ;;
    --backlog) BACKLOG="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --workloads) WORKLOADS="$2"; shift 2 ;;
    --systems) SYSTEMS="$2"; shift 2 ;;
    --durability) DURABILITY="$2"; shift 2 ;;
    --redis-pipeline) REDIS_PIPELINE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --bench-bin) BENCH="$2"; shift 2 ;;
    --probe-bin) PROBE="$2"; shift 2 ;;
    --ticketqd-bin) TICKETQD="$2"; shift 2 ;;
    --ticketq-interval-ms) TQ_INTERVAL_MS="$2"; shift 2 ;;
    --subscribers) SUBSCRIBERS="$2"; shift 2 ;;
    --ticketqd-args) TICKETQD_ARGS="$2"; shift 2 ;;
    --bench-args) BENCH_ARGS="$2"; shift 2 ;;
    --ticketq-snapshots) TQ_SNAPSHOTS="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run-peers.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$TQ_SNAPSHOTS" in
  peer) TICKETQD_ARGS="--snapshot-every $TQ_PEER_SNAPSHOT_EVERY${TICKETQD_ARGS:+ $TICKETQD_ARGS}" ;;
  default) ;;
  *) echo "run-peers.sh: --ticketq-snapshots: expected peer or default, got '$TQ_SNAPSHOTS'" >&2
     exit 2 ;;
esac

log() { echo "[run-peers $(date -u +%H:%M:%S)] $*" >&2; }

# ---- 1. dependencies and binaries --------------------------------------------------------------
TQ_WITH_BENCH_DEPS=1 bash "$ROOT/tests/install-deps.sh"
if [ -z "$BENCH" ] || [ -z "$PROBE" ]; then
  BUILD="$ROOT/build/bench-peers"
  log "building ticketq-bench (Release) in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTQ_TESTS=OFF >/dev/null
  # ticketqd too (unless given): a stale server next to a fresh bench speaks an older protocol.
  targets="ticketq-bench ticketq-diskprobe"
  [[ " $SYSTEMS " == *" ticketq"* ]] && [ -z "$TICKETQD" ] && targets="$targets ticketqd"
  # shellcheck disable=SC2086
  cmake --build "$BUILD" --target $targets -j"$(nproc)" >/dev/null
  BENCH="${BENCH:-$BUILD/bench/ticketq-bench}"
  PROBE="${PROBE:-$BUILD/bench/ticketq-diskprobe}"
fi
if [[ " $SYSTEMS " == *" ticketq"* ]] && [ -z "$TICKETQD" ]; then
  # Beside the given bench binary if that build has one, else a Release build of our own.
  TICKETQD="$(dirname "$BENCH")/../server/ticketqd"
  if [ ! -x "$TICKETQD" ]; then
    BUILD="$ROOT/build/bench-peers"
    log "building ticketqd (Release) in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTQ_TESTS=OFF >/dev/null
    cmake --build "$BUILD" --target ticketqd -j"$(nproc)" >/dev/null
    TICKETQD="$BUILD/server/ticketqd"
  fi
fi
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$PGBIN/initdb" ] || { echo "run-peers.sh: PostgreSQL binaries not found" >&2; exit 1; }
OUT="${OUT:-$PWD/peer-results-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# ---- temp directory, processes, cleanup ---------------------------------------------------------
# On a real disk (not tmpfs): the disk is what durable runs measure.
WORK="$(mktemp -d "${TQ_PEERS_TMP:-/var/tmp}/ticketq-peers.XXXXXX")"
chmod 755 "$WORK"
PG_STARTED=0
REDIS_PIDFILE="$WORK/redis.pid"
TQ_PID=""
AS_PG=()
if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); fi

cleanup() {
  set +e
  if [ "$PG_STARTED" = 1 ]; then
    "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1
  fi
  if [ -f "$REDIS_PIDFILE" ]; then
    kill "$(cat "$REDIS_PIDFILE")" 2>/dev/null
    sleep 0.5
  fi
  if [ -n "$TQ_PID" ]; then
    kill "$TQ_PID" 2>/dev/null
    wait "$TQ_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "run-peers.sh: no free port" >&2; return 1
}

BODY_IN="$(cat "$HERE/peer-body-in.txt")"
BODY_OUT="$(cat "$HERE/peer-body-out.txt")"
RESULTS="$OUT/results.tsv"
printf 'durability\tworkload\tclients\tsystem\tops_per_sec\tp50_ms\tp99_ms\tstatus\n' > "$RESULTS"
TQ_MEMORY="$OUT/ticketq-memory.tsv"
printf 'run\tload_s\trss_empty_kib\trss_kib\ttickets\tmessages\tbytes_per_ticket\tbytes_per_message\trestart_ms\trecovered_line\n' > "$TQ_MEMORY"
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"; }
FANOUT="$OUT/fanout.tsv"
printf 'durability\tclients\tsystem\tsubscribers\tper_subscriber\tmissing\tack_p50_ms\tack_p99_ms\te2e_p50_ms\te2e_p99_ms\n' > "$FANOUT"
# record_fanout DURABILITY CLIENTS SYSTEM JSON: the overall lags of a fanout run (microseconds in
# the JSON, milliseconds in the table).
record_fanout() {
  local ack e2e ms
  ack="$(grep -o '"lag_after_ack":{[^}]*}' <<<"$4" | head -1)"
  e2e="$(grep -o '"lag_end_to_end":{[^}]*}' <<<"$4" | head -1)"
  ms() { [ -n "$1" ] && awk -v v="$1" 'BEGIN{printf "%.3f", v/1000}' || echo n/a; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$SUBSCRIBERS" \
      "$(jget expected_per_subscriber "$4")" "$(jget missing "$4")" \
      "$(ms "$(jget p50_us "$ack")")" "$(ms "$(jget p99_us "$ack")")" \
      "$(ms "$(jget p50_us "$e2e")")" "$(ms "$(jget p99_us "$e2e")")" >> "$FANOUT"
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 2. the disk ---------------------------------------------------------------------------------
log "measuring the disk under $WORK"
DISK_JSON="$("$PROBE" "$WORK" "$PROBE_APPENDS" "$PROBE_SEQ_MIB")"
echo "$DISK_JSON" > "$OUT/disk.json"
# The first occurrence: ticketq-bench prints the whole-run figures before the per-op ones.
jget() { grep -o "\"$1\":[0-9.]*" <<<"$2" | head -1 | cut -d: -f2; }

# ---- 3a. PostgreSQL --------------------------------------------------------------------------------
PG_PORT=""
pg_sql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U tq "$@"; }

pg_start_and_load() {
  PG_PORT="$(free_port)"
  mkdir -p "$WORK/pg"
  cp "$HERE"/pg/*.sql "$WORK/pg/"
  [ "$(id -u)" = 0 ] && chown -R postgres "$WORK/pg"
  "${AS_PG[@]}" "$PGBIN/initdb" -D "$WORK/pg/data" -U tq -A trust -E UTF8 --no-sync >/dev/null
  "${AS_PG[@]}" sh -c "cat '$HERE/pg/postgresql.conf' >> '$WORK/pg/data/postgresql.conf'"
  "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w \
      -o "-p $PG_PORT -k $WORK/pg" start >/dev/null
  PG_STARTED=1
  log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT;" \
      "loading $CUSTOMERS customers, $BACKLOG tickets"
  pg_sql -d postgres -c "CREATE DATABASE tq_template"
  local t0=$SECONDS
  pg_sql -d tq_template -v ncust="$CUSTOMERS" -v backlog="$BACKLOG" -v body="$BODY_IN" \
      -f "$WORK/pg/load.sql" >/dev/null
  log "PostgreSQL loaded in $((SECONDS - t0)) s"
  PG_BYTES="$(pg_sql -d tq_template -At -c "SELECT pg_database_size('tq_template')")"
}

pg_restore() {
  pg_sql -d postgres -c "DROP DATABASE IF EXISTS tq_run" 2>/dev/null
  pg_sql -d postgres -c "CREATE DATABASE tq_run TEMPLATE tq_template STRATEGY FILE_COPY"
  pg_sql -d tq_run -c "SELECT count(pg_prewarm(c.oid)) FROM pg_class c
                        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r','i')" \
      >/dev/null
  pg_sql -d tq_run -c "CHECKPOINT"
  sync  # no write-back of the copy may compete with the run's fsyncs
}

# run_pg FORM(fn|plain) WORKLOAD CLIENTS DURABILITY
run_pg() {
  local form="$1" workload="$2" clients="$3" durability="$4"
  local scripts=()
  case "$workload" in
    ingest) scripts=(-f "$WORK/pg/ingest-$form.sql") ;;
    claim-reply) scripts=(-f "$WORK/pg/claim-reply-$form.sql") ;;
    mixed) scripts=(-f "$WORK/pg/ingest-$form.sql@80" -f "$WORK/pg/claim-reply-$form.sql@20") ;;
    # 50% ingest; reads: a ticket with its last 20 messages 50%, a queue's top 50 25%, the 50
    # nearest SLA deadlines 25% (bench/workload.c's dashboard). The reads are the same SQL for
    # both forms (one statement each).
    dashboard) scripts=(-f "$WORK/pg/ingest-$form.sql@100" -f "$WORK/pg/dashboard-get-ticket.sql@50"
                        -f "$WORK/pg/dashboard-list-queue.sql@25"
                        -f "$WORK/pg/dashboard-sla-nearest.sql@25") ;;
  esac
  local sync=on
  [ "$durability" = relaxed ] && sync=off
  local threads=$((clients < $(nproc) ? clients : $(nproc)))
  local logdir="$WORK/pglog"
  rm -rf "$logdir"; mkdir -p "$logdir"
  pg_restore
  local name="pg-$form $durability $workload c$clients"
  log "run $name"
  local rc=0
  PGOPTIONS="-c synchronous_commit=$sync" "$PGBIN/pgbench" -n -M prepared -h 127.0.0.1 \
      -p "$PG_PORT" -U tq -c "$clients" -j "$threads" -T "$DURATION" --random-seed="$SEED" \
      -D ncust="$CUSTOMERS" -D backlog="$BACKLOG" -D body_in="$BODY_IN" -D body_out="$BODY_OUT" \
      "${scripts[@]}" \
      -l --log-prefix="$logdir/tx" tq_run > "$OUT/pgbench-$form-$durability-$workload-c$clients.txt" 2>&1 \
      || rc=$?
  local out="$OUT/pgbench-$form-$durability-$workload-c$clients.txt"
  local tps
  tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")"
  local pct
  pct="$(cat "$logdir"/tx.* 2>/dev/null | awk '{print $3}' | sort -n | awk '
        {v[NR] = $1} END { if (NR == 0) { print "n/a n/a"; exit }
        i50 = int(0.50 * NR); if (i50 < 1) i50 = 1; i99 = int(0.99 * NR + 0.999999); if (i99 > NR) i99 = NR;
        printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }')"
  local status=ok
  [ "$rc" != 0 ] && status="pgbench-exit-$rc"
  grep -q 'EMPTY queue' "$out" && status="INVALID-empty-queue"
  record "$durability" "$workload" "$clients" "postgresql-$form" "${tps:-n/a}" ${pct} "$status"
}

# ---- 3b. Redis ---------------------------------------------------------------------------------------
REDIS_PORT=""
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

redis_start() { # DIR EXTRA_ARGS...
  local dir="$1"; shift
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" --save "" \
      --dbfilename dump.rdb --appendonly no --daemonize yes --pidfile "$REDIS_PIDFILE" \
      --logfile "$dir/redis.log" "$@"
  for _ in $(seq 1 600); do
    if [ "$(rcli ping 2>/dev/null)" = PONG ]; then return 0; fi
    sleep 0.1
  done
  echo "run-peers.sh: redis did not start (see $dir/redis.log)" >&2; return 1
}

redis_stop() {
  rcli shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do [ -f "$REDIS_PIDFILE" ] || break; sleep 0.1; done
  rm -f "$REDIS_PIDFILE"
}

redis_load() {
  REDIS_PORT="$(free_port)"
  mkdir -p "$WORK/redis-template"
  redis_start "$WORK/redis-template"
  log "Redis $(redis-server --version | awk '{print $3}' | sed 's/v=//') on 127.0.0.1:$REDIS_PORT;" \
      "loading $CUSTOMERS customers, $BACKLOG tickets"
  local t0=$SECONDS
  "$BENCH" --system redis --addr "127.0.0.1:$REDIS_PORT" --customers "$CUSTOMERS" \
      --backlog "$BACKLOG" --load-only
  rcli save >/dev/null
  REDIS_BYTES="$(rcli info memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)$/\1/p')"
  redis_stop
  log "Redis loaded and saved in $((SECONDS - t0)) s"
}

# run_redis WORKLOAD CLIENTS DURABILITY PIPELINE
run_redis() {
  local workload="$1" clients="$2" durability="$3" pipeline="$4"
  local sysname=redis
  [ "$pipeline" != 1 ] && sysname="redis-pipeline$pipeline"
  local fsync=always
  [ "$durability" = relaxed ] && fsync=everysec
  local dir="$WORK/redis-run"
  rm -rf "$dir"; mkdir -p "$dir"
  cp "$WORK/redis-template/dump.rdb" "$dir/"
  redis_start "$dir"
  # Switching AOF on rewrites it from the loaded data; wait for that before measuring.
  rcli config set appendfsync "$fsync" >/dev/null
  rcli config set appendonly yes >/dev/null
  for _ in $(seq 1 3000); do
    local info
    info="$(rcli info persistence | tr -d '\r')"
    if grep -q '^aof_enabled:1' <<<"$info" && grep -q '^aof_rewrite_in_progress:0' <<<"$info" \
        && grep -q '^aof_rewrite_scheduled:0' <<<"$info"; then break; fi
    sleep 0.1
  done
  sync  # the rewrite left the AOF's dirty pages behind: flush them before measuring
  log "run redis $durability $workload c$clients (appendfsync $fsync, pipeline $pipeline)"
  local out="$OUT/$sysname-$durability-$workload-c$clients.json" rc=0
  "$BENCH" --system redis --addr "127.0.0.1:$REDIS_PORT" --workload "$workload" \
      --clients "$clients" --pipeline "$pipeline" --duration "$DURATION" --seed "$SEED" --customers "$CUSTOMERS" \
      --backlog "$BACKLOG" --subscribers "$SUBSCRIBERS" --json > "$out" || rc=$?
  local json
  json="$(cat "$out")"
  local ops p50 p99 status=ok
  ops="$(jget ops_per_sec "$json")"
  p50="$(jget p50_us "$json")"; p99="$(jget p99_us "$json")"
  [ -n "$p50" ] && p50="$(awk -v v="$p50" 'BEGIN{printf "%.3f", v/1000}')"
  [ -n "$p99" ] && p99="$(awk -v v="$p99" 'BEGIN{printf "%.3f", v/1000}')"
  [ "$rc" != 0 ] && status="bench-exit-$rc"
  [ "$(jget empty_queue "$json")" != 0 ] && status="INVALID-empty-queue"
  record "$durability" "$workload" "$clients" "$sysname" "${ops:-n/a}" "${p50:-n/a}" "${p99:-n/a}" \
      "$status"
  [ "$workload" = fanout ] && record_fanout "$durability" "$clients" "$sysname" "$json"
  redis_stop
  rm -rf "$dir"
}

# ---- 3c. ticketq ------------------------------------------------------------------------------------
# tq_start DIR FSYNC: starts ticketqd on DIR (created if absent) and a free loopback port; sets
# TQ_PID, TQ_ADDR and TQ_START_MS (milliseconds until the port file appeared).
tq_start() {
  local dir="$1" fsync="$2"
  mkdir -p "$dir"
  rm -f "$dir/port"
  local t0
  t0="$(date +%s%N)"
  # shellcheck disable=SC2086
  "$TICKETQD" --data "$dir" --listen 127.0.0.1:0 --port-file "$dir/port" --fsync "$fsync" \
      $TICKETQD_ARGS >> "$dir/server.log" 2>&1 &
  TQ_PID=$!
  for _ in $(seq 1 6000); do
    if [ -s "$dir/port" ]; then
      TQ_ADDR="$(head -1 "$dir/port")"
      TQ_START_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
      return 0
    fi
    kill -0 "$TQ_PID" 2>/dev/null || break
    sleep 0.01
  done
  echo "run-peers.sh: ticketqd did not start (see $dir/server.log)" >&2; return 1
}

tq_stop() {
  [ -n "$TQ_PID" ] || return 0
  kill "$TQ_PID" 2>/dev/null || true
  wait "$TQ_PID" 2>/dev/null || true
  TQ_PID=""
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# run_ticketq WORKLOAD CLIENTS DURABILITY PIPELINE
run_ticketq() {
  local workload="$1" clients="$2" durability="$3" pipeline="$4"
  local sysname=ticketq
  [ "$pipeline" != 1 ] && sysname="ticketq-pipeline$pipeline"
  local fsync=always
  [ "$durability" = relaxed ] && fsync="interval=$TQ_INTERVAL_MS"
  local dir="$WORK/ticketq-run" name="$sysname-$durability-$workload-c$clients"
  rm -rf "$dir"
  tq_start "$dir" "$fsync"
  local rss_empty
  rss_empty="$(rss_kib "$TQ_PID")"
  log "run $sysname $durability $workload c$clients (--fsync $fsync, pipeline $pipeline)"
  local out="$OUT/$name.json" rc=0
  # shellcheck disable=SC2086
  "$BENCH" --system ticketq --addr "$TQ_ADDR" --token-file "$dir/admin.token" \
      --workload "$workload" --clients "$clients" --pipeline "$pipeline" --duration "$DURATION" \
      --seed "$SEED" --customers "$CUSTOMERS" --backlog "$BACKLOG" --subscribers "$SUBSCRIBERS" \
      $BENCH_ARGS --json > "$out" 2> "$OUT/$name.log" || rc=$?
  local rss
  rss="$(rss_kib "$TQ_PID")"
  local json
  json="$(cat "$out")"
  local ops p50 p99 status=ok
  ops="$(jget ops_per_sec "$json")"
  p50="$(jget p50_us "$json")"; p99="$(jget p99_us "$json")"
  [ -n "$p50" ] && p50="$(awk -v v="$p50" 'BEGIN{printf "%.3f", v/1000}')"
  [ -n "$p99" ] && p99="$(awk -v v="$p99" 'BEGIN{printf "%.3f", v/1000}')"
  [ "$rc" != 0 ] && status="bench-exit-$rc"
  [ "$(jget empty_queue "$json")" != 0 ] && status="INVALID-empty-queue"
  record "$durability" "$workload" "$clients" "$sysname" "${ops:-n/a}" "${p50:-n/a}" "${p99:-n/a}" \
      "$status"
  [ "$workload" = fanout ] && record_fanout "$durability" "$clients" "$sysname" "$json"
  # Memory: the whole server's resident set over the bench tenant's counts (the only tenant).
  local tickets messages load_s
  tickets="$(grep -o '"server":{"tickets":[0-9]*' <<<"$json" | grep -o '[0-9]*$' || true)"
  messages="$(grep -o '"server":{[^}]*"messages":[0-9]*' <<<"$json" | grep -o '[0-9]*$' || true)"
  load_s="$(sed -n 's/.* in \([0-9.]*\) s: .*/\1/p' "$OUT/$name.log" | tail -1)"
  # Restart: stop, start again on the same directory, time until the port file appears.
  tq_stop
  local restart_ms recovered
  tq_start "$dir" "$fsync"
  restart_ms="$TQ_START_MS"
  recovered="$(grep -i 'recovered' "$dir/server.log" | tail -1 | tr '\t' ' ' || true)"
  tq_stop
  local bpt=n/a bpm=n/a
  if [ -n "$tickets" ] && [ "$tickets" -gt 0 ]; then
    bpt=$(( (rss - rss_empty) * 1024 / tickets ))
  fi
  if [ -n "$messages" ] && [ "$messages" -gt 0 ]; then
    bpm=$(( (rss - rss_empty) * 1024 / messages ))
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "${load_s:-n/a}" "$rss_empty" "$rss" \
      "${tickets:-n/a}" "${messages:-n/a}" "$bpt" "$bpm" "$restart_ms" "${recovered:-}" >> "$TQ_MEMORY"
  rm -rf "$dir"
}

# ---- 4. the runs ---------------------------------------------------------------------------------
want() { [[ " $SYSTEMS " == *" $1 "* ]]; }
if want pg-fn || want pg-plain; then pg_start_and_load; fi
if want redis || want redis-pipelined; then redis_load; fi

TICKETQ_AVAILABLE=0
if want ticketq || want ticketq-pipelined; then TICKETQ_AVAILABLE=1; fi

for durability in $DURABILITY; do
  for workload in $WORKLOADS; do
    for clients in $CLIENTS; do
      if [ "$workload" != fanout ]; then  # no event stream in the PostgreSQL peer
        want pg-fn && run_pg fn "$workload" "$clients" "$durability"
        want pg-plain && run_pg plain "$workload" "$clients" "$durability"
      fi
      want redis && run_redis "$workload" "$clients" "$durability" 1
      want redis-pipelined && run_redis "$workload" "$clients" "$durability" "$REDIS_PIPELINE"
      want ticketq && run_ticketq "$workload" "$clients" "$durability" 1
      want ticketq-pipelined && run_ticketq "$workload" "$clients" "$durability" "$REDIS_PIPELINE"
    done
  done
done

# ---- 5. the table ----------------------------------------------------------------------------------
{
  echo "# ticketq peer comparison, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
       "disk $(df -P "${TQ_PEERS_TMP:-/var/tmp}" | awk 'NR==2 {print $1}'), kernel $(uname -r)"
  echo "load average at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
       "(other processes on the machine disturb the figures)"
  echo "versions: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), Redis" \
       "$(redis-server --version | awk '{print $3}' | sed 's/v=//'), ticketq: $([ $TICKETQ_AVAILABLE = 1 ] && echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (ticketqd $TICKETQD${TICKETQD_ARGS:+ $TICKETQD_ARGS}${BENCH_ARGS:+; ticketq-bench $BENCH_ARGS})" || echo 'not run')"
  echo "data: $CUSTOMERS customers, $BACKLOG tickets; $DURATION s per run; seed $SEED; closed loop," \
       "1 unit in flight per client (redis-pipelineN: N per client)"
  footprint=""
  [ -n "${PG_BYTES:-}" ] && footprint="PostgreSQL $((PG_BYTES / 1048576)) MiB on disk ($((PG_BYTES / BACKLOG)) B/ticket)"
  [ -n "${REDIS_BYTES:-}" ] && footprint="$footprint${footprint:+; }Redis $((REDIS_BYTES / 1048576)) MiB used_memory ($((REDIS_BYTES / BACKLOG)) B/ticket)"
  echo "initial state (each ticket with its one 300-byte message): ${footprint:-n/a}"
  echo "disk: fdatasync 4 KiB append p50 $(jget fdatasync_append_4k_p50_us "$DISK_JSON") us" \
       "(p99 $(jget fdatasync_append_4k_p99_us "$DISK_JSON") us), overwrite p50" \
       "$(jget fdatasync_overwrite_4k_p50_us "$DISK_JSON") us; sequential write" \
       "$(jget seq_write_mib_s "$DISK_JSON") MiB/s"
  echo
  echo "| durability | workload | clients | system | ops/s | p50 ms | p99 ms | ticketq/peer | status |"
  echo "|---|---|---:|---|---:|---:|---:|---:|---|"
  tail -n +2 "$RESULTS" | while IFS=$'\t' read -r dur wl cl sys ops p50 p99 status; do
    label="$dur"; [ "$dur" = relaxed ] && label="relaxed (not durable)"
    ratio="n/a"
    tqsys=ticketq
    case "$sys" in
      ticketq*) tqsys="" ; ratio="-" ;;
      redis-pipeline*) tqsys="ticketq-pipeline${sys#redis-pipeline}" ;;
    esac
    if [ "$TICKETQ_AVAILABLE" = 1 ] && [ -n "$tqsys" ]; then
      tq="$(awk -F'\t' -v d="$dur" -v w="$wl" -v c="$cl" -v s="$tqsys" '$1==d && $2==w && $3==c && $4==s && $8=="ok" {print $5}' "$RESULTS")"
      [ -n "$tq" ] && [ "$ops" != n/a ] && [ "$status" = ok ] && ratio="$(awk -v a="$tq" -v b="$ops" 'BEGIN{printf "%.1fx", a/b}')"
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$wl" "$cl" "$sys" \
        "$(printf "%'.0f" "$ops" 2>/dev/null || echo "$ops")" "$p50" "$p99" "$ratio" "$status"
  done
  if [ "$(wc -l < "$FANOUT")" -gt 1 ]; then
    echo
    echo "fan-out: $SUBSCRIBERS subscribers per run (ticketq: Subscribe, MESSAGE_ADDED; redis: XREAD" \
         "BLOCK on the stream the ingest script XADDs to); lag after the ingest's answer and" \
         "end to end (from the send), overall percentiles in ms:"
    echo
    echo "| durability | clients | system | events per subscriber | missing | after ack p50 | after ack p99 | end-to-end p50 | end-to-end p99 |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|"
    tail -n +2 "$FANOUT" | while IFS=$'\t' read -r dur cl sys k per miss a50 a99 e50 e99; do
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$dur" "$cl" "$sys" "$per" "$miss" \
          "$a50" "$a99" "$e50" "$e99"
    done
  fi
  if [ "$TICKETQ_AVAILABLE" = 1 ]; then
    echo
    echo "ticketq server after each run (RSS growth over the empty server / the bench tenant's" \
         "counts; restart = stop, start on the same directory, until the port file appears):"
    echo
    echo "| run | load s | RSS empty KiB | RSS KiB | tickets | messages | B/ticket | B/message | restart ms |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    tail -n +2 "$TQ_MEMORY" | while IFS=$'\t' read -r run load_s re r t m bpt bpm rs _; do
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$run" "$load_s" "$re" "$r" "$t" "$m" \
          "$bpt" "$bpm" "$rs"
    done
  fi
} | tee "$OUT/table.md"
log "results kept in $OUT"
exit 0
}
