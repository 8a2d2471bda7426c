//! Simulation: every operation runs through the real EntryPoint in revm, against the chain's state
//! read from its node, before it is relayed — so policies can be checked on what the op *does*,
//! not only on what its call data says.
//!
//! ```text
//! op ─▶ handleOps([op], bundler) from the configured bundler, on the latest block's state,
//!       timestamp and base fee ─▶ EffectsInspector ─▶ Simulation { validation, execution, effects }
//! ```
//!
//! - [`state`]: block-pinned state from the node (alloy provider), shared by every simulation on
//!   that block; a cold op is prefetched in one batch from `eth_createAccessList`, and a node
//!   without it falls back to reading on demand (one batched round trip per miss).
//! - [`entry_point`]: the `handleOps` call, and what the EntryPoint's revert data and events say.
//! - [`inspector`]: the account's validation answer and its effects.
//!
//! The EVM runs on tokio's blocking pool behind a semaphore (`max_concurrent`), under one deadline
//! (`timeout`) that covers waiting, node reads and execution.

pub mod effects;
pub mod entry_point;
mod inspector;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, Bytes, TxKind, B256, U256, U64};
use revm::context::{Context, TxEnv};
use revm::database::CacheDB;
use revm::database_interface::DatabaseRef;
use revm::primitives::hardfork::SpecId;
use revm::{InspectEvm, MainBuilder, MainContext};
use tokio::sync::{Mutex, Semaphore};

pub use effects::{Effects, Execution, Simulation, TokenMove, Validation};
use inspector::EffectsInspector;
pub use state::{BlockState, Header, Node, NodeError, NodeTransport};

use crate::config::SimulationConfig;
use crate::outbound::HttpsClient;
use crate::userop::UserOperation;

/// A simulation that could not give an answer (the op itself is not at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The deadline passed (waiting for a slot, reading state or executing).
    #[error("the simulation did not finish within {0:?}")]
    Timeout(Duration),
    /// The node could not be read.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The EVM refused the transaction itself (not the op): a bug or an unexpected chain.
    #[error("evm: {0}")]
    Evm(String),
}

impl SimError {
    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Node(_) => "node",
            Self::Evm(_) => "evm",
        }
    }
}

/// The balance the bundler is given inside a simulation: enough for any `handleOps`.
const BUNDLER_BALANCE: U256 = U256::from_limbs([0, 0, 1, 0]);

/// Simulates ops of one chain.
#[derive(Debug)]
pub struct Simulator {
    config: SimulationConfig,
    chain_id: u64,
    node: Arc<Node>,
    slots: Arc<Semaphore>,
    block: Mutex<Option<Arc<BlockState>>>,
}

/// What one run found, with how it was obtained.
#[derive(Debug, Clone)]
pub struct Run {
    /// The report.
    pub simulation: Simulation,
    /// The block's state was already loaded for this op's account (no prefetch needed).
    pub warm: bool,
}

impl Simulator {
    /// A simulator for `chain_id` whose node is trusted on the public web roots alone; node reads
    /// made on blocking threads run on `handle`.
    pub fn new(config: SimulationConfig, chain_id: u64, handle: tokio::runtime::Handle) -> Self {
        let client = crate::outbound::client(&[], crate::config::DEFAULT_CONNECT_TIMEOUT)
            .expect("ring supports the default TLS versions");
        Self::with_client(config, chain_id, handle, client)
    }

