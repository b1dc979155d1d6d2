#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with ASan+UBSan, runs every
# unit and integration test under ctest, then builds the libFuzzer targets with clang
# and runs each for KG_FUZZ_SECONDS (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

scripts/deps.sh test
# The user policyd's engine runs as (the package creates it; PolicyUser's default).
getent passwd knockgate-policy >/dev/null ||
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin knockgate-policy

cmake --preset debug >/dev/null
cmake --build --preset debug -j "$jobs"
ctest --preset debug -j "$jobs" --timeout 600

cmake --preset fuzz -DKG_FUZZ_SECONDS="${KG_FUZZ_SECONDS:-60}" >/dev/null
cmake --build --preset fuzz -j "$jobs"
# Fuzzers each want a core; run them two at a time.
ctest --preset fuzz -j 2
