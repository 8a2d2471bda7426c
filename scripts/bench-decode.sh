#!/usr/bin/env bash
# Decoding benchmark: one UserOperation parsed, hashed and Kernel-decoded, per second and per
# operation, for a plain, a regular-permission and an enable-mode op (see benches/decode.rs and
# BENCHMARKS.md). Arguments go to criterion, e.g. `decode_op` to run one group, or
# `--save-baseline before` / `--baseline before` to compare two versions of the code.
#
# criterion runs on one thread, so the figures are per core. Other work on the machine skews
# them: the load average is printed before and after.
#
# `scripts/bench-decode.sh --instructions` counts instead of timing: instructions per operation
# for each step of the decode (examples/decode_steps.rs under valgrind's callgrind, which
# counts exactly and the same on any x86-64 host, however busy). Each count is the difference
# between runs of 2,000 and 12,000 iterations, divided by 10,000, so loading costs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/bench-machine.sh
bench_machine

if [[ "${1:-}" == "--instructions" ]]; then
  if ! command -v valgrind >/dev/null; then
    echo "valgrind is needed for --instructions (Debian: apt-get install valgrind)" >&2
    exit 1
  fi
  cargo build --release --example decode_steps
  bin=${CARGO_TARGET_DIR:-target}/release/examples/decode_steps
  count() { # step iterations vector -> instructions
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" "$3" 2>&1 |
      sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
  }
  printf '%-10s %-28s %14s\n' step vector instructions/op
  for vector in root-ecdsa-deploy-k031 call-equal-regular-k031 call-equal-enable-k031; do
    for step in parse hash decode op; do
      low=$(count "$step" 2000 "$vector")
      high=$(count "$step" 12000 "$vector")
      printf '%-10s %-28s %14d\n' "$step" "$vector" $(((high - low) / 10000))
    done
  done
  exit 0
fi

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
cargo bench --bench decode -- "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
