//! Arbitrary bytes as a permission's install data (`validatorData` of an enable-mode op): the
//! entry list, the signer and every policy's install data, then the JSON `opgate decode` prints.

#![no_main]

use libfuzzer_sys::fuzz_target;
use opgate::decode::decode_permission_data;

fuzz_target!(|data: &[u8]| {
    if let Ok(permission) = decode_permission_data(data) {
        assert!(
            permission.policies.len() <= 253,
            "at most 254 entries, one of them the signer"
        );
        serde_json::to_string(&permission).expect("a decoded permission serializes");
    }
});