    /// [`Simulator::new`] reaching the node through `client` (opgate's outbound client, with the
    /// configured trusted roots).
    pub fn with_client(
        config: SimulationConfig,
        chain_id: u64,
        handle: tokio::runtime::Handle,
        client: HttpsClient,
    ) -> Self {
        let transport = NodeTransport::new(&config.node, config.node_headers.clone(), client);
        let node = Arc::new(Node::new(transport, handle));
        Self {
            slots: Arc::new(Semaphore::new(config.max_concurrent as usize)),
            config,
            chain_id,
            node,
            block: Mutex::new(None),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SimulationConfig {
        &self.config
    }

    /// Round trips made to the node so far.
    pub fn round_trips(&self) -> u64 {
        self.node.round_trips()
    }

    /// Simulates `op` (whose userOpHash is `hash`) against the latest block, within the deadline.
    pub async fn simulate(&self, op: &UserOperation, entry_point: Address, hash: B256) -> Result<Run, SimError> {
        let deadline = self.config.timeout;
        tokio::time::timeout(deadline, self.run(op, entry_point, hash))
            .await
            .map_err(|_| SimError::Timeout(deadline))?
    }

    async fn run(&self, op: &UserOperation, entry_point: Address, hash: B256) -> Result<Run, SimError> {
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SimError::Evm("the simulator is shut down".into()))?;
        let state = self.state().await?;
        let data = entry_point::handle_ops(op, self.config.bundler);
        let gas = entry_point::tx_gas(op, state.header.gas_limit.to::<u64>());
        let warm = state.has_account(op.sender()) && state.has_account(entry_point);
        if !warm {
            self.prefetch(&state, op, entry_point, &data, gas).await;
        }
        let job = Job {
            state,
            op_sender: op.sender(),
            entry_point,
            hash,
            data,
            gas,
            bundler: self.config.bundler,
            chain_id: self.chain_id,
        };
        let simulation = tokio::task::spawn_blocking(move || job.execute())
            .await
            .map_err(|e| SimError::Evm(format!("the simulation task failed: {e}")))??;
        Ok(Run { simulation, warm })
    }

    /// The latest block's state: the one already loaded when the head has not moved.
    async fn state(&self) -> Result<Arc<BlockState>, SimError> {
        let header = self.node.latest().await?;
        let mut current = self.block.lock().await;
        if let Some(s) = current.as_ref().filter(|s| s.header.hash == header.hash) {
            return Ok(s.clone());
        }
        let s = Arc::new(BlockState::new(self.node.clone(), header));
        *current = Some(s.clone());
        Ok(s)
    }

    /// Loads what the op will touch in two round trips: the access list of its `handleOps`, then
    /// every account and slot on it in one batch. On a node without `eth_createAccessList` only
    /// the obvious accounts are loaded, and the rest is read on demand.
    async fn prefetch(&self, state: &BlockState, op: &UserOperation, entry_point: Address, data: &Bytes, gas: u64) {
        let mut accounts = vec![op.sender(), entry_point, self.config.bundler];
        accounts.extend(op.factory());
        accounts.extend(op.paymaster());
        // Precompiles are left off access lists, yet the EVM loads them (ecrecover for every
        // ECDSA signature): load them with the rest.
        accounts.extend((1u8..=0x11).map(Address::with_last_byte));
        let mut slots = Vec::new();
        let call = serde_json::json!({
            "from": self.config.bundler,
            "to": entry_point,
            "data": data,
            "gas": U64::from(gas),
        });
        match self.node.access_list(&call, state.header.number).await {
            Ok(list) => {
                for (a, keys) in list {
                    accounts.push(a);
                    slots.extend(keys.into_iter().map(|k| (a, k)));
                }
            }
            Err(e) => tracing::debug!(error = %e, "no access list from the node; reading state on demand"),
        }
        if let Err(e) = state.prefetch(&accounts, &slots).await {
            tracing::debug!(error = %e, "prefetch failed; reading state on demand");
        }
    }
}

/// One simulation, moved to a blocking thread.
struct Job {
    state: Arc<BlockState>,
    op_sender: Address,
    entry_point: Address,
    hash: B256,
    data: Bytes,
    gas: u64,
    bundler: Address,
    chain_id: u64,
}

impl Job {
    fn execute(self) -> Result<Simulation, SimError> {
        let header = self.state.header;
        let base_fee = header.base_fee_per_gas.map_or(0, |b| b.to::<u64>());
        let mut db = CacheDB::new(self.state.as_ref());
        let mut bundler = self.state.basic_ref(self.bundler)?.unwrap_or_default();
        bundler.balance = BUNDLER_BALANCE;
        let nonce = bundler.nonce;
        db.insert_account_info(self.bundler, bundler);
        let ctx = Context::mainnet()
            .with_db(db)
            .modify_cfg_chained(|c| {
                c.set_spec_and_mainnet_gas_params(SpecId::PRAGUE);
                c.chain_id = self.chain_id;
                c.disable_nonce_check = true;
            })
            .modify_block_chained(|b| {
                b.number = U256::from(header.number.to::<u64>());
                b.timestamp = U256::from(header.timestamp.to::<u64>());
                b.basefee = base_fee;
                b.gas_limit = header.gas_limit.to::<u64>().max(self.gas);
                b.beneficiary = self.bundler;
                b.prevrandao = Some(B256::ZERO);
            });
        let mut evm = ctx.build_mainnet_with_inspector(EffectsInspector::new(self.op_sender, self.entry_point));
        let tx = TxEnv::builder()
            .caller(self.bundler)
            .kind(TxKind::Call(self.entry_point))
            .data(self.data)
            .gas_limit(self.gas)
            .gas_price(u128::from(base_fee))
            .nonce(nonce)
            .chain_id(Some(self.chain_id))
            .build()
            .map_err(|e| SimError::Evm(format!("{e:?}")))?;
        let result = evm.inspect_one_tx(tx).map_err(|e| match e {
            revm::context::result::EVMError::Database(e) => SimError::Node(e),
            other => SimError::Evm(other.to_string()),
        })?;
        let inspector = std::mem::replace(&mut evm.inspector, EffectsInspector::new(Address::ZERO, Address::ZERO));
        let (validation_data, account_revert) = (inspector.validation_data, inspector.validation_revert.clone());
        let effects = inspector.into_effects();
        use revm::context::result::ExecutionResult as R;
        let (revert, logs) = match &result {
            R::Success { logs, .. } => (None, logs.as_slice()),
            R::Revert { output, .. } => (Some(output.clone()), &[][..]),
            R::Halt { reason, .. } => (Some(Bytes::from(format!("{reason:?}").into_bytes())), &[][..]),
        };
        let validation = entry_point::validation(revert.as_ref(), validation_data, account_revert.as_ref());
        let execution = if validation.ok {
            entry_point::execution(logs, self.entry_point, self.hash)
        } else {
            None
        };
        Ok(Simulation {
            block: header.number.to::<u64>(),
            validation,
            effects: if execution.is_some() {
                effects
            } else {
                Effects::default()
            },
            execution,
        })
    }
}
