#!/usr/bin/env bash
# Send-decision benchmark: decode + policies + the Redis reservation of eth_sendUserOperation,
# upstream excluded, against Redis on loopback, in one process (see benches/decision.rs and
# BENCHMARKS.md).
#
# Usage: scripts/bench-decision.sh [bench options]   e.g. --reps 5 --concurrency 1,8,32 --redis redis://127.0.0.1:6380
# Options may also come from OPGATE_BENCH_* environment variables; `--help` lists them.
#
# Needs a Redis server (default redis://127.0.0.1:6379); the bench writes only under a key prefix
# of its own and deletes those keys at the end. The table goes to stdout; build output and
# per-run progress go to stderr. Other work on the machine skews the figures: the load average
# is printed before, and the report gives the CPU share other processes took during the runs.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/bench-machine.sh
bench_machine
if command -v redis-server >/dev/null 2>&1; then
  echo "redis: $(redis-server --version | cut -d' ' -f1-3)"
fi
echo "load average before build: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"

cargo build --release --locked --quiet
cargo bench --locked --bench decision -- "$@"
