//! Adversarial signatures: permission segments with huge lengths, misordered or missing
//! markers, enable wrappers with bad or wrapping offsets, selector data and permission data of
//! the wrong shape.

use alloy_primitives::{Address, FixedBytes, U256};
use opgate::decode::{
    assign_policy_signatures, decode_enable_signature, decode_permission_data, decode_permission_signature,
    decode_selector_data, signature::REPLAYABLE_MAGIC, DecodeError,
};

use crate::fixtures::{cat, neg, w};

fn seg(idx: u8, data: &[u8]) -> Vec<u8> {
    cat(&[&[idx], &(data.len() as u64).to_be_bytes(), data])
}

#[test]
fn segment_length_larger_than_input() {
    let sig = cat(&[&[0x00], &[0xFF; 8], &[1, 2, 3]]);
    assert!(matches!(
        decode_permission_signature(&sig),
        Err(DecodeError::OutOfBounds {
            what: "permission signature segment",
            offset: 9,
            available: 12,
            ..
        })
    ));
    assert!(matches!(
        assign_policy_signatures(&sig, 1),
        Err(DecodeError::OutOfBounds { offset: 9, .. })
    ));
    assert_eq!(
        decode_permission_signature(&[0x00, 0x00, 0x00]),
        Err(DecodeError::OutOfBounds {
            what: "permission signature segment length",
            offset: 1,
            len: 8,
            available: 3
        })
    );
}

#[test]
fn marker_bytes_inside_segment_data_are_data() {
    let sig = cat(&[&seg(0, &[0xFF, 0xFF, 0x01]), &seg(3, &[0xFF]), &[0xFF], &[9; 65]]);
    let s = decode_permission_signature(&sig).unwrap();
    assert_eq!(s.segments[0].data.as_ref(), &[0xFF, 0xFF, 0x01]);
    assert_eq!((s.segments[1].index, s.segments[1].at), (3, 12));
    assert_eq!(s.signer_signature.as_ref(), &[9; 65]);
    let walk = assign_policy_signatures(&sig, 4).unwrap();
    let lens: Vec<usize> = walk.policies.iter().map(|b| b.len()).collect();
    assert_eq!(lens, [3, 0, 0, 1]);
}

#[test]
fn segment_indices_must_ascend() {
    let sig = cat(&[&seg(2, &[1]), &seg(1, &[2]), &[0xFF]]);
    assert_eq!(
        decode_permission_signature(&sig),
        Err(DecodeError::SegmentOrder {
            at: 10,
            index: 1,
            previous: 2
        })
    );
    let sig = cat(&[&seg(1, &[1]), &seg(1, &[2]), &[0xFF]]);
    assert!(matches!(
        decode_permission_signature(&sig),
        Err(DecodeError::SegmentOrder { index: 1, .. })
    ));
    // Kernel's walk: policy 1 meets a second segment for policy 0.
    let sig = cat(&[&seg(0, &[1]), &seg(0, &[2]), &[0xFF]]);
    assert_eq!(
        assign_policy_signatures(&sig, 3),
        Err(DecodeError::PolicySignatureOrder {
            policy: 1,
            index: 0,
            at: 10
        })
    );
}

#[test]
fn signer_marker_is_mandatory() {
    assert_eq!(
        decode_permission_signature(&seg(0, &[1])),
        Err(DecodeError::MissingSignerMarker { at: 10, found: None })
    );
    assert_eq!(
        decode_permission_signature(&[]),
        Err(DecodeError::MissingSignerMarker { at: 0, found: None })
    );
    assert_eq!(
        assign_policy_signatures(&[], 1),
        Err(DecodeError::MissingSignerMarker { at: 0, found: None })
    );
    // With two policies, a segment for policy 5 is never consumed and sits where 0xFF must be.
    let sig = cat(&[&seg(5, &[1]), &[0xFF]]);
    assert_eq!(
        assign_policy_signatures(&sig, 2),
        Err(DecodeError::MissingSignerMarker { at: 0, found: Some(5) })
    );
    // No policies, no segments: just the marker.
    let walk = assign_policy_signatures(&[0xFF, 1, 2], 0).unwrap();
    assert_eq!(walk.signer_signature.as_ref(), &[1, 2]);
}

#[test]
fn replayable_prefix_is_stripped_once() {
    let inner = cat(&[&[0xFF], &[7; 65]]);
    let s = decode_permission_signature(&cat(&[REPLAYABLE_MAGIC.as_slice(), &inner])).unwrap();
    assert!(s.replayable);
    // A second magic is signature bytes: index 0x05 with an impossible length.
    let twice = cat(&[REPLAYABLE_MAGIC.as_slice(), REPLAYABLE_MAGIC.as_slice(), &inner]);
    assert!(matches!(
        decode_permission_signature(&twice),
        Err(DecodeError::OutOfBounds { offset: 9, .. })
    ));
}

/// `hook ‖ heads ‖ tails` with the five fields at canonical positions.
fn wrapper(hook: [u8; 20], fields: [&[u8]; 5]) -> Vec<u8> {
    let mut heads = Vec::new();
    let mut tails = Vec::new();
    for f in fields {
        heads.extend_from_slice(&w(160 + tails.len() as u64));
        tails.extend_from_slice(&w(f.len() as u64));
        tails.extend_from_slice(f);
        tails.resize(tails.len().div_ceil(32) * 32, 0);
    }
    cat(&[&hook, &heads, &tails])
}

