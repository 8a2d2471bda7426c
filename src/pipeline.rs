//! The life of an `eth_sendUserOperation`:
//!
//! ```text
//! params ─▶ parse (‑32602 naming the field) ─▶ registry lookups ─▶ decode ─▶ policies (pure)
//!        ─▶ simulate (when the chain has a node) ─▶ policies on the effects
//!        ─▶ reserve (one atomic store step) ─▶ relay ─▶ commit (accepted) or refund (refused,
//!           nothing delivered)
//! ```
//!
//! Simulation refuses an op whose validation fails (AA code and reason) and, with
//! `reject_reverting`, one whose execution reverts; when it cannot answer, the chain's
//! `on_sim_error` decides. Operator policies are then evaluated a second time on the effects,
//! and that evaluation's charges (actual amounts, actual gas cost) are the ones reserved.
//!
//! A rejection at any step answers at once; nothing is relayed and nothing stays charged. When
//! the upstream may have received the op but did not answer, the reservation is kept: the op may
//! be on its way on chain. An accepted enable-mode op teaches the registry its permission, and an
//! accepted deploying op its account's root owner.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use alloy_primitives::{Address, FixedBytes, B256};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::accounts::{Code, OnChain, OnChainValidation, Provenance, Read, Served};
use crate::chain::Chain;
use crate::clock::Clock;
use crate::config::{Delegate, OnError, OperatorPolicy, SessionConfig};
use crate::decode::{DecodeOptions, ValidationMode, ValidationType};
use crate::explain::{self, DecodedOp};
use crate::policy::NodeView;
use crate::policy::{
    self, Evaluation, OpContext, PermissionSource, Permit, Reason, Rejection, SessionPermission, Settings,
};
use crate::registry::{AccountInfo, KnownPermission, Pending, Registry, Source, StoredPermission};
use crate::relay::{RelayError, UpstreamAnswer};
use crate::rpc::errors::{self, RpcFailure};
use crate::sim::{Effects, Execution, SimError, Simulation, Validation};
use crate::store::{CounterRef, Reservation, Reserved, Store, StoreError, Ticket};
use crate::telemetry::{DecisionMetrics, Stage};
use crate::userop::{self, UserOperation};

/// What every chain's pipeline shares: the store, the registry, the clock and the policies.
#[derive(Debug)]
pub struct Gate {
    /// Usage counters, reservations, revocations.
    pub store: Arc<Store>,
    /// Permissions and accounts learned or registered.
    pub registry: Arc<Registry>,
    /// Time for policies.
    pub clock: Arc<dyn Clock>,
    /// Operator policies (replaced whole on reload).
    pub policies: RwLock<Arc<Vec<OperatorPolicy>>>,
    /// Session-key settings.
    pub session: SessionConfig,
    /// `[store].on_error`.
    pub on_error: OnError,
    /// Decision metrics.
    pub metrics: DecisionMetrics,
    /// Delegatecall targets whose behaviour the operator declared.
    pub delegates: Vec<Delegate>,
    /// API keys, tenants and request limits.
    pub access: Arc<crate::tenants::Access>,
    /// `[store].timeout`: bounds the key look-up and the request-limit check.
    pub store_timeout: std::time::Duration,
}

impl Gate {
    /// The current operator policies.
    pub fn policies(&self) -> Arc<Vec<OperatorPolicy>> {
        self.policies.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// Replaces the operator policies.
    pub fn set_policies(&self, policies: Vec<OperatorPolicy>) {
        if let Ok(mut p) = self.policies.write() {
            *p = Arc::new(policies);
        }
    }

    pub(crate) fn store_error(&self, operation: &str, e: &StoreError) {
        let kind = match e {
            StoreError::Timeout(_) => "timeout",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Protocol(_) => "protocol",
        };
        self.metrics.store_error(operation, kind);
        self.metrics
            .store_reconnects(self.store.topology(), self.store.reconnects());
        tracing::warn!(operation, error = %e, "usage store failed");
    }
}

/// A parsed, decoded op with the permission in effect.
#[derive(Debug)]
pub struct Prepared {
    /// The operation.
    pub op: UserOperation,
    /// Its EntryPoint.
    pub entry_point: Address,
    /// Chain id.
    pub chain_id: u64,
    /// userOpHash.
    pub hash: B256,
    /// Decoded view (with the full Kernel decoding in `detail`).
    pub decoded: DecodedOp,
    /// The permission from the registry under the op's permission id: the one in effect for a
    /// default-mode op, the one being replaced for an enable-mode op.
    pub registered: Option<Arc<KnownPermission>>,
    /// What the registry knows of the account.
    pub account: Option<Arc<AccountInfo>>,
    /// The registry could not be read (store failure).
    pub registry_failed: bool,
    /// The clock when the op arrived.
    pub now: u64,
    /// The account as the chain's node has it, when the chain reads accounts and the op is a
    /// Kernel op.
    pub on_chain: Option<Arc<OnChain>>,
    /// The node could not be read: why, and whether the chain's `on_sim_error` refuses the op.
    pub node_error: Option<(String, OnError)>,
    /// Where the root owner opgate verifies with came from.
    pub owner_source: Option<Provenance>,
    /// How long what this op teaches waits for the chain (seconds); `None` without a node.
    pub pending_timeout: Option<u64>,
    /// The tenant the request was admitted for (API keys).
    pub tenant: Option<Arc<str>>,
}

impl Prepared {
    /// The pending marker for what this op teaches, on a chain with a node.
    pub(crate) fn pending(&self) -> Option<Pending> {
        self.pending_timeout.map(|t| Pending {
            op: self.hash,
            until: self.now.saturating_add(t),
        })
    }

