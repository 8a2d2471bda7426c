//! Property tests: the RPC form, the packed form and the ABI form of random valid ops all decode
//! back to the same op.

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::SolValue;
use opgate::userop::{
    abi, parse_user_operation_str, Eip7702Auth, EntryPointVersion, ExtraFields, Factory, Paymaster, UserOperation,
    UserOperationV06, UserOperationV07, EIP7702_FACTORY_MARKER,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const QUANTITIES: [&str; 9] = [
    "nonce",
    "callGasLimit",
    "verificationGasLimit",
    "preVerificationGas",
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "paymasterVerificationGasLimit",
    "paymasterPostOpGasLimit",
    "chainId",
];

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![any::<[u8; 20]>().prop_map(Address::from), Just(Address::ZERO),]
}

fn u256() -> impl Strategy<Value = U256> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(U256::from_be_bytes),
        any::<u64>().prop_map(U256::from),
        Just(U256::ZERO),
        Just(U256::MAX),
    ]
}

fn gas() -> impl Strategy<Value = u128> {
    prop_oneof![
        any::<u128>(),
        any::<u32>().prop_map(u128::from),
        Just(0),
        Just(u128::MAX)
    ]
}

fn bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..80).prop_map(Bytes::from)
}

fn eip7702_auth() -> impl Strategy<Value = Option<Eip7702Auth>> {
    proptest::option::of((address(), any::<u64>()).prop_map(|(delegate, nonce)| {
        let raw = serde_json::value::to_raw_value(&json!({
            "address": delegate,
            "chainId": "0x1",
            "nonce": format!("{nonce:#x}"),
            "r": "0x01",
            "s": "0x02",
            "yParity": "0x1",
        }))
        .expect("raw json");
        Eip7702Auth::from_json(raw).expect("valid eip7702Auth")
    }))
}

prop_compose! {
    fn v07_op()(
        sender in address(),
        nonce in u256(),
        factory in proptest::option::of((
            prop_oneof![address(), Just(EIP7702_FACTORY_MARKER)],
            bytes(),
        )),
        call_data in bytes(),
        call_gas_limit in gas(),
        verification_gas_limit in gas(),
        pre_verification_gas in u256(),
        max_fee_per_gas in gas(),
        max_priority_fee_per_gas in gas(),
        paymaster in proptest::option::of((address(), gas(), gas(), bytes())),
        signature in bytes(),
        eip7702_auth in eip7702_auth(),
    ) -> UserOperationV07 {
        UserOperationV07 {
            sender,
            nonce,
            factory: factory.map(|(address, data)| Factory { address, data }),
            call_data,
            call_gas_limit,
            verification_gas_limit,
            pre_verification_gas,
            max_fee_per_gas,
            max_priority_fee_per_gas,
            paymaster: paymaster.map(|(address, verification_gas_limit, post_op_gas_limit, data)| {
                Paymaster { address, verification_gas_limit, post_op_gas_limit, data }
            }),
            signature,
            eip7702_auth,
            extra: ExtraFields::default(),
        }
    }
}

prop_compose! {
    fn v06_op()(
        sender in address(),
        nonce in u256(),
        factory in proptest::option::of((address(), bytes())),
        call_data in bytes(),
        gas in proptest::array::uniform5(u256()),
        paymaster in proptest::option::of((address(), bytes())),
        signature in bytes(),
    ) -> UserOperationV06 {
        let prefixed = |part: Option<(Address, Bytes)>| -> Bytes {
            part.map(|(a, d)| [a.as_slice(), &d].concat().into()).unwrap_or_default()
        };
        UserOperationV06 {
            sender,
            nonce,
            init_code: prefixed(factory),
            call_data,
            call_gas_limit: gas[0],
            verification_gas_limit: gas[1],
            pre_verification_gas: gas[2],
            max_fee_per_gas: gas[3],
            max_priority_fee_per_gas: gas[4],
            paymaster_and_data: prefixed(paymaster),
            signature,
            extra: ExtraFields::default(),
        }
    }
}

/// Rewrites every hex string the way other encoders might: letter case flipped by `mask`, and
/// quantities padded with leading zeros when `pad` is set.
fn vary_hex(value: &mut Value, mask: u64, pad: bool) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    for (key, v) in map.iter_mut() {
        if key == "eip7702Auth" {
            continue; // kept verbatim; its text must not change
        }
        let Some(digits) = v.as_str().and_then(|s| s.strip_prefix("0x")) else {
            continue;
        };
        let flipped: String = digits
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let padding = if pad && QUANTITIES.contains(&key.as_str()) {
            "00"
        } else {
            ""
        };
        *v = json!(format!("0x{padding}{flipped}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v07_rpc_round_trip(
        op in v07_op(),
        mask in any::<u64>(),
        pad in any::<bool>(),
        extra in proptest::option::of(bytes()),
    ) {
        for version in [EntryPointVersion::V07, EntryPointVersion::V08] {
            let wrapped = UserOperation::from_packed_form(op.clone(), version)
                .expect("packed-form version");
            let mut value = serde_json::to_value(&wrapped).expect("serialize");
            vary_hex(&mut value, mask, pad);
            if let Some(extra) = &extra {
                value["paymasterSignature"] = json!(extra);
                value["vendorExtension"] = json!({"nested": [1, "two", null]});
            }
            let parsed = parse_user_operation_str(&value.to_string(), version);
            let mut parsed = match parsed {
                Ok(UserOperation::V07(p) | UserOperation::V08(p)) => p,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(parsed.extra.len(), if extra.is_some() { 2 } else { 0 });
            parsed.extra = ExtraFields::default();
            prop_assert_eq!(&parsed, &op);
        }
    }

    #[test]
    fn v07_pack_unpack_round_trip(op in v07_op()) {
        let packed = op.to_packed();
        let decoded = abi::PackedUserOperation::abi_decode(&packed.abi_encode())
            .expect("abi round trip");
        prop_assert_eq!(&decoded, &packed);
        let unpacked = UserOperationV07::from_packed(&packed).expect("unpack");
        // The packed form carries neither eip7702Auth nor RPC extras.
        let expected = UserOperationV07 { eip7702_auth: None, ..op.clone() };
        prop_assert_eq!(&unpacked, &expected);
        // ... and neither enters the v0.7 hash.
        let ep = EntryPointVersion::V07_ADDRESS;
        prop_assert_eq!(unpacked.hash_v07(ep, 1), op.hash_v07(ep, 1));
    }

    #[test]
    fn v06_rpc_and_abi_round_trip(op in v06_op(), mask in any::<u64>(), pad in any::<bool>()) {
        let mut value = serde_json::to_value(UserOperation::V06(op.clone())).expect("serialize");
        vary_hex(&mut value, mask, pad);
        let parsed = parse_user_operation_str(&value.to_string(), EntryPointVersion::V06);
        prop_assert_eq!(parsed, Ok(UserOperation::V06(op.clone())));

        let abi_op = op.to_abi();
        let decoded = abi::UserOperation::abi_decode(&abi_op.abi_encode()).expect("abi round trip");
        prop_assert_eq!(&decoded, &abi_op);
        prop_assert_eq!(UserOperationV06::from_abi(&decoded), Ok(op));
    }
}
