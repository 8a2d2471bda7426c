//! Account state read from the chain's node: what the chain itself says of a Kernel account, for
//! accounts opgate has never seen and for changes made around it.
//!
//! One op needs one [`Read`]: the account's code (deployed? an EIP-7702 delegation?), its ERC-1967
//! implementation (the Kernel release), `rootValidator()`, `currentNonce()`, `validNonceFrom()`,
//! `accountId()`, the root owner as each known ECDSA validator stores it, and for the op's own
//! validation its `validationConfig` (enable nonce and hook), `permissionConfig` (signer and
//! policies), the canonical ECDSA signer's session key and `isAllowedSelector` for the selector
//! the op is gated on. All of it travels in **one JSON-RPC batch**, pinned to one block number.
//!
//! The block is the head a background poller keeps ([`Head`]); reads are cached per block and
//! shared by concurrent ops (the first op reads, the others wait for its answer), so a warm
//! account costs no round trip. A new head drops the cache. Each call the node refuses (an
//! account that is not a Kernel, a validator that is not there) leaves that field unknown; only a
//! failed round trip fails the read.
//!
//! The node is read, never trusted for more than what it returns: it tells who the root owner is
//! and whether a permission is installed with which signer and policy contracts, never what the
//! policies allow (that lives in the policy contracts' storage as hashes) — those come from the
//! registry, and must match what the chain says is installed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, Bytes, FixedBytes, B256, U64};
use alloy_sol_types::{sol, SolCall};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::decode::init::{ECDSA_VALIDATOR, ECDSA_VALIDATOR_V3_0};
use crate::decode::multichain::MULTICHAIN_ECDSA_VALIDATOR;
use crate::decode::permission::ECDSA_SIGNER;
use crate::decode::{KernelVersion, Permission};
use crate::sim::{Node, NodeError};

sol! {
    function rootValidator() external view returns (bytes21);
    function currentNonce() external view returns (uint32);
    function validNonceFrom() external view returns (uint32);
    function accountId() external view returns (string);
    function validationConfig(bytes21 vId) external view returns (uint32 nonce, address hook);
    function permissionConfig(bytes4 pId) external view returns (bytes2 permissionFlag, address signer, bytes22[] policyData);
    function isAllowedSelector(bytes21 vId, bytes4 selector) external view returns (bool);
    function ecdsaValidatorStorage(address account) external view returns (address owner);
    function signer(bytes32 id, address wallet) external view returns (address);
}

/// The ERC-1967 implementation slot (`keccak("eip1967.proxy.implementation") - 1`).
pub const IMPLEMENTATION_SLOT: B256 =
    alloy_primitives::b256!("360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc");

/// The ECDSA validators whose storage tells a root owner.
const OWNER_VALIDATORS: [Address; 3] = [ECDSA_VALIDATOR, ECDSA_VALIDATOR_V3_0, MULTICHAIN_ECDSA_VALIDATOR];

/// Most cached reads of one block; past it the cache is cleared.
const CACHE_CAPACITY: usize = 20_000;

/// What one op needs read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Read {
    /// The account.
    pub account: Address,
    /// The op's validation (`0x01 ‖ validator` or `0x02 ‖ pid ‖ 0^16`); `None` for root ops.
    pub validation: Option<FixedBytes<21>>,
    /// The selector Kernel's selector gate reads for the op.
    pub selector: Option<FixedBytes<4>>,
}

/// What the account's code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "address")]
pub enum Code {
    /// No code: not deployed (or an EOA).
    None,
    /// A contract.
    Contract,
    /// An EIP-7702 delegation to this address.
    Delegated(Address),
}

/// The account as the chain has it at one block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnChain {
    /// The block read.
    pub block: u64,
    /// The account's code.
    pub code: Code,
    /// The ERC-1967 implementation (a proxied Kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation: Option<Address>,
    /// The Kernel release (implementation, delegation or `accountId()`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "version")]
    pub kernel_version: Option<KernelVersion>,
    /// `rootValidator()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_validator: Option<FixedBytes<21>>,
    /// The root ECDSA validator's owner (`ecdsaValidatorStorage(account)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_owner: Option<Address>,
    /// `currentNonce()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_nonce: Option<u32>,
    /// `validNonceFrom()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_nonce_from: Option<u32>,
    /// The op's validation, when it has one and the account answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<OnChainValidation>,
}