    fn node_view(&self) -> NodeView<'_> {
        match (&self.on_chain, &self.node_error) {
            (Some(c), _) => NodeView::Read(c),
            (None, Some((e, on_error))) => NodeView::Failed {
                error: e,
                refuse: *on_error == OnError::Reject,
            },
            _ => NodeView::None,
        }
    }
}

impl Prepared {
    /// Evaluates every policy (pure); with a simulation, operator policies check its effects.
    pub fn evaluate(&self, gate: &Gate, policies: &[OperatorPolicy], simulation: Option<&Simulation>) -> Evaluation {
        let kernel = self.decoded.detail.as_ref().filter(|_| self.decoded.kernel.is_some());
        let selectors_enable: Vec<FixedBytes<4>>;
        let session = match kernel.and_then(|k| k.nonce.as_ref()) {
            Some(n) if n.validation_type == ValidationType::Permission => {
                let id = n.permission_id.unwrap_or_default();
                if n.mode == ValidationMode::Enable {
                    let k = kernel.expect("nonce came from it");
                    selectors_enable = k.selector_data.iter().map(|s| s.selector).collect();
                    let hook = k.enable.as_ref().map(|e| e.data.hook);
                    k.permission.as_ref().map(|p| SessionPermission {
                        id,
                        permission: p,
                        selectors: &selectors_enable,
                        source: PermissionSource::Enable,
                        hook,
                        enable_nonce: None,
                    })
                } else {
                    let chain = self
                        .on_chain
                        .as_ref()
                        .and_then(|c| c.validation.as_ref())
                        .filter(|v| v.installed());
                    selectors_enable = match self.registered.as_deref() {
                        Some(r) => {
                            let mut sel = r.stored.selectors.clone();
                            if let Some((s, allowed)) = chain.and_then(|v| v.selector) {
                                sel.retain(|x| *x != s);
                                if allowed {
                                    sel.push(s);
                                }
                            }
                            sel
                        }
                        None => Vec::new(),
                    };
                    self.registered
                        .as_deref()
                        .filter(|r| !r.stored.uninstalled)
                        .map(|r| SessionPermission {
                            id,
                            permission: &r.permission,
                            selectors: &selectors_enable,
                            source: PermissionSource::Registry,
                            hook: chain.map(|v| v.hook).or(r.stored.hook),
                            enable_nonce: chain.map(|v| v.nonce).or(r.stored.enable_nonce),
                        })
                }
            }
            _ => None,
        };
        let calls = self
            .decoded
            .detail
            .as_ref()
            .and_then(|k| k.calls.as_ref())
            .filter(|_| self.decoded.account != "unknown");
        let delegated = calls
            .map(|c| policy::delegated_calls(&c.calls, &gate.delegates, self.chain_id))
            .unwrap_or_default();
        let enable_mode = kernel
            .and_then(|k| k.nonce.as_ref())
            .is_some_and(|n| n.mode == ValidationMode::Enable);
        let ctx = OpContext {
            account: self.account.as_deref(),
            previous: self.registered.as_deref().filter(|_| enable_mode),
            registered: self.registered.as_deref(),
            node: self.node_view(),
            tenant: self.tenant.as_deref(),
            delegated: &delegated,
            chain_id: self.chain_id,
            entry_point: self.entry_point,
            op: &self.op,
            hash: self.hash,
            kernel,
            calls,
            session,
            now: self.now,
            simulation,
        };
        let unknown_permission = if self.registry_failed && gate.on_error == OnError::Allow {
            OnError::Allow
        } else {
            gate.session.unknown_permission
        };
        policy::evaluate(
            &ctx,
            &Settings {
                policies,
                unknown_permission,
                store_on_error: gate.on_error,
                unknown_validator: gate.session.unknown_validator,
            },
        )
    }
}

impl Prepared {
    /// The Kernel permission the op is validated by, when known (its own enable data, else the
    /// registry's).
    fn permission(&self) -> Option<&crate::decode::Permission> {
        let k = self.decoded.detail.as_ref().filter(|_| self.decoded.kernel.is_some())?;
        let n = k.nonce.as_ref()?;
        if n.validation_type != ValidationType::Permission {
            return None;
        }
        if n.mode == ValidationMode::Enable {
            k.permission.as_ref()
        } else {
            self.registered
                .as_deref()
                .filter(|r| !r.stored.uninstalled)
                .map(|r| &r.permission)
        }
    }
}

/// What simulating an op gave.
#[derive(Debug)]
pub enum Simulated {
    /// The chain does not simulate (no node).
    Off,
    /// The simulation ran.
    Ran(Box<Simulation>),
    /// The simulation could not answer (the op is not at fault).
    Failed(SimError),
}

impl Simulated {
    /// The report, when the simulation ran.
    pub fn report(&self) -> Option<&Simulation> {
        match self {
            Self::Ran(s) => Some(s),
            _ => None,
        }
    }
}

/// Simulates the op on its chain's node, when the chain has one, counting the outcome.
pub async fn simulate(gate: &Gate, chain: &Chain, p: &Prepared) -> Simulated {
    let Some(sim) = &chain.simulator else {
        return Simulated::Off;
    };
    let t = Instant::now();
    let run = sim.simulate(&p.op, p.entry_point, p.hash).await;
    gate.metrics.stage(&chain.label, Stage::Sim, t.elapsed());
    let outcome = match &run {
        Ok(r) if !r.simulation.validation.ok => "validation_failed",
        Ok(r) if r.simulation.execution.as_ref().is_some_and(|e| !e.success) => "reverted",
        Ok(_) => "ok",
        Err(SimError::Timeout(_)) => "timeout",
        Err(_) => "error",
    };
    gate.metrics.simulation(&chain.label, outcome);
    match run {
        Ok(r) => Simulated::Ran(Box::new(r.simulation)),
        Err(e) => {
            tracing::warn!(user_op_hash = %p.hash, kind = e.kind(), error = %e, "simulation failed");
            Simulated::Failed(e)
        }
    }
}

