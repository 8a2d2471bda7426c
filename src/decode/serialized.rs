//! Serialized session accounts: the base64 blobs `serializePermissionAccount` (`@zerodev/permissions`
//! 5.x) hands to whoever will use a session key (spec §5.4).
//!
//! The blob is `base64(JSON)` with
//!
//! ```text
//! { permissionParams: { policies: [ { policyParams: { type, policyAddress?, policyFlag, …type fields } } ],
//!                       permissionId },
//!   action: { selector, address, hook? }, validityData: { validAfter, validUntil },
//!   accountParams: { initCode, accountAddress },
//!   enableSignature?, privateKey?, eip7702Auth?, isPreInstalled }
//! ```
//!
//! What it does **not** carry: the session signer. Neither the signer contract nor the session key
//! address is written; the SDK re-creates the permission from a signer supplied on deserialisation
//! (or from `privateKey`, when the serialiser was given one — this module never reads that value,
//! it only records that it is there). The permission-level flag is not written either; the SDK
//! re-creates the permission with `0x0000`. `accountParams.initCode` is the factory *call data*
//! (`deployWithFactory(…)` or `createAccount(…)`), without the factory address.
//!
//! So the signer is learned elsewhere: [`SerializedPermission::bind_signer`] checks a candidate
//! (typically the address recovered from the first op's signer signature) against the SDK's
//! default permission-id derivation, and [`SerializedPermission::verify_enable_signature`] checks
//! that the root owner's enable signature covers the permission with that signer. A permission
//! pre-installed through the initCode's `initConfig` carries its signer in the initCode
//! ([`SerializedPermission::preinstalled_permission`]).
//!
//! Policies are rebuilt into install entries exactly as the SDK encodes them from these
//! parameters (`toCallPolicy`, `toGasPolicy`, …), including its quirks: addresses that decide an
//! encoding (CallPolicy v0.0.1, the two rate-limit contracts) are compared as the exact strings
//! the SDK compares, and rate-limit numbers must be JSON integers. Parsing never panics, bounds
//! every allocation ([`MAX_SERIALIZED_LEN`], [`MAX_POLICIES`], [`MAX_CALL_PERMISSIONS`],
//! [`MAX_RULES`], [`MAX_RULE_PARAMS`], [`MAX_ALLOWED_CALLERS`]) and names the JSON path of
//! whatever it refuses.

use alloy_primitives::{aliases::U48, hex, keccak256, Address, Bytes, FixedBytes, B256, U256};
use alloy_sol_types::SolValue;
use serde::Serialize;
use serde_json::{Map, Value};

use super::abi::{selector_of, Abi, Arith};
use super::enable::{verify_enable, EnableData, EnableVerification, KernelVersion};
use super::init::{decode_init_code, Deployment, RootKind, CREATE_ACCOUNT, DEPLOY_WITH_FACTORY, META_FACTORY};
use super::multichain::decode_multichain_signature;
use super::nonce::permission_validation_id;
use super::permission::{decode_permission_data, Permission, ECDSA_SIGNER};
use super::policy::{
    Policy, CALL_POLICY_V0_0_1, CALL_POLICY_V0_0_2, CALL_POLICY_V0_0_3, CALL_POLICY_V0_0_4, CALL_POLICY_V0_0_5,
    GAS_POLICY, RATE_LIMIT_POLICY, RATE_LIMIT_RESET_POLICY, SIGNATURE_POLICY, SUDO_POLICY, TIMESTAMP_POLICY,
};
use super::{decode_policy, ecdsa::HashScheme, ser, DecodeError};

/// Largest serialized account accepted, in bytes of base64 text.
pub const MAX_SERIALIZED_LEN: usize = 1 << 20;
/// Most policies accepted: Kernel takes at most 254 entries, one of which is the signer.
pub const MAX_POLICIES: usize = 253;
/// Most permissions accepted in one CallPolicy.
pub const MAX_CALL_PERMISSIONS: usize = 256;
/// Most rules accepted in one CallPolicy permission.
pub const MAX_RULES: usize = 64;
/// Most reference words accepted in one rule (`ONE_OF` lists).
pub const MAX_RULE_PARAMS: usize = 256;
/// Most callers accepted in one signature-caller policy.
pub const MAX_ALLOWED_CALLERS: usize = 256;

/// The permission flag the SDK re-creates a deserialized permission with (`FOR_ALL_VALIDATION`).
pub const SDK_PERMISSION_FLAG: [u8; 2] = [0x00, 0x00];
/// Kernel `execute(bytes32,bytes)`, the SDK's default action selector.
pub const EXECUTE_SELECTOR: [u8; 4] = [0xe9, 0xae, 0x5c, 0x53];
/// Kernel v3.3 `installValidations(bytes21[],(uint32,address)[],bytes[],bytes[])`.
pub const INSTALL_VALIDATIONS: [u8; 4] = [0x91, 0x98, 0xbd, 0xf5];

/// The CallPolicy v0.0.1 address as the SDK spells it; it picks the single-`param` layout only
/// when the policy address is this exact string.
const CALL_POLICY_V0_0_1_SDK: &str = "0xe4Fec84B7B002273ecC86baa65a831ddB92d30a8";
/// RateLimitPolicy as the SDK spells it (compared as a string).
const RATE_LIMIT_POLICY_SDK: &str = "0xf63d4139B25c836334edD76641356c6b74C86873";
/// RateLimitPolicy with reset as the SDK spells it (compared as a string).
const RATE_LIMIT_RESET_POLICY_SDK: &str = "0x6a06358e6b283921deceabe7e8a3741d506cca9b";
/// The multi-chain ECDSA validator's owner check is the same as the ECDSA validator's.
const ECDSA_ROOTS: [RootKind; 2] = [RootKind::Ecdsa, RootKind::MultiChainEcdsa];
/// Placeholder factory for a `createAccount` initCode, whose factory the blob does not name.
const UNKNOWN_FACTORY: Address = Address::ZERO;

/// Why a serialized permission account was refused, or why its enable signature does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerializedError {
    /// The input is larger than [`MAX_SERIALIZED_LEN`].
    #[error("input: {len} bytes, at most {max} accepted")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not base64 (standard alphabet; padding optional, whitespace ignored).
    #[error("input: not base64: {0}")]
    Base64(String),
    /// The decoded bytes are not a JSON document.
    #[error("input: not JSON: {0}")]
    Json(String),
    /// A field is missing or does not hold what the SDK would accept there.
    #[error("{path}: {problem}")]
    Field {
        /// JSON path of the field (`permissionParams.policies[1].policyParams.allowed`).
        path: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn field_err(path: &str, problem: impl Into<String>) -> SerializedError {
    SerializedError::Field {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The SDK's policy `type` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SerializedPolicyType {
    /// `toCallPolicy`.
    Call,
    /// `toGasPolicy`.
    Gas,
    /// `toRateLimitPolicy` (both the plain and the reset contract; the address tells which).
    RateLimit,
    /// `toTimestampPolicy`.
    Timestamp,
    /// `toSudoPolicy`.
    Sudo,
    /// `toSignatureCallerPolicy`.
    SignatureCaller,
}

/// One policy as Kernel installs it: the permission entry `flag(2) ‖ address(20) ‖ data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEntry {
    /// The SDK type it was serialized as.
    #[serde(rename = "type")]
    pub policy_type: SerializedPolicyType,
    /// Pass flag.
    pub flag: FixedBytes<2>,
    /// Policy contract.
    #[serde(serialize_with = "ser::address")]
    pub address: Address,
    /// Install payload (what the policy's `onInstall` receives after the permission id).
    pub data: Bytes,
}

impl PolicyEntry {
    /// `flag ‖ address` (the SDK's `getPolicyInfoInBytes`, Kernel's `bytes22` policy data).
    pub fn policy_info(&self) -> [u8; 22] {
        let mut out = [0u8; 22];
        out[..2].copy_from_slice(self.flag.as_slice());
        out[2..].copy_from_slice(self.address.as_slice());
        out
    }

    /// The permission entry `flag ‖ address ‖ data`.
    pub fn entry(&self) -> Vec<u8> {
        [&self.policy_info()[..], &self.data[..]].concat()
    }

    /// The entry parsed like any installed policy ([`decode_policy`]).
    pub fn decode(&self) -> Policy {
        decode_policy(self.address, self.flag, &self.data)
    }
}

/// The selector the permission is granted and its fallback routing (`action`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionAction {
    /// Selector granted to the permission (default `execute`).
    pub selector: FixedBytes<4>,
    /// Fallback module (zero for `execute`).
    #[serde(serialize_with = "ser::address")]
    pub address: Address,
    /// Selector hook (Kernel v3.0 with a non-default action: the OnlyEntryPoint hook).
    #[serde(serialize_with = "ser::opt_address")]
    pub hook: Option<Address>,
}

