#!/usr/bin/env bash
# Basin, RabbitMQ and Redis side by side on this machine, in one run.
#   bench/compare.sh [--durable] [BUILD_DIR]
# Installs Debian's rabbitmq-server, redis-server and their client libraries
# if missing, starts private servers under /tmp on loopback, runs each
# workload 3 times per broker and writes the medians into docs/benchmarks.md
# (between the compare markers). 100-byte messages.
#   throughput 1P/1C and 4P/4C, 200,000 messages, acks on (Redis has none)
#   latency at a fixed 5,000 msg/s through a waiting consumer, and its floor:
#   basin-echo's answer over one bidi stream at the same pace
#   pub/sub 1 -> 1 and 1 -> 10, 1,000,000 messages (Basin's Publisher, Redis
#   PUBLISH pipelined by 100)
#   memory per queued message: 1,000,000 messages, no consumer, RSS delta
#   unary put + get + task_done against basin-echo (the same service with
#   handlers that do nothing): what the broker adds to three gRPC calls
# With --durable, instead: throughput 1P/1C and 4P/4C of durable queues —
# Basin under each --fsync policy, RabbitMQ with a durable queue, persistent
# messages and publisher confirms, Redis with appendfsync everysec and always
# (between the compare-durable markers).
set -euo pipefail
cd "$(dirname "$0")/.."
durable=0
if [ "${1:-}" = --durable ]; then
  durable=1
  shift
fi
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
cmake --build "$build" --target basind basin-bench basin-echo peer-redis-bench peer-amqp-bench >/dev/null

source tests/integration/lib.sh
source bench/lib.sh
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
trap 'exit 130' INT TERM  # through cleanup: a stray server would skew the next run
for port in $REDIS_PORT $AMQP_PORT; do
  if ss -ltn | grep -q ":$port "; then
    echo "compare.sh: port $port is in use (a server left from an earlier run?)" >&2
    exit 1
  fi
done

"$build/bench/basin-echo" serve >"$work/echo.addr" &
echo_pid=$!
pids+=($echo_pid)

start_redis() {  # REDIS-FLAGS...
  redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --dir "$work" "$@" >"$work/redis.log" 2>&1 &
  redis_pid=$!
  pids+=($redis_pid)
}
start_rabbitmq() {
  # RabbitMQ, private: its own node name, ports, data and logs under $work.
  rm -rf "$work/rmq"
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
}
await_ports() {  # PORT...: until each one listens
  local port
  for port in "$@"; do
    for _ in $(seq 1 120); do
      ss -ltn | grep -q ":$port " && break
      sleep 0.5
    done
  done
}
start_servers() {  # fresh, empty Basin, Redis and RabbitMQ
  start_redis --appendonly no
  start_rabbitmq
  start_broker "$build/broker/basind"
  trap cleanup EXIT  # start_broker set its own
  await_ports $AMQP_PORT $REDIS_PORT
  amqp_pid=$(pgrep -n -u rabbitmq beam.smp)  # the Erlang VM holds the messages, not the script
}
stop_servers() {
  stop_broker
  kill "$redis_pid" 2>/dev/null || true
  pkill -u rabbitmq beam.smp 2>/dev/null || true
  while ss -ltn | grep -q ":$AMQP_PORT \|:$REDIS_PORT "; do sleep 0.5; done
}
run3() {  # FIELD CMD...: median of FIELD over 3 runs
  local f=$1
  shift
  for _ in 1 2 3; do "$@" 2>/dev/null | field "$f"; done | median
}
basin() { "$build/bench/basin-bench" --addr "$ADDR" --json --mode stream "$@"; }
redis() { "$build/bench/peer-redis-bench" --port $REDIS_PORT "$@"; }
amqp() { "$build/bench/peer-amqp-bench" --port $AMQP_PORT "$@"; }
rss() { awk '/^VmRSS:/ {printf "%d\n", $2 * 1024}' "/proc/$1/status"; }
settled_rss() {  # PID: RSS once it stops moving (RabbitMQ's queue process absorbs its mailbox late)
  local now last=0
  now=$(rss "$1")
  while [ $((now - last)) -gt $((now / 100)) ] || [ $((last - now)) -gt $((now / 100)) ]; do
    last=$now
    sleep 1
    now=$(rss "$1")
  done
  echo "$now"
}
per_message() {  # PID CMD...: RSS delta / 1,000,000 after putting 1,000,000 messages
  local pid=$1 before after
  shift
  before=$(settled_rss "$pid")
  "$@" >/dev/null 2>&1
  after=$(settled_rss "$pid")
  echo $(((after - before) / 1000000))
}
# basin-echo prints its address once it serves (and flushes it): wait for
# that line rather than read a file it may not have written yet.
for _ in $(seq 300); do
  grep -q "listening on" "$work/echo.addr" && break
  kill -0 "$echo_pid" 2>/dev/null || { echo "compare.sh: basin-echo exited" >&2; exit 1; }
  sleep 0.1
