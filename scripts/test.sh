#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build, and run every test:
# unit and integration tests (ctest), then the core's unit tests again under
# ThreadSanitizer in build-tsan/.
set -euo pipefail
cd "$(dirname "$0")/.."
BASIN_SETUP_TOOLS=1 bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j2

echo "test: core unit tests under ThreadSanitizer"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBASIN_SANITIZE=thread \
  -DBASIN_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan --target unit_tests
ctest --test-dir build-tsan --output-on-failure -j2 -L unit -R '^(Queue|Broker|DeliveryTag|QueueConcurrency)'
