#!/usr/bin/env bash
# run-fuzzer.sh BINARY SEED_DIR WORK_DIR SECONDS
# Runs one libFuzzer target for a bounded time on a copy of its seed corpus. Any crash,
# sanitizer report or leak makes libFuzzer exit non-zero, which fails the test.
set -euo pipefail
bin=$1 seeds=$2 work=$3 secs=$4
rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
if [ -d "$seeds" ]; then cp -r "$seeds/." "$work/corpus/"; fi
exec "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus"
