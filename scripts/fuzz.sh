#!/usr/bin/env bash
# fuzz.sh — builds the libFuzzer harnesses of tests/fuzz with clang (AddressSanitizer + UBSan + libFuzzer) in
# build-fuzz/ and runs each for SECONDS (default 60) on a temporary copy of its committed seed corpus, so the corpus in
# the repository is never modified. Prints the executions run per harness; exits non-zero on any finding (crash, leak,
# timeout, out-of-memory), whose reproducer is kept under build-fuzz/findings/<harness>/.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
case "$secs" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac
command -v clang >/dev/null || { echo "fuzz: clang is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DESR_FUZZ=ON -DESR_SANITIZE=ON \
  -DCMAKE_C_FLAGS="-O1 -gline-tables-only" >/dev/null
cmake --build build-fuzz -j2 --target fuzz_envelope fuzz_schema >/dev/null

status=0
for h in fuzz_envelope fuzz_schema; do
  work=$(mktemp -d "${TMPDIR:-/tmp}/esr-$h-XXXXXX")
  mkdir -p "$work/corpus" "build-fuzz/findings/$h"
  cp tests/fuzz/corpus/$h/* "$work/corpus/"
  log="build-fuzz/findings/$h/last.log"
  dict=(); [ -f "tests/fuzz/$h.dict" ] && dict=(-dict="tests/fuzz/$h.dict")
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "build-fuzz/fuzz/$h" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/findings/$h/" "${dict[@]}" "$work/corpus" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [ $rc -eq 0 ]; then
    echo "fuzz: $h: ${execs:-?} executions in ${secs}s (${rate:-?}/s, coverage ${cov:-?}), no findings"
  else
    echo "fuzz: $h: FINDING after ${execs:-?} executions (exit $rc); see $log and build-fuzz/findings/$h/" >&2
    grep -E 'ERROR:|SUMMARY:|Test unit written' "$log" | head -5 >&2 || true
    status=1
  fi
  rm -rf "$work"
done
exit $status
