#!/usr/bin/env bash
# basind's command line: help, bad flags, BASIN_* environment fallback,
# JSON logs, and a clean exit on SIGINT.
# Usage: daemon_test.sh BASIND BASINCTL
source "$(dirname "$0")/lib.sh"
basind=$1
basinctl=$2

# grep without -q reads all of the help: -q would exit at the match, and a
# help longer than the pipe's first write (4 KiB) would then die of SIGPIPE,
# which pipefail reports as a failure.
"$basind" --help | grep -- '--max-message-bytes' >/dev/null || fail "--help"
expect_exit 2 "$basind" --no-such-flag
expect_exit 2 "$basind" --max-wait soon
expect_exit 2 "$basind" --log-format xml
# --max-memory below 1 MiB (a unit left off) is refused, naming the flag and the minimum.
# (timeout: were it accepted, basind would serve until killed.)
status=0
err=$(timeout 10 "$basind" --listen 127.0.0.1:0 --max-memory 1000 2>&1) || status=$?
[ "$status" -eq 2 ] || fail "--max-memory 1000 exited $status, expected 2"
grep -q -- "--max-memory: at least 1MiB" <<<"$err" || fail "--max-memory 1000: $err"
expect_exit 2 timeout 10 "$basind" --listen 127.0.0.1:0 --max-memory 1
# 1 MiB less the default quarter for pub/sub leaves queues less than one
# largest message (1 MiB): such a put could never be admitted.
status=0
err=$(timeout 10 "$basind" --listen 127.0.0.1:0 --max-memory 1MiB 2>&1) || status=$?
[ "$status" -eq 2 ] || fail "--max-memory 1MiB exited $status, expected 2"
grep -q -- "is below --max-message-bytes" <<<"$err" || fail "--max-memory 1MiB: $err"

# The environment fills in flags; a message over the env-set limit names it.
BASIN_MAX_MESSAGE_BYTES=100 start_broker "$basind"
"$basinctl" --addr "$ADDR" create q
err=$("$basinctl" --addr "$ADDR" put q "$(head -c 200 /dev/zero | tr '\0' x)" 2>&1) && fail "oversize put succeeded"
grep -q "limit of 100 bytes" <<<"$err" || fail "oversize message: $err"
stop_broker

# JSON logs: one object per line on stderr, a line per lifecycle event.
log=$(mktemp)
"$basind" --listen 127.0.0.1:0 --log-format json >/dev/null 2>"$log" &
pid=$!
for _ in $(seq 1 200); do grep -q listening "$log" && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid" || fail "SIGINT exit status $?"
grep -q '^{"time":"[^"]*","level":"info","msg":"basind listening on 127.0.0.1:' "$log" ||
  fail "json start line: $(cat "$log")"
grep -q '"msg":"stopped"' "$log" || fail "json stop line: $(cat "$log")"
rm -f "$log"
echo "daemon_test: 1 passed, 0 failed"
