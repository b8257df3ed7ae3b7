#!/usr/bin/env bash
# The README's test command: installs missing packages, builds with ASan+UBSan and warnings as
# errors in build/test, and runs the whole default test suite under ctest.
# Extra arguments go to ctest (e.g. tests/run.sh -R storage).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Debug -DTQ_SANITIZE=ON -DTQ_WERROR=ON >/dev/null
cmake --build build/test -j"$(nproc)"
cd build/test
ctest --output-on-failure --timeout 900 -j"$(nproc)" "$@"
