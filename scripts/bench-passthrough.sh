#!/usr/bin/env bash
# Pass-through overhead benchmark: opgate versus calling the upstream bundler directly, and an
# opgate with an API key check and request limits (`keyed`, memory store) versus plain opgate, on
# loopback, in one process (see benches/passthrough.rs and BENCHMARKS.md). When Redis answers on
# 127.0.0.1:6379 (or --redis URL; --redis off skips it), it also counts the store round trips per
# keyed request, under a key prefix of its own that it deletes afterwards.
#
# Usage: scripts/bench-passthrough.sh [bench options]   e.g. --concurrency 32 --reps 7 --json out.json
# Options may also come from OPGATE_BENCH_* environment variables; `--help` lists them.
#
# The table goes to stdout; build output and per-repetition progress go to stderr. Other work on
# the machine skews the figures: the load average is printed before and after, so a busy run can
# be told apart and repeated.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/bench-machine.sh
bench_machine
echo "load average before build: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"

cargo bench --bench passthrough -- "$@"
