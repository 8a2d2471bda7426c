//! State from the chain's node, pinned to one block and shared by every simulation on that block.
//!
//! Reads go through an alloy provider. Each miss costs one round trip: an account's balance, nonce
//! and code travel in one JSON-RPC batch, and [`BlockState::prefetch`] loads every account and
//! slot an access list names in one batch too. Nothing here is ever invalidated: a new block gets
//! a new [`BlockState`], and the old one is dropped with its last simulation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_provider::{Provider, RootProvider};
use alloy_rpc_client::BatchRequest;
use revm::bytecode::Bytecode;
use revm::database_interface::{DBErrorMarker, DatabaseRef};
use revm::primitives::KECCAK_EMPTY;
use revm::state::AccountInfo;
use serde::Deserialize;

/// The node could not answer a read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node: {0}")]
pub struct NodeError(pub String);

impl DBErrorMarker for NodeError {}

impl NodeError {
    fn of(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// The chain's node: an alloy provider and a count of the round trips made to it.
#[derive(Debug)]
pub struct Node {
    provider: RootProvider,
    handle: tokio::runtime::Handle,
    round_trips: AtomicU64,
}

/// The block a simulation runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// Number.
    pub number: U64,
    /// Hash.
    pub hash: B256,
    /// Timestamp (seconds).
    pub timestamp: U64,
    /// Base fee per gas.
    #[serde(default)]
    pub base_fee_per_gas: Option<U64>,
    /// Gas limit.
    pub gas_limit: U64,
}

impl Node {
    /// A node at `url`; reads block on `handle` when they run on a blocking thread.
    pub fn new(url: url::Url, handle: tokio::runtime::Handle) -> Self {
        Self {
            provider: RootProvider::new_http(url),
            handle,
            round_trips: AtomicU64::new(0),
        }
    }

    /// Round trips made so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    fn trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// The latest block's header.
    pub async fn latest(&self) -> Result<Header, NodeError> {
        self.trip();
        let h: Option<Header> = self
            .provider
            .client()
            .request("eth_getBlockByNumber", ("latest", false))
            .await
            .map_err(NodeError::of)?;
        h.ok_or_else(|| NodeError("the node has no latest block".into()))
    }

    /// `eth_createAccessList` for a call at `block`: the accounts and slots it touches.
    pub async fn access_list(
        &self,
        call: &serde_json::Value,
        block: U64,
    ) -> Result<Vec<(Address, Vec<U256>)>, NodeError> {
        #[derive(Debug, Clone, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Item {
            address: Address,
            storage_keys: Vec<U256>,
        }
        #[derive(Debug, Clone, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            access_list: Vec<Item>,
        }
        self.trip();
        let a: Answer = self
            .provider
            .client()
            .request("eth_createAccessList", (call, block))
            .await
            .map_err(NodeError::of)?;
        Ok(a.access_list.into_iter().map(|i| (i.address, i.storage_keys)).collect())
    }
}

