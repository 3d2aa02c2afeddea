#!/usr/bin/env bash
# basinctl against the real broker: each command and its exit codes
# (0 ok, 2 usage, 3 empty/full, 4 closed, 5 not found).
# Usage: cli_test.sh BASIND BASINCTL
source "$(dirname "$0")/lib.sh"
basind=$1
start_broker "$basind"
basinctl=$2
c() { "$basinctl" --addr "$ADDR" "$@"; }

expect_exit 0 c create jobs --max-size 2
expect_exit 0 c put jobs first
printf 'second\nthird\n' | { expect_exit 3 c put jobs --timeout 100ms; }
[ "$(c stat jobs --json | grep -o '"size":[0-9]*')" = '"size":2' ] || fail "stat size"
c ls | grep -q '^jobs ' || fail "ls"
[ "$(c get jobs)" = first ] || fail "get first"
tag=$(c get jobs --no-ack 2>&1 >/dev/null)
expect_exit 0 c done jobs "$tag"
expect_exit 1 c done jobs "$tag"   # ALREADY_DONE is an error
expect_exit 3 c get jobs --timeout 100ms
expect_exit 0 c join jobs --timeout 1s
expect_exit 0 c close jobs
expect_exit 4 c get jobs
expect_exit 4 c put jobs late
expect_exit 5 c stat nosuch
expect_exit 2 c frobnicate
expect_exit 2 c get
expect_exit 0 c rm jobs
expect_exit 0 c health

# Scheduling: a delayed put is not there at once, is counted, then arrives.
expect_exit 0 c create later
expect_exit 0 c put later soon --delay 2s
expect_exit 3 c get later --timeout 0s
[ "$(c stat later --json | grep -o '"delayed":[0-9]*')" = '"delayed":1' ] || fail "stat delayed"
[ "$(c get later --timeout 10s)" = soon ] || fail "delayed get"
expect_exit 0 c put later past --at 2001-02-03T04:05:06.5+01:00
[ "$(c get later --timeout 0s)" = past ] || fail "past --at"
expect_exit 2 c put later x --at tomorrow
expect_exit 2 c put later x --delay 1s --at 2001-02-03T04:05:06Z
expect_exit 1 c put later x --delay 31d
expect_exit 0 c create poison
expect_exit 0 c create retried --retry-backoff 2s,3s --dead-letter-queue poison
c stat retried --json | grep -q '"retry_backoff_ms":\[2000,3000\]' || fail "stat retry_backoff"
expect_exit 0 c put retried job
tag=$(c get retried --no-ack 2>&1 >/dev/null)
expect_exit 0 c release retried "$tag"
expect_exit 3 c get retried --timeout 0s
tag=$(c get retried --timeout 10s --no-ack 2>&1 >/dev/null)
expect_exit 0 c release retried "$tag" --delay 0s
tag=$(c get retried --timeout 0s --no-ack 2>&1 >/dev/null)
expect_exit 0 c release retried "$tag" --reject
[ "$(c get poison --timeout 5s)" = job ] || fail "rejected message in the dead-letter queue"
expect_exit 2 c release retried "$tag" --reject --delay 1s
expect_exit 2 c create bad --retry-backoff 1s,,2s
expect_exit 0 c create ranked --max-priority 5 --message-ttl 1h
c stat ranked --json | grep -q '"max_priority":5' || fail "stat max_priority"
c stat ranked --json | grep -q '"message_ttl_ms":3600000' || fail "stat message_ttl"
expect_exit 0 c put ranked low --priority 1
expect_exit 0 c put ranked high --priority 5
expect_exit 0 c put ranked brief --ttl 100ms --priority 5
expect_exit 1 c put ranked x --priority 11
for _ in $(seq 1 100); do
  c stat ranked --json | grep -q '"total_expired":1' && break
  sleep 0.05
done
[ "$(c get ranked --timeout 0s)" = high ] || fail "priority order"
[ "$(c get ranked --timeout 0s)" = low ] || fail "priority order (low)"
c stat ranked --json | grep -q '"total_expired":1' || fail "ttl expired"
expect_exit 0 c create grouped
expect_exit 0 c put grouped g1 --group g
expect_exit 0 c put grouped g2 --group g
tag=$(c get grouped --no-ack 2>&1 >/dev/null)
expect_exit 3 c get grouped --timeout 0s   # g2 waits for g1
c stat grouped --json | grep -q '"active_groups":1' || fail "stat active_groups"
expect_exit 0 c done grouped "$tag"
[ "$(c get grouped --timeout 0s)" = g2 ] || fail "group order"

# Pub/sub: a subscriber prints "topic<TAB>payload"; a bound queue keeps copies.
sub_out=$(mktemp)
"$basinctl" --addr "$ADDR" subscribe spub cctv1 --pattern 'news.#' >"$sub_out" &
sub_pid=$!
for _ in $(seq 1 400); do
  c topics | grep -q '^spub  *1 ' && break
  sleep 0.05
done
c topics | grep -q '^spub  *1 ' || fail "subscriber never showed up"
expect_exit 0 c create audit
expect_exit 0 c bind 'news.#' audit
printf 'hello
over
' | c publish spub
expect_exit 0 c publish news.eu headline
expect_exit 0 c publish ignored.topic nobody
for _ in $(seq 1 400); do [ "$(wc -l <"$sub_out")" -ge 3 ] && break; sleep 0.05; done
kill -TERM "$sub_pid"; wait "$sub_pid" 2>/dev/null || true
[ "$(printf 'spub	hello
spub	over
news.eu	headline')" = "$(cat "$sub_out")" ] ||
  fail "subscriber output: $(cat "$sub_out")"
rm -f "$sub_out"
[ "$(c get audit)" = headline ] || fail "bound queue"
c topics | grep -q '^binding news.# -> audit$' || fail "binding listed"
expect_exit 0 c unbind 'news.#' audit
expect_exit 5 c unbind 'news.#' audit
expect_exit 1 c publish 'bad topic' x
echo "cli_test: 1 passed, 0 failed"
