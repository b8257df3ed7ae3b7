#!/bin/sh
# tests/server/restart10m_smoke.sh BUILD_DIR: bench/restart-10m.sh end to end, tiny.
#
# Goal: the memory and restart benchmark keeps working: its three phases through a real
# ticketqd (customers by CustomerCreate, one ticket per existing customer, messages to those
# tickets; the script itself fails when a phase leaves other counts than it should), the
# snapshot wait and one kill -9 restart. Method: 2,000 customers and 20,000 messages (the
# messages phase's first slice, at least 1 s, may overshoot them) on BUILD_DIR's binaries; the table must carry a number in each
# per-item row (per customer, per ticket, per message) and the restart row.
set -eu
build=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v curl >/dev/null || { echo "curl not installed (the script reads /metrics)"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/tq-r10smoke-XXXXXX")
out="$dir.out"
trap 'rm -rf "$dir" "$out"' EXIT
bash "$root/bench/restart-10m.sh" --tickets 2000 --messages 20000 --restarts 1 \
  --dir "$dir/run" --build "$build" >"$out" 2>&1 || { cat "$out"; echo "restart-10m.sh failed"; exit 1; }
cat "$out"
num='-\{0,1\}[0-9][0-9.]*' # a number: an empty cell must not match
for row in "| RSS per customer (one identity, no ticket) | $num B |" \
           "| RSS per ticket (phase tickets minus one message at $num B) | $num B |" \
           "| RSS per message (added to existing tickets) | $num B |" \
           '| restart, kill -9 to accepting, median of 1 | [0-9][0-9]* ms'; do
  grep -q "^$row" "$out" || { echo "missing row: $row"; exit 1; }
done
grep -q '^| messages / tickets / customers loaded | [0-9][0-9]* / 2000 / 2000 (SLA policy on)' "$out" ||
  { echo "want 2000 tickets and 2000 customers"; exit 1; }
echo "restart10m_smoke: ok"
