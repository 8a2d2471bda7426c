//! The calls a UserOperation's `callData` makes (spec §3).
//!
//! Kernel v3 `execute(bytes32 mode, bytes executionCalldata)` is decoded by the offset word, as
//! Solidity's argument decoder does, then by call type: single `target(20) ‖ value(32) ‖ data`,
//! batch `abi.encode(Execution[])` followed offset by offset (with the modulo-2^256 pointer
//! arithmetic of Kernel v3.0/v3.1; v3.2+ reverts on the backwards offsets that allows, so an op
//! decoded here either runs as decoded or reverts), delegatecall `target(20) ‖ data` (no value),
//! static `0xFE` (decoded like single, flagged: Kernel reverts). The `executeUserOp` prefix is
//! stripped and the rest decoded as a fresh call. Kernel v2 and SimpleAccount entry points are
//! recognised; any other call data is reported as [`CallDataFormat::Unknown`], not an error.
//!
//! Every structure must lie inside the bytes decoded; where the chain would read outside them
//! (into other calldata or zeros), this is an error rather than a guess.

use alloy_primitives::{Address, Bytes, FixedBytes, B256, U256};
use serde::Serialize;

use super::abi::{selector_of, Abi, Arith};
use super::canonical::{check_params, execution_array, AbiType, Trailing};
use super::{ser, DecodeError, Source};

/// Kernel v3 `execute(bytes32,bytes)`.
pub const KERNEL_EXECUTE: [u8; 4] = [0xe9, 0xae, 0x5c, 0x53];
/// `executeUserOp(PackedUserOperation,bytes32)`: a 4-byte marker before the real call data.
pub const EXECUTE_USER_OP: [u8; 4] = [0x8d, 0xd7, 0x71, 0x2f];
/// Kernel v2 `execute(address,uint256,bytes,uint8)`.
pub const KERNEL_V2_EXECUTE: [u8; 4] = [0x51, 0x94, 0x54, 0x47];
/// `executeBatch((address,uint256,bytes)[])` (Kernel v2, SimpleAccount v0.8).
pub const EXECUTE_BATCH_CALLS: [u8; 4] = [0x34, 0xfc, 0xd5, 0xbe];
/// Kernel v2 `executeDelegateCall(address,bytes)`.
pub const KERNEL_V2_EXECUTE_DELEGATE_CALL: [u8; 4] = [0xb6, 0x8d, 0xf1, 0x6d];
/// SimpleAccount `execute(address,uint256,bytes)`.
pub const SIMPLE_EXECUTE: [u8; 4] = [0xb6, 0x1d, 0x27, 0xf6];
/// SimpleAccount v0.7 `executeBatch(address[],uint256[],bytes[])`.
pub const SIMPLE_EXECUTE_BATCH: [u8; 4] = [0x47, 0xe1, 0xda, 0x2a];
/// SimpleAccount v0.6 `executeBatch(address[],bytes[])`.
pub const SIMPLE_EXECUTE_BATCH_V06: [u8; 4] = [0x18, 0xdf, 0xb3, 0xc7];

/// How a single call is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CallKind {
    /// `CALL` from the account.
    Call,
    /// `DELEGATECALL`: the target's code runs with the account's storage and balance.
    #[serde(rename = "delegatecall")]
    DelegateCall,
}

/// One call the account makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// Call or delegatecall.
    pub call_type: CallKind,
    /// Callee (or delegate).
    #[serde(serialize_with = "ser::address")]
    pub target: Address,
    /// Wei sent (always 0 for a delegatecall).
    #[serde(serialize_with = "ser::decimal")]
    pub value: U256,
    /// `data[0:4]`; `None` when data is shorter than 4 bytes.
    pub selector: Option<FixedBytes<4>>,
    /// Data of 1–3 bytes: no selector, yet not a plain transfer (CallPolicy ≥0.0.2 reverts).
    pub short_data: bool,
    /// The call data.
    pub data: Bytes,
}

impl Call {
    /// A plain `CALL` of `data` with `value` to `target`.
    pub fn plain(target: Address, value: U256, data: &[u8]) -> Self {
        Self::new(Source::COPY, CallKind::Call, target, value, data)
    }

    fn new(src: Source<'_>, call_type: CallKind, target: Address, value: U256, data: &[u8]) -> Self {
        Self {
            call_type,
            target,
            value,
            selector: selector_of(data),
            short_data: (1..4).contains(&data.len()),
            data: src.part(data),
        }
    }
}

/// ERC-7579 call type of an `execute` mode (or the equivalent of another entry point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ExecCallType {
    /// `0x00`: one call.
    Single,
    /// `0x01`: `Execution[]`.
    Batch,
    /// `0xFF`: one delegatecall.
    #[serde(rename = "delegatecall")]
    DelegateCall,
    /// `0xFE`: advertised by Kernel but `execute` reverts.
    Static,
}

