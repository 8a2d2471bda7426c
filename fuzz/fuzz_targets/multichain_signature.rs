//! Arbitrary bytes as a multi-chain ECDSA validator signature, in the user-op form (with the
//! dummy branch) and the enable form; a decoded Merkle proof is walked once, from a leaf taken
//! from the input.

#![no_main]

use alloy_primitives::B256;
use libfuzzer_sys::fuzz_target;
use opgate::decode::multichain::merkle_root_of;
use opgate::decode::{decode_multichain_signature, verify_merkle_proof, MultiChainSignature};

fuzz_target!(|data: &[u8]| {
    for user_op in [true, false] {
        let Ok(form) = decode_multichain_signature(data, user_op) else {
            continue;
        };
        match &form {
            MultiChainSignature::Plain { signature } => assert_eq!(signature.len(), 65),
            MultiChainSignature::Merkle { merkle_root, proof, .. } => {
                assert!(proof.len() * 32 <= data.len(), "more proof words than input");
                // Both forms decode a non-dummy signature the same way: walk the proof once.
                if !user_op {
                    let leaf = B256::right_padding_from(&data[..data.len().min(32)]);
                    let root = merkle_root_of(leaf, proof);
                    assert_eq!(verify_merkle_proof(leaf, proof, *merkle_root), root == *merkle_root);
                }
            }
            MultiChainSignature::Dummy { proof, .. } => {
                assert!(user_op, "the dummy form only exists for user-op signatures");
                assert!(proof.len() * 32 <= data.len(), "more proof words than input");
            }
        }
        serde_json::to_string(&form).expect("a decoded signature serializes");
    }
});
