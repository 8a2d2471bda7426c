//! opgate's own guardrails for session keys, beyond what the chain enforces (spec §8 cases 1, 3):
//!
//! - **privileged calls**: a session key calling the account itself (through `execute`, or by call
//!   data that is not `execute` at all, which Kernel dispatches to the account's own functions when
//!   the selector is granted) or any of its modules — validators, signers, policies, hooks — can
//!   rewrite the account's authorisation; on chain a wildcard-target permission or SudoPolicy lets
//!   it. Refused unless a matching operator policy sets `allow_privileged_calls = true`.
//! - **delegatecall**: runs foreign code with the account's storage. Allowed only when the session's
//!   CallPolicy grants that exact target as a delegatecall (the owner chose it), or a matching
//!   operator policy has a `call_type = "delegatecall"` call rule for it or allows privileged calls.

use alloy_primitives::Address;

use super::{hex_addr, Evaluation, OpContext, Reason, Rejection};
use crate::config::{OperatorPolicy, RuleCallType};
use crate::decode::calls::{CallKind, EXECUTE_USER_OP, KERNEL_EXECUTE};
use crate::decode::permission::{
    ECDSA_SIGNER, WEBAUTHN_SIGNER_V0_0_1, WEBAUTHN_SIGNER_V0_0_2, WEBAUTHN_SIGNER_V0_0_3, WEBAUTHN_SIGNER_V0_0_4,
};
use crate::decode::policy::{
    PermissionCallType, CALL_POLICY_V0_0_1, CALL_POLICY_V0_0_2, CALL_POLICY_V0_0_3, CALL_POLICY_V0_0_4,
    CALL_POLICY_V0_0_5, GAS_POLICY, RATE_LIMIT_POLICY, RATE_LIMIT_RESET_POLICY, SIGNATURE_POLICY, SUDO_POLICY,
    TIMESTAMP_POLICY,
};
use crate::decode::{init, multichain, PolicyParams};

const POLICY: &str = "opgate";

/// Module contracts every Kernel account may use: calling them from the account changes its own
/// authorisation state (they key their state by caller).
const KNOWN_MODULES: [Address; 20] = [
    init::ECDSA_VALIDATOR,
    init::ECDSA_VALIDATOR_V3_0,
    init::ECDSA_VALIDATOR_V2,
    multichain::MULTICHAIN_ECDSA_VALIDATOR,
    ECDSA_SIGNER,
    WEBAUTHN_SIGNER_V0_0_1,
    WEBAUTHN_SIGNER_V0_0_2,
    WEBAUTHN_SIGNER_V0_0_3,
    WEBAUTHN_SIGNER_V0_0_4,
    CALL_POLICY_V0_0_1,
    CALL_POLICY_V0_0_2,
    CALL_POLICY_V0_0_3,
    CALL_POLICY_V0_0_4,
    CALL_POLICY_V0_0_5,
    GAS_POLICY,
    RATE_LIMIT_POLICY,
    RATE_LIMIT_RESET_POLICY,
    SIGNATURE_POLICY,
    SUDO_POLICY,
    TIMESTAMP_POLICY,
];

/// The account's modules opgate can see: the known canonical ones plus those named by this op
/// (its permission's signer and policies, its validator, its root validator, its hooks).
fn modules(ctx: &OpContext<'_>) -> Vec<Address> {
    let mut m = KNOWN_MODULES.to_vec();
    if let Some(s) = ctx.session {
        m.push(s.permission.signer.contract);
        m.extend(s.permission.policies.iter().map(|p| p.address));
    }
    if let Some(k) = ctx.kernel {
        if let Some(v) = k.nonce.as_ref().and_then(|n| n.validator) {
            m.push(v);
        }
        if let Some(d) = &k.deployment {
            m.extend(d.root_validator.as_ref().and_then(|r| r.address));
            m.extend(d.hook.filter(|h| *h != Address::ZERO && *h != hook_sentinel()));
        }
        if let Some(e) = &k.enable {
            let h = e.data.hook;
            if h != Address::ZERO && h != hook_sentinel() {
                m.push(h);
            }
            m.extend(e.root_validator.as_ref().and_then(|r| r.address));
        }
    }
    m
}

/// `address(1)`: "installed, no hook".
fn hook_sentinel() -> Address {
    Address::with_last_byte(1)
}

pub(crate) fn evaluate(ctx: &OpContext<'_>, matched: &[&OperatorPolicy], ev: &mut Evaluation) -> Result<(), Rejection> {
    if !ctx.is_session() {
        return Ok(());
    }
    let privileged_ok = matched.iter().any(|p| p.allow_privileged_calls);
    let data = ctx.op.call_data();
    let outer = data.get(..4);
    let inner = match outer {
        Some(s) if s == EXECUTE_USER_OP => data.get(4..8),
        other => other,
    };
    if inner != Some(&KERNEL_EXECUTE[..]) && !privileged_ok {
        return Err(Rejection::new(
            Reason::PrivilegedCallDenied,
            POLICY,
            "privilegedCalls",
            "a session key's call data must be execute(bytes32,bytes); other selectors call the account's own \
             functions",
        ));
    }
    let Some(calls) = ctx.calls else {
        return Ok(());
    };
    let sender = ctx.sender();
    let mods = modules(ctx);
    for (i, c) in calls.calls.iter().enumerate() {
        let privileged = c.target == sender || mods.contains(&c.target);
        if privileged && !privileged_ok {
            let what = if c.target == sender {
                "the account itself"
            } else {
                "one of the account's modules"
            };
            return Err(Rejection::new(
                Reason::PrivilegedCallDenied,
                POLICY,
                "privilegedCalls",
                format!(
                    "calls[{i}] targets {} ({what}); session keys may not change the account's authorisation",
                    hex_addr(c.target)
                ),
            ));
        }
        if c.call_type == CallKind::DelegateCall && !privileged_ok && !delegatecall_granted(ctx, matched, c) {
            return Err(Rejection::new(
                Reason::DelegateCallDenied,
                POLICY,
                "delegatecall",
                format!(
                    "calls[{i}] delegatecalls {}: no CallPolicy permission names that target for delegatecall and no \
                     operator policy allows it",
                    hex_addr(c.target)
                ),
            ));
        }
    }
    ev.pass(POLICY, "privilegedCalls");
    Ok(())
}

fn delegatecall_granted(ctx: &OpContext<'_>, matched: &[&OperatorPolicy], c: &crate::decode::Call) -> bool {
    let by_session = ctx.session.is_some_and(|s| {
        s.permission.policies.iter().any(|p| match &p.params {
            PolicyParams::Call { permissions } if !p.skips_user_op() => permissions
                .iter()
                .any(|perm| perm.call_type == PermissionCallType::DelegateCall && perm.target == c.target),
            _ => false,
        })
    });
    let by_operator = matched.iter().any(|p| {
        p.calls.as_ref().is_some_and(|rules| {
            rules.iter().any(|r| {
                r.call_type == RuleCallType::DelegateCall
                    && r.target.is_some_and(|t| t == c.target)
                    && r.selector
                        .is_none_or(|s| Some(s) == c.selector || (s.is_zero() && c.data.is_empty()))
            })
        })
    });
    by_session || by_operator
}
