//! The one error type of the decode layer.
//!
//! Every variant names the structure that was being read (`what`) and, where it applies, the byte
//! range that was wrong. Positions are byte offsets into the slice the failing decoder was given
//! (the `what` string says which slice that is), so a message can be traced back to the input.
//! Decode errors are always the client's fault: the bytes do not form what Kernel would accept.

use alloy_primitives::U256;

/// A UserOperation part could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Reading `len` bytes at `offset` would run past the end of the input.
    #[error("{what}: {len} bytes at offset {offset} run past the end ({available} bytes available)")]
    OutOfBounds {
        /// The structure being read.
        what: &'static str,
        /// Start of the read.
        offset: usize,
        /// Length of the read.
        len: usize,
        /// Length of the input.
        available: usize,
    },
    /// An ABI offset word (read at `at`) points outside the input.
    #[error("{what}: offset word {value} at byte {at} points outside the input ({available} bytes)")]
    BadOffset {
        /// The structure being read.
        what: &'static str,
        /// Where the offset word sits.
        at: usize,
        /// The offset word.
        value: U256,
        /// Length of the input.
        available: usize,
    },
    /// An ABI length word (read at `at`) is larger than the input that follows it.
    #[error("{what}: length word {value} at byte {at} exceeds the {available} bytes that follow")]
    BadLength {
        /// The structure being read.
        what: &'static str,
        /// Where the length word sits.
        at: usize,
        /// The length word.
        value: U256,
        /// Bytes available after the length word.
        available: usize,
    },
    /// Shared ABI tails would make the decoded content larger than `limit` bytes (twice the
    /// input): refused rather than amplified.
    #[error("{what}: decoded content would exceed {limit} bytes (tails shared too often)")]
    TooMuchData {
        /// The structure being read.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A word does not hold a valid value of its ABI type (for example an address with non-zero
    /// upper bytes, a bool other than 0/1, an enum out of range); Solidity's decoder reverts on it.
    #[error("{what}: word at byte {at} is not a valid {expected}")]
    InvalidValue {
        /// The structure being read.
        what: &'static str,
        /// Where the word sits.
        at: usize,
        /// The ABI type expected there.
        expected: &'static str,
    },
    /// The input is shorter than the fixed minimum of its format.
    #[error("{what}: {len} bytes, at least {min} required")]
    TooShort {
        /// The structure being read.
        what: &'static str,
        /// Actual length.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// The input has a length the format does not allow.
    #[error("{what}: length {len} is not allowed ({expected})")]
    BadSize {
        /// The structure being read.
        what: &'static str,
        /// Actual length.
        len: usize,
        /// What the format allows.
        expected: &'static str,
    },
    /// Nonce byte 1 is not a Kernel validation type (0 root, 1 validator, 2 permission).
    #[error("nonce: validation type byte {0:#04x} is not root/validator/permission")]
    UnknownValidationType(u8),
    /// ExecMode byte 0 is not a known ERC-7579 call type.
    #[error("execute mode: call type {0:#04x} is not single/batch/static/delegatecall")]
    UnknownCallType(u8),
    /// Kernel v2 `execute` operation is neither 0 (call) nor 1 (delegatecall).
    #[error("execute: operation {0} is neither call (0) nor delegatecall (1)")]
    UnknownOperation(u8),
    /// Permission signature: a segment index is not above the previous one.
    #[error("permission signature: segment index {index} at byte {at} does not ascend (previous {previous})")]
    SegmentOrder {
        /// Where the segment starts.
        at: usize,
        /// Its index byte.
        index: u8,
        /// The previous segment's index.
        previous: u8,
    },
    /// Permission signature: Kernel walking policy `policy` finds a segment for an earlier policy
    /// (`PolicySignatureOrderError`).
    #[error("permission signature: policy {policy} meets segment index {index} at byte {at}")]
    PolicySignatureOrder {
        /// The policy being walked.
        policy: usize,
        /// The segment index found.
        index: u8,
        /// Where the segment starts.
        at: usize,
    },
    /// Permission signature: the `0xFF` signer marker is missing (`SignerPrefixNotPresent`).
    #[error("permission signature: expected the 0xff signer marker at byte {at}, found {found:?}")]
    MissingSignerMarker {
        /// Where the marker was expected.
        at: usize,
        /// The byte found there (`None` at end of input).
        found: Option<u8>,
    },
    /// Permission install data: the entry count must be 1..=254 (`PolicyDataTooLarge`).
    #[error("permission data: {0} entries, 1 to 254 allowed")]
    PermissionEntryCount(usize),
    /// A 65-byte ECDSA signature's `v` byte is not 27 or 28 (`ecrecover` fails).
    #[error("ecdsa: v byte {0} is not 27 or 28")]
    InvalidRecoveryId(u8),
    /// ECDSA recovery failed (r or s out of range, no point); Kernel's ECDSA reverts.
    #[error("ecdsa: signature is not recoverable")]
    Unrecoverable,
    /// A selector that the decoder does not know where one is required.
    #[error("{what}: unknown selector {selector}")]
    UnknownSelector {
        /// The structure being read.
        what: &'static str,
        /// The selector found, as `0x…` hex.
        selector: String,
    },
    /// The Kernel version needed for a digest is unknown.
    #[error("kernel version unknown: {0}")]
    UnknownKernelVersion(&'static str),
}
