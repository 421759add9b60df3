#!/usr/bin/env bash
# test.sh — the whole test suite: installs and builds with warnings as errors (Release, and Debug with ASan+UBSan; the
# other build types compiled only: gcc RelWithDebInfo, clang Release and Debug), then runs every test in the Release
# build and all but the long ones (labels soak, long) in the sanitizer build, then the fuzzers. CI: under 25 minutes
# on 2 cores from a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --werror --asan
start=$(date +%s)
echo "== compile only, warnings as errors: gcc RelWithDebInfo; clang Release, Debug (gcc Debug: the sanitizer build)"
for b in gcc:RelWithDebInfo clang:Release clang:Debug; do
  dir=build-${b%%:*}-${b#*:}
  CC=${b%%:*} cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="${b#*:}" -DESR_WERROR=ON -DESR_TESTS=OFF >/dev/null
  cmake --build "$dir" -j"$(nproc)" >/dev/null
done
echo "   compiled in $(( $(date +%s) - start )) s"
echo "== release build: ctest"
(cd build && ctest --output-on-failure -j2 -LE slow) # the long soak (label slow): ctest -L slow
echo "== AddressSanitizer + UBSan build: ctest"
# The moving-partitions test kills one worker there instead of three (the release build runs all three).
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ESR_MOVING_KILLS=1 \
   ctest --output-on-failure -j2 -LE 'slow|soak|long') # the soak and other long tests: release build only (time)
echo "== fuzzing: the envelope parser and the schema validator, ${ESR_FUZZ_SECONDS:-30} s each (libFuzzer, ASan, UBSan)"
bash scripts/fuzz.sh "${ESR_FUZZ_SECONDS:-30}"
echo "== all tests passed in $(( $(date +%s) - start )) s"
