//! Property tests: encode random structures the way the SDK / Solidity does, decode them back,
//! and compare; random bytes never make a decoder panic.

use alloy_primitives::{keccak256, Address, Bytes, FixedBytes, B256, U256};
use alloy_sol_types::{sol, SolCall, SolValue};
use k256::ecdsa::SigningKey;
use opgate::decode::{
    assign_policy_signatures, decode_calls, decode_enable_signature, decode_init_code, decode_kernel_with,
    decode_multichain_signature, decode_nonce, decode_nonce_bytes, decode_permission_data, decode_permission_signature,
    decode_policy, decode_selector_data, detect_stub,
    ecdsa::{eip191_hash, HashScheme},
    multichain::{approver, merkle_root_of},
    policy::{PermissionCallType, CALL_POLICY_V0_0_1, CALL_POLICY_V0_0_4, CALL_POLICY_V0_0_5},
    verify_merkle_proof, CallKind, DecodeOptions, ExecCallType, MultiChainSignature, ParamCondition, PolicyParams,
    ValidationMode, ValidationType,
};
use proptest::prelude::*;

use crate::fixtures::sign;

sol! {
    #[derive(Debug)]
    struct ParamRuleV1 { uint8 condition; uint64 offset; bytes32 param; }
    #[derive(Debug)]
    struct PermissionV1 {
        bytes1 callType;
        address target;
        bytes4 selector;
        uint256 valueLimit;
        ParamRuleV1[] rules;
    }
    #[derive(Debug)]
    struct ParamRule { uint8 condition; uint64 offset; bytes32[] params; }
    #[derive(Debug)]
    struct Permission {
        bytes1 callType;
        address target;
        bytes4 selector;
        uint256 valueLimit;
        ParamRule[] rules;
    }
    #[derive(Debug)]
    struct Execution { address target; uint256 value; bytes callData; }
    function execute(bytes32 mode, bytes executionCalldata);
}

mod v2 {
    alloy_sol_types::sol! {
        struct Call { address to; uint256 value; bytes data; }
        function executeBatch(Call[] calls);
        function execute(address to, uint256 value, bytes data, uint8 operation);
    }
}

mod simple {
    alloy_sol_types::sol! {
        function executeBatch(address[] dest, uint256[] value, bytes[] func);
    }
}

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address::from)
}

fn word() -> impl Strategy<Value = B256> {
    any::<[u8; 32]>().prop_map(B256::from)
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn rule(conditions: u8) -> impl Strategy<Value = ParamRule> {
    (0..conditions, any::<u64>(), proptest::collection::vec(word(), 1..4)).prop_map(|(condition, offset, params)| {
        ParamRule {
            condition,
            offset,
            params,
        }
    })
}

fn permission(conditions: u8) -> impl Strategy<Value = Permission> {
    (
        prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8), any::<u8>()],
        address(),
        any::<[u8; 4]>(),
        any::<[u8; 32]>(),
        proptest::collection::vec(rule(conditions), 0..4),
    )
        .prop_map(|(ct, target, selector, value, rules)| Permission {
            callType: FixedBytes([ct]),
            target,
            selector: FixedBytes(selector),
            valueLimit: U256::from_be_bytes(value),
            rules,
        })
}

fn execution() -> impl Strategy<Value = Execution> {
    (address(), any::<[u8; 32]>(), bytes(100)).prop_map(|(target, value, call_data)| Execution {
        target,
        value: U256::from_be_bytes(value),
        callData: call_data,
    })
}

fn check_calls(decoded: &[opgate::decode::Call], want: &[(Address, U256, Bytes)]) {
    assert_eq!(decoded.len(), want.len());
    for (c, (t, v, d)) in decoded.iter().zip(want) {
        assert_eq!((&c.target, &c.value, &c.data), (t, v, d));
        assert_eq!(c.selector.is_none(), d.len() < 4);
        assert_eq!(c.short_data, (1..4).contains(&d.len()));
    }
}

