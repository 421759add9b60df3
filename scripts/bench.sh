#!/usr/bin/env bash
# bench.sh — the benchmark of issues 6 and 15: installs what is missing and builds (scripts/setup.sh, into build/), then
# runs build/esr-bench, which measures esr (rate and CPU per event) against limits measured in the same run on the same
# 2 M-event ledger stream (consume, parse, store) and against a hand-written Python worker, on the stream produced in
# bulk and in small message sets, a naive worker, recovery after kill -9 with a large and a small state, peak RSS and
# esr replay against the worker's catch-up, and prints a table. Takes a few minutes;
# progress goes to stderr, the table to stdout. Not part of the test suite: exit 0 whenever it could measure.
#   scripts/bench.sh                                  the issue's figures with the defaults
#   scripts/bench.sh --events 1000000 --repeats 5     other sizes (--partitions, --accounts, ...: see --help)
#   scripts/bench.sh --only esr,recovery              a subset
#   scripts/bench.sh --set apply.threads=1            a worker setting for every worker of the run
# Figures are noisy when other processes use the CPU: the table prints the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "bench: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec build/esr-bench "$@"
