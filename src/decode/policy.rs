//! Policy install data, parsed by policy address (spec §4.5, canonical addresses §6).
//!
//! Each parser reads the bytes a policy's `onInstall` receives after the 32-byte permission id
//! (the part of a permission entry after `flag(2) ‖ address(20)`), with the checks the policy's
//! own decoder applies: Solidity-validated words must be clean, packed policies need their fixed
//! length. An address that is not a known policy gives [`PolicyParams::Unknown`] with the raw
//! data; a known policy whose data does not parse gives [`PolicyParams::Invalid`] (its install
//! would revert), so the policy list keeps its indices.

use alloy_primitives::{address, Address, Bytes, FixedBytes, U256};
use serde::Serialize;

use super::abi::{Abi, Arith};
use super::{ser, DecodeError};

/// CallPolicy v0.0.1.
pub const CALL_POLICY_V0_0_1: Address = address!("e4Fec84B7B002273ecC86baa65a831ddB92d30a8");
/// CallPolicy v0.0.2.
pub const CALL_POLICY_V0_0_2: Address = address!("67Fa43ca2D689beA4d10b9F2C96828828A2Ab275");
/// CallPolicy v0.0.3.
pub const CALL_POLICY_V0_0_3: Address = address!("B3CB5f502250360335614df1421f2AAbE98CE503");
/// CallPolicy v0.0.4.
pub const CALL_POLICY_V0_0_4: Address = address!("9a52283276A0ec8740DF50bF01B28A80D880eaf2");
/// CallPolicy v0.0.5.
pub const CALL_POLICY_V0_0_5: Address = address!("85770b902D1e503D5f5141d9eaC16d0d08eEaDd2");
/// GasPolicy.
pub const GAS_POLICY: Address = address!("aeFC5AbC67FfD258abD0A3E54f65E70326F84b23");
/// RateLimitPolicy.
pub const RATE_LIMIT_POLICY: Address = address!("f63d4139B25c836334edD76641356c6b74C86873");
/// RateLimitPolicy with reset.
pub const RATE_LIMIT_RESET_POLICY: Address = address!("6a06358e6b283921deceabe7e8a3741d506cca9b");
/// SignaturePolicy ("signature caller").
pub const SIGNATURE_POLICY: Address = address!("F6A936c88D97E6fad13b98d2FD731Ff17eeD591d");
/// SudoPolicy.
pub const SUDO_POLICY: Address = address!("67b436caD8a6D025DF6C82C5BB43fbF11fC5B9B7");
/// TimestampPolicy.
pub const TIMESTAMP_POLICY: Address = address!("B9f8f524bE6EcD8C945b1b87f9ae5C192FdCE20F");

/// Policy flag bit: the policy is skipped on the UserOperation path.
pub const SKIP_USEROP: u16 = 0x0001;
/// Policy flag bit: the policy is skipped on the ERC-1271 path.
pub const SKIP_SIGNATURE: u16 = 0x0002;

/// A policy of a permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Policy contract.
    #[serde(serialize_with = "ser::address")]
    pub address: Address,
    /// Pass flag (`0x0001` skip on userOps, `0x0002` skip on signatures).
    pub flag: FixedBytes<2>,
    /// Release of the policy contract, when its address tells it.
    pub version: Option<&'static str>,
    /// Parsed install data, with the `type` tag.
    #[serde(flatten)]
    pub params: PolicyParams,
}

impl Policy {
    /// Whether the policy is skipped when validating UserOperations (it enforces nothing there).
    pub fn skips_user_op(&self) -> bool {
        u16::from_be_bytes(self.flag.0) & SKIP_USEROP != 0
    }

    /// Whether the policy is skipped on the ERC-1271 path.
    pub fn skips_signature(&self) -> bool {
        u16::from_be_bytes(self.flag.0) & SKIP_SIGNATURE != 0
    }
}

