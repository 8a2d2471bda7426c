//! Every recorded vector decodes and hashes to the userOpHash the SDK computed (and the bundler
//! returned for accepted ops).

use alloy_primitives::{Address, B256};
use opgate::userop::{parse_user_operation, parse_user_operation_for, EntryPointVersion};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fixtures::{read_vector, vector_files};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vector {
    name: String,
    chain_id: u64,
    entry_point: EntryPoint,
    user_op_hash: B256,
    user_operation: Box<RawValue>,
}

#[derive(Deserialize)]
struct EntryPoint {
    address: Address,
    version: EntryPointVersion,
}

#[test]
fn every_vector_hashes_to_its_user_op_hash() {
    let files = vector_files();
    let mut checked = 0;
    let mut per_version = [0usize; 3];
    for path in &files {
        let v: Vector = read_vector(path);
        let op = parse_user_operation(&v.user_operation, v.entry_point.version)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(op.version(), v.entry_point.version, "{}", v.name);
        let hash = op
            .hash(v.entry_point.address, v.chain_id)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(hash, v.user_op_hash, "{}", v.name);

        // The version detected from the address agrees with the recorded one.
        let detected = parse_user_operation_for(&v.user_operation, v.entry_point.address)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(detected, op, "{}", v.name);

        per_version[v.entry_point.version as usize] += 1;
        checked += 1;
    }
    assert_eq!(checked, files.len());
    assert!(checked >= 41, "expected the full vector set, found {checked}");
    assert!(
        per_version.iter().all(|&n| n > 0),
        "vectors for every version: {per_version:?}"
    );
}

#[test]
fn vectors_reencode_to_equal_ops() {
    for path in vector_files() {
        let v: Vector = read_vector(&path);
        let op = parse_user_operation(&v.user_operation, v.entry_point.version)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let json = serde_json::to_string(&op).expect("serialize");
        let again = opgate::userop::parse_user_operation_str(&json, v.entry_point.version)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(again, op, "{}", v.name);
    }
}
