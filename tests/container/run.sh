#!/usr/bin/env bash
# Builds the image from the root Dockerfile with podman and checks it for real:
# health through basinctl from outside, a put/get round trip, the non-root
# uid, podman's own health check, /metrics, SIGTERM answering a blocked get
# and exiting 0 within the grace, a durable queue surviving into a new
# container on the same named volume, and a root-owned bind mount refused
# with a clear message (then accepted once chowned to 10001).
#
# Usage: tests/container/run.sh BASINCTL
# Exits 77 (ctest's "skipped"), saying why, only where no engine can run: not
# root, or podman/runc/mmdebstrap missing. Never skips silently.
#
# podman here (docs/operations.md, "Container"; ../shared/TOOLCHAIN.md):
# rootful, runc (crun fails on mixed cgroups), cgroupfs, a containers.conf of
# our own through CONTAINERS_CONF, and debian:12 / debian:12-slim made
# locally with mmdebstrap (no registry is reachable). The base images are
# kept between runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
basinctl=$(realpath "$1")
skip() {
  echo "container test SKIPPED: $*"
  exit 77
}
[ "$(id -u)" -eq 0 ] || skip "needs root (rootful podman); run scripts/test.sh as root"
for tool in podman runc mmdebstrap curl; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (scripts/setup.sh installs it with BASIN_SETUP_TOOLS=1)"
done

work=$(mktemp -d /tmp/basin-container.XXXXXX)
name=basin-test-$$
volume=basin-test-data-$$
image=localhost/basin:test
export CONTAINERS_CONF=$work/containers.conf
# Open files: no higher than this shell's hard limit, which root cannot raise here.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF

cleanup() {
  podman rm -f "$name" "$name-2" "$name-bind" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  # The build stage (~1 GB) would pile up run after run; the base images stay.
  podman image prune -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  podman logs "$name" 2>&1 | tail -20 >&2 || true
  exit 1
}
step() { echo "container: $*"; }
# Without systemd, podman run/stop/rm print "unable to get systemd connection"
# for the health-check timer (harmless: the test runs the check itself).
quiet_podman() {
  command podman "$@" 2> >(grep -v "unable to get systemd connection" >&2)
}

podman info >/dev/null 2>&1 || skip "podman cannot run here: $(podman info 2>&1 | tail -1)"