/// Parsed install data by policy type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PolicyParams {
    /// CallPolicy: the allowed calls.
    #[serde(rename_all = "camelCase")]
    Call {
        /// Allowed `(callType, target, selector)` entries with their rules.
        permissions: Vec<CallPermission>,
    },
    /// GasPolicy `(uint128 allowed, bool enforcePaymaster, address allowedPaymaster)`.
    #[serde(rename_all = "camelCase")]
    Gas {
        /// Total wei of `(pvg + vgl + cgl) · maxFeePerGas` allowed.
        #[serde(serialize_with = "ser::decimal")]
        allowed: u128,
        /// Whether a paymaster is required.
        enforce_paymaster: bool,
        /// The required paymaster (zero = none enforced).
        #[serde(serialize_with = "ser::address")]
        allowed_paymaster: Address,
    },
    /// RateLimitPolicy `interval(6) ‖ count(6) ‖ startAt(6)`.
    #[serde(rename_all = "camelCase")]
    RateLimit {
        /// Seconds between uses.
        #[serde(serialize_with = "ser::decimal")]
        interval: u64,
        /// Lifetime number of uses.
        #[serde(serialize_with = "ser::decimal")]
        count: u64,
        /// First use valid after (unix seconds).
        #[serde(serialize_with = "ser::decimal")]
        start_at: u64,
    },
    /// RateLimitPolicy with reset `interval(6) ‖ initialCount(6)`.
    #[serde(rename_all = "camelCase")]
    RateLimitReset {
        /// Reset period in seconds.
        #[serde(serialize_with = "ser::decimal")]
        interval: u64,
        /// Uses per period.
        #[serde(serialize_with = "ser::decimal")]
        initial_count: u64,
    },
    /// TimestampPolicy `abi.encode(uint48 validAfter, uint48 validUntil)`.
    #[serde(rename_all = "camelCase")]
    Timestamp {
        /// Valid after (unix seconds).
        #[serde(serialize_with = "ser::decimal")]
        valid_after: u64,
        /// Valid until (unix seconds; 0 = no expiry).
        #[serde(serialize_with = "ser::decimal")]
        valid_until: u64,
    },
    /// SudoPolicy: no data, allows everything.
    Sudo,
    /// SignaturePolicy `abi.encode(address[] allowedCallers)`.
    #[serde(rename_all = "camelCase")]
    SignatureCaller {
        /// ERC-1271 callers allowed.
        #[serde(serialize_with = "ser::addresses")]
        allowed_callers: Vec<Address>,
    },
    /// Not a known policy address.
    Unknown {
        /// Raw install data.
        data: Bytes,
    },
    /// A known policy whose install data does not parse (its `onInstall` would revert).
    Invalid {
        /// Raw install data.
        data: Bytes,
        /// What was wrong.
        error: String,
    },
}

/// The call type a CallPolicy permission is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermissionCallType {
    /// `0x00`.
    Call,
    /// `0x01` (never matched: batch elements are checked as `0x00`).
    Batch,
    /// `0xFF`.
    DelegateCall,
    /// Any other byte (stored, never matched).
    Other(u8),
}

impl PermissionCallType {
    fn from_byte(b: u8) -> Self {
        match b {
            0x00 => Self::Call,
            0x01 => Self::Batch,
            0xFF => Self::DelegateCall,
            other => Self::Other(other),
        }
    }
}

impl Serialize for PermissionCallType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Call => s.serialize_str("call"),
            Self::Batch => s.serialize_str("batch"),
            Self::DelegateCall => s.serialize_str("delegatecall"),
            Self::Other(b) => s.collect_str(&format_args!("{b:#04x}")),
        }
    }
}

/// One CallPolicy permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallPermission {
    /// Call type key.
    pub call_type: PermissionCallType,
    /// Target (zero = any target, ≥0.0.2).
    #[serde(serialize_with = "ser::address")]
    pub target: Address,
    /// Selector (`0x00000000` = empty call data, ≥0.0.2).
    pub selector: FixedBytes<4>,
    /// Maximum value per call.
    #[serde(serialize_with = "ser::decimal")]
    pub value_limit: U256,
    /// Parameter rules, all of which must hold.
    pub rules: Vec<ParamRule>,
}