done
echo_addr=$(awk '/listening on/ {print $3}' "$work/echo.addr")
[ -n "$echo_addr" ] || { echo "compare.sh: basin-echo printed no address in 30 s" >&2; exit 1; }

# write_table MARKER TEXT: replaces the block between MARKER's markers in
# docs/benchmarks.md (appends it the first time).
write_table() {
  python3 - "$1" "$2" <<'PY'
import sys, re
path, name, table = "docs/benchmarks.md", sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
block = begin + "\n" + table + "\n" + end
if begin in text:
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
else:
    text += "\n## Side by side (bench/" + name + ")\n\n" + block + "\n"
open(path, "w").write(text)
PY
}
machine() {
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)):"
  echo "basind $(git rev-parse --short HEAD), RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server),"
  echo "Redis $(dpkg-query -W -f='${Version}' redis-server). Medians of 3 runs; 100-byte messages."
}

if [ $durable = 1 ]; then
  declare -A cell
  shapes=("1 1" "4 4")
  for policy in always batch never; do
    rm -rf "$work/basin-data"
    start_broker "$build/broker/basind" --data-dir "$work/basin-data" --fsync "$policy"
    trap cleanup EXIT
    for shape in "${shapes[@]}"; do
      set -- $shape
      cell["basin-$policy $shape"]=$(run3 received_per_sec basin --durable --producers "$1" --consumers "$2" --messages 200000)
    done
    stop_broker
  done
  start_rabbitmq
  await_ports $AMQP_PORT
  for shape in "${shapes[@]}"; do
    set -- $shape
    cell["rabbitmq $shape"]=$(run3 received_per_sec amqp --durable 1 --producers "$1" --consumers "$2" --messages 200000)
  done
  pkill -u rabbitmq beam.smp 2>/dev/null || true
  for fsync in everysec always; do
    rm -rf "$work"/appendonly*
    start_redis --appendonly yes --appendfsync "$fsync"
    await_ports $REDIS_PORT
    for shape in "${shapes[@]}"; do
      set -- $shape
      cell["redis-$fsync $shape"]=$(run3 received_per_sec redis --producers "$1" --consumers "$2" --messages 200000)
    done
    kill "$redis_pid"
    while ss -ltn | grep -q ":$REDIS_PORT "; do sleep 0.5; done
  done
  table=$(
    machine
    echo "Durable put throughput, msg/s received (200,000 messages, acks on where the broker has"
    echo "them). Basin: a durable queue (\`basin-bench --durable\`, Produce/Consume streams), one"
    echo "column per \`--fsync\` policy. RabbitMQ: durable queue, persistent messages (delivery mode"
    echo "2), publisher confirms with at most 1,000 unconfirmed, manual acks. Redis: LPUSH pipelined"
    echo "by 100 and RPOP by 100 with \`appendonly yes\` and the named \`appendfsync\`."
    echo
    echo "| workload | Basin always | Basin batch (5 ms) | Basin never | RabbitMQ | Redis everysec | Redis always |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for shape in "${shapes[@]}"; do
      set -- $shape
      echo "| ${1}P/${2}C | ${cell["basin-always $shape"]} | ${cell["basin-batch $shape"]} | ${cell["basin-never $shape"]} | ${cell["rabbitmq $shape"]} | ${cell["redis-everysec $shape"]} | ${cell["redis-always $shape"]} |"
    done
  )
  echo "$table"
  write_table compare-durable "$table"
  exit 0
fi

start_servers
rows=()
# Memory first, while every server is fresh.
rows+=("| bytes per queued message (RSS delta / 1,000,000) | $(per_message "$BROKER_PID" basin --producers 1 --consumers 0 --keep --messages 1000000) | $(per_message "$amqp_pid" amqp --producers 1 --consumers 0 --messages 1000000) | $(per_message "$redis_pid" redis --producers 1 --consumers 0 --messages 1000000) |")
# Then fresh servers again: a million queued messages would cost the runs
# below CPU (RabbitMQ keeps working on its backlog) and memory.
stop_servers
start_servers
for shape in "1 1" "4 4"; do
  set -- $shape
  rows+=("| throughput ${1}P/${2}C, msg/s | $(run3 received_per_sec basin --producers "$1" --consumers "$2" --messages 200000) | $(run3 received_per_sec amqp --producers "$1" --consumers "$2" --messages 200000) | $(run3 received_per_sec redis --producers "$1" --consumers "$2" --messages 200000) |")
