//! The permission UserOperation signature (spec §4.3):
//! `[replayable magic(32)] ‖ segment* ‖ 0xFF ‖ signerSignature`, each segment
//! `idx(1) ‖ len(8, uint64 BE) ‖ data(len)`.
//!
//! [`decode_permission_signature`] splits it without knowing the policy count (segments must
//! ascend strictly; a byte `0xFF` where an index is expected ends the segments).
//! [`assign_policy_signatures`] walks it exactly as Kernel's `_checkUserOpPolicy` does for `n`
//! policies: policy `i` takes the segment when its index equals `i`, gets empty data when the
//! next index is larger, and the walk fails when it is smaller; then `0xFF` must follow.
//! Lengths are 64-bit: they are compared with the bytes left before anything is sliced.

use alloy_primitives::{Bytes, B256};
use serde::Serialize;

use super::{ser, DecodeError, Source};

/// `keccak("kernel.replayable.signature")`: the v3.2+ prefix of chain-agnostic signatures.
pub const REPLAYABLE_MAGIC: B256 =
    alloy_primitives::b256!("0555ad2729e8da1777a4e5020806f8bf7601c3db6bfe402f410a34958363a95a");

/// The marker byte between policy segments and the signer signature.
pub const SIGNER_MARKER: u8 = 0xFF;

/// Strips the v3.2+ replayable prefix: `(true, rest)` when `sig` starts with it.
pub fn strip_replayable(sig: &[u8]) -> (bool, &[u8]) {
    match sig.strip_prefix(REPLAYABLE_MAGIC.as_slice()) {
        Some(rest) => (true, rest),
        None => (false, sig),
    }
}

/// One policy segment of a permission signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySegment {
    /// Policy index byte.
    #[serde(serialize_with = "ser::decimal")]
    pub index: u8,
    /// Byte position of the segment in the (prefix-stripped) signature.
    #[serde(serialize_with = "ser::decimal")]
    pub at: usize,
    /// The segment data.
    pub data: Bytes,
}

/// A permission signature split into policy segments and the signer signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionSignature {
    /// Whether the v3.2+ replayable prefix was present (and stripped).
    pub replayable: bool,
    /// Policy segments, strictly ascending by index.
    pub segments: Vec<PolicySegment>,
    /// Everything after the `0xFF` marker.
    pub signer_signature: Bytes,
}

/// What each policy receives when Kernel walks the signature for `n` policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAssignment {
    /// Whether the replayable prefix was stripped first.
    pub replayable: bool,
    /// `policies[i]` = the signature data policy `i` sees (empty when it has no segment).
    pub policies: Vec<Bytes>,
    /// Everything after the `0xFF` marker.
    pub signer_signature: Bytes,
}

/// Reads the segment at `pos`: `(index, data, next position)`.
fn segment(sig: &[u8], pos: usize) -> Result<(u8, &[u8], usize), DecodeError> {
    let index = sig[pos];
    let header = sig.get(pos + 1..pos + 9).ok_or(DecodeError::OutOfBounds {
        what: "permission signature segment length",
        offset: pos + 1,
        len: 8,
        available: sig.len(),
    })?;
    let len = u64::from_be_bytes(header.try_into().unwrap_or_default());
    let start = pos + 9;
    let available = sig.len() - start;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= available)
        .ok_or(DecodeError::OutOfBounds {
            what: "permission signature segment",
            offset: start,
            len: usize::try_from(len).unwrap_or(usize::MAX),
            available: sig.len(),
        })?;
    Ok((index, &sig[start..start + len], start + len))
}

fn signer_part(src: Source<'_>, sig: &[u8], pos: usize) -> Result<Bytes, DecodeError> {
    match sig.get(pos) {
        Some(&SIGNER_MARKER) => Ok(src.part(&sig[pos + 1..])),
        found => Err(DecodeError::MissingSignerMarker {
            at: pos,
            found: found.copied(),
        }),
    }
}

