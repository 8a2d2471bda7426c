//! opgate's own guardrails, beyond what the chain enforces (spec §8 cases 1–4, 19). Each can be
//! relaxed only by a matching operator policy's `allow_*` key ([`Relaxations`]).
//!
//! For every op whose calls opgate decodes:
//!
//! - **one reading** (`allow_non_canonical_calldata`): the account entry point's arguments and a
//!   batch's `Execution[]` must be what the canonical ABI encoder writes; a call to a function
//!   whose ABI opgate knows (a built-in token function, an operator rule's `function`, a declared
//!   delegate) must carry exactly its encoding, so no extra bytes reach the target unchecked.
//! - **execution modes** (`allow_reverting_modes`): only call types single, batch and delegatecall
//!   with exec types default and try; the Kernel reverts on the others after validation, at the
//!   account's cost.
//!
//! For session keys (permission-validated ops):
//!
//! - **privileged calls** (`allow_privileged_calls`): call data other than `execute` (with or
//!   without the `executeUserOp` prefix) reaches the account's own functions; a call — direct,
//!   made by a declared delegate, or seen in simulation — to the account itself or any of its
//!   modules (validators, signers, policies, hooks) rewrites its authorisation.
//! - **delegatecall** (`allow_undeclared_delegatecalls`): runs foreign code with the account's
//!   storage. Allowed only when the owner granted that target for delegatecall (the session's
//!   CallPolicy) or an operator `call_type = "delegatecall"` rule names it, **and** its inner
//!   calls are checked like direct calls: because the chain simulates the op (every call is in
//!   the effects) or because the target is a declared `[[delegates]]` whose inner call is read
//!   from the delegatecall's arguments.

use alloy_primitives::Address;

use super::{hex_addr, Evaluation, OpContext, Reason, Rejection};
use crate::config::{OperatorPolicy, Relaxations, RuleCallType};
use crate::decode::calls::{CallKind, EXECUTE_USER_OP, KERNEL_EXECUTE};
use crate::decode::canonical::{check_params, known_function, FunctionAbi, Trailing};
use crate::decode::permission::{
    ECDSA_SIGNER, WEBAUTHN_SIGNER_V0_0_1, WEBAUTHN_SIGNER_V0_0_2, WEBAUTHN_SIGNER_V0_0_3, WEBAUTHN_SIGNER_V0_0_4,
};
use crate::decode::policy::{
    PermissionCallType, CALL_POLICY_V0_0_1, CALL_POLICY_V0_0_2, CALL_POLICY_V0_0_3, CALL_POLICY_V0_0_4,
    CALL_POLICY_V0_0_5, GAS_POLICY, RATE_LIMIT_POLICY, RATE_LIMIT_RESET_POLICY, SIGNATURE_POLICY, SUDO_POLICY,
    TIMESTAMP_POLICY,
};
use crate::decode::{init, multichain, Call, PolicyParams};

const POLICY: &str = "opgate";