/// ERC-7579 exec type (mode byte 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ExecType {
    /// `0x00`: revert on failure.
    Default,
    /// `0x01`: continue on failure.
    Try,
    /// Anything else: Kernel reverts ("Unsupported").
    Unsupported,
}

/// A decoded `execute` mode word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecMode {
    /// Byte 0.
    pub call_type: ExecCallType,
    /// Byte 1.
    pub exec_type: ExecType,
    /// The whole word (bytes 2–31 are ignored by `execute`).
    pub raw: B256,
}

/// Why decoded calls will not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevertReason {
    /// Call type `0xFE`.
    StaticCallType,
    /// Exec type other than default/try.
    UnsupportedExecType,
}

/// Which account entry point the call data uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallDataFormat {
    /// Kernel v3 / ERC-7579 `execute(bytes32,bytes)`.
    KernelExecute,
    /// Kernel v2 `execute(address,uint256,bytes,uint8)`.
    KernelV2Execute,
    /// `executeBatch((address,uint256,bytes)[])` (Kernel v2, SimpleAccount v0.8).
    ExecuteBatch,
    /// Kernel v2 `executeDelegateCall(address,bytes)`.
    KernelV2ExecuteDelegateCall,
    /// SimpleAccount `execute(address,uint256,bytes)`.
    SimpleAccountExecute,
    /// SimpleAccount v0.7 `executeBatch(address[],uint256[],bytes[])`.
    SimpleAccountExecuteBatch,
    /// SimpleAccount v0.6 `executeBatch(address[],bytes[])`.
    SimpleAccountExecuteBatchV06,
    /// Empty call data.
    Empty,
    /// Anything else: no calls decoded.
    Unknown,
}

/// The calls decoded from a UserOperation's `callData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecodedCalls {
    /// Entry point used.
    pub format: CallDataFormat,
    /// Selector of the (inner) call data, if it has 4 bytes.
    pub selector: Option<FixedBytes<4>>,
    /// Whether the `executeUserOp` prefix was stripped first.
    pub execute_user_op: bool,
    /// The Kernel v3 mode word.
    pub mode: Option<ExecMode>,
    /// Single, batch, delegatecall or static; `None` for unknown call data.
    pub call_type: Option<ExecCallType>,
    /// The calls, in execution order.
    pub calls: Vec<Call>,
    /// Set when the account will revert instead of making the calls.
    pub reverts: Option<RevertReason>,
    /// Set when the call data is not what the canonical ABI encoder writes (offsets the encoder
    /// would not write, shared or overlapping tails, bytes between the encoded parts, dirty
    /// words): the chain reads it by its offsets, as decoded here, but a second reading exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub non_canonical: Option<String>,
}

/// Decodes a UserOperation's `callData` (the fuzzing entry point for calls).
pub fn decode_calls(call_data: &[u8]) -> Result<DecodedCalls, DecodeError> {
    decode_calls_in(Source::COPY, call_data)
}

/// [`decode_calls`], each call's data taken from `src`.
pub(crate) fn decode_calls_in(src: Source<'_>, call_data: &[u8]) -> Result<DecodedCalls, DecodeError> {
    match selector_of(call_data) {
        Some(sel) if sel == EXECUTE_USER_OP => {
            let inner = &call_data[4..];
            let mut decoded = decode_direct(src, inner)?;
            decoded.execute_user_op = true;
            Ok(decoded)
        }
        _ => decode_direct(src, call_data),
    }
}

