//! Enable mode (spec §5): the signature wrapper that installs a validation in the same op, its
//! selector data, and the EIP-712 `Enable` digest the root validator signs.
//!
//! Wrapper: `hook(20) ‖ (bytes validatorData, bytes hookData, bytes selectorData,
//! bytes enableSig, bytes userOpSig)` with the tuple's offsets relative to byte 20, read as
//! Kernel does — `add(base, calldataload(head))`, i.e. modulo 2^256, at any position (nothing
//! assumes the canonical layout). Every field must lie inside the signature; on chain, Kernel
//! v3.0/v3.1 would read past it into the surrounding calldata, which is an error here.

use alloy_primitives::{Address, Bytes, FixedBytes, B256, U256};
use alloy_sol_types::{sol, Eip712Domain, SolStruct};
use serde::Serialize;

use super::abi::{Abi, Arith};
use super::ecdsa::{matching_scheme, HashScheme};
use super::multichain::{decode_multichain_signature, verify_merkle_proof, MultiChainSignature};
use super::signature::strip_replayable;
use super::{ser, DecodeError, Source};

sol! {
    /// The EIP-712 struct a root validator signs to enable a validation.
    struct Enable {
        bytes21 validationId;
        uint32 nonce;
        address hook;
        bytes validatorData;
        bytes hookData;
        bytes selectorData;
    }
}

/// `keccak("Enable(bytes21 validationId,uint32 nonce,address hook,bytes validatorData,bytes hookData,bytes selectorData)")`.
pub const ENABLE_TYPEHASH: B256 =
    alloy_primitives::b256!("b17ab1224aca0d4255ef8161acaf2ac121b8faa32a4b2258c912cc5f8308c505");

/// A Kernel v3 release (it fixes the EIP-712 domain version and the enable-nonce rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum KernelVersion {
    /// v3.0 (domain version "0.3.0-beta").
    #[serde(rename = "0.3.0")]
    V3_0,
    /// v3.1.
    #[serde(rename = "0.3.1")]
    V3_1,
    /// v3.2.
    #[serde(rename = "0.3.2")]
    V3_2,
    /// v3.3.
    #[serde(rename = "0.3.3")]
    V3_3,
}

impl KernelVersion {
    /// All v3 releases, oldest first.
    pub const ALL: [Self; 4] = [Self::V3_0, Self::V3_1, Self::V3_2, Self::V3_3];

    /// The EIP-712 domain version string.
    pub fn domain_version(self) -> &'static str {
        match self {
            Self::V3_0 => "0.3.0-beta",
            Self::V3_1 => "0.3.1",
            Self::V3_2 => "0.3.2",
            Self::V3_3 => "0.3.3",
        }
    }

    /// Parses "0.3.1", "v3.1", "3.1" and the like.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim_start_matches('v').trim_start_matches("0.");
        match s.trim_end_matches("-beta") {
            "3.0" | "3.0.0" => Some(Self::V3_0),
            "3.1" => Some(Self::V3_1),
            "3.2" => Some(Self::V3_2),
            "3.3" => Some(Self::V3_3),
            _ => None,
        }
    }

    /// The `nonce` Kernel puts in the digest: v3.3 uses `currentNonce + 1` when the validation
    /// is already installed at `currentNonce`, earlier releases always `currentNonce`.
    pub fn digest_nonce(self, current_nonce: u32, validation_nonce: u32) -> u32 {
        if self == Self::V3_3 && validation_nonce == current_nonce {
            current_nonce.wrapping_add(1)
        } else {
            current_nonce
        }
    }
}

/// The parts of an enable-mode signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnableData {
    /// Whether the v3.2+ replayable prefix was present (digest then uses chain id 0).
    pub replayable: bool,
    /// Execution hook of the new validation (0 = none).
    #[serde(serialize_with = "ser::address")]
    pub hook: Address,
    /// Validator install data (for a permission: [`super::permission`] data).
    pub validator_data: Bytes,
    /// Hook install data.
    pub hook_data: Bytes,
    /// Selector grant / fallback install data.
    pub selector_data: Bytes,
    /// The root validator's signature over the Enable digest.
    pub enable_sig: Bytes,
    /// The signature the new validation checks for this op.
    pub user_op_sig: Bytes,
}

