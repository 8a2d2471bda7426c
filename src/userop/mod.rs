//! UserOperation v0.6/v0.7/v0.8: wire types, domain types, packing and userOpHash.
//!
//! Everything opgate decides about an `eth_sendUserOperation` rests on reading the op exactly as
//! the EntryPoint will: the same fields, the same packed form, the same userOpHash. This module is
//! that reading, and nothing else — no I/O, no chain state, no policy.
//!
//! Three layers, with explicit conversions between them:
//!
//! - **wire** ([`RpcUserOperationV06`], [`RpcUserOperationV07`]): the JSON object as sent, read
//!   member by member so that each error names its field. Duplicate keys are refused (JSON parsers
//!   disagree on which copy wins, and the proxy must check the op the bundler will run); members
//!   the decoder does not know, such as `paymasterSignature`, are kept verbatim in
//!   [`ExtraFields`]. The proxy forwards the client's original bytes, never a re-encoding.
//! - **domain** ([`UserOperation`], [`UserOperationV06`], [`UserOperationV07`]): the op with
//!   on-chain limits enforced (packed gas fields fit `uint128`, init code starts with a whole
//!   address), plus the accessors the rest of opgate uses.
//! - **ABI** ([`abi::PackedUserOperation`], [`abi::UserOperation`]): `sol!` structs for encoding
//!   EntryPoint calls.
//!
//! Parsing rules (strict where a lenient reading could make the proxy and the bundler see
//! different ops; lenient where real SDKs differ and the value is still unambiguous):
//!
//! - hex digits in any letter case; prefix `0x` (lowercase) required; address checksums are not
//!   verified;
//! - quantities: at least one digit, leading zeros accepted (ethers v5-style `0x0186a0` encoders
//!   exist and bundlers accept them), at most 256 bits, `uint128` for the gas fields of the
//!   packed form; JSON numbers are refused;
//! - byte strings: even number of digits; addresses: exactly 20 bytes (`factory` may also be the
//!   short EIP-7702 marker `0x7702`);
//! - `null` means absent; paymaster gas limits and data default to zero/empty when a paymaster
//!   is set, and are ignored (as in the packed form) when it is not; `factoryData` without
//!   `factory` is ignored likewise;
//! - a member of another version's form with a non-empty value is refused.
//!
//! The input is bounded by the RPC layer's request size limit; every allocation here is
//! proportional to it.

pub mod abi;
mod entry_point;
mod error;
mod hash;
mod hex;
mod json;
mod operation;
mod wire;

use alloy_primitives::Address;
use serde_json::value::RawValue;

pub use entry_point::{EntryPointVersion, UnknownVersion};
pub use error::{FieldError, UserOpError};
pub use hash::{
    eip712_domain_separator, EIP712_DOMAIN_NAME, EIP712_DOMAIN_TYPEHASH, EIP712_DOMAIN_VERSION, PACKED_USEROP_TYPEHASH,
};
pub use operation::{
    Factory, Paymaster, UserOperation, UserOperationV06, UserOperationV07, EIP7702_FACTORY_MARKER,
    PAYMASTER_DATA_OFFSET, PAYMASTER_POSTOP_GAS_OFFSET, PAYMASTER_VALIDATION_GAS_OFFSET,
};
pub use wire::{Eip7702Auth, ExtraFields, RpcUserOperationV06, RpcUserOperationV07};

/// Decodes `eth_sendUserOperation` `params[0]` for an EntryPoint of `version`.
pub fn parse_user_operation(raw: &RawValue, version: EntryPointVersion) -> Result<UserOperation, UserOpError> {
    match version {
        EntryPointVersion::V06 => {
            UserOperationV06::try_from(RpcUserOperationV06::from_json(raw)?).map(UserOperation::V06)
        }
        EntryPointVersion::V07 => {
            UserOperationV07::try_from(RpcUserOperationV07::from_json(raw, version)?).map(UserOperation::V07)
        }
        EntryPointVersion::V08 => {
            UserOperationV07::try_from(RpcUserOperationV07::from_json(raw, version)?).map(UserOperation::V08)
        }
    }
}

/// Decodes `params[0]` given as JSON text (syntax errors are [`UserOpError::InvalidJson`]).
pub fn parse_user_operation_str(json: &str, version: EntryPointVersion) -> Result<UserOperation, UserOpError> {
    let raw: &RawValue = serde_json::from_str(json).map_err(|e| UserOpError::InvalidJson { reason: e.to_string() })?;
    parse_user_operation(raw, version)
}

/// Decodes `params[0]` given as an already-parsed [`serde_json::Value`]. Prefer
/// [`parse_user_operation`]: a `Value` has already merged duplicate keys, so they cannot be
/// refused here.
pub fn parse_user_operation_value(
    value: &serde_json::Value,
    version: EntryPointVersion,
) -> Result<UserOperation, UserOpError> {
    let raw = serde_json::value::to_raw_value(value).map_err(|e| UserOpError::InvalidJson { reason: e.to_string() })?;
    parse_user_operation(&raw, version)
}

/// The version of the canonical EntryPoint at `entry_point`, or
/// [`UserOpError::UnsupportedEntryPoint`].
pub fn entry_point_version(entry_point: Address) -> Result<EntryPointVersion, UserOpError> {
    EntryPointVersion::from_address(entry_point).ok_or(UserOpError::UnsupportedEntryPoint(entry_point))
}

/// Decodes `params[0]` for the EntryPoint at `entry_point` (`params[1]`), detecting the version from
/// the address.
pub fn parse_user_operation_for(raw: &RawValue, entry_point: Address) -> Result<UserOperation, UserOpError> {
    parse_user_operation(raw, entry_point_version(entry_point)?)
}

#[cfg(test)]
mod tests;
