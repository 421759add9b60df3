#!/usr/bin/env bash
# demo.sh — a one-minute tour of esr: a mock Kafka cluster, a worker applying a ledger stream (with bad events of every
# kind) to SQLite, a kill -9 in the middle of the stream, a restart, a check of the final state against an
# independent oracle computed from the topic read back from Kafka, and at the end the proof that the recovered live
# state equals a replay of the log (esr verify --live: state digests side by side). Exits non-zero if anything
# differs.
#   bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
B=build
ESR=$B/esr
SIM=$B/esr-ledger-sim
EVENTS=40000
ACCOUNTS=2000

work=$(mktemp -d "${TMPDIR:-/tmp}/esr-demo-XXXXXX")
pids=()
ok=0
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$ok" = 1 ]; then rm -rf "$work"; else echo "demo: logs and state kept in $work" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold= plain=; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '   %s\n' "$*"; }
t_start=$(date +%s)

step "1. Start a mock Kafka cluster (librdkafka's mock, in its own process): topics ledger (4 partitions), ledger.dlq"
"$ESR" mock-cluster --topic ledger:4 --topic ledger.dlq:1 --bootstrap-file "$work/bootstrap" \
  >"$work/mock.out" 2>"$work/mock.err" </dev/null &
pids+=($!)
for _ in $(seq 200); do [ -s "$work/bootstrap" ] && break; sleep 0.05; done
[ -s "$work/bootstrap" ] || { echo "demo: the mock cluster did not start" >&2; cat "$work/mock.err" >&2; exit 1; }
BOOT=$(cat "$work/bootstrap")
say "bootstrap servers: $BOOT"

step "2. Configure a worker: consumer-group mode, the ledger handler plugin, one SQLite database per partition"
cat >"$work/worker.conf" <<EOF
topics = ledger
state.dir = $work/state
handlers = $B/handlers/ledger.so
dlq.topic = ledger.dlq
assignment = group
kafka.bootstrap.servers = $BOOT
kafka.group.id = esr-demo
kafka.session.timeout.ms = 6000
log.format = text
EOF
sed 's/^/   | /' "$work/worker.conf"

WORKER=
start_worker() {
  "$ESR" run --config "$work/worker.conf" 2>>"$work/worker-$1.log" &
  WORKER=$!
  pids+=("$WORKER")
}

step "3. Start worker #1 (it joins group esr-demo; the mock's first join into an empty group takes about 3 s)"
start_worker 1
say "pid $WORKER, log $work/worker-1.log"

step "4. Produce $EVENTS ledger events over $ACCOUNTS accounts, ~5,000 per second"
say "about 5% are bad, of every kind: not JSON, bad envelopes, unknown types and versions, double opens, overdrafts,"
say "movements on accounts never opened, amounts 0, -3, 1.5, \"10\", 2^53+2, a Kafka key that is not the account;"
say "one account (whale-0) is driven to the int64 limit, where further deposits must be rejected"
"$SIM" produce --bootstrap "$BOOT" --events "$EVENTS" --accounts "$ACCOUNTS" --bad-pct 5 --seed 2026 --rate 5000 \
  --whale >"$work/produce.log" 2>&1 &
PRODUCER=$!
pids+=("$PRODUCER")

step "5. Once worker #1 has consumed 10,000 events: kill -9 it, while events keep arriving"
"$SIM" wait --bootstrap "$BOOT" --state-dir "$work/state" --applied 10000 --timeout 60 | sed 's/^/   /'
kill -9 "$WORKER"
wait "$WORKER" 2>/dev/null || true
say "worker #1 killed (SIGKILL): no clean shutdown; its open batches are lost, and dead letters it committed but"
say "Kafka had not yet acknowledged wait in the partition's outbox table for the next owner to publish."
say "What it had committed, per partition (state, offset and outbox rows are one SQLite transaction):"
"$SIM" status --bootstrap "$BOOT" --state-dir "$work/state" | sed 's/^/ /'

step "6. Restart: worker #2 on the same state directory"
say "Each partition resumes at the next_offset stored with its state, so nothing is applied twice or skipped."
say "The mock cluster hands a dead member's partitions to a new member only after about 2 x session.timeout.ms"
say "(~12 s here: the dead worker never said goodbye); a real broker does it after one session timeout."
start_worker 2
say "pid $WORKER, log $work/worker-2.log"

step "7. Wait for the producer, then until worker #2 has caught up (every partition at its high watermark, outbox empty)"
wait "$PRODUCER"
tail -n 1 "$work/produce.log" | sed 's/^/   /'
"$SIM" wait --bootstrap "$BOOT" --state-dir "$work/state" --timeout 90 | sed 's/^/   /'
say "worker #2 resumed at:"
grep -o 'ledger\[[0-9]*\]: assigned; resuming at offset [0-9]*' "$work/worker-2.log" | sed 's/^/     /' || true

step "8. Verify: read the ledger topic back from Kafka, fold it through an independent oracle, compare everything"
"$SIM" verify --bootstrap "$BOOT" --state-dir "$work/state" --show 8 | sed 's/^/   /'
verdict=${PIPESTATUS[0]}

step "9. Stop worker #2 with SIGTERM (finish the batch, commit, close the consumer)"
kill -TERM "$WORKER"
code=0
wait "$WORKER" || code=$?
say "worker #2 exited with code $code"

step "10. Prove it: replay the log into a fresh, isolated state and compare it with the recovered live state"
say "esr verify --live reads each partition's next offset and state digest (a SHA-256 of every ledger table, row by"
say "row in key order) in one read transaction, replays the log from offset 0 to exactly that offset through the same"
say "handler, and prints both digests side by side; any difference would be named down to the row and column."
"$ESR" verify --live --config "$work/worker.conf" | sed 's/^/   /'
proof=${PIPESTATUS[0]}

echo
if [ "$verdict" -ne 0 ] || [ "$code" -ne 0 ] || [ "$proof" -ne 0 ]; then
  echo "demo: FAILED (verify exit $verdict, worker exit $code, verify --live exit $proof)"
  exit 1
fi
ok=1
echo "demo: done in $(( $(date +%s) - t_start )) s"