fn decode_direct(src: Source<'_>, cd: &[u8]) -> Result<DecodedCalls, DecodeError> {
    let mut out = DecodedCalls {
        format: CallDataFormat::Unknown,
        selector: selector_of(cd),
        execute_user_op: false,
        mode: None,
        call_type: None,
        calls: Vec::new(),
        reverts: None,
        non_canonical: None,
    };
    let Some(sel) = out.selector else {
        if cd.is_empty() {
            out.format = CallDataFormat::Empty;
        }
        return Ok(out);
    };
    let args = Abi::new(cd, "callData");
    let (format, call_type, calls) = match sel.0 {
        KERNEL_EXECUTE => {
            let mode = B256::from(*args.word(4)?);
            let offset = args.u256(36)?;
            let exec = args.named("executionCalldata").bytes_at(4, 36, Arith::Checked)?;
            if offset != U256::from(0x40) {
                out.non_canonical = Some(format!(
                    "execute: executionCalldata's head offset is {offset:#x} where the encoder puts 0x40"
                ));
            }
            let (mode, calls, reverts) = execution(src, &mode, exec)?;
            out.reverts = reverts;
            if mode.call_type == ExecCallType::Batch && out.non_canonical.is_none() {
                out.non_canonical = check_params(&[execution_array()], exec, Trailing::Refused)
                    .err()
                    .map(|d| format!("execute batch: {d} in executionCalldata"));
            }
            let ct = mode.call_type;
            out.mode = Some(mode);
            (CallDataFormat::KernelExecute, ct, calls)
        }
        KERNEL_V2_EXECUTE => {
            let target = args.address(4)?;
            let value = args.u256(36)?;
            let data = args.bytes_at(4, 68, Arith::Checked)?;
            let (kind, ct) = match args.small_uint(100, 8, "uint8 operation")? {
                0 => (CallKind::Call, ExecCallType::Single),
                1 => (CallKind::DelegateCall, ExecCallType::DelegateCall),
                op => return Err(DecodeError::UnknownOperation(op as u8)),
            };
            let value = if kind == CallKind::DelegateCall {
                U256::ZERO
            } else {
                value
            };
            (
                CallDataFormat::KernelV2Execute,
                ct,
                vec![Call::new(src, kind, target, value, data)],
            )
        }
        EXECUTE_BATCH_CALLS => {
            let calls = call_tuples(src, &args.named("executeBatch calls"), 4, 4, Arith::Checked)?;
            (CallDataFormat::ExecuteBatch, ExecCallType::Batch, calls)
        }
        KERNEL_V2_EXECUTE_DELEGATE_CALL => {
            let target = args.address(4)?;
            let data = args.bytes_at(4, 36, Arith::Checked)?;
            let call = Call::new(src, CallKind::DelegateCall, target, U256::ZERO, data);
            (
                CallDataFormat::KernelV2ExecuteDelegateCall,
                ExecCallType::DelegateCall,
                vec![call],
            )
        }
        SIMPLE_EXECUTE => {
            let target = args.address(4)?;
            let value = args.u256(36)?;
            let data = args.bytes_at(4, 68, Arith::Checked)?;
            let call = Call::new(src, CallKind::Call, target, value, data);
            (CallDataFormat::SimpleAccountExecute, ExecCallType::Single, vec![call])
        }
        SIMPLE_EXECUTE_BATCH => {
            let calls = simple_batch(src, &args, true)?;
            (CallDataFormat::SimpleAccountExecuteBatch, ExecCallType::Batch, calls)
        }
        SIMPLE_EXECUTE_BATCH_V06 => {
            let calls = simple_batch(src, &args, false)?;
            (CallDataFormat::SimpleAccountExecuteBatchV06, ExecCallType::Batch, calls)
        }
        _ => return Ok(out),
    };
    if out.non_canonical.is_none() {
        out.non_canonical = account_abi(sel.0).and_then(|(name, types)| {
            check_params(&types, &cd[4..], Trailing::Ignored)
                .err()
                .map(|d| format!("{name}: {d}"))
        });
    }
    out.format = format;
    out.call_type = Some(call_type);
    out.calls = calls;
    Ok(out)
}

/// The argument types of the account entry points other than Kernel v3 `execute` (whose
/// `executionCalldata` is checked by call type).
fn account_abi(selector: [u8; 4]) -> Option<(&'static str, Vec<AbiType>)> {
    let bytes_array = || AbiType::Array(Box::new(AbiType::Bytes));
    Some(match selector {
        KERNEL_V2_EXECUTE => (
            "execute(address,uint256,bytes,uint8)",
            vec![AbiType::Address, AbiType::Uint(256), AbiType::Bytes, AbiType::Uint(8)],
        ),
        EXECUTE_BATCH_CALLS => ("executeBatch((address,uint256,bytes)[])", vec![execution_array()]),
        KERNEL_V2_EXECUTE_DELEGATE_CALL => (
            "executeDelegateCall(address,bytes)",
            vec![AbiType::Address, AbiType::Bytes],
        ),
        SIMPLE_EXECUTE => (
            "execute(address,uint256,bytes)",
            vec![AbiType::Address, AbiType::Uint(256), AbiType::Bytes],
        ),
        SIMPLE_EXECUTE_BATCH => (
            "executeBatch(address[],uint256[],bytes[])",
            vec![
                AbiType::Array(Box::new(AbiType::Address)),
                AbiType::Array(Box::new(AbiType::Uint(256))),
                bytes_array(),
            ],
        ),
        SIMPLE_EXECUTE_BATCH_V06 => (
            "executeBatch(address[],bytes[])",
            vec![AbiType::Array(Box::new(AbiType::Address)), bytes_array()],
        ),
        _ => return None,
    })
}

