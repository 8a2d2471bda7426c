//! The EntryPoint side of a simulation: the `handleOps` call a bundler would send, and what the
//! EntryPoint's revert data and events say about the op.

use alloy_primitives::{Address, Bytes, Log, B256, U256};
use alloy_sol_types::{SolCall, SolError, SolEvent};

use super::effects::{Execution, Validation};
use crate::userop::abi::{IEntryPointV06, IEntryPointV07};
use crate::userop::UserOperation;

alloy_sol_types::sol! {
    /// `IEntryPoint.FailedOp`: validation refused (every version).
    error FailedOp(uint256 opIndex, string reason);
    /// `IEntryPoint.FailedOpWithRevert` (v0.7+): validation refused, with the inner revert data.
    error FailedOpWithRevert(uint256 opIndex, string reason, bytes inner);
    /// Kernel v3: a permission's policy refused the op.
    error PolicyFailed(uint256 i);
    /// `IEntryPoint.UserOperationEvent`.
    event UserOperationEvent(bytes32 indexed userOpHash, address indexed sender, address indexed paymaster, uint256 nonce, bool success, uint256 actualGasCost, uint256 actualGasUsed);
    /// `IEntryPoint.UserOperationRevertReason`.
    event UserOperationRevertReason(bytes32 indexed userOpHash, address indexed sender, uint256 nonce, bytes revertReason);
}

/// `handleOps([op], beneficiary)` for the op's EntryPoint version.
pub(crate) fn handle_ops(op: &UserOperation, beneficiary: Address) -> Bytes {
    match op {
        UserOperation::V06(v) => IEntryPointV06::handleOpsCall {
            ops: vec![v.to_abi()],
            beneficiary,
        }
        .abi_encode()
        .into(),
        UserOperation::V07(v) | UserOperation::V08(v) => IEntryPointV07::handleOpsCall {
            ops: vec![v.to_packed()],
            beneficiary,
        }
        .abi_encode()
        .into(),
    }
}

/// Gas for the `handleOps` transaction: enough for every limit the op sets (the EntryPoint checks
/// that the inner call has what the op asked for), within the block's limit.
pub(crate) fn tx_gas(op: &UserOperation, block_gas_limit: u64) -> u64 {
    let v06_paymaster = match op {
        UserOperation::V06(v) if v.paymaster().is_some() => op.verification_gas_limit().saturating_mul(U256::from(2)),
        _ => U256::ZERO,
    };
    let total = op
        .pre_verification_gas()
        .saturating_add(op.verification_gas_limit())
        .saturating_add(op.call_gas_limit())
        .saturating_add(op.paymaster_verification_gas_limit())
        .saturating_add(op.paymaster_post_op_gas_limit())
        .saturating_add(v06_paymaster);
    let want = total.saturating_mul(U256::from(11)) / U256::from(10) + U256::from(300_000u64);
    let cap = block_gas_limit.clamp(1_000_000, 1 << 24);
    u64::try_from(want).unwrap_or(u64::MAX).min(cap)
}

/// Splits `AA24 signature error` into (`AA24`, the whole reason).
fn aa_code(reason: &str) -> Option<String> {
    let code = reason.get(..4)?;
    (code.starts_with("AA") && code[2..].bytes().all(|b| b.is_ascii_digit())).then(|| code.to_string())
}

/// `validationData` → (signature failed, validAfter, validUntil).
pub(crate) fn unpack_validation_data(d: U256) -> (bool, u64, u64) {
    let authorizer = d & ((U256::from(1) << 160) - U256::from(1));
    let mask = U256::from(0xffff_ffff_ffffu64);
    let until: u64 = ((d >> 160usize) & mask).to();
    let after: u64 = ((d >> 208usize) & mask).to();
    (authorizer == U256::from(1), after, until)
}

/// Kernel's `PolicyFailed(i)` anywhere at the start of `data`.
fn policy_failed(data: &[u8]) -> Option<u64> {
    PolicyFailed::abi_decode(data).ok().map(|e| e.i.saturating_to::<u64>())
}

