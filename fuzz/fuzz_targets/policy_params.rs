//! Arbitrary bytes as one policy's or signer's install data. The first byte picks the contract
//! (every known policy and signer, or an unknown address), the rest is its data.

#![no_main]

use alloy_primitives::{Address, FixedBytes};
use libfuzzer_sys::fuzz_target;
use opgate::decode::decode_policy;
use opgate::decode::permission::{
    decode_signer, ECDSA_SIGNER, WEBAUTHN_SIGNER_V0_0_1, WEBAUTHN_SIGNER_V0_0_2, WEBAUTHN_SIGNER_V0_0_3,
    WEBAUTHN_SIGNER_V0_0_4,
};
use opgate::decode::policy::{
    CALL_POLICY_V0_0_1, CALL_POLICY_V0_0_2, CALL_POLICY_V0_0_3, CALL_POLICY_V0_0_4, CALL_POLICY_V0_0_5, GAS_POLICY,
    RATE_LIMIT_POLICY, RATE_LIMIT_RESET_POLICY, SIGNATURE_POLICY, SUDO_POLICY, TIMESTAMP_POLICY,
};

const POLICIES: [Address; 11] = [
    CALL_POLICY_V0_0_1,
    CALL_POLICY_V0_0_2,
    CALL_POLICY_V0_0_3,
    CALL_POLICY_V0_0_4,
    CALL_POLICY_V0_0_5,
    GAS_POLICY,
    RATE_LIMIT_POLICY,
    RATE_LIMIT_RESET_POLICY,
    SIGNATURE_POLICY,
    SUDO_POLICY,
    TIMESTAMP_POLICY,
];
const SIGNERS: [Address; 5] = [
    ECDSA_SIGNER,
    WEBAUTHN_SIGNER_V0_0_1,
    WEBAUTHN_SIGNER_V0_0_2,
    WEBAUTHN_SIGNER_V0_0_3,
    WEBAUTHN_SIGNER_V0_0_4,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let pick = usize::from(pick);
    let policy = POLICIES.get(pick).copied().unwrap_or(Address::repeat_byte(0x42));
    let p = decode_policy(policy, FixedBytes([0, pick as u8]), rest);
    serde_json::to_string(&p).expect("a decoded policy serializes");
    let signer = SIGNERS[pick % SIGNERS.len()];
    if let Ok(s) = decode_signer(signer, rest) {
        serde_json::to_string(&s).expect("a decoded signer serializes");
    }
});
