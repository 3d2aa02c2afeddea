#!/usr/bin/env bash
# Runs basin-bench workloads against a private basind (port 0, loopback) and
# prints a Markdown table of medians of 3 runs.
#   bench/run.sh [BUILD_DIR]     (default build/)
# Workloads: pub/sub 1 publisher -> 1 and 10 subscribers, and unary queue
# put+get+task_done 1P/1C and 4P/4C; 100-byte messages.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
source tests/integration/lib.sh
start_broker "$build/broker/basind"

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
field() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }

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
run "pub/sub 1 publisher → 1 subscriber" --mode pubsub --publishers 1 --subscribers 1 --size 100 --messages 50000
run "pub/sub 1 publisher → 10 subscribers" --mode pubsub --publishers 1 --subscribers 10 --size 100 --messages 20000
run "queue unary 1P/1C (put, get, task_done)" --mode unary --producers 1 --consumers 1 --size 100 --messages 20000
run "queue unary 4P/4C (put, get, task_done)" --mode unary --producers 4 --consumers 4 --size 100 --messages 40000