#[test]
fn enable_wrapper_truncations() {
    assert_eq!(
        decode_enable_signature(&[0u8; 10]),
        Err(DecodeError::OutOfBounds {
            what: "enable signature",
            offset: 0,
            len: 20,
            available: 10
        })
    );
    let full = wrapper([1; 20], [&[1], &[2], &[3], &[4], &[5]]);
    // Only three head words survive: reading the fourth head fails.
    assert!(matches!(
        decode_enable_signature(&full[..20 + 96]),
        Err(DecodeError::BadOffset { .. } | DecodeError::OutOfBounds { .. })
    ));
    // Cut inside the last field's data.
    assert!(matches!(
        decode_enable_signature(&full[..full.len() - 32]),
        Err(DecodeError::BadLength {
            what: "enable signature",
            ..
        })
    ));
}

#[test]
fn enable_wrapper_offsets_and_lengths() {
    let mut sig = wrapper([0; 20], [&[1], &[2], &[3], &[4], &[5]]);
    sig[20 + 32 * 3..20 + 32 * 4].copy_from_slice(&w(1 << 40));
    assert!(matches!(
        decode_enable_signature(&sig),
        Err(DecodeError::BadOffset {
            what: "enable signature",
            at: 116,
            ..
        })
    ));
    let mut sig = wrapper([0; 20], [&[1], &[2], &[3], &[4], &[5]]);
    let len_at = 20 + 160;
    sig[len_at..len_at + 32].copy_from_slice(&(U256::MAX).to_be_bytes::<32>());
    assert!(matches!(
        decode_enable_signature(&sig),
        Err(DecodeError::BadLength {
            at: 180,
            value: U256::MAX,
            ..
        })
    ));
}

#[test]
fn enable_offsets_are_relative_to_byte_20_and_wrap() {
    // userOpSig's head says 2^256 - 20: Kernel adds it to byte 20 and lands on byte 0, whose
    // word (hook 0 ‖ the first 12 bytes of head 0 = 0) is a zero length.
    let mut sig = wrapper([0; 20], [&[1], &[2], &[3], &[4], &[5]]);
    sig[20 + 128..20 + 160].copy_from_slice(&neg(20));
    let e = decode_enable_signature(&sig).unwrap();
    assert!(e.user_op_sig.is_empty());
    assert_eq!(e.validator_data.as_ref(), &[1]);
    // Two fields may share one tail.
    let mut sig = wrapper([0; 20], [&[1], &[2], &[3], &[4], &[5]]);
    let head0 = sig[20..52].to_vec();
    sig[20 + 96..20 + 128].copy_from_slice(&head0);
    let e = decode_enable_signature(&sig).unwrap();
    assert_eq!(e.enable_sig, e.validator_data);
}

#[test]
fn selector_data_sizes() {
    assert!(matches!(
        decode_selector_data(&[1, 2, 3]),
        Err(DecodeError::OutOfBounds { len: 4, .. })
    ));
    let grant = decode_selector_data(&[0xe9, 0xae, 0x5c, 0x53]).unwrap();
    assert_eq!((grant.selector.0, grant.install), ([0xe9, 0xae, 0x5c, 0x53], None));
    for len in [5, 43] {
        assert!(matches!(
            decode_selector_data(&vec![0; len]),
            Err(DecodeError::BadSize { .. })
        ));
    }
    assert!(matches!(
        decode_selector_data(&[0; 44]),
        Err(DecodeError::OutOfBounds { offset: 44, .. })
    ));
    let with = |init: &[u8]| {
        let tail = cat(&[
            &w(0x40),
            &w(0x80),
            &w(init.len() as u64),
            &{
                let mut b = init.to_vec();
                b.resize(32, 0);
                b
            },
            &w(0),
        ]);
        cat(&[&[0xAA; 4], &[0x11; 20], &[0x22; 20], &tail])
    };
    assert!(matches!(
        decode_selector_data(&with(&[0x01])),
        Err(DecodeError::InvalidValue { .. })
    ));
    assert!(matches!(
        decode_selector_data(&with(&[])),
        Err(DecodeError::TooShort { .. })
    ));
    let install = decode_selector_data(&with(&[0xFF])).unwrap().install.unwrap();
    assert_eq!(
        (install.module, install.hook),
        (Address::repeat_byte(0x11), Address::repeat_byte(0x22))
    );
}

fn permission_data(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut heads = Vec::new();
    let mut tails = Vec::new();
    for e in entries {
        heads.extend_from_slice(&w(32 * entries.len() as u64 + tails.len() as u64));
        tails.extend_from_slice(&w(e.len() as u64));
        tails.extend_from_slice(e);
        tails.resize(tails.len().div_ceil(32) * 32, 0);
    }
    cat(&[&w(0x20), &w(entries.len() as u64), &heads, &tails])
}

#[test]
fn permission_entry_counts_and_sizes() {
    assert_eq!(
        decode_permission_data(&permission_data(&[])),
        Err(DecodeError::PermissionEntryCount(0))
    );
    let many = vec![vec![0u8; 22]; 255];
    assert_eq!(
        decode_permission_data(&permission_data(&many)),
        Err(DecodeError::PermissionEntryCount(255))
    );
    let huge = cat(&[&w(0x20), &(U256::from(1u8) << 200usize).to_be_bytes::<32>()]);
    assert_eq!(
        decode_permission_data(&huge),
        Err(DecodeError::PermissionEntryCount(usize::MAX))
    );
    assert_eq!(
        decode_permission_data(&permission_data(&[vec![0u8; 21]])),
        Err(DecodeError::TooShort {
            what: "permission entry",
            len: 21,
            min: 22
        })
    );
    let signer_only = decode_permission_data(&permission_data(&[vec![0u8; 22]])).unwrap();
    assert!(signer_only.policies.is_empty());
    let max = vec![vec![0u8; 22]; 254];
    assert_eq!(
        decode_permission_data(&permission_data(&max)).unwrap().policies.len(),
        253
    );
    assert_eq!(FixedBytes::<2>::ZERO, signer_only.flag);
}
