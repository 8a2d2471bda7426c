//! Policies: pure functions from a decoded operation, the permission in effect and the clock to
//! a decision. Nothing here does I/O; counters are only *planned* here and checked atomically by
//! the store ([`crate::store::Store::reserve`]).
//!
//! Two sources of rules, evaluated in this order, the first failure deciding:
//!
//! 1. [`kernel`]: the session key's own Kernel permission — its signer and its installed policies
//!    (Call, Gas, RateLimit, Timestamp, Sudo, Signature-caller), with the semantics of the deployed
//!    contracts, quirks included, so an op the chain would refuse is refused here first;
//! 2. [`operator`]: the operator's `[[policies]]` from the configuration.
//!
//! Between them sit opgate's own guardrails for session keys ([`guard`]): no calls into the account
//! itself or its modules, no delegatecall the owner did not grant explicitly, unless an operator
//! policy allows them.
//!
//! A pass yields a [`Permit`]: the charges to reserve and the revocation guards to check. Only a
//! permit reaches the relay.

pub mod guard;
pub mod kernel;
pub mod operator;
mod words;

use alloy_primitives::{Address, FixedBytes, B256, U256};
use serde::Serialize;

use crate::config::{Delegate, OnError};
use crate::decode::{DecodedCalls, KernelDecoded, Permission};
use crate::registry::{AccountInfo, KnownPermission};
use crate::sim::{Effects, Simulation};
use crate::store::Charge;
use crate::userop::{EntryPointVersion, UserOperation};

/// Why an operation was refused: a stable name clients and dashboards match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Reason {
    /// No call permission / call rule covers a call.
    CallPolicyViolated,
    /// A parameter condition does not hold.
    ConditionFailed,
    /// A call's value (or a transfer) exceeds its per-use maximum.
    MaxValueExceeded,
    /// A lifetime limit would be exceeded.
    LifetimeUsageExceeded,
    /// A periodic allowance would be exceeded.
    AllowanceExceeded,
    /// An operation-count limit is used up.
    RateLimited,
    /// A gas budget or per-op gas cap would be exceeded.
    GasBudgetExceeded,
    /// Outside the permitted time window.
    OutsideTimeWindow,
    /// A delegatecall no permission grants explicitly.
    DelegateCallDenied,
    /// A session key calling the account itself or one of its modules.
    PrivilegedCallDenied,
    /// The permission is not known to opgate.
    UnknownPermission,
    /// The permission cannot be installed or used as encoded.
    InvalidPermission,
    /// The permission's flag excludes UserOperations.
    PermissionNotForUserOps,
    /// The call data's selector is not granted to the permission.
    SelectorNotGranted,
    /// The paymaster is not the one the gas policy requires.
    PaymasterNotAllowed,
    /// A signature does not verify (session key, enable approval, stub signature).
    InvalidSignature,
    /// The call data cannot be executed as encoded.
    InvalidCallData,
    /// The session key, account or permission was revoked.
    Revoked,
    /// The EntryPoint refused the op's validation in simulation (AA code and reason in the detail).
    ValidationFailed,
    /// The op's execution reverted in simulation and the chain says `reject_reverting = true`.
    SimulationReverted,
    /// The simulation timed out or the node could not be read, and the chain says
    /// `on_sim_error = "reject"`.
    SimulationUnavailable,
    /// The nonce's validation type is not root (0x00), validator (0x01) or permission (0x02).
    InvalidNonce,
    /// A validator-mode op names a validator opgate does not know to be installed.
    UnknownValidator,
    /// The `executeUserOp` prefix does not match the validation's hook (required exactly when it
    /// has one).
    HookMismatch,
    /// A chain-agnostic op already relayed on another chain.
    CrossChainReplay,
}

