//! The operator's `[[policies]]`: every policy whose `match` selects the op applies, in file order.
//!
//! Pure checks (time window, per-op gas cap, call rules, per-use maxima, parameter conditions)
//! refuse at once; cumulative limits become planned charges, keyed by the policy's counter scope:
//!
//! | scope | counter key part |
//! |---|---|
//! | `session` | chain, account, validation (`p<permissionId>`, `v<validator>` or `root`) |
//! | `sender` | chain, account |
//! | `policy` | chain |
//!
//! with the chain replaced by `*` when `shared_across_chains = true`. Calls are matched against
//! `calls` rules in order, the first rule whose target, selector and call type match deciding.
//!
//! When the op was simulated ([`OpContext::simulated`]), the same rules are checked on what it
//! did: every `CALL` the account made at any depth must pass the call rules (the call data's
//! delegatecalls are still checked as such), transfer rules count the value and the ERC-20
//! `Transfer`/`Approval` amounts that actually left the account during execution, and
//! `limits.gas_wei` charges the actual gas cost instead of the maximum. The pipeline evaluates the
//! call data first and the effects second, so both must pass.

use alloy_primitives::{Address, FixedBytes, U256};

use super::words::{arg, token_amount};
use super::{hex_addr, ChargeOrigin, Evaluation, OpContext, Planned, Reason, Rejection, Unit};
use crate::config::{
    Budget, CallRule, CounterScope, OperatorPolicy, PolicyMatch, RuleCallType, Token, TransferRule, Windows,
};
use crate::decode::{Call, CallDataFormat, CallKind};
use crate::sim::{Effects, TokenMove};
use crate::store::{Charge, Scope, Window};

/// Who an operator policy is asked about: an op, or a session-state query (where the EntryPoint
/// and paymaster are not known and do not restrict the match).
#[derive(Debug, Clone)]
pub struct Subject {
    /// Chain id.
    pub chain_id: u64,
    /// Account.
    pub sender: Address,
    /// Validation (`p<pid>`, `v<validator>`, `root`) for session-scoped counters.
    pub validation: ValidationKey,
    /// Permission id.
    pub permission_id: Option<FixedBytes<4>>,
    /// Session key.
    pub signer: Option<Address>,
    /// EntryPoint (`None`: not known).
    pub entry_point: Option<Address>,
    /// Paymaster: `Some(None)` for an op without one; `None` when not known.
    pub paymaster: Option<Option<Address>>,
    /// The tenant the request was admitted for.
    pub tenant: Option<std::sync::Arc<str>>,
}

/// The validation a session-scoped counter is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationKey {
    /// A permission.
    Permission(FixedBytes<4>),
    /// A validator.
    Validator(Address),
    /// The root validator.
    Root,
}

impl std::fmt::Display for ValidationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Permission(pid) => write!(f, "p{pid}"),
            Self::Validator(v) => write!(f, "v{}", hex_addr(*v)),
            Self::Root => f.write_str("root"),
        }
    }
}

impl Subject {
    /// The subject of an op.
    pub fn of(ctx: &OpContext<'_>) -> Self {
        let n = ctx.kernel.and_then(|k| k.nonce.as_ref());
        let validation = match n.map(|n| (n.permission_id, n.validator)) {
            Some((Some(pid), _)) => ValidationKey::Permission(pid),
            Some((None, Some(v))) => ValidationKey::Validator(v),
            _ => ValidationKey::Root,
        };
        Self {
            chain_id: ctx.chain_id,
            sender: ctx.sender(),
            validation,
            permission_id: ctx.permission_id(),
            signer: ctx.session_signer(),
            entry_point: Some(ctx.entry_point),
            paymaster: Some(ctx.op.paymaster()),
            tenant: ctx.tenant.map(std::sync::Arc::from),
        }
    }
}

/// Whether `p` applies to `s`.
pub fn matches_subject(p: &OperatorPolicy, s: &Subject) -> bool {
    let m: &PolicyMatch = &p.matcher;
    m.chains.as_ref().is_none_or(|l| l.contains(&s.chain_id))
        && m.entry_points
            .as_ref()
            .is_none_or(|l| s.entry_point.is_none_or(|ep| l.contains(&ep)))
        && m.senders.as_ref().is_none_or(|l| l.contains(&s.sender))
        && m.session_signers
            .as_ref()
            .is_none_or(|l| s.signer.is_some_and(|x| l.contains(&x)))
        && m.permission_ids
            .as_ref()
            .is_none_or(|l| s.permission_id.is_some_and(|id| l.contains(&id)))
        && m.paymasters
            .as_ref()
            .is_none_or(|l| s.paymaster.is_none_or(|pm| pm.is_some_and(|pm| l.contains(&pm))))
        && m.tenants
            .as_ref()
            .is_none_or(|l| s.tenant.as_deref().is_some_and(|t| l.iter().any(|x| x == t)))
}