/// `validityData` (used by Kernel v2 enable data only; recorded as given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidityData {
    /// Valid after (unix seconds).
    #[serde(serialize_with = "ser::decimal")]
    pub valid_after: u64,
    /// Valid until (unix seconds, 0 = none).
    #[serde(serialize_with = "ser::decimal")]
    pub valid_until: u64,
}

/// A parsed serialized permission account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SerializedPermission {
    /// The account (`accountParams.accountAddress`).
    #[serde(serialize_with = "ser::address")]
    pub account: Address,
    /// The permission id (`permissionParams.permissionId`).
    pub permission_id: FixedBytes<4>,
    /// Permission flag: not serialized, the SDK's default [`SDK_PERMISSION_FLAG`].
    pub permission_flag: FixedBytes<2>,
    /// Policies in order, as install entries.
    pub policies: Vec<PolicyEntry>,
    /// The selector grant.
    pub action: PermissionAction,
    /// `validityData`.
    pub validity: ValidityData,
    /// `accountParams.initCode`: the factory call data (no factory address); empty for a
    /// deployed-by-7702 account.
    pub init_code: Bytes,
    /// The root validator's signature over the Enable digest (absent when pre-installed).
    pub enable_signature: Option<Bytes>,
    /// Whether the permission is installed by the initCode's `initConfig` instead of enable mode.
    pub is_pre_installed: bool,
    /// Whether the blob carries the session key's private key (the blob is then a secret).
    pub has_private_key: bool,
    /// Whether the blob carries an EIP-7702 authorization.
    pub has_eip7702_auth: bool,
}

/// A successful enable-signature check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnableApproval {
    /// Who approved: the root owner (or the account itself for an EIP-7702 root).
    #[serde(serialize_with = "ser::address")]
    pub approver: Address,
    /// The root validation that approved.
    pub root: EnableRoot,
    /// Kernel release, digest nonce, hash scheme, digest and whether it was the Merkle form.
    pub verification: EnableVerification,
}

/// Which root validation signs the enable data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnableRoot {
    /// The ECDSA validator.
    Ecdsa,
    /// The multi-chain ECDSA validator (plain or Merkle form).
    MultiChainEcdsa,
    /// A Kernel v3.3 EIP-7702 account: the account's own key, raw digest.
    Eip7702,
    /// An owner given by the caller ([`EnableContext::root_owner`]).
    Given,
}

/// What an enable-signature check needs beyond the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnableContext {
    /// Chain id of the EIP-712 domain.
    pub chain_id: u64,
    /// Signer contract of the permission.
    pub signer_contract: Address,
    /// Signer install data (ECDSA: the 20-byte session key).
    pub signer_data: Bytes,
    /// The account's `currentNonce()`; 1 for an account not deployed yet (the SDK signs with 1).
    pub current_nonce: u32,
    /// `validationConfig(vId).nonce` of the permission; 0 when not installed.
    pub validation_nonce: u32,
    /// The root owner, when known from chain state; otherwise taken from the initCode.
    pub root_owner: Option<Address>,
    /// The Kernel release, when known; otherwise from the initCode's factory, else every release
    /// is tried.
    pub kernel_version: Option<KernelVersion>,
}

impl EnableContext {
    /// An ECDSA session key on `chain_id`, account not yet deployed.
    pub fn new(chain_id: u64, session_key: Address) -> Self {
        Self {
            chain_id,
            signer_contract: ECDSA_SIGNER,
            signer_data: Bytes::copy_from_slice(session_key.as_slice()),
            current_nonce: 1,
            validation_nonce: 0,
            root_owner: None,
            kernel_version: None,
        }
    }
}

/// `abi.encode(bytes[] entries)`: the policies' entries, then the signer entry
/// `permissionFlag ‖ signerContract ‖ signerData` (spec §4.2; the SDK's `getEnableData`).
pub fn validator_data(
    policies: &[PolicyEntry],
    signer_contract: Address,
    signer_data: &[u8],
    permission_flag: [u8; 2],
) -> Bytes {
    let mut entries: Vec<Bytes> = policies.iter().map(|p| Bytes::from(p.entry())).collect();
    entries.push(Bytes::from(
        [&permission_flag[..], signer_contract.as_slice(), signer_data].concat(),
    ));
    Bytes::from(entries.abi_encode())
}

/// The SDK's default permission id (`toPermissionValidator.getPermissionId`):
/// `keccak(abi.encode(bytes[] [policyId, permissionFlag, signerId]))[0:4]` with
/// `policyId = abi.encode(bytes[] [flag_i ‖ policy_i ‖ data_i …])` and
/// `signerId = abi.encode(bytes (signerContract ‖ signerData))`.
pub fn derive_permission_id(
    policies: &[PolicyEntry],
    signer_contract: Address,
    signer_data: &[u8],
    permission_flag: [u8; 2],
) -> FixedBytes<4> {
    let entries: Vec<Bytes> = policies.iter().map(|p| Bytes::from(p.entry())).collect();
    let policy_id = Bytes::from(entries.abi_encode());
    let signer_id = Bytes::from(Bytes::from([signer_contract.as_slice(), signer_data].concat()).abi_encode());
    let outer = vec![policy_id, Bytes::copy_from_slice(&permission_flag), signer_id].abi_encode();
    FixedBytes::from_slice(&keccak256(outer)[..4])
}

/// The SDK's selector data for an action: `selector ‖ module ‖ hook ‖ abi.encode(bytes 0xff,
/// bytes 0x0000)` (`getPluginsEnableTypedData`).
pub fn action_selector_data(action: &PermissionAction) -> Bytes {
    let tail = (Bytes::from_static(&[0xff]), Bytes::from_static(&[0x00, 0x00])).abi_encode_params();
    Bytes::from(
        [
            action.selector.as_slice(),
            action.address.as_slice(),
            action.hook.unwrap_or_default().as_slice(),
            &tail,
        ]
        .concat(),
    )
}

impl SerializedPermission {
    /// The permission's ValidationId `0x02 ‖ pid ‖ 0^16`.
    pub fn validation_id(&self) -> FixedBytes<21> {
        permission_validation_id(self.permission_id)
    }

