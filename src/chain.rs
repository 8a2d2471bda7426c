//! Everything opgate holds for one served chain: its id, its upstreams, its pass-through rules and
//! its metric handles. Built once at start-up, shared by every request on that chain.

use std::sync::Arc;

use crate::accounts::AccountReader;
use crate::config::MethodRules;
use crate::pipeline::Gate;
use crate::relay::Relay;
use crate::sim::Simulator;
use crate::telemetry::ChainMetrics;

/// One served chain.
#[derive(Debug)]
pub struct Chain {
    /// EIP-155 id, when known.
    pub id: Option<u64>,
    /// The `chain` metric label: the id, or `default` when unknown.
    pub label: String,
    /// Upstream bundlers.
    pub relay: Relay,
    /// Which methods pass through.
    pub methods: MethodRules,
    /// Metric handles.
    pub metrics: ChainMetrics,
    /// Policies, store and registry (shared by every chain).
    pub gate: Arc<Gate>,
    /// Simulation against the chain's node; `None` when no node is configured (or
    /// `[chains.simulation] enabled = false`).
    pub simulator: Option<Simulator>,
    /// Account state read from the chain's node; `None` without a node (or with
    /// `[chains.accounts] read_from_node = false`).
    pub accounts: Option<ChainAccounts>,
}

/// The chain's account reader with the settings its reads follow.
#[derive(Debug)]
pub struct ChainAccounts {
    /// The reader.
    pub reader: Arc<AccountReader>,
    /// What a failed read does (the chain's `on_sim_error`).
    pub on_error: crate::config::OnError,
}
