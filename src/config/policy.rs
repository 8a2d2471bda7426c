//! The policy side of the configuration: the usage store, session-permission handling, the admin
//! listener and the operator's `[[policies]]`, validated from their raw TOML forms.

use std::net::SocketAddr;
use std::time::Duration;

use alloy_primitives::{keccak256, Address, FixedBytes, U256};

use super::raw::{
    RawAdmin, RawBudget, RawCall, RawConstraint, RawDelegate, RawLimits, RawPolicy, RawSession, RawStore, RawTransfer,
};
use super::{duration, env, invalid, units, ConfigError};

/// What to do when the usage store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Refuse the operation (nothing is relayed).
    #[default]
    Reject,
    /// Relay the operation without charging it (counted in metrics).
    Allow,
}

impl OnError {
    pub(crate) fn parse(key: &str, v: &str) -> Result<Self, ConfigError> {
        match v {
            "reject" => Ok(Self::Reject),
            "allow" => Ok(Self::Allow),
            other => Err(invalid(key, format!("`{other}` is not \"reject\" or \"allow\""))),
        }
    }
}

/// Where counters, reservations and the permission registry live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// In this process (one replica; lost on restart).
    Memory,
    /// In Redis, shared by every replica.
    Redis {
        /// `redis://` URL, secrets expanded.
        url: String,
    },
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Backend.
    pub backend: StoreBackend,
    /// Key prefix; also the Redis Cluster hash tag of every key.
    pub prefix: String,
    /// Default behaviour when the store fails (policies may override it).
    pub on_error: OnError,
    /// Longest wait for one store round trip.
    pub timeout: Duration,
    /// How long an operation hash is remembered so that a resend is not charged twice.
    pub dedupe_ttl: Duration,
    /// The memory backend's entry cap (counters, op records, revocations, registry entries).
    pub max_entries: usize,
    /// When a Redis reservation counts: on the primary, or once a replica acknowledged it.
    pub durability: crate::store::redis::Durability,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            prefix: "opgate:".into(),
            on_error: OnError::Reject,
            timeout: Duration::from_millis(250),
            dedupe_ttl: Duration::from_secs(24 * 3600),
            max_entries: crate::store::memory::DEFAULT_MAX_ENTRIES,
            durability: crate::store::redis::Durability::Primary,
        }
    }
}

/// `[session]`: how session-key (Kernel permission) operations are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionConfig {
    /// A default-mode permission op whose permission opgate has never seen (not enabled through
    /// it, not registered): `Reject` (default) refuses it, `Allow` applies operator policies only.
    pub unknown_permission: OnError,
    /// A validator-mode op whose validator opgate does not know to be installed on the account:
    /// `Reject` (default) refuses it, `Allow` leaves it to the chain.
    pub unknown_validator: OnError,
}

/// `[admin]`: the token-protected admin listener.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminConfig {
    /// Listener address; `None` disables the admin API.
    pub listen: Option<SocketAddr>,
    /// Bearer token every admin request must carry.
    pub token: Option<String>,
}

/// Which operations' usage a policy's counters share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterScope {
    /// One counter per account and validation (permission id, validator or root).
    #[default]
    Session,
    /// One counter per account.
    Sender,
    /// One counter for everything the policy matches.
    Policy,
}

/// How limit periods are laid out in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Windows {
    /// Fixed windows aligned to the Unix epoch (a `1d` period resets at 00:00 UTC).
    #[default]
    Epoch,
    /// A window opens at the first use after the previous one ended.
    FirstUse,
}

/// An amount that may be used, in total or per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most that may be used (ops, wei or token units).
    pub amount: U256,
    /// `None`: lifetime; else seconds per period.
    pub period: Option<u64>,
}

/// `[policies.limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyLimits {
    /// Whose usage the counters share.
    pub scope: CounterScope,
    /// One counter for every chain instead of one per chain.
    pub shared_across_chains: bool,
    /// Window layout.
    pub windows: Windows,
    /// Operation count.
    pub ops: Option<Budget>,
    /// Maximum gas cost in wei, charged at the op's maximum (`gas limits × maxFeePerGas`).
    pub gas_wei: Option<Budget>,
    /// Largest maximum gas cost of a single op.
    pub max_cost_per_op: Option<U256>,
}