    /// The validator data (enable data) for a given signer.
    pub fn validator_data_for(&self, signer_contract: Address, signer_data: &[u8]) -> Bytes {
        validator_data(&self.policies, signer_contract, signer_data, self.permission_flag.0)
    }

    /// The validator data for an ECDSA session key.
    pub fn validator_data_with_key(&self, session_key: Address) -> Bytes {
        self.validator_data_for(ECDSA_SIGNER, session_key.as_slice())
    }

    /// The SDK default permission id these policies would have with a given signer.
    pub fn derive_id_for(&self, signer_contract: Address, signer_data: &[u8]) -> FixedBytes<4> {
        derive_permission_id(&self.policies, signer_contract, signer_data, self.permission_flag.0)
    }

    /// Whether `candidate`, as an ECDSA session key, gives the serialized permission id under the
    /// SDK's default derivation. A permission created with an explicit id never binds this way;
    /// [`Self::verify_enable_signature`] binds through the root's signature instead.
    pub fn bind_signer(&self, candidate: Address) -> bool {
        self.derive_id_for(ECDSA_SIGNER, candidate.as_slice()) == self.permission_id
    }

    /// The permission with an ECDSA session key, decoded from the rebuilt validator data (so it
    /// reads exactly like an installed one). Fails only for more than [`MAX_POLICIES`] policies.
    pub fn permission_with_signer(&self, session_key: Address) -> Result<Permission, DecodeError> {
        decode_permission_data(&self.validator_data_with_key(session_key))
    }

    /// The selector data the SDK puts in the enable data.
    pub fn selector_data(&self) -> Bytes {
        action_selector_data(&self.action)
    }

    /// The enable wrapper's parts the Enable digest covers, for a given signer (hook none, hook
    /// data empty, as the SDK sends them; no user-op signature).
    pub fn enable_data(&self, signer_contract: Address, signer_data: &[u8]) -> EnableData {
        EnableData {
            replayable: false,
            hook: Address::ZERO,
            validator_data: self.validator_data_for(signer_contract, signer_data),
            hook_data: Bytes::new(),
            selector_data: self.selector_data(),
            enable_sig: self.enable_signature.clone().unwrap_or_default(),
            user_op_sig: Bytes::new(),
        }
    }

    /// What the initCode deploys. The blob holds only the factory call: `deployWithFactory` is
    /// the meta factory's; for `createAccount` the Kernel factory is not known and
    /// [`Deployment::factory`] is zero (the release then comes from the `initialize` selector
    /// alone). Anything else is read as a full `factory ‖ data` initCode. `None` when empty.
    pub fn deployment(&self) -> Result<Option<Deployment>, DecodeError> {
        let data = &self.init_code[..];
        match selector_of(data).map(|s| s.0) {
            None if data.is_empty() => Ok(None),
            Some(DEPLOY_WITH_FACTORY) => decode_init_code(&[META_FACTORY.as_slice(), data].concat()),
            Some(CREATE_ACCOUNT) => {
                let mut d = decode_init_code(&[UNKNOWN_FACTORY.as_slice(), data].concat())?;
                if let Some(d) = d.as_mut() {
                    d.kernel_factory = None;
                }
                Ok(d)
            }
            _ => decode_init_code(data),
        }
    }

    /// The permission the initCode's `initConfig` installs under this permission id
    /// (`installValidations`, the SDK's `toInitConfig` for pre-installed permissions), with its
    /// signer; `None` when the initCode installs none.
    pub fn preinstalled_permission(&self) -> Result<Option<Permission>, DecodeError> {
        let Some(deployment) = self.deployment()? else {
            return Ok(None);
        };
        let vid = self.validation_id();
        for call in &deployment.init_config {
            if let Some(data) = installed_validation_data(call, vid)? {
                return decode_permission_data(data).map(Some);
            }
        }
        Ok(None)
    }

    /// Checks the enable signature for an ECDSA session key on `chain_id`, for an account the
    /// initCode deploys (`currentNonce` 1). `None` when there is nothing to check against: no
    /// enable signature, or a root the blob does not tell (empty or unrecognised initCode, a
    /// permission or unknown validator root).
    pub fn verify_enable_signature(
        &self,
        chain_id: u64,
        session_key: Address,
    ) -> Option<Result<EnableApproval, SerializedError>> {
        self.verify_enable_signature_with(&EnableContext::new(chain_id, session_key))
    }

    /// Checks the enable signature with explicit context (see [`EnableContext`]). The ECDSA and
    /// multi-chain ECDSA validators accept a raw or EIP-191 signature over the digest; the
    /// multi-chain one also the Merkle form (a signature over a root with the digest's proof,
    /// `serializeMultiChainPermissionAccounts`).
    pub fn verify_enable_signature_with(&self, ctx: &EnableContext) -> Option<Result<EnableApproval, SerializedError>> {
        let enable_sig = self.enable_signature.as_ref()?;
        let deployment = match self.deployment() {
            Ok(d) => d,
            // The initCode is only needed for what the context does not give.
            Err(_) if ctx.root_owner.is_some() && ctx.kernel_version.is_some() => None,
            Err(e) => return Some(Err(field_err("accountParams.initCode", e.to_string()))),
        };
        let root = deployment.as_ref().and_then(|d| d.root_validator.as_ref());
        let (owner, kind) = match (ctx.root_owner, root) {
            (Some(owner), _) => (owner, EnableRoot::Given),
            (None, Some(r)) if ECDSA_ROOTS.contains(&r.kind) => {
                let kind = match r.kind {
                    RootKind::Ecdsa => EnableRoot::Ecdsa,
                    _ => EnableRoot::MultiChainEcdsa,
                };
                (r.owner?, kind)
            }
            (None, None) if deployment.is_none() && self.has_eip7702_auth => (self.account, EnableRoot::Eip7702),
            _ => return None,
        };
        let version = ctx
            .kernel_version
            .or_else(|| deployment.as_ref().and_then(|d| d.kernel_version))
            .or((kind == EnableRoot::Eip7702).then_some(KernelVersion::V3_3));
        if let Err(e) = decode_multichain_signature(enable_sig, false) {
            return Some(Err(field_err("enableSignature", e.to_string())));
        }
        let data = self.enable_data(ctx.signer_contract, &ctx.signer_data);
        let found = verify_enable(
            self.account,
            ctx.chain_id,
            self.validation_id(),
            &data,
            ctx.current_nonce,
            ctx.validation_nonce,
            owner,
        )
        .filter(|v| version.is_none_or(|want| v.version == want))
        // Only the multi-chain validator reads the Merkle form (an owner given by the caller may
        // be either), and Kernel's 7702 root takes the raw digest only.
        .filter(|v| !v.multichain || matches!(kind, EnableRoot::MultiChainEcdsa | EnableRoot::Given))
        .filter(|v| kind != EnableRoot::Eip7702 || v.scheme == HashScheme::Raw);
        Some(match found {
            Some(verification) => Ok(EnableApproval {
                approver: owner,
                root: kind,
                verification,
            }),
            None => Err(field_err(
                "enableSignature",
                format!(
                    "not {owner}'s approval of this permission on chain {} ({})",
                    ctx.chain_id,
                    version.map_or("any Kernel v3 release".to_owned(), |v| format!(
                        "Kernel {}",
                        v.domain_version()
                    ))
                ),
            )),
        })
    }
}