/// The simulation's verdict: a refusal, or the report whose effects policies check (`None`
/// without one). A failed simulation is allowed through when `on_sim_error = "allow"`.
fn sim_verdict<'a>(chain: &Chain, p: &Prepared, s: &'a Simulated) -> Result<Option<&'a Simulation>, Rejection> {
    let Some(config) = chain.simulator.as_ref().map(|s| s.config()) else {
        return Ok(None);
    };
    let report = match s {
        Simulated::Off => return Ok(None),
        Simulated::Failed(e) if config.on_sim_error == OnError::Allow => {
            tracing::debug!(error = %e, "relaying without a simulation (on_sim_error = allow)");
            return Ok(None);
        }
        Simulated::Failed(e) => {
            return Err(Rejection::new(
                Reason::SimulationUnavailable,
                "simulation",
                e.kind(),
                format!("the op could not be simulated ({e}); nothing was relayed"),
            ))
        }
        Simulated::Ran(r) => r,
    };
    let v = &report.validation;
    if !v.ok {
        let mut detail = format!(
            "the EntryPoint refuses the op's validation: {}",
            v.reason.as_deref().unwrap_or("no reason given")
        );
        if let Some(i) = v.kernel_policy_failed {
            let name = p
                .permission()
                .and_then(|perm| perm.policies.get(usize::try_from(i).unwrap_or(usize::MAX)))
                .map(|pol| format!(" ({})", crate::policy::kernel::policy_name(&pol.params)))
                .unwrap_or_default();
            detail.push_str(&format!(
                "; the session key's policy {i}{name} failed (PolicyFailed({i}))"
            ));
        } else if v.signature_failed && v.code.as_deref() != Some("AA24") {
            detail.push_str("; the account reports a signature failure");
        }
        return Err(Rejection::new(
            Reason::ValidationFailed,
            "simulation",
            v.code.clone().unwrap_or_else(|| "validation".into()),
            detail,
        ));
    }
    if let Some(e) = report.execution.as_ref().filter(|e| !e.success) {
        if config.reject_reverting {
            return Err(Rejection::new(
                Reason::SimulationReverted,
                "simulation",
                "reject_reverting",
                format!(
                    "the op's execution reverts: {}",
                    e.revert_reason.as_deref().unwrap_or("(no data)")
                ),
            ));
        }
    }
    Ok(Some(report))
}

/// Parses `[userOp, entryPoint]`, looks up what the registry knows and decodes.
pub async fn prepare(gate: &Gate, chain: &Chain, params: Option<&RawValue>) -> Result<Prepared, RpcFailure> {
    prepare_for(gate, chain, params, None).await
}

/// [`prepare`] for a request admitted for `tenant` (operator policies may match tenants).
pub async fn prepare_for(
    gate: &Gate,
    chain: &Chain,
    params: Option<&RawValue>,
    tenant: Option<Arc<str>>,
) -> Result<Prepared, RpcFailure> {
    let (raw_op, entry_point) = split_params(params)?;
    let op = userop::parse_user_operation_for(raw_op, entry_point)
        .map_err(|e| errors::invalid_params(format!("params[0]: {e}")))?;
    let Some(chain_id) = chain.id else {
        return Err(errors::internal(
            &"the chain id is unknown, so userOpHashes cannot be computed",
        ));
    };
    let hash = op
        .hash(entry_point, chain_id)
        .map_err(|e| errors::invalid_params(format!("params[0]: {e}")))?;
    let now = gate.clock.now();
    let sender = op.sender();
    let nonce = crate::decode::decode_nonce(op.nonce()).ok();
    let mut registry_failed = false;
    let mut account = None;
    let mut registered = None;
    // Kernel v3 runs on EntryPoint v0.7 only; what the registry knows of the account tells a
    // Kernel op apart whatever its call data (both look-ups are cached, misses included).
    if op.version() == userop::EntryPointVersion::V07 {
        match gate.registry.account(chain_id, sender).await {
            Ok(a) => account = a,
            Err(e) => {
                gate.store_error("registry", &e);
                registry_failed = true;
            }
        }
    }
    if let Some((ValidationType::Permission, Some(pid))) = nonce.as_ref().map(|n| (n.validation_type, n.permission_id))
    {
        match gate.registry.permission(chain_id, sender, pid).await {
            Ok(p) => registered = p,
            Err(e) => {
                gate.store_error("registry", &e);
                registry_failed = true;
            }
        }
    }
    let mut eip7702 = op
        .eip7702_auth()
        .is_some_and(|a| a.address() == crate::decode::init::KERNEL_V3_3_IMPLEMENTATION)
        || account.as_ref().is_some_and(|a| a.eip7702);
    let known_kernel = account.is_some() || registered.is_some() || eip7702;
    let mut decoded = explain::decode_op_known(
        &op,
        entry_point,
        &decode_options(chain_id, sender, eip7702, account.as_deref(), registered.as_deref()),
        known_kernel,
    );
    let mut on_chain = None;
    let mut node_error = None;
    let mut owner_source = account.as_ref().and_then(|a| a.root_owner).map(|_| Provenance::Learned);
    if let Some(accounts) = chain.accounts.as_ref().filter(|_| decoded.kernel.is_some()) {
        let need = Read {
            account: sender,
            validation: nonce.as_ref().and_then(validation_id),
            selector: gated_selector(op.call_data()),
        };
        match accounts.reader.read(need).await {
            Ok((c, served)) => {
                gate.metrics
                    .account_read(&chain.label, if served == Served::Cached { "cached" } else { "read" });
                if let Some(merged) = merge_account(sender, account.as_deref(), &c) {
                    if merged.root_owner.is_some() && c.root_owner.is_some() {
                        owner_source = Some(Provenance::Node);
                    }
                    eip7702 = merged.eip7702;
                    account = Some(Arc::new(merged));
                    if let (Some(r), Some(v)) = (registered.take(), c.validation.as_ref()) {
                        registered = resolve(gate, chain, sender, r, v, now);
                    }
                    let mut opts = decode_options(chain_id, sender, eip7702, account.as_deref(), registered.as_deref());
                    if let Some(v) = c.validation.as_ref() {
                        // Kernel v3.3 signs currentNonce + 1 when the id's validationConfig
                        // nonce is currentNonce: the chain's config, installed or cleared.
                        opts.validation_nonce = Some(v.nonce);
                    }
                    decoded = explain::decode_op_known(&op, entry_point, &opts, true);
                }
                on_chain = Some(c);
            }
            Err(e) => {
                gate.metrics.account_read(&chain.label, "failed");
                tracing::warn!(user_op_hash = %hash, %sender, error = %e, "account state read failed");
                node_error = Some((e.to_string(), accounts.on_error));
            }
        }
    }
    let owner_in_op = decoded
        .detail
        .as_ref()
        .and_then(|k| k.deployment.as_ref())
        .and_then(|d| d.root_validator.as_ref())
        .is_some_and(|r| r.owner.is_some());
    if owner_source.is_none() && (eip7702 || owner_in_op) {
        owner_source = Some(Provenance::Op);
    }
    Ok(Prepared {
        op,
        entry_point,
        chain_id,
        hash,
        decoded,
        registered,
        account,
        registry_failed,
        now,
        on_chain,
        node_error,
        owner_source,
        pending_timeout: chain.accounts.as_ref().map(|a| a.reader.pending_timeout.as_secs()),
        tenant,
    })
}