/// Whether `p` applies to the op.
pub fn matches(p: &OperatorPolicy, ctx: &OpContext<'_>) -> bool {
    matches_subject(p, &Subject::of(ctx))
}

/// The counter key part for `p`'s scope.
pub fn scope_key(p: &OperatorPolicy, s: &Subject) -> String {
    let chain = if p.limits.shared_across_chains {
        "*".to_string()
    } else {
        s.chain_id.to_string()
    };
    match p.limits.scope {
        CounterScope::Session => format!("s:{chain}:{}:{}", hex_addr(s.sender), s.validation),
        CounterScope::Sender => format!("a:{chain}:{}", hex_addr(s.sender)),
        CounterScope::Policy => format!("g:{chain}"),
    }
}

/// Where a policy's counters live: with the account, unless they are shared by every account.
pub fn store_scope(p: &OperatorPolicy) -> Scope {
    match p.limits.scope {
        CounterScope::Session | CounterScope::Sender => Scope::Account,
        CounterScope::Policy => Scope::Shared,
    }
}

/// A policy's counter name for one of its budgets.
pub fn counter_name(p: &OperatorPolicy, scope: &str, what: &str) -> String {
    format!("o:{}:{scope}:{what}", p.name)
}

/// One budget of a policy.
#[derive(Debug, Clone)]
pub struct BudgetRef<'a> {
    /// Counter suffix (`ops`, `gas`, `call0:value`, `call0:arg1`, `xfer0`).
    pub what: String,
    /// Rule path in the policy.
    pub rule: String,
    /// What is counted: `ops`, `gas_wei`, `value`, `argument`, `transfer`.
    pub kind: &'static str,
    /// The budget.
    pub budget: &'a Budget,
}

/// Every budget of a policy, in a fixed order.
pub fn budgets(p: &OperatorPolicy) -> Vec<BudgetRef<'_>> {
    let mut out = Vec::new();
    let mut push = |what: String, rule: String, kind, budget| {
        out.push(BudgetRef {
            what,
            rule,
            kind,
            budget,
        })
    };
    if let Some(b) = &p.limits.ops {
        push("ops".into(), "limits.ops".into(), "ops", b);
    }
    if let Some(b) = &p.limits.gas_wei {
        push("gas".into(), "limits.gas_wei".into(), "gas_wei", b);
    }
    for (ri, r) in p.calls.iter().flatten().enumerate() {
        if let Some(b) = &r.value_limit {
            push(
                format!("call{ri}:value"),
                format!("calls[{ri}].value_limit"),
                "value",
                b,
            );
        }
        for (ci, k) in r.constraints.iter().enumerate() {
            if let Some(b) = &k.limit {
                push(
                    format!("call{ri}:arg{ci}"),
                    format!("calls[{ri}].constraints[{ci}].limit"),
                    "argument",
                    b,
                );
            }
        }
    }
    for (ti, t) in p.transfers.iter().enumerate() {
        if let Some(b) = &t.limit {
            push(format!("xfer{ti}"), format!("transfers[{ti}].limit"), "transfer", b);
        }
    }
    out
}

/// The store window of a budget under `p`'s window layout.
pub fn window(p: &OperatorPolicy, b: &Budget) -> Window {
    match (b.period, p.limits.windows) {
        (None, _) => Window::Lifetime,
        (Some(period), Windows::Epoch) => Window::Fixed { period },
        (Some(period), Windows::FirstUse) => Window::Anchored { period },
    }
}

fn usage_reason(b: &Budget) -> Reason {
    if b.period.is_some() {
        Reason::AllowanceExceeded
    } else {
        Reason::LifetimeUsageExceeded
    }
}

struct Planner<'a, 'b> {
    p: &'a OperatorPolicy,
    scope: String,
    ev: &'b mut Evaluation,
}

impl Planner<'_, '_> {
    fn charge(&mut self, what: &str, amount: U256, b: &Budget, rule: String, reason: Reason, unit: Unit) {
        self.ev.charges.push(Planned {
            charge: Charge {
                counter: counter_name(self.p, &self.scope, what),
                scope: store_scope(self.p),
                amount,
                limit: b.amount,
                window: window(self.p, b),
            },
            origin: ChargeOrigin {
                policy: self.p.name.clone(),
                unit,
                rule,
                reason,
                on_error: self.p.on_error,
            },
        });
    }
}

