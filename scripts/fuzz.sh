#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang into build-fuzz/ and runs
# each for BASIN_FUZZ_SECONDS (default 20) from its seed corpus, under ASan and
# UBSan. A crash, leak or input slower than BASIN_FUZZ_TIMEOUT seconds fails.
# New inputs go to a scratch copy of the corpus, never into the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BASIN_FUZZ_SECONDS:-20}
timeout=${BASIN_FUZZ_TIMEOUT:-5}
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBASIN_FUZZ=ON -DBASIN_BUILD_BENCH=OFF -DBASIN_WERROR=ON >/dev/null
cmake --build build-fuzz --target fuzz_targets
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shopt -s nullglob
targets=(build-fuzz/tests/fuzz/*_fuzz)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets built" >&2; exit 1; }
for target in "${targets[@]}"; do
  name=$(basename "$target" _fuzz)
  mkdir -p "$work/$name"
  cp -r "tests/fuzz/corpus/$name/." "$work/$name/" 2>/dev/null || true
  echo "fuzz: $name for ${seconds}s"
  UBSAN_OPTIONS=halt_on_error=1 "$target" -max_total_time="$seconds" -timeout="$timeout" \
    -rss_limit_mb=2048 -print_final_stats=1 "$work/$name" 2>"$work/$name.log" ||
    { tail -60 "$work/$name.log"; echo "fuzz: $name failed" >&2; exit 1; }
  grep -E "stat::number_of_executed_units" "$work/$name.log" || true
done