/// The validator data an `installValidations` self-call in `initConfig` gives `vid`, if it is
/// one and names it.
fn installed_validation_data(call: &[u8], vid: FixedBytes<21>) -> Result<Option<&[u8]>, DecodeError> {
    if selector_of(call).is_none_or(|s| s.0 != INSTALL_VALIDATIONS) {
        return Ok(None);
    }
    let abi = Abi::new(call, "installValidations");
    let ids_at = abi.pointer(4, 4, Arith::Checked)?;
    let (n, ids) = abi.length(ids_at, 32)?;
    let data_at = abi.pointer(4, 4 + 64, Arith::Checked)?;
    let data = abi.dynamic_array(data_at, Arith::Checked)?;
    for i in 0..n {
        let id = abi.fixed::<21>(ids + 32 * i, "bytes21 vId")?;
        if id == vid {
            let Some(pos) = data.get(i) else {
                return Err(DecodeError::BadSize {
                    what: "installValidations validationData",
                    len: data.len(),
                    expected: "one entry per validation id",
                });
            };
            return abi.bytes(*pos).map(Some);
        }
    }
    Ok(None)
}

/// Parses a `serializePermissionAccount` blob (see the module docs).
pub fn parse_serialized_permission_account(b64: &str) -> Result<SerializedPermission, SerializedError> {
    if b64.len() > MAX_SERIALIZED_LEN {
        return Err(SerializedError::TooLarge {
            len: b64.len(),
            max: MAX_SERIALIZED_LEN,
        });
    }
    let raw = base64_decode(b64).map_err(SerializedError::Base64)?;
    // `TextDecoder` drops a byte-order mark.
    let text = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&raw);
    let json: Value = serde_json::from_slice(text).map_err(|e| SerializedError::Json(e.to_string()))?;
    parse_account(&json)
}

fn parse_account(json: &Value) -> Result<SerializedPermission, SerializedError> {
    let top = object(json, "(top level)")?;
    let pp = object(required(top, "", "permissionParams")?, "permissionParams")?;
    let permission_id = fixed_hex::<4>(
        required(pp, "permissionParams", "permissionId")?,
        "permissionParams.permissionId",
    )?;
    let policies = match get(pp, "policies") {
        None => Vec::new(),
        Some(v) => {
            let list = array(v, "permissionParams.policies", MAX_POLICIES)?;
            list.iter()
                .enumerate()
                .map(|(i, p)| parse_policy(p, &format!("permissionParams.policies[{i}]")))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let action = match get(top, "action") {
        None => PermissionAction {
            selector: FixedBytes(EXECUTE_SELECTOR),
            address: Address::ZERO,
            hook: None,
        },
        Some(v) => parse_action(v)?,
    };
    let validity = match get(top, "validityData") {
        None => ValidityData::default(),
        Some(v) => {
            let o = object(v, "validityData")?;
            ValidityData {
                valid_after: opt_uint(o, "validityData", "validAfter", 48)?.unwrap_or(0),
                valid_until: opt_uint(o, "validityData", "validUntil", 48)?.unwrap_or(0),
            }
        }
    };
    let ap = object(required(top, "", "accountParams")?, "accountParams")?;
    let account = address_value(
        required(ap, "accountParams", "accountAddress")?,
        "accountParams.accountAddress",
    )?;
    let init_code = Bytes::from(hex_value(
        required(ap, "accountParams", "initCode")?,
        "accountParams.initCode",
    )?);
    let enable_signature = get(top, "enableSignature")
        .map(|v| hex_value(v, "enableSignature").map(Bytes::from))
        .transpose()?;
    let is_pre_installed = match get(top, "isPreInstalled") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| field_err("isPreInstalled", "not a boolean"))?,
    };
    Ok(SerializedPermission {
        account,
        permission_id,
        permission_flag: FixedBytes(SDK_PERMISSION_FLAG),
        policies,
        action,
        validity,
        init_code,
        enable_signature,
        is_pre_installed,
        has_private_key: get(top, "privateKey").is_some(),
        has_eip7702_auth: get(top, "eip7702Auth").is_some(),
    })
}

fn parse_action(v: &Value) -> Result<PermissionAction, SerializedError> {
    let o = object(v, "action")?;
    let selector = match get(o, "selector") {
        None => FixedBytes(EXECUTE_SELECTOR),
        Some(s) => fixed_hex::<4>(s, "action.selector")?,
    };
    let address = match get(o, "address") {
        None => Address::ZERO,
        Some(a) => address_value(a, "action.address")?,
    };
    let hook = match get(o, "hook") {
        None => None,
        Some(h) => {
            let h = object(h, "action.hook")?;
            Some(address_value(
                required(h, "action.hook", "address")?,
                "action.hook.address",
            )?)
        }
    };
    Ok(PermissionAction {
        selector,
        address,
        hook,
    })
}

