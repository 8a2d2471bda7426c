#!/usr/bin/env bash
# Fuzzes every decoder target, one after another, after seeding each corpus from the recorded
# vectors. Any crash fails the run and leaves the input in fuzz/artifacts/<target>/. The crate
# forbids unsafe code, so targets run without a sanitizer: what fuzzing looks for here is a panic
# (out-of-bounds slice, overflow, unbounded allocation).
#
# How long each target runs:
#   FUZZ_RUNS=N      N executions per target (default 500000; what CI runs: the same amount of
#                    work on every machine; on the 2-core dev machine 1 to 16 s per target from
#                    the vector seeds, up to ~20 s once a local corpus has grown)
#   FUZZ_SECONDS=S   S seconds per target instead, for long runs: FUZZ_SECONDS=600 scripts/fuzz.sh
# Arguments name the targets to run (default: all of them).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${FUZZ_RUNS:-500000}"
seconds="${FUZZ_SECONDS:-}"
if [[ -n "$seconds" ]]; then
  budget=(-max_total_time="$seconds")
  what="${seconds}s"
else
  budget=(-runs="$runs")
  what="${runs} runs"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz needs nightly-only flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

python3 - <<'PY'
import glob, json, os

REPLAYABLE = bytes.fromhex("0555ad2729e8da1777a4e5020806f8bf7601c3db6bfe402f410a34958363a95a")
POLICIES = [  # the order of POLICIES in fuzz_targets/policy_params.rs
    "e4fec84b7b002273ecc86baa65a831ddb92d30a8", "67fa43ca2d689bea4d10b9f2c96828828a2ab275",
    "b3cb5f502250360335614df1421f2aabe98ce503", "9a52283276a0ec8740df50bf01b28a80d880eaf2",
    "85770b902d1e503d5f5141d9eac16d0d08eeadd2", "aefc5abc67ffd258abd0a3e54f65e70326f84b23",
    "f63d4139b25c836334edd76641356c6b74c86873", "6a06358e6b283921deceabe7e8a3741d506cca9b",
    "f6a936c88d97e6fad13b98d2fd731ff17eed591d", "67b436cad8a6d025df6c82c5bb43fbf11fc5b9b7",
    "b9f8f524be6ecd8c945b1b87f9ae5c192fdce20f",
]

def b(h):
    return bytes.fromhex((h or "0x")[2:])

def enable_fields(sig):
    """validatorData, hookData, selectorData, enableSig, userOpSig of an enable-mode signature."""
    if sig.startswith(REPLAYABLE):
        sig = sig[32:]
    word = lambda at: int.from_bytes(sig[at:at + 32], "big")
    fields = []
    for k in range(5):
        at = 20 + word(20 + 32 * k)
        fields.append(sig[at + 32:at + 32 + word(at)])
    return fields

seeds = {t: [] for t in ["userop_json", "kernel_calls", "kernel_signature", "kernel_op", "permission_data",
                         "enable_signature", "init_code", "multichain_signature", "policy_params", "canonical_calls"]}
# canonical_calls: n calls as (target, value, len, data) then (position, byte) changes.
seeds["canonical_calls"] += [bytes([2, 1, 0, 4, 0xa9, 0x05, 0x9c, 0xbb, 2, 5, 0]) + bytes([0, 200, 0x41]),
                             bytes([1, 7, 9, 36]) + bytes(36) + bytes([0, 100, 0x20, 0, 132, 0x40])]
for path in sorted(glob.glob("tests/data/vectors/*.json")):
    if path.endswith("index.json"):
        continue
    v = json.load(open(path))
    op = v["userOperation"]
    seeds["userop_json"].append(json.dumps(op).encode())
    call, sig = b(op.get("callData")), b(op.get("signature"))
    init = b(op.get("initCode")) or (b(op.get("factory")) + b(op.get("factoryData")))
    seeds["kernel_calls"].append(call)
    seeds["kernel_signature"].append(sig)
    nonce = int(op["nonce"], 16).to_bytes(32, "big")
    seeds["kernel_op"].append(nonce + len(call).to_bytes(2, "big") + len(sig).to_bytes(2, "big") + b"\x00\x01" + call + sig + init)
    if init:
        seeds["init_code"].append(init)
    if (v.get("kernelNonce") or {}).get("mode") == "enable":
        seeds["enable_signature"].append(sig)
        validator_data, _, selector_data, enable_sig, _ = enable_fields(sig)
        seeds["permission_data"].append(validator_data)
        seeds["enable_signature"].append(selector_data)
        seeds["multichain_signature"].append(enable_sig)
    if (v.get("rootValidator") or {}).get("type") == "multi-chain-ecdsa":
        seeds["multichain_signature"].append(sig)
    for p in (v.get("session") or {}).get("policies") or []:
        address = p["address"].lower()[2:]
        if address in POLICIES:
            seeds["policy_params"].append(bytes([POLICIES.index(address)]) + b(p["installData"]))
for target, items in seeds.items():
    d = os.path.join("fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(dict.fromkeys(items)):
        open(os.path.join(d, f"vector-{i:03d}"), "wb").write(data)
PY

cd fuzz
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s none
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
  echo "==> fuzz $t for ${what}"
  start=$SECONDS
  if ! cargo fuzz run -s none "$t" -- "${budget[@]}" -max_len=16384 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t" >&2
    exit 1
  fi
  execs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 || true)
  corpus=$(awk '/^stat::new_units_added:/ {print $2}' "$log")
  echo "    ${execs:-?} executions in $((SECONDS - start))s, ${cov:-cov: ?}, ${corpus:-0} new corpus inputs, no crash"
done
