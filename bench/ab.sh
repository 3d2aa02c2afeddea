#!/usr/bin/env bash
# A/B throughput of two basind binaries with the same client, alternating runs
# so that the machine's drift falls on both alike.
#   bench/ab.sh OLD_BASIND NEW_BASIND [RUNS] [BUILD_DIR]   (RUNS default 9)
# Each run starts a fresh broker and sends 1,000,000 100-byte messages through
# one Producer and one Consumer (stream 1P/1C, acks on), then 500,000 through
# a durable queue (--fsync batch, the default, in a fresh --data-dir). Prints
# every run and the medians. basin-bench comes from BUILD_DIR (default build/).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/ab.sh OLD_BASIND NEW_BASIND [RUNS] [BUILD_DIR]" >&2; exit 2; }
old=$1 new=$2 runs=${3:-9} build=${4:-build}
source tests/integration/lib.sh
source bench/lib.sh
bench="$build/bench/basin-bench"

one() {  # BASIND durable|memory -> received msg/s
  local data=""
  if [ "$2" = durable ]; then
    data=$(mktemp -d /tmp/basin-ab.XXXXXX)
    start_broker "$1" --data-dir "$data"
    "$bench" --addr "$ADDR" --json --mode stream --producers 1 --consumers 1 --size 100 \
      --messages 500000 --durable 2>/dev/null | field received_per_sec
  else
    start_broker "$1"
    "$bench" --addr "$ADDR" --json --mode stream --producers 1 --consumers 1 --size 100 \
      --messages 1000000 2>/dev/null | field received_per_sec
  fi
  stop_broker
  [ -z "$data" ] || rm -rf "$data"
}

declare -A results
for i in $(seq 1 "$runs"); do
  # Alternate which binary goes first.
  if [ $((i % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for kind in memory durable; do
    for who in $order; do
      bin=$old
      [ "$who" = new ] && bin=$new
      r=$(one "$bin" "$kind")
      echo "run $i $kind $who $r"
      results[$kind.$who]+="$r "
    done
  done
done
for kind in memory durable; do
  for who in old new; do
    # shellcheck disable=SC2086  # a list of numbers
    echo "median $kind $who $(printf '%s\n' ${results[$kind.$who]} | median)"
  done
done
