#!/usr/bin/env bash
# Installs the Debian 12 packages ticketq needs to build and test, if any is missing.
# Used by server/run.sh and tests/run.sh; safe to run again (does nothing when all are there).
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev liburing-dev libzstd-dev
      libxxhash-dev libprotobuf-c-dev protobuf-c-compiler tzdata)
[ "${TQ_WITH_BENCH_DEPS:-0}" = 1 ] && pkgs+=(gnuplot-nox postgresql redis-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ticketq: installing missing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
