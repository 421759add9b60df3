#!/usr/bin/env bash
# setup.sh — installs what is missing on Debian 12 (apt-get update, then apt-get install) and builds esr.
#   scripts/setup.sh                   Release build in build/
#   scripts/setup.sh --asan            also an AddressSanitizer+UBSan build in build-asan/
#   scripts/setup.sh --werror [--asan] the same with warnings as errors (ESR_WERROR, what scripts/test.sh runs)
set -euo pipefail
cd "$(dirname "$0")/.."
asan=0 werror=OFF
for arg in "$@"; do
  case "$arg" in
    --asan) asan=1 ;;
    --werror) werror=ON ;;
    *) echo "usage: scripts/setup.sh [--asan] [--werror]" >&2; exit 2 ;;
  esac
done

PKGS=(build-essential cmake pkg-config librdkafka-dev libsqlite3-dev libcjson-dev libcmocka-dev libssl-dev
      sqlite3 kcat procps libcurl4-openssl-dev ca-certificates
      libpcre2-dev json-schema-test-suite # JSON Schema: regex library; the official test suite (tests/schema)
      libyaml-dev                         # handlers written in SQL (their YAML file)
      clang libclang-rt-14-dev             # libFuzzer harnesses (scripts/fuzz.sh)
      libmicrohttpd-dev                    # the worker's /healthz, /readyz, /metrics
      libmimalloc-dev libjemalloc-dev      # the benchmark's alloc rows (and ESR_ALLOCATOR=mimalloc|jemalloc)
      chromium                             # headless, renders esr history's HTML page in tests (test_history)
      prometheus yamllint                  # tests: a real Prometheus and promtool (metrics, alerts), deploy/ linted
      python3-confluent-kafka)             # the benchmark's hand-written Python peer worker (tests/bench)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm run the local S3 server of the S3 checkpoint store test (tests/s3). Checked as commands: a Node.js from
# elsewhere (NodeSource's bundles npm and conflicts with Debian's npm package) will do.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# Debian's kubectl (kubernetes-client: its kustomize is v2) renders deploy/k8s in the tests. Where another package
# owns /usr/bin/kubectl (a cloud SDK's), Debian's package is unpacked under /opt/esr-tools/kubernetes-client instead
# (tests/deploy looks there first).
kc_unpack=0
if ! dpkg-query -W -f='${Status}' kubernetes-client 2>/dev/null | grep -q "install ok installed" &&
   [ ! -x /opt/esr-tools/kubernetes-client/usr/bin/kubectl ]; then
  if dpkg-query -S /usr/bin/kubectl >/dev/null 2>&1; then kc_unpack=1; else missing+=(kubernetes-client); fi
fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
if [ ${#missing[@]} -gt 0 ] || [ $kc_unpack = 1 ]; then
  [ ${#missing[@]} -eq 0 ] || echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [ $kc_unpack = 1 ]; then
    echo "setup: unpacking Debian's kubernetes-client under /opt/esr-tools (/usr/bin/kubectl belongs to another package)"
    dl=$(mktemp -d)
    (cd "$dl" && chmod 777 . && apt-get download -qq kubernetes-client)
    $SUDO mkdir -p /opt/esr-tools/kubernetes-client
    $SUDO dpkg-deb -x "$dl"/kubernetes-client_*.deb /opt/esr-tools/kubernetes-client
    rm -rf "$dl"
  fi
fi

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DESR_WERROR=$werror >/dev/null
cmake --build build -j"$jobs" >/dev/null
echo "setup: built build/esr"
if [ $asan = 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DESR_SANITIZE=ON -DESR_WERROR=$werror >/dev/null
  cmake --build build-asan -j"$jobs" >/dev/null
  echo "setup: built build-asan/esr (AddressSanitizer + UBSan)"
fi
