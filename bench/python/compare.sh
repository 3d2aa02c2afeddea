#!/usr/bin/env bash
# Python clients side by side: the basin package, redis-py and
# multiprocessing.JoinableQueue, on this machine, in one run.
#   bench/python/compare.sh [BUILD_DIR] [py_bench.py options...]
#   bench/python/compare.sh --quick          # a short trial: 20,000 messages, 1 run
# Starts a private basind (ephemeral port) and a private redis-server (a free
# port, no persistence) on loopback, runs bench/python/py_bench.py against
# them (medians of 3 runs by default) and prints its Markdown table. Both
# servers are stopped on exit. Nothing is built: BUILD_DIR (default build)
# must hold broker/basind; bench/basin-bench is used for the C++ row when
# present. Installs Debian's redis-server and python3-redis if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  build=$1
  shift
fi
python=${PYTHON:-/usr/bin/python3}
if [ ! -x "$build/broker/basind" ]; then
  echo "compare.sh: no $build/broker/basind: build it first (cmake --build $build --target basind)" >&2
  exit 1
fi
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for p in redis-server python3-redis python3-grpcio python3-protobuf; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
# The basin package: the build's copy (with the generated stubs) if there is one.
if [ -f "$build/client/python/basin/v1/queue_pb2.py" ]; then
  package_dir=$build/client/python
else
  package_dir=client/python
fi

source tests/integration/lib.sh
work=$(mktemp -d /tmp/basin-pybench.XXXXXX)
redis_pid=""
cleanup() {
  stop_broker
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # through cleanup: a stray server would skew the next run

# Redis on a port that is free now (the kernel picks it; nothing else binds
# it between this and redis-server's bind on a quiet machine).
redis_port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
  kill -0 "$redis_pid" 2>/dev/null || { cat "$work/redis.log" >&2; echo "compare.sh: redis-server exited" >&2; exit 1; }
  sleep 0.1
done
redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG || { echo "compare.sh: redis-server did not start" >&2; exit 1; }

start_broker "$build/broker/basind"
trap cleanup EXIT  # start_broker set its own

echo "basind $(git rev-parse --short HEAD 2>/dev/null || echo '?') at $ADDR (pid $BROKER_PID)," \
  "redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2) at 127.0.0.1:$redis_port (pid $redis_pid)," \
  "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))" >&2
"$python" bench/python/py_bench.py --basin "$ADDR" --redis "127.0.0.1:$redis_port" \
  --server-pid "basind=$BROKER_PID" --server-pid "redis=$redis_pid" \
  --package-dir "$package_dir" --basin-bench "$build/bench/basin-bench" "$@"
