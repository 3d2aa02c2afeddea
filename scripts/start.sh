#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build, and run basind on
# its defaults (127.0.0.1:7878, in memory). Extra arguments go to basind.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec build/broker/basind "$@"