/// How an op is decoded given what is known of its account and permission.
fn decode_options(
    chain_id: u64,
    sender: Address,
    eip7702: bool,
    account: Option<&AccountInfo>,
    registered: Option<&KnownPermission>,
) -> DecodeOptions {
    DecodeOptions {
        chain_id: Some(chain_id),
        kernel_version: account
            .and_then(|a| a.kernel_version)
            .or(eip7702.then_some(crate::decode::KernelVersion::V3_3)),
        root_owner: match account {
            Some(a) if a.root_owner.is_some() => a.root_owner,
            _ if eip7702 => Some(sender),
            _ => None,
        },
        current_nonce: account.and_then(|a| a.current_nonce),
        validation_nonce: registered.and_then(|r| r.stored.enable_nonce),
    }
}

/// The validation id a nonce names (`None` for root ops).
fn validation_id(n: &crate::decode::KernelNonce) -> Option<FixedBytes<21>> {
    let mut id = [0u8; 21];
    match n.validation_type {
        ValidationType::Permission => {
            id[0] = 0x02;
            id[1..5].copy_from_slice(n.permission_id?.as_slice());
        }
        ValidationType::Validator => {
            id[0] = 0x01;
            id[1..].copy_from_slice(n.validator?.as_slice());
        }
        ValidationType::Root => return None,
    }
    Some(FixedBytes(id))
}

/// The selector Kernel's selector gate reads: the call data's, or after the `executeUserOp`
/// prefix the inner call's.
fn gated_selector(data: &[u8]) -> Option<FixedBytes<4>> {
    let sel = data.get(..4)?;
    if sel == crate::decode::calls::EXECUTE_USER_OP {
        return data.get(4..8).map(FixedBytes::<4>::from_slice);
    }
    Some(FixedBytes::<4>::from_slice(sel))
}

/// What the chain says of a Kernel account, over what opgate learned: `None` when the chain does
/// not show a Kernel there (not deployed, or another account), and what was learned stands.
fn merge_account(sender: Address, known: Option<&AccountInfo>, c: &OnChain) -> Option<AccountInfo> {
    let kernel_7702 = c.code == Code::Delegated(crate::decode::init::KERNEL_V3_3_IMPLEMENTATION);
    if c.code == Code::None || (c.root_validator.is_none() && !kernel_7702) {
        return None;
    }
    let mut info = known.cloned().unwrap_or_default();
    if let Some(r) = c.root_validator {
        let unset = r == FixedBytes::<21>::ZERO;
        info.root_validator = (r[0] == 0x01).then(|| Address::from_slice(&r[1..]));
        info.root_owner = match c.root_owner {
            Some(o) => Some(o),
            None if unset && kernel_7702 => Some(sender),
            None => None,
        };
    }
    info.eip7702 = kernel_7702;
    if kernel_7702 && info.root_validator.is_none() {
        info.root_owner = Some(sender);
    }
    info.kernel_version = c.kernel_version.or(info.kernel_version);
    info.current_nonce = c.current_nonce.or(info.current_nonce);
    info.valid_nonce_from = c.valid_nonce_from.or(info.valid_nonce_from);
    if let Some(v) = c.validation.as_ref().filter(|v| v.id[0] == 0x01) {
        let validator = Address::from_slice(&v.id[1..]);
        info.validators.retain(|x| *x != validator);
        if v.installed() {
            info.validators.push(validator);
        }
    }
    Some(info)
}

