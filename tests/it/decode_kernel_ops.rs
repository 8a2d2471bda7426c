//! `decode_kernel` over whole ops: the JSON it prints, how it reports parts it cannot decode,
//! and enable approvals it must infer (release, owner) or refuse to claim (Merkle form without
//! the digest).

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_sol_types::SolValue;
use opgate::decode::{
    decode_kernel_structure, decode_kernel_with, signature::REPLAYABLE_MAGIC, DecodeError, DecodeOptions, KernelVersion,
};

use crate::fixtures::{addr, key, sign, vector, OpParts};

#[test]
fn json_spellings() {
    let v = vector("call-equal-enable-k031");
    let opts = DecodeOptions {
        chain_id: Some(31337),
        kernel_version: Some(KernelVersion::V3_1),
        root_owner: Some(addr(&v["rootValidator"]["owner"])),
        ..Default::default()
    };
    let op = OpParts::of(&v);
    assert!(op.init_code.is_empty());
    let d = op.decode(&opts);
    let j = serde_json::to_value(&d).unwrap();
    assert_eq!(j["sender"], "0x49f0fadc8c183a2c18d7cd4515ebe0329ab0b839");
    assert_eq!(j["nonce"]["mode"], "enable");
    assert_eq!(j["nonce"]["validationType"], "permission");
    assert_eq!(j["nonce"]["permissionId"], "0x6ab1b460");
    assert_eq!(
        j["nonce"]["validationId"],
        "0x026ab1b46000000000000000000000000000000000"
    );
    assert_eq!(
        (&j["nonce"]["lane"], &j["nonce"]["sequence"]),
        (&"0".into(), &"0".into())
    );
    assert_eq!(j["callType"], "single");
    assert_eq!(j["calls"]["format"], "kernel-execute");
    let call = &j["calls"]["calls"][0];
    assert_eq!(call["callType"], "call");
    assert_eq!(call["target"], "0xedcc53f25bac99ebb78d3a0012ec78ae3e67494e");
    assert_eq!((&call["value"], &call["selector"]), (&"0".into(), &"0xa9059cbb".into()));
    let perm = &j["permission"];
    assert_eq!(perm["signer"]["type"], "ecdsa");
    assert_eq!(perm["signer"]["contract"], "0x6a6f069e2a08c2468e7724ab3250cdbfba14d4ff");
    assert_eq!(perm["signer"]["address"], "0x664991b95300f6c29a15ffb579476ac0453fb2f5");
    let types: Vec<&str> = perm["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["call", "gas", "rate-limit", "timestamp"]);
    let cp = &perm["policies"][0];
    assert_eq!((&cp["version"], &cp["flag"]), (&"0.0.4".into(), &"0x0000".into()));
    let p0 = &cp["permissions"][0];
    assert_eq!((&p0["callType"], &p0["valueLimit"]), (&"call".into(), &"0".into()));
    let r1 = &p0["rules"][1];
    assert_eq!(
        (&r1["condition"], &r1["offset"]),
        (&"LESS_THAN_OR_EQUAL".into(), &"32".into())
    );
    assert_eq!(perm["policies"][1]["allowed"], "500000000000000000");
    assert_eq!(
        perm["policies"][1]["allowedPaymaster"],
        "0x0000000000000000000000000000000000000000"
    );
    assert_eq!(perm["policies"][2]["count"], "10");
    assert_eq!(perm["policies"][3]["validUntil"], "1795392000");
    let enable = &j["enable"];
    assert_eq!(enable["approver"], "0x4769400e9445105c7166d8225f06eb45c7d2fc29");
    assert_eq!(
        (&enable["approved"], &enable["multichain"]),
        (&true.into(), &false.into())
    );
    assert_eq!(
        (&enable["kernelVersion"], &enable["digestNonce"]),
        (&"0.3.1".into(), &"1".into())
    );
    assert_eq!(enable["approverScheme"], "raw");
    assert_eq!(j["selectorData"]["install"]["callType"], "delegatecall");
    assert_eq!(j["errors"], serde_json::json!([]));
}

#[test]
fn parts_fail_independently() {
    let op = OpParts::of(&vector("sudo-regular-k031"));
    let opts = DecodeOptions::default();
    let d = decode_kernel_with(
        op.sender,
        op.nonce,
        &Bytes::from_static(&[0xe9, 0xae, 0x5c, 0x53, 1]),
        &op.signature,
        &[1, 2],
        &opts,
    );
    let parts: Vec<&str> = d.errors.iter().map(|e| e.part).collect();
    assert_eq!(parts, ["callData", "initCode"]);
    assert!(d.nonce.is_some() && d.permission_signature.is_some());
    let j = serde_json::to_value(&d).unwrap();
    assert_eq!(j["errors"][0]["part"], "callData");
    assert!(j["errors"][0]["message"].as_str().unwrap().contains("callData"));

    // A replayable prefix on a v3.1 account is read as signature bytes there: reported.
    let sig = Bytes::from([REPLAYABLE_MAGIC.as_slice(), &op.signature].concat());
    let opts = DecodeOptions {
        kernel_version: Some(KernelVersion::V3_1),
        ..Default::default()
    };
    let d = decode_kernel_with(op.sender, op.nonce, &op.call_data, &sig, &[], &opts);
    assert_eq!(d.errors.iter().map(|e| e.part).collect::<Vec<_>>(), ["signature"]);
    let opts = DecodeOptions {
        kernel_version: Some(KernelVersion::V3_3),
        ..Default::default()
    };
    let d = decode_kernel_with(op.sender, op.nonce, &op.call_data, &sig, &[], &opts);
    assert!(d.errors.is_empty() && d.replayable && d.permission_signature.unwrap().signer_signature.len() == 65);

    // An unknown validation type fails the nonce; the calls still decode.
    let bad_nonce = U256::from(3u8) << 240usize;
    let d = decode_kernel_with(
        op.sender,
        bad_nonce,
        &op.call_data,
        &Bytes::new(),
        &[],
        &DecodeOptions::default(),
    );
    assert_eq!(d.errors[0].error, DecodeError::UnknownValidationType(3));
    assert!(d.calls.is_some());
}

#[test]
fn merkle_enable_through_decode_kernel() {
    // Re-sign a recorded enable op the way a multi-chain approval does: the Enable digests of
    // this account on three chains are leaves, the owner signs EIP-191(root) once, and this
    // chain's enableSig is `sig ‖ root ‖ abi.encode(proof)`.
    let op = OpParts::of(&vector("sudo-enable-deploy-k031"));
    let e = opgate::decode::decode_enable_signature(&op.signature).unwrap();
    let vid = opgate::decode::decode_nonce(op.nonce).unwrap().validation_id.unwrap();
    let digest = |chain_id| {
        let domain = opgate::decode::enable::EnableDomain {
            account: op.sender,
            chain_id,
            version: KernelVersion::V3_1,
        };
        opgate::decode::enable_digest(&domain, vid, 1, &e)
    };
    let leaves = [digest(31337), digest(1), digest(10)];
    let pair = opgate::decode::multichain::merkle_root_of(leaves[0], &[leaves[1]]);
    let root = opgate::decode::multichain::merkle_root_of(pair, &[leaves[2]]);
    let key = key();
    let owner = Address::from_private_key(&key);
    let root_sig = sign(&key, &opgate::decode::ecdsa::eip191_hash(&root));
    let enable_sig = [&root_sig[..], root.as_slice(), &vec![leaves[1], leaves[2]].abi_encode()].concat();
    let tuple = (
        e.validator_data.clone(),
        e.hook_data.clone(),
        e.selector_data.clone(),
        Bytes::from(enable_sig),
        e.user_op_sig.clone(),
    );
    let sig = Bytes::from([e.hook.as_slice(), &tuple.abi_encode_params()].concat());
    let opts = DecodeOptions {
        chain_id: Some(31337),
        root_owner: Some(owner),
        ..Default::default()
    };
    let d = decode_kernel_with(op.sender, op.nonce, &op.call_data, &sig, &[], &opts);
    let info = d.enable.unwrap();
    assert!(info.multichain);
    assert_eq!((info.merkle_root, info.merkle_proof_valid), (Some(root), Some(true)));
    assert_eq!((info.approver, info.approved), (Some(owner), Some(true)));
    assert_eq!(info.kernel_version, Some(KernelVersion::V3_1));
    // The same signature does not prove this op's digest on another chain id.
    let opts = DecodeOptions {
        chain_id: Some(5),
        kernel_version: Some(KernelVersion::V3_1),
        root_owner: Some(owner),
        ..Default::default()
    };
    let info = decode_kernel_with(op.sender, op.nonce, &op.call_data, &sig, &[], &opts)
        .enable
        .unwrap();
    assert_eq!((info.merkle_proof_valid, info.approved), (Some(false), Some(false)));
}

#[test]
fn defaults_without_chain_id() {
    // The plain entry point knows release and owner from the initCode but not the chain id, so
    // it reports the enable data and root without an approver.
    let v = vector("sudo-enable-deploy-k033");
    let op = OpParts::of(&v);
    assert!(!op.init_code.is_empty());
    let d = opgate::decode::decode_kernel(op.sender, op.nonce, &op.call_data, &op.signature, &op.init_code);
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    let enable = d.enable.unwrap();
    assert_eq!(enable.kernel_version, Some(KernelVersion::V3_3));
    assert_eq!((enable.digest, enable.approver, enable.approved), (None, None, None));
    let root = enable.root_validator.unwrap();
    assert_eq!(root.owner, Some(addr(&v["rootValidator"]["owner"])));
}

#[test]
fn merkle_approval_needs_the_digest() {
    // Without a chain id the digest is unknown: the root's signer is reported, not approved.
    let key = key();
    let owner = Address::from_private_key(&key);
    let root = B256::repeat_byte(9);
    let root_sig = sign(&key, &opgate::decode::ecdsa::eip191_hash(&root));
    let enable_sig = [&root_sig[..], root.as_slice(), &Vec::<B256>::new().abi_encode()].concat();
    let fields = (
        Bytes::new(),
        Bytes::new(),
        Bytes::from(vec![0xe9, 0xae, 0x5c, 0x53]),
        Bytes::from(enable_sig),
        Bytes::from(vec![0xFF]),
    );
    let sig = Bytes::from([&[0u8; 20][..], &fields.abi_encode_params()].concat());
    let nonce = U256::from_be_bytes({
        let mut b = [0u8; 32];
        b[0] = 1;
        b[1] = 2;
        b[2] = 0x42;
        b
    });
    let opts = DecodeOptions {
        root_owner: Some(owner),
        ..Default::default()
    };
    let d = decode_kernel_with(Address::repeat_byte(1), nonce, &Bytes::new(), &sig, &[], &opts);
    let info = d.enable.unwrap();
    assert!(info.multichain);
    assert_eq!(
        (info.approver, info.merkle_proof_valid, info.approved),
        (Some(owner), None, None)
    );
}

#[test]
fn approval_is_verified_separately_with_the_same_result() {
    // The structural decode leaves the approval for `verify_approval`; together they report
    // exactly what the one-call decode reports, for every recorded enable op, whether the
    // owner is known or not.
    let mut checked = 0;
    for (name, v) in crate::fixtures::vectors() {
        let op = OpParts::of(&v);
        let owner = v["rootValidator"]["owner"].as_str().map(|o| o.parse().unwrap());
        for root_owner in [None, owner] {
            let opts = DecodeOptions {
                chain_id: Some(31337),
                root_owner,
                ..Default::default()
            };
            let full = decode_kernel_with(op.sender, op.nonce, &op.call_data, &op.signature, &op.init_code, &opts);
            let mut parts =
                decode_kernel_structure(op.sender, op.nonce, &op.call_data, &op.signature, &op.init_code, &opts);
            if let Some(e) = &parts.enable {
                assert_eq!(
                    (e.digest, e.approver, e.approved, e.merkle_proof_valid),
                    (None, None, None, None),
                    "{name}: nothing verified yet"
                );
                checked += 1;
            }
            parts.verify_approval(&opts);
            assert_eq!(parts, full, "{name}");
            parts.verify_approval(&opts);
            assert_eq!(parts, full, "{name}: verifying twice changes nothing");
        }
    }
    assert!(checked >= 10, "only {checked} enable decodes");
}

#[test]
fn an_unrecoverable_approval_fails_when_the_owner_is_known() {
    // Kernel's ECDSA validator reverts on a signature it cannot recover, so with the owner
    // known such an approval is refused, not left for the chain.
    let v = vector("call-equal-enable-k031");
    let op = OpParts::of(&v);
    let e = opgate::decode::decode_enable_signature(&op.signature).unwrap();
    let mut bad = e.enable_sig.to_vec();
    bad[64] = 29; // no such recovery id
    let tuple = (
        e.validator_data.clone(),
        e.hook_data.clone(),
        e.selector_data.clone(),
        Bytes::from(bad),
        e.user_op_sig.clone(),
    );
    let sig = Bytes::from([e.hook.as_slice(), &tuple.abi_encode_params()].concat());
    let owner = addr(&v["rootValidator"]["owner"]);
    let with_owner = DecodeOptions {
        chain_id: Some(31337),
        kernel_version: Some(KernelVersion::V3_1),
        root_owner: Some(owner),
        ..Default::default()
    };
    let d = decode_kernel_with(op.sender, op.nonce, &op.call_data, &sig, &[], &with_owner);
    assert_eq!(d.enable.as_ref().unwrap().approved, Some(false));
    assert_eq!(d.errors.iter().map(|e| e.part).collect::<Vec<_>>(), ["approval"]);
    let without_owner = DecodeOptions {
        root_owner: None,
        ..with_owner
    };
    let d = decode_kernel_with(op.sender, op.nonce, &op.call_data, &sig, &[], &without_owner);
    assert_eq!(d.enable.as_ref().unwrap().approved, None);
}