/// Evaluates one matching policy.
pub(crate) fn evaluate(p: &OperatorPolicy, ctx: &OpContext<'_>, ev: &mut Evaluation) -> Result<(), Rejection> {
    let name = p.name.as_str();
    let fail = |reason, rule: &str, detail: String| Rejection::new(reason, name, rule, detail);
    if let Some(nb) = p.not_before {
        if ctx.now < nb {
            return Err(fail(
                Reason::OutsideTimeWindow,
                "time.not_before",
                format!(
                    "the policy allows ops from {}; now is {}",
                    crate::human::time(nb),
                    crate::human::time(ctx.now)
                ),
            )
            .retry_after(nb - ctx.now));
        }
    }
    if let Some(na) = p.not_after {
        if ctx.now > na {
            return Err(fail(
                Reason::OutsideTimeWindow,
                "time.not_after",
                format!(
                    "the policy allowed ops until {}; now is {}",
                    crate::human::time(na),
                    crate::human::time(ctx.now)
                ),
            ));
        }
    }
    let cost = ctx.max_cost();
    if let Some(max) = p.limits.max_cost_per_op {
        if cost > max {
            return Err(fail(
                Reason::GasBudgetExceeded,
                "limits.max_cost_per_op",
                format!(
                    "the op's maximum gas cost {} exceeds {}",
                    crate::human::ether(cost),
                    crate::human::ether(max)
                ),
            ));
        }
    }

    let calls: &[Call] = ctx.calls.map(|c| c.calls.as_slice()).unwrap_or_default();
    let undecoded = ctx
        .calls
        .is_none_or(|c| c.format == CallDataFormat::Unknown || c.reverts.is_some() && c.calls.is_empty());
    if (p.calls.is_some() || !p.transfers.is_empty()) && undecoded && !ctx.op.call_data().is_empty() {
        return Err(fail(
            Reason::CallPolicyViolated,
            if p.calls.is_some() { "calls" } else { "transfers" },
            "the op's call data is not a call format opgate can decode, so its calls cannot be checked".into(),
        ));
    }

    // With a simulation, calls and amounts are what the op did: every call the account made at
    // any depth (plus the call data's delegatecalls, whose own calls are among those), the value
    // and tokens that actually left it, and the actual gas cost.
    let simulated = ctx.simulated();
    let checked: Vec<(String, &Call)> = match simulated {
        Some((effects, _)) => {
            let delegated = calls
                .iter()
                .enumerate()
                .filter(|(_, c)| c.call_type == CallKind::DelegateCall);
            (effects
                .calls
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("effects.calls[{i}]"), c)))
            .chain(delegated.map(|(i, c)| (format!("calls[{i}]"), c)))
            .collect()
        }
        None => calls
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("calls[{i}]"), c))
            .collect(),
    };

    let mut planner = Planner {
        p,
        scope: scope_key(p, &Subject::of(ctx)),
        ev,
    };
    if let Some(b) = &p.limits.ops {
        planner.charge(
            "ops",
            U256::from(1),
            b,
            "limits.ops".into(),
            Reason::RateLimited,
            Unit::Count,
        );
    }
    if let Some(b) = &p.limits.gas_wei {
        let gas = simulated.map_or(cost, |(_, actual)| actual);
        planner.charge(
            "gas",
            gas,
            b,
            "limits.gas_wei".into(),
            Reason::GasBudgetExceeded,
            Unit::Wei,
        );
    }
    if let Some(rules) = &p.calls {
        for (at, c) in &checked {
            let Some(ri) = rules.iter().position(|r| rule_matches(r, c)) else {
                return Err(fail(
                    Reason::CallPolicyViolated,
                    "calls",
                    format!(
                        "{at}: no call rule allows {} to {} with selector {}",
                        kind(c),
                        hex_addr(c.target),
                        c.selector.map(|s| s.to_string()).unwrap_or_else(|| "(none)".into())
                    ),
                ));
            };
            check_call_rule(&mut planner, &rules[ri], ri, c, at)?;
        }
    }
    for (ti, t) in p.transfers.iter().enumerate() {
        let moves = match simulated {
            Some((effects, _)) => simulated_moves(t, effects),
            None => calldata_moves(name, t, ti, calls)?,
        };
        check_transfers(&mut planner, t, ti, &checked, &moves)?;
    }
    planner.ev.pass(name, "all");
    Ok(())
}

fn kind(c: &Call) -> &'static str {
    match c.call_type {
        CallKind::Call => "call",
        CallKind::DelegateCall => "delegatecall",
    }
}

fn rule_matches(r: &CallRule, c: &Call) -> bool {
    let type_ok = match r.call_type {
        RuleCallType::Call => c.call_type == CallKind::Call,
        RuleCallType::DelegateCall => c.call_type == CallKind::DelegateCall,
    };
    let target_ok = r.target.is_none_or(|t| t == c.target);
    let selector_ok = match r.selector {
        None => true,
        Some(s) if s.is_zero() => c.data.is_empty(),
        Some(s) => c.selector == Some(s),
    };
    type_ok && target_ok && selector_ok
}