/// Decodes an enable-mode signature (the fuzzing entry point for the wrapper).
pub fn decode_enable_signature(sig: &[u8]) -> Result<EnableData, DecodeError> {
    enable_signature_in(Source::COPY, sig)
}

/// [`decode_enable_signature`], the parts taken from `src`.
pub(crate) fn enable_signature_in(src: Source<'_>, sig: &[u8]) -> Result<EnableData, DecodeError> {
    let (replayable, sig) = strip_replayable(sig);
    let abi = Abi::new(sig, "enable signature");
    let hook = Address::from_slice(abi.slice(0, 20)?);
    let field = |k: usize| abi.bytes_at(20, 20 + 32 * k, Arith::Wrapping).map(|b| src.part(b));
    Ok(EnableData {
        replayable,
        hook,
        validator_data: field(0)?,
        hook_data: field(1)?,
        selector_data: field(2)?,
        enable_sig: field(3)?,
        user_op_sig: field(4)?,
    })
}

/// How a selector is routed when installed (`selectorInitData[0]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SelectorCallType {
    /// `0x00`: CALL the module (`onInstall(selectorInitData[1:])`).
    Call,
    /// `0xFF`: DELEGATECALL the module (no `onInstall`).
    #[serde(rename = "delegatecall")]
    DelegateCall,
}

/// A fallback selector installed along with the grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectorInstall {
    /// Fallback module.
    #[serde(serialize_with = "ser::address")]
    pub module: Address,
    /// Hook of the selector.
    #[serde(serialize_with = "ser::address")]
    pub hook: Address,
    /// How the module is called.
    pub call_type: SelectorCallType,
    /// `selectorInitData`.
    pub selector_init_data: Bytes,
    /// `hookInitData`.
    pub hook_init_data: Bytes,
    /// Third field, read on chain only for a `Call` module that is also an executor.
    pub executor_hook_data: Option<Bytes>,
}

/// Decoded selector data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectorData {
    /// The selector granted to the validation.
    pub selector: FixedBytes<4>,
    /// Fallback install (selector data of 44 bytes or more).
    pub install: Option<SelectorInstall>,
}

/// Decodes selector data (spec §5.3; the fuzzing entry point): exactly 4 bytes grant only,
/// 44 or more also install a fallback, anything else reverts on chain.
pub fn decode_selector_data(data: &[u8]) -> Result<SelectorData, DecodeError> {
    selector_data_in(Source::COPY, data)
}

/// [`decode_selector_data`], the parts taken from `src`.
pub(crate) fn selector_data_in(src: Source<'_>, data: &[u8]) -> Result<SelectorData, DecodeError> {
    let abi = Abi::new(data, "selector data");
    let selector = FixedBytes::from_slice(abi.slice(0, 4)?);
    match data.len() {
        4 => {
            return Ok(SelectorData {
                selector,
                install: None,
            })
        }
        5..=43 => {
            return Err(DecodeError::BadSize {
                what: "selector data",
                len: data.len(),
                expected: "4 or at least 44 bytes",
            })
        }
        _ => {}
    }
    let selector_init_data = abi.bytes_at(44, 44, Arith::Wrapping)?;
    let hook_init_data = abi.bytes_at(44, 76, Arith::Wrapping)?;
    let call_type = match selector_init_data.first() {
        Some(0x00) => SelectorCallType::Call,
        Some(0xFF) => SelectorCallType::DelegateCall,
        Some(_) => {
            return Err(DecodeError::InvalidValue {
                what: "selector data",
                at: 44,
                expected: "call type 0x00 or 0xff",
            })
        }
        None => {
            return Err(DecodeError::TooShort {
                what: "selectorInitData",
                len: 0,
                min: 1,
            })
        }
    };
    let executor_hook_data = match call_type {
        SelectorCallType::Call => abi.bytes_at(44, 108, Arith::Wrapping).ok().map(|b| src.part(b)),
        SelectorCallType::DelegateCall => None,
    };
    Ok(SelectorData {
        selector,
        install: Some(SelectorInstall {
            module: Address::from_slice(&data[4..24]),
            hook: Address::from_slice(&data[24..44]),
            call_type,
            selector_init_data: src.part(selector_init_data),
            hook_init_data: src.part(hook_init_data),
            executor_hook_data,
        }),
    })
}

