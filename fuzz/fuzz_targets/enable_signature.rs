//! Arbitrary bytes as an enable-mode signature: the wrapper, its selector data (also read
//! directly from the input), and the EIP-712 Enable digest over what was decoded.

#![no_main]

use alloy_primitives::{Address, FixedBytes};
use libfuzzer_sys::fuzz_target;
use opgate::decode::enable::EnableDomain;
use opgate::decode::{decode_enable_signature, decode_selector_data, enable_digest, KernelVersion};

fuzz_target!(|data: &[u8]| {
    if let Ok(selector) = decode_selector_data(data) {
        serde_json::to_string(&selector).expect("decoded selector data serializes");
    }
    let Ok(enable) = decode_enable_signature(data) else {
        return;
    };
    for field in [
        &enable.validator_data,
        &enable.hook_data,
        &enable.selector_data,
        &enable.enable_sig,
        &enable.user_op_sig,
    ] {
        assert!(field.len() <= data.len(), "a field is longer than the signature");
    }
    if let Ok(selector) = decode_selector_data(&enable.selector_data) {
        serde_json::to_string(&selector).expect("decoded selector data serializes");
    }
    let domain = EnableDomain {
        account: Address::repeat_byte(data.len() as u8),
        chain_id: 1,
        version: KernelVersion::ALL[data.len() % KernelVersion::ALL.len()],
    };
    let _ = enable_digest(&domain, FixedBytes::repeat_byte(2), 1, &enable);
    serde_json::to_string(&enable).expect("decoded enable data serializes");
});
