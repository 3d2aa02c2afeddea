#!/usr/bin/env bash
# `cmake --install` gives a usable SDK package: client/examples builds against
# it with find_package(basin) and runs against the real broker.
# Usage: install_test.sh SOURCE_DIR BUILD_DIR BASIND
source "$(dirname "$0")/lib.sh"
src=$1
build=$2
basind=$3
work=$(mktemp -d)
trap 'stop_broker; rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null || fail "cmake --install"
[ -f "$work/prefix/include/basin/client.h" ] || fail "headers not installed"
[ -f "$work/prefix/lib/libbasin.a" ] || fail "library not installed"
cmake -S "$src/client/examples" -B "$work/ex" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  >/dev/null || fail "configure the example with find_package(basin)"
cmake --build "$work/ex" >/dev/null || fail "build the example"

start_broker "$basind"
trap 'stop_broker; rm -rf "$work"' EXIT
out=$("$work/ex/producer_consumer" "$ADDR")
[ "$(grep -c ' ate ' <<<"$out")" -eq 9 ] || fail "example output: $out"
grep -q "all work done" <<<"$out" || fail "example did not finish: $out"
echo "install_test: 1 passed, 0 failed"
