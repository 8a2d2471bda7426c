//! Unit tests of the userop module: error reporting, hex forms, extras, packing, hashing.

use alloy_primitives::{address, b256, keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{eip712_domain, SolStruct};
use serde_json::{json, Value};

use super::*;

const V07_SENDER: &str = "0x02C9DA3b2CA4CEd85fe9e3732221C92F42a045A7";

/// A minimal valid v0.7/v0.8 op.
fn v07_json() -> Value {
    json!({
        "sender": V07_SENDER,
        "nonce": "0x0",
        "callData": "0xb61d27f6",
        "callGasLimit": "0x78fb",
        "verificationGasLimit": "0x4644d",
        "preVerificationGas": "0xc22e",
        "maxFeePerGas": "0x3b9b48b4",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "signature": "0x9a3e",
    })
}

/// A minimal valid v0.6 op.
fn v06_json() -> Value {
    json!({
        "sender": "0x8f2EA1b15DAd6E1171698F877AF3d02465EB5B61",
        "nonce": "0x0",
        "initCode": "0x",
        "callData": "0x51945447",
        "callGasLimit": "0x186b2",
        "verificationGasLimit": "0x4644d",
        "preVerificationGas": "0xcfea",
        "maxFeePerGas": "0x3b9b864c",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "paymasterAndData": "0x",
        "signature": "0x0000",
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    if let Some(map) = base.as_object_mut() {
        map.remove(key);
    }
    base
}

fn parse(value: &Value, version: EntryPointVersion) -> Result<UserOperation, UserOpError> {
    parse_user_operation_value(value, version)
}

fn packed(value: &Value, version: EntryPointVersion) -> UserOperationV07 {
    match parse(value, version) {
        Ok(UserOperation::V07(op) | UserOperation::V08(op)) => op,
        other => panic!("expected a packed-form op, got {other:?}"),
    }
}

fn invalid(field: &'static str, reason: FieldError) -> Result<UserOperation, UserOpError> {
    Err(UserOpError::InvalidField { field, reason })
}

#[test]
fn minimal_ops_parse() {
    for v in [EntryPointVersion::V07, EntryPointVersion::V08] {
        let op = parse(&v07_json(), v).expect("v0.7 form");
        assert_eq!(op.version(), v);
        assert_eq!(op.factory(), None);
        assert_eq!(op.paymaster(), None);
        assert!(op.init_code().is_empty() && op.paymaster_and_data().is_empty());
    }
    let op = parse(&v06_json(), EntryPointVersion::V06).expect("v0.6 form");
    assert_eq!(op.version(), EntryPointVersion::V06);
}

#[test]
fn odd_length_hex_names_its_field() {
    let v = with(v07_json(), "callData", json!("0xabc"));
    assert_eq!(
        parse(&v, EntryPointVersion::V07),
        invalid("callData", FieldError::OddLength)
    );
    let v = with(v06_json(), "paymasterAndData", json!("0x0"));
    assert_eq!(
        parse(&v, EntryPointVersion::V06),
        invalid("paymasterAndData", FieldError::OddLength)
    );
}

#[test]
fn wrong_length_address_names_its_field() {
    let v = with(v07_json(), "sender", json!(format!("{V07_SENDER}00")));
    assert_eq!(
        parse(&v, EntryPointVersion::V07),
        invalid(
            "sender",
            FieldError::WrongLength {
                expected: 20,
                actual: 21
            }
        )
    );
    let v = with(v07_json(), "paymaster", json!("0x1234"));
    assert_eq!(
        parse(&v, EntryPointVersion::V08),
        invalid(
            "paymaster",
            FieldError::WrongLength {
                expected: 20,
                actual: 2
            }
        )
    );
}

#[test]
fn malformed_quantities_name_their_field() {
    let cases = [
        (json!("0x12zz"), FieldError::InvalidHexDigit),
        (json!("0x-1"), FieldError::InvalidHexDigit),
        (json!("1234"), FieldError::MissingPrefix),
        (json!("0X12"), FieldError::MissingPrefix),
        (json!("0x"), FieldError::EmptyQuantity),
        (json!(""), FieldError::MissingPrefix),
        (json!(12), FieldError::NotAString),
        (json!(["0x1"]), FieldError::NotAString),
        (
            json!(format!("0x1{}", "0".repeat(64))),
            FieldError::Overflow { bits: 256 },
        ),
    ];
    for (value, reason) in cases {
        let v = with(v07_json(), "nonce", value.clone());
        assert_eq!(parse(&v, EntryPointVersion::V07), invalid("nonce", reason), "{value}");
        let v = with(v06_json(), "maxFeePerGas", value.clone());
        assert_eq!(
            parse(&v, EntryPointVersion::V06),
            invalid("maxFeePerGas", reason),
            "{value}"
        );
    }
}

#[test]
fn missing_and_null_fields_are_named() {
    let required07 = [
        "sender",
        "nonce",
        "callData",
        "callGasLimit",
        "verificationGasLimit",
        "preVerificationGas",
        "maxFeePerGas",
        "maxPriorityFeePerGas",
        "signature",
    ];
    for field in required07 {
        for v in [without(v07_json(), field), with(v07_json(), field, Value::Null)] {
            assert_eq!(
                parse(&v, EntryPointVersion::V07),
                Err(UserOpError::MissingField { field })
            );
        }
    }
    for field in ["initCode", "paymasterAndData", "signature"] {
        assert_eq!(
            parse(&without(v06_json(), field), EntryPointVersion::V06),
            Err(UserOpError::MissingField { field })
        );
    }
}

#[test]
fn packed_gas_fields_must_fit_uint128() {
    let max = format!("0x{}", "f".repeat(32));
    let over = format!("0x1{}", "0".repeat(32));
    for field in [
        "callGasLimit",
        "verificationGasLimit",
        "maxFeePerGas",
        "maxPriorityFeePerGas",
        "paymasterVerificationGasLimit",
        "paymasterPostOpGasLimit",
    ] {
        let ok = with(v07_json(), field, json!(max));
        assert!(parse(&ok, EntryPointVersion::V07).is_ok(), "{field}");
        let bad = with(v07_json(), field, json!(over));
        assert_eq!(
            parse(&bad, EntryPointVersion::V07),
            invalid(field, FieldError::Overflow { bits: 128 })
        );
    }
    // preVerificationGas is a full uint256 in the packed form; v0.6 fields all are.
    let v = with(v07_json(), "preVerificationGas", json!(over));
    assert!(parse(&v, EntryPointVersion::V07).is_ok());
    let v = with(v06_json(), "callGasLimit", json!(over));
    assert!(parse(&v, EntryPointVersion::V06).is_ok());
}

#[test]
fn structural_errors() {
    assert_eq!(
        parse(&json!([1, 2]), EntryPointVersion::V07),
        Err(UserOpError::NotAnObject)
    );
    assert_eq!(
        parse(&Value::Null, EntryPointVersion::V06),
        Err(UserOpError::NotAnObject)
    );
    assert!(matches!(
        parse_user_operation_str("{\"sender\":", EntryPointVersion::V07),
        Err(UserOpError::InvalidJson { .. })
    ));
    let dup = r#"{"sender":"0x02C9DA3b2CA4CEd85fe9e3732221C92F42a045A7","callGasLimit":"0x1","callGasLimit":"0x2"}"#;
    assert_eq!(
        parse_user_operation_str(dup, EntryPointVersion::V07),
        Err(UserOpError::DuplicateField {
            field: "callGasLimit".into()
        })
    );
    let long = "k".repeat(200);
    let dup = format!(r#"{{"{long}":1,"{long}":2}}"#);
    match parse_user_operation_str(&dup, EntryPointVersion::V07) {
        Err(UserOpError::DuplicateField { field }) => assert_eq!(field.len(), 64),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        entry_point_version(Address::ZERO),
        Err(UserOpError::UnsupportedEntryPoint(Address::ZERO))
    );
}

#[test]
fn every_error_reports_its_field() {
    let errors = [
        UserOpError::MissingField { field: "nonce" },
        UserOpError::invalid("callData", FieldError::OddLength),
        UserOpError::UnexpectedField {
            field: "initCode",
            version: EntryPointVersion::V07,
        },
        UserOpError::DuplicateField { field: "sender".into() },
    ];
    for e in errors {
        let field = e.field().expect("names a field").to_owned();
        assert!(e.to_string().contains(&field), "{e}");
    }
    assert_eq!(UserOpError::NotAnObject.field(), None);
}

#[test]
fn fields_of_another_version_are_refused_unless_empty() {
    let v = with(v07_json(), "initCode", json!("0x1234"));
    assert_eq!(
        parse(&v, EntryPointVersion::V07),
        Err(UserOpError::UnexpectedField {
            field: "initCode",
            version: EntryPointVersion::V07
        })
    );
    let v = with(v07_json(), "paymasterAndData", json!("0xab"));
    assert_eq!(
        parse(&v, EntryPointVersion::V08),
        Err(UserOpError::UnexpectedField {
            field: "paymasterAndData",
            version: EntryPointVersion::V08
        })
    );
    let v = with(v06_json(), "paymaster", json!(V07_SENDER));
    assert_eq!(
        parse(&v, EntryPointVersion::V06),
        Err(UserOpError::UnexpectedField {
            field: "paymaster",
            version: EntryPointVersion::V06
        })
    );
    // Empty values carry nothing a bundler could act on.
    for empty in [json!("0x"), json!("0x0"), Value::Null] {
        let v = with(v07_json(), "initCode", empty.clone());
        assert!(parse(&v, EntryPointVersion::V07).is_ok());
        let v = with(v06_json(), "paymasterPostOpGasLimit", empty);
        assert!(parse(&v, EntryPointVersion::V06).is_ok());
    }
}

#[test]
fn v06_init_code_and_paymaster_must_hold_an_address() {
    let v = with(v06_json(), "initCode", json!("0x1234"));
    assert_eq!(
        parse(&v, EntryPointVersion::V06),
        invalid("initCode", FieldError::TooShort { min: 20, actual: 2 })
    );
    let pm = "0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789abcd";
    let op = parse(&with(v06_json(), "paymasterAndData", json!(pm)), EntryPointVersion::V06).expect("valid");
    assert_eq!(op.paymaster(), Some(EntryPointVersion::V06_ADDRESS));
    assert_eq!(op.paymaster_data(), Bytes::from(vec![0xab, 0xcd]));
}

/// Applies `f` to the hex digits (not the prefix) of every string member.
fn map_hex(value: &Value, f: fn(&str) -> String) -> Value {
    let mut out = value.clone();
    if let Some(map) = out.as_object_mut() {
        for v in map.values_mut() {
            if let Some(s) = v.as_str().and_then(|s| s.strip_prefix("0x")) {
                *v = json!(format!("0x{}", f(s)));
            }
        }
    }
    out
}

fn upper_hex(value: &Value) -> Value {
    map_hex(value, str::to_uppercase)
}

#[test]
fn mixed_case_hex_is_accepted() {
    let base = with(
        with(v07_json(), "factory", json!(V07_SENDER)),
        "factoryData",
        json!("0xAbCdEf"),
    );
    let op = parse(&base, EntryPointVersion::V07).expect("mixed case");
    assert_eq!(op.factory_data(), Bytes::from(vec![0xab, 0xcd, 0xef]));
    let upper = parse(&upper_hex(&base), EntryPointVersion::V07).expect("upper case");
    assert_eq!(op, upper);
    let lower = map_hex(&base, str::to_lowercase);
    assert_eq!(parse(&lower, EntryPointVersion::V07), Ok(op));

    let v06 = parse(&v06_json(), EntryPointVersion::V06).expect("v0.6");
    assert_eq!(parse(&upper_hex(&v06_json()), EntryPointVersion::V06), Ok(v06));
}

#[test]
fn quantities_may_have_leading_zeros() {
    let padded = with(v07_json(), "callGasLimit", json!("0x0078fb"));
    assert_eq!(
        parse(&padded, EntryPointVersion::V07),
        parse(&v07_json(), EntryPointVersion::V07)
    );
    let zero = with(v07_json(), "nonce", json!("0x0000"));
    assert_eq!(
        parse(&zero, EntryPointVersion::V07).map(|op| op.nonce()),
        Ok(U256::ZERO)
    );
}

#[test]
fn unknown_fields_are_kept_verbatim() {
    let text = r#"{"sender":"0x02C9DA3b2CA4CEd85fe9e3732221C92F42a045A7","nonce":"0x1",
        "callData":"0x","callGasLimit":"0x1","verificationGasLimit":"0x2",
        "preVerificationGas":"0x3","maxFeePerGas":"0x4","maxPriorityFeePerGas":"0x5",
        "signature":"0x","paymasterSignature":"0xabcd","vendor":{"a": [1, 2.50]},
        "eip7702Auth":{"address":"0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108","chainId":"0x1",
        "nonce":"0x", "r":"0x01","s":"0x02","yParity":"0x"}}"#;
    let op = parse_user_operation_str(text, EntryPointVersion::V08).expect("valid");
    let extra = op.extra_fields();
    assert_eq!(extra.len(), 2);
    assert_eq!(extra.get("paymasterSignature").map(|r| r.get()), Some(r#""0xabcd""#));
    assert_eq!(extra.get("vendor").map(|r| r.get()), Some(r#"{"a": [1, 2.50]}"#));
    let auth = op.eip7702_auth().expect("eip7702Auth kept");
    assert_eq!(auth.address(), EntryPointVersion::V08_ADDRESS);
    assert!(auth.raw().get().contains(r#""yParity":"0x""#));

    // The RPC form carries them again.
    let again: Value = serde_json::to_value(&op).expect("serialize");
    assert_eq!(again["vendor"], json!({"a": [1, 2.5]}));
    assert_eq!(again["paymasterSignature"], json!("0xabcd"));
    assert_eq!(again["eip7702Auth"]["r"], json!("0x01"));

    // In a v0.6 op, eip7702Auth is just another unknown member.
    let v = with(v06_json(), "eip7702Auth", json!({"whatever": true}));
    let op = parse(&v, EntryPointVersion::V06).expect("v0.6 keeps it");
    assert!(op.extra_fields().get("eip7702Auth").is_some());
}

#[test]
fn malformed_eip7702_auth_is_named() {
    let v = with(v07_json(), "eip7702Auth", json!("0x12"));
    assert_eq!(
        parse(&v, EntryPointVersion::V07),
        invalid("eip7702Auth", FieldError::NotAnObject)
    );
    let v = with(v07_json(), "eip7702Auth", json!({"chainId": "0x1"}));
    assert_eq!(
        parse(&v, EntryPointVersion::V07),
        Err(UserOpError::MissingField {
            field: "eip7702Auth.address"
        })
    );
    let v = with(v07_json(), "eip7702Auth", json!({"address": "0x1234"}));
    assert_eq!(
        parse(&v, EntryPointVersion::V07),
        invalid(
            "eip7702Auth.address",
            FieldError::WrongLength {
                expected: 20,
                actual: 2
            }
        )
    );
}

#[test]
fn paymaster_fields_follow_the_packed_form() {
    // Without a paymaster, its gas limits and data are not part of the op.
    let v = with(
        with(v07_json(), "paymasterVerificationGasLimit", json!("0x99")),
        "paymasterData",
        json!("0xabcd"),
    );
    let op = packed(&v, EntryPointVersion::V07);
    assert_eq!(op.paymaster, None);
    assert!(op.paymaster_and_data().is_empty());
    // With one, missing limits default to zero.
    let v = with(v07_json(), "paymaster", json!(V07_SENDER));
    let op = packed(&v, EntryPointVersion::V07);
    assert_eq!(
        op.paymaster,
        Some(Paymaster {
            address: V07_SENDER.parse().expect("address"),
            verification_gas_limit: 0,
            post_op_gas_limit: 0,
            data: Bytes::new(),
        })
    );
    // factoryData without factory is dropped as well.
    let v = with(v07_json(), "factoryData", json!("0xabcd"));
    assert_eq!(packed(&v, EntryPointVersion::V07).factory, None);
}

fn layout_op() -> UserOperationV07 {
    packed(
        &json!({
            "sender": V07_SENDER,
            "nonce": "0x1234",
            "factory": "0x1111111111111111111111111111111111111111",
            "factoryData": "0xf00d",
            "callData": "0xc0de",
            "callGasLimit": "0x0a0b",
            "verificationGasLimit": "0x0c0d0e",
            "preVerificationGas": "0x99",
            "maxFeePerGas": "0x1f2f",
            "maxPriorityFeePerGas": "0x3f4f5f",
            "paymaster": "0x2222222222222222222222222222222222222222",
            "paymasterVerificationGasLimit": "0x6f7f",
            "paymasterPostOpGasLimit": "0x8f9faf",
            "paymasterData": "0xbeef",
            "signature": "0x5151",
        }),
        EntryPointVersion::V07,
    )
}

#[test]
fn packing_layout_is_exact() {
    let op = layout_op();
    let p = op.to_packed();

    let mut agl = [0u8; 32];
    agl[13..16].copy_from_slice(&[0x0c, 0x0d, 0x0e]); // verificationGasLimit, high half
    agl[30..32].copy_from_slice(&[0x0a, 0x0b]); // callGasLimit, low half
    assert_eq!(p.accountGasLimits, B256::from(agl));

    let mut fees = [0u8; 32];
    fees[13..16].copy_from_slice(&[0x3f, 0x4f, 0x5f]); // maxPriorityFeePerGas, high half
    fees[30..32].copy_from_slice(&[0x1f, 0x2f]); // maxFeePerGas, low half
    assert_eq!(p.gasFees, B256::from(fees));

    let pmd = &p.paymasterAndData;
    assert_eq!(pmd.len(), 52 + 2);
    assert_eq!(&pmd[..20], &[0x22; 20]);
    let mut pm_vgl = [0u8; 16];
    pm_vgl[14..].copy_from_slice(&[0x6f, 0x7f]);
    assert_eq!(
        &pmd[PAYMASTER_VALIDATION_GAS_OFFSET..PAYMASTER_POSTOP_GAS_OFFSET],
        &pm_vgl
    );
    let mut pm_post = [0u8; 16];
    pm_post[13..].copy_from_slice(&[0x8f, 0x9f, 0xaf]);
    assert_eq!(&pmd[PAYMASTER_POSTOP_GAS_OFFSET..PAYMASTER_DATA_OFFSET], &pm_post);
    assert_eq!(&pmd[PAYMASTER_DATA_OFFSET..], &[0xbe, 0xef]);

    let mut init = vec![0x11; 20];
    init.extend_from_slice(&[0xf0, 0x0d]);
    assert_eq!(p.initCode, Bytes::from(init));
    assert_eq!(p.signature, Bytes::from(vec![0x51, 0x51]));
    assert_eq!(p.preVerificationGas, U256::from(0x99));

    assert_eq!(UserOperationV07::from_packed(&p), Ok(op));
}

#[test]
fn unpacking_refuses_truncated_fields() {
    let mut p = layout_op().to_packed();
    p.paymasterAndData = p.paymasterAndData.slice(..51);
    assert_eq!(
        UserOperationV07::from_packed(&p),
        Err(UserOpError::invalid(
            "paymasterAndData",
            FieldError::TooShort { min: 52, actual: 51 }
        ))
    );
    let mut p = layout_op().to_packed();
    p.initCode = p.initCode.slice(..19);
    assert_eq!(
        UserOperationV07::from_packed(&p),
        Err(UserOpError::invalid(
            "initCode",
            FieldError::TooShort { min: 20, actual: 19 }
        ))
    );
}

#[test]
fn v06_abi_round_trip() {
    let v = with(
        v06_json(),
        "initCode",
        json!("0x5de4839a76cf55d0c90e2061ef4386d962E15ae3296601cd"),
    );
    let Ok(UserOperation::V06(op)) = parse(&v, EntryPointVersion::V06) else {
        panic!("v0.6 op");
    };
    assert_eq!(UserOperationV06::from_abi(&op.to_abi()), Ok(op.clone()));
    assert_eq!(
        op.factory(),
        Some(address!("0x5de4839a76cf55d0c90e2061ef4386d962E15ae3"))
    );
}

mod eip712_reference {
    // The v0.8 struct as EIP-712 sees it (no signature), hashed by alloy's generic machinery.
    alloy_sol_types::sol! {
        struct PackedUserOperation {
            address sender;
            uint256 nonce;
            bytes initCode;
            bytes callData;
            bytes32 accountGasLimits;
            uint256 preVerificationGas;
            bytes32 gasFees;
            bytes paymasterAndData;
        }
    }
}

fn reference_v08_hash(op: &UserOperationV07, init_code: Bytes, chain_id: u64) -> B256 {
    let domain = eip712_domain! {
        name: "ERC4337",
        version: "1",
        chain_id: chain_id,
        verifying_contract: EntryPointVersion::V08_ADDRESS,
    };
    let s = eip712_reference::PackedUserOperation {
        sender: op.sender,
        nonce: op.nonce,
        initCode: init_code,
        callData: op.call_data.clone(),
        accountGasLimits: op.account_gas_limits(),
        preVerificationGas: op.pre_verification_gas,
        gasFees: op.gas_fees(),
        paymasterAndData: op.paymaster_and_data(),
    };
    assert_eq!(s.eip712_type_hash(), PACKED_USEROP_TYPEHASH);
    assert_eq!(
        domain.separator(),
        eip712_domain_separator(EntryPointVersion::V08_ADDRESS, chain_id)
    );
    s.eip712_signing_hash(&domain)
}

#[test]
fn v08_hash_matches_generic_eip712() {
    let op = layout_op();
    let ep = EntryPointVersion::V08_ADDRESS;
    assert_eq!(op.hash_v08(ep, 10), Ok(reference_v08_hash(&op, op.init_code(), 10)));
}

#[test]
fn eip7702_op_hashes_the_delegate() {
    let delegate = address!("0xe6Cae83BdE06E4c305530e199D7217f42808555B");
    let base = with(v07_json(), "factory", json!("0x7702"));
    let op = packed(&base, EntryPointVersion::V08);
    assert!(op.is_eip7702());
    assert_eq!(op.factory.as_ref().map(|f| f.address), Some(EIP7702_FACTORY_MARKER));
    let ep = EntryPointVersion::V08_ADDRESS;

    // Without eip7702Auth the delegate is unknown.
    assert_eq!(
        UserOperation::V08(op.clone()).hash(ep, 1),
        Err(UserOpError::Eip7702DelegateUnknown)
    );
    // v0.7 has no override: the marker is hashed as is and eip7702Auth plays no part.
    assert!(UserOperation::V07(op.clone()).hash(ep, 1).is_ok());

    for factory_data in ["0x", "0xabcdef"] {
        let v = with(
            with(base.clone(), "factoryData", json!(factory_data)),
            "eip7702Auth",
            json!({"address": delegate, "chainId": "0x1", "nonce": "0x0",
                   "r": "0x01", "s": "0x02", "yParity": "0x0"}),
        );
        let op = packed(&v, EntryPointVersion::V08);
        let data = op.factory.as_ref().map(|f| f.data.clone()).unwrap_or_default();
        let expected = reference_v08_hash(&op, [delegate.as_slice(), &data].concat().into(), 1);
        assert_eq!(op.hash_v08(ep, 1), Ok(expected));
        assert_eq!(op.hash_v08_with_delegate(ep, 1, delegate), expected);
        // The packed form still carries the marker itself.
        assert_eq!(&op.init_code()[..20], EIP7702_FACTORY_MARKER.as_slice());
        // The 20-byte marker form reads the same as the short one.
        let long = with(v.clone(), "factory", json!(EIP7702_FACTORY_MARKER));
        assert_eq!(packed(&long, EntryPointVersion::V08), op);
    }
}

#[test]
fn replayable_hash_is_v07_with_chain_zero() {
    let op = layout_op();
    let ep = EntryPointVersion::V07_ADDRESS;
    assert_eq!(op.replayable_hash(ep), op.hash_v07(ep, 0));
    assert_ne!(op.replayable_hash(ep), op.hash_v07(ep, 1));
    assert_eq!(
        UserOperation::V08(op.clone()).replayable_hash(ep),
        Some(op.replayable_hash(ep))
    );
    let v06 = parse(&v06_json(), EntryPointVersion::V06).expect("v0.6");
    assert_eq!(v06.replayable_hash(ep), None);
}

#[test]
fn v07_hash_matches_the_formula_spelled_out() {
    // A recorded v0.8 op, hashed with the v0.7 formula: word by word as in spec §1.4, and
    // different from its v0.8 (EIP-712) hash.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vectors/ep08-simple-account-deploy.json"
    ))
    .expect("vector");
    let vector: Value = serde_json::from_str(&text).expect("json");
    let op = packed(&vector["userOperation"], EntryPointVersion::V07);
    let h = op.hash_v07(EntryPointVersion::V07_ADDRESS, 31337);
    let mut inner = Vec::new();
    inner.extend_from_slice(B256::left_padding_from(op.sender.as_slice()).as_slice());
    inner.extend_from_slice(&op.nonce.to_be_bytes::<32>());
    inner.extend_from_slice(keccak256(op.init_code()).as_slice());
    inner.extend_from_slice(keccak256(&op.call_data).as_slice());
    inner.extend_from_slice(op.account_gas_limits().as_slice());
    inner.extend_from_slice(&op.pre_verification_gas.to_be_bytes::<32>());
    inner.extend_from_slice(op.gas_fees().as_slice());
    inner.extend_from_slice(keccak256(op.paymaster_and_data()).as_slice());
    let mut outer = Vec::new();
    outer.extend_from_slice(keccak256(&inner).as_slice());
    outer.extend_from_slice(B256::left_padding_from(EntryPointVersion::V07_ADDRESS.as_slice()).as_slice());
    outer.extend_from_slice(&U256::from(31337).to_be_bytes::<32>());
    assert_eq!(h, keccak256(&outer));
    assert_ne!(
        h,
        b256!("0xd6ebf1aa63a6e685fff3bb2afbad3901356c9c5adb79a1a20199e3c1cf1b3a67")
    );
}

#[test]
fn gas_cost_helpers() {
    let op = UserOperation::V07(layout_op());
    let gas: u64 = 0x99 + 0x0c0d0e + 0x0a0b + 0x6f7f + 0x8f9faf;
    assert_eq!(op.max_gas_cost(), U256::from(gas * 0x1f2f));
    assert_eq!(op.required_prefund(), op.max_gas_cost());

    let pm = "0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789";
    let v06 = parse(&v06_json(), EntryPointVersion::V06).expect("v0.6");
    let sponsored = parse(&with(v06_json(), "paymasterAndData", json!(pm)), EntryPointVersion::V06).expect("v0.6");
    let base: u64 = 0xcfea + 0x4644d + 0x186b2;
    assert_eq!(v06.max_gas_cost(), U256::from(base * 0x3b9b864c_u64));
    assert_eq!(sponsored.max_gas_cost(), v06.max_gas_cost());
    assert_eq!(v06.required_prefund(), v06.max_gas_cost());
    assert_eq!(
        sponsored.required_prefund(),
        U256::from((base + 2 * 0x4644d) * 0x3b9b864c_u64)
    );

    let huge = with(v06_json(), "preVerificationGas", json!(format!("0x{}", "f".repeat(64))));
    let op = parse(&huge, EntryPointVersion::V06).expect("v0.6");
    assert_eq!(op.max_gas_cost(), U256::MAX);
}

#[test]
fn accessors_agree_across_versions() {
    let op = UserOperation::V07(layout_op());
    assert_eq!(op.sender(), V07_SENDER.parse::<Address>().expect("address"));
    assert_eq!(op.nonce(), U256::from(0x1234));
    assert_eq!(op.call_data(), &Bytes::from(vec![0xc0, 0xde]));
    assert_eq!(op.signature(), &Bytes::from(vec![0x51, 0x51]));
    assert_eq!(
        op.factory(),
        Some(address!("0x1111111111111111111111111111111111111111"))
    );
    assert_eq!(op.factory_data(), Bytes::from(vec![0xf0, 0x0d]));
    assert_eq!(op.call_gas_limit(), U256::from(0x0a0b));
    assert_eq!(op.verification_gas_limit(), U256::from(0x0c0d0e));
    assert_eq!(op.pre_verification_gas(), U256::from(0x99));
    assert_eq!(op.max_fee_per_gas(), U256::from(0x1f2f));
    assert_eq!(op.max_priority_fee_per_gas(), U256::from(0x3f4f5f));
    assert_eq!(
        op.paymaster(),
        Some(address!("0x2222222222222222222222222222222222222222"))
    );
    assert_eq!(op.paymaster_verification_gas_limit(), U256::from(0x6f7f));
    assert_eq!(op.paymaster_post_op_gas_limit(), U256::from(0x8f9faf));
    assert_eq!(op.paymaster_data(), Bytes::from(vec![0xbe, 0xef]));
    assert!(!op.is_eip7702());
    assert_eq!(op.as_v06(), None);

    let v06 = parse(&v06_json(), EntryPointVersion::V06).expect("v0.6");
    assert_eq!(v06.paymaster_verification_gas_limit(), U256::ZERO);
    assert_eq!(v06.factory(), None);
    assert_eq!(v06.factory_data(), Bytes::new());
    assert!(v06.as_packed_form().is_none());
}

#[test]
fn value_and_raw_entry_points_agree() {
    let value = v07_json();
    let raw = serde_json::value::to_raw_value(&value).expect("raw");
    assert_eq!(
        parse_user_operation(&raw, EntryPointVersion::V07),
        parse(&value, EntryPointVersion::V07)
    );
    assert_eq!(
        parse_user_operation_for(&raw, EntryPointVersion::V08_ADDRESS).map(|op| op.version()),
        Ok(EntryPointVersion::V08)
    );
}

#[test]
fn escaped_strings_read_as_their_values() {
    // Hex members are read in place when they hold no escape; one written with JSON escapes
    // (legal, if odd) must still mean what a JSON parser makes of it.
    let plain = v07_json();
    let text = plain
        .to_string()
        .replace(r#""callGasLimit":"0x78fb""#, r#""callGasLimit":"\u0030x78\u0066b""#);
    let text = text.replace(r#""signature":"0x9a3e""#, r#""signature":"0x9a\/e""#);
    assert!(text.contains(r"\u0030x78"), "{text}");
    let escaped = parse_user_operation_str(&text, EntryPointVersion::V07);
    assert_eq!(
        escaped,
        invalid("signature", FieldError::InvalidHexDigit),
        "an escape that decodes to a non-hex character is still refused"
    );
    let text = text.replace(r#""0x9a\/e""#, r#""0x9a\u0033e""#);
    assert_eq!(
        parse_user_operation_str(&text, EntryPointVersion::V07),
        parse(&plain, EntryPointVersion::V07)
    );
    // A key written with escapes is the same key.
    let text = plain.to_string().replace(r#""nonce""#, r#""n\u006fnce""#);
    assert_eq!(
        parse_user_operation_str(&text, EntryPointVersion::V07),
        parse(&plain, EntryPointVersion::V07)
    );
}

#[test]
fn duplicates_are_found_among_many_members() {
    // Past a few dozen members duplicates are found with a set; the first repeated key in the
    // order sent is named either way, whether it is a member opgate reads or another one.
    let sender = r#""sender":"0x02C9DA3b2CA4CEd85fe9e3732221C92F42a045A7""#;
    for extra in [3usize, 31, 32, 33, 200] {
        let others: Vec<String> = (0..extra).map(|i| format!(r#""x{i}":{i}"#)).collect();
        for (tail, first) in [
            ([r#""x1":"again""#, sender, r#""x2":"again""#], "x1"),
            ([sender, r#""x2":"again""#, r#""x1":"again""#], "sender"),
            ([r#""s\u0065nder":"0x00""#, r#""x1":"again""#, sender], "sender"),
        ] {
            let mut members = others.clone();
            members.push(sender.into());
            members.extend(tail.iter().map(|m| m.to_string()));
            let text = format!("{{{}}}", members.join(","));
            assert_eq!(
                parse_user_operation_str(&text, EntryPointVersion::V07),
                Err(UserOpError::DuplicateField { field: first.into() }),
                "{extra} members, then {tail:?}"
            );
        }
    }
}
