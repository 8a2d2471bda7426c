//! Adversarial call data: out-of-range offsets, huge length words, truncation, bad call and exec
//! types, and non-canonical ABI layouts, which must decode exactly as the contracts read them
//! or fail with the error naming the bad bytes.

use alloy_primitives::{Address, Bytes, FixedBytes, U256};
use opgate::decode::{calls::RevertReason, decode_calls, CallDataFormat, DecodeError, ExecCallType};

use crate::fixtures::{cat, neg, w};

const EXECUTE: [u8; 4] = [0xe9, 0xae, 0x5c, 0x53];

fn mode(call_type: u8, exec_type: u8) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = call_type;
    m[1] = exec_type;
    m
}

/// `execute(mode, exec)` encoded canonically.
fn execute(m: [u8; 32], exec: &[u8]) -> Vec<u8> {
    let pad = vec![0u8; (32 - exec.len() % 32) % 32];
    cat(&[&EXECUTE, &m, &w(0x40), &w(exec.len() as u64), exec, &pad])
}

#[test]
fn execute_offset_outside_calldata() {
    let cd = cat(&[&EXECUTE, &mode(0, 0), &w(0x1000)]);
    assert_eq!(
        decode_calls(&cd),
        Err(DecodeError::BadOffset {
            what: "executionCalldata",
            at: 36,
            value: U256::from(0x1000),
            available: 68
        })
    );
}

#[test]
fn execute_offset_does_not_wrap() {
    // Solidity's argument decoder refuses offsets above 2^64 - 1: no pointing backwards.
    let cd = cat(&[&EXECUTE, &mode(0, 0), &neg(32), &w(0)]);
    assert!(matches!(decode_calls(&cd), Err(DecodeError::BadOffset { at: 36, .. })));
}

#[test]
fn execute_huge_length_word() {
    let huge = U256::from(1u8) << 255usize;
    let cd = cat(&[&EXECUTE, &mode(0, 0), &w(0x40), &huge.to_be_bytes::<32>(), &[0u8; 64]]);
    assert_eq!(
        decode_calls(&cd),
        Err(DecodeError::BadLength {
            what: "executionCalldata",
            at: 68,
            value: huge,
            available: 64
        })
    );
}

#[test]
fn batch_huge_array_length_is_refused_before_allocating() {
    let exec = cat(&[&w(0x20), &w(u64::MAX)]);
    assert_eq!(
        decode_calls(&execute(mode(1, 0), &exec)),
        Err(DecodeError::BadLength {
            what: "batch execution",
            at: 32,
            value: U256::from(u64::MAX),
            available: 0
        })
    );
}

/// One element `(target, value, data)` laid out at byte 96 of the execution calldata.
fn batch_of_one(target_word: [u8; 32], data_offset: [u8; 32], tail: &[u8]) -> Vec<u8> {
    cat(&[&w(0x20), &w(1), &w(0x20), &target_word, &w(7), &data_offset, tail])
}

#[test]
fn batch_element_offset_outside() {
    let exec = cat(&[&w(0x20), &w(1), &w(0x400)]);
    assert!(matches!(
        decode_calls(&execute(mode(1, 0), &exec)),
        Err(DecodeError::BadOffset {
            what: "batch execution",
            at: 64,
            ..
        })
    ));
}

#[test]
fn batch_dirty_address_word() {
    let mut target = w(0x1234);
    target[0] = 1;
    let exec = batch_of_one(target, w(0x60), &w(0));
    assert_eq!(
        decode_calls(&execute(mode(1, 0), &exec)),
        Err(DecodeError::InvalidValue {
            what: "batch execution",
            at: 96,
            expected: "address"
        })
    );
}

#[test]
fn batch_backwards_offset_wraps_like_kernel() {
    // The element at 96 points its data 96 bytes back (2^256 - 96): to byte 0, whose word (0x20)
    // is read as the length, so the data is bytes [32, 64). Kernel v3.0/v3.1 execute exactly
    // that; v3.2+ reverts (DecodingError).
    let exec = batch_of_one(w(0xBEEF), neg(96), &[]);
    let d = decode_calls(&execute(mode(1, 0), &exec)).unwrap();
    assert_eq!(d.calls.len(), 1);
    assert_eq!(d.calls[0].target, Address::from_word(w(0xBEEF).into()));
    assert_eq!(d.calls[0].value, U256::from(7));
    assert_eq!(d.calls[0].data, Bytes::from(w(1).to_vec()));
}

#[test]
fn batch_elements_sharing_one_tuple() {
    // Two heads pointing at the same tuple: both calls are made.
    let exec = cat(&[
        &w(0x20),
        &w(2),
        &w(0x40),
        &w(0x40),
        &w(0xAA),
        &w(0),
        &w(0x60),
        &w(2),
        &[0xde, 0xad],
        &[0; 30],
    ]);
    let d = decode_calls(&execute(mode(1, 0), &exec)).unwrap();
    assert_eq!(d.calls.len(), 2);
    assert_eq!(d.calls[0], d.calls[1]);
    assert_eq!(d.calls[0].data.as_ref(), &[0xde, 0xad]);
    assert!(d.calls[0].short_data && d.calls[0].selector.is_none());
}

#[test]
fn checked_formats_refuse_backwards_offsets() {
    // The same backwards pointer in Kernel v2 executeBatch (Solidity's decoder): an error.
    let tail = batch_of_one(w(0xBEEF), neg(96), &[]);
    let cd = cat(&[&[0x34, 0xfc, 0xd5, 0xbe], &tail]);
    assert!(matches!(decode_calls(&cd), Err(DecodeError::BadOffset { .. })));
}

