//! The permission registry: what opgate knows of Kernel permissions and accounts that later
//! operations do not carry.
//!
//! - **Permissions**, per (chain, account, permission id): learned from an enable-mode op once the
//!   upstream accepted it, or registered by an operator (a serialized permission account). Later
//!   default-mode ops carry no policy data; this is where their policies come from.
//! - **Accounts**, per (chain, account): the root validator's owner and the Kernel release, learned
//!   from an accepted op that deployed the account; they let opgate verify enable signatures.
//!
//! Entries live in the [`Store`] (shared by replicas) and are cached here, including misses. The
//! cache is dropped whenever the store's version changes (polled every [`POLL`]), so an entry
//! written or revoked on one replica is seen by every other within a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy_primitives::{Address, Bytes, FixedBytes};
use serde::{Deserialize, Serialize};

use crate::decode::{decode_permission_data, KernelVersion, Permission};
use crate::policy::hex_addr;
use crate::store::{Store, StoreError};

/// How often the store's version is polled.
pub const POLL: Duration = Duration::from_millis(400);

/// Most cached entries (hits and misses); past it the cache is cleared.
const CACHE_CAPACITY: usize = 50_000;

/// Where a registered permission came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// An enable-mode op the upstream accepted.
    Enable,
    /// Registered through the admin API.
    Operator,
    /// Installed by an owner op the upstream accepted (`installValidations`, directly or in a
    /// deploying op's `initConfig`).
    Owner,
}

/// A permission as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPermission {
    /// Kernel `validatorData`: the policies and the signer, exactly as installed.
    pub validator_data: Bytes,
    /// Selectors granted with it.
    #[serde(default)]
    pub selectors: Vec<FixedBytes<4>>,
    /// Where it came from.
    pub source: Source,
    /// When it was recorded (Unix seconds).
    pub learned_at: u64,
    /// The validation's hook: `None` when not known (registered before hooks were recorded),
    /// `Some(0)` for none. Kernel requires the `executeUserOp` prefix exactly when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<Address>,
    /// The account's `currentNonce` the permission was installed at (its `validationConfig`
    /// nonce), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_nonce: Option<u32>,
    /// The owner uninstalled it (`uninstallValidation`): kept as a tombstone so that its old
    /// enable approval, replayed, is recognised; it validates nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uninstalled: bool,
    /// Learned from an op opgate relayed on a chain with a node, not yet seen on chain: confirmed
    /// when the node shows it, dropped when it does not within the chain's `pending_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// A change learned from a relayed op that the chain has not shown yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The op that made it.
    pub op: alloy_primitives::B256,
    /// Until when (Unix seconds) it waits for the chain.
    pub until: u64,
}

impl StoredPermission {
    /// Whether it waits for its op to be included at `now`.
    pub fn waiting(&self, now: u64) -> bool {
        self.pending.is_some_and(|p| now <= p.until)
    }

    /// Whether its op was not included in time at `now`.
    pub fn expired(&self, now: u64) -> bool {
        self.pending.is_some_and(|p| now > p.until)
    }

    /// Whether the validation has a real hook (`None`: not known). Kernel stores "no hook" as
    /// `address(1)`; the enable data may say `address(0)`.
    pub fn has_hook(&self) -> Option<bool> {
        self.hook.map(|h| h != Address::ZERO && h != Address::with_last_byte(1))
    }
}

/// A permission ready for policy evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPermission {
    /// Decoded signer and policies.
    pub permission: Permission,
    /// As stored.
    pub stored: StoredPermission,
}

/// What is known of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    /// The root validator's owner (ECDSA validators).
    pub root_owner: Option<Address>,
    /// The Kernel release the account was deployed with.
    #[serde(default, with = "version_serde")]
    pub kernel_version: Option<KernelVersion>,
    /// The root validator module (validator-type roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_validator: Option<Address>,
    /// Validator modules known to be installed besides the root one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validators: Vec<Address>,
    /// Other modules the account's permissions installed (policies, signers, hooks) that are not
    /// canonical deployments: a session key calling one rewrites another permission's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<Address>,
    /// `currentNonce()`, when an owner op moved it (`None`: 1, its value after `initialize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_nonce: Option<u32>,
    /// `validNonceFrom()`, when an owner op moved it: non-root validations installed at a lower
    /// nonce are dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_nonce_from: Option<u32>,
    /// An EIP-7702 account (Kernel v3.3 delegation): its root owner is the account itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub eip7702: bool,
}

impl AccountInfo {
    /// Whether `validator` is known to be installed on the account.
    pub fn has_validator(&self, validator: Address) -> bool {
        self.root_validator == Some(validator) || self.validators.contains(&validator)
    }
}

mod version_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::decode::KernelVersion;

    pub(super) fn serialize<S: Serializer>(v: &Option<KernelVersion>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(v.domain_version()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KernelVersion>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.and_then(|s| KernelVersion::parse(&s)))
    }
}

/// The key of a permission entry.
pub fn permission_key(chain_id: u64, account: Address, id: FixedBytes<4>) -> String {
    format!("perm:{chain_id}:{}:{id}", hex_addr(account))
}

/// The key of an account entry.
pub fn account_key(chain_id: u64, account: Address) -> String {
    format!("acct:{chain_id}:{}", hex_addr(account))
}