/// The registry's permission as the chain shows it: what was learned from a relayed op is
/// confirmed once the chain has it and dropped when its op did not land within the chain's
/// `pending_timeout`; a permission the chain no longer has is recorded as uninstalled. Changes
/// are written back (every replica sees them) after the decision, off its path.
fn resolve(
    gate: &Gate,
    chain: &Chain,
    sender: Address,
    r: Arc<KnownPermission>,
    v: &OnChainValidation,
    now: u64,
) -> Option<Arc<KnownPermission>> {
    let stored = &r.stored;
    let matches = v
        .permission
        .as_ref()
        .is_none_or(|p| p.mismatch(&r.permission).is_none());
    let (outcome, next): (&str, Option<StoredPermission>) = match (stored.uninstalled, v.installed()) {
        (true, false) | (false, true) if stored.pending.is_some() && (matches || stored.uninstalled) => (
            "confirmed",
            Some(StoredPermission {
                pending: None,
                ..stored.clone()
            }),
        ),
        (true, true) if stored.expired(now) && matches => (
            "revived",
            Some(StoredPermission {
                pending: None,
                uninstalled: false,
                ..stored.clone()
            }),
        ),
        (false, true) if !matches && stored.expired(now) => ("dropped", None),
        (false, false) if stored.expired(now) => ("dropped", None),
        (false, false) if stored.pending.is_none() && stored.source != Source::Operator => (
            "uninstalled",
            Some(StoredPermission {
                uninstalled: true,
                ..stored.clone()
            }),
        ),
        _ => return Some(r),
    };
    gate.metrics.lifecycle(&chain.label, outcome);
    let Some(id) = v.id.get(1..5).map(FixedBytes::<4>::from_slice) else {
        return Some(r);
    };
    let chain_id = chain.id.unwrap_or_default();
    let registry = gate.registry.clone();
    let view = next.as_ref().map(|s| {
        Arc::new(KnownPermission {
            permission: r.permission.clone(),
            stored: s.clone(),
        })
    });
    tracing::info!(%sender, permission_id = %id, outcome, "learned permission state resolved against the chain");
    tokio::spawn(async move {
        let written = match next {
            Some(s) => registry.put_permission(chain_id, sender, id, &s).await,
            None => registry.delete_permission(chain_id, sender, id).await.map(|_| ()),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not record the chain's view of a permission");
        }
    });
    view
}

fn split_params(params: Option<&RawValue>) -> Result<(&RawValue, Address), RpcFailure> {
    let Some(params) = params else {
        return Err(errors::invalid_params("params: expected [userOperation, entryPoint]"));
    };
    let items: Vec<&RawValue> = serde_json::from_str(params.get())
        .map_err(|_| errors::invalid_params("params: expected [userOperation, entryPoint]"))?;
    let [op, ep, ..] = items.as_slice() else {
        return Err(errors::invalid_params("params: expected [userOperation, entryPoint]"));
    };
    let ep: String = serde_json::from_str(ep.get())
        .map_err(|_| errors::invalid_params("params[1]: expected an EntryPoint address"))?;
    let ep: Address = ep
        .parse()
        .map_err(|_| errors::invalid_params(format!("params[1]: `{}` is not an address", truncate(&ep))))?;
    if userop::entry_point_version(ep).is_err() {
        return Err(errors::invalid_params(format!(
            "params[1]: {ep:#x} is not a supported EntryPoint (v0.6, v0.7, v0.8)"
        )));
    }
    Ok((op, ep))
}

fn truncate(s: &str) -> String {
    s.chars().take(66).collect()
}

/// A permitted, reserved op, ready to relay.
#[derive(Debug)]
pub struct Decided {
    /// The op.
    pub prepared: Prepared,
    charged: Charged,
}

impl Decided {
    /// Whether this decision charged counters (which must then be committed or refunded).
    pub fn charged(&self) -> bool {
        matches!(self.charged, Charged::Yes(_))
    }
}

/// Decides one `eth_sendUserOperation` — decode, policies, reservation — without relaying it.
/// After relaying, pass the answer to [`settle`].
pub async fn decide(gate: &Gate, chain: &Chain, params: Option<&RawValue>) -> Result<Decided, RpcFailure> {
    decide_for(gate, chain, params, None).await
}

/// [`decide`] for a request admitted for `tenant`.
pub async fn decide_for(
    gate: &Gate,
    chain: &Chain,
    params: Option<&RawValue>,
    tenant: Option<Arc<str>>,
) -> Result<Decided, RpcFailure> {
    let label = chain.label.as_str();
    let started = Instant::now();
    let prepared = prepare_for(gate, chain, params, tenant).await?;
    gate.metrics.stage(label, Stage::Decode, started.elapsed());

    let t = Instant::now();
    let policies = gate.policies();
    let evaluation = prepared.evaluate(gate, &policies, None);
    gate.metrics.stage(label, Stage::Policy, t.elapsed());
    let mut permit = evaluation
        .into_permit()
        .map_err(|r| reject(gate, label, &prepared, &r))?;

    let simulated = simulate(gate, chain, &prepared).await;
    if let Simulated::Failed(_) = &simulated {
        let allow = chain
            .simulator
            .as_ref()
            .is_some_and(|s| s.config().on_sim_error == OnError::Allow);
        gate.metrics
            .simulation_fallback(label, if allow { "allowed" } else { "rejected" });
    }
    let report = sim_verdict(chain, &prepared, &simulated).map_err(|r| reject(gate, label, &prepared, &r))?;
    if report.is_some() {
        let t = Instant::now();
        let evaluation = prepared.evaluate(gate, &policies, report);
        gate.metrics.stage(label, Stage::Policy, t.elapsed());
        permit = evaluation
            .into_permit()
            .map_err(|r| reject(gate, label, &prepared, &r))?;
    }

    let t = Instant::now();
    let charged = reserve(gate, label, &prepared, &permit).await;
    gate.metrics.stage(label, Stage::Store, t.elapsed());
    if charged.is_ok() {
        tracing::info!(
            user_op_hash = %prepared.hash,
            sender = %prepared.op.sender(),
            account = prepared.decoded.account,
            calls = prepared.decoded.calls.len(),
            policies = ?evaluation_names(&permit),
            "operation permitted"
        );
    }
    Ok(Decided {
        charged: charged?,
        prepared,
    })
}

