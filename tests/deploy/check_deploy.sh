#!/usr/bin/env bash
# check_deploy.sh SOURCE_DIR BUILD_DIR KUBECTL NODE_MODULES_DIR — deploy/ checked by machines (ctest: deploy_k8s):
#   1. the kustomization renders with Debian's kubectl (kubernetes-client: kustomize v2), and its sources and the
#      rendered objects pass yamllint;
#   2. every object validates against the Kubernetes API schemas offline, and the worker's needs hold (validate.js);
#   3. every path the image recipe copies exists: from the build stage, after the same staged `cmake --install`
#      (DESTDIR, --prefix /usr); from the build context, in the source tree; its runtime packages are Debian's;
#   4. the entrypoint's logic: the ordinal from HOSTNAME, static and group mode, refusals.
set -euo pipefail
src=$1 build=$2 kubectl=$3 modules=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
lint='{extends: default, rules: {line-length: {max: 120}, document-start: disable, comments: {min-spaces-from-content: 1}, indentation: {spaces: consistent, indent-sequences: consistent}}}'

echo "== kustomize (kubectl $("$kubectl" version --client -o json 2>/dev/null | grep -o '"gitVersion": *"[^"]*"' | cut -d'"' -f4))"
"$kubectl" kustomize "$src/deploy/k8s" > "$tmp/rendered.yaml"
echo "   $(grep -c '^kind:' "$tmp/rendered.yaml") objects rendered"
yamllint -s -d "$lint" "$src"/deploy/k8s/*.yaml "$src"/deploy/prometheus/*.yaml "$tmp/rendered.yaml"
echo "   yamllint: clean"

echo "== validation against the Kubernetes API schemas"
NODE_PATH="$modules/node_modules" node "$src/tests/deploy/validate.js" < "$tmp/rendered.yaml"

echo "== image recipe: paths after a staged cmake --install"
DESTDIR="$tmp/stage" cmake --install "$build" --prefix /usr > /dev/null
n=0
while read -r line; do
  set -- $line
  if [ "$2" = --from=build ]; then
    path=$3
    case "$path" in /stage/*) ;; *) echo "COPY --from=build $path: not under /stage" >&2; exit 1 ;; esac
    [ -e "$tmp/stage${path#/stage}" ] || { echo "Dockerfile: COPY --from=build $path: missing after the staged install" >&2; exit 1; }
  else
    [ -e "$src/$2" ] || { echo "Dockerfile: COPY $2: not in the source tree" >&2; exit 1; }
  fi
  n=$((n + 1))
done < <(grep -E '^COPY ' "$src/deploy/Dockerfile" | grep -v '^COPY \. ')
echo "   $n COPY sources present"
# The plugin and schema paths the configuration names are those the image installs.
grep -q 'handlers = /usr/lib/esr/ledger.so' "$src/deploy/k8s/configmap.yaml"
grep -q 'schemas.dir = /usr/share/esr/schemas' "$src/deploy/k8s/configmap.yaml"
[ -e "$tmp/stage/usr/lib/esr/ledger.so" ] && [ -e "$tmp/stage/usr/share/esr/schemas/account.opened.v1.json" ]
# The runtime stage's packages are Debian's.
pkgs=$(sed -n '/^FROM debian:bookworm-slim/,$p' "$src/deploy/Dockerfile" | grep -oE '\b(lib[a-z0-9.+-]+|ca-certificates)\b' | sort -u)
for p in $pkgs; do
  apt-cache show "$p" > /dev/null 2>&1 || dpkg-query -W "$p" > /dev/null 2>&1 || { echo "Dockerfile: package $p unknown" >&2; exit 1; }
done
echo "   runtime packages: $(echo $pkgs | wc -w), all Debian's"

echo "== entrypoint"
fake="$tmp/fake-esr"
printf '#!/bin/sh\necho "args=$*"\necho "instance=${ESR_INSTANCE:-}"\necho "member=${ESR_KAFKA_GROUP_INSTANCE_ID:-}"\n' > "$fake"
chmod +x "$fake"
ep="$src/deploy/entrypoint.sh"
out=$(env -i PATH="$PATH" HOSTNAME=esr-2 ESR_ASSIGNMENT=static ESR_REPLICAS=4 ESR_BIN="$fake" sh "$ep")
grep -qx 'instance=2/4' <<<"$out" && grep -qx 'args=run --config /etc/esr/worker.conf' <<<"$out"
out=$(env -i PATH="$PATH" HOSTNAME=esr-11 ESR_BIN="$fake" ESR_CONFIG=/x.conf sh "$ep")
grep -qx 'member=esr-11' <<<"$out" && grep -qx 'instance=' <<<"$out" && grep -qx 'args=run --config /x.conf' <<<"$out"
out=$(env -i PATH="$PATH" HOSTNAME=esr-1 ESR_KAFKA_GROUP_INSTANCE_ID=mine ESR_BIN="$fake" sh "$ep")
grep -qx 'member=mine' <<<"$out"
if env -i PATH="$PATH" HOSTNAME=worker ESR_BIN="$fake" sh "$ep" > /dev/null 2> "$tmp/err"; then exit 1; fi
grep -q 'cannot read an ordinal' "$tmp/err"
if env -i PATH="$PATH" HOSTNAME=esr-0 ESR_ASSIGNMENT=static ESR_BIN="$fake" sh "$ep" > /dev/null 2> "$tmp/err"; then exit 1; fi
grep -q 'ESR_REPLICAS' "$tmp/err"
echo "   static, group and both refusals behave"
echo "deploy: all checks passed"
