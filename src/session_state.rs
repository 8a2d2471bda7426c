//! `opgate_getSessionState(chainId, account, permissionIdOrSigner)`: what a session key may still
//! do — each limit's use, remainder and reset, from the key's own Kernel policies and from the
//! operator policies that apply to it — like thirdweb's `getSessionStateForSigner`.

use alloy_primitives::{Address, FixedBytes, U256};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::chain::Chain;
use crate::decode::PolicyParams;
use crate::pipeline::Gate;
use crate::policy::hex_addr;
use crate::policy::kernel::{policy_name, session_counter};
use crate::policy::operator::{self, Subject, ValidationKey};
use crate::rpc::errors::{self, RpcFailure};
use crate::store::{CounterRef, Scope, Window};

/// One limit and its state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitState {
    /// Policy (`session:gas`, or an operator policy's name).
    pub policy: String,
    /// Rule path.
    pub rule: String,
    /// What is counted: `ops`, `gas_wei`, `value`, `argument`, `transfer`.
    pub kind: &'static str,
    /// The limit (decimal).
    pub limit: String,
    /// Used in the current window (decimal); `null` when the store did not answer.
    pub used: Option<String>,
    /// What is left (decimal).
    pub remaining: Option<String>,
    /// Window length in seconds (`null`: lifetime).
    pub period: Option<u64>,
    /// When the current window resets.
    pub resets_at: Option<u64>,
    /// For schedules (RateLimitPolicy): when the next use is allowed.
    pub available_at: Option<u64>,
}

/// The answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    /// Chain id (decimal).
    pub chain_id: String,
    /// Account.
    pub account: String,
    /// Permission id, when known.
    pub permission_id: Option<String>,
    /// Session key, when known.
    pub signer: Option<String>,
    /// Whether opgate knows the permission (learned or registered).
    pub known: bool,
    /// Whether the account, the permission or the key is revoked.
    pub revoked: bool,
    /// TimestampPolicy window.
    pub valid_after: Option<u64>,
    /// TimestampPolicy expiry (`null`: none).
    pub valid_until: Option<u64>,
    /// Every limit.
    pub limits: Vec<LimitState>,
    /// Where opgate's knowledge of the permission comes from: `learned` (an op it relayed),
    /// `registered` (the admin API) or `node` (installed on chain, policies not known here).
    pub source: Option<&'static str>,
    /// Whether the permission is installed: as the chain's node says when the chain reads
    /// accounts, else as opgate learned it.
    pub installed: Option<bool>,
    /// The `currentNonce` it was installed at (the chain's `validationConfig`, else learned).
    pub enable_nonce: Option<u32>,
    /// Its hook (`0x…01`: none), the chain's, else learned.
    pub hook: Option<String>,
    /// Learned from a relayed op the chain has not shown yet: that op and until when it waits.
    pub pending: Option<crate::registry::Pending>,
    /// The account as the chain's node has it (root owner, nonces, this permission's config).
    pub on_chain: Option<std::sync::Arc<crate::accounts::OnChain>>,
}

