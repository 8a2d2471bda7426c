//! Arbitrary bytes as an initCode (`factory ‖ factoryData`): the factory call, Kernel's
//! `initialize` data, the root validator and its owner.

#![no_main]

use libfuzzer_sys::fuzz_target;
use opgate::decode::decode_init_code;

fuzz_target!(|data: &[u8]| {
    match decode_init_code(data) {
        Ok(Some(deployment)) => {
            serde_json::to_string(&deployment).expect("a decoded deployment serializes");
        }
        Ok(None) => assert!(data.is_empty(), "only an empty initCode deploys nothing"),
        Err(_) => {}
    }
});
