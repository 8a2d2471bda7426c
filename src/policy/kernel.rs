//! A session key's own Kernel permission, evaluated with the deployed contracts' semantics
//! (spec §2.3, §4, §8): the permission flag, the policy-signature segments, each installed policy
//! in order (CallPolicy 0.0.1–0.0.5, GasPolicy, RateLimitPolicy and its reset variant,
//! TimestampPolicy, SudoPolicy, SignaturePolicy), the signer, and the selector grant.
//!
//! Stateful policies (GasPolicy's remaining allowance, RateLimitPolicy's schedule) are mirrored by
//! counters keyed by chain, account, permission id and policy index; they are planned here and
//! checked by the store in the same atomic step as every other counter. They track the ops that
//! went through opgate; ops sent around it consume the on-chain state without opgate seeing them.

use alloy_primitives::{keccak256, Address, FixedBytes, U256};

use super::words::word_at;
use super::{hex_addr, ChargeOrigin, Evaluation, NodeView, OpContext, Planned, Reason, Rejection, Settings};
use crate::accounts::{OnChain, OnChainValidation};
use crate::config::{OnError, Relaxations};
use crate::decode::calls::{ExecCallType, EXECUTE_USER_OP, KERNEL_EXECUTE};
use crate::decode::ecdsa::{matching_scheme, recover, recover_eip191};
use crate::decode::enable::{enable_digest, EnableDomain};
use crate::decode::init::{RootKind, ECDSA_VALIDATOR, ECDSA_VALIDATOR_V3_0};
use crate::decode::kernel::REPLAYABLE_PREFIX;
use crate::decode::multichain::{approver, MultiChainSignature, MULTICHAIN_ECDSA_VALIDATOR};
use crate::decode::permission::SignerKind;
use crate::decode::policy::PermissionCallType;
use crate::decode::signature::strip_replayable;
use crate::decode::{
    assign_inner_policy_signatures, CallPermission, KernelDecoded, ParamCondition, ParamRule, PolicyParams,
    ValidationMode, ValidationType,
};
use crate::decode::{decode_multichain_signature, verify_merkle_proof, DecodeError, KernelVersion};
use crate::store::{Charge, Scope, Window};
use crate::userop::EntryPointVersion;

/// The `policy` name of a Kernel policy: `session:call`, `session:gas`, ….
pub fn policy_name(params: &PolicyParams) -> &'static str {
    match params {
        PolicyParams::Call { .. } => "session:call",
        PolicyParams::Gas { .. } => "session:gas",
        PolicyParams::RateLimit { .. } => "session:rate-limit",
        PolicyParams::RateLimitReset { .. } => "session:rate-limit-reset",
        PolicyParams::Timestamp { .. } => "session:timestamp",
        PolicyParams::Sudo => "session:sudo",
        PolicyParams::SignatureCaller { .. } => "session:signature-caller",
        PolicyParams::Unknown { .. } => "session:unknown",
        PolicyParams::Invalid { .. } => "session:invalid",
    }
}

const SESSION: &str = "session";

/// The counter mirroring the state of policy `index` of permission `pid` (`what`: `gas`, `rate`,
/// `rate-reset`).
pub fn session_counter(chain_id: u64, account: Address, pid: FixedBytes<4>, index: usize, what: &str) -> String {
    format!("k:{chain_id}:{}:{pid}:{index}:{what}", hex_addr(account))
}

