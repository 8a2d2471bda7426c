#!/usr/bin/env bash
# Account state benchmark: cold and warm reads of a Kernel account's state from the node
# (opgate::accounts::AccountReader), and a warm send decision on an opgate that reads accounts from
# the node next to the same decision on an opgate without one, in one run, against the devnet's
# anvil on loopback (see benches/account_state.rs and BENCHMARKS.md).
#
# Usage: scripts/bench-accounts.sh [bench options]   e.g. --reps 5 --cold 500 --concurrency 1,4,16
# Options may also come from OPGATE_BENCH_* environment variables; `--help` lists them.
#
# Needs node and npm: the bench starts the devnet (anvil only, DEVNET_NO_BUNDLER=1) on a free port
# in a temporary state directory, and stops it when it ends. The table goes to stdout; build
# output and per-run progress go to stderr. Other work on the machine skews the figures: the load
# average is printed before, and the report gives the CPU share other processes took during the
# runs.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/bench-machine.sh
bench_machine
echo "node: $(node --version 2>/dev/null || echo missing)"
echo "load average before build: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"

cargo build --release --locked --quiet
cargo bench --locked --bench account_state -- "$@"
