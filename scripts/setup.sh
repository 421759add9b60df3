#!/usr/bin/env bash
# setup.sh — installs what is missing on Debian 12 (apt-get update, then apt-get install) and builds esr.
#   scripts/setup.sh            release build in build/
#   scripts/setup.sh --asan     also an AddressSanitizer+UBSan build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config librdkafka-dev libsqlite3-dev libcjson-dev libcmocka-dev libssl-dev
      sqlite3 kcat procps)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs" >/dev/null
echo "setup: built build/esr"
if [ "${1:-}" = "--asan" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DESR_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs" >/dev/null
  echo "setup: built build-asan/esr (AddressSanitizer + UBSan)"
fi
