//! Decodes every recorded UserOperation in `tests/data/vectors` and checks it against what the
//! vector records (produced by the real ZeroDev SDK and accepted or judged by a real Kernel).

use alloy_primitives::{Bytes, FixedBytes, U256};
use opgate::decode::{
    decode_multichain_signature, decode_permission_signature, decode_policy, enable::KernelVersion, verify_enable,
    CallKind, DecodeOptions, ExecCallType, KernelDecoded, MultiChainSignature, Policy, PolicyParams, ValidationMode,
    ValidationType,
};
use serde_json::Value;

use crate::fixtures::{addr, bytes, init_code, s, u256, vectors, OpParts};

fn check_nonce(name: &str, d: &KernelDecoded, kn: &Value) {
    let n = d.nonce.as_ref().unwrap_or_else(|| panic!("{name}: nonce"));
    let mode = match n.mode {
        ValidationMode::Default => "default",
        ValidationMode::Enable => "enable",
    };
    assert_eq!(mode, s(kn, "mode"), "{name}: mode");
    let vt = match n.validation_type {
        ValidationType::Root => "root",
        ValidationType::Validator => "validator",
        ValidationType::Permission => "permission",
    };
    assert_eq!(vt, s(kn, "validationType"), "{name}: validation type");
    assert_eq!(
        n.identifier.to_string(),
        s(kn, "identifier").to_lowercase(),
        "{name}: identifier"
    );
    match kn.get("permissionId").and_then(Value::as_str) {
        Some(pid) => assert_eq!(
            n.permission_id.map(|p| p.to_string()).as_deref(),
            Some(pid),
            "{name}: pid"
        ),
        None => assert_eq!(n.permission_id, None, "{name}: pid"),
    }
    assert_eq!(format!("{:#06x}", n.lane), s(kn, "nonceKey"), "{name}: lane");
    assert_eq!(n.sequence.to_string(), s(kn, "sequence"), "{name}: sequence");
}

