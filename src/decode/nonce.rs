//! The Kernel v3 nonce: validation mode, validation type, validator or permission id, lane and
//! sequence (spec §2.1–2.2), decoded exactly like Kernel's `ValidatorLib.decodeNonce`.
//!
//! Byte 0 is the mode: only `0x01` is enable mode, every other value behaves as default mode
//! (the raw byte is kept). Byte 1 is the type. For a permission only bytes [2, 6) identify it;
//! bytes [6, 22) are ignored by Kernel and, with the lane [22, 24), give the same permission
//! many independent EntryPoint nonce keys — [`KernelNonce::validation_id`] is the normalised
//! identity to key any per-permission accounting on.

use alloy_primitives::{Address, FixedBytes, U256};
use serde::Serialize;

use super::{ser, DecodeError};

/// Kernel's validation mode (nonce byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ValidationMode {
    /// Any byte other than `0x01`.
    Default,
    /// `0x01`: the signature carries an enable wrapper (spec §5).
    Enable,
}

/// Kernel's validation type (nonce byte 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ValidationType {
    /// `0x00`: the account's root validator (also the v3.3 EIP-7702 path).
    Root,
    /// `0x01`: a validator module named by bytes [2, 22).
    Validator,
    /// `0x02`: a permission named by bytes [2, 6).
    Permission,
}

impl ValidationType {
    /// The type byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Root => 0,
            Self::Validator => 1,
            Self::Permission => 2,
        }
    }
}

/// A decoded Kernel v3 nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelNonce {
    /// Validation mode.
    pub mode: ValidationMode,
    /// The raw mode byte (anything but `0x01` is default mode).
    pub mode_byte: FixedBytes<1>,
    /// Validation type.
    pub validation_type: ValidationType,
    /// Raw bytes [2, 22) (for root: ignored by Kernel; the SDK writes the root validator there).
    pub identifier: FixedBytes<20>,
    /// The validator (validator type only).
    #[serde(serialize_with = "ser::opt_address")]
    pub validator: Option<Address>,
    /// The permission id (permission type only).
    pub permission_id: Option<FixedBytes<4>>,
    /// The normalised ValidationId (bytes21) Kernel uses: `0x01 ‖ validator` or
    /// `0x02 ‖ permissionId ‖ 0^16`; `None` for root (Kernel substitutes `rootValidator()`).
    pub validation_id: Option<FixedBytes<21>>,
    /// The SDK's custom nonce key, bytes [22, 24).
    #[serde(serialize_with = "ser::decimal")]
    pub lane: u16,
    /// The EntryPoint sequence, bytes [24, 32).
    #[serde(serialize_with = "ser::decimal")]
    pub sequence: u64,
    /// The EntryPoint nonce key, bytes [0, 24) (uint192).
    pub key: FixedBytes<24>,
}

/// Decodes a Kernel v3 nonce.
pub fn decode_nonce(nonce: U256) -> Result<KernelNonce, DecodeError> {
    decode_nonce_bytes(&nonce.to_be_bytes::<32>())
}

/// Decodes a Kernel v3 nonce given as 32 big-endian bytes (the fuzzing entry point).
pub fn decode_nonce_bytes(bytes: &[u8]) -> Result<KernelNonce, DecodeError> {
    let b: &[u8; 32] = bytes.try_into().map_err(|_| DecodeError::BadSize {
        what: "nonce",
        len: bytes.len(),
        expected: "32 bytes",
    })?;
    let mode = if b[0] == 0x01 {
        ValidationMode::Enable
    } else {
        ValidationMode::Default
    };
    let validation_type = match b[1] {
        0 => ValidationType::Root,
        1 => ValidationType::Validator,
        2 => ValidationType::Permission,
        other => return Err(DecodeError::UnknownValidationType(other)),
    };
    let identifier = FixedBytes::<20>::from_slice(&b[2..22]);
    let (validator, permission_id, validation_id) = match validation_type {
        ValidationType::Root => (None, None, None),
        ValidationType::Validator => (
            Some(Address::from(identifier)),
            None,
            Some(FixedBytes::from_slice(&b[1..22])),
        ),
        ValidationType::Permission => {
            let pid = FixedBytes::<4>::from_slice(&b[2..6]);
            (None, Some(pid), Some(permission_validation_id(pid)))
        }
    };
    Ok(KernelNonce {
        mode,
        mode_byte: FixedBytes([b[0]]),
        validation_type,
        identifier,
        validator,
        permission_id,
        validation_id,
        lane: u16::from_be_bytes([b[22], b[23]]),
        sequence: u64::from_be_bytes(b[24..32].try_into().unwrap_or_default()),
        key: FixedBytes::from_slice(&b[..24]),
    })
}

/// The ValidationId of a permission: `0x02 ‖ pid ‖ 0^16`.
pub fn permission_validation_id(pid: FixedBytes<4>) -> FixedBytes<21> {
    let mut v = [0u8; 21];
    v[0] = 0x02;
    v[1..5].copy_from_slice(pid.as_slice());
    FixedBytes(v)
}

/// The ValidationId of a validator: `0x01 ‖ address`.
pub fn validator_validation_id(validator: Address) -> FixedBytes<21> {
    let mut v = [0u8; 21];
    v[0] = 0x01;
    v[1..].copy_from_slice(validator.as_slice());
    FixedBytes(v)
}