fn version<S: serde::Serializer>(v: &Option<KernelVersion>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(v.domain_version()),
        None => s.serialize_none(),
    }
}

/// One validation as the chain has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnChainValidation {
    /// The validation id.
    pub id: FixedBytes<21>,
    /// `validationConfig(vId).nonce`: the `currentNonce` it was installed at.
    pub nonce: u32,
    /// `validationConfig(vId).hook`: zero when not installed, `address(1)` for no hook.
    pub hook: Address,
    /// For a permission: its `permissionConfig`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<OnChainPermission>,
    /// `isAllowedSelector(vId, selector)` for the op's gated selector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<(FixedBytes<4>, bool)>,
}

impl OnChainValidation {
    /// Whether the validation is installed (Kernel clears the hook on uninstall; a permission
    /// also needs its signer).
    pub fn installed(&self) -> bool {
        self.hook != Address::ZERO && self.permission.as_ref().is_none_or(|p| p.signer != Address::ZERO)
    }

    /// Whether the validation has a real hook (not zero, not `address(1)`).
    pub fn has_hook(&self) -> bool {
        self.hook > Address::with_last_byte(1)
    }
}

/// A permission's `permissionConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnChainPermission {
    /// The permission flag.
    pub flag: FixedBytes<2>,
    /// The signer module.
    pub signer: Address,
    /// `(flag, policy)` in Kernel's order.
    pub policies: Vec<(FixedBytes<2>, Address)>,
    /// The session key, when the signer is the canonical ECDSA signer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<Address>,
}

impl OnChainPermission {
    /// Where `permission` (decoded install data) differs from what is installed, if anywhere.
    pub fn mismatch(&self, permission: &Permission) -> Option<String> {
        if permission.signer.contract != self.signer {
            return Some(format!(
                "signer module {:#x} on chain, {:#x} known",
                self.signer, permission.signer.contract
            ));
        }
        if let (Some(chain), Some(known)) = (self.session_key, permission.signer.address) {
            if chain != known {
                return Some(format!("session key {chain:#x} on chain, {known:#x} known"));
            }
        }
        let known: Vec<(FixedBytes<2>, Address)> = permission.policies.iter().map(|p| (p.flag, p.address)).collect();
        if known != self.policies {
            return Some(format!(
                "{} policies on chain ({}), {} known",
                self.policies.len(),
                self.policies
                    .iter()
                    .map(|(_, a)| format!("{a:#x}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known.len()
            ));
        }
        None
    }
}

/// The latest block number as a background poller last saw it (0: not known yet).
#[derive(Debug, Default)]
pub struct Head {
    number: AtomicU64,
}

impl Head {
    /// The last block number seen, if any.
    pub fn get(&self) -> Option<u64> {
        Some(self.number.load(Ordering::Acquire)).filter(|n| *n > 0)
    }

    /// Records `n` if it is newer. Returns whether it was.
    pub fn advance(&self, n: u64) -> bool {
        self.number.fetch_max(n, Ordering::AcqRel) < n
    }
}

type Slot = Arc<OnceCell<Arc<OnChain>>>;

#[derive(Debug, Default)]
struct Cache {
    block: u64,
    reads: HashMap<Read, Slot>,
}

/// How a read was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From this block's cache (no round trip).
    Cached,
    /// Read from the node (one round trip).
    Read,
}

/// Reads account state from one chain's node.
#[derive(Debug)]
pub struct AccountReader {
    node: Arc<Node>,
    head: Arc<Head>,
    timeout: Duration,
    poll: Duration,
    /// How long what was learned from a relayed op waits for the chain to show it.
    pub pending_timeout: Duration,
    cache: Mutex<Cache>,
}

impl AccountReader {
    /// A reader of `node`, each read bounded by `timeout`, the head polled every `poll`.
    pub fn new(node: Arc<Node>, timeout: Duration, poll: Duration, pending_timeout: Duration) -> Self {
        Self {
            node,
            head: Arc::new(Head::default()),
            timeout,
            poll,
            pending_timeout,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Round trips made to the node so far (head polls included).
    pub fn round_trips(&self) -> u64 {
        self.node.round_trips()
    }

    /// The head as last polled.
    pub fn head(&self) -> Option<u64> {
        self.head.get()
    }

    /// Polls the head until `stop` resolves.
    pub async fn watch_head(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    match tokio::time::timeout(self.timeout, self.node.block_number()).await {
                        Ok(Ok(n)) => { self.head.advance(n); }
                        Ok(Err(e)) => tracing::debug!(error = %e, "head poll failed"),
                        Err(_) => tracing::debug!("head poll timed out"),
                    }
                }
            }
        }
    }

