#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build, and run every test.
#  1. build/       unit and integration tests (ctest)
#  2. build-asan/  the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#  3. build-tsan/  core and storage unit tests under ThreadSanitizer (gRPC and abseil
#                  are not instrumented, so TSan runs on those layers alone)
set -euo pipefail
cd "$(dirname "$0")/.."
BASIN_SETUP_TOOLS=1 bash scripts/setup.sh

sanitizer_build() {  # DIR SANITIZER [TARGET]
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBASIN_SANITIZE="$2" \
    -DBASIN_BUILD_BENCH=OFF >/dev/null
  cmake --build "$1" ${3:+--target "$3"}
}

echo "test: core and storage unit tests under ThreadSanitizer"
sanitizer_build build-tsan thread unit_tests
ctest --test-dir build-tsan --output-on-failure -j2 -R '^(QueueTest|BrokerTest|DeliveryTagTest|QueueConcurrencyTest|CommitterTest|SegmentedLogTest|LogJournalTest|DurableQueueTest)\.'

echo "test: every test under AddressSanitizer and UndefinedBehaviorSanitizer"
sanitizer_build build-asan address
UBSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-asan --output-on-failure -j2

echo "test: every test"
ctest --test-dir build --output-on-failure -j2
