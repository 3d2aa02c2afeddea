#!/usr/bin/env bash
# The proto is lint-clean and formatted under buf, and a running broker
# answers buf curl through reflection: list, CreateQueue, Put, Get, health.
# Usage: buf_test.sh SOURCE_DIR BASIND
source "$(dirname "$0")/lib.sh"
src=$1
basind=$2
buf="$src/tools/node_modules/.bin/buf"
[ -x "$buf" ] || fail "buf is not installed at $buf (scripts/setup.sh installs it)"

(cd "$src" && "$buf" lint) || fail "buf lint"
(cd "$src" && "$buf" format --diff --exit-code) || fail "buf format"

start_broker "$basind"
curl_() { "$buf" curl --protocol grpc --http2-prior-knowledge "$@"; }

services=$(curl_ --list-services "http://$ADDR")
for s in basin.v1.QueueService grpc.health.v1.Health; do
  grep -qx "$s" <<<"$services" || fail "service $s not listed: $services"
done
curl_ -d '{"name":"orders","max_size":3}' "http://$ADDR/basin.v1.QueueService/CreateQueue" |
  grep -q '"created": true' || fail "CreateQueue"
curl_ -d '{"queue":"orders","payload":"aGk="}' "http://$ADDR/basin.v1.QueueService/Put" |
  grep -q '"messageId": "1"' || fail "Put"
got=$(curl_ -d '{"queue":"orders"}' "http://$ADDR/basin.v1.QueueService/Get")
grep -q '"payload": "aGk="' <<<"$got" || fail "Get: $got"
curl_ -d '{}' "http://$ADDR/grpc.health.v1.Health/Check" | grep -q SERVING || fail "health"
# Errors: non-zero exit, the documented code, and the reason in trailers.
set +e
err=$(curl_ -v -d '{"queue":"orders","timeout":"0s"}' "http://$ADDR/basin.v1.QueueService/Get" 2>&1)
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "Get on an empty queue succeeded"
grep -q '"code": "deadline_exceeded"' <<<"$err" || fail "empty Get code: $err"
grep -qi 'basin-error-reason: QUEUE_EMPTY' <<<"$err" || fail "empty Get reason: $err"
echo "buf_test: 1 passed, 0 failed"
