//! Everything a Kernel UserOperation carries, decoded in one call.
//!
//! Each part (nonce, calls, initCode, signature) is decoded on its own; a part that fails is
//! reported in [`KernelDecoded::errors`] and the others are still decoded.
//!
//! The enable digest needs the chain id, the Kernel release and the account's `currentNonce`
//! ([`DecodeOptions`]). The release is taken from the options, else inferred from the initCode's
//! Kernel factory when the op deploys the account, else — when the root owner is known and the
//! signature is ECDSA — by trying every release ([`verify_enable`]). `currentNonce` defaults to
//! 1: `initialize` sets it to 1 and it only moves when the owner invalidates nonces. The root
//! owner is taken from the options, else from the initCode's `initialize` data.

use alloy_primitives::{Address, Bytes, FixedBytes, B256, U256};
use serde::{Serialize, Serializer};

use super::calls::{decode_calls_in, DecodedCalls, ExecCallType};
use super::ecdsa::{recover_matching, HashScheme};
use super::enable::{
    enable_digest, enable_signature_in, selector_data_in, verify_enable, EnableData, EnableDomain, KernelVersion,
    SelectorData,
};
use super::init::{decode_init_code, Deployment, RootKind, RootValidator};
use super::multichain::{
    approver, multichain_signature_in, verify_merkle_proof, MultiChainSignature, MULTICHAIN_ECDSA_VALIDATOR,
};
use super::nonce::{decode_nonce, KernelNonce, ValidationMode, ValidationType};
use super::permission::{permission_data_in, Permission};
use super::signature::{
    inner_permission_signature_in, inner_policy_signatures_in, strip_replayable, PermissionSignature, PolicyAssignment,
};
use super::stub::{detect_stub, StubKind};
use super::{ser, DecodeError, Source};

/// The `what` of the error reported when a Kernel release before v3.2 meets the replayable
/// prefix (it does not strip it, so the op cannot validate).
pub const REPLAYABLE_PREFIX: &str = "replayable signature prefix";

/// What `decode_kernel` cannot read from the op itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Chain id for the enable digest (`None`: no digest unless the signature is replayable).
    pub chain_id: Option<u64>,
    /// Kernel release of the account, if known.
    pub kernel_version: Option<KernelVersion>,
    /// `currentNonce()` of the account (`None`: 1, the value after `initialize`).
    pub current_nonce: Option<u32>,
    /// `validationConfig(vId).nonce` of the validation being enabled (`None`: 0, not installed).
    pub validation_nonce: Option<u32>,
    /// The root validator's owner, if known from state.
    pub root_owner: Option<Address>,
}

/// The enable part of an enable-mode op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnableInfo {
    /// The wrapper's parts.
    pub data: EnableData,
    /// The ValidationId being enabled.
    pub validation_id: Option<FixedBytes<21>>,
    /// For a validator vId: the validator with its install data.
    pub validator: Option<RootValidator>,
    /// The root validator, when the op deploys the account.
    pub root_validator: Option<RootValidator>,
    /// Whether the enable signature is the multi-chain Merkle form.
    pub multichain: bool,
    /// Its Merkle root.
    pub merkle_root: Option<B256>,
    /// Whether the Enable digest is a leaf under that root (when the digest is known).
    pub merkle_proof_valid: Option<bool>,
    /// Kernel release used for the digest.
    pub kernel_version: Option<KernelVersion>,
    /// Digest nonce used.
    #[serde(serialize_with = "ser::opt_decimal")]
    pub digest_nonce: Option<u32>,
    /// The Enable digest.
    pub digest: Option<B256>,
    /// Address recovered from the enable signature (over the digest, or over the Merkle root).
    #[serde(serialize_with = "ser::opt_address")]
    pub approver: Option<Address>,
    /// Hash scheme the approver was recovered with.
    pub approver_scheme: Option<HashScheme>,
    /// Whether the approver is the known root owner (and, for the Merkle form, the digest is
    /// under the signed root); `None` when either cannot be told.
    pub approved: Option<bool>,
    /// The root owner the approval was verified against: the caller's (registry, node) or the
    /// deploying op's own.
    pub owner: Option<Address>,
    /// Whether [`KernelDecoded::verify_approval`] has run.
    #[serde(skip)]
    pub approval_checked: bool,
}