fn parse_policy(v: &Value, path: &str) -> Result<PolicyEntry, SerializedError> {
    let outer = object(v, path)?;
    let p = object(required(outer, path, "policyParams")?, &join(path, "policyParams"))?;
    let path = join(path, "policyParams");
    let ty = required(p, &path, "type")?
        .as_str()
        .ok_or_else(|| field_err(&format!("{path}.type"), "not a string"))?;
    let flag = match get(p, "policyFlag") {
        None => FixedBytes([0, 0]),
        Some(f) => fixed_hex::<2>(f, &format!("{path}.policyFlag"))?,
    };
    // The SDK tests `policyAddress` for truthiness or compares it as a string.
    let address_str = match get(p, "policyAddress") {
        None => None,
        Some(a) => Some(
            a.as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| field_err(&format!("{path}.policyAddress"), "not an address"))?,
        ),
    };
    let address_or = |default: Address| match address_str {
        None => Ok(default),
        Some(s) => parse_address(s, &format!("{path}.policyAddress")),
    };
    let (policy_type, address, data) = match ty {
        "call" => {
            let (address, data) = call_policy(p, &path, address_str)?;
            (SerializedPolicyType::Call, address, data)
        }
        "gas" => {
            let allowed = opt_uint::<u128>(p, &path, "allowed", 128)?.unwrap_or(0);
            let enforce = match get(p, "enforcePaymaster") {
                None => false,
                Some(b) => b
                    .as_bool()
                    .ok_or_else(|| field_err(&format!("{path}.enforcePaymaster"), "not a boolean"))?,
            };
            let paymaster = match get(p, "allowedPaymaster") {
                None => Address::ZERO,
                Some(a) => address_value(a, &format!("{path}.allowedPaymaster"))?,
            };
            let data = (allowed, enforce, paymaster).abi_encode_params();
            (SerializedPolicyType::Gas, address_or(GAS_POLICY)?, data)
        }
        "rate-limit" => {
            let (address, data) = rate_limit_policy(p, &path, address_str)?;
            (SerializedPolicyType::RateLimit, address, data)
        }
        "timestamp" => {
            let after = opt_uint::<u64>(p, &path, "validAfter", 48)?.unwrap_or(0);
            let until = opt_uint::<u64>(p, &path, "validUntil", 48)?.unwrap_or(0);
            let data = (U48::from(after), U48::from(until)).abi_encode_params();
            (SerializedPolicyType::Timestamp, address_or(TIMESTAMP_POLICY)?, data)
        }
        "sudo" => (SerializedPolicyType::Sudo, address_or(SUDO_POLICY)?, Vec::new()),
        "signature-caller" => {
            let cpath = format!("{path}.allowedCallers");
            let callers = array(required(p, &path, "allowedCallers")?, &cpath, MAX_ALLOWED_CALLERS)?
                .iter()
                .enumerate()
                .map(|(i, a)| address_value(a, &format!("{cpath}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            (
                SerializedPolicyType::SignatureCaller,
                address_or(SIGNATURE_POLICY)?,
                callers.abi_encode(),
            )
        }
        _ => {
            return Err(field_err(
                &format!("{path}.type"),
                "not a policy type the SDK deserializes (call, gas, rate-limit, signature-caller, sudo, timestamp)",
            ))
        }
    };
    Ok(PolicyEntry {
        policy_type,
        flag,
        address,
        data: Bytes::from(data),
    })
}

/// `toRateLimitPolicy`: packed `interval(6) ‖ count(6) ‖ startAt(6)` for the plain contract,
/// `interval(6) ‖ count(6)` for the reset one; the SDK picks by exact string comparison and
/// refuses any other address. Its hex conversion (`Number.toString(16)`) is only right for JSON
/// integers, so nothing else is accepted.
fn rate_limit_policy(
    p: &Map<String, Value>,
    path: &str,
    address_str: Option<&str>,
) -> Result<(Address, Vec<u8>), SerializedError> {
    let packed = |key: &str, required_field: bool| -> Result<u64, SerializedError> {
        let fpath = format!("{path}.{key}");
        match get(p, key) {
            None if required_field => Err(field_err(&fpath, "missing")),
            None => Ok(0),
            Some(v) => {
                let n = v
                    .as_u64()
                    .ok_or_else(|| field_err(&fpath, "not a non-negative JSON integer"))?;
                if n >> 48 != 0 {
                    return Err(field_err(&fpath, "does not fit in uint48"));
                }
                Ok(n)
            }
        }
    };
    let interval = packed("interval", false)?;
    let count = packed("count", true)?;
    let start_at = packed("startAt", false)?;
    let be48 = |n: u64| n.to_be_bytes()[2..].to_vec();
    match address_str.unwrap_or(RATE_LIMIT_POLICY_SDK) {
        RATE_LIMIT_POLICY_SDK => Ok((
            RATE_LIMIT_POLICY,
            [be48(interval), be48(count), be48(start_at)].concat(),
        )),
        RATE_LIMIT_RESET_POLICY_SDK => {
            if start_at != 0 {
                return Err(field_err(
                    &format!("{path}.startAt"),
                    "the rate-limit policy with reset takes no startAt",
                ));
            }
            Ok((RATE_LIMIT_RESET_POLICY, [be48(interval), be48(count)].concat()))
        }
        _ => Err(field_err(
            &format!("{path}.policyAddress"),
            format!("not {RATE_LIMIT_POLICY_SDK} or {RATE_LIMIT_RESET_POLICY_SDK} (the SDK compares the exact string)"),
        )),
    }
}

// `ParamCondition` is a `uint8`; alloy has no `u8` ABI value (it means bytes), and a `uint16`
// holding a value below 256 encodes to the same word.
type RuleV1 = (u16, u64, B256);
type PermissionV1 = (FixedBytes<1>, Address, FixedBytes<4>, U256, Vec<RuleV1>);
type Rule = (u16, u64, Vec<B256>);
type CallPermission = (FixedBytes<1>, Address, FixedBytes<4>, U256, Vec<Rule>);

/// `toCallPolicy`: `abi.encode(Permission[])` with `bytes32 param` when the policy address is
/// CallPolicy v0.0.1's exact SDK spelling, `bytes32[] params` otherwise.
fn call_policy(
    p: &Map<String, Value>,
    path: &str,
    address_str: Option<&str>,
) -> Result<(Address, Vec<u8>), SerializedError> {
    let (address, single_param) = match address_str {
        Some(s) => (
            parse_address(s, &format!("{path}.policyAddress"))?,
            s == CALL_POLICY_V0_0_1_SDK,
        ),
        None => {
            let vpath = format!("{path}.policyVersion");
            let version = required(p, path, "policyVersion")?
                .as_str()
                .ok_or_else(|| field_err(&vpath, "not a string"))?;
            let address = match version {
                "0.0.1" => CALL_POLICY_V0_0_1,
                "0.0.2" => CALL_POLICY_V0_0_2,
                "0.0.3" => CALL_POLICY_V0_0_3,
                "0.0.4" => CALL_POLICY_V0_0_4,
                "0.0.5" => CALL_POLICY_V0_0_5,
                _ => return Err(field_err(&vpath, "not a CallPolicy version (0.0.1 to 0.0.5)")),
            };
            (address, version == "0.0.1")
        }
    };
    let ppath = format!("{path}.permissions");
    let list = match get(p, "permissions") {
        None => &[][..],
        Some(v) => array(v, &ppath, MAX_CALL_PERMISSIONS)?,
    };
    let mut v1: Vec<PermissionV1> = Vec::new();
    let mut v2: Vec<CallPermission> = Vec::new();
    for (i, perm) in list.iter().enumerate() {
        let path = format!("{ppath}[{i}]");
        let o = object(perm, &path)?;
        let call_type = match get(o, "callType") {
            None => FixedBytes([0]),
            Some(c) => fixed_hex::<1>(c, &format!("{path}.callType"))?,
        };
        let target = address_value(required(o, &path, "target")?, &format!("{path}.target"))?;
        let from_abi = get(o, "abi").is_some() && get(o, "functionName").is_some();
        let selector = match get(o, "selector") {
            Some(s) => fixed_hex::<4>(s, &format!("{path}.selector"))?,
            None if from_abi => {
                return Err(field_err(
                    &format!("{path}.selector"),
                    "missing: deriving it from abi/functionName is not supported",
                ))
            }
            None => FixedBytes([0; 4]),
        };
        let value_limit = match get(o, "valueLimit") {
            None => U256::ZERO,
            Some(v) => uint(v, &format!("{path}.valueLimit"), 256)?,
        };
        let rpath = format!("{path}.rules");
        let rules = match get(o, "rules") {
            Some(r) => array(r, &rpath, MAX_RULES)?,
            None if from_abi && args_make_rules(o) => {
                return Err(field_err(
                    &rpath,
                    "missing: deriving rules from abi/args is not supported",
                ))
            }
            None => &[][..],
        };
        if single_param {
            let rules = rules
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    let rp = format!("{rpath}[{j}]");
                    let (condition, offset, ro) = rule_head(r, &rp)?;
                    let param = fixed_hex::<32>(required(ro, &rp, "params")?, &format!("{rp}.params"))?;
                    Ok((condition, offset, param))
                })
                .collect::<Result<Vec<RuleV1>, SerializedError>>()?;
            v1.push((call_type, target, selector, value_limit, rules));
        } else {
            let rules = rules
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    let rp = format!("{rpath}[{j}]");
                    let (condition, offset, ro) = rule_head(r, &rp)?;
                    let pp = format!("{rp}.params");
                    let params = array(required(ro, &rp, "params")?, &pp, MAX_RULE_PARAMS)?
                        .iter()
                        .enumerate()
                        .map(|(k, w)| fixed_hex::<32>(w, &format!("{pp}[{k}]")))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((condition, offset, params))
                })
                .collect::<Result<Vec<Rule>, SerializedError>>()?;
            v2.push((call_type, target, selector, value_limit, rules));
        }
    }
    let data = if single_param { v1.abi_encode() } else { v2.abi_encode() };
    Ok((address, data))
}

