#!/bin/sh
# tests/server/loadgen_smoke.sh BUILD_DIR LOADGEN BODY_DIR: tq-loadgen's open loop, end to end.
#
# Goal: the open loop sends what its schedule says and every answer arrives, both with all
# connections in one process (the default) and with one process per connection
# (--open-procs 3). Method: a real ticketqd on a temp dir; setup of 200 customers; then 2 s at
# 1,500 requests/s over 3 connections with each process count. Each run must report errors 0,
# a sent rate within 5% of the target (the schedule is computed from the start: the old tool
# sent 1.6% too many at 157,300/s), the send-lateness line, and a server holding exactly the
# setup's messages plus the 3,000 requests of the schedule (none lost, none sent twice).
set -eu
build=$1
loadgen=$2
bodies=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/tq-lgsmoke-XXXXXX")
pid=""
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
for procs in 1 3; do
  # shellcheck disable=SC2086
  "$loadgen" $common --no-setup --tenant 1 --queues 1,2,3 --customers 200 --conns 3 --depth 16 \
    --rate 1500 --seconds 2 --open-procs $procs >"$dir/out" 2>&1 || { cat "$dir/out"; exit 1; }
  cat "$dir/out"
  grep -q 'errors 0' "$dir/out" || { echo "errors reported"; exit 1; }
  grep -q '^send lateness (send - due): p50 ' "$dir/out" || { echo "no lateness line"; exit 1; }
  rate=$(sed -n 's/.*: \([0-9]*\) requests\/s.*/\1/p' "$dir/out")
  [ "$rate" -ge 1425 ] && [ "$rate" -le 1575 ] || { echo "sent $rate/s, want 1500 +- 5%"; exit 1; }
  # The schedule holds 1,500 x 2 = 3,000 requests (one per connection may straddle the stop);
  # the server must hold exactly those on top of what it held: none lost, none sent twice.
  msgs=$(sed -n 's/^server: \([0-9]*\) messages.*/\1/p' "$dir/out")
  diff=$((msgs - held - 3000))
  [ "$diff" -ge -3 ] && [ "$diff" -le 3 ] || {
    echo "server holds $msgs messages, expected $held + 3000 (+- 3)"; exit 1; }
  held=$msgs
done
kill "$pid"
wait "$pid" || { echo "ticketqd did not stop cleanly"; exit 1; }
pid=""
echo "loadgen_smoke: ok"