/// A part that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartError {
    /// Which part: `nonce`, `callData`, `initCode`, `signature`, `enable`, `permission`,
    /// `selectorData`, `policySignatures`, `approval`.
    pub part: &'static str,
    /// What was wrong.
    pub error: DecodeError,
}

impl Serialize for PartError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("PartError", 2)?;
        st.serialize_field("part", self.part)?;
        st.serialize_field("message", &self.error.to_string())?;
        st.end()
    }
}

/// Everything decoded from a Kernel UserOperation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelDecoded {
    /// The account.
    #[serde(serialize_with = "ser::address")]
    pub sender: Address,
    /// Kernel nonce.
    pub nonce: Option<KernelNonce>,
    /// Single / batch / delegatecall / static.
    pub call_type: Option<ExecCallType>,
    /// The calls.
    pub calls: Option<DecodedCalls>,
    /// What the initCode deploys.
    pub deployment: Option<Deployment>,
    /// Whether the signature carries the v3.2+ replayable prefix.
    pub replayable: bool,
    /// A recognised SDK stub signature (estimation only).
    pub stub: Option<StubKind>,
    /// The permission being enabled (enable mode, permission vId).
    pub permission: Option<Permission>,
    /// The enable wrapper and its approval (boxed: it is most of the struct's size, and only
    /// enable-mode ops have it).
    pub enable: Option<Box<EnableInfo>>,
    /// Selector data of the enable wrapper.
    pub selector_data: Option<SelectorData>,
    /// The permission user-op signature (permission vId).
    pub permission_signature: Option<PermissionSignature>,
    /// Per-policy signature data (when the permission's policies are known).
    pub policy_signatures: Option<PolicyAssignment>,
    /// The user-op signature of a multi-chain ECDSA validation (validator vId, or root when the
    /// initCode installs it as root).
    pub multichain_signature: Option<MultiChainSignature>,
    /// Parts that could not be decoded.
    pub errors: Vec<PartError>,
}

/// Decodes a Kernel UserOperation's parts with default [`DecodeOptions`]: no chain id, so the
/// Enable digest is only computed for replayable signatures (the multi-chain Merkle approver
/// is still recovered); the root owner and release come from the initCode when it deploys.
pub fn decode_kernel(
    sender: Address,
    nonce: U256,
    call_data: &Bytes,
    signature: &Bytes,
    init_code: &[u8],
) -> KernelDecoded {
    decode_kernel_with(
        sender,
        nonce,
        call_data,
        signature,
        init_code,
        &DecodeOptions::default(),
    )
}

/// Decodes a Kernel UserOperation's parts, with what the op itself does not carry in `opts`,
/// and verifies an enable-mode op's approval ([`KernelDecoded::verify_approval`]).
pub fn decode_kernel_with(
    sender: Address,
    nonce: U256,
    call_data: &Bytes,
    signature: &Bytes,
    init_code: &[u8],
    opts: &DecodeOptions,
) -> KernelDecoded {
    let mut out = decode_kernel_structure(sender, nonce, call_data, signature, init_code, opts);
    out.verify_approval(opts);
    out
}

