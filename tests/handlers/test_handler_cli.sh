#!/usr/bin/env bash
# test_handler_cli.sh — `esr handler new` and `esr handler test` as a handler author meets them: a wrong expectation
# fails with a diff (exit 1), a handler that reads the clock is caught (exit 1), a bad events file names its line
# (exit 2), a handler that cannot be loaded is exit 3, an invalid name or a non-empty directory is exit 2.
#   usage: test_handler_cli.sh ESR BUILD_DIR SOURCE_DIR
set -uo pipefail
esr=$1 build=$2 src=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/esr-handler-cli-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { out=$("$@" 2>&1); code=$?; }  # sets out and code

inv=(--handler "$build/handlers/inventory.so" --schemas "$src/schemas" --events "$src/handlers/inventory/tests/events.jsonl")
run "$esr" handler test "${inv[@]}" --expect "$src/handlers/inventory/tests/expected.txt"
[ $code = 0 ] || fail "the inventory's own expectations: exit $code: $out"

# A wrong expectation: exit 1, and the diff names the line expected and the line found.
sed 's/^sku-a|7|4$/sku-a|8|4/' "$src/handlers/inventory/tests/expected.txt" >"$work/wrong.txt"
run "$esr" handler test "${inv[@]}" --expect "$work/wrong.txt"
[ $code = 1 ] || fail "a wrong expectation: exit $code, expected 1"
grep -q -- '- sku-a|8|4' <<<"$out" && grep -q -- '+ sku-a|7|4' <<<"$out" || fail "no diff in: $out"
echo "# a wrong expectation fails with a diff:"; grep -E '^  [-+] ' <<<"$out" | sed 's/^/#   /'

# A handler that reads the clock: the two applications differ.
printf '{"key":"k","value":{"type":"nondet.event","data":{}}}\n' >"$work/nondet.jsonl"
run "$esr" handler test --handler "$build/tests/plugins/nondet.so" --events "$work/nondet.jsonl"
[ $code = 1 ] || fail "a non-deterministic handler: exit $code, expected 1: $out"
grep -q "not deterministic" <<<"$out" || fail "not named non-deterministic: $out"
echo "# a handler that reads the clock is caught: $(grep -o 'gave two different states' <<<"$out")"

# A bad events file: exit 2 naming the file and line; a handler that cannot be loaded: exit 3.
printf '{"key":"k","value":{"type":"x","data":{}}}\n{"key": 1}\n' >"$work/bad.jsonl"
run "$esr" handler test --handler "$build/handlers/inventory.so" --events "$work/bad.jsonl"
[ $code = 2 ] && grep -q "bad.jsonl:2:" <<<"$out" || fail "a bad events file: exit $code: $out"
run "$esr" handler test --handler "$work/missing.so" --events "$work/nondet.jsonl"
[ $code = 3 ] || fail "a missing handler: exit $code, expected 3: $out"

# esr handler new: an invalid name, a directory that is not empty: exit 2; a good one writes the project.
run "$esr" handler new Bad-Name --dir "$work/x"
[ $code = 2 ] || fail "an invalid name: exit $code"
mkdir -p "$work/full" && touch "$work/full/file"
run "$esr" handler new ok --dir "$work/full"
[ $code = 2 ] || fail "a non-empty directory: exit $code"
run "$esr" handler new counter --dir "$work/counter"
[ $code = 0 ] && [ -f "$work/counter/counter.c" ] && [ -f "$work/counter/tests/expected.txt" ] || fail "handler new: $out"
echo "PASS"