/// Module contracts every Kernel account may use: calling them from the account changes its own
/// authorisation state (they key their state by caller).
pub(crate) const KNOWN_MODULES: [Address; 20] = [
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
/// (its permission's signer and policies, its validator, its root validator, its hooks) and those
/// the registry knows.
fn modules(ctx: &OpContext<'_>) -> Vec<Address> {
    let mut m = KNOWN_MODULES.to_vec();
    let real_hook = |h: &Address| *h != Address::ZERO && *h != Address::with_last_byte(1);
    if let Some(s) = ctx.session {
        m.push(s.permission.signer.contract);
        m.extend(s.permission.policies.iter().map(|p| p.address));
        m.extend(s.hook.filter(real_hook));
    }
    if let Some(a) = ctx.account {
        m.extend(a.root_validator);
        m.extend(a.validators.iter().copied());
        m.extend(a.modules.iter().copied());
    }
    if let Some(k) = ctx.kernel {
        if let Some(v) = k.nonce.as_ref().and_then(|n| n.validator) {
            m.push(v);
        }
        if let Some(d) = &k.deployment {
            m.extend(d.root_validator.as_ref().and_then(|r| r.address));
            m.extend(d.hook.filter(real_hook));
        }
        if let Some(e) = &k.enable {
            m.extend(Some(e.data.hook).filter(real_hook));
            m.extend(e.root_validator.as_ref().and_then(|r| r.address));
        }
    }
    m
}

fn invalid_calldata(rule: &str, detail: String) -> Rejection {
    Rejection::new(Reason::InvalidCallData, POLICY, rule, detail)
}

pub(crate) fn evaluate(ctx: &OpContext<'_>, matched: &[&OperatorPolicy], ev: &mut Evaluation) -> Result<(), Rejection> {
    let allow = Relaxations::any_of(matched.iter().copied());
    one_reading(ctx, matched, allow, ev)?;
    if ctx.is_session() {
        session(ctx, matched, allow, ev)?;
    }
    Ok(())
}

/// One reading of the bytes and the execution modes, for every op whose calls are decoded.
fn one_reading(
    ctx: &OpContext<'_>,
    matched: &[&OperatorPolicy],
    allow: Relaxations,
    ev: &mut Evaluation,
) -> Result<(), Rejection> {
    let Some(calls) = ctx.calls else {
        if let Some(k) = ctx.kernel {
            if let Some(e) = k.part_error("callData") {
                if !allow.non_canonical_calldata {
                    return Err(invalid_calldata(
                        "callData",
                        format!("the call data cannot be read as the Kernel reads it: {e}"),
                    ));
                }
            }
        }
        return Ok(());
    };
    if let (Some(defect), false) = (&calls.non_canonical, allow.non_canonical_calldata) {
        return Err(invalid_calldata(
            "canonicalEncoding",
            format!("{defect}: not what the canonical ABI encoder writes, so the bytes have more than one reading"),
        ));
    }
    if let (Some(why), false) = (calls.reverts, allow.reverting_modes) {
        let mode = calls.mode.as_ref().map(|m| m.raw.to_string()).unwrap_or_default();
        return Err(invalid_calldata(
            "executionMode",
            format!(
                "execute mode {mode} ({why:?}): the Kernel accepts it in validation, then reverts at the account's \
                 cost; only call types single, batch, delegatecall with exec types default or try are forwarded"
            ),
        ));
    }
    if !allow.non_canonical_calldata {
        let direct = calls.calls.iter().enumerate().map(|(i, c)| (format!("calls[{i}]"), c));
        let inner = ctx
            .delegated
            .iter()
            .filter_map(|d| d.call.as_ref().ok().map(|c| (format!("calls[{}].inner", d.via), c)));
        for (at, c) in direct.chain(inner) {
            if let Some(f) = known_abi(c, matched) {
                if let Err(d) = check_params(&f.inputs, &c.data[4..], Trailing::Refused) {
                    return Err(invalid_calldata(
                        "canonicalEncoding",
                        format!(
                            "{at} to {} is not exactly the encoding of {}: {d}",
                            hex_addr(c.target),
                            f.signature
                        ),
                    ));
                }
            }
        }
    }
    ev.pass(POLICY, "canonicalEncoding");
    Ok(())
}

/// The ABI opgate knows for `c`'s function: a matching operator rule's `function`, else the
/// built-in table. Delegatecalls are left to `[[delegates]]`.
fn known_abi<'a>(c: &Call, matched: &[&'a OperatorPolicy]) -> Option<&'a FunctionAbi> {
    if c.call_type != CallKind::Call {
        return None;
    }
    let sel = c.selector?;
    matched
        .iter()
        .flat_map(|p| p.calls.iter().flatten())
        .filter(|r| r.call_type == RuleCallType::Call && r.target.is_none_or(|t| t == c.target))
        .find_map(|r| r.function.as_ref().filter(|f| f.selector == sel))
        .or_else(|| known_function(sel))
}

