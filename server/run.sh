#!/usr/bin/env bash
# The README's run command: installs missing packages, builds an optimised ticketqd in
# build/release and starts it on ./data (listening on 127.0.0.1:7070 unless told otherwise).
# Extra arguments go to ticketqd (e.g. server/run.sh --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DTQ_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" --target ticketqd ticketq_cli
mkdir -p data
exec build/release/server/ticketqd --data ./data --listen "${TICKETQ_LISTEN:-127.0.0.1:7070}" "$@"