    /// The account as the chain has it at the head, within the read's deadline: from the cache
    /// when this block was already read for the same need.
    pub async fn read(&self, need: Read) -> Result<(Arc<OnChain>, Served), NodeError> {
        tokio::time::timeout(self.timeout, self.read_now(need))
            .await
            .map_err(|_| {
                NodeError(format!(
                    "the account state read did not finish within {:?}",
                    self.timeout
                ))
            })?
    }

    async fn read_now(&self, need: Read) -> Result<(Arc<OnChain>, Served), NodeError> {
        let block = match self.head.get() {
            Some(b) => b,
            None => {
                let b = self.node.block_number().await?;
                self.head.advance(b);
                self.head.get().unwrap_or(b)
            }
        };
        let slot = {
            let mut cache = self.cache.lock().map_err(|e| NodeError(e.to_string()))?;
            if cache.block != block || cache.reads.len() >= CACHE_CAPACITY {
                cache.block = block;
                cache.reads.clear();
            }
            cache.reads.entry(need).or_default().clone()
        };
        let mut served = Served::Cached;
        let state = slot
            .get_or_try_init(|| {
                served = Served::Read;
                async { self.fetch(need, block).await.map(Arc::new) }
            })
            .await?;
        Ok((state.clone(), served))
    }

    /// Everything `need` asks for, in one batch at `block`.
    async fn fetch(&self, need: Read, block: u64) -> Result<OnChain, NodeError> {
        let a = need.account;
        let tag = U64::from(block);
        let call = |to: Address, data: Vec<u8>| serde_json::json!([{ "to": to, "data": Bytes::from(data) }, tag]);
        let mut calls: Vec<(&'static str, serde_json::Value)> = vec![
            ("eth_getCode", serde_json::json!([a, tag])),
            ("eth_getStorageAt", serde_json::json!([a, IMPLEMENTATION_SLOT, tag])),
            ("eth_call", call(a, rootValidatorCall {}.abi_encode())),
            ("eth_call", call(a, currentNonceCall {}.abi_encode())),
            ("eth_call", call(a, validNonceFromCall {}.abi_encode())),
            ("eth_call", call(a, accountIdCall {}.abi_encode())),
        ];
        for v in OWNER_VALIDATORS {
            calls.push((
                "eth_call",
                call(v, ecdsaValidatorStorageCall { account: a }.abi_encode()),
            ));
        }
        let pid = need
            .validation
            .filter(|v| v[0] == 0x02)
            .map(|v| FixedBytes::<4>::from_slice(&v[1..5]));
        if let Some(vid) = need.validation {
            calls.push(("eth_call", call(a, validationConfigCall { vId: vid }.abi_encode())));
            if let Some(sel) = need.selector {
                calls.push((
                    "eth_call",
                    call(
                        a,
                        isAllowedSelectorCall {
                            vId: vid,
                            selector: sel,
                        }
                        .abi_encode(),
                    ),
                ));
            }
        }
        if let Some(pid) = pid {
            calls.push(("eth_call", call(a, permissionConfigCall { pId: pid }.abi_encode())));
            let mut id = B256::ZERO;
            id[..4].copy_from_slice(pid.as_slice());
            calls.push((
                "eth_call",
                call(ECDSA_SIGNER, signerCall { id, wallet: a }.abi_encode()),
            ));
        }
        let answers = self.node.batch(&calls).await?;
        let mut it = answers.into_iter();
        let mut next = || it.next().and_then(Result::ok);
        let bytes = |v: Option<serde_json::Value>| v.and_then(|v| serde_json::from_value::<Bytes>(v).ok());
        let code = bytes(next()).unwrap_or_default();
        let slot = next().and_then(|v| serde_json::from_value::<B256>(v).ok());
        let root = bytes(next()).and_then(|d| rootValidatorCall::abi_decode_returns(&d).ok());
        let current = bytes(next()).and_then(|d| currentNonceCall::abi_decode_returns(&d).ok());
        let valid_from = bytes(next()).and_then(|d| validNonceFromCall::abi_decode_returns(&d).ok());
        let account_id = bytes(next()).and_then(|d| accountIdCall::abi_decode_returns(&d).ok());
        let owners: Vec<Option<Address>> = OWNER_VALIDATORS
            .iter()
            .map(|_| bytes(next()).and_then(|d| ecdsaValidatorStorageCall::abi_decode_returns(&d).ok()))
            .collect();
        let mut validation = None;
        if let Some(vid) = need.validation {
            let vc = bytes(next()).and_then(|d| validationConfigCall::abi_decode_returns(&d).ok());
            let selector = need.selector.and_then(|sel| {
                bytes(next())
                    .and_then(|d| isAllowedSelectorCall::abi_decode_returns(&d).ok())
                    .map(|allowed| (sel, allowed))
            });
            let permission = if pid.is_some() {
                let pc = bytes(next()).and_then(|d| permissionConfigCall::abi_decode_returns(&d).ok());
                let key = bytes(next()).and_then(|d| signerCall::abi_decode_returns(&d).ok());
                pc.map(|pc| OnChainPermission {
                    flag: pc.permissionFlag,
                    signer: pc.signer,
                    policies: pc
                        .policyData
                        .iter()
                        .map(|p| (FixedBytes::<2>::from_slice(&p[..2]), Address::from_slice(&p[2..])))
                        .collect(),
                    session_key: key.filter(|k| pc.signer == ECDSA_SIGNER && *k != Address::ZERO),
                })
            } else {
                None
            };
            validation = vc.map(|vc| OnChainValidation {
                id: vid,
                nonce: vc.nonce,
                hook: vc.hook,
                permission,
                selector,
            });
        }
        let code_kind = if code.is_empty() {
            Code::None
        } else if code.len() == 23 && code.starts_with(&[0xef, 0x01, 0x00]) {
            Code::Delegated(Address::from_slice(&code[3..]))
        } else {
            Code::Contract
        };
        let implementation = match code_kind {
            Code::Delegated(a) => Some(a),
            Code::Contract => slot
                .map(|s| Address::from_slice(&s[12..]))
                .filter(|a| *a != Address::ZERO),
            Code::None => None,
        };
        let kernel_version = implementation
            .and_then(crate::learn::release_of)
            .or_else(|| account_id.as_deref().and_then(release_of_account_id));
        let root_owner = root.and_then(|r| {
            let v = Address::from_slice(&r[1..]);
            OWNER_VALIDATORS
                .iter()
                .position(|x| *x == v && r[0] == 0x01)
                .and_then(|i| owners[i])
                .filter(|o| *o != Address::ZERO)
        });
        Ok(OnChain {
            block,
            code: code_kind,
            implementation,
            kernel_version,
            root_validator: root,
            root_owner,
            current_nonce: current,
            valid_nonce_from: valid_from,
            validation,
        })
    }
}

