#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build, and run every test.
#  1. build/          unit and integration tests (ctest), warnings as errors,
#                     lock-order ranks checked
#  2. build-tsan/     core and storage unit tests under ThreadSanitizer (gRPC and
#                     abseil are not instrumented, so TSan runs on those layers alone)
#  3. build-asan/     every test under AddressSanitizer + UndefinedBehaviorSanitizer
#     build/          then the soak test (tests/soak): 16 clients for 2 minutes
#  4. build-fuzz/     each libFuzzer target for a bounded time (clang, ASan+UBSan)
#  5. build-release/  a user's Release build of basind and the SDK (no -Werror),
#                     which must compile
#  6. tests/container  the Dockerfile built with podman and the image checked
#                     (skipped, saying why, where no container engine can run)
set -euo pipefail
cd "$(dirname "$0")/.."
checks=(-DBASIN_WERROR=ON -DBASIN_LOCK_RANK_CHECK=ON)
BASIN_CMAKE_ARGS="${checks[*]}" BASIN_SETUP_TOOLS=1 bash scripts/setup.sh

sanitizer_build() {  # DIR SANITIZER [TARGET]
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBASIN_SANITIZE="$2" \
    -DBASIN_BUILD_BENCH=OFF "${checks[@]}" >/dev/null
  cmake --build "$1" ${3:+--target "$3"}
}

echo "test: core and storage unit tests under ThreadSanitizer"
sanitizer_build build-tsan thread unit_tests
ctest --test-dir build-tsan --output-on-failure -j2 -R '^(QueueTest|BrokerTest|DeliveryTagTest|QueueConcurrencyTest|CommitterTest|SegmentedLogTest|LogJournalTest|DurableQueueTest)\.'

echo "test: every test under AddressSanitizer and UndefinedBehaviorSanitizer"
sanitizer_build build-asan address
UBSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-asan --output-on-failure -j2

echo "test: soak, 2 minutes against the real basind (docs/robustness.md, Soak test)"
./build/tests/soak/basin_soak --seconds 120

echo "test: every test"
ctest --test-dir build --output-on-failure -j2

echo "test: fuzz targets, bounded time each (corpora in tests/fuzz/corpus)"
bash scripts/fuzz.sh

echo "test: a user's Release build"
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DBASIN_BUILD_TESTS=OFF \
  -DBASIN_BUILD_BENCH=OFF >/dev/null
cmake --build build-release --target basind basinctl basin_client

echo "test: the container image (tests/container/run.sh)"
status=0
bash tests/container/run.sh build/client/basinctl || status=$?
# 77: no engine can run here; run.sh has said why.
[ "$status" -eq 0 ] || [ "$status" -eq 77 ] || exit "$status"