/// `(leaves, root, proofs)` of a sorted-pair keccak tree (odd nodes are carried up).
fn merkle(leaves: &[B256]) -> (B256, Vec<Vec<B256>>) {
    let mut proofs = vec![Vec::new(); leaves.len()];
    let mut level: Vec<(B256, Vec<usize>)> = leaves.iter().enumerate().map(|(i, l)| (*l, vec![i])).collect();
    while level.len() > 1 {
        let mut next = Vec::new();
        for pair in level.chunks(2) {
            match pair {
                [(a, ia), (b, ib)] => {
                    ia.iter().for_each(|i| proofs[*i].push(*b));
                    ib.iter().for_each(|i| proofs[*i].push(*a));
                    let parent = merkle_root_of(*a, &[*b]);
                    next.push((parent, ia.iter().chain(ib).copied().collect()));
                }
                [single] => next.push(single.clone()),
                _ => unreachable!(),
            }
        }
        level = next;
    }
    (level[0].0, proofs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn call_policy_permissions_round_trip(perms in proptest::collection::vec(permission(7), 0..4)) {
        let data = perms.abi_encode();
        let p = decode_policy(CALL_POLICY_V0_0_4, FixedBytes([0, 0]), &data);
        let PolicyParams::Call { permissions } = p.params else {
            panic!("not a call policy: {:?}", p.params)
        };
        prop_assert_eq!(permissions.len(), perms.len());
        for (got, want) in permissions.iter().zip(&perms) {
            let ct = match want.callType[0] { 0 => PermissionCallType::Call, 1 => PermissionCallType::Batch,
                0xFF => PermissionCallType::DelegateCall, b => PermissionCallType::Other(b) };
            prop_assert_eq!(got.call_type, ct);
            prop_assert_eq!(got.target, want.target);
            prop_assert_eq!(got.selector, want.selector);
            prop_assert_eq!(got.value_limit, want.valueLimit);
            prop_assert_eq!(got.rules.len(), want.rules.len());
            for (r, w) in got.rules.iter().zip(&want.rules) {
                prop_assert_eq!(r.condition.id(), w.condition);
                prop_assert_eq!(r.offset, w.offset);
                prop_assert_eq!(&r.params, &w.params);
            }
        }
    }

    #[test]
    fn call_policy_v1_and_condition_range(perms in proptest::collection::vec(permission(8), 1..3)) {
        // v0.0.1: one `bytes32 param` per rule; conditions 0..=5 only.
        let v1: Vec<PermissionV1> = perms.iter().map(|p| PermissionV1 {
            callType: p.callType, target: p.target, selector: p.selector, valueLimit: p.valueLimit,
            rules: p
                .rules
                .iter()
                .map(|r| ParamRuleV1 { condition: r.condition, offset: r.offset, param: r.params[0] })
                .collect(),
        }).collect();
        let p = decode_policy(CALL_POLICY_V0_0_1, FixedBytes([0, 1]), &v1.abi_encode());
        let max = perms.iter().flat_map(|p| p.rules.iter().map(|r| r.condition)).max();
        match p.params {
            PolicyParams::Call { permissions } => {
                prop_assert!(max.is_none_or(|m| m < 6));
                for (got, want) in permissions.iter().zip(&v1) {
                    for (r, w) in got.rules.iter().zip(&want.rules) {
                        prop_assert_eq!(&r.params, &vec![w.param]);
                    }
                }
            }
            PolicyParams::Invalid { .. } => prop_assert!(max.is_some_and(|m| m >= 6)),
            other => panic!("{other:?}"),
        }
        // SLICE_EQUAL (7) is only known to 0.0.5.
        let p5 = decode_policy(CALL_POLICY_V0_0_5, FixedBytes([0, 0]), &perms.abi_encode());
        let PolicyParams::Call { permissions } = p5.params else { panic!("0.0.5 accepts 0..=7") };
        let slice_eq =
            permissions.iter().flat_map(|p| &p.rules).any(|r| r.condition == ParamCondition::SliceEqual);
        prop_assert_eq!(slice_eq, perms.iter().flat_map(|p| &p.rules).any(|r| r.condition == 7));
    }

    #[test]
    fn batches_round_trip(execs in proptest::collection::vec(execution(), 0..5), prefix in any::<bool>()) {
        let mut mode = [0u8; 32];
        mode[0] = 0x01;
        let cd = executeCall { mode: mode.into(), executionCalldata: execs.abi_encode().into() }.abi_encode();
        let cd = if prefix { [&[0x8d, 0xd7, 0x71, 0x2f][..], &cd].concat() } else { cd };
        let d = decode_calls(&cd).unwrap();
        prop_assert_eq!(d.execute_user_op, prefix);
        prop_assert_eq!(d.call_type, Some(ExecCallType::Batch));
        let want: Vec<_> = execs.iter().map(|e| (e.target, e.value, e.callData.clone())).collect();
        check_calls(&d.calls, &want);

        // The same calls through Kernel v2 / SimpleAccount v0.8 and SimpleAccount v0.7.
        let calls: Vec<v2::Call> = execs
            .iter()
            .map(|e| v2::Call { to: e.target, value: e.value, data: e.callData.clone() })
            .collect();
        let d = decode_calls(&v2::executeBatchCall { calls }.abi_encode()).unwrap();
        check_calls(&d.calls, &want);
        let d = decode_calls(&simple::executeBatchCall {
            dest: execs.iter().map(|e| e.target).collect(),
            value: execs.iter().map(|e| e.value).collect(),
            func: execs.iter().map(|e| e.callData.clone()).collect(),
        }.abi_encode()).unwrap();
        check_calls(&d.calls, &want);
    }

    #[test]
    fn single_and_delegate_round_trip(e in execution(), delegate in any::<bool>(), exec_type in any::<u8>()) {
        let mut mode = [0u8; 32];
        mode[0] = if delegate { 0xFF } else { 0x00 };
        mode[1] = exec_type;
        let packed = if delegate { [e.target.as_slice(), &e.callData].concat() }
            else { [e.target.as_slice(), &e.value.to_be_bytes::<32>(), &e.callData].concat() };
        let cd = executeCall { mode: mode.into(), executionCalldata: packed.into() }.abi_encode();
        let d = decode_calls(&cd).unwrap();
        let want_value = if delegate { U256::ZERO } else { e.value };
        check_calls(&d.calls, &[(e.target, want_value, e.callData.clone())]);
        prop_assert_eq!(d.calls[0].call_type, if delegate { CallKind::DelegateCall } else { CallKind::Call });
        prop_assert_eq!(d.reverts.is_some(), exec_type > 1);
        let operation = u8::from(delegate);
        let v2 = v2::executeCall { to: e.target, value: e.value, data: e.callData.clone(), operation };
        let d = decode_calls(&v2.abi_encode()).unwrap();
        check_calls(&d.calls, &[(e.target, want_value, e.callData.clone())]);
    }

    #[test]
    fn permission_signatures_round_trip(
        segs in proptest::collection::btree_map(0u8..0xFF, bytes(80), 0..6),
        signer in bytes(100),
        extra in 0usize..4,
        replayable in any::<bool>(),
    ) {
        let mut sig = Vec::new();
        if replayable {
            sig.extend_from_slice(keccak256("kernel.replayable.signature").as_slice());
        }
        for (i, d) in &segs {
            sig.push(*i);
            sig.extend_from_slice(&(d.len() as u64).to_be_bytes());
            sig.extend_from_slice(d);
        }
        sig.push(0xFF);
        sig.extend_from_slice(&signer);
        let split = decode_permission_signature(&sig).unwrap();
        prop_assert_eq!(split.replayable, replayable);
        prop_assert_eq!(&split.signer_signature, &signer);
        let got: Vec<_> = split.segments.iter().map(|s| (s.index, s.data.clone())).collect();
        let want: Vec<_> = segs.iter().map(|(i, d)| (*i, d.clone())).collect();
        prop_assert_eq!(got, want);

        let n = segs.keys().last().map_or(0, |m| usize::from(*m) + 1) + extra;
        let walk = assign_policy_signatures(&sig, n.min(255)).unwrap();
        prop_assert_eq!(&walk.signer_signature, &signer);
        for (i, data) in walk.policies.iter().enumerate() {
            let want = segs.get(&(i as u8)).cloned().unwrap_or_default();
            prop_assert_eq!(data, &want);
        }
        // Fewer policies than segments: the walk stops before a segment Kernel never reads.
        if let Some(max) = segs.keys().last() {
            prop_assert!(assign_policy_signatures(&sig, usize::from(*max)).is_err());
        }
    }

    #[test]
    fn enable_wrappers_round_trip(
        hook in address(),
        policies in proptest::collection::vec((any::<[u8; 2]>(), address(), bytes(40)), 0..4),
        signer in (any::<[u8; 2]>(), address()),
        hook_data in bytes(40),
        enable_sig in bytes(130),
        user_op_sig in bytes(90),
    ) {
        let entry = |flag: [u8; 2], a: Address, d: &[u8]| Bytes::from([&flag[..], a.as_slice(), d].concat());
        let mut entries: Vec<Bytes> = policies.iter().map(|(f, a, d)| entry(*f, *a, d)).collect();
        entries.push(entry(signer.0, signer.1, &[]));
        let validator_data = Bytes::from(entries.abi_encode());
        let routing = (Bytes::from(vec![0xFF]), Bytes::from(vec![0, 0])).abi_encode_params();
        let selector_data = Bytes::from([&[0xe9, 0xae, 0x5c, 0x53][..], &[0u8; 40], &routing].concat());
        let tuple = (
            validator_data.clone(),
            hook_data.clone(),
            selector_data.clone(),
            enable_sig.clone(),
            user_op_sig.clone(),
        );
        let sig = [hook.as_slice(), &tuple.abi_encode_params()].concat();
        let e = decode_enable_signature(&sig).unwrap();
        prop_assert_eq!(e.hook, hook);
        prop_assert_eq!(&e.validator_data, &validator_data);
        prop_assert_eq!(&e.hook_data, &hook_data);
        prop_assert_eq!(&e.selector_data, &selector_data);
        prop_assert_eq!((&e.enable_sig, &e.user_op_sig), (&enable_sig, &user_op_sig));
        prop_assert_eq!(decode_selector_data(&e.selector_data).unwrap().selector.0, [0xe9, 0xae, 0x5c, 0x53]);
        let p = decode_permission_data(&e.validator_data).unwrap();
        prop_assert_eq!(p.flag.0, signer.0);
        prop_assert_eq!(p.signer.contract, signer.1);
        prop_assert_eq!(p.policies.len(), policies.len());
        for (got, (f, a, _)) in p.policies.iter().zip(&policies) {
            prop_assert_eq!((got.flag.0, got.address), (*f, *a));
        }
    }

    #[test]
    fn enable_tails_anywhere(
        fields in proptest::collection::vec(bytes(70), 5),
        order in Just((0..5).collect::<Vec<usize>>()).prop_shuffle(),
        gaps in proptest::collection::vec(0usize..3, 5),
    ) {
        // Tails in any order, with gaps, offsets relative to byte 20 as Kernel reads them.
        let mut tails = Vec::new();
        let mut offsets = [0usize; 5];
        for &k in &order {
            tails.extend(std::iter::repeat_n(0xAB, 32 * gaps[k]));
            offsets[k] = 160 + tails.len();
            tails.extend_from_slice(&U256::from(fields[k].len()).to_be_bytes::<32>());
            tails.extend_from_slice(&fields[k]);
        }
        let mut sig = vec![0x11; 20];
        for o in offsets {
            sig.extend_from_slice(&U256::from(o).to_be_bytes::<32>());
        }
        sig.extend(tails);
        let e = decode_enable_signature(&sig).unwrap();
        let got = [e.validator_data, e.hook_data, e.selector_data, e.enable_sig, e.user_op_sig];
        prop_assert_eq!(got.to_vec(), fields);
    }

    #[test]
    fn merkle_approvals(
        seed in any::<[u8; 32]>(),
        leaves in proptest::collection::vec(word(), 1..9),
        pick in any::<prop::sample::Index>(),
    ) {
        let Ok(key) = SigningKey::from_slice(&seed) else { return Ok(()) };
        let owner = Address::from_private_key(&key);
        let (root, proofs) = merkle(&leaves);
        let i = pick.index(leaves.len());
        prop_assert!(verify_merkle_proof(leaves[i], &proofs[i], root));
        prop_assert!(!verify_merkle_proof(keccak256(leaves[i]), &proofs[i], root));
        let ecdsa = sign(&key, &eip191_hash(&root));
        let sig = [&ecdsa[..], root.as_slice(), &proofs[i].abi_encode()].concat();
        let form = decode_multichain_signature(&sig, false).unwrap();
        let MultiChainSignature::Merkle { merkle_root, proof, .. } = &form else { panic!("merkle form") };
        prop_assert_eq!((*merkle_root, proof), (root, &proofs[i]));
        prop_assert_eq!(approver(&form, Some(leaves[i]), None).unwrap(), Some((owner, HashScheme::Eip191)));
        prop_assert_eq!(approver(&form, None, Some(owner)).unwrap(), Some((owner, HashScheme::Eip191)));
    }

    #[test]
    fn nonces_round_trip(
        mode in any::<u8>(),
        ty in 0u8..3,
        id in any::<[u8; 20]>(),
        lane in any::<u16>(),
        seq in any::<u64>(),
    ) {
        let mut b = [0u8; 32];
        b[0] = mode;
        b[1] = ty;
        b[2..22].copy_from_slice(&id);
        b[22..24].copy_from_slice(&lane.to_be_bytes());
        b[24..].copy_from_slice(&seq.to_be_bytes());
        let n = decode_nonce(U256::from_be_bytes(b)).unwrap();
        prop_assert_eq!(n.mode, if mode == 1 { ValidationMode::Enable } else { ValidationMode::Default });
        prop_assert_eq!((n.lane, n.sequence), (lane, seq));
        prop_assert_eq!(n.key.as_slice(), &b[..24]);
        match n.validation_type {
            ValidationType::Root => prop_assert_eq!(n.validation_id, None),
            ValidationType::Validator => prop_assert_eq!(n.validator, Some(Address::from(id))),
            ValidationType::Permission => {
                let vid = n.validation_id.unwrap();
                prop_assert_eq!(&vid[..5], &b[1..6]);
                prop_assert!(vid[5..].iter().all(|x| *x == 0));
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        n in 0usize..300,
        mode in 0u8..3,
        ty in 0u8..4,
    ) {
        let _ = decode_nonce_bytes(&data);
        let _ = decode_calls(&data);
        let _ = decode_permission_signature(&data);
        let _ = assign_policy_signatures(&data, n);
        let _ = decode_enable_signature(&data);
        let _ = decode_selector_data(&data);
        let _ = decode_permission_data(&data);
        let _ = decode_multichain_signature(&data, true);
        let _ = decode_init_code(&data);
        let _ = detect_stub(&data);
        for a in [CALL_POLICY_V0_0_1, CALL_POLICY_V0_0_4, CALL_POLICY_V0_0_5] {
            let _ = opgate::decode::decode_policy_params(a, &data);
        }
        let mut b = [0u8; 32];
        b[0] = mode;
        b[1] = ty;
        b[2..6].copy_from_slice(&keccak256(&data)[..4]);
        let nonce = U256::from_be_bytes(b);
        let opts = DecodeOptions { chain_id: Some(1), ..Default::default() };
        let bytes = Bytes::from(data.clone());
        let _ = decode_kernel_with(Address::ZERO, nonce, &bytes, &bytes, &data, &opts);
    }

    #[test]
    fn mutated_offsets_never_panic(
        execs in proptest::collection::vec(execution(), 1..4),
        at in any::<prop::sample::Index>(),
        w in word(),
    ) {
        // Overwrite one aligned word of a valid batch with an arbitrary value.
        let mut exec = execs.abi_encode();
        let i = at.index(exec.len() / 32) * 32;
        exec[i..i + 32].copy_from_slice(w.as_slice());
        let mut mode = [0u8; 32];
        mode[0] = 1;
        let _ = decode_calls(&executeCall { mode: mode.into(), executionCalldata: exec.into() }.abi_encode());
    }
}