/// The release an `accountId()` names (`kernel.advanced.v0.3.1`).
fn release_of_account_id(id: &str) -> Option<KernelVersion> {
    KernelVersion::parse(id.strip_prefix("kernel.advanced.v")?)
}

/// Where what opgate used came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Provenance {
    /// Read from the chain's node.
    Node,
    /// Learned from an op opgate relayed.
    Learned,
    /// Registered through the admin API.
    Registered,
    /// From the op itself (a deploying op's `initialize`).
    Op,
}

impl Provenance {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Learned => "learned",
            Self::Registered => "registered",
            Self::Op => "op",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_name_releases() {
        assert_eq!(
            release_of_account_id("kernel.advanced.v0.3.1"),
            Some(KernelVersion::V3_1)
        );
        assert_eq!(
            release_of_account_id("kernel.advanced.v0.3.0-beta"),
            Some(KernelVersion::V3_0)
        );
        assert_eq!(release_of_account_id("simple.v0.7"), None);
    }

    #[test]
    fn the_head_only_moves_forward() {
        let h = Head::default();
        assert_eq!(h.get(), None);
        assert!(h.advance(5));
        assert!(!h.advance(4));
        assert_eq!(h.get(), Some(5));
    }

    #[test]
    fn a_cleared_hook_means_uninstalled() {
        let v = OnChainValidation {
            id: FixedBytes::ZERO,
            nonce: 1,
            hook: Address::ZERO,
            permission: None,
            selector: None,
        };
        assert!(!v.installed());
        let v = OnChainValidation {
            hook: Address::with_last_byte(1),
            ..v
        };
        assert!(v.installed() && !v.has_hook());
    }
}
