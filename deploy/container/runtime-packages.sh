#!/bin/bash
# Prints the Debian packages that hold the shared libraries the given binaries
# load (from ldd), one per line: what the runtime image installs, so that its
# list is computed from the binaries rather than guessed. Libraries of the C
# runtime that every Debian image has (libc6, libgcc-s1, libstdc++6) are left
# out. Run in the build stage: it needs dpkg's database of the build tools.
#   runtime-packages.sh BINARY...
set -euo pipefail  # a library no package holds must fail the build
for binary in "$@"; do
  ldd "$binary" | awk '/=> \// { print $3 }'
done | sort -u | while read -r lib; do
  # Debian 12 is merged-/usr: dpkg may know a library under /lib or /usr/lib.
  real=$(readlink -f "$lib")
  found=""
  for path in "$lib" "$real" "/usr$lib" "/usr$real" "${lib#/usr}" "${real#/usr}"; do
    if owner=$(dpkg-query -S "$path" 2>/dev/null); then
      found=${owner%%:*}
      break
    fi
  done
  if [ -z "$found" ]; then
    echo "runtime-packages: no Debian package holds $lib" >&2
    exit 1
  fi
  echo "$found"
done | sort -u | grep -v -x -e libc6 -e libgcc-s1 -e libstdc++6
