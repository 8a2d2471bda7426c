//! What opgate understood of one UserOperation, in the stable JSON shape printed by
//! `opgate decode` (and returned by `opgate_explainUserOperation`).
//!
//! The decoders ([`crate::userop`], [`crate::decode`]) keep every detail; this module picks the
//! fields operators and clients rely on and fixes their spelling: addresses and hex lowercase,
//! numbers as decimal strings, `null` where a part does not apply.

use alloy_primitives::{Address, B256};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::decode::{
    self, Call, CallDataFormat, DecodeOptions, ExecCallType, KernelDecoded, Permission, Policy, ValidationMode,
    ValidationType,
};
use crate::userop::{self, EntryPointVersion, UserOpError, UserOperation};

fn hex_lower<T: AsRef<[u8]>>(bytes: T) -> String {
    format!("0x{}", alloy_primitives::hex::encode(bytes.as_ref()))
}

fn addr(a: Address) -> String {
    hex_lower(a.as_slice())
}

/// `{ address, version }` of the EntryPoint.
#[derive(Debug, Clone, Serialize)]
pub struct EntryPointView {
    /// Lowercase address.
    pub address: String,
    /// `"0.6"`, `"0.7"` or `"0.8"`.
    pub version: &'static str,
}

/// One call the operation makes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    /// `"call"` or `"delegatecall"`.
    pub call_type: &'static str,
    /// Target address.
    pub target: String,
    /// Native value (decimal string; `"0"` for delegatecall).
    pub value: String,
    /// First four bytes of `data`, or `null` when shorter.
    pub selector: Option<String>,
    /// Call data.
    pub data: String,
}

impl From<&Call> for CallView {
    fn from(c: &Call) -> Self {
        Self {
            call_type: match c.call_type {
                decode::CallKind::Call => "call",
                decode::CallKind::DelegateCall => "delegatecall",
            },
            target: addr(c.target),
            value: c.value.to_string(),
            selector: c.selector.map(hex_lower),
            data: hex_lower(&c.data),
        }
    }
}

/// The Kernel nonce.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NonceView {
    /// `"default"` or `"enable"`.
    pub mode: &'static str,
    /// `"root"`, `"validator"` or `"permission"`.
    pub validation_type: &'static str,
    /// Validator address (validator type).
    pub validator: Option<String>,
    /// Permission id (permission type).
    pub permission_id: Option<String>,
    /// Custom nonce key (decimal).
    pub lane: String,
    /// EntryPoint sequence (decimal).
    pub sequence: String,
}

/// The session signer of a permission.
#[derive(Debug, Clone, Serialize)]
pub struct SignerView {
    /// `"ecdsa"`, `"webauthn"` or `"unknown"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The signer contract.
    pub contract: String,
    /// The session key address (ECDSA).
    pub address: Option<String>,
}

/// The permission installed by an enable-mode operation.
#[derive(Debug, Clone, Serialize)]
pub struct PermissionView {
    /// Its signer.
    pub signer: SignerView,
    /// Its policies, in install order, with their parsed install data.
    pub policies: Vec<Policy>,
}

impl From<&Permission> for PermissionView {
    fn from(p: &Permission) -> Self {
        Self {
            signer: SignerView {
                kind: match p.signer.kind {
                    decode::SignerKind::Ecdsa => "ecdsa",
                    decode::SignerKind::WebAuthn => "webauthn",
                    _ => "unknown",
                },
                contract: addr(p.signer.contract),
                address: p.signer.address.map(addr),
            },
            policies: p.policies.clone(),
        }
    }
}

/// The approval of an enable-mode operation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnableView {
    /// The root validator that must have approved, when known.
    pub root_validator: Option<String>,
    /// Whether the approval is a multi-chain Merkle-root signature.
    pub multichain: bool,
    /// The Merkle root signed once for every chain.
    pub merkle_root: Option<String>,
    /// The address recovered from the approval, when computable.
    pub approver: Option<String>,
    /// The root owner the approval was verified against (`null`: not known, the chain decides);
    /// `opgate_explainUserOperation`'s `account.ownerSource` says where it came from.
    pub owner: Option<String>,
    /// Whether the approval is the owner's (`null`: cannot be told).
    pub approved: Option<bool>,
}

/// The Kernel-specific part.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelView {
    /// Nonce fields.
    pub nonce: Option<NonceView>,
    /// `execute` mode call type.
    pub call_type: Option<&'static str>,
    /// The calls.
    pub calls: Vec<CallView>,
    /// The permission being enabled.
    pub permission: Option<PermissionView>,
    /// The enable approval.
    pub enable: Option<EnableView>,
    /// Parts that could not be decoded, as `{part, message}`.
    pub errors: Vec<PartErrorView>,
}

