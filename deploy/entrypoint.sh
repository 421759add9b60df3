#!/bin/sh
# esr-entrypoint — starts the worker of a StatefulSet pod. The pod name (esr-2) gives the ordinal: in static assignment
# it picks the pod's share of the partitions (instance = ORDINAL/REPLICAS), in group mode it is the static group member
# id, so that a restarted pod gets its partitions back without a rebalance (on a real broker).
set -eu
ordinal="${HOSTNAME##*-}"
case "$ordinal" in '' | *[!0-9]*) echo "esr-entrypoint: cannot read an ordinal from HOSTNAME=$HOSTNAME" >&2; exit 2 ;; esac
if [ "${ESR_ASSIGNMENT:-group}" = static ]; then
  : "${ESR_REPLICAS:?ESR_REPLICAS must give the StatefulSet's replicas with assignment = static}"
  export ESR_INSTANCE="$ordinal/$ESR_REPLICAS"
else
  export ESR_KAFKA_GROUP_INSTANCE_ID="${ESR_KAFKA_GROUP_INSTANCE_ID:-$HOSTNAME}"
fi
exec "${ESR_BIN:-/usr/bin/esr}" run --config "${ESR_CONFIG:-/etc/esr/worker.conf}"