/// Handles one `eth_sendUserOperation` with its raw params.
pub async fn send_user_operation(
    gate: &Gate,
    chain: &Chain,
    params: Option<&RawValue>,
    tenant: Option<Arc<str>>,
) -> Result<Box<RawValue>, RpcFailure> {
    let decided = decide_for(gate, chain, params, tenant).await?;
    let t = Instant::now();
    let answer = chain.relay.send_user_operation(params).await;
    gate.metrics.stage(&chain.label, Stage::Upstream, t.elapsed());
    settle(gate, &chain.label, &decided, &answer).await;
    match answer {
        Ok(answer) => errors::from_answer(answer),
        Err(e) => Err(errors::from_relay(&e)),
    }
}

/// The policies a permit charges, for the decision log.
fn evaluation_names(permit: &Permit) -> Vec<&str> {
    let mut names: Vec<&str> = permit.charges().iter().map(|c| c.origin.policy.as_str()).collect();
    names.dedup();
    names
}

fn reject(gate: &Gate, label: &str, p: &Prepared, r: &Rejection) -> RpcFailure {
    gate.metrics.decision(
        label,
        "rejected",
        r.reason.as_str(),
        &r.policy,
        p.tenant.as_deref().unwrap_or("none"),
    );
    tracing::info!(
        user_op_hash = %p.hash,
        sender = %p.op.sender(),
        reason = r.reason.as_str(),
        policy = %r.policy,
        rule = %r.rule,
        detail = %r.detail,
        "operation rejected"
    );
    errors::policy(r)
}

/// Whether the op was charged (and so must be committed or refunded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charged {
    /// Charged by this send, which must commit or refund with the ticket.
    Yes(Ticket),
    /// Already charged by an earlier send of the same hash, or relayed under `on_error = allow`.
    No,
}

async fn reserve(gate: &Gate, label: &str, p: &Prepared, permit: &Permit) -> Result<Charged, RpcFailure> {
    let charges: Vec<_> = permit.charges().iter().map(|c| c.charge.clone()).collect();
    let r = Reservation {
        op: p.hash,
        account: p.op.sender(),
        attempt: crate::store::new_attempt(),
        now: p.now,
        charges: &charges,
        guards: permit.guards(),
    };
    let reserved = gate.store.reserve(&r).await;
    if let Some(n) = gate.store.entries() {
        gate.metrics.store_entries(n);
    }
    match reserved {
        Ok(Reserved::Charged) => {
            gate.metrics.reservation(label, "charged");
            gate.metrics
                .decision(label, "accepted", "none", "none", p.tenant.as_deref().unwrap_or("none"));
            Ok(Charged::Yes(r.ticket()))
        }
        Ok(Reserved::AlreadyCharged) => {
            gate.metrics.reservation(label, "already_charged");
            gate.metrics
                .decision(label, "accepted", "none", "none", p.tenant.as_deref().unwrap_or("none"));
            Ok(Charged::No)
        }
        Ok(Reserved::Exceeded { index, used, resets_at }) => {
            gate.metrics.reservation(label, "exceeded");
            let Some(planned) = permit.charges().get(index) else {
                return Err(errors::internal(&format!(
                    "store refused charge {index} of {}",
                    permit.charges().len()
                )));
            };
            let c = &planned.charge;
            let detail = if planned.origin.reason == Reason::CrossChainReplay {
                replay_detail()
            } else {
                let unit = planned.origin.unit;
                format!(
                    "{} of {} already used{}; this op needs {}",
                    unit.show(used),
                    unit.show(c.limit),
                    resets_at
                        .map(|t| format!(" (resets at {})", crate::human::time(t)))
                        .unwrap_or_default(),
                    unit.show(c.amount)
                )
            };
            let mut rej = Rejection::new(
                planned.origin.reason,
                &planned.origin.policy,
                &planned.origin.rule,
                detail,
            );
            if let Some(t) = resets_at {
                rej = rej.retry_after(t.saturating_sub(p.now));
            }
            Err(reject(gate, label, p, &rej))
        }
        Ok(Reserved::NotYetAvailable { index, available_at }) => {
            gate.metrics.reservation(label, "not_yet_available");
            let Some(planned) = permit.charges().get(index) else {
                return Err(errors::internal(&format!(
                    "store refused charge {index} of {}",
                    permit.charges().len()
                )));
            };
            let rej = Rejection::new(
                planned.origin.reason,
                &planned.origin.policy,
                &planned.origin.rule,
                format!(
                    "the next use is scheduled at {}; now is {}",
                    crate::human::time(available_at),
                    crate::human::time(p.now)
                ),
            )
            .retry_after(available_at.saturating_sub(p.now));
            Err(reject(gate, label, p, &rej))
        }
        Ok(Reserved::Revoked { index }) => {
            gate.metrics.reservation(label, "revoked");
            let guard = permit.guards().get(index).cloned().unwrap_or_default();
            let rej = Rejection::new(
                Reason::Revoked,
                "revocation",
                guard.clone(),
                format!("{guard} is revoked"),
            );
            Err(reject(gate, label, p, &rej))
        }
        Err(e) => {
            gate.store_error("reserve", &e);
            // The script may have run (a timeout, a connection lost after sending, a replica that
            // did not acknowledge in time): take back whatever this attempt charged, since this op
            // is either refused or relayed uncharged. Only this attempt's reservation can be taken
            // back, and not once another send relied on it.
            undo_late_reservation(gate.store.clone(), r.ticket());
            if permit.allows_without_store(gate.on_error) {
                gate.metrics.store_fallback(label, "allowed");
                gate.metrics.decision(
                    label,
                    "allowed_on_store_error",
                    "none",
                    "none",
                    p.tenant.as_deref().unwrap_or("none"),
                );
                Ok(Charged::No)
            } else {
                gate.metrics.store_fallback(label, "rejected");
                gate.metrics.decision(
                    label,
                    "rejected",
                    "StoreUnavailable",
                    "store",
                    p.tenant.as_deref().unwrap_or("none"),
                );
                Err(errors::store_unavailable())
            }
        }
    }
}