/// Decodes a Kernel UserOperation's parts without verifying an enable-mode op's approval: the
/// Enable digest, the Merkle proof check and the approver are left unset until
/// [`KernelDecoded::verify_approval`] runs. Everything else [`decode_kernel_with`] reports is
/// decoded, the Merkle root of a multi-chain approval included.
pub fn decode_kernel_structure(
    sender: Address,
    nonce: U256,
    call_data: &Bytes,
    signature: &Bytes,
    init_code: &[u8],
    opts: &DecodeOptions,
) -> KernelDecoded {
    let mut errors = Errors::default();
    let nonce = errors.ok("nonce", decode_nonce(nonce));
    let calls = errors.ok("callData", decode_calls_in(Source::of(call_data), call_data));
    let deployment = errors.ok("initCode", decode_init_code(init_code)).flatten();
    let (replayable, inner) = strip_replayable(signature);
    let mut out = KernelDecoded {
        sender,
        call_type: calls.as_ref().and_then(|c| c.call_type),
        calls,
        deployment,
        replayable,
        stub: None,
        permission: None,
        enable: None,
        selector_data: None,
        permission_signature: None,
        policy_signatures: None,
        multichain_signature: None,
        errors: Vec::new(),
        nonce,
    };
    let Some(n) = out.nonce.clone() else {
        out.errors = errors.0;
        return out;
    };
    let version = opts
        .kernel_version
        .or_else(|| out.deployment.as_ref().and_then(|d| d.kernel_version));
    if replayable && version.is_some_and(|v| v < KernelVersion::V3_2) {
        // Kernel v3.0/v3.1 do not strip the prefix: they read it as signature bytes, which
        // fails every path; nothing further is decoded.
        errors.0.push(PartError {
            part: "signature",
            error: DecodeError::BadSize {
                what: REPLAYABLE_PREFIX,
                len: 32,
                expected: "only Kernel v3.2 and later strip it",
            },
        });
        out.errors = errors.0;
        return out;
    }
    // Every byte string decoded below is a view of the signature's buffer, not a copy.
    let src = Source::of(signature);
    // In enable mode the user-op signature is the wrapper's last field (a cheap `Bytes` clone).
    let mut user_op_sig: Option<Bytes> = None;
    if n.mode == ValidationMode::Enable {
        if let Some(enable) = errors.ok("enable", enable_signature_in(src, signature)) {
            user_op_sig = Some(enable.user_op_sig.clone());
            out.selector_data = errors.ok("selectorData", selector_data_in(src, &enable.selector_data));
            let mut validator = None;
            match n.validation_type {
                ValidationType::Permission => {
                    out.permission = errors.ok("permission", permission_data_in(src, &enable.validator_data));
                }
                ValidationType::Validator => {
                    let v = n.validator.unwrap_or_default();
                    validator = errors.ok("validator", RootValidator::validator(v, &enable.validator_data));
                }
                ValidationType::Root => {}
            }
            out.enable = Some(Box::new(enable_info(
                src,
                &n,
                enable,
                validator,
                out.deployment.as_ref(),
                opts,
            )));
        }
    }
    let user_op_sig: &[u8] = user_op_sig.as_ref().map_or(inner, |b| b.as_ref());
    out.stub = detect_stub(user_op_sig);
    if n.validation_type == ValidationType::Permission {
        out.permission_signature = errors.ok("signature", inner_permission_signature_in(src, user_op_sig));
        if let Some(p) = &out.permission {
            out.policy_signatures = errors.ok(
                "policySignatures",
                inner_policy_signatures_in(src, user_op_sig, p.policies.len()),
            );
        }
    }
    let multichain = match n.validation_type {
        ValidationType::Validator => n.validator == Some(MULTICHAIN_ECDSA_VALIDATOR),
        ValidationType::Root => out
            .deployment
            .as_ref()
            .and_then(|d| d.root_validator.as_ref())
            .is_some_and(|r| r.kind == RootKind::MultiChainEcdsa),
        ValidationType::Permission => false,
    };
    if multichain {
        out.multichain_signature = errors.ok("signature", multichain_signature_in(src, user_op_sig, true));
    }
    out.errors = errors.0;
    out
}

/// Collects the errors of the parts that failed.
#[derive(Default)]
struct Errors(Vec<PartError>);

impl Errors {
    fn ok<T>(&mut self, part: &'static str, r: Result<T, DecodeError>) -> Option<T> {
        r.map_err(|error| self.0.push(PartError { part, error })).ok()
    }
}

/// The enable part as read from the op: everything but the approval.
fn enable_info(
    src: Source<'_>,
    n: &KernelNonce,
    data: EnableData,
    validator: Option<RootValidator>,
    deployment: Option<&Deployment>,
    opts: &DecodeOptions,
) -> EnableInfo {
    let root = deployment.and_then(|d| d.root_validator.clone());
    let version = opts
        .kernel_version
        .or_else(|| deployment.and_then(|d| d.kernel_version));
    let digest_nonce =
        version.map(|v| v.digest_nonce(opts.current_nonce.unwrap_or(1), opts.validation_nonce.unwrap_or(0)));
    let merkle_root = match multichain_signature_in(src, &data.enable_sig, false) {
        Ok(MultiChainSignature::Merkle { merkle_root, .. }) => Some(merkle_root),
        _ => None,
    };
    EnableInfo {
        validation_id: n.validation_id,
        validator,
        root_validator: root,
        multichain: merkle_root.is_some(),
        merkle_root,
        merkle_proof_valid: None,
        kernel_version: version,
        digest_nonce,
        digest: None,
        approver: None,
        approver_scheme: None,
        approved: None,
        owner: None,
        approval_checked: false,
        data,
    }
}

