#!/usr/bin/env bash
# test.sh — the whole test suite: installs and builds with warnings as errors (Release and ASan+UBSan, and the other
# build types with gcc and clang, compiled only), then runs every test in both full builds, then the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --werror --asan
start=$(date +%s)
echo "== compile only, warnings as errors: gcc Debug, RelWithDebInfo; clang Release, RelWithDebInfo, Debug"
for b in gcc:Debug gcc:RelWithDebInfo clang:Release clang:RelWithDebInfo clang:Debug; do
  dir=build-${b%%:*}-${b#*:}
  CC=${b%%:*} cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="${b#*:}" -DESR_WERROR=ON -DESR_TESTS=OFF >/dev/null
  cmake --build "$dir" -j"$(nproc)" >/dev/null
done
echo "   compiled in $(( $(date +%s) - start )) s"
echo "== release build: ctest"
(cd build && ctest --output-on-failure -j2 -LE slow) # the long soak (label slow): ctest -L slow
echo "== AddressSanitizer + UBSan build: ctest"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j2 -LE 'slow|soak') # the soak's faults in the release build only (time)
echo "== fuzzing: the envelope parser and the schema validator, ${ESR_FUZZ_SECONDS:-60} s each (libFuzzer, ASan, UBSan)"
bash scripts/fuzz.sh "${ESR_FUZZ_SECONDS:-60}"
echo "== all tests passed in $(( $(date +%s) - start )) s"