fn replay_detail() -> String {
    "this chain-agnostic op (replayable signature) was already relayed once, on another chain or earlier; \
     its signature is valid on every chain where the account exists, so a second send would execute it again"
        .into()
}

/// Refunds a reservation whose answer came too late, retrying a few times in the background.
fn undo_late_reservation(store: Arc<Store>, ticket: Ticket) {
    let hash = ticket.op;
    tokio::spawn(async move {
        for attempt in 0..5u32 {
            match store.refund(&ticket).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(%hash, attempt, error = %e, "refund after a store timeout failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        tracing::warn!(%hash, "a reservation that timed out could not be refunded; its charge stays");
    });
}

/// After relaying: commit or refund, and learn what an accepted op teaches.
pub async fn settle(gate: &Gate, label: &str, decided: &Decided, answer: &Result<UpstreamAnswer, RelayError>) {
    let (p, charged) = (&decided.prepared, decided.charged);
    let accepted = matches!(answer, Ok(UpstreamAnswer::Result(_)));
    let delivered_unknown = matches!(answer, Err(RelayError::OutcomeUnknown { .. }));
    if let Charged::Yes(ticket) = charged {
        if accepted {
            match gate.store.commit(&ticket).await {
                Ok(()) => gate.metrics.reservation(label, "committed"),
                Err(e) => gate.store_error("commit", &e),
            }
        } else if !delivered_unknown {
            match gate.store.refund(&ticket).await {
                Ok(true) => gate.metrics.reservation(label, "refunded"),
                Ok(false) => {}
                Err(e) => gate.store_error("refund", &e),
            }
        }
    }
    if accepted {
        crate::learn::learn(gate, p).await;
    }
}

/// `opgate_explainUserOperation`: the decision without relaying or charging.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// What was decoded.
    pub decoded: DecodedOp,
    /// `accept` or `reject`.
    pub decision: &'static str,
    /// The rejection, if any.
    pub rejection: Option<Rejection>,
    /// Every rule's verdict.
    pub verdicts: Vec<policy::RuleVerdict>,
    /// Operator policies that matched.
    pub matched_policies: Vec<String>,
    /// The charges a send would reserve, with the counters' current state.
    pub charges: Vec<ChargeView>,
    /// The simulation's outcome and effects; `null` when the chain does not simulate (or the
    /// pure policies already refused the op).
    pub simulation: Option<SimulationView>,
    /// What opgate knew of the account when deciding, and where it came from.
    pub account: AccountView,
}

/// The account as a decision saw it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// The root owner enable approvals and root ops are verified against.
    pub root_owner: Option<String>,
    /// Where it came from: `node`, `learned` (an op opgate relayed) or `op` (the op's own
    /// `initialize`, or an EIP-7702 account being its own owner).
    pub owner_source: Option<&'static str>,
    /// The account as the chain's node has it (`null` without a node, or when not read).
    pub on_chain: Option<Arc<OnChain>>,
    /// The registry's entry for the op's permission: where it came from and whether it waits for
    /// its op to land.
    pub permission_source: Option<&'static str>,
    /// Learned from a relayed op the chain has not shown yet.
    pub pending: Option<Pending>,
}

/// The simulation as `opgate_explainUserOperation` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulationView {
    /// The block whose state was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// The validation outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// The execution outcome (`null` when validation failed).
    pub execution: Option<Execution>,
    /// Gas used (decimal), when it executed.
    pub gas_used: Option<String>,
    /// Actual gas cost in wei (decimal), when it executed.
    pub actual_cost: Option<String>,
    /// What the op did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effects: Option<Effects>,
    /// Why the simulation could not answer (`timeout`, `node`, `evm`: message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SimulationView {
    fn of(s: &Simulated) -> Option<Self> {
        match s {
            Simulated::Off => None,
            Simulated::Failed(e) => Some(Self {
                block: None,
                validation: None,
                execution: None,
                gas_used: None,
                actual_cost: None,
                effects: None,
                error: Some(format!("{}: {e}", e.kind())),
            }),
            Simulated::Ran(r) => Some(Self {
                block: Some(r.block),
                validation: Some(r.validation.clone()),
                gas_used: r.execution.as_ref().map(|e| e.gas_used.to_string()),
                actual_cost: r.execution.as_ref().map(|e| e.actual_cost.to_string()),
                execution: r.execution.clone(),
                effects: Some(r.effects.clone()),
                error: None,
            }),
        }
    }
}

