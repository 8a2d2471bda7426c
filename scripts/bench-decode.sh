#!/usr/bin/env bash
# Decoding benchmark: one UserOperation parsed, hashed and Kernel-decoded, per second and per
# operation, for a plain, a regular-permission and an enable-mode op (see benches/decode.rs and
# BENCHMARKS.md). Arguments go to criterion, e.g. `decode_op` to run one group, or
# `--save-baseline before` / `--baseline before` to compare two versions of the code.
#
# criterion runs on one thread, so the figures are per core. Other work on the machine skews
# them: the load average is printed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
echo "machine: $(nproc) CPUs, ${cpu:-unknown CPU}"
echo "toolchain: $(rustc --version)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"

cargo bench --bench decode -- "$@"

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
