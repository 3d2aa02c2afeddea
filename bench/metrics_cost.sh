#!/usr/bin/env bash
# What serving metrics costs the hot path: stream 1P/1C (1,000,000 100-byte
# messages, acks on) against one basind binary started without --http-listen
# and with it, /metrics scraped every second during the run (a Prometheus
# scrape interval is usually 15 s: this is harsher). Alternates the two so that
# the machine's drift falls on both alike; prints every run and the medians.
#   bench/metrics_cost.sh [RUNS] [BUILD_DIR]   (RUNS default 9)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-9} build=${2:-build}
source tests/integration/lib.sh
source bench/lib.sh
bench="$build/bench/basin-bench"
basind="$build/broker/basind"

one() {  # off|on -> received msg/s
  local scraper=""
  if [ "$1" = on ]; then
    start_broker "$basind" --http-listen 127.0.0.1:0
    local http=""
    for _ in $(seq 1 100); do
      http=$(sed -n 's/^basind http on //p' "$BROKER_OUT")
      [ -n "$http" ] && break
      sleep 0.05
    done
    (while curl -sf "http://$http/metrics" >/dev/null; do sleep 1; done) &
    scraper=$!
  else
    start_broker "$basind"
  fi
  "$bench" --addr "$ADDR" --json --mode stream --producers 1 --consumers 1 --size 100 \
    --messages 1000000 2>/dev/null | field received_per_sec
  [ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true
  stop_broker
}

declare -A results
for i in $(seq 1 "$runs"); do
  if [ $((i % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
  for mode in $order; do
    r=$(one "$mode")
    echo "run $i metrics-$mode $r"
    results[$mode]+="$r "
  done
done
for mode in off on; do
  # shellcheck disable=SC2086  # a list of numbers
  echo "median metrics-$mode $(printf '%s\n' ${results[$mode]} | median)"
done