done
declare -A basin_latency
for f in p50_us p90_us p99_us p999_us; do
  label=${f%_us}
  label=${label/p999/p99.9}
  basin_latency[$f]=$(run3 $f basin --messages 25000 --rate 5000 --linger-us 0 --prefetch 100)
  rows+=("| latency at 5,000 msg/s, $label µs | ${basin_latency[$f]} | $(run3 $f amqp --messages 25000 --rate 5000) | $(run3 $f redis --messages 25000 --rate 5000) |")
done
# The floor under Basin's latency: one bidi stream through basin-echo (the
# same gRPC stack, a handler that answers at once), paced the same way.
ping() { "$build/bench/basin-echo" ping --addr "$echo_addr" --messages 25000 --rate 5000 --json; }
floor50=$(run3 p50_us ping)
floor99=$(run3 p99_us ping)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
rows+=("| latency floor: one bidi stream through basin-echo at 5,000 msg/s, p50 / p99 µs | $floor50 / $floor99 (Basin's stream: $(ratio "${basin_latency[p50_us]}" "$floor50")× / $(ratio "${basin_latency[p99_us]}" "$floor99")× the floor) | – | – |")
# Pub/sub: one publisher, 1 and 10 subscribers; deliveries per second.
for subs in 1 10; do
  rows+=("| pub/sub 1 → $subs, deliveries/s | $(run3 received_per_sec "$build/bench/basin-bench" --addr "$ADDR" --json --mode pubsub --publishers 1 --subscribers $subs --messages 1000000) | – | $(run3 received_per_sec redis --mode pubsub --producers 1 --consumers $subs --messages 1000000) |")
done

# Unary: Basin against its own ceiling, the same calls answered by basin-echo.
# The cost is CPU time, server and client together, per message: the rates
# differ in shape (Basin's producers wait for room, echo's never do), the
# work per call does not.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cost_per_message() {  # SERVER_PID MESSAGES CMD...: CPU µs per message
  local pid=$1 n=$2 before after client
  shift 2
  before=$(cpu_ticks "$pid")
  client=$("$@" 2>/dev/null | field cpu_s)
  after=$(cpu_ticks "$pid")
  awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v c="$client" -v n="$n" \
    'BEGIN {printf "%.1f\n", (t / hz + c) * 1e6 / n}'
}
for shape in "1 1" "4 4"; do
  set -- $shape
  unary=(--addr "$ADDR" --json --mode unary --producers "$1" --consumers "$2" --messages 20000)
  echo_load=(load --addr "$echo_addr" --json --producers "$1" --consumers "$2" --messages 20000)
  rate=$(run3 received_per_sec "$build/bench/basin-bench" "${unary[@]}")
  ceiling=$(run3 received_per_sec "$build/bench/basin-echo" "${echo_load[@]}")
  cost=$(for _ in 1 2 3; do cost_per_message "$BROKER_PID" 20000 "$build/bench/basin-bench" "${unary[@]}"; done | median)
  floor=$(for _ in 1 2 3; do cost_per_message "$echo_pid" 20000 "$build/bench/basin-echo" "${echo_load[@]}"; done | median)
  rows+=("| unary put + get + task_done ${1}P/${2}C: msg/s; CPU µs per message | $rate; $cost µs (empty calls: $ceiling; $floor µs — Basin costs $(awk -v a="$cost" -v b="$floor" 'BEGIN {printf "%.2f", a / b}')×) | – | – |")
done

table=$(
  machine
  echo "Basin: Produce/Consume streams (batches of 500, prefetch 500, acks in batches of 100)."
  echo "RabbitMQ: transient messages, prefetch 500, manual acks (multiple, every 100; one per"
  echo "message for latency). Redis: LPUSH pipelined by 100, RPOP with count 100, no acks;"
  echo "BRPOP for latency. Latency: a"
  echo "waiting consumer, messages paced at 5,000/s, put-to-receipt; the floor is basin-echo's"
  echo "send-to-answer over one bidi stream at the same pace. Pub/sub: Basin's basin::Publisher"
  echo "(PublishStream, batches of 500) to S subscriptions, Redis PUBLISH pipelined by 100 to S"
  echo "SUBSCRIBE connections; 1,000,000 messages, deliveries (messages × S) per second. Unary: one message"
  echo "per call (P threads put, C threads get + task_done); \"empty calls\" is basin-echo,"
  echo "the same three calls answered by handlers that do nothing. CPU µs per message is"
  echo "server + client CPU time / messages; the factor is Basin's over the empty calls'."
  echo
  echo "| workload | Basin | RabbitMQ | Redis |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
)
echo "$table"
write_table compare "$table"
