//! The Kernel v3 session the decision benches build: ABI words, policy install data (CallPolicy
//! 0.0.4, GasPolicy, RateLimitPolicy, TimestampPolicy) and an `execute` call, encoded as the SDK
//! encodes them (checked against a recorded vector by benches/decision.rs).

use alloy_primitives::{Address, Bytes, FixedBytes, B256, U256};
use alloy_sol_types::SolValue;
use opgate::decode::policy::{CALL_POLICY_V0_0_4, GAS_POLICY, RATE_LIMIT_POLICY, TIMESTAMP_POLICY};
use opgate::decode::serialized::{PolicyEntry, SerializedPolicyType, EXECUTE_SELECTOR};

/// `transfer(address,uint256)`.
pub(crate) const TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];

pub(crate) fn word(bytes: &[u8]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[32 - bytes.len()..].copy_from_slice(bytes);
    w
}

pub(crate) fn u64_word(v: u64) -> [u8; 32] {
    word(&v.to_be_bytes())
}

alloy_sol_types::sol! {
    /// CallPolicy ≥ 0.0.2 `ParamRule`.
    struct ParamRule {
        uint8 condition;
        uint64 offset;
        bytes32[] params;
    }
    /// CallPolicy ≥ 0.0.2 `Permission`.
    struct CallPermission {
        bytes1 callType;
        address target;
        bytes4 selector;
        uint256 valueLimit;
        ParamRule[] rules;
    }
}

/// One rule: condition, byte offset into the arguments, params.
pub(crate) type Rule = (u8, u64, Vec<B256>);

pub(crate) fn entry(policy_type: SerializedPolicyType, address: Address, data: Vec<u8>) -> PolicyEntry {
    PolicyEntry {
        policy_type,
        flag: FixedBytes::ZERO,
        address,
        data: Bytes::from(data),
    }
}

/// CallPolicy 0.0.4 with one permission: `call` to `target`, `selector`, with `rules`.
pub(crate) fn call_policy(target: Address, selector: [u8; 4], value_limit: U256, rules: &[Rule]) -> PolicyEntry {
    let permissions = vec![CallPermission {
        callType: FixedBytes([0x00]),
        target,
        selector: FixedBytes(selector),
        valueLimit: value_limit,
        rules: rules
            .iter()
            .map(|(condition, offset, params)| ParamRule {
                condition: *condition,
                offset: *offset,
                params: params.clone(),
            })
            .collect(),
    }];
    entry(SerializedPolicyType::Call, CALL_POLICY_V0_0_4, permissions.abi_encode())
}

/// GasPolicy: `abi.encode(uint128 allowed, bool enforcePaymaster, address allowedPaymaster)`.
pub(crate) fn gas_policy(allowed: u128, enforce_paymaster: bool, paymaster: Address) -> PolicyEntry {
    entry(
        SerializedPolicyType::Gas,
        GAS_POLICY,
        (allowed, enforce_paymaster, paymaster).abi_encode_params(),
    )
}

/// RateLimitPolicy: `uint48 interval ‖ uint48 count ‖ uint48 startAt`, packed.
pub(crate) fn rate_limit_policy(interval: u64, count: u64, start_at: u64) -> PolicyEntry {
    let data = [interval, count, start_at]
        .iter()
        .flat_map(|v| v.to_be_bytes()[2..].to_vec())
        .collect();
    entry(SerializedPolicyType::RateLimit, RATE_LIMIT_POLICY, data)
}

/// TimestampPolicy: `abi.encode(uint48 validAfter, uint48 validUntil)`.
pub(crate) fn timestamp_policy(valid_after: u64, valid_until: u64) -> PolicyEntry {
    let data = [u64_word(valid_after), u64_word(valid_until)].concat();
    entry(SerializedPolicyType::Timestamp, TIMESTAMP_POLICY, data)
}

/// `transfer(to, amount)` call data.
pub(crate) fn transfer_data(to: Address, amount: u64) -> Vec<u8> {
    [&TRANSFER[..], &word(to.as_slice()), &u64_word(amount)].concat()
}

/// Kernel `execute(bytes32 mode = 0, abi.encodePacked(target, value, data))`: one call.
pub(crate) fn execute_call(target: Address, value: U256, data: &[u8]) -> Bytes {
    let packed = [target.as_slice(), &value.to_be_bytes::<32>(), data].concat();
    let args = (B256::ZERO, Bytes::from(packed)).abi_encode_params();
    Bytes::from([&EXECUTE_SELECTOR[..], &args].concat())
}

pub(crate) fn hex_bytes(b: &[u8]) -> String {
    format!("0x{}", alloy_primitives::hex::encode(b))
}
