//! Kernel decoding: everything a ZeroDev Kernel (v3, and the v2 / SimpleAccount call formats)
//! UserOperation carries, read from raw bytes exactly as the contracts read them.
//!
//! One module per concern, each with a single `&[u8]` entry point (fuzzing targets call these):
//!
//! - [`nonce`]: mode, validation type, validator / permission id, lane, sequence
//!   ([`decode_nonce_bytes`]).
//! - [`calls`]: `execute` single / batch / delegatecall / static, the `executeUserOp` prefix,
//!   Kernel v2 and SimpleAccount entry points ([`decode_calls`]).
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
