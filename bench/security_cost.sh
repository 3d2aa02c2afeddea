#!/usr/bin/env bash
# What security costs: one basind binary started four ways, alternated so the
# machine's drift falls on all alike, each run with basin-bench:
#   plain       no users, plaintext (the figures of docs/benchmarks.md)
#   token       users, every call with a bearer token, plaintext (loopback)
#   tls         TLS, no users
#   tls+token   TLS and users
# Stream 1P/1C (1,000,000 100-byte messages, acks on: the token is checked
# once per stream) and unary put/get (each call checked: the token cache's
# cost). Prints every run and the medians. Certificates are made with openssl.
#   bench/security_cost.sh [RUNS] [BUILD_DIR]   (RUNS default 5)
#   MODES="plain token" KINDS=unary bench/security_cost.sh 9   (a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5} build=${2:-build}
source tests/integration/lib.sh
source bench/lib.sh
bench="$build/bench/basin-bench"
basind="$build/broker/basind"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout key.pem -out cert.pem -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null
)
token=$("$basind" --new-token | sed -n 's/^token: //p')
hash=$(printf '%s\n' "$token" | "$basind" --hash-token)
# A realistic table: the bench's user among 20, so a token lookup is not the
# first-entry case.
for i in $(seq 1 19); do
  printf '[[users]]\nname = "other%s"\ntokens = ["%s"]\nread = "x%s"\n\n' "$i" \
    "$(printf 'other-token-%s-0123456789\n' "$i" | "$basind" --hash-token)" "$i"
done >"$work/users.toml"
printf '[[users]]\nname = "bench"\ntokens = ["%s"]\nconfigure = ".*"\nwrite = ".*"\nread = ".*"\n' \
  "$hash" >>"$work/users.toml"

one() {  # MODE BENCH_MODE -> msg/s
  local broker_args=() client_args=()
  case "$1" in
    token) broker_args=(--users "$work/users.toml"); client_args=(--token "$token") ;;
    tls) broker_args=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
         client_args=(--ca "$work/cert.pem") ;;
    tls+token) broker_args=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem"
                            --users "$work/users.toml")
               client_args=(--ca "$work/cert.pem" --token "$token") ;;
  esac
  start_broker "$basind" "${broker_args[@]}"
  if [ "$2" = stream ]; then
    "$bench" --addr "$ADDR" "${client_args[@]}" --json --mode stream --producers 1 \
      --consumers 1 --size 100 --messages 1000000 2>/dev/null | field received_per_sec
  else
    "$bench" --addr "$ADDR" "${client_args[@]}" --json --mode unary --producers 1 \
      --consumers 1 --size 100 --messages 20000 2>/dev/null | field received_per_sec
  fi
  stop_broker
}

modes=${MODES:-plain token tls tls+token}
for kind in ${KINDS:-stream unary}; do
  declare -A results=()
  for i in $(seq 1 "$runs"); do
    order=$modes
    [ $((i % 2)) -eq 0 ] && order=$(echo "$modes" | tr ' ' '\n' | tac | tr '\n' ' ')
    for mode in $order; do
      r=$(one "$mode" "$kind")
      echo "run $i $kind $mode $r"
      results[$mode]+="$r "
    done
  done
  for mode in $modes; do
    # shellcheck disable=SC2086  # a list of numbers
    echo "median $kind $mode $(printf '%s\n' ${results[$mode]} | median)"
  done
  unset results
done
rm -rf "$work"