fn check_call_rule(pl: &mut Planner<'_, '_>, r: &CallRule, ri: usize, c: &Call, at: &str) -> Result<(), Rejection> {
    let name = pl.p.name.clone();
    let rule = format!("calls[{ri}]");
    if let Some(max) = r.max_value_per_use {
        if c.value > max {
            return Err(Rejection::new(
                Reason::MaxValueExceeded,
                &name,
                format!("{rule}.max_value_per_use"),
                format!("{at}: value {} exceeds {max}", c.value),
            ));
        }
    }
    if let Some(b) = &r.value_limit {
        pl.charge(
            &format!("call{ri}:value"),
            c.value,
            b,
            format!("{rule}.value_limit"),
            usage_reason(b),
            Unit::Wei,
        );
    }
    for (ci, k) in r.constraints.iter().enumerate() {
        let crule = format!("{rule}.constraints[{ci}]");
        let Some(word) = arg(&c.data, k.param) else {
            return Err(Rejection::new(
                Reason::ConditionFailed,
                &name,
                crule,
                format!("{at}: the call data has no argument {}", k.param),
            ));
        };
        if !k.condition.holds(word, &k.values) {
            return Err(Rejection::new(
                Reason::ConditionFailed,
                &name,
                crule,
                format!(
                    "{at}: argument {} is {word} which fails {} {}",
                    k.param,
                    k.condition.name(),
                    k.values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if let Some(b) = &k.limit {
            pl.charge(
                &format!("call{ri}:arg{ci}"),
                word,
                b,
                format!("{crule}.limit"),
                usage_reason(b),
                Unit::Count,
            );
        }
    }
    Ok(())
}

/// What a transfer rule counts in the call data: each call's value (native) or each call to the
/// token's amount argument (`transfer`, `transferFrom`, `approve`, `increaseAllowance`).
fn calldata_moves(name: &str, t: &TransferRule, ti: usize, calls: &[Call]) -> Result<Vec<(String, U256)>, Rejection> {
    let mut out = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        if c.call_type != CallKind::Call {
            continue;
        }
        let amount = match t.token {
            Token::Native => Some(c.value),
            Token::Erc20(token) if c.target == token => token_amount(&c.data).map_err(|why| {
                Rejection::new(
                    Reason::InvalidCallData,
                    name,
                    format!("transfers[{ti}]"),
                    format!("calls[{i}]: {why}"),
                )
            })?,
            Token::Erc20(_) => None,
        };
        out.extend(amount.map(|a| (format!("calls[{i}]"), a)));
    }
    Ok(out)
}

/// What a transfer rule counts in a simulation's effects: the value of each call the account made
/// (native), or each ERC-20 `Transfer` from and `Approval` by the account on the token.
fn simulated_moves(t: &TransferRule, effects: &Effects) -> Vec<(String, U256)> {
    match t.token {
        Token::Native => effects
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("effects.calls[{i}]"), c.value))
            .collect(),
        Token::Erc20(token) => {
            let of = |what: &'static str, moves: &[TokenMove]| -> Vec<(String, U256)> {
                moves
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.token == token)
                    .map(|(i, m)| (format!("effects.{what}[{i}]"), m.amount))
                    .collect()
            };
            let mut out = of("transfers", &effects.transfers);
            out.extend(of("approvals", &effects.approvals));
            out
        }
    }
}

fn check_transfers(
    pl: &mut Planner<'_, '_>,
    t: &TransferRule,
    ti: usize,
    calls: &[(String, &Call)],
    moves: &[(String, U256)],
) -> Result<(), Rejection> {
    let name = pl.p.name.clone();
    let rule = format!("transfers[{ti}]");
    if let Some((at, _)) = calls.iter().find(|(_, c)| c.call_type == CallKind::DelegateCall) {
        return Err(Rejection::new(
            Reason::DelegateCallDenied,
            &name,
            &rule,
            format!("{at} is a delegatecall, which can move any token without opgate seeing it"),
        ));
    }
    let mut total = U256::ZERO;
    for (at, amount) in moves {
        if let Some(max) = t.max_per_use {
            if *amount > max {
                return Err(Rejection::new(
                    Reason::MaxValueExceeded,
                    &name,
                    format!("{rule}.max_per_use"),
                    format!("{at} moves {amount}, more than {max}"),
                ));
            }
        }
        total = total.saturating_add(*amount);
    }
    if let Some(b) = &t.limit {
        if !total.is_zero() {
            let unit = if matches!(t.token, Token::Native) {
                Unit::Wei
            } else {
                Unit::Count
            };
            pl.charge(
                &format!("xfer{ti}"),
                total,
                b,
                format!("{rule}.limit"),
                usage_reason(b),
                unit,
            );
        }
    }
    Ok(())
}
