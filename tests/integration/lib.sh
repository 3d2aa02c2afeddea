# Shared by the shell tests: start the real basind on an ephemeral port and
# stop it on exit. Usage: source lib.sh; start_broker BASIND [FLAGS...]
set -euo pipefail

BROKER_PID=""
BROKER_OUT=""
ADDR=""

start_broker() {
  local basind=$1
  shift
  BROKER_OUT=$(mktemp)
  "$basind" --listen 127.0.0.1:0 --log-level warn "$@" >"$BROKER_OUT" &
  BROKER_PID=$!
  trap stop_broker EXIT
  for _ in $(seq 1 400); do
    if grep -q '^basind listening on ' "$BROKER_OUT"; then
      ADDR=$(sed -n 's/^basind listening on //p' "$BROKER_OUT")
      return 0
    fi
    kill -0 "$BROKER_PID" 2>/dev/null || { echo "basind exited early" >&2; return 1; }
    sleep 0.05
  done
  echo "basind did not start" >&2
  return 1
}

stop_broker() {
  if [ -n "$BROKER_PID" ]; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
  fi
  rm -f "$BROKER_OUT"
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# expect_exit CODE CMD...: runs CMD and checks its exit code.
expect_exit() {
  local want=$1
  shift
  local got=0
  "$@" || got=$?
  [ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want"
}