fn session(
    ctx: &OpContext<'_>,
    matched: &[&OperatorPolicy],
    allow: Relaxations,
    ev: &mut Evaluation,
) -> Result<(), Rejection> {
    if allow.privileged_calls {
        ev.verdict(
            POLICY,
            "privilegedCalls",
            "skipped",
            Some("an operator policy allows privileged calls".into()),
        );
        return Ok(());
    }
    let data = ctx.op.call_data();
    let inner = match data.get(..4) {
        Some(s) if s == EXECUTE_USER_OP => data.get(4..8),
        other => other,
    };
    if inner != Some(&KERNEL_EXECUTE[..]) {
        let sel = inner
            .map(alloy_primitives::hex::encode_prefixed)
            .unwrap_or_else(|| "(none)".into());
        return Err(Rejection::new(
            Reason::PrivilegedCallDenied,
            POLICY,
            "privilegedCalls",
            format!(
                "a session key's call data must be execute(bytes32,bytes); selector {sel} calls the account's own \
                 functions"
            ),
        ));
    }
    let Some(calls) = ctx.calls else {
        return Ok(());
    };
    let sender = ctx.sender();
    let mods = modules(ctx);
    let privileged = |at: &str, target: Address| -> Result<(), Rejection> {
        if target != sender && !mods.contains(&target) {
            return Ok(());
        }
        let what = if target == sender {
            "the account itself"
        } else {
            "one of the account's modules"
        };
        Err(Rejection::new(
            Reason::PrivilegedCallDenied,
            POLICY,
            "privilegedCalls",
            format!(
                "{at} targets {} ({what}); session keys may not change the account's authorisation",
                hex_addr(target)
            ),
        ))
    };
    for (i, c) in calls.calls.iter().enumerate() {
        privileged(&format!("calls[{i}]"), c.target)?;
    }
    for d in ctx.delegated {
        match &d.call {
            Ok(c) => privileged(&format!("calls[{}].inner", d.via), c.target)?,
            Err(why) => return Err(invalid_calldata("delegates", why.clone())),
        }
    }
    if let Some((effects, _)) = ctx.simulated() {
        // The validation's own hook is called by the account on every op (`preCheck`/`postCheck`).
        let hook = ctx.session.and_then(|s| s.hook);
        for (i, c) in effects.calls.iter().enumerate().filter(|(_, c)| Some(c.target) != hook) {
            privileged(&format!("effects.calls[{i}]"), c.target)?;
        }
    }
    ev.pass(POLICY, "privilegedCalls");

    for (i, c) in calls.calls.iter().enumerate() {
        if c.call_type != CallKind::DelegateCall {
            continue;
        }
        if !delegatecall_granted(ctx, matched, c) {
            return Err(Rejection::new(
                Reason::DelegateCallDenied,
                POLICY,
                "delegatecall",
                format!(
                    "calls[{i}] delegatecalls {}: neither the session's CallPolicy nor an operator rule grants that \
                     target for delegatecall",
                    hex_addr(c.target)
                ),
            ));
        }
        let declared = ctx.delegated.iter().any(|d| d.via == i);
        if !declared && ctx.simulation.is_none() && !allow.undeclared_delegatecalls {
            return Err(Rejection::new(
                Reason::DelegateCallDenied,
                POLICY,
                "delegatecall",
                format!(
                    "calls[{i}] delegatecalls {}, whose inner calls nothing checks: the chain does not simulate ops \
                     and the target is not a declared [[delegates]] entry",
                    hex_addr(c.target)
                ),
            ));
        }
    }
    ev.pass(POLICY, "delegatecall");
    Ok(())
}

fn delegatecall_granted(ctx: &OpContext<'_>, matched: &[&OperatorPolicy], c: &Call) -> bool {
    let by_session = ctx.session.is_some_and(|s| {
        s.permission.policies.iter().any(|p| match &p.params {
            PolicyParams::Call { permissions } => permissions.iter().any(|perm| {
                perm.call_type == PermissionCallType::DelegateCall
                    && (perm.target == c.target || perm.target == Address::ZERO)
            }),
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
