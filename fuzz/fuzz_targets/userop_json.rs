//! Arbitrary bytes as `eth_sendUserOperation` params[0], decoded for every EntryPoint version.
//!
//! Decoding must never panic; an op that decodes must hash, pack, and re-encode to JSON that
//! decodes to the same op.

#![no_main]

use libfuzzer_sys::fuzz_target;
use opgate::userop::{parse_user_operation, parse_user_operation_str, EntryPointVersion, UserOperationV07};
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<&RawValue>(data) else {
        return;
    };
    for version in EntryPointVersion::ALL {
        let Ok(op) = parse_user_operation(raw, version) else {
            continue;
        };
        let entry_point = version.address();
        let _ = op.hash(entry_point, 1);
        let _ = op.replayable_hash(entry_point);
        let _ = (op.max_gas_cost(), op.required_prefund());
        let _ = (op.init_code(), op.paymaster_and_data(), op.factory_data());

        let json = serde_json::to_string(&op).expect("a decoded op serializes");
        let again = parse_user_operation_str(&json, version).expect("re-encoded op decodes");
        assert_eq!(again, op, "re-encoding changed the op");

        if let Some(packed_form) = op.as_packed_form() {
            let unpacked = UserOperationV07::from_packed(&packed_form.to_packed()).expect("packed op unpacks");
            assert_eq!(
                unpacked.hash_v07(entry_point, 1),
                packed_form.hash_v07(entry_point, 1),
                "packing changed the hash"
            );
        }
    }
});