base_image() {  # TAG [mmdebstrap options...]
  local tag=$1
  shift
  if podman image exists "docker.io/library/debian:$tag"; then return; fi
  step "making the base image debian:$tag with mmdebstrap (kept for later runs)"
  mmdebstrap --quiet --variant=minbase --mode=root \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "$@" bookworm - 2>"$work/mmdebstrap.log" |
    podman import --quiet --change 'CMD ["bash"]' - "docker.io/library/debian:$tag" >/dev/null ||
    { tail -20 "$work/mmdebstrap.log" >&2; fail "mmdebstrap debian:$tag"; }
}
base_image 12
base_image 12-slim --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/share/groff/*'

step "building the image"
started=$(date +%s)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
podman build --format docker --build-arg BASIN_REVISION="$revision" -t "$image" . >"$work/build.log" 2>&1 ||
  { tail -40 "$work/build.log" >&2; fail "podman build"; }
size=$(podman image inspect --format '{{.Size}}' "$image")
step "built in $(($(date +%s) - started)) s, image $((size / 1000000)) MB"
podman image inspect --format '{{json .Config.Healthcheck}}' "$image" | grep -q basinctl ||
  fail "the image has no HEALTHCHECK (built without --format docker?)"

run() {  # NAME VOLUME_SPEC [basind flags...]
  local n=$1 v=$2
  shift 2
  quiet_podman run -d --name "$n" -p 127.0.0.1::7878 -p 127.0.0.1::9464 -v "$v" "$image" \
    --shutdown-grace 10s "$@" >/dev/null
}
port_of() { podman port "$1" "$2" | head -1 | sed 's/.*://'; }
wait_healthy() {  # ADDR
  for _ in $(seq 1 200); do
    "$basinctl" --addr "$1" health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

step "run: health from outside, a round trip, the uid, podman's health check, /metrics"
run "$name" "$volume:/var/lib/basin"
addr=127.0.0.1:$(port_of "$name" 7878)
http=127.0.0.1:$(port_of "$name" 9464)
wait_healthy "$addr" || fail "basinctl health never answered SERVING"
"$basinctl" --addr "$addr" create jobs
"$basinctl" --addr "$addr" put jobs "hello from the host"
[ "$("$basinctl" --addr "$addr" get jobs)" = "hello from the host" ] || fail "round trip"
[ "$(podman exec "$name" id -u)" = 10001 ] || fail "basind runs as $(podman exec "$name" id -u), not 10001"
uid=$(podman exec "$name" sh -c 'grep ^Uid: /proc/1/status' | awk '{print $2}')
[ "$uid" = 10001 ] || fail "pid 1 runs as uid $uid"
podman healthcheck run "$name" || fail "podman healthcheck run"
curl -sf "http://$http/metrics" | grep -q '^basin_build_info{' || fail "/metrics"
curl -sf "http://$http/" | grep -q '<title>Basin</title>' || fail "the dashboard"
"$basinctl" --addr "$addr" info | grep -q "^revision *$revision" || fail "basinctl info revision"

step "durable queue, then SIGTERM with a blocked get: answered, exit 0 within the grace"
"$basinctl" --addr "$addr" create kept --durable
"$basinctl" --addr "$addr" put kept "survives the container"
"$basinctl" --addr "$addr" create empty
"$basinctl" --addr "$addr" get empty --timeout 60s >"$work/get.out" 2>&1 &
getter=$!
for _ in $(seq 1 200); do
  "$basinctl" --addr "$addr" stat empty --json | grep -q '"waiting_getters":1' && break
  sleep 0.05
done
"$basinctl" --addr "$addr" stat empty --json | grep -q '"waiting_getters":1' || fail "the get never blocked"
started=$(date +%s%N)
quiet_podman stop -t 15 "$name" >/dev/null
took_ms=$((($(date +%s%N) - started) / 1000000))
get_status=0
wait "$getter" || get_status=$?
[ "$get_status" -ne 0 ] && grep -q "shutting down" "$work/get.out" ||
  fail "the blocked get: exit $get_status, $(cat "$work/get.out")"
[ "$(podman inspect --format '{{.State.ExitCode}}' "$name")" = 0 ] || fail "basind did not exit 0"
[ "$took_ms" -lt 10000 ] || fail "stop took $took_ms ms, longer than the 10 s grace"
podman logs "$name" 2>&1 | grep -q "stopped" || fail "no 'stopped' in the log"
step "stopped in $took_ms ms"
quiet_podman rm "$name" >/dev/null

step "a new container on the same volume has the durable message"
run "$name-2" "$volume:/var/lib/basin"
addr=127.0.0.1:$(port_of "$name-2" 7878)
wait_healthy "$addr" || fail "the second container never became healthy"
[ "$("$basinctl" --addr "$addr" get kept)" = "survives the container" ] || fail "durable message lost"
quiet_podman stop -t 15 "$name-2" >/dev/null

step "a root-owned bind mount is refused, clearly; chowned to 10001 it works"
mkdir "$work/data"
podman run --name "$name-bind" -v "$work/data:/var/lib/basin" "$image" >/dev/null 2>&1 &&
  fail "basind started on a directory it cannot write"
podman logs "$name-bind" >"$work/bind.log" 2>&1
[ "$(podman inspect --format '{{.State.ExitCode}}' "$name-bind")" = 1 ] || fail "exit status on a root-owned bind mount"
grep -q "cannot use --data-dir" "$work/bind.log" || fail "no clear message: $(cat "$work/bind.log")"
quiet_podman rm "$name-bind" >/dev/null
chown 10001:10001 "$work/data"
run "$name-bind" "$work/data:/var/lib/basin"
addr=127.0.0.1:$(port_of "$name-bind" 7878)
wait_healthy "$addr" || fail "basind on a chowned bind mount"
"$basinctl" --addr "$addr" create bound --durable
quiet_podman stop -t 15 "$name-bind" >/dev/null
[ -d "$work/data/queues/bound.queue" ] || fail "the durable queue is not in the bind mount"

echo "container test: passed (image $((size / 1000000)) MB)"