impl Reason {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallPolicyViolated => "CallPolicyViolated",
            Self::ConditionFailed => "ConditionFailed",
            Self::MaxValueExceeded => "MaxValueExceeded",
            Self::LifetimeUsageExceeded => "LifetimeUsageExceeded",
            Self::AllowanceExceeded => "AllowanceExceeded",
            Self::RateLimited => "RateLimited",
            Self::GasBudgetExceeded => "GasBudgetExceeded",
            Self::OutsideTimeWindow => "OutsideTimeWindow",
            Self::DelegateCallDenied => "DelegateCallDenied",
            Self::PrivilegedCallDenied => "PrivilegedCallDenied",
            Self::UnknownPermission => "UnknownPermission",
            Self::InvalidPermission => "InvalidPermission",
            Self::PermissionNotForUserOps => "PermissionNotForUserOps",
            Self::SelectorNotGranted => "SelectorNotGranted",
            Self::PaymasterNotAllowed => "PaymasterNotAllowed",
            Self::InvalidSignature => "InvalidSignature",
            Self::InvalidCallData => "InvalidCallData",
            Self::Revoked => "Revoked",
            Self::ValidationFailed => "ValidationFailed",
            Self::SimulationReverted => "SimulationReverted",
            Self::SimulationUnavailable => "SimulationUnavailable",
            Self::InvalidNonce => "InvalidNonce",
            Self::UnknownValidator => "UnknownValidator",
            Self::HookMismatch => "HookMismatch",
            Self::CrossChainReplay => "CrossChainReplay",
        }
    }

    /// Every reason, for documentation and metric pre-registration.
    pub const ALL: [Self; 25] = [
        Self::CallPolicyViolated,
        Self::ConditionFailed,
        Self::MaxValueExceeded,
        Self::LifetimeUsageExceeded,
        Self::AllowanceExceeded,
        Self::RateLimited,
        Self::GasBudgetExceeded,
        Self::OutsideTimeWindow,
        Self::DelegateCallDenied,
        Self::PrivilegedCallDenied,
        Self::UnknownPermission,
        Self::InvalidPermission,
        Self::PermissionNotForUserOps,
        Self::SelectorNotGranted,
        Self::PaymasterNotAllowed,
        Self::InvalidSignature,
        Self::InvalidCallData,
        Self::Revoked,
        Self::ValidationFailed,
        Self::SimulationReverted,
        Self::SimulationUnavailable,
        Self::InvalidNonce,
        Self::UnknownValidator,
        Self::HookMismatch,
        Self::CrossChainReplay,
    ];
}

/// A refusal, with the policy and rule that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// Stable reason.
    pub reason: Reason,
    /// `session:<type>` for the key's Kernel policies, `session` for its signer and permission,
    /// `opgate` for built-in guardrails, else the operator policy's name.
    pub policy: String,
    /// Which rule inside the policy (e.g. `policies[0].permissions[1].rules[0]`, `calls[2]`).
    pub rule: String,
    /// Human-readable explanation.
    pub detail: String,
    /// Seconds until a retry could pass, when that is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Rejection {
    /// A refusal without a retry hint.
    pub fn new(reason: Reason, policy: impl Into<String>, rule: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            reason,
            policy: policy.into(),
            rule: rule.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// Adds a retry hint.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

/// Where a planned charge comes from, to name it when the store refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeOrigin {
    /// Policy name (as in [`Rejection::policy`]).
    pub policy: String,
    /// What the counter counts, for how a refusal reads its amounts.
    #[serde(skip)]
    pub unit: Unit,
    /// Rule within the policy.
    pub rule: String,
    /// Reason given when the counter's limit would be passed.
    pub reason: Reason,
    /// Store-failure behaviour for this charge.
    #[serde(skip)]
    pub on_error: OnError,
}

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    /// Operations, argument sums, token base units: read as plain numbers.
    #[default]
    Count,
    /// Wei: read in ether too.
    Wei,
}

impl Unit {
    /// `amount` as a refusal reads it.
    pub fn show(self, amount: alloy_primitives::U256) -> String {
        match self {
            Self::Count => amount.to_string(),
            Self::Wei => crate::human::ether(amount),
        }
    }
}