/// `[policies.match]`: every present key must match; absent keys match anything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyMatch {
    /// Chain ids.
    pub chains: Option<Vec<u64>>,
    /// EntryPoint addresses.
    pub entry_points: Option<Vec<Address>>,
    /// Accounts.
    pub senders: Option<Vec<Address>>,
    /// Session key addresses (the permission's ECDSA signer).
    pub session_signers: Option<Vec<Address>>,
    /// Kernel permission ids.
    pub permission_ids: Option<Vec<FixedBytes<4>>>,
    /// Paymasters (an op without a paymaster does not match a present list).
    pub paymasters: Option<Vec<Address>>,
    /// Tenants (a request without a tenant does not match a present list).
    pub tenants: Option<Vec<String>>,
}

/// A condition on one ABI argument word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `==`.
    Eq,
    /// `>`.
    Gt,
    /// `<`.
    Lt,
    /// `>=`.
    Gte,
    /// `<=`.
    Lte,
    /// `!=`.
    Ne,
    /// Equal to one of the values.
    OneOf,
}

impl Condition {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Gt => "gt",
            Self::Lt => "lt",
            Self::Gte => "gte",
            Self::Lte => "lte",
            Self::Ne => "ne",
            Self::OneOf => "one_of",
        }
    }

    /// Whether `word` satisfies the condition against `values` (unsigned 256-bit comparison).
    pub fn holds(self, word: U256, values: &[U256]) -> bool {
        let v = values.first().copied().unwrap_or_default();
        match self {
            Self::Eq => word == v,
            Self::Gt => word > v,
            Self::Lt => word < v,
            Self::Gte => word >= v,
            Self::Lte => word <= v,
            Self::Ne => word != v,
            Self::OneOf => values.contains(&word),
        }
    }
}

/// `[[policies.calls.constraints]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// 0-based ABI argument index: the word at `4 + 32·param` of the call data.
    pub param: u32,
    /// Comparison.
    pub condition: Condition,
    /// Reference values (one, or several for `one_of`).
    pub values: Vec<U256>,
    /// Cumulative limit on the argument's value.
    pub limit: Option<Budget>,
}

/// Whether a call rule covers calls or delegatecalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleCallType {
    /// `CALL` (the default).
    #[default]
    Call,
    /// `DELEGATECALL` (must be named explicitly).
    DelegateCall,
}

/// `[[policies.calls]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRule {
    /// Target; `None` = any (`"*"`).
    pub target: Option<Address>,
    /// Selector; `None` = any, `0x00000000` = empty call data (a plain transfer).
    pub selector: Option<FixedBytes<4>>,
    /// The function, when the rule names it by signature: a matching call's data must then be
    /// exactly its canonical ABI encoding.
    pub function: Option<crate::decode::canonical::FunctionAbi>,
    /// Call or delegatecall.
    pub call_type: RuleCallType,
    /// Largest value of one call.
    pub max_value_per_use: Option<U256>,
    /// Cumulative value.
    pub value_limit: Option<Budget>,
    /// Argument conditions, all of which must hold.
    pub constraints: Vec<Constraint>,
}

/// A token a transfer limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The chain's native currency (call value).
    Native,
    /// An ERC-20 (`transfer`, `transferFrom` and `approve` amounts).
    Erc20(Address),
}

/// `[[policies.transfers]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRule {
    /// Which token.
    pub token: Token,
    /// Largest amount of one transfer.
    pub max_per_use: Option<U256>,
    /// Cumulative amount.
    pub limit: Option<Budget>,
}

/// One `[[policies]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPolicy {
    /// Name (also the `policy` metric label).
    pub name: String,
    /// Store-failure behaviour for this policy's counters (default: `[store].on_error`).
    pub on_error: OnError,
    /// Which of opgate's guardrails (beyond what the chain enforces) this policy relaxes.
    pub allow: Relaxations,
    /// Which operations the policy applies to.
    pub matcher: PolicyMatch,
    /// Counters.
    pub limits: PolicyLimits,
    /// Valid from (Unix seconds, inclusive).
    pub not_before: Option<u64>,
    /// Valid until (Unix seconds, inclusive).
    pub not_after: Option<u64>,
    /// When present, the only calls allowed.
    pub calls: Option<Vec<CallRule>>,
    /// Transfer caps.
    pub transfers: Vec<TransferRule>,
}

