#!/usr/bin/env bash
# Every check CI runs, in order; stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test (unit, integration, devnet end-to-end)"
cargo test --locked

step "fuzz every decoder (bounded: FUZZ_SECONDS per target)"
scripts/fuzz.sh