#[test]
fn truncated_single_and_delegate() {
    assert_eq!(
        decode_calls(&execute(mode(0, 0), &[0u8; 51])),
        Err(DecodeError::TooShort {
            what: "single execution",
            len: 51,
            min: 52
        })
    );
    assert_eq!(
        decode_calls(&execute(mode(0xFF, 0), &[0u8; 19])),
        Err(DecodeError::TooShort {
            what: "delegatecall execution",
            len: 19,
            min: 20
        })
    );
    // Truncated ABI head: the offset word itself is missing.
    assert!(matches!(
        decode_calls(&cat(&[&EXECUTE, &mode(0, 0)])),
        Err(DecodeError::OutOfBounds {
            what: "callData",
            offset: 36,
            len: 32,
            available: 36
        })
    ));
}

#[test]
fn call_types_and_exec_types() {
    assert_eq!(
        decode_calls(&execute(mode(0x02, 0), &[0u8; 52])),
        Err(DecodeError::UnknownCallType(2))
    );
    let d = decode_calls(&execute(mode(0xFE, 0), &[0u8; 52])).unwrap();
    assert_eq!(
        (d.call_type, d.reverts),
        (Some(ExecCallType::Static), Some(RevertReason::StaticCallType))
    );
    assert_eq!(d.calls.len(), 1);
    let d = decode_calls(&execute(mode(0, 2), &[0u8; 52])).unwrap();
    assert_eq!(d.reverts, Some(RevertReason::UnsupportedExecType));
    let d = decode_calls(&execute(mode(0xFF, 1), &[0u8; 20])).unwrap();
    assert_eq!(
        (d.reverts, d.calls[0].value, d.calls[0].data.len()),
        (None, U256::ZERO, 0)
    );
}

#[test]
fn kernel_v2_operation_range() {
    let v2 = |op: [u8; 32]| cat(&[&[0x51, 0x94, 0x54, 0x47], &w(1), &w(0), &w(0x80), &op, &w(0)]);
    assert_eq!(decode_calls(&v2(w(2))), Err(DecodeError::UnknownOperation(2)));
    assert!(matches!(
        decode_calls(&v2(w(256))),
        Err(DecodeError::InvalidValue { at: 100, .. })
    ));
    let d = decode_calls(&v2(w(1))).unwrap();
    assert_eq!(d.call_type, Some(ExecCallType::DelegateCall));
}

#[test]
fn execute_user_op_prefix_and_unknown_call_data() {
    let inner = execute(mode(0, 0), &[0u8; 52]);
    let d = decode_calls(&cat(&[&[0x8d, 0xd7, 0x71, 0x2f], &inner])).unwrap();
    assert!(d.execute_user_op);
    assert_eq!(d.format, CallDataFormat::KernelExecute);
    let d = decode_calls(&[0x8d, 0xd7, 0x71, 0x2f]).unwrap();
    assert_eq!((d.execute_user_op, d.format), (true, CallDataFormat::Empty));
    let d = decode_calls(&[0x12, 0x34, 0x56, 0x78, 0x9a]).unwrap();
    assert_eq!(
        (d.format, d.calls.len(), d.call_type),
        (CallDataFormat::Unknown, 0, None)
    );
    assert_eq!(decode_calls(&[]).unwrap().format, CallDataFormat::Empty);
}

#[test]
fn shared_tails_cannot_amplify() {
    // 1,000 batch elements all pointing at one 10 KB call: 10 MB decoded from 42 KB of input.
    let n = 1000u64;
    let tuple_at = 32 * n;
    let mut exec = cat(&[&w(0x20), &w(n)]);
    for _ in 0..n {
        exec.extend_from_slice(&w(tuple_at));
    }
    exec.extend(cat(&[&w(1), &w(0), &w(0x60), &w(10_000), &vec![0xAB; 10_000]]));
    assert_eq!(
        decode_calls(&execute(mode(1, 0), &exec)),
        Err(DecodeError::TooMuchData {
            what: "batch execution",
            limit: 2 * exec.len()
        })
    );
    // A handful of shared tails is fine (see batch_elements_sharing_one_tuple).

    // CallPolicy: permissions sharing one rules array sharing one params array multiply.
    let k = 60u64;
    let mut data = cat(&[&w(0x20), &w(k)]);
    let perm_at = 32 * k; // relative to the heads at byte 64
    for _ in 0..k {
        data.extend_from_slice(&w(perm_at));
    }
    // Permission head: callType, target, selector, valueLimit, rules offset (-> right after).
    data.extend(cat(&[&w(0), &w(1), &w(0), &w(0), &w(0xa0)]));
    // rules: k heads all pointing at one rule whose params has k words.
    data.extend_from_slice(&w(k));
    for _ in 0..k {
        data.extend_from_slice(&w(32 * k));
    }
    data.extend(cat(&[&w(6), &w(0), &w(0x60), &w(k)]));
    data.extend(vec![0u8; 32 * k as usize]);
    let p = opgate::decode::decode_policy(opgate::decode::policy::CALL_POLICY_V0_0_4, FixedBytes([0, 0]), &data);
    match p.params {
        opgate::decode::PolicyParams::Invalid { error, .. } => {
            assert!(error.contains("exceed"), "{error}")
        }
        other => panic!("amplified: {other:?}"),
    }
}
