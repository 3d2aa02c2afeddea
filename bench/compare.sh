#!/usr/bin/env bash
# Basin, RabbitMQ and Redis side by side on this machine, in one run.
#   bench/compare.sh [BUILD_DIR]
# Installs Debian's rabbitmq-server, redis-server and their client libraries
# if missing, starts private servers under /tmp on loopback, runs each
# workload 3 times per broker and writes the medians into docs/benchmarks.md
# (between the compare markers). 100-byte messages.
#   throughput 1P/1C and 4P/4C, 200,000 messages, acks on (Redis has none)
#   latency at a fixed 5,000 msg/s through a waiting consumer
#   memory per queued message: 1,000,000 messages, no consumer, RSS delta
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for p in rabbitmq-server redis-server librabbitmq-dev libhiredis-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
cmake -S . -B "$build" -G Ninja >/dev/null
cmake --build "$build" --target basind basin-bench peer-redis-bench peer-amqp-bench >/dev/null

source tests/integration/lib.sh
work=$(mktemp -d /tmp/basin-compare.XXXXXX)
chmod 755 "$work"  # RabbitMQ runs as its own user and must reach its files
REDIS_PORT=26379
AMQP_PORT=25672
pids=()
cleanup() {
  stop_broker
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -u rabbitmq beam.smp 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)

# RabbitMQ, private: its own node name, ports, data and logs under $work.
mkdir -p "$work/rmq"
echo "[]." >"$work/rmq/enabled_plugins"
: >"$work/rmq/rabbitmq.conf"
chown -R rabbitmq:rabbitmq "$work/rmq" 2>/dev/null || true
(
  export HOME="$work/rmq" RABBITMQ_NODENAME=basincompare@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$AMQP_PORT RABBITMQ_DIST_PORT=$((AMQP_PORT + 1)) ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_MNESIA_BASE="$work/rmq/mnesia" RABBITMQ_LOG_BASE="$work/rmq/log" \
    RABBITMQ_CONFIG_FILE="$work/rmq/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$work/rmq/enabled_plugins" \
    RABBITMQ_FEATURE_FLAGS_FILE="$work/rmq/feature_flags" RABBITMQ_PID_FILE="$work/rmq/pid"
  exec rabbitmq-server >"$work/rmq.log" 2>&1
) &
pids+=($!)
start_broker "$build/broker/basind"
for _ in $(seq 1 120); do
  ss -ltn | grep -q ":$AMQP_PORT " && ss -ltn | grep -q ":$REDIS_PORT " && break
  sleep 0.5
done

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
field() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }
run3() {  # FIELD CMD...: median of FIELD over 3 runs
  local f=$1
  shift
  for _ in 1 2 3; do "$@" 2>/dev/null | field "$f"; done | median
}
basin() { "$build/bench/basin-bench" --addr "$ADDR" --json --mode stream "$@"; }
redis() { "$build/bench/peer-redis-bench" --port $REDIS_PORT "$@"; }
amqp() { "$build/bench/peer-amqp-bench" --port $AMQP_PORT "$@"; }
rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
per_message() {  # PID CMD...: RSS delta / 1,000,000 after putting 1,000,000 messages
  local pid=$1 before after
  shift
  before=$(rss "$pid")
  "$@" >/dev/null 2>&1
  after=$(rss "$pid")
  echo $(((after - before) / 1000000))
}

rows=()
# Memory first, while every server is fresh.
# RabbitMQ's and Redis's figures are not measured yet: finding the Erlang
# VM's pid and reading Redis's RSS reliably is still to do.
rows+=("| bytes per queued message (RSS delta / 1,000,000) | $(per_message "$BROKER_PID" basin --producers 1 --consumers 0 --keep --messages 1000000) | not measured | not measured |")
for shape in "1 1" "4 4"; do
  set -- $shape
  rows+=("| throughput ${1}P/${2}C, msg/s | $(run3 received_per_sec basin --producers "$1" --consumers "$2" --messages 200000) | $(run3 received_per_sec amqp --producers "$1" --consumers "$2" --messages 200000) | $(run3 received_per_sec redis --producers "$1" --consumers "$2" --messages 200000) |")
done
for f in p50_us p99_us; do
  rows+=("| latency at 5,000 msg/s, ${f%_us} µs | $(run3 $f basin --messages 25000 --rate 5000 --linger-us 0 --prefetch 100) | $(run3 $f amqp --messages 25000 --rate 5000) | $(run3 $f redis --messages 25000 --rate 5000) |")
done

table=$(
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)):"
  echo "basind $(git rev-parse --short HEAD), RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server),"
  echo "Redis $(dpkg-query -W -f='${Version}' redis-server). Medians of 3 runs; 100-byte messages."
  echo "Basin: Produce/Consume streams (batches of 500, prefetch 500, acks on). RabbitMQ:"
  echo "transient messages, prefetch 500, manual acks (multiple, every 100). Redis: LPUSH"
  echo "pipelined by 100, RPOP with count 100, no acks; BRPOP for latency."
  echo
  echo "| workload | Basin | RabbitMQ | Redis |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
)
echo "$table"
python3 - "$table" <<'PY'
import sys, re
path = "docs/benchmarks.md"
text = open(path).read()
block = "<!-- compare:begin -->\n" + sys.argv[1] + "\n<!-- compare:end -->"
if "<!-- compare:begin -->" in text:
    text = re.sub(r"<!-- compare:begin -->.*?<!-- compare:end -->", lambda m: block, text, flags=re.S)
else:
    text += "\n## Side by side (bench/compare.sh)\n\n" + block + "\n"
open(path, "w").write(text)
PY