/// A CallPolicy parameter condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ParamCondition {
    /// 0.
    Equal,
    /// 1.
    GreaterThan,
    /// 2.
    LessThan,
    /// 3.
    GreaterThanOrEqual,
    /// 4.
    LessThanOrEqual,
    /// 5.
    NotEqual,
    /// 6 (≥0.0.2): any of `params`.
    OneOf,
    /// 7 (0.0.5, `SUBSTR_EQUAL` in the contract): `params = [start, length, keccak(expected)]`.
    SliceEqual,
}

impl ParamCondition {
    const ALL: [Self; 8] = [
        Self::Equal,
        Self::GreaterThan,
        Self::LessThan,
        Self::GreaterThanOrEqual,
        Self::LessThanOrEqual,
        Self::NotEqual,
        Self::OneOf,
        Self::SliceEqual,
    ];

    /// The enum value on chain.
    pub fn id(self) -> u8 {
        Self::ALL.iter().position(|c| *c == self).unwrap_or_default() as u8
    }
}

/// One rule on a 32-byte word of the call's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParamRule {
    /// Comparison.
    pub condition: ParamCondition,
    /// Byte offset after the selector.
    #[serde(serialize_with = "ser::decimal")]
    pub offset: u64,
    /// Reference words (v0.0.1 has exactly one).
    pub params: Vec<FixedBytes<32>>,
}

/// The release of a CallPolicy deployment, by address.
pub fn call_policy_version(address: Address) -> Option<&'static str> {
    match address {
        CALL_POLICY_V0_0_1 => Some("0.0.1"),
        CALL_POLICY_V0_0_2 => Some("0.0.2"),
        CALL_POLICY_V0_0_3 => Some("0.0.3"),
        CALL_POLICY_V0_0_4 => Some("0.0.4"),
        CALL_POLICY_V0_0_5 => Some("0.0.5"),
        _ => None,
    }
}

/// Parses a policy's install data by its address (the fuzzing entry point for policies).
pub fn decode_policy_params(address: Address, data: &[u8]) -> Result<PolicyParams, DecodeError> {
    match (call_policy_version(address), address) {
        (Some(v), _) => decode_call_policy(v, data),
        (None, GAS_POLICY) => decode_gas(data),
        (None, RATE_LIMIT_POLICY) => decode_rate_limit(data),
        (None, RATE_LIMIT_RESET_POLICY) => decode_rate_limit_reset(data),
        (None, TIMESTAMP_POLICY) => decode_timestamp(data),
        (None, SUDO_POLICY) => Ok(PolicyParams::Sudo),
        (None, SIGNATURE_POLICY) => decode_signature_caller(data),
        _ => Ok(PolicyParams::Unknown {
            data: Bytes::copy_from_slice(data),
        }),
    }
}

/// A permission's policy entry: parsed install data, or [`PolicyParams::Invalid`] with the
/// error when a known policy's data does not parse.
pub fn decode_policy(address: Address, flag: FixedBytes<2>, data: &[u8]) -> Policy {
    let params = decode_policy_params(address, data).unwrap_or_else(|e| PolicyParams::Invalid {
        data: Bytes::copy_from_slice(data),
        error: e.to_string(),
    });
    Policy {
        address,
        flag,
        version: call_policy_version(address),
        params,
    }
}