/// The guardrails an operator policy relaxes for the ops it matches (`allow_*` keys). Each
/// guardrail refuses something the chain itself would let through; all are on unless relaxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Relaxations {
    /// `allow_privileged_calls`: session keys may call the account itself, its modules, and
    /// Kernel functions other than `execute`.
    pub privileged_calls: bool,
    /// `allow_non_canonical_calldata`: call data the canonical ABI encoder would not write (and
    /// bytes after a known function's arguments) is read as the chain reads it.
    pub non_canonical_calldata: bool,
    /// `allow_undeclared_delegatecalls`: a delegatecall the session's CallPolicy grants is
    /// forwarded even when its target is neither simulated nor a declared `[[delegates]]`.
    pub undeclared_delegatecalls: bool,
    /// `allow_policy_gaps`: Kernel policies are enforced exactly as the chain does (SKIP_USEROP
    /// flags honoured, `enforcePaymaster` with paymaster 0 enforces nothing, paymaster gas not
    /// counted by GasPolicy budgets).
    pub policy_gaps: bool,
    /// `allow_cross_chain_replay`: a chain-agnostic op relayed on one chain may be relayed on
    /// another.
    pub cross_chain_replay: bool,
    /// `allow_reverting_modes`: `execute` modes the Kernel reverts on (static call type, exec
    /// types other than default and try) are forwarded.
    pub reverting_modes: bool,
}

impl Relaxations {
    /// Every guardrail relaxed by any of `policies`.
    pub fn any_of<'a>(policies: impl IntoIterator<Item = &'a OperatorPolicy>) -> Self {
        policies.into_iter().fold(Self::default(), |a, p| Self {
            privileged_calls: a.privileged_calls || p.allow.privileged_calls,
            non_canonical_calldata: a.non_canonical_calldata || p.allow.non_canonical_calldata,
            undeclared_delegatecalls: a.undeclared_delegatecalls || p.allow.undeclared_delegatecalls,
            policy_gaps: a.policy_gaps || p.allow.policy_gaps,
            cross_chain_replay: a.cross_chain_replay || p.allow.cross_chain_replay,
            reverting_modes: a.reverting_modes || p.allow.reverting_modes,
        })
    }
}

/// `[[delegates]]`: a delegatecall target whose behaviour the operator declares — it makes one
/// call whose target, value and data are arguments of the delegatecall's own call data — so the
/// inner call is checked like a direct call of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegate {
    /// The delegate contract.
    pub target: Address,
    /// Chains it is declared on (`None`: every chain).
    pub chains: Option<Vec<u64>>,
    /// The function the delegatecall calls.
    pub function: crate::decode::canonical::FunctionAbi,
    /// Index of the `address` argument the delegate calls.
    pub target_arg: usize,
    /// Index of the `uint256` argument sent as value (`None`: no value).
    pub value_arg: Option<usize>,
    /// Index of the `bytes` argument sent as call data.
    pub data_arg: usize,
}