/// Where and how an enable digest is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnableDomain {
    /// The account (`verifyingContract`).
    pub account: Address,
    /// Chain id (use 0 for replayable signatures).
    pub chain_id: u64,
    /// Kernel release.
    pub version: KernelVersion,
}

/// The EIP-712 `Enable` digest Kernel checks the root validator's signature against.
pub fn enable_digest(domain: &EnableDomain, validation_id: FixedBytes<21>, nonce: u32, data: &EnableData) -> B256 {
    let eip712 = Eip712Domain::new(
        Some("Kernel".into()),
        Some(domain.version.domain_version().into()),
        Some(U256::from(domain.chain_id)),
        Some(domain.account),
        None,
    );
    let s = Enable {
        validationId: validation_id,
        nonce,
        hook: data.hook,
        validatorData: data.validator_data.clone(),
        hookData: data.hook_data.clone(),
        selectorData: data.selector_data.clone(),
    };
    s.eip712_signing_hash(&eip712)
}

/// A successful match of an enable signature against an expected owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnableVerification {
    /// Kernel release whose domain made it match.
    pub version: KernelVersion,
    /// Digest nonce used.
    #[serde(serialize_with = "ser::decimal")]
    pub nonce: u32,
    /// Hash scheme of the ECDSA signature.
    pub scheme: HashScheme,
    /// The digest.
    pub digest: B256,
    /// Whether the signature was the multi-chain Merkle form.
    pub multichain: bool,
}

/// Tries every Kernel v3 release (and raw / EIP-191 hashing) to find one under which
/// `enable.enable_sig` is `expected_owner`'s approval of this enable data, for an ECDSA or
/// multi-chain ECDSA root validator. `current_nonce` is the account's `currentNonce()` (1 for an
/// account deployed by this op) and `validation_nonce` the enabled vId's `validationConfig.nonce`
/// (0 when not installed).
pub fn verify_enable(
    account: Address,
    chain_id: u64,
    validation_id: FixedBytes<21>,
    enable: &EnableData,
    current_nonce: u32,
    validation_nonce: u32,
    expected_owner: Address,
) -> Option<EnableVerification> {
    let form = decode_multichain_signature(&enable.enable_sig, false).ok()?;
    let chain_id = if enable.replayable { 0 } else { chain_id };
    KernelVersion::ALL.into_iter().find_map(|version| {
        let nonce = version.digest_nonce(current_nonce, validation_nonce);
        let digest = enable_digest(
            &EnableDomain {
                account,
                chain_id,
                version,
            },
            validation_id,
            nonce,
            enable,
        );
        let (scheme, multichain) = match &form {
            MultiChainSignature::Plain { signature } => (matching_scheme(&digest, signature, expected_owner)?, false),
            MultiChainSignature::Merkle {
                signature,
                merkle_root,
                proof,
            } => {
                if !verify_merkle_proof(digest, proof, *merkle_root) {
                    return None;
                }
                (matching_scheme(merkle_root, signature, expected_owner)?, true)
            }
            MultiChainSignature::Dummy { .. } => return None,
        };
        Some(EnableVerification {
            version,
            nonce,
            scheme,
            digest,
            multichain,
        })
    })
}
