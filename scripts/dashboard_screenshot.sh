#!/usr/bin/env bash
# Remakes docs/dashboard.png: the dashboard test (tests/ops/test_dashboard.py)
# in headless Chromium against a freshly built basind, keeping its screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build --target basind basin_python
PYTHONPATH=build/client/python BASIN_BASIND=build/broker/basind \
  BASIN_DASHBOARD_SCREENSHOT="$PWD/docs/dashboard.png" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/ops/test_dashboard.py -k follows
