//! Every recorded session's `serializedPermissionAccount` (written by `@zerodev/permissions`
//! 5.6.3) parsed and rebuilt: install payloads, the SDK's permission id, the validator data the
//! enable-mode ops carried, and the root owner's enable signature.

use std::path::PathBuf;

use alloy_primitives::{eip191_hash_message, hex, keccak256, Address, Bytes, FixedBytes, B256, U256};
use alloy_sol_types::SolValue;
use k256::ecdsa::SigningKey;
use opgate::decode::enable::{enable_digest, EnableDomain, KernelVersion};
use opgate::decode::permission::{SignerKind, ECDSA_SIGNER};
use opgate::decode::serialized::{
    derive_permission_id, parse_serialized_permission_account, validator_data, EnableContext, EnableRoot,
    SerializedError, SerializedPermission,
};
use opgate::decode::{decode_kernel_with, decode_permission_data, DecodeOptions, Policy, PolicyParams, ValidationMode};
use proptest::prelude::*;
use serde_json::Value;

/// Vectors that carry a serialized session, by file name.
fn sessions() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("vector dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("index.json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read vector");
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str::<Value>(&text).expect("json"),
            )
        })
        .filter(|(_, v)| v["session"]["serializedPermissionAccount"].is_string())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn addr(v: &Value) -> Address {
    v.as_str().expect("address string").parse().expect("address")
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_str().map(|s| hex::decode(s).expect("hex")).unwrap_or_default()
}

fn u256(v: &Value) -> U256 {
    match v {
        Value::String(s) => s.parse().expect("number"),
        Value::Number(n) => U256::from(n.as_u64().expect("u64")),
        _ => panic!("not a number: {v}"),
    }
}