/// Checks what a Kernel op's validation checks — for every validation type — and, for session
/// keys, each policy as declared (unless an operator policy allows the chain's gaps).
pub(crate) fn evaluate(
    ctx: &OpContext<'_>,
    settings: &Settings<'_>,
    allow: Relaxations,
    ev: &mut Evaluation,
) -> Result<(), Rejection> {
    let Some(k) = ctx.kernel else {
        return Ok(());
    };
    let Some(n) = &k.nonce else {
        let why = k
            .part_error("nonce")
            .map(|e| e.to_string())
            .unwrap_or_else(|| "it cannot be decoded".into());
        return Err(Rejection::new(
            Reason::InvalidNonce,
            SESSION,
            "nonce.validationType",
            format!("{why}: the Kernel cannot validate the op"),
        ));
    };
    if let Some(e) = k.errors.iter().find(|e| {
        matches!(
            e.error,
            DecodeError::BadSize {
                what: REPLAYABLE_PREFIX,
                ..
            }
        )
    }) {
        // Kernel v3.0/v3.1 do not strip the replayable prefix: the op cannot validate.
        return Err(Rejection::new(
            Reason::InvalidSignature,
            SESSION,
            "signature.replayable",
            format!(
                "{}: the account's Kernel release reads the prefix as signature bytes",
                e.error
            ),
        ));
    }
    match ctx.node {
        NodeView::Failed { error, refuse: true } => {
            return Err(Rejection::new(
                Reason::SimulationUnavailable,
                "node",
                "accountState",
                format!("the account's state could not be read from the chain's node ({error}); nothing was relayed"),
            ))
        }
        NodeView::Failed { error, refuse: false } => ev.verdict(
            "node",
            "accountState",
            "not-evaluated",
            Some(format!(
                "the account's state could not be read from the chain's node ({error}); decided on what opgate \
                 learned (on_sim_error = allow)"
            )),
        ),
        NodeView::Read(c) => ev.verdict(
            "node",
            "accountState",
            "pass",
            Some(format!("read at block {}", c.block)),
        ),
        NodeView::None => {}
    }
    if k.replayable && !allow.cross_chain_replay {
        plan_replay_guard(ctx, settings, ev);
    }
    if n.mode == ValidationMode::Enable {
        enable_approval(ctx, k, ev)?;
    }
    match n.validation_type {
        ValidationType::Root => return root(ctx, k, ev),
        ValidationType::Validator => return validator(ctx, k, settings, ev),
        ValidationType::Permission => {}
    }
    let on_chain = match ctx.node {
        NodeView::Read(c) => c.validation.as_ref().map(|v| (c, v)),
        _ => None,
    };
    match on_chain {
        Some((c, v)) => lifecycle(ctx, k, n.mode, c, v, ev)?,
        None if n.mode == ValidationMode::Enable => reinstall(ctx, k)?,
        None => {}
    }
    let pid = n.permission_id.unwrap_or_default();
    let Some(s) = ctx.session else {
        if let Some(r) = ctx
            .registered
            .filter(|r| r.stored.uninstalled && n.mode == ValidationMode::Default)
        {
            return Err(Rejection::new(
                Reason::Revoked,
                SESSION,
                "uninstalled",
                match r.stored.pending {
                    Some(p) if r.stored.waiting(ctx.now) => format!(
                        "the owner's op uninstalling permission {pid} ({}) was relayed and is on its way; the key is \
                         revoked",
                        p.op
                    ),
                    _ => format!("permission {pid} was uninstalled by the owner (uninstallValidation)"),
                },
            ));
        }
        let detail = format!(
            "permission {pid} of account {} is not known to opgate: it was not enabled through it and \
             was not registered",
            hex_addr(ctx.sender())
        );
        if settings.unknown_permission == OnError::Reject {
            return Err(Rejection::new(Reason::UnknownPermission, SESSION, "registry", detail));
        }
        ev.verdict(SESSION, "registry", "not-evaluated", Some(detail));
        return Ok(());
    };
    let p = s.permission;
    if let (Some(installed), Some(from)) = (s.enable_nonce, ctx.account.and_then(|a| a.valid_nonce_from)) {
        if installed < from {
            return Err(Rejection::new(
                Reason::Revoked,
                SESSION,
                "validNonceFrom",
                format!(
                    "permission {pid} was installed at nonce {installed}; the owner invalidated every non-root \
                     validation below nonce {from} (invalidateNonce), so the Kernel refuses it (InvalidNonce)"
                ),
            ));
        }
    }
    if p.skips_user_op() {
        return Err(Rejection::new(
            Reason::PermissionNotForUserOps,
            SESSION,
            "permissionFlag",
            format!("permission {pid} is flagged {} (not for UserOperations)", p.flag),
        ));
    }
    if let Some(stub) = &k.stub {
        return Err(Rejection::new(
            Reason::InvalidSignature,
            SESSION,
            "signature",
            format!("the signature is an SDK stub ({stub:?}) for gas estimation, not a signature"),
        ));
    }
    let assignment = match &k.policy_signatures {
        Some(a) => Ok(a.clone()),
        None => {
            let (_, inner) = strip_replayable(ctx.op.signature());
            let inner = if n.mode == ValidationMode::Enable {
                k.enable
                    .as_ref()
                    .map(|e| e.data.user_op_sig.to_vec())
                    .unwrap_or_default()
            } else {
                inner.to_vec()
            };
            assign_inner_policy_signatures(&inner, p.policies.len())
        }
    };
    let assignment = assignment.map_err(|e| {
        Rejection::new(
            Reason::InvalidSignature,
            SESSION,
            "signature.policySegments",
            format!("the permission signature cannot be split into policy segments: {e}"),
        )
    })?;
    ev.pass(SESSION, "signature.policySegments");

    let mut valid_after = 0u64;
    let mut valid_until = u64::MAX;
    for (i, policy) in p.policies.iter().enumerate() {
        let name = policy_name(&policy.params);
        let rule = format!("policies[{i}]");
        if policy.skips_user_op() {
            if allow.policy_gaps {
                ev.verdict(
                    name,
                    rule,
                    "skipped",
                    Some(format!("flag {} skips UserOperations", policy.flag)),
                );
                continue;
            }
            // The chain never calls a SKIP_USEROP policy for ops; opgate enforces what it declares.
            ev.verdict(
                name,
                format!("{rule}.flag"),
                "pass",
                Some(format!(
                    "flag {} makes the chain skip this policy for UserOperations; opgate enforces it as declared",
                    policy.flag
                )),
            );
        }
        match &policy.params {
            PolicyParams::Call { permissions } => {
                let version = policy.version.unwrap_or("0.0.4");
                // A CallPolicy the chain skips never sees the call data, so the executeUserOp
                // prefix does not make it revert; opgate checks its rules on the calls.
                call_policy(ctx, k, version, permissions, &rule, policy.skips_user_op())?;
                inner_calls(ctx, version, permissions, &rule)?;
                ev.pass(name, rule);
            }
            PolicyParams::Gas {
                allowed,
                enforce_paymaster,
                allowed_paymaster,
            } => {
                let chain_amount = gas_policy_amount(ctx).ok_or_else(|| {
                    Rejection::new(
                        Reason::GasBudgetExceeded,
                        name,
                        &rule,
                        "the op's gas limits times maxFeePerGas overflow (GasPolicy reverts)",
                    )
                })?;
                if *enforce_paymaster && !allowed_paymaster.is_zero() && ctx.op.paymaster() != Some(*allowed_paymaster)
                {
                    return Err(Rejection::new(
                        Reason::PaymasterNotAllowed,
                        name,
                        rule,
                        format!("GasPolicy requires paymaster {}", hex_addr(*allowed_paymaster)),
                    ));
                }
                if *enforce_paymaster
                    && allowed_paymaster.is_zero()
                    && ctx.op.paymaster().is_none()
                    && !allow.policy_gaps
                {
                    return Err(Rejection::new(
                        Reason::PaymasterNotAllowed,
                        name,
                        rule,
                        "GasPolicy enforces a paymaster (any) and the op pays for itself; the chain's GasPolicy \
                         skips this check when allowedPaymaster is 0, opgate does not",
                    ));
                }
                // The contract counts (pvg + vgl + cgl) · maxFeePerGas; what the op may cost also
                // includes the paymaster's verification and post-op gas, which a sponsored key
                // could otherwise spend beyond its budget.
                let amount = if allow.policy_gaps {
                    chain_amount
                } else {
                    ctx.op.max_gas_cost().max(chain_amount)
                };
                let allowed = U256::from(*allowed);
                if amount > allowed {
                    return Err(Rejection::new(
                        Reason::GasBudgetExceeded,
                        name,
                        rule,
                        format!(
                            "the op's maximum gas cost {amount} wei (paymaster gas limits included) exceeds the \
                             GasPolicy allowance {allowed} wei"
                        ),
                    ));
                }
                plan(
                    ev,
                    ctx,
                    i,
                    "gas",
                    amount,
                    allowed,
                    Window::Lifetime,
                    name,
                    &rule,
                    Reason::GasBudgetExceeded,
                    settings,
                );
                ev.pass(name, rule);
            }
            PolicyParams::RateLimit {
                interval,
                count,
                start_at,
            } => {
                if *count == 0 {
                    return Err(Rejection::new(
                        Reason::RateLimited,
                        name,
                        rule,
                        "RateLimitPolicy allows 0 ops",
                    ));
                }
                let window = Window::Schedule {
                    start_at: *start_at,
                    interval: *interval,
                };
                plan(
                    ev,
                    ctx,
                    i,
                    "rate",
                    U256::from(1),
                    U256::from(*count),
                    window,
                    name,
                    &rule,
                    Reason::RateLimited,
                    settings,
                );
                ev.pass(name, rule);
            }
            PolicyParams::RateLimitReset {
                interval,
                initial_count,
            } => {
                if *initial_count == 0 || *interval == 0 {
                    return Err(Rejection::new(
                        Reason::RateLimited,
                        name,
                        rule,
                        "RateLimitPolicy (reset) allows 0 ops per period",
                    ));
                }
                let window = Window::Anchored { period: *interval };
                plan(
                    ev,
                    ctx,
                    i,
                    "rate-reset",
                    U256::from(1),
                    U256::from(*initial_count),
                    window,
                    name,
                    &rule,
                    Reason::RateLimited,
                    settings,
                );
                ev.pass(name, rule);
            }
            PolicyParams::Timestamp {
                valid_after: after,
                valid_until: until,
            } => {
                valid_after = valid_after.max(*after);
                if *until != 0 {
                    valid_until = valid_until.min(*until);
                }
                ev.pass(name, rule);
            }
            PolicyParams::Sudo | PolicyParams::SignatureCaller { .. } => ev.pass(name, rule),
            PolicyParams::Unknown { .. } => ev.verdict(
                name,
                rule,
                "not-evaluated",
                Some(format!(
                    "{} is not a known policy; the chain will evaluate it",
                    hex_addr(policy.address)
                )),
            ),
            PolicyParams::Invalid { error, .. } => {
                return Err(Rejection::new(
                    Reason::InvalidPermission,
                    name,
                    rule,
                    format!("the policy's install data is invalid ({error}); its install reverts"),
                ))
            }
        }
    }
    time_window(ctx, valid_after, valid_until)?;
    signer(ctx, k, p, &assignment.signer_signature, ev)?;
    hook_gate(ctx, s.has_hook())?;
    selector_gate(ctx, s.selectors, s.has_hook())?;
    Ok(())
}

