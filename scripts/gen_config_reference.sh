#!/usr/bin/env bash
# Rewrites the configuration reference in docs/operations.md (between its
# config-reference markers) from `basind --config-reference`, the flag table
# compiled into basind. tests/ops checks that the two agree.
#   scripts/gen_config_reference.sh [BASIND]   (default build/broker/basind)
set -euo pipefail
cd "$(dirname "$0")/.."
basind=${1:-build/broker/basind}
reference=$("$basind" --config-reference)
BASIN_REFERENCE="$reference" /usr/bin/python3 - <<'PY'
import os
path = "docs/operations.md"
begin, end = "<!-- config-reference: begin -->\n", "<!-- config-reference: end -->"
text = open(path).read()
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + begin + os.environ["BASIN_REFERENCE"] + "\n" + end + tail)
PY