/// Decodes a Kernel v3 `executionCalldata` under `mode`.
pub fn decode_execution(mode: &B256, exec: &[u8]) -> Result<(ExecMode, Vec<Call>, Option<RevertReason>), DecodeError> {
    execution(Source::COPY, mode, exec)
}

fn execution(
    src: Source<'_>,
    mode: &B256,
    exec: &[u8],
) -> Result<(ExecMode, Vec<Call>, Option<RevertReason>), DecodeError> {
    let call_type = match mode[0] {
        0x00 => ExecCallType::Single,
        0x01 => ExecCallType::Batch,
        0xFE => ExecCallType::Static,
        0xFF => ExecCallType::DelegateCall,
        other => return Err(DecodeError::UnknownCallType(other)),
    };
    let exec_type = match mode[1] {
        0x00 => ExecType::Default,
        0x01 => ExecType::Try,
        _ => ExecType::Unsupported,
    };
    let mut reverts = (exec_type == ExecType::Unsupported).then_some(RevertReason::UnsupportedExecType);
    let calls = match call_type {
        ExecCallType::Single | ExecCallType::Static => {
            if call_type == ExecCallType::Static {
                reverts = Some(RevertReason::StaticCallType);
            }
            if exec.len() < 52 {
                return Err(DecodeError::TooShort {
                    what: "single execution",
                    len: exec.len(),
                    min: 52,
                });
            }
            let target = Address::from_slice(&exec[..20]);
            let value = U256::from_be_slice(&exec[20..52]);
            vec![Call::new(src, CallKind::Call, target, value, &exec[52..])]
        }
        ExecCallType::DelegateCall => {
            if exec.len() < 20 {
                return Err(DecodeError::TooShort {
                    what: "delegatecall execution",
                    len: exec.len(),
                    min: 20,
                });
            }
            let target = Address::from_slice(&exec[..20]);
            vec![Call::new(src, CallKind::DelegateCall, target, U256::ZERO, &exec[20..])]
        }
        ExecCallType::Batch => call_tuples(src, &Abi::new(exec, "batch execution"), 0, 0, Arith::Wrapping)?,
    };
    Ok((
        ExecMode {
            call_type,
            exec_type,
            raw: *mode,
        },
        calls,
        reverts,
    ))
}

/// `(address,uint256,bytes)[]` reached through the offset word at `at` (relative to `base`).
fn call_tuples(src: Source<'_>, abi: &Abi<'_>, base: usize, at: usize, arith: Arith) -> Result<Vec<Call>, DecodeError> {
    let array = abi.pointer(base, at, arith)?;
    abi.dynamic_array(array, arith)?
        .into_iter()
        .map(|c| {
            let target = abi.address(c)?;
            let value = abi.u256(c + 32)?;
            let data = abi.bytes_at(c, c + 64, arith)?;
            Ok(Call::new(src, CallKind::Call, target, value, data))
        })
        .collect()
}

/// SimpleAccount `executeBatch(address[],uint256[],bytes[])` or `(address[],bytes[])`.
fn simple_batch(src: Source<'_>, args: &Abi<'_>, with_values: bool) -> Result<Vec<Call>, DecodeError> {
    let args = args.named("executeBatch arrays");
    let dest = args.address_array(args.pointer(4, 4, Arith::Checked)?)?;
    let (values, func_at) = if with_values {
        let values = args.word_array(args.pointer(4, 36, Arith::Checked)?)?;
        (
            values.into_iter().map(|w| U256::from_be_bytes(w.0)).collect::<Vec<_>>(),
            68,
        )
    } else {
        (Vec::new(), 36)
    };
    let func = args.dynamic_array(args.pointer(4, func_at, Arith::Checked)?, Arith::Checked)?;
    // `require(dest.length == func.length && (value.length == 0 || value.length == func.length))`
    if dest.len() != func.len() || !(values.is_empty() || values.len() == func.len()) {
        return Err(DecodeError::InvalidValue {
            what: "executeBatch arrays",
            at: 4,
            expected: "matching array lengths",
        });
    }
    dest.iter()
        .zip(func)
        .enumerate()
        .map(|(i, (target, pos))| {
            let value = values.get(i).copied().unwrap_or(U256::ZERO);
            Ok(Call::new(src, CallKind::Call, *target, value, args.bytes(pos)?))
        })
        .collect()
}

/// Whether `call` targets the account itself or one of its modules (validators, signers,
/// policies, hooks): such calls reach admin functions or rewrite the account's auth state.
pub fn is_privileged(call: &Call, account: Address, modules: &[Address]) -> bool {
    call.target == account || modules.contains(&call.target)
}