/// The chain-agnostic hash of a replayable op is charged once, on whichever chain relays it
/// first: the counter is shared by every chain, so the same op sent on another chain is refused.
fn plan_replay_guard(ctx: &OpContext<'_>, settings: &Settings<'_>, ev: &mut Evaluation) {
    let Some(hash) = ctx.op.replayable_hash(ctx.entry_point) else {
        return;
    };
    ev.charges.push(Planned {
        charge: Charge {
            counter: replay_counter(hash),
            // Not the account's: a marker any chain's relay of the op finds.
            scope: Scope::Shared,
            amount: U256::from(1),
            limit: U256::from(1),
            window: Window::Lifetime,
        },
        origin: ChargeOrigin {
            unit: super::Unit::Count,
            policy: "opgate".into(),
            rule: "crossChainReplay".into(),
            reason: Reason::CrossChainReplay,
            on_error: settings.store_on_error,
        },
    });
}

/// The counter that remembers a relayed chain-agnostic op (no chain id in it: shared by all).
pub fn replay_counter(chain_agnostic_hash: alloy_primitives::B256) -> String {
    format!("replay:{chain_agnostic_hash}")
}

/// A permission op checked against the account as the chain has it (`validationConfig`,
/// `permissionConfig`, `validNonceFrom`, the selector grant), over what opgate learned:
/// - default mode: the permission must be installed (else `Revoked`, or `UnknownPermission` while
///   the op that installs it is on its way), installed at or above `validNonceFrom` (`Revoked`),
///   with the signer and policies opgate enforces (else it was re-issued outside opgate, whose
///   policies opgate does not know: `UnknownPermission`), and granted the gated selector;
/// - enable mode: an id installed with another signer or other policies is refused
///   (`InvalidPermission`) unless `invalidateNonce` killed it; on v3.0–v3.2 the same id at the
///   current nonce reverts on chain; an id the chain no longer has, enabled again with the
///   approval opgate saw for it, is the revoked key coming back (`Revoked`).
fn lifecycle(
    ctx: &OpContext<'_>,
    k: &KernelDecoded,
    mode: ValidationMode,
    c: &OnChain,
    v: &OnChainValidation,
    ev: &mut Evaluation,
) -> Result<(), Rejection> {
    let pid = ctx.permission_id().unwrap_or_default();
    let account = hex_addr(ctx.sender());
    let at = format!("block {}, read from the node", c.block);
    let dead = c.valid_nonce_from.filter(|from| v.installed() && v.nonce < *from);
    let known = ctx.registered;
    if mode == ValidationMode::Enable {
        let Some(e) = k.enable.as_ref() else { return Ok(()) };
        // The owner's uninstall op, relayed through opgate, is on its way: the chain runs it
        // before this op's re-issue (its nonce came first).
        let uninstalling = known.is_some_and(|r| r.stored.uninstalled && r.stored.waiting(ctx.now));
        if v.installed() && dead.is_none() && !uninstalling {
            if let (Some(p), Some(installed)) = (k.permission.as_ref(), v.permission.as_ref()) {
                if let Some(m) = installed.mismatch(p) {
                    return Err(Rejection::new(
                        Reason::InvalidPermission,
                        SESSION,
                        "enable.reinstall",
                        format!(
                            "permission {pid} is installed on account {account} with another signer or other policies \
                             ({m}; {at}); a live permission id is not re-issued until the owner uninstalls it or \
                             invalidates its nonce"
                        ),
                    ));
                }
            }
            let version = e.kernel_version.or(c.kernel_version);
            if version.is_some_and(|v| v < KernelVersion::V3_3) && c.current_nonce == Some(v.nonce) {
                return Err(Rejection::new(
                    Reason::InvalidPermission,
                    SESSION,
                    "enable.reinstall",
                    format!(
                        "permission {pid} is live on account {account} at nonce {} ({at}); Kernel {} cannot install \
                         it again (InvalidNonce) until the owner uninstalls it or moves the nonce",
                        v.nonce,
                        version.map(|v| v.domain_version()).unwrap_or_default()
                    ),
                ));
            }
        }
        if !v.installed() {
            if let Some(r) = known.filter(|r| !r.stored.waiting(ctx.now)) {
                if e.data.validator_data == r.stored.validator_data && e.digest_nonce == r.stored.enable_nonce {
                    return Err(Rejection::new(
                        Reason::Revoked,
                        SESSION,
                        "enable.uninstalled",
                        format!(
                            "permission {pid} is no longer installed on account {account} ({at}): the owner \
                             uninstalled it, and this is its old enable approval sent again"
                        ),
                    ));
                }
            }
        }
        ev.pass(SESSION, "onChain");
        return Ok(());
    }
    if !v.installed() {
        return Err(match known {
            Some(r) if !r.stored.uninstalled && r.stored.waiting(ctx.now) => Rejection::new(
                Reason::UnknownPermission,
                SESSION,
                "onChain.installed",
                format!(
                    "permission {pid} is not installed on account {account} yet ({at}): the op that installs it \
                     ({}) is not included; its ops validate once it is",
                    r.stored.pending.map(|p| p.op.to_string()).unwrap_or_default()
                ),
            ),
            Some(_) => Rejection::new(
                Reason::Revoked,
                SESSION,
                "onChain.installed",
                format!("permission {pid} is not installed on account {account} ({at}): the owner uninstalled it"),
            ),
            None => Rejection::new(
                Reason::UnknownPermission,
                SESSION,
                "onChain.installed",
                format!("permission {pid} is not installed on account {account} ({at})"),
            ),
        });
    }
    if let Some(from) = dead {
        return Err(Rejection::new(
            Reason::Revoked,
            SESSION,
            "validNonceFrom",
            format!(
                "permission {pid} was installed at nonce {}; the owner invalidated every non-root validation below \
                 nonce {from} (invalidateNonce; {at}), so the Kernel refuses it (InvalidNonce)",
                v.nonce
            ),
        ));
    }
    if let Some(r) = known {
        if r.stored.uninstalled && r.stored.waiting(ctx.now) {
            return Err(Rejection::new(
                Reason::Revoked,
                SESSION,
                "uninstalled",
                format!(
                    "the owner's op uninstalling permission {pid} ({}) was relayed and is on its way; the key is \
                     revoked",
                    r.stored.pending.map(|p| p.op.to_string()).unwrap_or_default()
                ),
            ));
        }
        if let Some(m) = v.permission.as_ref().and_then(|p| p.mismatch(&r.permission)) {
            return Err(Rejection::new(
                Reason::UnknownPermission,
                SESSION,
                "onChain.permission",
                format!(
                    "permission {pid} is installed on account {account} with other policies than opgate knows ({m}; \
                     {at}): it was re-issued outside opgate, and its new policies are not known here"
                ),
            ));
        }
    }
    if let Some((sel, false)) = v.selector {
        return Err(Rejection::new(
            Reason::SelectorNotGranted,
            SESSION,
            "selector",
            format!("selector {sel} is not granted to permission {pid} on account {account} ({at})"),
        ));
    }
    ev.pass(SESSION, "onChain");
    Ok(())
}

