#!/usr/bin/env bash
# Configure and build meshd (binary, unit tests, benchmarks).
#   scripts/build.sh                   -> build/       (RelWithDebInfo)
#   MESHD_SANITIZE=1 scripts/build.sh  -> build-asan/  (ASan + UBSan)
# Extra arguments are passed to the build step, e.g. `scripts/build.sh --target meshd`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

if [ "${MESHD_SANITIZE:-0}" = 1 ]; then
  dir=build-asan
  cfg=(-DMESHD_SANITIZE=ON)
else
  dir=build
  cfg=()
fi
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cfg[@]}"
cmake --build "$dir" -j"$(nproc)" "$@"