pub(super) fn delegates(raw: &[RawDelegate]) -> Result<Vec<Delegate>, ConfigError> {
    use crate::decode::canonical::{parse_signature, AbiType};
    raw.iter()
        .enumerate()
        .map(|(i, d)| {
            let key = format!("delegates[{i}]");
            let target = parse_address(&d.target)
                .ok_or_else(|| invalid(format!("{key}.target"), format!("`{}` is not an address", d.target)))?;
            let function = parse_signature(&d.function).map_err(|m| invalid(format!("{key}.function"), m))?;
            let n = function.inputs.len();
            let arg =
                |name: &str, given: Option<usize>, default: usize, want: &AbiType| -> Result<usize, ConfigError> {
                    let i = given.unwrap_or(default);
                    match function.inputs.get(i) {
                        Some(t) if t == want => Ok(i),
                        Some(_) => Err(invalid(
                            format!("{key}.{name}"),
                            format!(
                                "argument {i} of {} is not {}",
                                function.signature,
                                crate::decode::canonical::type_name(want)
                            ),
                        )),
                        None => Err(invalid(
                            format!("{key}.{name}"),
                            format!(
                                "{} has {n} argument(s); give the index of its {}",
                                function.signature,
                                crate::decode::canonical::type_name(want)
                            ),
                        )),
                    }
                };
            let target_arg = arg("target_arg", d.target_arg, 0, &AbiType::Address)?;
            let data_arg = arg("data_arg", d.data_arg, 2, &AbiType::Bytes)?;
            let value_arg = match d.value_arg {
                Some(v) => Some(arg("value_arg", Some(v), 1, &AbiType::Uint(256))?),
                None if function.inputs.get(1) == Some(&AbiType::Uint(256)) && d.data_arg.is_none() => Some(1),
                None => None,
            };
            Ok(Delegate {
                target,
                chains: d.chains.clone(),
                function,
                target_arg,
                value_arg,
                data_arg,
            })
        })
        .collect()
}

pub(super) fn store(raw: &RawStore) -> Result<StoreConfig, ConfigError> {
    let d = StoreConfig::default();
    let text = |key: &str, v: &Option<String>| -> Result<Option<String>, ConfigError> {
        v.as_deref()
            .map(|v| env::expand(v).map_err(|m| invalid(key, m)))
            .transpose()
    };
    let backend = match raw.backend.as_deref() {
        None | Some("memory") => {
            if raw.url.is_some() && raw.backend.is_none() {
                return Err(invalid("store.backend", "`url` is set: say backend = \"redis\""));
            }
            StoreBackend::Memory
        }
        Some("redis") => {
            let url = text("store.url", &raw.url)?.unwrap_or_else(|| "redis://127.0.0.1:6379".into());
            crate::store::target::Target::parse(&url).map_err(|m| invalid("store.url", m))?;
            StoreBackend::Redis { url }
        }
        Some(other) => {
            return Err(invalid(
                "store.backend",
                format!("`{other}` is not \"memory\" or \"redis\""),
            ))
        }
    };
    let prefix = text("store.prefix", &raw.prefix)?.unwrap_or(d.prefix);
    if prefix.is_empty() || prefix.len() > 64 || prefix.chars().any(|c| c.is_whitespace() || c == '{' || c == '}') {
        return Err(invalid(
            "store.prefix",
            "use 1-64 characters without whitespace or braces",
        ));
    }
    let on_error = match &raw.on_error {
        Some(v) => OnError::parse("store.on_error", v)?,
        None => d.on_error,
    };
    let durability = match raw.durability.as_deref() {
        None | Some("primary") => crate::store::redis::Durability::Primary,
        Some("replica") => {
            if matches!(backend, StoreBackend::Memory) {
                return Err(invalid(
                    "store.durability",
                    "\"replica\" needs backend = \"redis\" (the memory store has no replicas)",
                ));
            }
            crate::store::redis::Durability::Replica
        }
        Some(other) => {
            return Err(invalid(
                "store.durability",
                format!("`{other}` is not \"primary\" or \"replica\""),
            ))
        }
    };
    Ok(StoreConfig {
        durability,
        backend,
        prefix,
        on_error,
        timeout: duration("store.timeout", &raw.timeout, d.timeout)?,
        dedupe_ttl: duration("store.dedupe_ttl", &raw.dedupe_ttl, d.dedupe_ttl)?,
        max_entries: match raw.max_entries {
            None => d.max_entries,
            Some(n) if (1000..=1_000_000_000).contains(&n) => n as usize,
            Some(n) => {
                return Err(invalid(
                    "store.max_entries",
                    format!("{n} is not between 1000 and 1000000000"),
                ))
            }
        },
    })
}

pub(super) fn session(raw: &RawSession) -> Result<SessionConfig, ConfigError> {
    Ok(SessionConfig {
        unknown_permission: match &raw.unknown_permission {
            Some(v) => OnError::parse("session.unknown_permission", v)?,
            None => OnError::Reject,
        },
        unknown_validator: match &raw.unknown_validator {
            Some(v) => OnError::parse("session.unknown_validator", v)?,
            None => OnError::Reject,
        },
    })
}

