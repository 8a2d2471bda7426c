//! Arbitrary bytes as a UserOperation's callData: Kernel v3/v2 and SimpleAccount call decoding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use opgate::decode::{decode_calls, decode_nonce_bytes};

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = decode_calls(data) {
        // Every decoded call's data lies inside the input: decoding never invents bytes.
        let total: usize = decoded.calls.iter().map(|c| c.data.len()).sum();
        assert!(
            total <= data.len().saturating_mul(2),
            "decoded more data than the cap allows"
        );
    }
    let _ = decode_nonce_bytes(data);
});
