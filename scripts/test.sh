#!/usr/bin/env bash
# Build, then run every test (unit, simulator, end-to-end) through CTest.
# The end-to-end tests need root and /dev/net/tun; without them CTest reports them skipped.
#   scripts/test.sh                    -> build/
#   MESHD_SANITIZE=1 scripts/test.sh   -> build-asan/ (ASan + UBSan, agents included)
# Extra arguments go to ctest, e.g. `scripts/test.sh -R e2e/` or `-L e2e`.
# CTest's summary is the last thing printed; the exit status is CTest's.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh

dir=build
if [ "${MESHD_SANITIZE:-0}" = 1 ]; then
  dir=build-asan
  export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
# Unit tests run in parallel; the e2e tests are RUN_SERIAL, so they run alone.
exec ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" "$@"