/// The verdict of one rule, for `opgate_explainUserOperation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleVerdict {
    /// Policy name.
    pub policy: String,
    /// Rule.
    pub rule: String,
    /// `pass`, `fail`, `skipped` (flagged off on the op path) or `not-evaluated` (opgate cannot
    /// evaluate it; the chain will).
    pub outcome: &'static str,
    /// Explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where the permission in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionSource {
    /// The op's own enable data.
    Enable,
    /// The registry (learned from an accepted enable op or registered by an operator).
    Registry,
}

/// The Kernel permission an op is validated by.
#[derive(Debug, Clone, Copy)]
pub struct SessionPermission<'a> {
    /// Permission id.
    pub id: FixedBytes<4>,
    /// Signer and policies.
    pub permission: &'a Permission,
    /// Selectors granted to the permission, when known (empty: unknown, not checked).
    pub selectors: &'a [FixedBytes<4>],
    /// Where it came from.
    pub source: PermissionSource,
    /// The validation's hook (`None`: not known; `0` or `1`: none).
    pub hook: Option<Address>,
    /// The account's `currentNonce` the permission was installed at, when known (registry).
    pub enable_nonce: Option<u32>,
}

impl SessionPermission<'_> {
    /// Whether the validation has a real hook (`None`: not known).
    pub fn has_hook(&self) -> Option<bool> {
        self.hook.map(|h| h > Address::with_last_byte(1))
    }
}

/// A call a declared delegate makes from the account's context, read from the arguments of the
/// op's delegatecall to it (`[[delegates]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedCall {
    /// Index of the delegatecall in the op's calls.
    pub via: usize,
    /// The inner call, or why it cannot be read (the delegatecall's data is not the canonical
    /// encoding of the declared function).
    pub call: Result<crate::decode::Call, String>,
}

/// Reads the calls the declared delegates among `calls`' delegatecalls make.
pub fn delegated_calls(calls: &[crate::decode::Call], delegates: &[Delegate], chain_id: u64) -> Vec<DelegatedCall> {
    use crate::decode::canonical::{check_params, Trailing};
    use crate::decode::CallKind;
    calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.call_type == CallKind::DelegateCall)
        .filter_map(|(i, c)| {
            let d = delegates
                .iter()
                .find(|d| d.target == c.target && d.chains.as_ref().is_none_or(|ids| ids.contains(&chain_id)))?;
            let call = (|| {
                if c.selector != Some(d.function.selector) {
                    return Err(format!(
                        "calls[{i}] delegatecalls declared delegate {} with selector {}, not {}",
                        hex_addr(c.target),
                        c.selector.map(|s| s.to_string()).unwrap_or_else(|| "(none)".into()),
                        d.function.signature
                    ));
                }
                let args = &c.data[4..];
                check_params(&d.function.inputs, args, Trailing::Refused).map_err(|e| {
                    format!(
                        "calls[{i}]: not the canonical encoding of {}: {e}",
                        d.function.signature
                    )
                })?;
                let word = |n: usize| args.get(32 * n..32 * n + 32).unwrap_or(&[0u8; 32][..]);
                let target = Address::from_slice(&word(d.target_arg)[12..]);
                let value = d.value_arg.map(|n| U256::from_be_slice(word(n))).unwrap_or_default();
                let off = usize::try_from(U256::from_be_slice(word(d.data_arg))).unwrap_or(usize::MAX);
                let len = args
                    .get(off..off.saturating_add(32))
                    .map(U256::from_be_slice)
                    .and_then(|l| usize::try_from(l).ok())
                    .unwrap_or(0);
                let data = args.get(off + 32..off + 32 + len).unwrap_or_default();
                Ok(crate::decode::Call::plain(target, value, data))
            })();
            Some(DelegatedCall { via: i, call })
        })
        .collect()
}

