#!/usr/bin/env bash
# Runs basin-bench workloads against a private basind (port 0, loopback) and
# prints a Markdown table of medians of 3 runs.
#   bench/run.sh [BUILD_DIR]     (default build/)
# Workloads (100-byte messages): streaming produce/consume with acks 1P/1C and
# 4P/4C; latency at a fixed 5,000 msg/s through a waiting consumer; broker
# memory per queued message; pub/sub 1 publisher -> 1 and 10 subscribers; unary
# queue put+get+task_done 1P/1C and 4P/4C.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
source tests/integration/lib.sh
source bench/lib.sh
start_broker "$build/broker/basind"


run() {  # LABEL ARGS...
  local label=$1
  shift
  local rates=() recv=() p50=() p99=()
  for _ in 1 2 3; do
    out=$("$build/bench/basin-bench" --addr "$ADDR" --json "$@" 2>/dev/null)
    rates+=("$(field sent_per_sec <<<"$out")")
    recv+=("$(field received_per_sec <<<"$out")")
    p50+=("$(field p50_us <<<"$out")")
    p99+=("$(field p99_us <<<"$out")")
  done
  printf '| %s | %s | %s | %s | %s |\n' "$label" \
    "$(printf '%s\n' "${rates[@]}" | median)" "$(printf '%s\n' "${recv[@]}" | median)" \
    "$(printf '%s\n' "${p50[@]}" | median)" "$(printf '%s\n' "${p99[@]}" | median)"
}

echo "| workload | sent msg/s | received msg/s | p50 µs | p99 µs |"
echo "| --- | --- | --- | --- | --- |"
run "stream 1P/1C, acks on (Produce batches of 500, Consume prefetch 500)" --mode stream --producers 1 --consumers 1 --size 100 --messages 1000000
run "stream 4P/4C, acks on" --mode stream --producers 4 --consumers 4 --size 100 --messages 1000000
run "stream 1P/1C at a fixed 5,000 msg/s (latency)" --mode stream --producers 1 --consumers 1 --size 100 --messages 25000 --rate 5000 --linger-us 0 --prefetch 100
run "pub/sub 1 publisher → 1 subscriber" --mode pubsub --publishers 1 --subscribers 1 --size 100 --messages 50000
run "pub/sub 1 publisher → 10 subscribers" --mode pubsub --publishers 1 --subscribers 10 --size 100 --messages 20000
run "queue unary 1P/1C (put, get, task_done)" --mode unary --producers 1 --consumers 1 --size 100 --messages 20000
run "queue unary 4P/4C (put, get, task_done)" --mode unary --producers 4 --consumers 4 --size 100 --messages 40000

# Broker memory per queued message: 1,000,000 messages of 100 bytes, no
# consumer; RSS delta of a fresh basind divided by the count.
stop_broker
start_broker "$build/broker/basind"
rss() { awk '/^VmRSS:/ {printf "%d\n", $2 * 1024}' "/proc/$BROKER_PID/status"; }
before=$(rss)
"$build/bench/basin-bench" --addr "$ADDR" --mode stream --producers 1 --consumers 0 --keep \
  --size 100 --messages 1000000 >/dev/null 2>&1
after=$(rss)
per=$(( (after - before) / 1000000 ))
echo
echo "memory: 1,000,000 queued 100-byte messages: RSS +$(( (after - before) / 1048576 )) MiB," \
  "$per bytes per message, $(( per - 100 )) bytes of overhead"
