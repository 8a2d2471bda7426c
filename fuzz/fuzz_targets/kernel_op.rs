//! A whole Kernel operation from arbitrary bytes: nonce, callData, signature and initCode carved
//! from the input, decoded together (enable data, policies, digests, approvals).

#![no_main]

use alloy_primitives::{Address, Bytes, U256};
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
    // Call data and signature are views of one buffer, as the decoder's parts are of them.
    let whole = Bytes::copy_from_slice(rest);
    let call_data = whole.slice(..call_len);
    let signature = whole.slice(call_len..call_len + sig_len);
    let init_code = &whole[call_len + sig_len..];
    let opts = DecodeOptions {
        chain_id: Some(u64::from(head[36]) + 1),
        ..Default::default()
    };
    let sender = Address::repeat_byte(head[37]);
    let _ = decode_kernel_with(sender, nonce, &call_data, &signature, init_code, &opts);
    let _ = decode_init_code(init_code);
});
