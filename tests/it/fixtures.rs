//! What the decoding and UserOperation tests share: the recorded vectors in `tests/data/vectors`,
//! reading their JSON fields, ECDSA signing with a fixed test key, and ABI words for building
//! adversarial inputs by hand.

use std::path::{Path, PathBuf};

use alloy_primitives::{hex, Address, Bytes, B256, U256};
use k256::ecdsa::SigningKey;
use opgate::decode::{decode_kernel_with, DecodeOptions, KernelDecoded};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The recorded vector files, sorted by name (`index.json` left out).
pub fn vector_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| p.file_name().is_some_and(|n| n != "index.json"))
        .collect();
    files.sort();
    files
}

/// One vector file, parsed as `T`.
pub fn read_vector<T: DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every vector as `(file name, JSON)`, sorted by file name.
pub fn vectors() -> Vec<(String, Value)> {
    vector_files()
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, read_vector(&p))
        })
        .collect()
}

/// The vector named `name` (file name without `.json`).
pub fn vector(name: &str) -> Value {
    read_vector(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/vectors/{name}.json")))
}

/// A string field.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} missing"))
}

/// A string field, lowercased (`""` when absent).
pub fn lower(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_lowercase()
}

/// Hex bytes (empty when absent).
pub fn bytes(v: &Value) -> Vec<u8> {
    v.as_str().map(|s| hex::decode(s).expect("hex")).unwrap_or_default()
}

/// An address.
pub fn addr(v: &Value) -> Address {
    v.as_str().expect("address string").parse().expect("address")
}

/// A number: a decimal or `0x` string, or a JSON number.
pub fn u256(v: &Value) -> U256 {
    match v {
        Value::String(s) => s.parse().expect("number"),
        Value::Number(n) => U256::from(n.as_u64().expect("u64")),
        _ => panic!("not a number: {v}"),
    }
}

/// A UserOperation's initCode: v0.6 `initCode`, or v0.7+ `factory ‖ factoryData`.
pub fn init_code(op: &Value) -> Vec<u8> {
    if let Some(ic) = op.get("initCode") {
        return bytes(ic);
    }
    match op.get("factory").and_then(Value::as_str) {
        Some(f) => [hex::decode(f).unwrap(), bytes(&op["factoryData"])].concat(),
        None => Vec::new(),
    }
}

/// What the Kernel decoder takes from a vector's UserOperation.
pub struct OpParts {
    pub sender: Address,
    pub nonce: U256,
    pub call_data: Bytes,
    pub signature: Bytes,
    pub init_code: Vec<u8>,
}

impl OpParts {
    /// The parts of vector `v`'s `userOperation`.
    pub fn of(v: &Value) -> Self {
        let op = &v["userOperation"];
        Self {
            sender: addr(&op["sender"]),
            nonce: u256(&op["nonce"]),
            call_data: bytes(&op["callData"]).into(),
            signature: bytes(&op["signature"]).into(),
            init_code: init_code(op),
        }
    }

    /// `decode_kernel_with` on these parts.
    pub fn decode(&self, opts: &DecodeOptions) -> KernelDecoded {
        decode_kernel_with(
            self.sender,
            self.nonce,
            &self.call_data,
            &self.signature,
            &self.init_code,
            opts,
        )
    }
}

/// The test signing key.
pub fn key() -> SigningKey {
    SigningKey::from_slice(&[7u8; 32]).unwrap()
}

/// `r ‖ s ‖ v` (v = 27 or 28) over a prehashed message, as `ecrecover` takes it.
pub fn sign(key: &SigningKey, hash: &B256) -> [u8; 65] {
    let (sig, recid) = key.sign_prehash_recoverable(hash.as_slice()).expect("sign");
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = 27 + recid.to_byte();
    out
}

/// An ABI word holding `n`.
pub fn w(n: u64) -> [u8; 32] {
    U256::from(n).to_be_bytes()
}

/// An ABI word holding `2^256 - n` (an offset that points `n` bytes back when added).
pub fn neg(n: u64) -> [u8; 32] {
    (U256::ZERO - U256::from(n)).to_be_bytes()
}

/// The parts, concatenated.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
