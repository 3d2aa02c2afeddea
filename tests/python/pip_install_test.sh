#!/usr/bin/env bash
# The Python package installs offline, as the README says, into a venv that
# sees Debian's python3-grpcio and python3-protobuf, and works from there:
#   /usr/bin/python3 -m venv --system-site-packages VENV
#   VENV/bin/pip install --no-build-isolation --no-deps ./client/python
# Usage: pip_install_test.sh SOURCE_DIR BASIND
set -euo pipefail
src=$1
basind=$2
source "$src/tests/integration/lib.sh"

work=$(mktemp -d)
trap 'stop_broker; rm -rf "$work"' EXIT
# A copy of the package and the protos, as in a checkout, so the build
# leaves nothing in the source tree.
mkdir -p "$work/checkout/client"
cp -r "$src/client/python" "$work/checkout/client/python"
cp -r "$src/proto" "$work/checkout/proto"
rm -f "$work"/checkout/client/python/basin/v1/*_pb2*

/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --no-build-isolation --no-deps --no-index \
  "$work/checkout/client/python" || fail "pip install failed"
[ -f "$work"/venv/lib/python3*/site-packages/basin/py.typed ] || fail "py.typed not installed"
[ -f "$work"/venv/lib/python3*/site-packages/basin/v1/queue_pb2_grpc.py ] \
  || fail "stubs not generated at install"

start_broker "$basind"
cd "$work"  # nothing from the source tree on sys.path
BASIN_ADDRESS=$ADDR "$work/venv/bin/python" - <<'PY' || fail "the installed package did not work"
import os, basin
assert "site-packages" in basin.__file__, basin.__file__
q = basin.JoinableQueue("installed", 2, address=os.environ["BASIN_ADDRESS"])
q.put({"hello": "world"})
assert q.get(timeout=10) == {"hello": "world"}
q.task_done()
q.join()
print("installed basin", basin.__version__, "works")
PY
echo "PASS: pip install of client/python"