/// Everything policies look at for one operation.
#[derive(Debug, Clone, Copy)]
pub struct OpContext<'a> {
    /// Chain id.
    pub chain_id: u64,
    /// EntryPoint address.
    pub entry_point: Address,
    /// The operation.
    pub op: &'a UserOperation,
    /// Its userOpHash.
    pub hash: B256,
    /// Kernel decoding, for Kernel v3 accounts.
    pub kernel: Option<&'a KernelDecoded>,
    /// The calls the op makes, for every account kind whose call data opgate decodes (Kernel v3
    /// and v2, SimpleAccount); `None` when the call data is not understood.
    pub calls: Option<&'a DecodedCalls>,
    /// The permission in effect, for permission-validated ops whose permission is known.
    pub session: Option<SessionPermission<'a>>,
    /// Unix seconds.
    pub now: u64,
    /// The op's simulation, when the chain simulates ops and it ran (operator policies then check
    /// its effects; Kernel session policies stay on the call data, as the chain's validation does).
    pub simulation: Option<&'a Simulation>,
    /// What opgate knows of the account (registry), when anything.
    pub account: Option<&'a AccountInfo>,
    /// For an enable-mode permission op: the permission already known under the same id.
    pub previous: Option<&'a KnownPermission>,
    /// Calls made by declared delegates the op delegatecalls ([`delegated_calls`]).
    pub delegated: &'a [DelegatedCall],
    /// The registry's entry under the op's permission id (tombstones and pending entries too).
    pub registered: Option<&'a KnownPermission>,
    /// What the chain's node said of the account.
    pub node: NodeView<'a>,
    /// The tenant the request was admitted for (API keys), matched by `match.tenants`.
    pub tenant: Option<&'a str>,
}

/// What the chain's node said of the op's account.
#[derive(Debug, Clone, Copy, Default)]
pub enum NodeView<'a> {
    /// The chain has no node to read accounts from (or the op is not a Kernel op).
    #[default]
    None,
    /// The account as the chain has it.
    Read(&'a crate::accounts::OnChain),
    /// The read failed; `refuse` when the chain's `on_sim_error` is `reject`.
    Failed {
        /// Why.
        error: &'a str,
        /// Whether the op is refused for it.
        refuse: bool,
    },
}

impl OpContext<'_> {
    /// The account.
    pub fn sender(&self) -> Address {
        self.op.sender()
    }

    /// The permission id of a permission-validated op.
    pub fn permission_id(&self) -> Option<FixedBytes<4>> {
        self.kernel.and_then(|k| k.nonce.as_ref()).and_then(|n| n.permission_id)
    }

    /// The session key address (ECDSA signer of the permission), when known.
    pub fn session_signer(&self) -> Option<Address> {
        self.session.and_then(|s| s.permission.signer.address)
    }

    /// Whether a session key (a Kernel permission) validates this op.
    pub fn is_session(&self) -> bool {
        self.permission_id().is_some()
    }

    /// The EntryPoint version.
    pub fn version(&self) -> EntryPointVersion {
        self.op.version()
    }

    /// The op's maximum gas cost in wei: every gas limit × `maxFeePerGas`.
    pub fn max_cost(&self) -> U256 {
        self.op.max_gas_cost()
    }

    /// What the op did in simulation — its effects and actual gas cost — when it was simulated
    /// and got past validation (a reverted execution has empty effects: it changed nothing).
    pub fn simulated(&self) -> Option<(&Effects, U256)> {
        let s = self.simulation?;
        s.execution.as_ref().map(|e| (&s.effects, e.actual_cost))
    }
}

/// A planned charge with its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// What to reserve.
    pub charge: Charge,
    /// Who asked for it.
    pub origin: ChargeOrigin,
}

/// What the policies decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evaluation {
    /// The first failure, if any.
    pub rejection: Option<Rejection>,
    /// Charges to reserve (when not rejected).
    pub charges: Vec<Planned>,
    /// Revocation subjects.
    pub guards: Vec<String>,
    /// Every rule's verdict, in evaluation order.
    pub verdicts: Vec<RuleVerdict>,
    /// Names of the operator policies that matched.
    pub matched: Vec<String>,
}

