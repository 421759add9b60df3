#!/usr/bin/env bash
# test_sdk.sh — the handler SDK as a user meets it (label `integration`): `cmake --install` into a temporary prefix,
# then a handler from a separate source tree (tests/sdk/hello, copied out of this repository) built against nothing but
# the installed files, twice: with pkg-config and a plain compiler, and with CMake's find_package(esr). Each plugin then
# runs in a worker (the installed esr, a mock cluster, events produced with kcat) and its state is checked with sqlite3.
#   usage: test_sdk.sh BUILD_DIR HELLO_SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd); hello_src=$(cd "$2" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/esr-sdk-XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap 'cleanup; if [ "${ok:-0}" = 1 ]; then rm -rf "$work"; else echo "kept $work"; tail -n 20 "$work"/*.log 2>/dev/null; fi' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
echo "# installed into $prefix"
# Only the plugin ABI is public: the library's own headers stay out of the installed tree.
headers=$(cd "$prefix/include" && find . -type f | sort | tr '\n' ' ')
[ "$headers" = "./esr/handler.h ./esr/json.h " ] || fail "installed headers: $headers"
for f in bin/esr lib/esr/ledger.so lib/pkgconfig/esr-handler.pc lib/cmake/esr/esrConfig.cmake; do
  [ -e "$prefix/$f" ] || [ -e "$prefix/${f/lib\//lib/$(gcc -print-multiarch)/}" ] || fail "missing $f"
done

# The handler's source tree, outside this repository.
cp -r "$hello_src" "$work/hello"
cd "$work"

# 1. pkg-config and a plain compiler.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cflags=$(pkg-config --cflags --libs esr-handler)
case "$cflags" in *"$(dirname "$build")"*) fail "pkg-config points into the source or build tree: $cflags" ;; esac
cc -shared -Wall -Werror -o hello-pc.so hello/hello.c $cflags
echo "# built with pkg-config: cc -shared hello.c $cflags"

# 2. CMake's find_package(esr).
cmake -S hello -B hello-build -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="-Wall -Werror" >cmake.log
cmake --build hello-build >>cmake.log
[ -f hello-build/hello.so ] || fail "CMake built no hello.so"
grep -q -- "-I$hello_src\|runtime/include" hello-build/CMakeFiles/hello.dir/flags.make && fail "CMake used the source tree"
echo "# built with CMake find_package(esr)"

# A mock cluster, and both plugins in workers of the installed esr.
"$prefix/bin/esr" mock-cluster --brokers 1 --topic greetings:1 --topic greetings.dlq:1 \
  --bootstrap-file "$work/bootstrap" >mock.log 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -s "$work/bootstrap" ] && break; sleep 0.05; done
bootstrap=$(cat "$work/bootstrap")
{
  for i in 1 2 3; do echo 'ada:{"type":"hello.said","data":{"name":"ada"}}'; done
  echo 'grace:{"type":"hello.said","data":{"name":"grace"}}'
  echo 'nobody:{"type":"hello.said","data":{"name":"nobody"}}'
} | kcat -P -b "$bootstrap" -t greetings -p 0 -K: 2>>kcat.log

run() { # run NAME PLUGIN EXTRA-CONFIG
  local name=$1 plugin=$2
  cat >"$name.conf" <<CONF
topics = greetings
state.dir = $work/$name-state
handlers = $plugin
dlq.topic = greetings.dlq
kafka.bootstrap.servers = $bootstrap
assignment = static
partitions = 0
$3
CONF
  "$prefix/bin/esr" run --config "$name.conf" >"$name.log" 2>&1 &
  local pid=$! db="$work/$name-state/greetings-0.db" next=""
  pids+=($pid)
  for _ in $(seq 600); do
    next=$(sqlite3 "file:$db?mode=ro" "SELECT next_offset FROM esr_offsets" 2>/dev/null || true)
    [ "$next" = 5 ] && break
    kill -0 $pid 2>/dev/null || fail "$name: the worker exited"
    sleep 0.05
  done
  [ "$next" = 5 ] || fail "$name: next_offset '$next', expected 5"
  kill -TERM $pid; wait $pid || fail "$name: the worker did not stop cleanly"
  local rows; rows=$(sqlite3 "file:$db?mode=ro" "SELECT name||'='||n||'/'||said FROM greetings ORDER BY name" | tr '\n' ' ')
  local dead; dead=$(sqlite3 "file:$db?mode=ro" "SELECT dead_count FROM esr_offsets")
  echo "# $name: $rows(dead letters: $dead)"
  [ "$rows" = "ada=3/$4 grace=1/$4 " ] || fail "$name: state $rows"
  [ "$dead" = 1 ] || fail "$name: $dead dead letters, expected 1 (nobody)"
}
run pkgconfig "$work/hello-pc.so" "" hello
run cmake "$work/hello-build/hello.so" "handler.hello.greeting = bonjour" bonjour

# An unknown option is refused at start by the handler itself, exit 3, naming it.
sed 's/^handler.hello.greeting.*/handler.hello.greetin = x/' cmake.conf >typo.conf
set +e; "$prefix/bin/esr" run --config typo.conf >typo.log 2>&1; code=$?; set -e
[ $code = 3 ] || fail "a misspelled handler option: exit $code, expected 3"
grep -q "unknown option 'greetin'" typo.log || fail "the refusal does not name the option: $(cat typo.log)"
echo "# a misspelled option is refused: $(grep -o "unknown option '[a-z]*'" typo.log)"
# esr handler new: a project made in an empty directory builds against the installed esr and passes its own test;
# a deliberately wrong expectation then fails it, with a diff.
"$prefix/bin/esr" handler new tally --dir "$work/tally" >new.log
cmake -S tally -B tally/build -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="-Wall -Werror" >>cmake.log
cmake --build tally/build >>cmake.log
ctest --test-dir tally/build --output-on-failure >tally-ok.log 2>&1 || fail "the generated project's test fails: $(cat tally-ok.log)"
echo "# esr handler new tally: built against the installed SDK, its test passes as generated"
sed -i 's/^apple|7$/apple|70/' tally/tests/expected.txt
if ctest --test-dir tally/build --output-on-failure >tally-bad.log 2>&1; then fail "a wrong expectation passed"; fi
grep -q -- '- apple|70' tally-bad.log && grep -q -- '+ apple|7' tally-bad.log || fail "no diff: $(cat tally-bad.log)"
echo "# a wrong expectation fails with a diff: $(grep -- '- apple|70' tally-bad.log | xargs) / $(grep -- '+ apple|7' tally-bad.log | xargs)"
ok=1
echo "PASS"
