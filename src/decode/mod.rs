//! Kernel decoding: everything a ZeroDev Kernel (v3, and the v2 / SimpleAccount call formats)
//! UserOperation carries, read from raw bytes exactly as the contracts read them.
//!
//! One module per concern, each with a single `&[u8]` entry point (fuzzing targets call these):
//!
//! - [`nonce`]: mode, validation type, validator / permission id, lane, sequence
//!   ([`decode_nonce_bytes`]).
//! - [`calls`]: `execute` single / batch / delegatecall / static, the `executeUserOp` prefix,
//!   Kernel v2 and SimpleAccount entry points ([`decode_calls`]).
//! - [`canonical`]: the one reading of ABI bytes — function signatures, the canonical layout
//!   check, the built-in table of token functions.
//! - [`signature`]: the permission signature — policy segments and signer signature
//!   ([`decode_permission_signature`], [`assign_policy_signatures`]).
//! - [`enable`]: the enable-mode wrapper, selector data, the EIP-712 Enable digest and its
//!   verification ([`decode_enable_signature`], [`decode_selector_data`], [`verify_enable`]).
//! - [`permission`]: permission install data — policies and signer ([`decode_permission_data`]).
//! - [`policy`]: each policy's install data by address ([`decode_policy_params`]).
//! - [`multichain`]: the multi-chain ECDSA validator's forms and Merkle proofs
//!   ([`decode_multichain_signature`]).
//! - [`init`]: what an initCode deploys ([`decode_init_code`]).
//! - [`stub`]: SDK stub signatures ([`detect_stub`]).
//! - [`ecdsa`]: signer recovery, raw and EIP-191.
//! - [`kernel`]: [`decode_kernel`] / [`decode_kernel_with`], all of the above for one op;
//!   [`decode_kernel_structure`] without the enable approval's ECDSA recovery.
//!
//! Decoding never panics, never reads outside its input and never allocates by an unchecked
//! length; what it cannot decode is a [`DecodeError`] naming the structure and byte range.
//! Everything that is decoded serialises to the JSON `opgate decode` prints: addresses and bytes
//! as lowercase `0x…` hex, numbers as decimal strings.

mod abi;
pub mod calls;
pub mod canonical;
pub mod ecdsa;
pub mod enable;
mod error;
pub mod init;
pub mod kernel;
pub mod multichain;
pub mod nonce;
pub mod permission;
pub mod policy;
pub(crate) mod ser;
pub mod serialized;
pub mod signature;
pub mod stub;

pub use calls::{decode_calls, is_privileged, Call, CallDataFormat, CallKind, DecodedCalls, ExecCallType, ExecType};
pub use enable::{
    decode_enable_signature, decode_selector_data, enable_digest, verify_enable, EnableData, KernelVersion,
    SelectorData,
};
pub use error::DecodeError;
pub use init::{decode_init_code, Deployment, RootValidator};
pub use kernel::{decode_kernel, decode_kernel_structure, decode_kernel_with, DecodeOptions, KernelDecoded};
pub use multichain::{decode_multichain_signature, verify_merkle_proof, MultiChainSignature};
pub use nonce::{decode_nonce, decode_nonce_bytes, KernelNonce, ValidationMode, ValidationType};
pub use permission::{decode_permission_data, Permission, Signer, SignerKind};
pub use policy::{
    decode_policy, decode_policy_params, CallPermission, ParamCondition, ParamRule, Policy, PolicyParams,
};
pub use serialized::{parse_serialized_permission_account, SerializedError, SerializedPermission};
pub use signature::{
    assign_inner_policy_signatures, assign_policy_signatures, decode_inner_permission_signature,
    decode_permission_signature, PermissionSignature, PolicyAssignment,
};
pub use stub::{detect_stub, StubKind};

use alloy_primitives::Bytes;

/// Where the byte strings a decoder returns (call data, install data, signatures) come from.
///
/// Decoders read `&[u8]`. Given the buffer their input lies in ([`Source::of`]), each part they
/// return is a view of that buffer: a reference count, no allocation, no copy. Without one
/// ([`Source::COPY`], what the `&[u8]` entry points use), or for a slice from elsewhere, the
/// part is copied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a>(Option<&'a Bytes>);

impl<'a> Source<'a> {
    /// Every part copied.
    pub(crate) const COPY: Source<'static> = Source(None);

    /// Parts of `buffer` shared with it.
    pub(crate) fn of(buffer: &'a Bytes) -> Self {
        Self(Some(buffer))
    }

    /// `part` as `Bytes`: a view of the buffer when it lies inside it, else a copy.
    pub(crate) fn part(self, part: &[u8]) -> Bytes {
        if part.is_empty() {
            return Bytes::new();
        }
        if let Some(buffer) = self.0 {
            let start = (part.as_ptr() as usize).wrapping_sub(buffer.as_ptr() as usize);
            if start < buffer.len() && part.len() <= buffer.len() - start {
                return buffer.slice(start..start + part.len());
            }
        }
        Bytes::copy_from_slice(part)
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;

    #[test]
    fn parts_inside_the_buffer_are_views_others_copies() {
        let buffer = Bytes::from(vec![1u8, 2, 3, 4, 5]);
        let src = Source::of(&buffer);
        let view = src.part(&buffer[1..4]);
        assert_eq!(&view[..], &[2, 3, 4]);
        assert_eq!(view.as_ptr(), buffer[1..].as_ptr(), "a view, not a copy");
        assert_eq!(src.part(&buffer[..]).as_ptr(), buffer.as_ptr());
        assert_eq!(src.part(&buffer[5..]), Bytes::new());
        let elsewhere = [2u8, 3];
        let copy = src.part(&elsewhere);
        assert_eq!(&copy[..], &[2, 3]);
        assert_ne!(copy.as_ptr(), elsewhere.as_ptr());
        assert_ne!(Source::COPY.part(&buffer[1..3]).as_ptr(), buffer[1..].as_ptr());
    }
}