fn parse(name: &str, v: &Value) -> SerializedPermission {
    let blob = v["session"]["serializedPermissionAccount"].as_str().unwrap();
    parse_serialized_permission_account(blob).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn session_key(v: &Value) -> Address {
    addr(&v["session"]["sessionKeyAddress"])
}

fn kernel_version(v: &Value) -> KernelVersion {
    KernelVersion::parse(v["kernelVersion"].as_str().unwrap()).expect("kernel version")
}

#[test]
fn every_session_vector_is_covered() {
    let all = sessions();
    // 30 recorded sessions; a vector that loses its blob should fail here, not be skipped.
    assert_eq!(all.len(), 30);
    for (name, v) in &all {
        assert_eq!(v["session"]["signer"], "ecdsa", "{name}");
        assert_eq!(addr(&v["session"]["signerContract"]), ECDSA_SIGNER, "{name}");
    }
}

#[test]
fn blobs_parse_to_the_recorded_account_and_permission_id() {
    for (name, v) in sessions() {
        let p = parse(&name, &v);
        assert_eq!(p.account, addr(&v["sender"]), "{name}: account");
        assert_eq!(
            p.permission_id.to_string(),
            v["session"]["permissionId"].as_str().unwrap().to_lowercase(),
            "{name}: permission id"
        );
        assert_eq!(p.permission_flag, FixedBytes([0, 0]), "{name}");
        assert!(!p.has_private_key, "{name}: vectors carry no key");
        assert!(!p.is_pre_installed, "{name}");
        assert_eq!(p.enable_signature.as_ref().map(|s| s.len()), Some(65), "{name}");
        assert_eq!(p.action.selector, FixedBytes([0xe9, 0xae, 0x5c, 0x53]), "{name}");
        assert_eq!(p.action.address, Address::ZERO, "{name}");
        assert_eq!(p.preinstalled_permission(), Ok(None), "{name}");
        let d = p.deployment().unwrap().expect("initCode deploys");
        assert_eq!(d.kernel_version, Some(kernel_version(&v)), "{name}: release");
        let root = d.root_validator.expect("root");
        assert_eq!(root.owner, Some(addr(&v["rootValidator"]["owner"])), "{name}: owner");
    }
}

#[test]
fn install_payloads_equal_the_recorded_install_data() {
    for (name, v) in sessions() {
        let p = parse(&name, &v);
        let want = v["session"]["policies"].as_array().expect("policies");
        assert_eq!(p.policies.len(), want.len(), "{name}: policy count");
        for (i, (got, w)) in p.policies.iter().zip(want).enumerate() {
            assert_eq!(got.address, addr(&w["address"]), "{name}[{i}]: address");
            assert_eq!(got.flag.to_string(), w["flag"].as_str().unwrap(), "{name}[{i}]: flag");
            assert_eq!(
                got.policy_info().to_vec(),
                bytes(&w["policyInfo"]),
                "{name}[{i}]: policyInfo"
            );
            assert_eq!(got.data.to_vec(), bytes(&w["installData"]), "{name}[{i}]: installData");
            assert_eq!(
                serde_json::to_value(got.policy_type).unwrap(),
                w["type"],
                "{name}[{i}]: type"
            );
        }
    }
}

#[test]
fn the_sdk_permission_id_derivation_reproduces_every_recorded_id() {
    for (name, v) in sessions() {
        let p = parse(&name, &v);
        let key = session_key(&v);
        let signer = addr(&v["session"]["signerContract"]);
        assert_eq!(
            derive_permission_id(&p.policies, signer, key.as_slice(), [0, 0]),
            p.permission_id,
            "{name}: derived id"
        );
        assert!(p.bind_signer(key), "{name}: binds its session key");
        assert!(
            !p.bind_signer(addr(&v["rootValidator"]["owner"])),
            "{name}: not the owner"
        );
        assert!(!p.bind_signer(Address::ZERO), "{name}: not zero");
    }
}

#[test]
fn rebuilt_validator_data_decodes_to_the_recorded_permission() {
    for (name, v) in sessions() {
        let p = parse(&name, &v);
        let key = session_key(&v);
        let data = validator_data(&p.policies, ECDSA_SIGNER, key.as_slice(), [0, 0]);
        let perm = decode_permission_data(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(perm, p.permission_with_signer(key).unwrap(), "{name}: one source");
        assert_eq!(perm.flag, FixedBytes([0, 0]), "{name}");
        assert_eq!(perm.signer.kind, SignerKind::Ecdsa, "{name}");
        assert_eq!(perm.signer.contract, ECDSA_SIGNER, "{name}");
        assert_eq!(perm.signer.address, Some(key), "{name}: session key");
        let want = v["session"]["policies"].as_array().unwrap();
        assert_eq!(perm.policies.len(), want.len(), "{name}");
        for (got, w) in perm.policies.iter().zip(want) {
            check_policy(&name, got, w);
        }
    }
}

/// The enable-mode ops carried the SDK's enable data: the rebuilt validator data, selector
/// data and enable signature must be those bytes.
#[test]
fn rebuilt_enable_data_is_what_the_enable_mode_ops_carried() {
    let mut checked = 0;
    for (name, v) in sessions() {
        let op = &v["userOperation"];
        let init_code = match op.get("factory").and_then(Value::as_str) {
            Some(f) => [hex::decode(f).unwrap(), bytes(&op["factoryData"])].concat(),
            None => Vec::new(),
        };
        let d = decode_kernel_with(
            addr(&op["sender"]),
            op["nonce"].as_str().unwrap().parse().unwrap(),
            &bytes(&op["callData"]).into(),
            &bytes(&op["signature"]).into(),
            &init_code,
            &DecodeOptions::default(),
        );
        if d.nonce.as_ref().map(|n| n.mode) != Some(ValidationMode::Enable) {
            continue;
        }
        let p = parse(&name, &v);
        let enable = d.enable.expect("enable part");
        let key = session_key(&v);
        assert_eq!(enable.validation_id, Some(p.validation_id()), "{name}: vId");
        assert_eq!(
            enable.data.validator_data,
            p.validator_data_with_key(key),
            "{name}: validator data"
        );
        assert_eq!(enable.data.selector_data, p.selector_data(), "{name}: selector data");
        assert_eq!(
            Some(&enable.data.enable_sig),
            p.enable_signature.as_ref(),
            "{name}: enable sig"
        );
        assert_eq!(enable.data.hook, Address::ZERO, "{name}: hook");
        assert!(enable.data.hook_data.is_empty(), "{name}: hook data");
        // When the op deploys, its initCode is the blob's factory call behind the meta factory.
        if !init_code.is_empty() {
            assert_eq!(&init_code[20..], &p.init_code[..], "{name}: initCode");
        }
        checked += 1;
    }
    assert_eq!(checked, 11);
}

#[test]
fn enable_signatures_verify_against_the_root_owner_on_chain_31337() {
    for (name, v) in sessions() {
        let p = parse(&name, &v);
        let key = session_key(&v);
        let approval = p
            .verify_enable_signature(31337, key)
            .unwrap_or_else(|| panic!("{name}: a root to check against"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            approval.approver,
            addr(&v["rootValidator"]["owner"]),
            "{name}: approver"
        );
        assert_eq!(approval.verification.version, kernel_version(&v), "{name}: release");
        assert_eq!(approval.verification.nonce, 1, "{name}: digest nonce");
        assert!(!approval.verification.multichain, "{name}: single-chain blob");
        let root = match v["rootValidator"]["type"].as_str().unwrap() {
            "ecdsa" => EnableRoot::Ecdsa,
            "multi-chain-ecdsa" => EnableRoot::MultiChainEcdsa,
            other => panic!("{name}: root {other}"),
        };
        assert_eq!(approval.root, root, "{name}: root kind");

        // Another signer, chain or nonce is not what the owner approved.
        let fail = |ctx: &EnableContext, what: &str| {
            let r = p.verify_enable_signature_with(ctx).expect("checked");
            assert!(
                matches!(&r, Err(SerializedError::Field { path, .. }) if path == "enableSignature"),
                "{name}: {what}: {r:?}"
            );
        };
        fail(&EnableContext::new(31337, Address::repeat_byte(1)), "other key");
        fail(&EnableContext::new(1, key), "other chain");
        fail(
            &EnableContext {
                current_nonce: 2,
                ..EnableContext::new(31337, key)
            },
            "other nonce",
        );
        let other_release = if kernel_version(&v) == KernelVersion::V3_1 {
            KernelVersion::V3_3
        } else {
            KernelVersion::V3_1
        };
        fail(
            &EnableContext {
                kernel_version: Some(other_release),
                ..EnableContext::new(31337, key)
            },
            "other release",
        );
        // The owner from chain state, as a caller would pass it for a deployed account.
        let given = p
            .verify_enable_signature_with(&EnableContext {
                root_owner: Some(approval.approver),
                ..EnableContext::new(31337, key)
            })
            .unwrap()
            .unwrap();
        assert_eq!(given.root, EnableRoot::Given, "{name}");
        assert_eq!(given.verification, approval.verification, "{name}");
    }
}

fn sign(key: &SigningKey, hash: &B256) -> Vec<u8> {
    let (sig, recid) = key.sign_prehash_recoverable(hash.as_slice()).unwrap();
    [&sig.to_bytes()[..], &[27 + recid.to_byte()]].concat()
}

/// A blob from `vector` whose root owner is `owner` instead of the recorded one.
fn with_owner(vector: &str, owner: Address) -> (SerializedPermission, Address) {
    let (name, v) = sessions().into_iter().find(|(n, _)| n == vector).unwrap();
    let mut p = parse(&name, &v);
    let recorded = addr(&v["rootValidator"]["owner"]);
    let code = hex::encode(&p.init_code);
    let replaced = code.replace(&hex::encode(recorded), &hex::encode(owner));
    assert_ne!(code, replaced, "{name}: owner in initCode");
    p.init_code = Bytes::from(hex::decode(replaced).unwrap());
    (p, session_key(&v))
}

/// `serializeMultiChainPermissionAccounts`: the owner signs (EIP-191) a Merkle root over the
/// Enable digests of every chain; each chain's enable signature is `sig ‖ root ‖ proof`.
#[test]
fn multi_chain_merkle_enable_signatures_verify_per_chain() {
    let key = SigningKey::from_slice(&[9u8; 32]).unwrap();
    let owner = Address::from_private_key(&key);
    let (mut p, session) = with_owner("multichain-root-sudo-session-enable.json", owner);
    let data = p.enable_data(ECDSA_SIGNER, session.as_slice());
    let leaf = |chain_id| {
        let domain = EnableDomain {
            account: p.account,
            chain_id,
            version: KernelVersion::V3_1,
        };
        enable_digest(&domain, p.validation_id(), 1, &data)
    };
    let (a, b) = (leaf(31337), leaf(10));
    let root = keccak256([a.min(b).as_slice(), a.max(b).as_slice()].concat());
    let root_sig = sign(&key, &eip191_hash_message(root.as_slice()));
    let proof_for = |sibling: B256| [&root_sig[..], root.as_slice(), &vec![sibling].abi_encode()].concat();

    p.enable_signature = Some(Bytes::from(proof_for(b)));
    let ok = p.verify_enable_signature(31337, session).unwrap().unwrap();
    assert!(ok.verification.multichain);
    assert_eq!(ok.root, EnableRoot::MultiChainEcdsa);
    assert_eq!(ok.approver, owner);
    // The proof for chain 31337 says nothing about chain 10, and the wrong proof fails.
    assert!(p.verify_enable_signature(10, session).unwrap().is_err());
    p.enable_signature = Some(Bytes::from(proof_for(a)));
    assert!(p.verify_enable_signature(10, session).unwrap().is_ok());
    assert!(p.verify_enable_signature(31337, session).unwrap().is_err());
    assert!(p
        .verify_enable_signature(31337, Address::repeat_byte(3))
        .unwrap()
        .is_err());

    // The plain ECDSA validator does not read the Merkle form.
    let (mut q, session) = with_owner("sudo-enable-deploy-k031.json", owner);
    let leaf = enable_digest(
        &EnableDomain {
            account: q.account,
            chain_id: 31337,
            version: KernelVersion::V3_1,
        },
        q.validation_id(),
        1,
        &q.enable_data(ECDSA_SIGNER, session.as_slice()),
    );
    let root = keccak256([leaf.as_slice(), B256::ZERO.as_slice()].concat());
    let sig = sign(&key, &eip191_hash_message(root.as_slice()));
    q.enable_signature = Some(Bytes::from(
        [&sig[..], root.as_slice(), &vec![B256::ZERO].abi_encode()].concat(),
    ));
    assert!(q.verify_enable_signature(31337, session).unwrap().is_err());
    // A plain signature by the same owner over the digest is accepted.
    q.enable_signature = Some(Bytes::from(sign(&key, &leaf)));
    let ok = q.verify_enable_signature(31337, session).unwrap().unwrap();
    assert_eq!(ok.root, EnableRoot::Ecdsa);
}

fn check_policy(name: &str, p: &Policy, w: &Value) {
    assert_eq!(p.address, addr(&w["address"]), "{name}: policy address");
    assert_eq!(p.flag.to_string(), w["flag"].as_str().unwrap(), "{name}: policy flag");
    let params = &w["params"];
    match (&p.params, w["type"].as_str().unwrap()) {
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
                assert_eq!(perm.selector.to_string(), wp["selector"].as_str().unwrap(), "{name}");
                assert_eq!(perm.value_limit, u256(&wp["valueLimit"]), "{name}: valueLimit");
                let rules = wp["rules"].as_array().expect("rules");
                assert_eq!(perm.rules.len(), rules.len(), "{name}: rule count");
                for (r, wr) in perm.rules.iter().zip(rules) {
                    assert_eq!(
                        u64::from(r.condition.id()),
                        wr["conditionId"].as_u64().unwrap(),
                        "{name}"
                    );
                    assert_eq!(r.offset, wr["offset"].as_u64().unwrap(), "{name}: offset");
                    let want: Vec<FixedBytes<32>> = wr["params"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_str().unwrap().parse().unwrap())
                        .collect();
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
            assert_eq!(Some(*enforce_paymaster), params["enforcePaymaster"].as_bool(), "{name}");
            assert_eq!(*allowed_paymaster, addr(&params["allowedPaymaster"]), "{name}");
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
            assert_eq!(U256::from(*valid_after), u256(&params["validAfter"]), "{name}");
            assert_eq!(U256::from(*valid_until), u256(&params["validUntil"]), "{name}");
        }
        (PolicyParams::Sudo, "sudo") => {}
        (got, want) => panic!("{name}: policy {want} decoded as {got:?}"),
    }
}

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut w = [0u8; 3];
        w[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, w[0], w[1], w[2]]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

/// The JSON inside a vector's blob.
fn blob_json(v: &Value) -> Value {
    let blob = v["session"]["serializedPermissionAccount"].as_str().unwrap();
    serde_json::from_slice(&base64_std(blob)).unwrap()
}

/// Plain base64 decoding of well-formed input (test side, independent of the parser's).
fn base64_std(s: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = s.bytes().filter(|c| *c != b'=').map(digit).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (u32::from(*d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Every leaf (and container) of a JSON document, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                pointers(x, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::from(hex::encode_prefixed(b))),
        "[0-9]{0,90}".prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(Value::Array(Vec::new())),
        Just(serde_json::json!({})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A recorded blob with one member replaced by anything: parsing refuses it with a path or
    /// accepts it, and nothing built from an accepted blob panics.
    #[test]
    fn mutated_blobs_never_panic(which in 0usize..30, pick in any::<prop::sample::Index>(), with in replacement()) {
        static ALL: std::sync::OnceLock<Vec<(String, Value)>> = std::sync::OnceLock::new();
        let all = ALL.get_or_init(sessions);
        let (_, v) = &all[which % all.len()];
        let mut json = blob_json(v);
        let mut ptrs = Vec::new();
        pointers(&json, String::new(), &mut ptrs);
        let ptr = pick.get(&ptrs).clone();
        match json.pointer_mut(&ptr) {
            Some(slot) => *slot = with,
            None => json = with,
        }
        match parse_serialized_permission_account(&b64(json.to_string().as_bytes())) {
            Err(SerializedError::Field { path, .. }) => prop_assert!(!path.is_empty()),
            Err(e) => prop_assert!(false, "{ptr}: unexpected {e}"),
            Ok(p) => {
                let key = session_key(v);
                let _ = p.permission_with_signer(key);
                let _ = p.bind_signer(key);
                let _ = p.preinstalled_permission();
                let _ = p.verify_enable_signature(31337, key);
            }
        }
    }

    /// Arbitrary text never panics the parser.
    #[test]
    fn arbitrary_text_never_panics(s in ".{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_serialized_permission_account(&s);
        let _ = parse_serialized_permission_account(&b64(&bytes));
    }
}
