//! The one error type of the `userop` layer.
//!
//! Every failure to turn client JSON into a [`UserOperation`](super::UserOperation) is the
//! client's fault and is answered with JSON-RPC `-32602`; the variants name the offending field so
//! the message can say exactly what to fix. Nothing here wraps a foreign error type, so the enum
//! stays `PartialEq` and tests can assert on it.

use alloy_primitives::Address;

use super::EntryPointVersion;

/// Longest key (in bytes) an error repeats back from client input.
const MAX_ECHOED_KEY: usize = 64;

/// Why a user operation could not be decoded or hashed.
///
/// All variants describe a problem with the client's input (retrying the same request cannot
/// succeed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserOpError {
    /// The text is not JSON at all (only from [`parse_user_operation_str`](super::parse_user_operation_str)).
    #[error("user operation is not valid JSON: {reason}")]
    InvalidJson {
        /// The JSON parser's description (position and cause).
        reason: String,
    },
    /// The user operation is valid JSON but not an object.
    #[error("user operation must be a JSON object")]
    NotAnObject,
    /// The same key appears twice in the object. Different JSON parsers keep different copies, so
    /// the proxy and the bundler could see different operations; refuse instead of guessing.
    #[error("duplicate field `{field}`")]
    DuplicateField {
        /// The repeated key (cut to 64 bytes).
        field: String,
    },
    /// A required field is absent (or `null`).
    #[error("missing field `{field}`")]
    MissingField {
        /// The RPC name of the field.
        field: &'static str,
    },
    /// A field is present but its value is malformed or out of range.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The RPC name of the field (`eip7702Auth.address` for the nested one).
        field: &'static str,
        /// What is wrong with it.
        reason: FieldError,
    },
    /// A field that belongs to a different EntryPoint version carries a non-empty value (e.g.
    /// `initCode` in a v0.7 operation): the client built the op for another EntryPoint, and a
    /// bundler might read that field where the proxy ignores it.
    #[error("field `{field}` is not part of an EntryPoint v{version} user operation")]
    UnexpectedField {
        /// The RPC name of the field.
        field: &'static str,
        /// The version the operation was decoded for.
        version: EntryPointVersion,
    },
    /// The entry point address is none of the supported canonical EntryPoints.
    #[error("unsupported entry point {0}")]
    UnsupportedEntryPoint(Address),
    /// A v0.8 EIP-7702 operation (factory = `0x7702` marker) carries no `eip7702Auth`, so the
    /// delegate address that enters the hash would have to be read from chain state.
    #[error("EIP-7702 user operation without `eip7702Auth`: the delegate address for the hash is unknown")]
    Eip7702DelegateUnknown,
}

impl UserOpError {
    pub(crate) fn invalid(field: &'static str, reason: FieldError) -> Self {
        Self::InvalidField { field, reason }
    }

    pub(crate) fn duplicate(key: &str) -> Self {
        let mut end = key.len().min(MAX_ECHOED_KEY);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        Self::DuplicateField {
            field: key[..end].to_owned(),
        }
    }

    /// The RPC field this error is about, if it concerns a single field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::DuplicateField { field } => Some(field),
            Self::MissingField { field } | Self::InvalidField { field, .. } | Self::UnexpectedField { field, .. } => {
                Some(field)
            }
            Self::Eip7702DelegateUnknown => Some("eip7702Auth"),
            Self::InvalidJson { .. } | Self::NotAnObject | Self::UnsupportedEntryPoint(_) => None,
        }
    }
}

/// What is wrong with one field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The value is not a JSON string (numbers are not accepted for quantities).
    #[error("expected a 0x-prefixed hex string")]
    NotAString,
    /// The string does not start with lowercase `0x`.
    #[error("missing 0x prefix")]
    MissingPrefix,
    /// A character after `0x` is not a hex digit.
    #[error("invalid hex digit")]
    InvalidHexDigit,
    /// Byte strings need an even number of hex digits.
    #[error("odd number of hex digits")]
    OddLength,
    /// A quantity needs at least one digit (`0x0` for zero, not `0x`).
    #[error("empty quantity (zero is 0x0)")]
    EmptyQuantity,
    /// The quantity does not fit the field's integer width.
    #[error("value does not fit in uint{bits}")]
    Overflow {
        /// Width of the field in bits.
        bits: u16,
    },
    /// The byte string has the wrong length (addresses are exactly 20 bytes).
    #[error("expected {expected} bytes, got {actual}")]
    WrongLength {
        /// Required length in bytes.
        expected: usize,
        /// Length that was sent.
        actual: usize,
    },
    /// The byte string is non-empty but shorter than the address it must start with.
    #[error("must be empty or at least {min} bytes, got {actual}")]
    TooShort {
        /// Minimum non-empty length in bytes.
        min: usize,
        /// Length that was sent.
        actual: usize,
    },
    /// The value must be a JSON object.
    #[error("expected a JSON object")]
    NotAnObject,
}
