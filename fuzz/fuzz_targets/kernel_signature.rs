//! Arbitrary bytes as a permission signature, an enable wrapper, selector data, permission
//! install data and a multi-chain validator signature.

#![no_main]

use libfuzzer_sys::fuzz_target;
use opgate::decode::{
    assign_policy_signatures, decode_enable_signature, decode_multichain_signature, decode_permission_data,
    decode_permission_signature, decode_selector_data,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_permission_signature(data);
    // The policy count comes from the first byte so the walk is exercised for 0..=255 policies.
    let n = data.first().copied().unwrap_or(0) as usize;
    let _ = assign_policy_signatures(data.get(1..).unwrap_or_default(), n);
    if let Ok(enable) = decode_enable_signature(data) {
        let _ = decode_permission_data(&enable.validator_data);
        let _ = decode_selector_data(&enable.selector_data);
        let _ = decode_permission_signature(&enable.user_op_sig);
    }
    let _ = decode_permission_data(data);
    let _ = decode_selector_data(data);
    let _ = decode_multichain_signature(data, true);
    let _ = decode_multichain_signature(data, false);
});