/// The validation outcome from the transaction's revert data (when `handleOps` reverted) and what
/// the account's `validateUserOp` returned or reverted with.
pub(crate) fn validation(
    handle_ops_revert: Option<&Bytes>,
    validation_data: Option<U256>,
    account_revert: Option<&Bytes>,
) -> Validation {
    let mut v = Validation::default();
    if let Some(d) = validation_data {
        let (sig, after, until) = unpack_validation_data(d);
        v.signature_failed = sig;
        v.valid_after = after;
        v.valid_until = until;
    }
    v.kernel_policy_failed = account_revert.and_then(|r| policy_failed(r));
    let Some(revert) = handle_ops_revert else {
        v.ok = true;
        return v;
    };
    if let Ok(e) = FailedOpWithRevert::abi_decode(revert) {
        v.kernel_policy_failed = v.kernel_policy_failed.or_else(|| policy_failed(&e.inner));
        v.code = aa_code(&e.reason);
        v.reason = Some(e.reason);
        v.revert_data = Some(e.inner);
    } else if let Ok(e) = FailedOp::abi_decode(revert) {
        v.code = aa_code(&e.reason);
        v.reason = Some(e.reason);
        v.revert_data = account_revert.cloned();
    } else {
        v.reason = Some(format!("handleOps reverted: {}", revert_reason(revert)));
        v.revert_data = Some(revert.clone());
    }
    if v.code.as_deref() == Some("AA24") {
        v.signature_failed = true;
    }
    v
}

/// A revert reason for people: `Error(string)` and panics decoded, anything else as hex.
pub(crate) fn revert_reason(data: &[u8]) -> String {
    if data.is_empty() {
        return "(no data)".into();
    }
    if let Some(r) = policy_failed(data) {
        return format!("PolicyFailed({r})");
    }
    alloy_sol_types::decode_revert_reason(data).unwrap_or_else(|| alloy_primitives::hex::encode_prefixed(data))
}

/// The execution outcome from the logs of a `handleOps` that went through.
pub(crate) fn execution(logs: &[Log], entry_point: Address, hash: B256) -> Option<Execution> {
    let mut out = None;
    let mut reason = None;
    for log in logs.iter().filter(|l| l.address == entry_point) {
        let topics = log.data.topics();
        if topics.get(1) != Some(&hash) {
            continue;
        }
        if topics[0] == UserOperationEvent::SIGNATURE_HASH {
            if let Ok(e) = UserOperationEvent::decode_log_data(&log.data) {
                out = Some(Execution {
                    success: e.success,
                    revert_reason: None,
                    gas_used: e.actualGasUsed,
                    actual_cost: e.actualGasCost,
                });
            }
        } else if topics[0] == UserOperationRevertReason::SIGNATURE_HASH {
            if let Ok(e) = UserOperationRevertReason::decode_log_data(&log.data) {
                reason = Some(revert_reason(&e.revertReason));
            }
        }
    }
    out.map(|mut e| {
        if !e.success {
            e.revert_reason = reason.or_else(|| Some("(no data)".into()));
        }
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_data_unpacks() {
        let d = (U256::from(200u64) << 208) | (U256::from(100u64) << 160) | U256::from(1);
        assert_eq!(unpack_validation_data(d), (true, 200, 100));
        assert_eq!(unpack_validation_data(U256::ZERO), (false, 0, 0));
    }

    #[test]
    fn failed_op_is_decoded() {
        let data: Bytes = FailedOp {
            opIndex: U256::ZERO,
            reason: "AA24 signature error".into(),
        }
        .abi_encode()
        .into();
        let v = validation(Some(&data), None, None);
        assert!(!v.ok && v.signature_failed);
        assert_eq!(v.code.as_deref(), Some("AA24"));
        let inner: Bytes = PolicyFailed { i: U256::from(1) }.abi_encode().into();
        let data: Bytes = FailedOpWithRevert {
            opIndex: U256::ZERO,
            reason: "AA23 reverted".into(),
            inner,
        }
        .abi_encode()
        .into();
        let v = validation(Some(&data), None, None);
        assert_eq!((v.code.as_deref(), v.kernel_policy_failed), (Some("AA23"), Some(1)));
    }
}
