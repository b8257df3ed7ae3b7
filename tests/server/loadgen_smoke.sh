#!/bin/sh
# tests/server/loadgen_smoke.sh BUILD_DIR LOADGEN BODY_DIR: tq-loadgen's open loop, end to end.
#
# Goal: the open loop sends what its schedule says and every answer arrives, both with all
# connections in one process (the default) and with one process per connection
# (--open-procs 3). Method: a real ticketqd on a temp dir; setup of 200 customers; then 2 s at
# 1,500 requests/s over 3 connections with each process count. Each run must report errors 0,
# a sent rate within 5% of the target (the schedule is computed from the start: the old tool
# sent 1.6% too many at 157,300/s), the send-lateness line, and a server holding exactly the
# setup's messages plus exactly the 3,000 requests of the schedule (none lost, none sent twice).
# A third run ticks (--tick-us 20000: one wake-up per 20 ms, ~30 requests each) under the same
# checks, plus the due-time accounting: a request goes out up to 20 ms after its due time
# (~10 ms at the median), so the lateness p50 must be >= 5 ms (the ticks are on) and the latency
# p50 at least 5 ms over the p50 of the same answers counted from their send (the tool prints
# both; each answer's two latencies differ by exactly its send lateness). Counting the figure
# from the send, or no longer adding the tick's send delay, makes it fail.
# Two runs with --message-ids (3 processes each) must each add all 3,000 messages too: the ids
# are unique across processes and runs. --tick-us without --rate is refused.
# Pre-created customers (bench/restart-10m.sh's customers and tickets phases): a second tenant's
# setup with --pre-create --sla must leave exactly 300 customers and no ticket or message in it;
# --first-messages then exactly 300 tickets and 300 messages and still 300 customers (each ingest
# found its customer by the identity CustomerCreate gave it); every ticket has a running SLA
# clock (the SLA view lists running clocks on all 300).
set -eu
build=$1
loadgen=$2
bodies=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/tq-lgsmoke-XXXXXX")
pid=""
# --help: usage on stdout, exit 0; an unknown option: exit 2.
"$loadgen" --help | grep -q "^usage: tq-loadgen" || { echo "tq-loadgen --help failed"; exit 1; }
rc=0; "$loadgen" --no-such-option 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "tq-loadgen --no-such-option: exit $rc, expected 2"; exit 1; }
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
"$build/server/ticketqd" --data "$dir" --listen 127.0.0.1:0 --port-file "$dir/port" \
  --fsync always 2>"$dir/err" >/dev/null &
pid=$!
i=0
while [ ! -s "$dir/port" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$dir/port" ] || { cat "$dir/err"; echo "ticketqd did not start"; exit 1; }
common="--addr $(cat "$dir/port") --token-file $dir/admin.token --body-in $bodies/peer-body-in.txt --body-out $bodies/peer-body-out.txt"
# shellcheck disable=SC2086
"$loadgen" $common --customers 200 --seconds 0 >"$dir/setup" 2>&1 || { cat "$dir/setup"; exit 1; }
held=200
if "$loadgen" $common --no-setup --tenant 1 --queues 1,2,3 --tick-us 100 --seconds 1 \
  >"$dir/out" 2>&1; then
  cat "$dir/out"; echo "--tick-us without --rate was accepted"; exit 1
fi
for run in procs1 procs3 tick keys1 keys2; do
  extra="--open-procs 1"
  [ "$run" = procs3 ] && extra="--open-procs 3"
  [ "$run" = tick ] && extra="--tick-us 20000"
  # provider message ids: a repeat across the 3 processes or the two runs would be answered
  # as a duplicate and not stored, and the count below would come up short
  case "$run" in keys*) extra="--open-procs 3 --message-ids" ;; esac
  # shellcheck disable=SC2086
  "$loadgen" $common --no-setup --tenant 1 --queues 1,2,3 --customers 200 --conns 3 --depth 64 \
    --rate 1500 --seconds 2 $extra >"$dir/out" 2>&1 || { cat "$dir/out"; exit 1; }
  cat "$dir/out"
  grep -q 'errors 0' "$dir/out" || { echo "errors reported"; exit 1; }
  grep -q '^send lateness (send - due): p50 ' "$dir/out" || { echo "no lateness line"; exit 1; }
  rate=$(sed -n 's/.*: \([0-9]*\) requests\/s.*/\1/p' "$dir/out")
  [ "$rate" -ge 1425 ] && [ "$rate" -le 1575 ] || { echo "sent $rate/s, want 1500 +- 5%"; exit 1; }
  # The schedule holds 1,500 x 2 = 3,000 requests: every one due before the schedule's end
  # goes out, even when that is after the alarm (ticks); the server must hold exactly those on
  # top of what it held: none lost, none sent twice.
  msgs=$(sed -n 's/^server: \([0-9]*\) messages.*/\1/p' "$dir/out")
  [ "$msgs" -eq $((held + 3000)) ] || {
    echo "server holds $msgs messages, expected $held + 3000"; exit 1; }
  held=$msgs
  if [ "$run" = tick ]; then
    lat50=$(sed -n 's/.*requests\/s.* p50 \([0-9]*\) us.*/\1/p' "$dir/out")
    send50=$(sed -n 's/^latency p99.9 .*from the send .*: p50 \([0-9]*\) us.*/\1/p' "$dir/out")
    late50=$(sed -n 's/^send lateness (send - due): p50 \([0-9]*\) us.*/\1/p' "$dir/out")
    [ "$late50" -ge 5000 ] || { echo "ticking, yet lateness p50 $late50 us < 5000"; exit 1; }
    [ "$lat50" -ge $((send50 + 5000)) ] || {
      echo "latency p50 $lat50 us not >= 5 ms over its p50 from the send ($send50 us):" \
        "the send delay (p50 $late50 us) is not counted"; exit 1; }
  fi
done
# shellcheck disable=SC2086
"$loadgen" $common --customers 300 --pre-create --sla --seconds 0 >"$dir/out" 2>&1 ||
  { cat "$dir/out"; exit 1; }
cat "$dir/out"
tenant=$(sed -n 's/^setup: tenant \([0-9]*\), 300 customers (CustomerCreate.*/\1/p' "$dir/out")
[ -n "$tenant" ] && [ "$tenant" != 1 ] || { echo "no second tenant's setup line"; exit 1; }
grep -q '^server: 0 messages, 300 customers, 0 tickets$' "$dir/out" ||
  { echo "--pre-create: want 0 messages, 300 customers, 0 tickets"; exit 1; }
q0=$((3 * tenant - 2))
# shellcheck disable=SC2086
"$loadgen" $common --no-setup --tenant "$tenant" --queues $q0,$((q0 + 1)),$((q0 + 2)) \
  --customers 300 --first-messages --seconds 0 >"$dir/out" 2>&1 || { cat "$dir/out"; exit 1; }
cat "$dir/out"
grep -q '^server: 300 messages, 300 customers, 300 tickets$' "$dir/out" ||
  { echo "--first-messages: want 300 messages, 300 customers, 300 tickets"; exit 1; }
grep -q '^sla: [0-9]* running clocks on 300 tickets listed' "$dir/out" ||
  { echo "--sla: want 300 running SLA clocks"; exit 1; }
kill "$pid"
wait "$pid" || { echo "ticketqd did not stop cleanly"; exit 1; }
pid=""
echo "loadgen_smoke: ok"