/// State at one block: what was read so far, shared by every simulation on the block.
#[derive(Debug)]
pub struct BlockState {
    /// The block.
    pub header: Header,
    node: Arc<Node>,
    accounts: RwLock<HashMap<Address, Option<AccountInfo>>>,
    storage: RwLock<HashMap<(Address, U256), U256>>,
    codes: RwLock<HashMap<B256, Bytecode>>,
    hashes: RwLock<HashMap<u64, B256>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl BlockState {
    /// Empty state at `header`.
    pub fn new(node: Arc<Node>, header: Header) -> Self {
        Self {
            header,
            node,
            accounts: RwLock::default(),
            storage: RwLock::default(),
            codes: RwLock::default(),
            hashes: RwLock::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Reads served from memory and reads that went to the node.
    pub fn hits_misses(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Whether an account is already loaded.
    pub fn has_account(&self, a: Address) -> bool {
        self.accounts.read().is_ok_and(|m| m.contains_key(&a))
    }

    /// Loads `accounts` and `slots` not yet known, all in one batch (one round trip).
    pub async fn prefetch(&self, accounts: &[Address], slots: &[(Address, U256)]) -> Result<(), NodeError> {
        let accounts: Vec<Address> = {
            let known = self.accounts.read().map_err(NodeError::of)?;
            let mut v: Vec<Address> = accounts.iter().copied().filter(|a| !known.contains_key(a)).collect();
            v.sort();
            v.dedup();
            v
        };
        let slots: Vec<(Address, U256)> = {
            let known = self.storage.read().map_err(NodeError::of)?;
            let mut v: Vec<_> = slots.iter().copied().filter(|s| !known.contains_key(s)).collect();
            v.sort();
            v.dedup();
            v
        };
        if accounts.is_empty() && slots.is_empty() {
            return Ok(());
        }
        let block = self.header.number;
        let mut batch = BatchRequest::new(self.node.provider.client());
        let mut account_waiters = Vec::with_capacity(accounts.len());
        for a in &accounts {
            let balance = batch
                .add_call::<_, U256>("eth_getBalance", &(a, block))
                .map_err(NodeError::of)?;
            let nonce = batch
                .add_call::<_, U64>("eth_getTransactionCount", &(a, block))
                .map_err(NodeError::of)?;
            let code = batch
                .add_call::<_, Bytes>("eth_getCode", &(a, block))
                .map_err(NodeError::of)?;
            account_waiters.push((*a, balance, nonce, code));
        }
        let mut slot_waiters = Vec::with_capacity(slots.len());
        for (a, k) in &slots {
            let w = batch
                .add_call::<_, B256>("eth_getStorageAt", &(a, k, block))
                .map_err(NodeError::of)?;
            slot_waiters.push(((*a, *k), w));
        }
        self.node.trip();
        batch.send().await.map_err(NodeError::of)?;
        let mut loaded = Vec::with_capacity(account_waiters.len());
        for (a, balance, nonce, code) in account_waiters {
            let (balance, nonce, code) = (
                balance.await.map_err(NodeError::of)?,
                nonce.await.map_err(NodeError::of)?,
                code.await.map_err(NodeError::of)?,
            );
            loaded.push((a, account_info(balance, nonce.to::<u64>(), code)));
        }
        let mut values = Vec::with_capacity(slot_waiters.len());
        for (s, w) in slot_waiters {
            values.push((s, U256::from_be_bytes(w.await.map_err(NodeError::of)?.0)));
        }
        {
            let mut codes = self.codes.write().map_err(NodeError::of)?;
            for (_, info) in &loaded {
                if let Some(info) = info {
                    if let Some(code) = &info.code {
                        codes.entry(info.code_hash).or_insert_with(|| code.clone());
                    }
                }
            }
        }
        self.accounts.write().map_err(NodeError::of)?.extend(loaded);
        self.storage.write().map_err(NodeError::of)?.extend(values);
        Ok(())
    }

    fn fetch<T>(&self, f: impl std::future::Future<Output = Result<T, NodeError>>) -> Result<T, NodeError> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.node.handle.block_on(f)
    }
}

fn account_info(balance: U256, nonce: u64, code: Bytes) -> Option<AccountInfo> {
    if balance.is_zero() && nonce == 0 && code.is_empty() {
        return None;
    }
    let (hash, code) = if code.is_empty() {
        (KECCAK_EMPTY, Bytecode::default())
    } else {
        let c = Bytecode::new_raw(code);
        (c.hash_slow(), c)
    };
    Some(AccountInfo::new(balance, nonce, hash, code))
}

impl DatabaseRef for BlockState {
    type Error = NodeError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, NodeError> {
        if let Some(a) = self.accounts.read().map_err(NodeError::of)?.get(&address) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(a.clone());
        }
        self.fetch(self.prefetch(&[address], &[]))?;
        Ok(self
            .accounts
            .read()
            .map_err(NodeError::of)?
            .get(&address)
            .cloned()
            .flatten())
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, NodeError> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        self.codes
            .read()
            .map_err(NodeError::of)?
            .get(&code_hash)
            .cloned()
            .ok_or_else(|| NodeError(format!("code {code_hash} was never loaded")))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, NodeError> {
        if let Some(v) = self.storage.read().map_err(NodeError::of)?.get(&(address, index)) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(*v);
        }
        self.fetch(self.prefetch(&[], &[(address, index)]))?;
        Ok(self
            .storage
            .read()
            .map_err(NodeError::of)?
            .get(&(address, index))
            .copied()
            .unwrap_or_default())
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, NodeError> {
        if number == self.header.number.to::<u64>() {
            return Ok(self.header.hash);
        }
        if let Some(h) = self.hashes.read().map_err(NodeError::of)?.get(&number) {
            return Ok(*h);
        }
        let node = self.node.clone();
        let h: Option<Header> = self.fetch(async move {
            node.trip();
            node.provider
                .client()
                .request("eth_getBlockByNumber", (U64::from(number), false))
                .await
                .map_err(NodeError::of)
        })?;
        let hash = h.map(|h| h.hash).unwrap_or_default();
        self.hashes.write().map_err(NodeError::of)?.insert(number, hash);
        Ok(hash)
    }
}