/// CallPolicy `abi.encode(Permission[])`, read like its `_parsePermission` (assembly offset,
/// then Solidity calldata accessors): offsets add modulo 2^256 and must stay inside `data`.
pub fn decode_call_policy(version: &str, data: &[u8]) -> Result<PolicyParams, DecodeError> {
    let single_param = version == "0.0.1";
    let conditions = match version {
        "0.0.1" => 6,
        "0.0.5" => 8,
        _ => 7,
    };
    let abi = Abi::new(data, "call policy permissions");
    let list = abi.pointer(0, 0, Arith::Wrapping)?;
    let permissions = abi
        .dynamic_array(list, Arith::Wrapping)?
        .into_iter()
        .map(|p| {
            let call_type = abi.fixed::<1>(p, "bytes1 callType")?;
            let target = abi.address(p + 32)?;
            let selector = abi.fixed::<4>(p + 64, "bytes4 selector")?;
            let value_limit = abi.u256(p + 96)?;
            let rules_at = abi.pointer(p, p + 128, Arith::Wrapping)?;
            let rules = if single_param {
                let (n, start) = abi.length(rules_at, 96)?;
                (0..n)
                    .map(|i| rule_v1(&abi, start + 96 * i, conditions))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                abi.dynamic_array(rules_at, Arith::Wrapping)?
                    .into_iter()
                    .map(|r| {
                        let (condition, offset) = rule_head(&abi, r, conditions)?;
                        let params = abi.word_array(abi.pointer(r, r + 64, Arith::Wrapping)?)?;
                        Ok(ParamRule {
                            condition,
                            offset,
                            params,
                        })
                    })
                    .collect::<Result<Vec<_>, DecodeError>>()?
            };
            Ok(CallPermission {
                call_type: PermissionCallType::from_byte(call_type[0]),
                target,
                selector,
                value_limit,
                rules,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(PolicyParams::Call { permissions })
}

fn rule_head(abi: &Abi<'_>, at: usize, conditions: u64) -> Result<(ParamCondition, u64), DecodeError> {
    let id = abi.small_uint(at, 8, "ParamCondition")?;
    let condition = ParamCondition::ALL
        .get(id as usize)
        .filter(|_| id < conditions)
        .copied()
        .ok_or(DecodeError::InvalidValue {
            what: "call policy permissions",
            at,
            expected: "ParamCondition",
        })?;
    let offset = abi.small_uint(at + 32, 64, "uint64 offset")?;
    Ok((condition, offset))
}

fn rule_v1(abi: &Abi<'_>, at: usize, conditions: u64) -> Result<ParamRule, DecodeError> {
    let (condition, offset) = rule_head(abi, at, conditions)?;
    let param = FixedBytes::from(*abi.word(at + 64)?);
    Ok(ParamRule {
        condition,
        offset,
        params: vec![param],
    })
}

fn decode_gas(data: &[u8]) -> Result<PolicyParams, DecodeError> {
    let abi = Abi::new(data, "gas policy data");
    Ok(PolicyParams::Gas {
        allowed: abi.uint(0, 128, "uint128")?.to::<u128>(),
        enforce_paymaster: abi.bool(32)?,
        allowed_paymaster: abi.address(64)?,
    })
}

fn uint48(data: &[u8], at: usize, what: &'static str) -> Result<u64, DecodeError> {
    let b = Abi::new(data, what).slice(at, 6)?;
    Ok(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

fn decode_rate_limit(data: &[u8]) -> Result<PolicyParams, DecodeError> {
    let what = "rate limit policy data";
    Ok(PolicyParams::RateLimit {
        interval: uint48(data, 0, what)?,
        count: uint48(data, 6, what)?,
        start_at: uint48(data, 12, what)?,
    })
}

fn decode_rate_limit_reset(data: &[u8]) -> Result<PolicyParams, DecodeError> {
    let what = "rate limit reset policy data";
    Ok(PolicyParams::RateLimitReset {
        interval: uint48(data, 0, what)?,
        initial_count: uint48(data, 6, what)?,
    })
}

fn decode_timestamp(data: &[u8]) -> Result<PolicyParams, DecodeError> {
    let abi = Abi::new(data, "timestamp policy data");
    Ok(PolicyParams::Timestamp {
        valid_after: abi.small_uint(0, 48, "uint48")?,
        valid_until: abi.small_uint(32, 48, "uint48")?,
    })
}

fn decode_signature_caller(data: &[u8]) -> Result<PolicyParams, DecodeError> {
    let abi = Abi::new(data, "signature policy data");
    let allowed_callers = abi.address_array(abi.pointer(0, 0, Arith::Checked)?)?;
    Ok(PolicyParams::SignatureCaller { allowed_callers })
}
