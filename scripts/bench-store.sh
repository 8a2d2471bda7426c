#!/usr/bin/env bash
# Memory store: bytes per entry (op records, counters, registry entries), measured as resident
# memory grows while a store fills (examples/store_bytes.rs; see BENCHMARKS.md, "Memory store").
#
# Usage: scripts/bench-store.sh [N]   (reservations per run, default 200000; three runs of each kind,
# each in a fresh process)
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/bench-machine.sh
bench_machine
cargo build --release --locked --quiet --example store_bytes
echo "| run | ops (or entries written) | entries held | resident growth (MiB) | bytes per entry |"
echo "|---|---:|---:|---:|---:|"
for kind in ops sessions registry; do
  for _ in 1 2 3; do
    target/release/examples/store_bytes "$kind" "$@"
  done
done