/// Whether `getPermissionFromABI` would build rules from `args` (a non-null entry).
fn args_make_rules(o: &Map<String, Value>) -> bool {
    get(o, "args")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| !x.is_null()))
}

fn rule_head<'a>(r: &'a Value, path: &str) -> Result<(u16, u64, &'a Map<String, Value>), SerializedError> {
    let o = object(r, path)?;
    let condition = uint(required(o, path, "condition")?, &format!("{path}.condition"), 8)?;
    let offset = uint(required(o, path, "offset")?, &format!("{path}.offset"), 64)?;
    Ok((condition.to::<u16>(), offset.to::<u64>(), o))
}

// ---- JSON access with paths --------------------------------------------------------------

/// A member; JSON `null` counts as absent (the SDK's defaults and `??` treat it so).
fn get<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn required<'a>(o: &'a Map<String, Value>, path: &str, key: &str) -> Result<&'a Value, SerializedError> {
    get(o, key).ok_or_else(|| field_err(&join(path, key), "missing"))
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, SerializedError> {
    v.as_object().ok_or_else(|| field_err(path, "not an object"))
}

fn array<'a>(v: &'a Value, path: &str, max: usize) -> Result<&'a [Value], SerializedError> {
    let a = v.as_array().ok_or_else(|| field_err(path, "not an array"))?;
    if a.len() > max {
        return Err(field_err(path, format!("{} entries, at most {max} accepted", a.len())));
    }
    Ok(a)
}

fn hex_value(v: &Value, path: &str) -> Result<Vec<u8>, SerializedError> {
    let s = v.as_str().ok_or_else(|| field_err(path, "not a hex string"))?;
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| field_err(path, "not 0x-prefixed hex"))?;
    hex::decode(digits).map_err(|_| field_err(path, "not even-length hex"))
}

fn fixed_hex<const N: usize>(v: &Value, path: &str) -> Result<FixedBytes<N>, SerializedError> {
    let b = hex_value(v, path)?;
    if b.len() != N {
        return Err(field_err(path, format!("{} bytes, {N} expected", b.len())));
    }
    Ok(FixedBytes::from_slice(&b))
}

fn parse_address(s: &str, path: &str) -> Result<Address, SerializedError> {
    match s.strip_prefix("0x") {
        Some(d) if d.len() == 40 => hex::decode(d)
            .map(|b| Address::from_slice(&b))
            .map_err(|_| field_err(path, "not an address")),
        _ => Err(field_err(path, "not an address (0x and 40 hex digits)")),
    }
}

fn address_value(v: &Value, path: &str) -> Result<Address, SerializedError> {
    parse_address(v.as_str().ok_or_else(|| field_err(path, "not an address"))?, path)
}