/// A planned charge and its counter's state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeView {
    /// Policy.
    pub policy: String,
    /// Rule.
    pub rule: String,
    /// Amount this op would use (decimal).
    pub amount: String,
    /// Limit (decimal).
    pub limit: String,
    /// Used so far in the current window (decimal), when the store answered.
    pub used: Option<String>,
    /// When the window resets.
    pub resets_at: Option<u64>,
}

/// Explains what a send of this op would do.
pub async fn explain(
    gate: &Gate,
    chain: &Chain,
    params: Option<&RawValue>,
    tenant: Option<Arc<str>>,
) -> Result<Explanation, RpcFailure> {
    let p = prepare_for(gate, chain, params, tenant).await?;
    let policies = gate.policies();
    let mut ev = p.evaluate(gate, &policies, None);
    let mut simulation = None;
    if ev.rejection.is_none() {
        let simulated = simulate(gate, chain, &p).await;
        match sim_verdict(chain, &p, &simulated) {
            Ok(Some(report)) => ev = p.evaluate(gate, &policies, Some(report)),
            Ok(None) => {}
            Err(r) => ev.fail(r),
        }
        simulation = SimulationView::of(&simulated);
    }
    let counters: Vec<_> = ev
        .charges
        .iter()
        .map(|c| CounterRef {
            scope: c.charge.scope,
            counter: c.charge.counter.clone(),
            window: c.charge.window,
        })
        .collect();
    let usage = match gate.store.usage(p.op.sender(), &counters, p.now).await {
        Ok(u) => Some(u),
        Err(e) => {
            gate.store_error("usage", &e);
            None
        }
    };
    if ev.rejection.is_none() {
        match gate.store.revoked(&ev.guards).await {
            Ok(Some(i)) => {
                let g = ev.guards.get(i).cloned().unwrap_or_default();
                ev.fail(Rejection::new(
                    Reason::Revoked,
                    "revocation",
                    g.clone(),
                    format!("{g} is revoked"),
                ));
            }
            Ok(None) => {}
            Err(e) => gate.store_error("revocation", &e),
        }
    }
    let mut charges = Vec::with_capacity(ev.charges.len());
    let mut pending: std::collections::HashMap<String, alloy_primitives::U256> = std::collections::HashMap::new();
    for (i, c) in ev.charges.iter().enumerate() {
        let u = usage.as_ref().and_then(|u| u.get(i));
        let before = pending.entry(c.charge.counter.clone()).or_default();
        if let Some(u) = u {
            let would = u.used.saturating_add(*before).saturating_add(c.charge.amount);
            if ev.rejection.is_none() && would > c.charge.limit {
                let detail = if c.origin.reason == Reason::CrossChainReplay {
                    replay_detail()
                } else {
                    let unit = c.origin.unit;
                    format!(
                        "{} of {} already used{}; this op needs {}",
                        unit.show(u.used),
                        unit.show(c.charge.limit),
                        u.resets_at
                            .map(|t| format!(" (resets at {})", crate::human::time(t)))
                            .unwrap_or_default(),
                        unit.show(c.charge.amount)
                    )
                };
                let mut r = Rejection::new(c.origin.reason, &c.origin.policy, &c.origin.rule, detail);
                if let Some(t) = u.resets_at {
                    r = r.retry_after(t.saturating_sub(p.now));
                }
                ev.rejection = Some(r);
            }
            if let (None, Some(at)) = (&ev.rejection, u.available_at) {
                if at > p.now {
                    ev.rejection = Some(
                        Rejection::new(
                            c.origin.reason,
                            &c.origin.policy,
                            &c.origin.rule,
                            format!(
                                "the next use is scheduled at {}; now is {}",
                                crate::human::time(at),
                                crate::human::time(p.now)
                            ),
                        )
                        .retry_after(at - p.now),
                    );
                }
            }
        }
        *before = before.saturating_add(c.charge.amount);
        charges.push(ChargeView {
            policy: c.origin.policy.clone(),
            rule: c.origin.rule.clone(),
            amount: c.charge.amount.to_string(),
            limit: c.charge.limit.to_string(),
            used: u.map(|u| u.used.to_string()),
            resets_at: u.and_then(|u| u.resets_at),
        });
    }
    Ok(Explanation {
        decision: if ev.rejection.is_some() { "reject" } else { "accept" },
        rejection: ev.rejection,
        verdicts: ev.verdicts,
        matched_policies: ev.matched,
        charges,
        simulation,
        account: AccountView {
            root_owner: p
                .account
                .as_ref()
                .and_then(|a| a.root_owner)
                .or_else(|| {
                    p.decoded
                        .detail
                        .as_ref()
                        .and_then(|k| k.deployment.as_ref())
                        .and_then(|d| d.root_validator.as_ref())
                        .and_then(|r| r.owner)
                })
                .map(crate::policy::hex_addr),
            owner_source: p.owner_source.map(Provenance::as_str),
            on_chain: p.on_chain.clone(),
            permission_source: p.registered.as_ref().map(|r| match r.stored.source {
                Source::Operator => "registered",
                _ => "learned",
            }),
            pending: p.registered.as_ref().and_then(|r| r.stored.pending),
        },
        decoded: p.decoded,
    })
}