/// A part that could not be decoded.
#[derive(Debug, Clone, Serialize)]
pub struct PartErrorView {
    /// Which part.
    pub part: &'static str,
    /// Why.
    pub message: String,
}

/// Everything decoded from one UserOperation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecodedOp {
    /// The EntryPoint.
    pub entry_point: EntryPointView,
    /// Chain id (decimal), when known.
    pub chain_id: Option<String>,
    /// The account.
    pub sender: String,
    /// The userOpHash computed locally, when the chain id is known.
    pub user_op_hash: Option<String>,
    /// `"kernel-v3"`, `"kernel-v2"`, `"simple-account"` or `"unknown"`, from the call data.
    pub account: &'static str,
    /// The calls, whatever the account kind.
    pub calls: Vec<CallView>,
    /// Why the call data is not what the canonical ABI encoder writes, when it is not (opgate
    /// refuses it: `InvalidCallData`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub non_canonical: Option<String>,
    /// Kernel details, or `null` for other accounts.
    pub kernel: Option<KernelView>,
    /// The full decoder output, for debugging.
    #[serde(skip)]
    pub detail: Option<KernelDecoded>,
}

/// Where the input could not be read as a UserOperation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// Not JSON, or not one of the accepted shapes.
    #[error("{0}")]
    Shape(String),
    /// The UserOperation itself is malformed.
    #[error(transparent)]
    UserOp(#[from] UserOpError),
}

/// Extracts `(userOp, entryPoint)` from a request body, a params array, or a bare op object
/// (then `entry_point` must be given).
pub fn parse_input(text: &str, entry_point: Option<Address>) -> Result<(Box<RawValue>, Address), InputError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| InputError::Shape(format!("input is not JSON: {e}")))?;
    let params = match &value {
        serde_json::Value::Object(o) if o.contains_key("method") || o.contains_key("params") => {
            let method = o.get("method").and_then(|m| m.as_str()).unwrap_or("");
            if method != "eth_sendUserOperation" && method != "eth_estimateUserOperationGas" {
                return Err(InputError::Shape(format!(
                    "a JSON-RPC request for `{method}`; expected eth_sendUserOperation"
                )));
            }
            o.get("params").cloned().unwrap_or(serde_json::Value::Null)
        }
        other => other.clone(),
    };
    let (op, ep) = match params {
        serde_json::Value::Array(items) => {
            let op = items
                .first()
                .cloned()
                .ok_or_else(|| InputError::Shape("params are empty".into()))?;
            let ep = match (items.get(1), entry_point) {
                (_, Some(ep)) => ep,
                (Some(serde_json::Value::String(s)), None) => s
                    .parse()
                    .map_err(|_| InputError::Shape(format!("params[1] `{s}` is not an EntryPoint address")))?,
                _ => return Err(InputError::Shape("params[1] (the EntryPoint) is missing".into())),
            };
            (op, ep)
        }
        op @ serde_json::Value::Object(_) => {
            let ep = entry_point.ok_or_else(|| InputError::Shape("a bare UserOperation needs --entry-point".into()))?;
            (op, ep)
        }
        _ => return Err(InputError::Shape("input is not a UserOperation".into())),
    };
    let raw = serde_json::value::to_raw_value(&op).map_err(|e| InputError::Shape(e.to_string()))?;
    Ok((raw, ep))
}

/// Decodes a parsed UserOperation.
pub fn decode_op(op: &UserOperation, entry_point: Address, chain_id: Option<u64>) -> DecodedOp {
    let opts = DecodeOptions {
        chain_id,
        ..Default::default()
    };
    decode_op_with(op, entry_point, &opts)
}

/// Decodes a parsed UserOperation with what is known of the account beyond the op itself (its
/// root owner and Kernel release).
pub fn decode_op_with(op: &UserOperation, entry_point: Address, opts: &DecodeOptions) -> DecodedOp {
    decode_op_known(op, entry_point, opts, false)
}