/// An unsigned integer of at most `bits` bits: a JSON integer, or a decimal or `0x` hex string
/// (the SDK writes bigints as decimal strings; viem's encoder takes both).
fn uint(v: &Value, path: &str, bits: usize) -> Result<U256, SerializedError> {
    let n = match v {
        Value::Number(n) => n.as_u64().map(U256::from),
        Value::String(s) => match s.strip_prefix("0x") {
            Some(h) if !h.is_empty() && h.len() <= 64 => U256::from_str_radix(h, 16).ok(),
            None if !s.is_empty() && s.len() <= 78 && s.bytes().all(|b| b.is_ascii_digit()) => {
                U256::from_str_radix(s, 10).ok()
            }
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| field_err(path, "not a decimal or hex integer"))?;
    if bits < 256 && n >> bits != U256::ZERO {
        return Err(field_err(path, format!("does not fit in uint{bits}")));
    }
    Ok(n)
}

/// An optional integer member that fits in `bits` ≤ 128 bits.
fn opt_uint<T: TryFrom<U256>>(
    o: &Map<String, Value>,
    path: &str,
    key: &str,
    bits: usize,
) -> Result<Option<T>, SerializedError> {
    let fpath = join(path, key);
    get(o, key)
        .map(|v| {
            uint(v, &fpath, bits)
                .and_then(|n| T::try_from(n).map_err(|_| field_err(&fpath, format!("does not fit in uint{bits}"))))
        })
        .transpose()
}

// ---- base64 --------------------------------------------------------------------------------

/// Forgiving base64 (what `atob` accepts): standard alphabet, ASCII whitespace ignored, padding
/// optional; a length of 1 mod 4 is refused.
fn base64_decode(input: &str) -> Result<Vec<u8>, String> {
    let mut digits: Vec<u8> = Vec::with_capacity(input.len());
    for (at, b) in input.bytes().enumerate() {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') {
            continue;
        }
        digits.push(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => 64,
            _ => return Err(format!("invalid character at byte {at}")),
        });
    }
    if digits.len().is_multiple_of(4) {
        for _ in 0..2 {
            if digits.last() == Some(&64) {
                digits.pop();
            }
        }
    }
    if digits.contains(&64) {
        return Err("misplaced '=' padding".to_owned());
    }
    if digits.len() % 4 == 1 {
        return Err(format!("{} base64 digits cannot encode whole bytes", digits.len()));
    }
    let mut out = Vec::with_capacity(digits.len() / 4 * 3 + 2);
    for chunk in digits.chunks(4) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (u32::from(*d) << (18 - 6 * i)));
        let bytes = word.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let mut w = [0u8; 3];
            w[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from_be_bytes([0, w[0], w[1], w[2]]);
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            }
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
        out
    }

    fn minimal(policies: Value) -> Value {
        serde_json::json!({
            "permissionParams": { "policies": policies, "permissionId": "0x12345678" },
            "action": { "selector": "0xe9ae5c53", "address": "0x0000000000000000000000000000000000000000" },
            "validityData": { "validAfter": 0, "validUntil": 0 },
            "accountParams": { "initCode": "0x", "accountAddress": "0x49f0faDC8c183a2c18D7cd4515Ebe0329ab0B839" },
            "enableSignature": "0x",
            "isPreInstalled": false
        })
    }

    fn parse(v: &Value) -> Result<SerializedPermission, SerializedError> {
        parse_serialized_permission_account(&b64(v.to_string().as_bytes()))
    }

    fn err_path(v: &Value) -> String {
        match parse(v) {
            Err(SerializedError::Field { path, .. }) => path,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn base64_forgiving() {
        for s in ["", "QQ", "QUI", "QUJD", "QUJDRA"] {
            let padded = format!("{s}{}", "=".repeat((4 - s.len() % 4) % 4));
            assert_eq!(base64_decode(s), base64_decode(&padded), "{s}");
        }
        assert_eq!(base64_decode(" QUJD\nRA== ").unwrap(), b"ABCD");
        assert!(base64_decode("QUJDR").is_err());
        assert!(base64_decode("QU=D").is_err());
        assert!(base64_decode("QUJD-A").is_err());
        assert_eq!(
            base64_decode(&b64(&[0xff, 0xfe, 0x00, 0x01])).unwrap(),
            [0xff, 0xfe, 0x00, 0x01]
        );
    }

    #[test]
    fn refuses_bad_input() {
        assert!(matches!(
            parse_serialized_permission_account("not base64!"),
            Err(SerializedError::Base64(_))
        ));
        assert!(matches!(
            parse_serialized_permission_account(&b64(b"{not json")),
            Err(SerializedError::Json(_))
        ));
        assert!(matches!(
            parse_serialized_permission_account(&b64(&[0xff, 0xfe])),
            Err(SerializedError::Json(_))
        ));
        let big = "A".repeat(MAX_SERIALIZED_LEN + 1);
        assert!(matches!(
            parse_serialized_permission_account(&big),
            Err(SerializedError::TooLarge { .. })
        ));
        assert_eq!(err_path(&serde_json::json!([1, 2])), "(top level)");
        assert_eq!(err_path(&serde_json::json!({})), "permissionParams");
    }

    #[test]
    fn minimal_blob_parses_with_defaults() {
        let mut v = minimal(serde_json::json!([]));
        v.as_object_mut().unwrap().remove("action");
        let p = parse(&v).unwrap();
        assert_eq!(p.permission_id, FixedBytes([0x12, 0x34, 0x56, 0x78]));
        assert_eq!(p.action.selector, FixedBytes(EXECUTE_SELECTOR));
        assert!(p.policies.is_empty());
        assert!(p.init_code.is_empty());
        assert!(!p.has_private_key);
        // With whitespace around and without padding.
        let text = b64(v.to_string().as_bytes());
        let trimmed = format!("\n {} \n", text.trim_end_matches('='));
        assert_eq!(parse_serialized_permission_account(&trimmed).unwrap(), p);
        // Only the signer entry.
        let perm = p.permission_with_signer(Address::repeat_byte(7)).unwrap();
        assert!(perm.policies.is_empty());
        assert_eq!(perm.signer.address, Some(Address::repeat_byte(7)));
    }

    #[test]
    fn private_key_is_only_noticed() {
        let mut v = minimal(serde_json::json!([]));
        v["privateKey"] = Value::from("0x".to_owned() + &"ab".repeat(32));
        let p = parse(&v).unwrap();
        assert!(p.has_private_key);
        assert!(!format!("{p:?}").contains("abab"));
    }

    #[test]
    fn field_errors_name_their_path() {
        let cases = [
            (
                serde_json::json!([{ "policyParams": { "type": "gas", "allowed": "12x" } }]),
                "permissionParams.policies[0].policyParams.allowed",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "sudo" } }, { "policyParams": { "type": "gas", "allowed": true } }]),
                "permissionParams.policies[1].policyParams.allowed",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "gas", "allowed": "340282366920938463463374607431768211456" } }]),
                "permissionParams.policies[0].policyParams.allowed",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "gas", "enforcePaymaster": "yes" } }]),
                "permissionParams.policies[0].policyParams.enforcePaymaster",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "nope" } }]),
                "permissionParams.policies[0].policyParams.type",
            ),
            (
                serde_json::json!([{ "type": "sudo" }]),
                "permissionParams.policies[0].policyParams",
            ),
            (serde_json::json!([7]), "permissionParams.policies[0]"),
            (
                serde_json::json!([{ "policyParams": { "type": "sudo", "policyFlag": "0x00" } }]),
                "permissionParams.policies[0].policyParams.policyFlag",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "timestamp", "validUntil": 281474976710656u64 } }]),
                "permissionParams.policies[0].policyParams.validUntil",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "rate-limit", "count": "3" } }]),
                "permissionParams.policies[0].policyParams.count",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "rate-limit" } }]),
                "permissionParams.policies[0].policyParams.count",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "rate-limit", "count": 1, "policyAddress": "0xF63D4139B25C836334EDD76641356C6B74C86873" } }]),
                "permissionParams.policies[0].policyParams.policyAddress",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "signature-caller", "allowedCallers": ["0x12"] } }]),
                "permissionParams.policies[0].policyParams.allowedCallers[0]",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "call", "policyVersion": "0.0.9" } }]),
                "permissionParams.policies[0].policyParams.policyVersion",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "call", "policyVersion": "0.0.4", "permissions": [
                    { "target": "0x0000000000000000000000000000000000000001", "rules": [
                        { "condition": 0, "offset": 0, "params": ["0x01"] }
                    ] }
                ] } }]),
                "permissionParams.policies[0].policyParams.permissions[0].rules[0].params[0]",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "call", "policyVersion": "0.0.4", "permissions": [
                    { "target": "0x0000000000000000000000000000000000000001", "rules": [
                        { "condition": 256, "offset": 0, "params": [] }
                    ] }
                ] } }]),
                "permissionParams.policies[0].policyParams.permissions[0].rules[0].condition",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "call", "policyVersion": "0.0.1", "permissions": [
                    { "target": "0x0000000000000000000000000000000000000001", "rules": [
                        { "condition": 0, "offset": 0, "params": ["0x".to_owned() + &"00".repeat(32)] }
                    ] }
                ] } }]),
                "permissionParams.policies[0].policyParams.permissions[0].rules[0].params",
            ),
            (
                serde_json::json!([{ "policyParams": { "type": "call", "policyVersion": "0.0.4", "permissions": [
                    { "target": "0x0000000000000000000000000000000000000001", "abi": [], "functionName": "f" }
                ] } }]),
                "permissionParams.policies[0].policyParams.permissions[0].selector",
            ),
        ];
        for (policies, path) in cases {
            assert_eq!(err_path(&minimal(policies.clone())), path, "{policies}");
        }
        let mut v = minimal(serde_json::json!([]));
        v["accountParams"]["initCode"] = Value::from("0x123");
        assert_eq!(err_path(&v), "accountParams.initCode");
        v["accountParams"]["initCode"] = Value::from("0x");
        v["permissionParams"]["permissionId"] = Value::from("0x1234");
        assert_eq!(err_path(&v), "permissionParams.permissionId");
        v["permissionParams"]["permissionId"] = Value::from("0x12345678");
        v["isPreInstalled"] = Value::from(1);
        assert_eq!(err_path(&v), "isPreInstalled");
    }

    #[test]
    fn error_message_reads_as_path_and_problem() {
        let v = minimal(
            serde_json::json!([{ "policyParams": { "type": "sudo" } }, { "policyParams": { "type": "gas", "allowed": "0xzz" } }]),
        );
        assert_eq!(
            parse(&v).unwrap_err().to_string(),
            "permissionParams.policies[1].policyParams.allowed: not a decimal or hex integer"
        );
    }

    #[test]
    fn size_limits() {
        let sudo = serde_json::json!({ "policyParams": { "type": "sudo" } });
        let v = minimal(Value::Array(vec![sudo.clone(); MAX_POLICIES]));
        assert_eq!(parse(&v).unwrap().policies.len(), MAX_POLICIES);
        let v = minimal(Value::Array(vec![sudo; MAX_POLICIES + 1]));
        assert_eq!(err_path(&v), "permissionParams.policies");
        let perm = serde_json::json!({ "target": "0x0000000000000000000000000000000000000001" });
        let v = minimal(
            serde_json::json!([{ "policyParams": { "type": "call", "policyVersion": "0.0.4",
            "permissions": vec![perm; MAX_CALL_PERMISSIONS + 1] } }]),
        );
        assert_eq!(err_path(&v), "permissionParams.policies[0].policyParams.permissions");
        let rule = serde_json::json!({ "condition": 0, "offset": 0, "params": [] });
        let v = minimal(
            serde_json::json!([{ "policyParams": { "type": "call", "policyVersion": "0.0.4",
            "permissions": [{ "target": "0x0000000000000000000000000000000000000001", "rules": vec![rule; MAX_RULES + 1] }] } }]),
        );
        assert_eq!(
            err_path(&v),
            "permissionParams.policies[0].policyParams.permissions[0].rules"
        );
    }

    #[test]
    fn policy_encodings_round_trip_through_the_decoders() {
        use crate::decode::PolicyParams;
        let zero32 = "0x".to_owned() + &"00".repeat(31) + "2a";
        let v = minimal(serde_json::json!([
            { "policyParams": { "type": "call", "policyVersion": "0.0.1", "permissions": [
                { "target": "0x0000000000000000000000000000000000000001", "selector": "0xa9059cbb", "valueLimit": "5",
                  "rules": [{ "condition": 0, "offset": 32, "params": zero32 }] } ] } },
            { "policyParams": { "type": "call", "policyVersion": "0.0.5", "permissions": [
                { "target": "0x0000000000000000000000000000000000000001", "callType": "0xff",
                  "rules": [{ "condition": 6, "offset": 0, "params": [zero32, zero32] }] },
                { "target": "0x0000000000000000000000000000000000000002" } ] } },
            { "policyParams": { "type": "rate-limit", "policyAddress": RATE_LIMIT_RESET_POLICY_SDK, "interval": 60, "count": 3 } },
            { "policyParams": { "type": "rate-limit", "interval": 60, "count": 3, "startAt": 1000 } },
            { "policyParams": { "type": "signature-caller", "allowedCallers": ["0x00000000000000000000000000000000000000aa"] } },
            { "policyParams": { "type": "gas", "allowed": "0x10", "enforcePaymaster": true,
                "allowedPaymaster": "0x00000000000000000000000000000000000000bb", "policyFlag": "0x0001" } },
            { "policyParams": { "type": "timestamp", "validAfter": 5, "validUntil": "6" } },
            { "policyParams": { "type": "sudo", "policyAddress": "0x00000000000000000000000000000000000000cc" } },
        ]));
        let p = parse(&v).unwrap();
        let decoded: Vec<Policy> = p.policies.iter().map(PolicyEntry::decode).collect();
        let PolicyParams::Call { permissions } = &decoded[0].params else {
            panic!("{:?}", decoded[0])
        };
        assert_eq!(decoded[0].address, CALL_POLICY_V0_0_1);
        assert_eq!(permissions[0].rules[0].offset, 32);
        assert_eq!(permissions[0].value_limit, U256::from(5));
        let PolicyParams::Call { permissions } = &decoded[1].params else {
            panic!("{:?}", decoded[1])
        };
        assert_eq!(permissions.len(), 2);
        assert_eq!(permissions[0].rules[0].params.len(), 2);
        assert_eq!(permissions[1].selector, FixedBytes([0; 4]));
        assert_eq!(
            decoded[2].params,
            PolicyParams::RateLimitReset {
                interval: 60,
                initial_count: 3
            }
        );
        assert_eq!(p.policies[2].data.len(), 12);
        assert_eq!(
            decoded[3].params,
            PolicyParams::RateLimit {
                interval: 60,
                count: 3,
                start_at: 1000
            }
        );
        assert_eq!(
            decoded[4].params,
            PolicyParams::SignatureCaller {
                allowed_callers: vec![Address::with_last_byte(0xaa)]
            }
        );
        assert_eq!(
            decoded[5].params,
            PolicyParams::Gas {
                allowed: 16,
                enforce_paymaster: true,
                allowed_paymaster: Address::with_last_byte(0xbb)
            }
        );
        assert_eq!(decoded[5].flag, FixedBytes([0, 1]));
        assert_eq!(
            decoded[6].params,
            PolicyParams::Timestamp {
                valid_after: 5,
                valid_until: 6
            }
        );
        assert_eq!(decoded[7].address, Address::with_last_byte(0xcc));
        assert!(p.policies[7].data.is_empty());
        let perm = p.permission_with_signer(Address::repeat_byte(1)).unwrap();
        assert_eq!(perm.policies, decoded);
    }

    #[test]
    fn call_policy_v1_layout_follows_the_sdk_string_comparison() {
        let rule = serde_json::json!({ "condition": 0, "offset": 0, "params": ["0x".to_owned() + &"00".repeat(32)] });
        // A lowercase v0.0.1 address is not the SDK's constant string: it encodes `bytes32[]`.
        let v = minimal(serde_json::json!([{ "policyParams": { "type": "call",
            "policyAddress": CALL_POLICY_V0_0_1_SDK.to_lowercase(),
            "permissions": [{ "target": "0x0000000000000000000000000000000000000001", "rules": [rule] }] } }]));
        let p = parse(&v).unwrap();
        assert_eq!(p.policies[0].address, CALL_POLICY_V0_0_1);
        assert!(matches!(
            p.policies[0].decode().params,
            crate::decode::PolicyParams::Invalid { .. }
        ));
    }

    #[test]
    fn preinstalled_permission_is_found_in_init_config() {
        use alloy_primitives::hex;
        let mut v = minimal(serde_json::json!([{ "policyParams": { "type": "sudo" } }]));
        let p = parse(&v).unwrap();
        let key = Address::repeat_byte(0x42);
        let validator_data = p.validator_data_with_key(key);
        let install = [
            &INSTALL_VALIDATIONS[..],
            &(
                vec![p.validation_id()],
                vec![(1u32, Address::ZERO)],
                vec![validator_data],
                vec![Bytes::new()],
            )
                .abi_encode_params(),
        ]
        .concat();
        let owner = Address::repeat_byte(0x11);
        let root = [&[0x01][..], crate::decode::init::ECDSA_VALIDATOR.as_slice()].concat();
        let initialize = [
            &crate::decode::init::INITIALIZE_V3_1[..],
            &(
                FixedBytes::<21>::from_slice(&root),
                Address::ZERO,
                Bytes::copy_from_slice(owner.as_slice()),
                Bytes::new(),
                vec![Bytes::from(install)],
            )
                .abi_encode_params(),
        ]
        .concat();
        let factory_data = [
            &DEPLOY_WITH_FACTORY[..],
            &(
                crate::decode::init::KERNEL_V3_3_FACTORY,
                Bytes::from(initialize),
                B256::ZERO,
            )
                .abi_encode_params(),
        ]
        .concat();
        v["accountParams"]["initCode"] = Value::from(hex::encode_prefixed(&factory_data));
        v["isPreInstalled"] = Value::from(true);
        v.as_object_mut().unwrap().remove("enableSignature");
        let p = parse(&v).unwrap();
        let d = p.deployment().unwrap().unwrap();
        assert_eq!(d.kernel_version, Some(KernelVersion::V3_3));
        assert_eq!(d.root_validator.unwrap().owner, Some(owner));
        let installed = p.preinstalled_permission().unwrap().unwrap();
        assert_eq!(installed.signer.address, Some(key));
        assert_eq!(installed, p.permission_with_signer(key).unwrap());
        assert!(p.verify_enable_signature(1, key).is_none());
    }

    #[test]
    fn derivation_depends_on_every_part() {
        let p = parse(&minimal(serde_json::json!([{ "policyParams": { "type": "sudo" } }]))).unwrap();
        let a = p.derive_id_for(ECDSA_SIGNER, Address::repeat_byte(1).as_slice());
        assert_ne!(a, p.derive_id_for(ECDSA_SIGNER, Address::repeat_byte(2).as_slice()));
        assert_ne!(
            a,
            derive_permission_id(&p.policies, ECDSA_SIGNER, Address::repeat_byte(1).as_slice(), [0, 1])
        );
        assert_ne!(
            a,
            derive_permission_id(&[], ECDSA_SIGNER, Address::repeat_byte(1).as_slice(), [0, 0])
        );
    }
}