impl Evaluation {
    pub(crate) fn verdict(
        &mut self,
        policy: &str,
        rule: impl Into<String>,
        outcome: &'static str,
        detail: Option<String>,
    ) {
        self.verdicts.push(RuleVerdict {
            policy: policy.to_string(),
            rule: rule.into(),
            outcome,
            detail,
        });
    }

    pub(crate) fn pass(&mut self, policy: &str, rule: impl Into<String>) {
        self.verdict(policy, rule, "pass", None);
    }

    pub(crate) fn fail(&mut self, r: Rejection) {
        self.verdict(&r.policy.clone(), r.rule.clone(), "fail", Some(r.detail.clone()));
        self.rejection = Some(r);
    }

    /// Converts a passing evaluation into a permit.
    pub fn into_permit(self) -> Result<Permit, Rejection> {
        match self.rejection {
            Some(r) => Err(r),
            None => Ok(Permit {
                charges: self.charges,
                guards: self.guards,
            }),
        }
    }
}

/// Permission to relay: the only way to reach the relay from the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    charges: Vec<Planned>,
    guards: Vec<String>,
}

impl Permit {
    /// Planned charges.
    pub fn charges(&self) -> &[Planned] {
        &self.charges
    }

    /// Revocation guards.
    pub fn guards(&self) -> &[String] {
        &self.guards
    }

    /// Whether a store failure should let the op through: only when every charge's policy says
    /// `allow` (an op with no charges still needs the store for revocations and dedupe, and
    /// follows `default`).
    pub fn allows_without_store(&self, default: OnError) -> bool {
        if self.charges.is_empty() {
            return default == OnError::Allow;
        }
        self.charges.iter().all(|c| c.origin.on_error == OnError::Allow)
    }
}

/// Settings that shape evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// Operator policies.
    pub policies: &'a [crate::config::OperatorPolicy],
    /// `[session].unknown_permission`.
    pub unknown_permission: OnError,
    /// `[store].on_error`, for session-policy counters.
    pub store_on_error: OnError,
    /// `[session].unknown_validator`.
    pub unknown_validator: OnError,
}

/// Evaluates every policy for one op (pure; counters are planned, not checked).
pub fn evaluate(ctx: &OpContext<'_>, settings: &Settings<'_>) -> Evaluation {
    let mut ev = Evaluation {
        guards: guards(ctx),
        ..Default::default()
    };
    let matched: Vec<&crate::config::OperatorPolicy> =
        settings.policies.iter().filter(|p| operator::matches(p, ctx)).collect();
    ev.matched = matched.iter().map(|p| p.name.clone()).collect();
    let allow = crate::config::Relaxations::any_of(matched.iter().copied());
    if let Err(r) = kernel::evaluate(ctx, settings, allow, &mut ev) {
        ev.fail(r);
        return ev;
    }
    if let Err(r) = guard::evaluate(ctx, &matched, &mut ev) {
        ev.fail(r);
        return ev;
    }
    for p in matched {
        if let Err(r) = operator::evaluate(p, ctx, &mut ev) {
            ev.fail(r);
            return ev;
        }
    }
    ev
}

/// Revocation subjects of an op: its account, its permission and its session key.
fn guards(ctx: &OpContext<'_>) -> Vec<String> {
    let mut g = vec![format!("sender:{}", hex_addr(ctx.sender()))];
    if let Some(pid) = ctx.permission_id() {
        g.push(format!("permission:{}:{pid}", hex_addr(ctx.sender())));
    }
    if let Some(signer) = ctx.session_signer() {
        g.push(format!("signer:{}", hex_addr(signer)));
    }
    g
}

/// Lowercase `0x…` hex of an address.
pub fn hex_addr(a: Address) -> String {
    format!("{a:#x}")
}