/// Splits a UserOperation's permission signature into segments and signer signature, after
/// stripping the replayable prefix (the fuzzing entry point).
pub fn decode_permission_signature(sig: &[u8]) -> Result<PermissionSignature, DecodeError> {
    let (replayable, sig) = strip_replayable(sig);
    split(Source::COPY, sig, replayable)
}

/// Splits a permission signature as Kernel sees it after the prefix is gone (or inside an
/// enable wrapper, where no prefix is stripped).
pub fn decode_inner_permission_signature(sig: &[u8]) -> Result<PermissionSignature, DecodeError> {
    split(Source::COPY, sig, false)
}

/// [`decode_inner_permission_signature`], the parts taken from `src`.
pub(crate) fn inner_permission_signature_in(src: Source<'_>, sig: &[u8]) -> Result<PermissionSignature, DecodeError> {
    split(src, sig, false)
}

fn split(src: Source<'_>, sig: &[u8], replayable: bool) -> Result<PermissionSignature, DecodeError> {
    let mut segments: Vec<PolicySegment> = Vec::new();
    let mut pos = 0;
    while let Some(&index) = sig.get(pos) {
        if index == SIGNER_MARKER {
            break;
        }
        if let Some(prev) = segments.last() {
            if index <= prev.index {
                return Err(DecodeError::SegmentOrder {
                    at: pos,
                    index,
                    previous: prev.index,
                });
            }
        }
        let (index, data, next) = segment(sig, pos)?;
        segments.push(PolicySegment {
            index,
            at: pos,
            data: src.part(data),
        });
        pos = next;
    }
    let signer_signature = signer_part(src, sig, pos)?;
    Ok(PermissionSignature {
        replayable,
        segments,
        signer_signature,
    })
}

/// Walks a UserOperation's permission signature for `policy_count` policies exactly as Kernel
/// does, after stripping the replayable prefix.
pub fn assign_policy_signatures(sig: &[u8], policy_count: usize) -> Result<PolicyAssignment, DecodeError> {
    let (replayable, sig) = strip_replayable(sig);
    walk(Source::COPY, sig, policy_count, replayable)
}

/// [`assign_policy_signatures`] on a signature whose prefix is already gone.
pub fn assign_inner_policy_signatures(sig: &[u8], policy_count: usize) -> Result<PolicyAssignment, DecodeError> {
    walk(Source::COPY, sig, policy_count, false)
}

/// [`assign_inner_policy_signatures`], the parts taken from `src`.
pub(crate) fn inner_policy_signatures_in(
    src: Source<'_>,
    sig: &[u8],
    policy_count: usize,
) -> Result<PolicyAssignment, DecodeError> {
    walk(src, sig, policy_count, false)
}

fn walk(src: Source<'_>, sig: &[u8], policy_count: usize, replayable: bool) -> Result<PolicyAssignment, DecodeError> {
    let mut policies = Vec::with_capacity(policy_count.min(254));
    let mut pos = 0;
    // Ends by i = 256 at the latest: an index byte is at most 255.
    for i in 0..policy_count {
        // Kernel reads `userOpSig[0]` for every policy: an empty rest reverts.
        let Some(&index) = sig.get(pos) else {
            return Err(DecodeError::MissingSignerMarker { at: pos, found: None });
        };
        match usize::from(index).cmp(&i) {
            std::cmp::Ordering::Equal => {
                let (_, data, next) = segment(sig, pos)?;
                policies.push(src.part(data));
                pos = next;
            }
            std::cmp::Ordering::Less => {
                return Err(DecodeError::PolicySignatureOrder {
                    policy: i,
                    index,
                    at: pos,
                });
            }
            std::cmp::Ordering::Greater => policies.push(Bytes::new()),
        }
    }
    let signer_signature = signer_part(src, sig, pos)?;
    Ok(PolicyAssignment {
        replayable,
        policies,
        signer_signature,
    })
}
