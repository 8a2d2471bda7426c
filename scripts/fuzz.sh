#!/usr/bin/env bash
# A bounded fuzz run of every decoder target: seeds each corpus from the recorded vectors, then runs
# each target for FUZZ_SECONDS (default 20). Any crash fails the run and leaves the input in
# fuzz/artifacts/<target>/. The crate forbids unsafe code, so targets run without a sanitizer:
# what fuzzing looks for here is a panic (out-of-bounds slice, overflow, unbounded allocation).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz needs nightly-only flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

python3 - <<'PY'
import json, os, glob
seeds = {"userop_json": [], "kernel_calls": [], "kernel_signature": [], "kernel_op": []}
for path in sorted(glob.glob("tests/data/vectors/*.json")):
    if path.endswith("index.json"):
        continue
    v = json.load(open(path))
    op = v["userOperation"]
    seeds["userop_json"].append(json.dumps(op).encode())
    b = lambda h: bytes.fromhex((h or "0x")[2:])
    call, sig = b(op.get("callData")), b(op.get("signature"))
    init = b(op.get("initCode")) or (b(op.get("factory")) + b(op.get("factoryData")))
    seeds["kernel_calls"].append(call)
    seeds["kernel_signature"].append(sig)
    nonce = int(op["nonce"], 16).to_bytes(32, "big")
    seeds["kernel_op"].append(nonce + len(call).to_bytes(2, "big") + len(sig).to_bytes(2, "big") + b"\x00\x01" + call + sig + init)
for target, items in seeds.items():
    d = os.path.join("fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(items):
        open(os.path.join(d, f"vector-{i:03d}"), "wb").write(data)
PY

cd fuzz
targets=$(cargo fuzz list)
cargo fuzz build -s none
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in $targets; do
  echo "==> fuzz $t for ${seconds}s"
  if ! cargo fuzz run -s none "$t" -- -max_total_time="$seconds" -max_len=16384 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t" >&2
    exit 1
  fi
  grep -E "^(Done|stat::number_of_executed_units)" "$log" || true
done