/// Enabling a permission id that is live on the account: refused with another signer or other
/// policies (every release), and on Kernel v3.0–v3.2 at the account's current nonce, which
/// reverts (`InvalidNonce`). After the owner uninstalled the id, its old approval sent again is
/// refused and a fresh one forwarded; after `invalidateNonce`, a re-issue is forwarded.
fn reinstall(ctx: &OpContext<'_>, k: &KernelDecoded) -> Result<(), Rejection> {
    let Some(prev) = ctx.previous else {
        return Ok(());
    };
    let enable = k.enable.as_ref();
    let version = enable.and_then(|e| e.kernel_version);
    let current = ctx.account.and_then(|a| a.current_nonce).unwrap_or(1);
    if prev.stored.uninstalled {
        // A fresh approval by the owner re-issues the id; the very approval of the permission the
        // owner uninstalled, sent again, is the revoked key trying to come back.
        let same = enable.is_some_and(|e| {
            e.data.validator_data == prev.stored.validator_data && e.digest_nonce == prev.stored.enable_nonce
        });
        if same {
            return Err(Rejection::new(
                Reason::Revoked,
                SESSION,
                "enable.uninstalled",
                format!(
                    "permission {} was uninstalled by the owner; this is its old enable approval sent again",
                    ctx.permission_id().unwrap_or_default()
                ),
            ));
        }
        return Ok(());
    }
    let valid_from = ctx.account.and_then(|a| a.valid_nonce_from);
    if let (Some(installed), Some(from)) = (prev.stored.enable_nonce, valid_from) {
        if installed < from {
            // The owner's invalidateNonce killed it: re-issuing the id at the new nonce is theirs.
            return Ok(());
        }
    }
    if enable.is_some_and(|e| e.data.validator_data != prev.stored.validator_data) {
        // A live id re-enabled with another signer or other policies: on v3.0–v3.2 the chain
        // refuses it; on v3.3 the re-install reaches modules that still hold the old session's
        // state. Either way the owner uninstalls (or invalidates) first.
        return Err(Rejection::new(
            Reason::InvalidPermission,
            SESSION,
            "enable.reinstall",
            format!(
                "permission {} is installed on the account with another signer or other policies; a live \
                 permission id is not re-issued until the owner uninstalls it or invalidates its nonce",
                ctx.permission_id().unwrap_or_default()
            ),
        ));
    }
    if version.is_some_and(|v| v < KernelVersion::V3_3) && prev.stored.enable_nonce == Some(current) {
        return Err(Rejection::new(
            Reason::InvalidPermission,
            SESSION,
            "enable.reinstall",
            format!(
                "permission {} is live on the account at nonce {current}; Kernel {} cannot install it again \
                 (InvalidNonce) until the owner uninstalls it or moves the nonce",
                ctx.permission_id().unwrap_or_default(),
                version.map(|v| v.domain_version()).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Root-validated ops: signed by the root owner whenever opgate knows it.
fn root(ctx: &OpContext<'_>, k: &KernelDecoded, ev: &mut Evaluation) -> Result<(), Rejection> {
    let root = k.deployment.as_ref().and_then(|d| d.root_validator.as_ref());
    let eip7702 = ctx.account.is_some_and(|a| a.eip7702) || is_kernel_7702(ctx);
    let owner = if eip7702 {
        Some(ctx.sender())
    } else {
        root.and_then(|r| r.owner)
            .or_else(|| ctx.account.and_then(|a| a.root_owner))
    };
    let kind = root.map(|r| r.kind).or(ctx.account.map(|a| {
        if a.root_validator == Some(MULTICHAIN_ECDSA_VALIDATOR) {
            RootKind::MultiChainEcdsa
        } else if a.root_validator.is_some() || a.root_owner.is_some() {
            RootKind::Ecdsa
        } else {
            RootKind::Unknown
        }
    }));
    let (Some(owner), Some(kind)) = (owner, kind.or(eip7702.then_some(RootKind::Ecdsa))) else {
        ev.verdict(
            SESSION,
            "root.signature",
            "not-evaluated",
            Some("the account's root owner is not known here; the chain will check the signature".into()),
        );
        return Ok(());
    };
    if let Some(stub) = &k.stub {
        return Err(Rejection::new(
            Reason::InvalidSignature,
            SESSION,
            "root.signature",
            format!("the signature is an SDK stub ({stub:?}) for gas estimation, not a signature"),
        ));
    }
    let hash = if k.replayable {
        ctx.op.replayable_hash(ctx.entry_point).unwrap_or(ctx.hash)
    } else {
        ctx.hash
    };
    let (_, outer) = strip_replayable(ctx.op.signature());
    // In enable mode the root's user-op signature is the enable wrapper's last field.
    let sig: &[u8] = k.enable.as_ref().map_or(outer, |e| &e.data.user_op_sig[..]);
    let ok = match kind {
        // The 7702 root accepts only EIP-191(userOpHash).
        _ if eip7702 => recover_eip191(&hash, sig).ok() == Some(owner),
        RootKind::Ecdsa => recover_eip191(&hash, sig).ok() == Some(owner) || recover(&hash, sig).ok() == Some(owner),
        RootKind::MultiChainEcdsa => match k
            .multichain_signature
            .clone()
            .or_else(|| decode_multichain_signature(sig, true).ok())
            .as_ref()
        {
            Some(form @ MultiChainSignature::Plain { .. }) => {
                approver(form, Some(hash), Some(owner)).ok().flatten().map(|(a, _)| a) == Some(owner)
            }
            Some(form @ MultiChainSignature::Merkle { merkle_root, proof, .. }) => {
                verify_merkle_proof(hash, proof, *merkle_root)
                    && approver(form, Some(hash), Some(owner)).ok().flatten().map(|(a, _)| a) == Some(owner)
            }
            _ => false,
        },
        RootKind::Permission | RootKind::Unknown => {
            ev.verdict(
                SESSION,
                "root.signature",
                "not-evaluated",
                Some("the root validator is not an ECDSA validator; the chain will check the signature".into()),
            );
            return Ok(());
        }
    };
    if !ok {
        return Err(Rejection::new(
            Reason::InvalidSignature,
            SESSION,
            "root.signature",
            format!(
                "a root op must be signed by the account's root owner {}; this signature is not",
                hex_addr(owner)
            ),
        ));
    }
    ev.pass(SESSION, "root.signature");
    Ok(())
}

/// A Kernel v3.3 account delegated to by EIP-7702 (the op carries the authorisation).
fn is_kernel_7702(ctx: &OpContext<'_>) -> bool {
    ctx.op
        .eip7702_auth()
        .is_some_and(|a| a.address() == crate::decode::init::KERNEL_V3_3_IMPLEMENTATION)
}

/// Validator-mode ops: the validator must be known to be installed on the account; with the
/// root validator's owner known, an ECDSA validator's signature must recover to it.
fn validator(
    ctx: &OpContext<'_>,
    k: &KernelDecoded,
    settings: &Settings<'_>,
    ev: &mut Evaluation,
) -> Result<(), Rejection> {
    let Some(v) = k.nonce.as_ref().and_then(|n| n.validator) else {
        return Ok(());
    };
    let root = k.deployment.as_ref().and_then(|d| d.root_validator.as_ref());
    let is_root = root.and_then(|r| r.address) == Some(v) || ctx.account.and_then(|a| a.root_validator) == Some(v);
    let enabling = k.enable.as_ref().is_some_and(|e| e.validator.is_some());
    let on_chain = match ctx.node {
        NodeView::Read(c) => c.validation.as_ref().map(|x| (c.block, x.installed())),
        _ => None,
    };
    if let (Some((block, false)), false, false) = (on_chain, is_root, enabling) {
        return Err(Rejection::new(
            Reason::UnknownValidator,
            SESSION,
            "validator",
            format!(
                "validator {} is not installed on account {} (block {block}, read from the node)",
                hex_addr(v),
                hex_addr(ctx.sender())
            ),
        ));
    }
    let known = is_root || enabling || ctx.account.is_some_and(|a| a.has_validator(v));
    if !known {
        let detail = format!(
            "validator {} is not known to be installed on account {}",
            hex_addr(v),
            hex_addr(ctx.sender())
        );
        if settings.unknown_validator == OnError::Reject {
            return Err(Rejection::new(Reason::UnknownValidator, SESSION, "validator", detail));
        }
        ev.verdict(SESSION, "validator", "not-evaluated", Some(detail));
        return Ok(());
    }
    let owner = root
        .filter(|_| is_root)
        .and_then(|r| r.owner)
        .or_else(|| ctx.account.filter(|_| is_root).and_then(|a| a.root_owner));
    if let (Some(owner), true) = (owner, v == ECDSA_VALIDATOR || v == ECDSA_VALIDATOR_V3_0) {
        let hash = ctx.hash;
        let sig = k
            .enable
            .as_ref()
            .map(|e| e.data.user_op_sig.clone())
            .unwrap_or_else(|| ctx.op.signature().clone());
        let ok = recover_eip191(&hash, &sig).ok() == Some(owner) || recover(&hash, &sig).ok() == Some(owner);
        if !ok {
            return Err(Rejection::new(
                Reason::InvalidSignature,
                SESSION,
                "validator.signature",
                format!(
                    "the signature is not by validator {}'s owner {}",
                    hex_addr(v),
                    hex_addr(owner)
                ),
            ));
        }
        ev.pass(SESSION, "validator.signature");
    }
    ev.pass(SESSION, "validator");
    Ok(())
}

/// Kernel's hook rule (spec §2.3 step 7): the `executeUserOp` prefix is required exactly when the
/// validation has a hook. Checked when the hook is known.
fn hook_gate(ctx: &OpContext<'_>, has_hook: Option<bool>) -> Result<(), Rejection> {
    let prefixed = ctx.op.call_data().get(..4) == Some(&EXECUTE_USER_OP[..]);
    match (has_hook, prefixed) {
        (Some(false), true) => Err(Rejection::new(
            Reason::HookMismatch,
            SESSION,
            "hook",
            "the call data carries the executeUserOp prefix but the permission has no hook: the Kernel's selector \
             gate reads 0x8dd7712f as the selector, which it was not granted",
        )),
        (Some(true), false) => Err(Rejection::new(
            Reason::HookMismatch,
            SESSION,
            "hook",
            "the permission has a hook, so the Kernel requires the executeUserOp prefix (OnlyExecuteUserOp)",
        )),
        _ => Ok(()),
    }
}

/// Calls the op makes that CallPolicy's own reading of `execute` does not see — those a declared
/// delegate makes, and every call the account made in simulation when the op delegatecalls —
/// must each be allowed as a CALL by the session's CallPolicy, like direct calls.
fn inner_calls(ctx: &OpContext<'_>, version: &str, perms: &[CallPermission], rule: &str) -> Result<(), Rejection> {
    let v = CallPolicyVersion::parse(version);
    for d in ctx.delegated {
        if let Ok(c) = &d.call {
            check_call(
                v,
                perms,
                PermissionCallType::Call,
                c.target,
                &c.data,
                c.value,
                rule,
                d.via,
            )
            .map_err(|mut r| {
                r.detail = format!("inner call of the declared delegate: {}", r.detail);
                r
            })?;
        }
    }
    let delegates = ctx.calls.is_some_and(|c| {
        c.calls
            .iter()
            .any(|c| c.call_type == crate::decode::CallKind::DelegateCall)
    });
    if let (true, Some((effects, _))) = (delegates, ctx.simulated()) {
        for (i, c) in effects.calls.iter().enumerate() {
            check_call(v, perms, PermissionCallType::Call, c.target, &c.data, c.value, rule, i).map_err(|mut r| {
                r.detail = format!("effects: {}", r.detail);
                r
            })?;
        }
    }
    Ok(())
}

/// When an approval does not verify at the account's current nonce: the earlier nonce (if any,
/// at most 16 back) whose digest the owner did sign — an approval made stale by `invalidateNonce`.
fn stale_nonce(ctx: &OpContext<'_>, k: &KernelDecoded) -> Option<u32> {
    let e = k.enable.as_ref()?;
    let (version, vid, current) = (e.kernel_version?, e.validation_id?, e.digest_nonce?);
    let owner = ctx.account.and_then(|a| a.root_owner)?;
    let chain_id = if e.data.replayable { 0 } else { ctx.chain_id };
    let domain = EnableDomain {
        account: ctx.sender(),
        chain_id,
        version,
    };
    (current.saturating_sub(16)..current).rev().find(|n| {
        let digest = enable_digest(&domain, vid, *n, &e.data);
        matching_scheme(&digest, &e.data.enable_sig, owner).is_some()
    })
}

fn enable_approval(ctx: &OpContext<'_>, k: &KernelDecoded, ev: &mut Evaluation) -> Result<(), Rejection> {
    let Some(e) = &k.enable else {
        let why = k
            .part_error("enable")
            .map(|e| e.to_string())
            .unwrap_or_else(|| "missing".into());
        return Err(Rejection::new(
            Reason::InvalidSignature,
            SESSION,
            "enable",
            format!("enable-mode signature cannot be decoded: {why}"),
        ));
    };
    if e.merkle_proof_valid == Some(false) {
        return Err(Rejection::new(
            Reason::InvalidSignature,
            SESSION,
            "enable.merkleProof",
            "the enable digest is not a leaf of the signed multi-chain Merkle root",
        ));
    }
    match e.approved {
        Some(false) => Err(Rejection::new(
            Reason::InvalidSignature,
            SESSION,
            "enable.signature",
            match (e.approver, stale_nonce(ctx, k)) {
                (Some(_), Some(n)) => format!(
                    "the approval is stale: the owner signed it for nonce {n}, and the account's currentNonce \
                     has moved to {} (invalidateNonce), which revoked it",
                    e.digest_nonce.unwrap_or_default()
                ),
                (Some(a), None) => format!(
                    "the enable data is not signed by the account's root validator owner (recovered {})",
                    hex_addr(a)
                ),
                (None, _) => format!(
                    "the enable signature cannot be recovered: {}",
                    k.part_error("approval")
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "no signer".into())
                ),
            },
        )),
        Some(true) => {
            ev.pass(SESSION, "enable.signature");
            Ok(())
        }
        None => {
            ev.verdict(
                SESSION,
                "enable.signature",
                "not-evaluated",
                Some("the root validator's owner is not known here; the chain will check the approval".into()),
            );
            Ok(())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn plan(
    ev: &mut Evaluation,
    ctx: &OpContext<'_>,
    index: usize,
    what: &str,
    amount: U256,
    limit: U256,
    window: Window,
    policy: &str,
    rule: &str,
    reason: Reason,
    settings: &Settings<'_>,
) {
    let pid = ctx.permission_id().unwrap_or_default();
    ev.charges.push(Planned {
        charge: Charge {
            counter: session_counter(ctx.chain_id, ctx.sender(), pid, index, what),
            scope: Scope::Account,
            amount,
            limit,
            window,
        },
        origin: ChargeOrigin {
            unit: if what == "gas" {
                super::Unit::Wei
            } else {
                super::Unit::Count
            },
            policy: policy.to_string(),
            rule: rule.to_string(),
            reason,
            on_error: settings.store_on_error,
        },
    });
}

/// GasPolicy's `uint128((preVerificationGas + verificationGasLimit + callGasLimit) * maxFeePerGas)`:
/// checked arithmetic (an overflow reverts: `None`), then truncated to 128 bits.
fn gas_policy_amount(ctx: &OpContext<'_>) -> Option<U256> {
    let op = ctx.op;
    let sum = op
        .pre_verification_gas()
        .checked_add(op.verification_gas_limit())?
        .checked_add(op.call_gas_limit())?;
    let product = sum.checked_mul(op.max_fee_per_gas())?;
    Some(product & U256::from(u128::MAX))
}

/// The EntryPoint's time check on the intersected validity window: v0.6/v0.7 accept
/// `validAfter ≤ now ≤ validUntil`, v0.8 `validAfter < now ≤ validUntil`.
fn time_window(ctx: &OpContext<'_>, valid_after: u64, valid_until: u64) -> Result<(), Rejection> {
    let now = ctx.now;
    let not_yet = match ctx.version() {
        EntryPointVersion::V08 => now <= valid_after,
        _ => now < valid_after,
    };
    if not_yet {
        let wait = valid_after + u64::from(ctx.version() == EntryPointVersion::V08) - now;
        return Err(Rejection::new(
            Reason::OutsideTimeWindow,
            "session:timestamp",
            "validAfter",
            format!(
                "the session is valid from {}; now is {}",
                crate::human::time(valid_after),
                crate::human::time(now)
            ),
        )
        .retry_after(wait));
    }
    if now > valid_until {
        return Err(Rejection::new(
            Reason::OutsideTimeWindow,
            "session:timestamp",
            "validUntil",
            format!(
                "the session expired at {}; now is {}",
                crate::human::time(valid_until),
                crate::human::time(now)
            ),
        ));
    }
    Ok(())
}

fn signer(
    ctx: &OpContext<'_>,
    k: &KernelDecoded,
    p: &crate::decode::Permission,
    sig: &[u8],
    ev: &mut Evaluation,
) -> Result<(), Rejection> {
    match p.signer.kind {
        SignerKind::Ecdsa => {
            let Some(expected) = p.signer.address else {
                return Err(Rejection::new(
                    Reason::InvalidPermission,
                    SESSION,
                    "signer",
                    "the ECDSA signer has no address",
                ));
            };
            let hash = if k.replayable {
                ctx.op.replayable_hash(ctx.entry_point).unwrap_or(ctx.hash)
            } else {
                ctx.hash
            };
            // Either hash is accepted, as Kernel's ECDSASigner accepts both (it tries the raw hash
            // first). The SDK's session signer signs EIP-191 (`signMessage({ raw: userOpHash })`),
            // so that one is tried first here: same verdict, and one recovery (the costliest step of
            // a decision) instead of two for every SDK-signed op.
            let ok = recover_eip191(&hash, sig).ok() == Some(expected) || recover(&hash, sig).ok() == Some(expected);
            if ok {
                ev.pass(SESSION, "signer");
                Ok(())
            } else {
                Err(Rejection::new(
                    Reason::InvalidSignature,
                    SESSION,
                    "signer",
                    format!(
                        "the signature over the userOpHash is not by session key {}",
                        hex_addr(expected)
                    ),
                ))
            }
        }
        // WebAuthn and unknown signers are left to the chain: a forged op is refused by the
        // bundler's simulation and its reservation refunded.
        _ => {
            ev.verdict(
                SESSION,
                "signer",
                "not-evaluated",
                Some(format!(
                    "signer contract {} is verified by the chain, not by opgate",
                    hex_addr(p.signer.contract)
                )),
            );
            Ok(())
        }
    }
}

/// Kernel's selector gate for non-root validations (spec §2.3 step 7): without a hook the grant is
/// checked on `callData[0:4]`, with one on `callData[4:8]` (after the prefix). Checked only when
/// the granted selectors are known; when the hook is not known either reading is accepted.
fn selector_gate(ctx: &OpContext<'_>, granted: &[FixedBytes<4>], has_hook: Option<bool>) -> Result<(), Rejection> {
    if granted.is_empty() {
        return Ok(());
    }
    let data = ctx.op.call_data();
    let Some(sel) = data.get(..4) else {
        return Err(Rejection::new(
            Reason::SelectorNotGranted,
            SESSION,
            "selector",
            "call data shorter than a selector",
        ));
    };
    let sel = FixedBytes::<4>::from_slice(sel);
    let inner = (sel.0 == crate::decode::calls::EXECUTE_USER_OP)
        .then(|| data.get(4..8).map(FixedBytes::<4>::from_slice))
        .flatten();
    let ok = match has_hook {
        Some(false) => granted.contains(&sel),
        Some(true) => inner.is_some_and(|i| granted.contains(&i)),
        None => granted.contains(&sel) || inner.is_some_and(|i| granted.contains(&i)),
    };
    if ok {
        return Ok(());
    }
    Err(Rejection::new(
        Reason::SelectorNotGranted,
        SESSION,
        "selector",
        format!("selector {sel} is not granted to the permission"),
    ))
}

/// One failure inside CallPolicy.
fn call_fail(reason: Reason, rule: String, detail: String) -> Rejection {
    Rejection::new(reason, "session:call", rule, detail)
}

/// CallPolicy `checkUserOpPolicy` of the given release over every call of the op.
fn call_policy(
    ctx: &OpContext<'_>,
    k: &KernelDecoded,
    version: &str,
    perms: &[CallPermission],
    rule: &str,
    skipped_by_chain: bool,
) -> Result<(), Rejection> {
    let data = ctx.op.call_data();
    let prefixed_execute = data.get(..4) == Some(&EXECUTE_USER_OP[..]) && data.get(4..8) == Some(&KERNEL_EXECUTE[..]);
    if data.get(..4) != Some(&KERNEL_EXECUTE[..]) && !(skipped_by_chain && prefixed_execute) {
        return Err(call_fail(
            Reason::CallPolicyViolated,
            rule.to_string(),
            "CallPolicy accepts only execute(bytes32,bytes) call data (executeUserOp and other entry points revert)"
                .into(),
        ));
    }
    let Some(calls) = &k.calls else {
        return Err(call_fail(
            Reason::InvalidCallData,
            rule.to_string(),
            "the execute call data cannot be decoded".into(),
        ));
    };
    let v = CallPolicyVersion::parse(version);
    match calls.call_type {
        Some(ExecCallType::Single | ExecCallType::Batch) => {
            for (j, c) in calls.calls.iter().enumerate() {
                check_call(v, perms, PermissionCallType::Call, c.target, &c.data, c.value, rule, j)?;
            }
            Ok(())
        }
        Some(ExecCallType::DelegateCall) => {
            let Some(c) = calls.calls.first() else {
                return Err(call_fail(
                    Reason::InvalidCallData,
                    rule.into(),
                    "empty delegatecall".into(),
                ));
            };
            if v.decodes_delegatecall_as_single() {
                // 0.0.1 / 0.0.2 read `target(20) ‖ value(32) ‖ data` even for delegatecall.
                let Some(value) = c.data.get(..32).map(U256::from_be_slice) else {
                    return Err(call_fail(
                        Reason::InvalidCallData,
                        rule.into(),
                        format!(
                            "CallPolicy {version} decodes the delegatecall as a single call and reverts on its length"
                        ),
                    ));
                };
                check_call(
                    v,
                    perms,
                    PermissionCallType::DelegateCall,
                    c.target,
                    &c.data[32..],
                    value,
                    rule,
                    0,
                )
            } else {
                check_call(
                    v,
                    perms,
                    PermissionCallType::DelegateCall,
                    c.target,
                    &c.data,
                    U256::ZERO,
                    rule,
                    0,
                )
            }
        }
        Some(ExecCallType::Static) | None => Err(call_fail(
            Reason::CallPolicyViolated,
            rule.into(),
            "CallPolicy reverts with InvalidCallType for this call type".into(),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CallPolicyVersion {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl CallPolicyVersion {
    fn parse(v: &str) -> Self {
        match v {
            "0.0.1" => Self::V1,
            "0.0.2" => Self::V2,
            "0.0.3" => Self::V3,
            "0.0.5" => Self::V5,
            _ => Self::V4,
        }
    }

    fn decodes_delegatecall_as_single(self) -> bool {
        self <= Self::V2
    }

    fn missing_error(self) -> &'static str {
        match self {
            Self::V1 => "ABI decoding of an empty permission (empty revert)",
            Self::V5 => "CallViolatesTargetRule()",
            _ => "InvalidCallData()",
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_call(
    v: CallPolicyVersion,
    perms: &[CallPermission],
    call_type: PermissionCallType,
    target: Address,
    data: &[u8],
    value: U256,
    rule: &str,
    index: usize,
) -> Result<(), Rejection> {
    let selector = match data.len() {
        0 if v == CallPolicyVersion::V1 => {
            return Err(call_fail(
                Reason::CallPolicyViolated,
                rule.into(),
                format!("calls[{index}]: CallPolicy 0.0.1 cannot check a call with empty data (plain transfer)"),
            ))
        }
        0 => FixedBytes::<4>::ZERO,
        1..=3 => {
            return Err(call_fail(
                Reason::InvalidCallData,
                rule.into(),
                format!(
                    "calls[{index}]: call data of {} bytes (CallPolicy reverts reading a selector)",
                    data.len()
                ),
            ))
        }
        _ => FixedBytes::<4>::from_slice(&data[..4]),
    };
    let find = |t: Address| {
        perms
            .iter()
            .position(|p| p.call_type == call_type && p.target == t && p.selector == selector)
    };
    let found = find(target).or_else(|| (v >= CallPolicyVersion::V2).then(|| find(Address::ZERO)).flatten());
    let Some(pi) = found else {
        let kind = if call_type == PermissionCallType::DelegateCall {
            "delegatecall"
        } else {
            "call"
        };
        return Err(call_fail(
            Reason::CallPolicyViolated,
            rule.into(),
            format!(
                "calls[{index}]: no permission for {kind} to {} with selector {selector} ({})",
                hex_addr(target),
                v.missing_error()
            ),
        ));
    };
    let perm = &perms[pi];
    let prule = format!("{rule}.permissions[{pi}]");
    if value > perm.value_limit {
        return Err(call_fail(
            Reason::MaxValueExceeded,
            prule,
            format!(
                "calls[{index}]: value {value} exceeds the permission's valueLimit {}",
                perm.value_limit
            ),
        ));
    }
    for (ri, r) in perm.rules.iter().enumerate() {
        if let Err(why) = check_rule(v, r, data) {
            return Err(call_fail(
                Reason::ConditionFailed,
                format!("{prule}.rules[{ri}]"),
                format!("calls[{index}]: {why}"),
            ));
        }
    }
    Ok(())
}

fn check_rule(v: CallPolicyVersion, r: &ParamRule, data: &[u8]) -> Result<(), String> {
    let param = word_at(data, r.offset).ok_or_else(|| format!("no argument word at offset {} (reverts)", r.offset))?;
    let first = r.params.first().map(|p| U256::from_be_bytes(p.0)).unwrap_or_default();
    let ok = match r.condition {
        ParamCondition::Equal => param == first,
        ParamCondition::GreaterThan => param > first,
        ParamCondition::LessThan => param < first,
        ParamCondition::GreaterThanOrEqual => param >= first,
        ParamCondition::LessThanOrEqual => param <= first,
        ParamCondition::NotEqual => param != first,
        ParamCondition::OneOf => r.params.iter().any(|p| U256::from_be_bytes(p.0) == param),
        ParamCondition::SliceEqual if v == CallPolicyVersion::V5 => return slice_equal(r, data),
        // Older releases have no such condition: the rule is not checked.
        ParamCondition::SliceEqual => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "argument at offset {} is {param:#x}, which fails {:?} {first:#x}",
            r.offset, r.condition
        ))
    }
}

/// SLICE_EQUAL (0.0.5): the head word is an offset (from byte 4) to a `bytes`/`string` argument;
/// `keccak(arg[start .. start + length])` must equal `params[2]`. Reads that the contract would
/// take from beyond the call's own data are refused here.
fn slice_equal(r: &ParamRule, data: &[u8]) -> Result<(), String> {
    let [start, length, expected] = r.params.as_slice() else {
        return Err("SLICE_EQUAL needs exactly 3 params (reverts)".into());
    };
    let short = || "the sliced argument lies outside the call data".to_string();
    let rel = word_at(data, r.offset).ok_or_else(short)?;
    let rel = u64::try_from(rel).map_err(|_| short())?;
    let len = word_at(data, rel).ok_or_else(short)?;
    let start = U256::from_be_bytes(start.0);
    let length = U256::from_be_bytes(length.0);
    if len < start.saturating_add(length) {
        return Err("the argument is shorter than start + length (ParamTooShort)".into());
    }
    let (s, l) = (
        usize::try_from(start).map_err(|_| short())?,
        usize::try_from(length).map_err(|_| short())?,
    );
    let from = usize::try_from(rel)
        .ok()
        .and_then(|r| r.checked_add(4 + 32))
        .and_then(|b| b.checked_add(s))
        .ok_or_else(short)?;
    let slice = data
        .get(from..from.checked_add(l).ok_or_else(short)?)
        .ok_or_else(short)?;
    if keccak256(slice) == *expected {
        Ok(())
    } else {
        Err("the argument slice does not hash to the expected value".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    const TARGET: Address = address!("edCC53F25Bac99Ebb78D3a0012eC78Ae3e67494e");

    fn word(n: u64) -> FixedBytes<32> {
        FixedBytes::from(U256::from(n).to_be_bytes::<32>())
    }

    fn perm(target: Address, selector: [u8; 4], value_limit: u64, rules: Vec<ParamRule>) -> CallPermission {
        CallPermission {
            call_type: PermissionCallType::Call,
            target,
            selector: FixedBytes(selector),
            value_limit: U256::from(value_limit),
            rules,
        }
    }

    fn call_data(selector: [u8; 4], args: &[U256]) -> Vec<u8> {
        let mut d = selector.to_vec();
        for a in args {
            d.extend(a.to_be_bytes::<32>());
        }
        d
    }

    fn check(
        v: CallPolicyVersion,
        perms: &[CallPermission],
        target: Address,
        data: &[u8],
        value: u64,
    ) -> Result<(), Reason> {
        check_call(
            v,
            perms,
            PermissionCallType::Call,
            target,
            data,
            U256::from(value),
            "policies[0]",
            0,
        )
        .map_err(|r| r.reason)
    }

    const TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];

    #[test]
    fn native_transfers_need_0_0_2() {
        let perms = [perm(TARGET, [0; 4], 10, vec![])];
        assert_eq!(
            check(CallPolicyVersion::V1, &perms, TARGET, &[], 1),
            Err(Reason::CallPolicyViolated)
        );
        assert_eq!(check(CallPolicyVersion::V2, &perms, TARGET, &[], 1), Ok(()));
        assert_eq!(
            check(CallPolicyVersion::V4, &perms, TARGET, &[], 11),
            Err(Reason::MaxValueExceeded)
        );
        assert_eq!(
            check(CallPolicyVersion::V4, &perms, TARGET, &[1, 2, 3], 0),
            Err(Reason::InvalidCallData)
        );
    }

    #[test]
    fn wildcard_targets_only_after_an_exact_miss_and_from_0_0_2() {
        let exact = perm(
            TARGET,
            TRANSFER,
            0,
            vec![ParamRule {
                condition: ParamCondition::Equal,
                offset: 32,
                params: vec![word(1)],
            }],
        );
        let any = perm(Address::ZERO, TRANSFER, 0, vec![]);
        let data = call_data(TRANSFER, &[U256::from(7), U256::from(2)]);
        let other = address!("0000000000000000000000000000000000000042");
        assert_eq!(
            check(CallPolicyVersion::V1, std::slice::from_ref(&any), other, &data, 0),
            Err(Reason::CallPolicyViolated)
        );
        assert_eq!(
            check(CallPolicyVersion::V3, std::slice::from_ref(&any), other, &data, 0),
            Ok(())
        );
        // The exact entry wins for its target even though the wildcard would pass.
        let both = [exact, any];
        assert_eq!(
            check(CallPolicyVersion::V4, &both, TARGET, &data, 0),
            Err(Reason::ConditionFailed)
        );
        assert_eq!(check(CallPolicyVersion::V4, &both, other, &data, 0), Ok(()));
    }

    #[test]
    fn rules_compare_unsigned_words_and_fail_out_of_range() {
        let lte = |n| ParamRule {
            condition: ParamCondition::LessThanOrEqual,
            offset: 32,
            params: vec![word(n)],
        };
        let perms = [perm(TARGET, TRANSFER, 0, vec![lte(100)])];
        let ok = call_data(TRANSFER, &[U256::ZERO, U256::from(100)]);
        let over = call_data(TRANSFER, &[U256::ZERO, U256::from(101)]);
        let negative = call_data(TRANSFER, &[U256::ZERO, U256::MAX]);
        let short = call_data(TRANSFER, &[U256::ZERO]);
        assert_eq!(check(CallPolicyVersion::V4, &perms, TARGET, &ok, 0), Ok(()));
        assert_eq!(
            check(CallPolicyVersion::V4, &perms, TARGET, &over, 0),
            Err(Reason::ConditionFailed)
        );
        assert_eq!(
            check(CallPolicyVersion::V4, &perms, TARGET, &negative, 0),
            Err(Reason::ConditionFailed)
        );
        assert_eq!(
            check(CallPolicyVersion::V4, &perms, TARGET, &short, 0),
            Err(Reason::ConditionFailed)
        );
        let one_of = [perm(
            TARGET,
            TRANSFER,
            0,
            vec![ParamRule {
                condition: ParamCondition::OneOf,
                offset: 0,
                params: vec![word(3), word(5)],
            }],
        )];
        let five = call_data(TRANSFER, &[U256::from(5), U256::ZERO]);
        let four = call_data(TRANSFER, &[U256::from(4), U256::ZERO]);
        assert_eq!(check(CallPolicyVersion::V4, &one_of, TARGET, &five, 0), Ok(()));
        assert_eq!(
            check(CallPolicyVersion::V4, &one_of, TARGET, &four, 0),
            Err(Reason::ConditionFailed)
        );
    }

    #[test]
    fn slice_equal_only_in_0_0_5() {
        // f(bytes): head word 0x20, then length 5, then "hello".
        let mut data = vec![1, 2, 3, 4];
        data.extend(U256::from(32).to_be_bytes::<32>());
        data.extend(U256::from(5).to_be_bytes::<32>());
        let mut tail = b"hello".to_vec();
        tail.resize(32, 0);
        data.extend(tail);
        let rule = |start: u64, len: u64, expected: &[u8]| ParamRule {
            condition: ParamCondition::SliceEqual,
            offset: 0,
            params: vec![word(start), word(len), keccak256(expected)],
        };
        let ok = [perm(TARGET, [1, 2, 3, 4], 0, vec![rule(1, 3, b"ell")])];
        let wrong = [perm(TARGET, [1, 2, 3, 4], 0, vec![rule(1, 3, b"elk")])];
        let long = [perm(TARGET, [1, 2, 3, 4], 0, vec![rule(3, 3, b"lo\0")])];
        assert_eq!(check(CallPolicyVersion::V5, &ok, TARGET, &data, 0), Ok(()));
        assert_eq!(
            check(CallPolicyVersion::V5, &wrong, TARGET, &data, 0),
            Err(Reason::ConditionFailed)
        );
        assert_eq!(
            check(CallPolicyVersion::V5, &long, TARGET, &data, 0),
            Err(Reason::ConditionFailed)
        );
        assert_eq!(
            check(CallPolicyVersion::V4, &wrong, TARGET, &data, 0),
            Ok(()),
            "unknown before 0.0.5"
        );
    }
}