pub(super) fn admin(raw: &RawAdmin) -> Result<AdminConfig, ConfigError> {
    let listen = match &raw.listen {
        None => None,
        Some(v) => Some(
            env::expand(v)
                .map_err(|m| invalid("admin.listen", m))?
                .parse()
                .map_err(|_| invalid("admin.listen", format!("`{v}` is not a socket address")))?,
        ),
    };
    let token = raw
        .token
        .as_deref()
        .map(|t| env::expand(t).map_err(|m| invalid("admin.token", m)))
        .transpose()?;
    if let Some(t) = &token {
        if t.len() < 16 {
            return Err(invalid("admin.token", "use at least 16 characters"));
        }
    }
    if listen.is_some() && token.is_none() {
        return Err(invalid("admin.token", "the admin listener needs a token"));
    }
    Ok(AdminConfig { listen, token })
}

pub(super) fn policies(raw: &[RawPolicy], default_on_error: OnError) -> Result<Vec<OperatorPolicy>, ConfigError> {
    let mut out: Vec<OperatorPolicy> = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let key = format!("policies[{i}]");
        let policy = policy(&key, p, default_on_error)?;
        if out.iter().any(|q| q.name == policy.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("`{}` is used twice", policy.name),
            ));
        }
        out.push(policy);
    }
    Ok(out)
}

