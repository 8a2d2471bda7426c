//! A recorded operation of `tests/data/vectors`, with what a proxy that knows the account tells
//! the decoder about it (chain id, Kernel release, root owner). Shared by the decode bench and
//! `examples/decode_steps.rs`.

use alloy_primitives::Address;
use opgate::decode::enable::KernelVersion;
use opgate::decode::DecodeOptions;
use serde_json::value::RawValue;
use serde_json::Value;

/// One recorded operation.
pub(crate) struct Recorded {
    /// `userOperation` as the RPC sends it.
    pub raw: Box<RawValue>,
    pub entry_point: Address,
    pub chain_id: u64,
    pub opts: DecodeOptions,
}

/// Loads vector `name` (a file name of `tests/data/vectors` without `.json`).
pub(crate) fn load(name: &str) -> Result<Recorded, String> {
    let path = format!("{}/tests/data/vectors/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let bad = |what: &str| format!("{path}: no valid {what}");
    let raw = serde_json::value::to_raw_value(&v["userOperation"]).map_err(|_| bad("userOperation"))?;
    let entry_point = v["entryPoint"]["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| bad("entryPoint.address"))?;
    let chain_id = v["chainId"].as_u64().ok_or_else(|| bad("chainId"))?;
    let root_owner = match v["rootValidator"]["owner"].as_str() {
        Some(o) => Some(o.parse().map_err(|_| bad("rootValidator.owner"))?),
        None => None,
    };
    let opts = DecodeOptions {
        chain_id: Some(chain_id),
        kernel_version: v["kernelVersion"].as_str().and_then(KernelVersion::parse),
        root_owner,
        ..Default::default()
    };
    Ok(Recorded {
        raw,
        entry_point,
        chain_id,
        opts,
    })
}