fn parse_chain(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

/// Answers `opgate_getSessionState`.
pub async fn get(
    gate: &Gate,
    served: &Chain,
    params: Option<&RawValue>,
    tenant: Option<std::sync::Arc<str>>,
) -> Result<SessionState, RpcFailure> {
    let usage = "params: expected [chainId, account, permissionIdOrSigner]";
    let items: Vec<serde_json::Value> = params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .ok_or_else(|| errors::invalid_params(usage))?;
    let [chain, account, key, ..] = items.as_slice() else {
        return Err(errors::invalid_params(usage));
    };
    let chain_id = parse_chain(chain).ok_or_else(|| errors::invalid_params("params[0]: expected a chain id"))?;
    let account: Address = account
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| errors::invalid_params("params[1]: expected an account address"))?;
    let key = key
        .as_str()
        .ok_or_else(|| errors::invalid_params("params[2]: expected a permission id (4 bytes) or a signer address"))?;
    let hex_len = key.strip_prefix("0x").map(str::len);
    let registry = &gate.registry;
    let store_failed = |e: &crate::store::StoreError| {
        gate.metrics.store_error(
            "registry",
            match e {
                crate::store::StoreError::Timeout(_) => "timeout",
                crate::store::StoreError::Unavailable(_) => "unavailable",
                crate::store::StoreError::Protocol(_) => "protocol",
            },
        );
        errors::store_unavailable()
    };
    let (pid, signer_asked) = match hex_len {
        Some(8) => (
            Some(
                key.parse::<FixedBytes<4>>()
                    .map_err(|_| errors::invalid_params("params[2]: bad permission id"))?,
            ),
            None,
        ),
        Some(40) => {
            let signer: Address = key
                .parse()
                .map_err(|_| errors::invalid_params("params[2]: bad signer address"))?;
            let pid = registry
                .permission_for_signer(chain_id, account, signer)
                .await
                .map_err(|e| store_failed(&e))?;
            (pid, Some(signer))
        }
        _ => {
            return Err(errors::invalid_params(
                "params[2]: expected a permission id (4 bytes) or a signer address",
            ))
        }
    };
    let entry = match pid {
        Some(pid) => registry
            .permission(chain_id, account, pid)
            .await
            .map_err(|e| store_failed(&e))?,
        None => None,
    };
    let on_chain = match (&served.accounts, pid) {
        (Some(a), Some(pid)) if served.id == Some(chain_id) => {
            let mut vid = [0u8; 21];
            vid[0] = 0x02;
            vid[1..5].copy_from_slice(pid.as_slice());
            let need = crate::accounts::Read {
                account,
                validation: Some(FixedBytes(vid)),
                selector: None,
            };
            match a.reader.read(need).await {
                Ok((c, _)) => Some(c),
                Err(e) => {
                    return Err(errors::node_unavailable(&format!(
                        "the account's state could not be read from the chain's node: {e}"
                    )))
                }
            }
        }
        _ => None,
    };
    let chain_validation = on_chain.as_ref().and_then(|c| c.validation.clone());
    let installed = match (&chain_validation, &entry) {
        (Some(v), _) => Some(v.installed()),
        (None, Some(e)) => Some(!e.stored.uninstalled),
        (None, None) => None,
    };
    let source = match (&entry, installed) {
        (Some(e), _) => Some(match e.stored.source {
            crate::registry::Source::Operator => "registered",
            _ => "learned",
        }),
        (None, Some(true)) => Some("node"),
        _ => None,
    };
    let known = entry
        .clone()
        .filter(|k| !k.stored.uninstalled && installed != Some(false));
    let signer = known
        .as_ref()
        .and_then(|k| k.permission.signer.address)
        .or(signer_asked);

    let mut limits = Vec::new();
    let mut counters = Vec::new();
    let (mut valid_after, mut valid_until) = (None, None);
    if let (Some(k), Some(pid)) = (&known, pid) {
        for (i, p) in k.permission.policies.iter().enumerate() {
            if p.skips_user_op() {
                continue;
            }
            let (what, kind, limit, window) = match &p.params {
                PolicyParams::Gas { allowed, .. } => ("gas", "gas_wei", U256::from(*allowed), Window::Lifetime),
                PolicyParams::RateLimit {
                    interval,
                    count,
                    start_at,
                } => (
                    "rate",
                    "ops",
                    U256::from(*count),
                    Window::Schedule {
                        start_at: *start_at,
                        interval: *interval,
                    },
                ),
                PolicyParams::RateLimitReset {
                    interval,
                    initial_count,
                } => (
                    "rate-reset",
                    "ops",
                    U256::from(*initial_count),
                    Window::Anchored { period: *interval },
                ),
                PolicyParams::Timestamp {
                    valid_after: a,
                    valid_until: u,
                } => {
                    valid_after = Some(valid_after.unwrap_or(0).max(*a));
                    if *u != 0 {
                        valid_until = Some(valid_until.unwrap_or(u64::MAX).min(*u));
                    }
                    continue;
                }
                _ => continue,
            };
            counters.push(CounterRef {
                scope: Scope::Account,
                counter: session_counter(chain_id, account, pid, i, what),
                window,
            });
            limits.push((
                policy_name(&p.params).to_string(),
                format!("policies[{i}]"),
                kind,
                limit,
                window,
            ));
        }
    }
    let subject = Subject {
        chain_id,
        sender: account,
        validation: pid.map_or(ValidationKey::Root, ValidationKey::Permission),
        permission_id: pid,
        signer,
        entry_point: None,
        paymaster: None,
        tenant: tenant.clone(),
    };
    for p in gate
        .policies()
        .iter()
        .filter(|p| operator::matches_subject(p, &subject))
    {
        let scope = operator::scope_key(p, &subject);
        for b in operator::budgets(p) {
            let window = operator::window(p, b.budget);
            counters.push(CounterRef {
                scope: operator::store_scope(p),
                counter: operator::counter_name(p, &scope, &b.what),
                window,
            });
            limits.push((p.name.clone(), b.rule, b.kind, b.budget.amount, window));
        }
    }
    let now = gate.clock.now();
    let usage = match gate.store.usage(account, &counters, now).await {
        Ok(u) => Some(u),
        Err(e) => {
            let _ = store_failed(&e);
            None
        }
    };
    let mut guards = vec![format!("sender:{}", hex_addr(account))];
    if let Some(pid) = pid {
        guards.push(format!("permission:{}:{pid}", hex_addr(account)));
    }
    if let Some(s) = signer {
        guards.push(format!("signer:{}", hex_addr(s)));
    }
    let revoked = gate
        .store
        .revoked(&guards)
        .await
        .map_err(|e| store_failed(&e))?
        .is_some();
    let limits = limits
        .into_iter()
        .enumerate()
        .map(|(i, (policy, rule, kind, limit, window))| {
            let u = usage.as_ref().and_then(|u| u.get(i));
            LimitState {
                policy,
                rule,
                kind,
                limit: limit.to_string(),
                used: u.map(|u| u.used.to_string()),
                remaining: u.map(|u| limit.saturating_sub(u.used).to_string()),
                period: match window {
                    Window::Fixed { period } | Window::Anchored { period } => Some(period),
                    _ => None,
                },
                resets_at: u.and_then(|u| u.resets_at),
                available_at: u.and_then(|u| u.available_at),
            }
        })
        .collect();
    Ok(SessionState {
        chain_id: chain_id.to_string(),
        account: hex_addr(account),
        permission_id: pid.map(|p| p.to_string()),
        signer: signer.map(hex_addr),
        known: known.is_some(),
        revoked,
        valid_after,
        valid_until,
        limits,
        source,
        installed,
        enable_nonce: chain_validation
            .as_ref()
            .filter(|v| v.installed())
            .map(|v| v.nonce)
            .or(entry.as_ref().and_then(|e| e.stored.enable_nonce)),
        hook: chain_validation
            .as_ref()
            .filter(|v| v.installed())
            .map(|v| v.hook)
            .or(entry.as_ref().and_then(|e| e.stored.hook))
            .map(hex_addr),
        pending: entry.as_ref().and_then(|e| e.stored.pending),
        on_chain,
    })
}