impl KernelDecoded {
    /// Why `part` (`nonce`, `callData`, `enable`, `approval`, …) could not be decoded, if it could
    /// not.
    pub fn part_error(&self, part: &str) -> Option<&DecodeError> {
        self.errors.iter().find(|e| e.part == part).map(|e| &e.error)
    }

    /// Verifies an enable-mode op's approval: computes the Enable digest, checks a multi-chain
    /// Merkle proof, recovers the approver and compares it with the root owner, filling the
    /// approval fields of [`KernelDecoded::enable`]. A failure to recover is reported under the
    /// `approval` part. Does nothing for other ops, or when called again.
    ///
    /// This is the expensive part of decoding an enable-mode op — one secp256k1 recovery, or
    /// up to eight when the Kernel release must be inferred — so [`decode_kernel_structure`]
    /// leaves it out and callers that do not need the approval skip it.
    pub fn verify_approval(&mut self, opts: &DecodeOptions) {
        let sender = self.sender;
        let Some(info) = self.enable.as_mut() else {
            return;
        };
        if info.approval_checked {
            return;
        }
        info.approval_checked = true;
        let root = info.root_validator.as_ref();
        let owner = opts.root_owner.or_else(|| root.and_then(|r| r.owner));
        info.owner = owner;
        let current = opts.current_nonce.unwrap_or(1);
        let vnonce = opts.validation_nonce.unwrap_or(0);
        let chain_id = if info.data.replayable { Some(0) } else { opts.chain_id };
        if let (None, Some(chain), Some(owner), Some(vid)) = (info.kernel_version, chain_id, owner, info.validation_id)
        {
            if let Some(found) = verify_enable(sender, chain, vid, &info.data, current, vnonce, owner) {
                info.kernel_version = Some(found.version);
                info.digest_nonce = Some(found.nonce);
            }
        }
        info.digest = match (info.kernel_version, chain_id, info.validation_id, info.digest_nonce) {
            (Some(version), Some(chain_id), Some(vid), Some(nonce)) => Some(enable_digest(
                &EnableDomain {
                    account: sender,
                    chain_id,
                    version,
                },
                vid,
                nonce,
                &info.data,
            )),
            _ => None,
        };
        let digest = info.digest;
        let found = if root.is_some_and(|r| r.kind == RootKind::Permission) {
            permission_root_approver(&info.data.enable_sig, digest, owner)
        } else {
            multichain_signature_in(Source::of(&info.data.enable_sig), &info.data.enable_sig, false).and_then(|form| {
                if let MultiChainSignature::Merkle { merkle_root, proof, .. } = &form {
                    info.merkle_proof_valid = digest.map(|d| verify_merkle_proof(d, proof, *merkle_root));
                }
                approver(&form, digest, owner)
            })
        };
        match found {
            Ok(Some((addr, scheme))) => {
                info.approver = Some(addr);
                info.approver_scheme = Some(scheme);
                info.approved = match (owner, info.multichain, info.merkle_proof_valid) {
                    (None, ..) => None,
                    // A root signature proves nothing about this op until the proof is checked.
                    (Some(_), true, None) => None,
                    (Some(o), true, Some(valid)) => Some(valid && o == addr),
                    (Some(o), false, _) => Some(o == addr),
                };
            }
            Ok(None) => {}
            Err(error) => {
                // The root validator reverts on a signature it cannot recover, so with the
                // owner known the approval has failed; without it the chain decides.
                if owner.is_some() {
                    info.approved = Some(false);
                }
                self.errors.push(PartError {
                    part: "approval",
                    error,
                });
            }
        }
    }
}

/// A permission root signs enable data with the permission-signature layout; with an ECDSA
/// signer the approver is the signer signature's ECDSA signer (owner = the session key).
fn permission_root_approver(
    sig: &Bytes,
    digest: Option<B256>,
    owner: Option<Address>,
) -> Result<Option<(Address, HashScheme)>, DecodeError> {
    let Some(digest) = digest else {
        return Ok(None);
    };
    let split = inner_permission_signature_in(Source::of(sig), sig)?;
    recover_matching(&digest, &split.signer_signature, owner, HashScheme::Raw).map(Some)
}