#[derive(Debug, Clone)]
enum Cached {
    Permission(Option<Arc<KnownPermission>>),
    Account(Option<Arc<AccountInfo>>),
}

/// The registry over a store, with a cache.
#[derive(Debug)]
pub struct Registry {
    store: Arc<Store>,
    cache: RwLock<HashMap<String, Cached>>,
    version: AtomicU64,
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            cache: RwLock::new(HashMap::new()),
            version: AtomicU64::new(u64::MAX),
        }
    }

    fn cached(&self, key: &str) -> Option<Cached> {
        self.cache.read().ok()?.get(key).cloned()
    }

    fn remember(&self, key: String, value: Cached) {
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= CACHE_CAPACITY {
                c.clear();
            }
            c.insert(key, value);
        }
    }

    /// Drops every cached entry.
    pub fn clear(&self) {
        if let Ok(mut c) = self.cache.write() {
            c.clear();
        }
    }

    /// Checks the store's version and drops the cache when it moved. Returns whether it did.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let v = self.store.version().await?;
        let old = self.version.swap(v, Ordering::SeqCst);
        if old != v {
            self.clear();
            return Ok(true);
        }
        Ok(false)
    }

    /// Polls the store's version until `stop` resolves.
    pub async fn watch(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::debug!(error = %e, "registry version poll failed");
                    }
                }
            }
        }
    }

    /// The permission `id` of `account` on `chain_id`, if known.
    pub async fn permission(
        &self,
        chain_id: u64,
        account: Address,
        id: FixedBytes<4>,
    ) -> Result<Option<Arc<KnownPermission>>, StoreError> {
        let key = permission_key(chain_id, account, id);
        if let Some(Cached::Permission(p)) = self.cached(&key) {
            return Ok(p);
        }
        let found = match self.store.get_permission(&key).await? {
            None => None,
            Some(text) => match parse_permission(&text) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "unreadable registry entry ignored");
                    None
                }
            },
        };
        self.remember(key, Cached::Permission(found.clone()));
        Ok(found)
    }

    /// Records a permission.
    pub async fn put_permission(
        &self,
        chain_id: u64,
        account: Address,
        id: FixedBytes<4>,
        stored: &StoredPermission,
    ) -> Result<(), StoreError> {
        let key = permission_key(chain_id, account, id);
        let text = serde_json::to_string(stored).map_err(|e| StoreError::Protocol(e.to_string()))?;
        self.store.put_permission(&key, &text).await?;
        let parsed = parse_permission(&text).ok().map(Arc::new);
        self.remember(key, Cached::Permission(parsed));
        Ok(())
    }

    /// Forgets a permission. Returns whether it was known.
    pub async fn delete_permission(
        &self,
        chain_id: u64,
        account: Address,
        id: FixedBytes<4>,
    ) -> Result<bool, StoreError> {
        let key = permission_key(chain_id, account, id);
        let existed = self.store.delete_permission(&key).await?;
        self.remember(key, Cached::Permission(None));
        Ok(existed)
    }

    /// What is known of `account` on `chain_id`.
    pub async fn account(&self, chain_id: u64, account: Address) -> Result<Option<Arc<AccountInfo>>, StoreError> {
        let key = account_key(chain_id, account);
        if let Some(Cached::Account(a)) = self.cached(&key) {
            return Ok(a);
        }
        let found = self
            .store
            .get_permission(&key)
            .await?
            .and_then(|t| serde_json::from_str::<AccountInfo>(&t).ok())
            .map(Arc::new);
        self.remember(key, Cached::Account(found.clone()));
        Ok(found)
    }

    /// Records what is known of an account.
    pub async fn put_account(&self, chain_id: u64, account: Address, info: AccountInfo) -> Result<(), StoreError> {
        let key = account_key(chain_id, account);
        let text = serde_json::to_string(&info).map_err(|e| StoreError::Protocol(e.to_string()))?;
        self.store.put_permission(&key, &text).await?;
        self.remember(key, Cached::Account(Some(Arc::new(info))));
        Ok(())
    }
}

impl Registry {
    /// The permission id a session key was learned or registered under, for `account`.
    pub async fn permission_for_signer(
        &self,
        chain_id: u64,
        account: Address,
        signer: Address,
    ) -> Result<Option<FixedBytes<4>>, StoreError> {
        let key = signer_key(chain_id, account, signer);
        Ok(self
            .store
            .get_permission(&key)
            .await?
            .and_then(|t| t.trim().parse().ok()))
    }

    /// Records which permission id a session key uses on `account`.
    pub async fn put_signer(
        &self,
        chain_id: u64,
        account: Address,
        signer: Address,
        id: FixedBytes<4>,
    ) -> Result<(), StoreError> {
        self.store
            .put_permission(&signer_key(chain_id, account, signer), &id.to_string())
            .await
    }
}

/// The key of a session key → permission id index entry.
pub fn signer_key(chain_id: u64, account: Address, signer: Address) -> String {
    format!("signer:{chain_id}:{}:{}", hex_addr(account), hex_addr(signer))
}

/// Parses a stored permission entry and decodes its validator data.
pub fn parse_permission(text: &str) -> Result<KnownPermission, String> {
    let stored: StoredPermission = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let permission = decode_permission_data(&stored.validator_data).map_err(|e| e.to_string())?;
    Ok(KnownPermission { permission, stored })
}