fn policy(key: &str, p: &RawPolicy, default_on_error: OnError) -> Result<OperatorPolicy, ConfigError> {
    let name = &p.name;
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(invalid(format!("{key}.name"), "use 1-64 characters from [A-Za-z0-9_-]"));
    }
    let m = &p.matcher;
    let mk = |k: &str| format!("{key}.match.{k}");
    let matcher = PolicyMatch {
        chains: m.chains.clone(),
        entry_points: addresses(&mk("entry_points"), &m.entry_points)?,
        senders: addresses(&mk("senders"), &m.senders)?,
        session_signers: addresses(&mk("session_signers"), &m.session_signers)?,
        permission_ids: m
            .permission_ids
            .as_ref()
            .map(|ids| {
                ids.iter()
                    .enumerate()
                    .map(|(j, s)| {
                        parse_hex_fixed::<4>(s).ok_or_else(|| {
                            invalid(
                                format!("{}[{j}]", mk("permission_ids")),
                                "expected 4 bytes of hex, like 0x6ab1b460",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?,
        paymasters: addresses(&mk("paymasters"), &m.paymasters)?,
        tenants: m.tenants.clone(),
    };
    let limits = limits(&format!("{key}.limits"), &p.limits)?;
    let not_before = p
        .time
        .not_before
        .as_deref()
        .map(|t| parse_time(t).map_err(|m| invalid(format!("{key}.time.not_before"), m)))
        .transpose()?;
    let not_after = p
        .time
        .not_after
        .as_deref()
        .map(|t| parse_time(t).map_err(|m| invalid(format!("{key}.time.not_after"), m)))
        .transpose()?;
    if let (Some(a), Some(b)) = (not_before, not_after) {
        if b < a {
            return Err(invalid(format!("{key}.time.not_after"), "is before not_before"));
        }
    }
    let calls = p
        .calls
        .as_ref()
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(j, c)| call_rule(&format!("{key}.calls[{j}]"), c))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let transfers = p
        .transfers
        .iter()
        .enumerate()
        .map(|(j, t)| transfer_rule(&format!("{key}.transfers[{j}]"), t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OperatorPolicy {
        name: name.clone(),
        on_error: match &p.on_error {
            Some(v) => OnError::parse(&format!("{key}.on_error"), v)?,
            None => default_on_error,
        },
        allow: Relaxations {
            privileged_calls: p.allow_privileged_calls.unwrap_or(false),
            non_canonical_calldata: p.allow_non_canonical_calldata.unwrap_or(false),
            undeclared_delegatecalls: p.allow_undeclared_delegatecalls.unwrap_or(false),
            policy_gaps: p.allow_policy_gaps.unwrap_or(false),
            cross_chain_replay: p.allow_cross_chain_replay.unwrap_or(false),
            reverting_modes: p.allow_reverting_modes.unwrap_or(false),
        },
        matcher,
        limits,
        not_before,
        not_after,
        calls,
        transfers,
    })
}

fn limits(key: &str, l: &RawLimits) -> Result<PolicyLimits, ConfigError> {
    let scope = match l.counter_scope.as_deref() {
        None | Some("session") => CounterScope::Session,
        Some("sender") => CounterScope::Sender,
        Some("policy") => CounterScope::Policy,
        Some(other) => {
            return Err(invalid(
                format!("{key}.counter_scope"),
                format!("`{other}` is not \"session\", \"sender\" or \"policy\""),
            ))
        }
    };
    let windows = match l.windows.as_deref() {
        None | Some("epoch") => Windows::Epoch,
        Some("first-use") => Windows::FirstUse,
        Some(other) => {
            return Err(invalid(
                format!("{key}.windows"),
                format!("`{other}` is not \"epoch\" or \"first-use\""),
            ))
        }
    };
    Ok(PolicyLimits {
        scope,
        shared_across_chains: l.shared_across_chains.unwrap_or(false),
        windows,
        ops: l
            .ops
            .as_ref()
            .map(|b| budget(&format!("{key}.ops"), b, Unit::Count))
            .transpose()?,
        gas_wei: l
            .gas_wei
            .as_ref()
            .map(|b| budget(&format!("{key}.gas_wei"), b, Unit::Amount))
            .transpose()?,
        max_cost_per_op: l
            .max_cost_per_op
            .as_deref()
            .map(|v| units::parse_amount(v).map_err(|m| invalid(format!("{key}.max_cost_per_op"), m)))
            .transpose()?,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Count,
    Amount,
}

fn budget(key: &str, b: &RawBudget, unit: Unit) -> Result<Budget, ConfigError> {
    let amount = match (unit, b.count, &b.amount) {
        (Unit::Count, Some(n), None) => U256::from(n),
        (Unit::Amount, None, Some(a)) => units::parse_amount(a).map_err(|m| invalid(format!("{key}.amount"), m))?,
        (Unit::Count, ..) => return Err(invalid(key, "give `count` (a number of operations)")),
        (Unit::Amount, ..) => return Err(invalid(key, "give `amount` (e.g. \"0.5 ether\" or \"1000000\")")),
    };
    let period = match &b.period {
        None => None,
        Some(p) => {
            let d = units::parse_duration(p).map_err(|m| invalid(format!("{key}.period"), m))?;
            if d.as_secs() == 0 || d.subsec_nanos() != 0 {
                return Err(invalid(
                    format!("{key}.period"),
                    "use a whole number of seconds, at least 1s",
                ));
            }
            Some(d.as_secs())
        }
    };
    Ok(Budget { amount, period })
}

fn call_rule(key: &str, c: &RawCall) -> Result<CallRule, ConfigError> {
    let target = match c.target.as_str() {
        "*" => None,
        t => Some(parse_address(t).ok_or_else(|| invalid(format!("{key}.target"), "expected an address or \"*\""))?),
    };
    let function = c
        .function
        .as_deref()
        .map(|f| crate::decode::canonical::parse_signature(f).map_err(|m| invalid(format!("{key}.function"), m)))
        .transpose()?;
    let selector = match (&function, &c.selector) {
        (Some(_), Some(_)) => return Err(invalid(key, "give `function` or `selector`, not both")),
        (Some(f), None) => Some(f.selector),
        (None, Some(s)) => Some(
            parse_hex_fixed::<4>(s)
                .ok_or_else(|| invalid(format!("{key}.selector"), "expected 4 bytes of hex, like 0xa9059cbb"))?,
        ),
        (None, None) => None,
    };
    let call_type = match c.call_type.as_deref() {
        None | Some("call") => RuleCallType::Call,
        Some("delegatecall") => RuleCallType::DelegateCall,
        Some(other) => {
            return Err(invalid(
                format!("{key}.call_type"),
                format!("`{other}` is not \"call\" or \"delegatecall\""),
            ))
        }
    };
    let constraints = c
        .constraints
        .iter()
        .enumerate()
        .map(|(j, k)| constraint(&format!("{key}.constraints[{j}]"), k))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CallRule {
        target,
        selector,
        function,
        call_type,
        max_value_per_use: c
            .max_value_per_use
            .as_deref()
            .map(|v| units::parse_amount(v).map_err(|m| invalid(format!("{key}.max_value_per_use"), m)))
            .transpose()?,
        value_limit: c
            .value_limit
            .as_ref()
            .map(|b| budget(&format!("{key}.value_limit"), b, Unit::Amount))
            .transpose()?,
        constraints,
    })
}

fn constraint(key: &str, c: &RawConstraint) -> Result<Constraint, ConfigError> {
    if c.param > 1024 {
        return Err(invalid(format!("{key}.param"), "argument index above 1024"));
    }
    let condition = match c.condition.as_str() {
        "eq" => Condition::Eq,
        "gt" => Condition::Gt,
        "lt" => Condition::Lt,
        "gte" => Condition::Gte,
        "lte" => Condition::Lte,
        "ne" => Condition::Ne,
        "one_of" => Condition::OneOf,
        other => {
            return Err(invalid(
                format!("{key}.condition"),
                format!("`{other}` is not one of eq, gt, lt, gte, lte, ne, one_of"),
            ))
        }
    };
    let values = match (condition, &c.value, &c.values) {
        (Condition::OneOf, None, Some(vs)) if !vs.is_empty() && vs.len() <= 256 => vs
            .iter()
            .enumerate()
            .map(|(j, v)| word(v).map_err(|m| invalid(format!("{key}.values[{j}]"), m)))
            .collect::<Result<Vec<_>, _>>()?,
        (Condition::OneOf, ..) => return Err(invalid(key, "one_of needs `values` (1 to 256 of them)")),
        (_, Some(v), None) => vec![word(v).map_err(|m| invalid(format!("{key}.value"), m))?],
        _ => return Err(invalid(key, "give one `value`")),
    };
    Ok(Constraint {
        param: c.param,
        condition,
        values,
        limit: c
            .limit
            .as_ref()
            .map(|b| budget(&format!("{key}.limit"), b, Unit::Amount))
            .transpose()?,
    })
}

fn transfer_rule(key: &str, t: &RawTransfer) -> Result<TransferRule, ConfigError> {
    let token = match t.token.as_str() {
        "native" => Token::Native,
        a => Token::Erc20(
            parse_address(a).ok_or_else(|| invalid(format!("{key}.token"), "expected \"native\" or an address"))?,
        ),
    };
    if t.max_per_use.is_none() && t.limit.is_none() {
        return Err(invalid(key, "give `max_per_use`, `limit` or both"));
    }
    Ok(TransferRule {
        token,
        max_per_use: t
            .max_per_use
            .as_deref()
            .map(|v| units::parse_amount(v).map_err(|m| invalid(format!("{key}.max_per_use"), m)))
            .transpose()?,
        limit: t
            .limit
            .as_ref()
            .map(|b| budget(&format!("{key}.limit"), b, Unit::Amount))
            .transpose()?,
    })
}

fn addresses(key: &str, v: &Option<Vec<String>>) -> Result<Option<Vec<Address>>, ConfigError> {
    v.as_ref()
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(j, s)| {
                    parse_address(s)
                        .ok_or_else(|| invalid(format!("{key}[{j}]"), format!("`{s}` is not a 20-byte hex address")))
                })
                .collect()
        })
        .transpose()
}

/// A 20-byte address, lowercase or checksummed (a wrong checksum is refused).
pub fn parse_address(s: &str) -> Option<Address> {
    let s = s.trim();
    let hex = s.strip_prefix("0x")?;
    if hex.len() != 40 {
        return None;
    }
    let mixed = hex.chars().any(|c| c.is_ascii_uppercase()) && hex.chars().any(|c| c.is_ascii_lowercase());
    if mixed {
        Address::parse_checksummed(s, None).ok()
    } else {
        s.parse().ok()
    }
}

fn parse_hex_fixed<const N: usize>(s: &str) -> Option<FixedBytes<N>> {
    let hex = s.trim().strip_prefix("0x")?;
    if hex.len() != 2 * N {
        return None;
    }
    hex.parse().ok()
}

/// The selector of a canonical function signature such as `transfer(address,uint256)`.
pub fn function_selector(signature: &str) -> Result<FixedBytes<4>, String> {
    let sig: String = signature.chars().filter(|c| !c.is_whitespace()).collect();
    let open = sig
        .find('(')
        .ok_or("expected a signature like transfer(address,uint256)")?;
    let name = &sig[..open];
    let valid_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    let args_ok = sig.ends_with(')')
        && sig[open..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '(' | ')' | ',' | '[' | ']'));
    if !valid_name || !args_ok {
        return Err(format!(
            "`{signature}` is not a function signature like transfer(address,uint256)"
        ));
    }
    Ok(FixedBytes::from_slice(&keccak256(sig.as_bytes())[..4]))
}

/// A constraint value: an amount (`"1000000"`, `"0.1 ether"`) or a hex word/address (`0x…`,
/// left-padded to 32 bytes like an ABI-encoded argument).
fn word(v: &str) -> Result<U256, String> {
    let v = v.trim();
    if let Some(hex) = v.strip_prefix("0x") {
        if hex.is_empty() || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("`{v}` is not hex of at most 32 bytes"));
        }
        return U256::from_str_radix(hex, 16).map_err(|e| e.to_string());
    }
    units::parse_amount(v)
}

/// RFC 3339 UTC time (`2026-01-01T00:00:00Z`, offsets `+hh:mm` accepted) or Unix seconds.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("`{s}` is too large"));
    }
    let err = || format!("`{s}` is not a time like 2026-01-01T00:00:00Z or Unix seconds");
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let t = s.get(r).ok_or_else(err)?;
        if !t.chars().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        t.parse::<i64>().map_err(|_| err())
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(err());
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let hh: i64 = o[1..3].parse().map_err(|_| err())?;
            let mm: i64 = o[4..6].parse().map_err(|_| err())?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (hh * 3600 + mm * 60)
        }
        _ => return Err(err()),
    };
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60 {
        return Err(err());
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    u64::try_from(secs).map_err(|_| format!("`{s}` is before 1970"))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("2026-11-21T17:58:34Z").unwrap(), 1_795_283_914);
        assert_eq!(parse_time("2026-11-21T18:58:34+01:00").unwrap(), 1_795_283_914);
        assert_eq!(parse_time("2024-02-29T00:00:00.5Z").unwrap(), 1_709_164_800);
        assert_eq!(parse_time("1795283914").unwrap(), 1_795_283_914);
        for bad in [
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01",
            "yesterday",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors() {
        assert_eq!(
            function_selector("transfer(address,uint256)").unwrap().0,
            [0xa9, 0x05, 0x9c, 0xbb]
        );
        assert_eq!(
            function_selector("transfer(address, uint256)").unwrap().0,
            [0xa9, 0x05, 0x9c, 0xbb]
        );
        assert!(function_selector("transfer").is_err());
        assert!(function_selector("1x()").is_err());
    }

    #[test]
    fn words() {
        assert_eq!(word("1000000").unwrap(), U256::from(1_000_000u64));
        assert_eq!(word("0.1 ether").unwrap(), U256::from(100_000_000_000_000_000u128));
        assert_eq!(
            word("0x02C968795e3E1AbF323307B002AA0522D4DfCF1B").unwrap(),
            U256::from_be_slice(&alloy_primitives::hex::decode("02C968795e3E1AbF323307B002AA0522D4DfCF1B").unwrap())
        );
        assert!(word("0x").is_err());
    }

    #[test]
    fn checksums_are_checked() {
        assert!(parse_address("0x02C968795e3E1AbF323307B002AA0522D4DfCF1B").is_some());
        assert!(parse_address("0x02c968795e3e1abf323307b002aa0522d4dfcf1b").is_some());
        assert!(parse_address("0x02C968795e3E1AbF323307B002AA0522D4DfCF1b").is_none());
        assert!(parse_address("0x02c9").is_none());
    }
}
