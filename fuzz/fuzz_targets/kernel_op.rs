//! A whole Kernel operation from arbitrary bytes: nonce, callData, signature and initCode carved
//! from the input, decoded together (enable data, policies, digests, approvals).

#![no_main]

use alloy_primitives::{Address, U256};
use libfuzzer_sys::fuzz_target;
use opgate::decode::{decode_init_code, decode_kernel_with, DecodeOptions};

fuzz_target!(|data: &[u8]| {
    if data.len() < 38 {
        return;
    }
    let (head, rest) = data.split_at(38);
    let nonce = U256::from_be_slice(&head[..32]);
    let call_len = u16::from_be_bytes([head[32], head[33]]) as usize % (rest.len() + 1);
    let sig_len = u16::from_be_bytes([head[34], head[35]]) as usize % (rest.len() - call_len + 1);
    let (call_data, rest) = rest.split_at(call_len);
    let (signature, init_code) = rest.split_at(sig_len);
    let opts = DecodeOptions {
        chain_id: Some(u64::from(head[36]) + 1),
        ..Default::default()
    };
    let sender = Address::repeat_byte(head[37]);
    let _ = decode_kernel_with(sender, nonce, call_data, signature, init_code, &opts);
    let _ = decode_init_code(init_code);
});
