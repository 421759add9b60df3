#!/usr/bin/env bash
# test.sh — the whole test suite: installs and builds (release and ASan+UBSan), then runs every test in both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --asan
start=$(date +%s)
echo "== release build: ctest"
(cd build && ctest --output-on-failure -j2)
echo "== AddressSanitizer + UBSan build: ctest"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j2)
echo "== fuzzing: the envelope parser and the schema validator, ${ESR_FUZZ_SECONDS:-60} s each (libFuzzer, ASan, UBSan)"
bash scripts/fuzz.sh "${ESR_FUZZ_SECONDS:-60}"
echo "== all tests passed in $(( $(date +%s) - start )) s"