fn check_calls(name: &str, d: &KernelDecoded, v: &Value) {
    let expected = match s(v, "callType") {
        "call" => ExecCallType::Single,
        "batch" => ExecCallType::Batch,
        "delegatecall" => ExecCallType::DelegateCall,
        other => panic!("{name}: call type {other}"),
    };
    assert_eq!(d.call_type, Some(expected), "{name}: call type");
    let calls = &d.calls.as_ref().expect("calls").calls;
    let want = v["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), want.len(), "{name}: call count");
    for (i, (c, w)) in calls.iter().zip(want).enumerate() {
        assert_eq!(c.target, addr(&w["to"]), "{name}: call {i} target");
        assert_eq!(c.value, u256(&w["value"]), "{name}: call {i} value");
        assert_eq!(c.data, Bytes::from(bytes(&w["data"])), "{name}: call {i} data");
        let kind = if expected == ExecCallType::DelegateCall {
            CallKind::DelegateCall
        } else {
            CallKind::Call
        };
        assert_eq!(c.call_type, kind, "{name}: call {i} kind");
    }
}

/// Checks a decoded policy against the vector's parsed policy; returns how many were compared.
fn check_policy(name: &str, p: &Policy, w: &Value) {
    assert_eq!(p.address, addr(&w["address"]), "{name}: policy address");
    assert_eq!(p.flag.to_string(), s(w, "flag"), "{name}: policy flag");
    if let Some(version) = w.get("version").and_then(Value::as_str) {
        assert_eq!(p.version, Some(version), "{name}: policy version");
    }
    let params = &w["params"];
    match (&p.params, s(w, "type")) {
        (PolicyParams::Call { permissions }, "call") => {
            let want = w["permissions"].as_array().expect("permissions");
            assert_eq!(permissions.len(), want.len(), "{name}: permission count");
            for (perm, wp) in permissions.iter().zip(want) {
                assert_eq!(
                    serde_json::to_value(perm.call_type).unwrap(),
                    wp["callType"],
                    "{name}: callType"
                );
                assert_eq!(perm.target, addr(&wp["target"]), "{name}: target");
                assert_eq!(perm.selector.to_string(), s(wp, "selector"), "{name}: selector");
                assert_eq!(perm.value_limit, u256(&wp["valueLimit"]), "{name}: valueLimit");
                let rules = wp["rules"].as_array().expect("rules");
                assert_eq!(perm.rules.len(), rules.len(), "{name}: rule count");
                for (r, wr) in perm.rules.iter().zip(rules) {
                    assert_eq!(
                        serde_json::to_value(r.condition).unwrap(),
                        wr["condition"],
                        "{name}: condition"
                    );
                    assert_eq!(
                        u64::from(r.condition.id()),
                        wr["conditionId"].as_u64().unwrap(),
                        "{name}: id"
                    );
                    assert_eq!(r.offset, wr["offset"].as_u64().unwrap(), "{name}: offset");
                    let want: Vec<FixedBytes<32>> = wr["params"].as_array().unwrap().iter().map(s_parse).collect();
                    assert_eq!(r.params, want, "{name}: params");
                }
            }
        }
        (
            PolicyParams::Gas {
                allowed,
                enforce_paymaster,
                allowed_paymaster,
            },
            "gas",
        ) => {
            assert_eq!(U256::from(*allowed), u256(&params["allowed"]), "{name}: allowed");
            assert_eq!(
                Some(*enforce_paymaster),
                params["enforcePaymaster"].as_bool(),
                "{name}: enforce"
            );
            assert_eq!(
                *allowed_paymaster,
                addr(&params["allowedPaymaster"]),
                "{name}: paymaster"
            );
        }
        (
            PolicyParams::RateLimit {
                interval,
                count,
                start_at,
            },
            "rate-limit",
        ) => {
            assert_eq!(U256::from(*interval), u256(&params["interval"]), "{name}: interval");
            assert_eq!(U256::from(*count), u256(&params["count"]), "{name}: count");
            assert_eq!(U256::from(*start_at), u256(&params["startAt"]), "{name}: startAt");
        }
        (
            PolicyParams::Timestamp {
                valid_after,
                valid_until,
            },
            "timestamp",
        ) => {
            assert_eq!(
                U256::from(*valid_after),
                u256(&params["validAfter"]),
                "{name}: validAfter"
            );
            assert_eq!(
                U256::from(*valid_until),
                u256(&params["validUntil"]),
                "{name}: validUntil"
            );
        }
        (PolicyParams::Sudo, "sudo") => {}
        (got, want) => panic!("{name}: policy {want} decoded as {got:?}"),
    }
    // The JSON type tag is the vector's type name.
    assert_eq!(serde_json::to_value(p).unwrap()["type"], w["type"], "{name}: type tag");
}

fn s_parse(v: &Value) -> FixedBytes<32> {
    v.as_str().expect("hex").parse().expect("bytes32")
}

#[test]
fn every_vector_decodes_as_recorded() {
    let all = vectors();
    let mut checked = 0;
    let mut enable_checked = 0;
    let mut policies_checked = 0;
    let mut deployments_checked = 0;
    for (name, v) in &all {
        let chain_id = v["chainId"].as_u64();
        let known_version = v["kernelVersion"].as_str().and_then(KernelVersion::parse);
        let op = &v["userOperation"];
        let deploys = !init_code(op).is_empty();
        // Without state the proxy knows the release only from a deploying initCode; for the
        // others pass what the vector records (what the proxy would read from chain or config).
        let opts = DecodeOptions {
            chain_id,
            kernel_version: if deploys { None } else { known_version },
            ..Default::default()
        };
        let d = OpParts::of(v).decode(&opts);
        assert!(d.errors.is_empty(), "{name}: errors {:?}", d.errors);
        assert_eq!(d.stub, None, "{name}: not a stub");
        check_calls(name, &d, v);

        if deploys {
            let dep = d.deployment.as_ref().unwrap_or_else(|| panic!("{name}: deployment"));
            if let Some(rv) = v.get("rootValidator").filter(|r| !r.is_null()) {
                let root = dep.root_validator.as_ref().unwrap_or_else(|| panic!("{name}: root"));
                assert_eq!(root.owner, Some(addr(&rv["owner"])), "{name}: root owner");
                assert_eq!(root.address, Some(addr(&rv["address"])), "{name}: root validator");
                assert_eq!(
                    serde_json::to_value(root.kind).unwrap(),
                    rv["type"],
                    "{name}: root type"
                );
            }
            if let Some(kv) = known_version {
                assert_eq!(dep.kernel_version, Some(kv), "{name}: inferred kernel version");
            }
            if let Some(label) = v["kernelVersion"].as_str() {
                assert_eq!(dep.account_version, Some(label), "{name}: account version");
            }
            deployments_checked += 1;
        }

        let Some(kn) = v.get("kernelNonce").filter(|k| !k.is_null()) else {
            checked += 1;
            continue;
        };
        check_nonce(name, &d, kn);
        let n = d.nonce.as_ref().unwrap();

        if n.validation_type == ValidationType::Permission {
            let sig = d
                .permission_signature
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: permission sig"));
            assert!(sig.segments.is_empty(), "{name}: SDK sends no policy segments");
            assert_eq!(sig.signer_signature.len(), 65, "{name}: ECDSA signer signature");
        }
        if n.validation_type == ValidationType::Root && s(&v["rootValidator"], "type") == "multi-chain-ecdsa" {
            let sig = bytes(&op["signature"]);
            let form = decode_multichain_signature(&sig, true).expect("multi-chain signature");
            assert!(matches!(form, MultiChainSignature::Plain { .. }), "{name}: plain form");
        }

        let session = &v["session"];
        if let Some(policies) = session.get("policies").and_then(Value::as_array) {
            // Every vector's install data parses to what it records, enable mode or not.
            for w in policies {
                let flag: FixedBytes<2> = s(w, "flag").parse().unwrap();
                let p = decode_policy(addr(&w["address"]), flag, &bytes(&w["installData"]));
                check_policy(name, &p, w);
                policies_checked += 1;
            }
        }

        if n.mode == ValidationMode::Enable {
            let perm = d.permission.as_ref().unwrap_or_else(|| panic!("{name}: permission"));
            assert_eq!(
                perm.signer.address,
                Some(addr(&session["sessionKeyAddress"])),
                "{name}: session key"
            );
            assert_eq!(
                perm.signer.contract,
                addr(&session["signerContract"]),
                "{name}: signer contract"
            );
            assert_eq!(
                n.permission_id.map(|p| p.to_string()).as_deref(),
                session["permissionId"].as_str(),
                "{name}: permission id"
            );
            let want = session["policies"].as_array().expect("policies");
            assert_eq!(perm.policies.len(), want.len(), "{name}: policy count");
            for (p, w) in perm.policies.iter().zip(want) {
                check_policy(name, p, w);
            }
            let pa = d.policy_signatures.as_ref().expect("policy assignment");
            assert_eq!(pa.policies.len(), want.len(), "{name}: per-policy signatures");

            let owner = addr(&v["rootValidator"]["owner"]);
            let enable = d.enable.as_ref().unwrap_or_else(|| panic!("{name}: enable"));
            assert_eq!(enable.approver, Some(owner), "{name}: approver is the root owner");
            if deploys {
                // The owner comes from the initCode's `initialize`.
                assert_eq!(enable.approved, Some(true), "{name}: approved");
            } else {
                // Without state the owner is unknown; given it (and not the release), the
                // release is inferred by trying each one.
                assert_eq!(enable.approved, None, "{name}: owner unknown");
                let opts = DecodeOptions {
                    chain_id,
                    root_owner: Some(owner),
                    ..Default::default()
                };
                let again = OpParts::of(v).decode(&opts);
                let e = again.enable.as_ref().expect("enable");
                assert_eq!(e.kernel_version, known_version, "{name}: inferred release");
                assert_eq!((e.approver, e.approved), (Some(owner), Some(true)), "{name}: approved");
            }
            assert_eq!(enable.kernel_version, known_version, "{name}: digest version");
            assert_eq!(enable.digest_nonce, Some(1), "{name}: digest nonce");
            // The recorded multi-chain enable is a single-chain approval: the 65-byte form.
            assert!(
                !enable.multichain && enable.merkle_root.is_none(),
                "{name}: plain enable signature"
            );
            assert_eq!(enable.data.enable_sig.len(), 65, "{name}: plain enable signature");
            let selector = d.selector_data.as_ref().expect("selector data");
            assert_eq!(selector.selector.0, [0xe9, 0xae, 0x5c, 0x53], "{name}: execute granted");

            // Independently: which release and nonce make the signature the owner's?
            let sender = addr(&op["sender"]);
            let vid = n.validation_id.expect("vid");
            let found = verify_enable(sender, chain_id.unwrap(), vid, &enable.data, 1, 0, owner)
                .unwrap_or_else(|| panic!("{name}: verify_enable"));
            assert_eq!(Some(found.version), known_version, "{name}: verified version");
            assert_eq!(found.nonce, 1, "{name}: verified nonce");
            assert!(verify_enable(sender, chain_id.unwrap(), vid, &enable.data, 2, 0, owner).is_none());
            enable_checked += 1;
        } else {
            assert!(d.enable.is_none() && d.permission.is_none(), "{name}: no enable data");
        }
        // The raw user-op signature splits the same way on its own.
        if n.mode == ValidationMode::Default && n.validation_type == ValidationType::Permission {
            let sig = decode_permission_signature(&bytes(&op["signature"])).expect("split");
            assert_eq!(Some(&sig), d.permission_signature.as_ref(), "{name}: split");
        }
        checked += 1;
    }
    assert_eq!(checked, all.len());
    assert_eq!(checked, 41, "every recorded vector is checked");
    assert_eq!(enable_checked, 11, "every enable-mode vector is checked");
    assert!(policies_checked >= 50, "policies checked: {policies_checked}");
    assert_eq!(deployments_checked, 15, "deployments checked");
}
