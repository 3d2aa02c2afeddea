#!/usr/bin/env bash
# Recovery time of a durable queue: fills one with N 100-byte messages (no
# consumer), kills basind with SIGKILL, and restarts it 3 times on the same
# data directory, printing the broker's own "recovered ... in T ms" line.
#   bench/recovery.sh [BUILD_DIR] [MESSAGES]   (default build, 1000000)
# The first restart follows a drop of the page cache when run as root (a cold
# start); the others read a warm cache.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
messages=${2:-1000000}
cmake --build "$build" --target basind basin-bench >/dev/null
source tests/integration/lib.sh
data=$(mktemp -d /tmp/basin-recovery.XXXXXX)
trap 'stop_broker; rm -rf "$data"' EXIT
start_broker "$build/broker/basind" --data-dir "$data"
"$build/bench/basin-bench" --addr "$ADDR" --mode stream --producers 1 --consumers 0 --keep \
  --durable --size 100 --messages "$messages" | head -2
kill -KILL "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null || true
BROKER_PID=""
echo "log on disk: $(du -sh "$data" | cut -f1)"
for run in 1 2 3; do
  if [ "$run" = 1 ] && [ "$(id -u)" = 0 ]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
  fi
  "$build/broker/basind" --listen 127.0.0.1:0 --data-dir "$data" --log-level info >"$data.out" 2>&1 &
  pid=$!
  while ! grep -q "listening on" "$data.out"; do sleep 0.05; done
  grep -o "recovered .*" "$data.out"
  kill -TERM "$pid"
  wait "$pid" || true
done
rm -f "$data.out"
