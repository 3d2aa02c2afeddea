#!/usr/bin/env bash
# Installs what Basin needs from Debian 12's packages (only what is missing),
# then configures and builds into build/. Sourced by start.sh and test.sh.
#   BASIN_SETUP_TOOLS=1  also installs the test tools (GoogleTest, clang-format,
#                        clang and libFuzzer, npm and buf, pytest, mypy, redis-py,
#                        venv and pip for the Python package's tests, Chromium and
#                        chromedriver for the dashboard's, podman, runc and
#                        mmdebstrap for the container's, PyYAML for the
#                        deployment files').
#   BASIN_CMAKE_ARGS     extra arguments for configuring build/ (test.sh adds
#                        -DBASIN_WERROR=ON).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(g++ cmake ninja-build pkg-config ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libboost-dev libboost-program-options-dev libspdlog-dev libbenchmark-dev
  libgtest-dev libgmock-dev libjemalloc-dev libssl-dev libre2-dev
  prometheus-cpp-dev libtoml11-dev libsystemd-dev
  python3 python3-grpcio python3-protobuf)
if [ "${BASIN_SETUP_TOOLS:-0}" = 1 ]; then
  packages+=(clang-format clang-14 libclang-rt-14-dev
    python3-pytest python3-mypy python3-redis python3-venv python3-pip python3-setuptools
    chromium chromium-driver python3-yaml curl openssl
    podman runc mmdebstrap)
  command -v npm >/dev/null || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if [ "${BASIN_SETUP_TOOLS:-0}" = 1 ] && [ ! -x tools/node_modules/.bin/buf ]; then
  echo "setup: installing buf (npm, pinned in tools/package.json)"
  npm install --prefix tools --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
fi

# shellcheck disable=SC2086  # BASIN_CMAKE_ARGS is a list of arguments
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${BASIN_CMAKE_ARGS:-} >/dev/null
cmake --build build
