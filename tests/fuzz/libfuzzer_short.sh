#!/usr/bin/env bash
# tests/fuzz/libfuzzer_short.sh SOURCE_DIR BUILD_DIR [SECONDS]
# The default test run's brief libFuzzer session: builds every tests/fuzz/targets/*.c with clang
# (-fsanitize=fuzzer plus ASan/UBSan) in its own build directory and runs each for SECONDS
# (default 15) on a copy of its committed corpus. Any crash, leak or sanitizer report fails the
# test and leaves the reproducer (crash-*) in BUILD_DIR/work_<target>. Longer runs: configure with
# -DTQ_FUZZ=ON and build fuzz_<target>_run (docs/architecture.md, "Tests").
set -euo pipefail
src=$1 build=$2 seconds=${3:-15}
command -v clang >/dev/null || { echo "clang not installed (tests/install-deps.sh installs it)"; exit 1; }
CC=clang cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTQ_SANITIZE=ON -DTQ_FUZZ=ON \
  -DTQ_WERROR=ON -DTQ_BENCH=OFF >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
targets=()
for f in "$src"/tests/fuzz/targets/*.c; do targets+=("$(basename "$f" .c)"); done
cmake --build "$build" -j2 --target "${targets[@]}" >"$build.build.log" 2>&1 || { tail -30 "$build.build.log"; exit 1; }
for t in "${targets[@]}"; do
  work="$build/work_$t"
  mkdir -p "$work"
  corpus="$src/tests/fuzz/corpus/$t"
  args=("$work")
  [ -d "$corpus" ] && args+=("$corpus")
  [ "$t" = fuzz_tzif ] && [ -d /usr/share/zoneinfo/Europe ] && args+=(/usr/share/zoneinfo/Europe)
  echo "libFuzzer: $t for ${seconds}s"
  (cd "$work" && "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
      "${args[@]}" 2>&1 | tail -n 12)
  status=${PIPESTATUS[0]}
  [ "$status" -eq 0 ] || { echo "libFuzzer: $t FAILED (exit $status)"; exit 1; }
done
echo "libFuzzer: ${#targets[@]} targets ran ${seconds}s each without a finding"