/// [`decode_op_with`], told whether opgate already knows the account as a Kernel account (the
/// registry knows it or a permission of it, or it is a Kernel v3.3 EIP-7702 delegation). A Kernel
/// op is recognised from what is known and from its nonce, not from its call data alone: a
/// session op whose call data is not `execute` is still a Kernel op.
pub fn decode_op_known(
    op: &UserOperation,
    entry_point: Address,
    opts: &DecodeOptions,
    known_kernel: bool,
) -> DecodedOp {
    let version = op.version();
    let chain_id = opts.chain_id;
    let user_op_hash = chain_id.and_then(|id| op.hash(entry_point, id).ok());
    let k = decode::decode_kernel_with(
        op.sender(),
        op.nonce(),
        op.call_data(),
        op.signature(),
        &op.init_code(),
        opts,
    );
    let format = k.calls.as_ref().map(|c| c.format);
    let account = match format {
        Some(CallDataFormat::KernelExecute) => "kernel-v3",
        Some(
            CallDataFormat::KernelV2Execute
            | CallDataFormat::KernelV2ExecuteDelegateCall
            | CallDataFormat::ExecuteBatch,
        ) if version == EntryPointVersion::V06 => "kernel-v2",
        Some(
            CallDataFormat::SimpleAccountExecute
            | CallDataFormat::SimpleAccountExecuteBatch
            | CallDataFormat::SimpleAccountExecuteBatchV06
            | CallDataFormat::ExecuteBatch,
        ) => "simple-account",
        _ if k.deployment.as_ref().is_some_and(|d| d.kernel_version.is_some()) => "kernel-v3",
        _ if version == EntryPointVersion::V07 && (known_kernel || kernel_nonce(&k)) => "kernel-v3",
        _ => "unknown",
    };
    let calls: Vec<CallView> = k
        .calls
        .iter()
        .flat_map(|c| c.calls.iter())
        .map(CallView::from)
        .collect();
    let kernel = (account == "kernel-v3").then(|| kernel_view(&k, &calls));
    DecodedOp {
        entry_point: EntryPointView {
            address: addr(entry_point),
            version: version.as_str(),
        },
        chain_id: chain_id.map(|c| c.to_string()),
        sender: addr(op.sender()),
        user_op_hash: user_op_hash.map(|h: B256| hex_lower(h)),
        account,
        non_canonical: k.calls.as_ref().and_then(|c| c.non_canonical.clone()),
        calls,
        kernel,
        detail: Some(k),
    }
}

/// A nonce only a Kernel permission (or enable-mode) op carries: validation type 0x02 with a
/// permission id, or enable mode with an enable wrapper that decodes.
fn kernel_nonce(k: &KernelDecoded) -> bool {
    k.nonce.as_ref().is_some_and(|n| {
        n.permission_id.is_some_and(|p| !p.is_zero()) || (n.mode == ValidationMode::Enable && k.enable.is_some())
    })
}

fn kernel_view(k: &KernelDecoded, calls: &[CallView]) -> KernelView {
    let nonce = k.nonce.as_ref().map(|n| NonceView {
        mode: match n.mode {
            ValidationMode::Enable => "enable",
            _ => "default",
        },
        validation_type: match n.validation_type {
            ValidationType::Root => "root",
            ValidationType::Validator => "validator",
            ValidationType::Permission => "permission",
        },
        validator: n.validator.map(addr),
        permission_id: n.permission_id.map(hex_lower),
        lane: n.lane.to_string(),
        sequence: n.sequence.to_string(),
    });
    let call_type = k.call_type.map(|t| match t {
        ExecCallType::Single => "single",
        ExecCallType::Batch => "batch",
        ExecCallType::DelegateCall => "delegatecall",
        ExecCallType::Static => "static",
    });
    let enable = k.enable.as_ref().map(|e| EnableView {
        root_validator: e.root_validator.as_ref().and_then(|r| r.address).map(addr),
        multichain: e.multichain,
        merkle_root: e.merkle_root.map(hex_lower),
        approver: e.approver.map(addr),
        owner: e.owner.map(addr),
        approved: e.approved,
    });
    KernelView {
        nonce,
        call_type,
        calls: calls.to_vec(),
        permission: k.permission.as_ref().map(PermissionView::from),
        enable,
        errors: k
            .errors
            .iter()
            .map(|e| PartErrorView {
                part: e.part,
                message: e.error.to_string(),
            })
            .collect(),
    }
}

/// Reads input text as `opgate decode` does and decodes it.
pub fn decode_text(text: &str, entry_point: Option<Address>, chain_id: Option<u64>) -> Result<DecodedOp, InputError> {
    let (raw, ep) = parse_input(text, entry_point)?;
    let op = userop::parse_user_operation_for(&raw, ep)?;
    Ok(decode_op(&op, ep, chain_id))
}
