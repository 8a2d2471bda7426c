//! Accounts changed around opgate: opgate reads each Kernel account from the chain's node and
//! follows the permission lifecycle as the chain does.
//!
//! The chain is anvil. The accounts and validators are the project's own Solidity contracts
//! (`devnet/contracts/KernelState.sol`, compiled now with npm `solc`): they answer the read-side
//! functions of a Kernel v3 account (`rootValidator`, `currentNonce`, `validNonceFrom`,
//! `validationConfig`, `permissionConfig`, `isAllowedSelector`, `accountId`, the ERC-1967
//! implementation slot) and of the ECDSA validator and signer, at the canonical module addresses.
//! Their setters stand in for what owners do on chain without opgate: deploying the account,
//! installing and uninstalling permissions, `invalidateNonce`. The ops themselves are built and
//! signed here (`kernel_ops`), sent through a real opgate to a fake bundler, on the in-memory store
//! and on Redis.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{address, keccak256, Address, Bytes, FixedBytes, B256, U256};
use alloy_sol_types::{sol, SolCall, SolValue};
use k256::ecdsa::SigningKey;
use opgate::clock::ManualClock;
use opgate::config::{Config, Overrides};
use opgate::decode::enable::{enable_digest, EnableDomain, KernelVersion};
use serde_json::{json, Value};

use crate::devnet::Devnet;
use crate::kernel_ops::*;
use crate::sim::{compile, deploy, rpc, tx_receipt, FUNDER};
use crate::support::{call, Opgate};

const ECDSA_VALIDATOR_V3_0: Address = address!("8104e3Ad430EA6d354d013A6789fDFc71E671c43");
const ECDSA_VALIDATOR: Address = address!("845ADb2C711129d4f3966735eD98a9F09fC4cE57");
const ECDSA_SIGNER: Address = address!("6A6F069E2a08c2468e7724Ab3250CdBFBA14D4FF");
const MULTICHAIN_ECDSA_VALIDATOR: Address = address!("5C97aA67Ba578E3c54ec5942A7563Ea9130E4f5F");

/// How long what opgate learned from a relayed op waits for the chain, in this test's config.
const PENDING_SECS: u64 = 300;

sol! {
    function setUp(bytes21 root, string id, address implementation);
    function installPermission(bytes4 pId, uint32 nonce, address hook, address signer, bytes22[] policyData, bytes4 selector);
    function uninstallPermission(bytes4 pId);
    function invalidateNonce(uint32 nonce);
    function setOwner(address account, address owner);
    function setSigner(bytes32 id, address wallet, address key);
    function uninstallValidation(bytes21 vId, bytes deinitData, bytes hookDeinitData);
}

/// The Kernel implementation of each release (spec §2.5).
fn implementation(v: KernelVersion) -> Address {
    match v {
        KernelVersion::V3_0 => address!("94F097E1ebEB4ecA3AAE54cabb08905B239A7D27"),
        KernelVersion::V3_1 => address!("BAC849bB641841b44E965fB01A4Bf5F074f84b4D"),
        KernelVersion::V3_2 => address!("D830D15D3dc0C269F3dBAa0F3e8626d33CFdaBe1"),
        KernelVersion::V3_3 => address!("d6CEDDe84be40893d153Be9d467CD6aD37875b28"),
    }
}

fn account_id(v: KernelVersion) -> &'static str {
    match v {
        KernelVersion::V3_0 => "kernel.advanced.v0.3.0-beta",
        KernelVersion::V3_1 => "kernel.advanced.v0.3.1",
        KernelVersion::V3_2 => "kernel.advanced.v0.3.2",
        KernelVersion::V3_3 => "kernel.advanced.v0.3.3",
    }
}

/// anvil with the state contracts' code at the module addresses.
struct Chain {
    _devnet: Devnet,
    node: String,
    account_code: Value,
}

impl Chain {
    async fn up() -> Self {
        let devnet = Devnet::anvil_only().await;
        let node = devnet.get("ANVIL_URL").to_string();
        let compiled = compile().await;
        let code_of = |name: &'static str| {
            let (node, compiled) = (node.clone(), compiled.clone());
            async move {
                let at = deploy(&node, &compiled, name).await;
                rpc(&node, "eth_getCode", json!([at, "latest"])).await
            }
        };
        let validator = code_of("EcdsaValidatorState").await;
        let signer = code_of("EcdsaSignerState").await;
        let account_code = code_of("KernelAccountState").await;
        for (at, code) in [
            (ECDSA_VALIDATOR, &validator),
            (ECDSA_VALIDATOR_V3_0, &validator),
            (MULTICHAIN_ECDSA_VALIDATOR, &validator),
            (ECDSA_SIGNER, &signer),
        ] {
            rpc(&node, "anvil_setCode", json!([at, code])).await;
        }
        Self {
            _devnet: devnet,
            node,
            account_code,
        }
    }

    /// Sends `data` to `to` from anvil's account #0; returns the block it was mined in.
    async fn send(&self, to: Address, data: Vec<u8>) -> u64 {
        let tx = rpc(
            &self.node,
            "eth_sendTransaction",
            json!([{ "from": FUNDER, "to": to, "data": Bytes::from(data) }]),
        )
        .await;
        let receipt = tx_receipt(&self.node, &tx).await;
        assert_eq!(receipt["status"], "0x1", "{receipt}");
        u64::from_str_radix(receipt["blockNumber"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }

    /// The account deployed without opgate: its code, `initialize` (root ECDSA validator, release)
    /// and the validator's owner.
    async fn deploy(&self, a: &Account) -> u64 {
        let validator = if a.version == KernelVersion::V3_0 {
            ECDSA_VALIDATOR_V3_0
        } else {
            ECDSA_VALIDATOR
        };
        self.deploy_with_root(a, validator).await
    }

    /// [`Chain::deploy`] with `validator` as the root validator.
    async fn deploy_with_root(&self, a: &Account, validator: Address) -> u64 {
        rpc(&self.node, "anvil_setCode", json!([a.address, self.account_code])).await;
        let mut root = [0u8; 21];
        root[0] = 0x01;
        root[1..].copy_from_slice(validator.as_slice());
        self.send(
            a.address,
            setUpCall {
                root: FixedBytes(root),
                id: account_id(a.version).into(),
                implementation: implementation(a.version),
            }
            .abi_encode(),
        )
        .await;
        self.send(
            validator,
            setOwnerCall {
                account: a.address,
                owner: a.owner_address(),
            }
            .abi_encode(),
        )
        .await
    }

    /// What an enable op of `grant` for `a`'s session key does on chain, at `nonce`.
    async fn install(&self, a: &Account, grant: &Grant, nonce: u32) -> u64 {
        let policies = grant
            .policies
            .iter()
            .map(|p| FixedBytes::<22>::from_slice(&p[..22]))
            .collect();
        self.send(
            a.address,
            installPermissionCall {
                pId: FixedBytes(a.pid),
                nonce,
                hook: grant.hook,
                signer: ECDSA_SIGNER,
                policyData: policies,
                selector: FixedBytes(grant.selector),
            }
            .abi_encode(),
        )
        .await;
        let mut id = B256::ZERO;
        id[..4].copy_from_slice(&a.pid);
        self.send(
            ECDSA_SIGNER,
            setSignerCall {
                id,
                wallet: a.address,
                key: a.session_address(),
            }
            .abi_encode(),
        )
        .await
    }

    async fn uninstall(&self, a: &Account) -> u64 {
        self.send(
            a.address,
            uninstallPermissionCall { pId: FixedBytes(a.pid) }.abi_encode(),
        )
        .await
    }

    async fn invalidate_nonce(&self, a: &Account, nonce: u32) -> u64 {
        self.send(a.address, invalidateNonceCall { nonce }.abi_encode()).await
    }
}

/// opgate reading accounts from `chain`'s node (simulation off: the state contracts validate
/// nothing), in front of a fake bundler, on `store`.
async fn opgate(chain: &Chain, store: &str, clock: Arc<ManualClock>) -> Harness {
    let bundler = accepting_bundler().await;
    let toml = format!(
        "{store}\n[[chains]]\nid = {CHAIN}\nupstreams = [\"{}\"]\nnode = \"{}\"\n[chains.simulation]\nenabled = \
         false\n[chains.accounts]\nhead_poll = \"50ms\"\npending_timeout = \"{PENDING_SECS}s\"\n",
        bundler.url(),
        chain.node
    );
    let config = Config::from_toml(&toml, &Overrides::default()).expect("test config is valid");
    let opgate = Opgate::start_with_clock(config, clock).await;
    Harness { bundler, opgate }
}

async fn session_state(h: &Harness, a: &Account) -> Value {
    let params = json!([CHAIN, a.address.to_string(), FixedBytes(a.pid).to_string()]).to_string();
    let v = call(&h.opgate.url(&format!("/{CHAIN}")), "opgate_getSessionState", &params).await;
    assert!(v.get("error").is_none(), "opgate_getSessionState: {v}");
    v["result"].clone()
}

async fn explain(h: &Harness, op: &Op) -> Value {
    let v = call(
        &h.opgate.url(&format!("/{CHAIN}")),
        "opgate_explainUserOperation",
        &op.params(),
    )
    .await;
    assert!(v.get("error").is_none(), "opgate_explainUserOperation: {v}");
    v["result"].clone()
}

/// Waits (at most 10 s) until opgate reads `a` at `block` or later: its head poller has seen the
/// block a change around opgate was mined in.
async fn sees(h: &Harness, a: &Account, block: u64) {
    for _ in 0..400 {
        if session_state(h, a).await["onChain"]["block"].as_u64() >= Some(block) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("opgate did not read block {block} within 10 s");
}

/// Waits (at most 10 s) until `opgate_getSessionState` of `a` satisfies `ok` (what a decision
/// writes back to the registry is written after it answers).
async fn state_becomes(h: &Harness, a: &Account, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = session_state(h, a).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: opgate_getSessionState never showed it; last: {last}");
}

/// The enable op of `grant` for `a` on an account that is already deployed.
fn enable_deployed(a: &Account, grant: &Grant, digest_nonce: u32, seq: u64, call_data: Vec<u8>) -> Op {
    let o = EnableOpts {
        deploy: false,
        digest_nonce,
        seq,
        ..Default::default()
    };
    enable_op(a, grant, call_data, o)
}

/// An enable op for a deployed account whose approval is the multi-chain form (spec §5.5): the
/// owner signs EIP-191(root) of the Enable digests on this chain and another,
/// `ecdsaSig ‖ root ‖ abi.encode(bytes32[] proof)`.
fn multichain_enable(a: &Account, grant: &Grant) -> Op {
    let o = EnableOpts {
        deploy: false,
        ..Default::default()
    };
    enable_op_approved(a, grant, pay(1), o, &|digest, data, nonce| {
        let domain = EnableDomain {
            account: a.address,
            chain_id: OTHER_CHAIN,
            version: a.version,
        };
        let other = enable_digest(&domain, a.validation_id(), nonce, data);
        let (lo, hi) = if digest < other {
            (digest, other)
        } else {
            (other, digest)
        };
        let root = keccak256([lo.as_slice(), hi.as_slice()].concat());
        let sig = sign_191(&a.owner, root);
        [&sig[..], root.as_slice(), &vec![other].abi_encode()].concat()
    })
}

/// A default-mode session op paying `amount`, signed by the session key.
fn session_pays(a: &Account, seq: u64, amount: u64) -> Op {
    session_signed(a, session_op(a, seq, pay(amount)), CHAIN)
}

/// A root op calling the account's own `uninstallValidation` for `a`'s permission, signed by
/// `key`.
fn uninstall_op(a: &Account, seq: u64, key: &SigningKey) -> Op {
    let mut vid = [0u8; 21];
    vid[0] = 0x02;
    vid[1..5].copy_from_slice(&a.pid);
    let inner = uninstallValidationCall {
        vId: FixedBytes(vid),
        deinitData: Bytes::new(),
        hookDeinitData: Bytes::new(),
    }
    .abi_encode();
    let mut n = [0u8; 32];
    n[24..].copy_from_slice(&seq.to_be_bytes());
    let op = Op::new(a.address, U256::from_be_bytes(n), execute_single(a.address, 0, &inner));
    let sig = sign_191(key, op.hash(CHAIN));
    op.with_signature(sig.to_vec())
}

/// Another key posing as `a`'s owner.
fn impostor(a: &Account) -> Account {
    Account {
        version: a.version,
        address: a.address,
        owner: SigningKey::from_slice(&[0x99; 32]).unwrap(),
        session: a.session.clone(),
        pid: a.pid,
    }
}

fn sudo_grant() -> Grant {
    Grant::of(vec![sudo()])
}

/// Transfers of at most 100 to the recipient.
fn narrow_grant() -> Grant {
    Grant::of(vec![call_policy(0, vec![transfer_to_recipient_at_most_100()])])
}

const RELEASES: [KernelVersion; 2] = [KernelVersion::V3_1, KernelVersion::V3_3];

/// Every lifecycle rule, on accounts opgate never saw deployed.
async fn accounts_changed_around_opgate(chain: &Chain, store: &str, base: u8) {
    let h = opgate(chain, store, Arc::new(ManualClock::new(NOW))).await;
    for (i, v) in RELEASES.into_iter().enumerate() {
        let l = label(v);
        let case = base + 10 * i as u8;

        // 1. Deployed around opgate: the enable approval is verified against the node's owner.
        let a = Account::new(v, case);
        let block = chain.deploy(&a).await;
        sees(&h, &a, block).await;
        let forged = enable_deployed(&impostor(&a), &sudo_grant(), 1, 0, pay(1));
        h.refuses(
            CHAIN,
            &forged,
            "InvalidSignature",
            &format!("{l}: an approval by a key that is not the owner"),
        )
        .await;
        let genuine = enable_deployed(&a, &sudo_grant(), 1, 0, pay(1));
        let e = explain(&h, &genuine).await;
        assert_eq!(e["decision"], "accept", "{l}: {e}");
        assert_eq!(e["account"]["ownerSource"], "node", "{l}: {e}");
        assert_eq!(
            e["account"]["rootOwner"].as_str().map(str::to_lowercase),
            Some(a.owner_address().to_string().to_lowercase()),
            "{l}: the owner read from the node verifies the approval: {e}"
        );
        let approval = &e["decoded"]["kernel"]["enable"];
        assert_eq!(approval["approved"], true, "{l}: {e}");
        assert_eq!(approval["owner"], e["account"]["rootOwner"], "{l}: {e}");
        h.forwards(
            CHAIN,
            &genuine,
            &format!("{l}: the owner's approval, verified from the node"),
        )
        .await;
        h.refuses(
            CHAIN,
            &uninstall_op(&a, 0, &impostor(&a).owner),
            "InvalidSignature",
            &format!("{l}: a root op signed by a key that is not the node's owner"),
        )
        .await;

        // The multi-chain form: one owner signature over the Merkle root of the Enable digests
        // of the same permission on two chains, the root owner read from the multi-chain
        // validator's storage.
        let m = Account::new(v, case + 2);
        let block = chain.deploy_with_root(&m, MULTICHAIN_ECDSA_VALIDATOR).await;
        sees(&h, &m, block).await;
        h.refuses(
            CHAIN,
            &multichain_enable(&impostor(&m), &sudo_grant()),
            "InvalidSignature",
            &format!("{l}: a multi-chain approval by a key that is not the owner"),
        )
        .await;
        let op = multichain_enable(&m, &sudo_grant());
        let e = explain(&h, &op).await;
        assert_eq!(e["account"]["ownerSource"], "node", "{l}: {e}");
        h.forwards(
            CHAIN,
            &op,
            &format!("{l}: the owner's multi-chain approval, verified from the node"),
        )
        .await;

        // 2. The enable op lands: its permission is confirmed and its ops forwarded.
        let block = chain.install(&a, &sudo_grant(), 1).await;
        sees(&h, &a, block).await;
        h.forwards(
            CHAIN,
            &session_pays(&a, 1, 1),
            &format!("{l}: a session op once the permission is on chain"),
        )
        .await;
        let s = state_becomes(&h, &a, &format!("{l}: confirmed"), |s| s["pending"].is_null()).await;
        assert_eq!(s["installed"], true, "{l}: {s}");
        assert_eq!(s["source"], "learned", "{l}: {s}");
        assert_eq!(s["enableNonce"], 1, "{l}: {s}");

        // 3. The owner uninstalls it without opgate: its ops and its old approval are refused.
        let block = chain.uninstall(&a).await;
        sees(&h, &a, block).await;
        h.refuses(
            CHAIN,
            &session_pays(&a, 2, 1),
            "Revoked",
            &format!("{l}: an op of a permission uninstalled on chain"),
        )
        .await;
        h.refuses(
            CHAIN,
            &enable_deployed(&a, &sudo_grant(), 1, 1, pay(1)),
            "Revoked",
            &format!("{l}: the uninstalled permission's old approval sent again"),
        )
        .await;
        let s = state_becomes(&h, &a, &format!("{l}: uninstalled"), |s| s["installed"] == false).await;
        assert_eq!(s["known"], false, "{l}: {s}");

        // 4. invalidateNonce, then the owner re-issues the id with narrower policies: forwarded,
        //    and from then on the new policies are the ones enforced.
        let block = chain.invalidate_nonce(&a, 2).await;
        sees(&h, &a, block).await;
        h.refuses(
            CHAIN,
            &enable_deployed(&a, &narrow_grant(), 1, 2, pay(1)),
            "InvalidSignature",
            &format!("{l}: an approval over the nonce invalidateNonce moved past"),
        )
        .await;
        h.forwards(
            CHAIN,
            &enable_deployed(&a, &narrow_grant(), 2, 3, pay(5)),
            &format!("{l}: the owner's re-issue at the new nonce"),
        )
        .await;
        let block = chain.install(&a, &narrow_grant(), 2).await;
        sees(&h, &a, block).await;
        h.forwards(
            CHAIN,
            &session_pays(&a, 4, 100),
            &format!("{l}: what the new policies allow"),
        )
        .await;
        h.refuses(
            CHAIN,
            &session_pays(&a, 5, 101),
            "ConditionFailed",
            &format!("{l}: what only the old (sudo) policies allowed"),
        )
        .await;

        // 5. The owner invalidates the nonce again: the live permission is dead on chain.
        let block = chain.invalidate_nonce(&a, 3).await;
        sees(&h, &a, block).await;
        h.refuses(
            CHAIN,
            &session_pays(&a, 6, 1),
            "Revoked",
            &format!("{l}: an op of a permission installed below validNonceFrom"),
        )
        .await;

        // 6. Re-issued outside opgate with other policies: opgate does not know them, and the old
        //    ones it holds no longer apply.
        let b = Account::new(v, case + 1);
        let block = chain.deploy(&b).await;
        sees(&h, &b, block).await;
        h.forwards(
            CHAIN,
            &enable_deployed(&b, &narrow_grant(), 1, 0, pay(1)),
            &format!("{l}: b's enable op"),
        )
        .await;
        chain.install(&b, &narrow_grant(), 1).await;
        chain.uninstall(&b).await;
        let block = chain.install(&b, &sudo_grant(), 1).await;
        sees(&h, &b, block).await;
        h.refuses(
            CHAIN,
            &session_pays(&b, 1, 1),
            "UnknownPermission",
            &format!("{l}: an op of a permission re-issued outside opgate"),
        )
        .await;
        // Enabling the id again with yet other policies while it is live on chain.
        // (v3.3 approves currentNonce + 1 once the id's config is at currentNonce.)
        let digest = if v == KernelVersion::V3_3 { 2 } else { 1 };
        h.refuses(
            CHAIN,
            &enable_deployed(&b, &narrow_grant(), digest, 1, pay(1)),
            "InvalidPermission",
            &format!("{l}: enabling a live id with another signer or other policies"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_changed_around_opgate_are_followed_through_the_node() {
    let chain = Chain::up().await;
    accounts_changed_around_opgate(&chain, "", 40).await;
    let prefix = redis_prefix("lifecycle");
    let _keys = RedisKeys(prefix.clone());
    accounts_changed_around_opgate(&chain, &redis_store(&prefix), 80).await;
}

/// What opgate learned from ops it relayed is confirmed when they land and rolled back when they
/// do not within `pending_timeout`.
async fn learned_state_waits_for_the_chain(chain: &Chain, store: &str, base: u8) {
    let clock = Arc::new(ManualClock::new(NOW));
    let h = opgate(chain, store, clock.clone()).await;
    let v = KernelVersion::V3_1;

    // An enable op that never lands.
    let a = Account::new(v, base);
    let block = chain.deploy(&a).await;
    sees(&h, &a, block).await;
    h.forwards(CHAIN, &enable_deployed(&a, &sudo_grant(), 1, 0, pay(1)), "an enable op")
        .await;
    let s = state_becomes(&h, &a, "pending", |s| !s["pending"].is_null()).await;
    assert_eq!(s["installed"], false, "{s}");
    assert_eq!(s["source"], "learned", "{s}");
    h.refuses(
        CHAIN,
        &session_pays(&a, 1, 1),
        "UnknownPermission",
        "an op of a permission whose enable op is not included yet",
    )
    .await;
    clock.advance(PENDING_SECS + 1);
    h.refuses(
        CHAIN,
        &session_pays(&a, 2, 1),
        "UnknownPermission",
        "an op of a permission whose enable op never landed",
    )
    .await;
    let s = state_becomes(&h, &a, "dropped", |s| s["source"].is_null()).await;
    assert_eq!(s["known"], false, "{s}");
    assert!(s["pending"].is_null(), "{s}");

    // A root uninstall op that never lands, then one that does.
    let b = Account::new(v, base + 1);
    let block = chain.deploy(&b).await;
    sees(&h, &b, block).await;
    h.forwards(
        CHAIN,
        &enable_deployed(&b, &sudo_grant(), 1, 0, pay(1)),
        "b's enable op",
    )
    .await;
    let block = chain.install(&b, &sudo_grant(), 1).await;
    sees(&h, &b, block).await;
    h.forwards(CHAIN, &session_pays(&b, 1, 1), "b's session op").await;
    h.forwards(CHAIN, &uninstall_op(&b, 0, &b.owner), "the owner's uninstall op")
        .await;
    h.refuses(
        CHAIN,
        &session_pays(&b, 2, 1),
        "Revoked",
        "an op of a permission whose uninstall op is on its way",
    )
    .await;
    clock.advance(PENDING_SECS + 1);
    h.forwards(
        CHAIN,
        &session_pays(&b, 3, 1),
        "an op of a permission whose uninstall op never landed",
    )
    .await;
    let s = state_becomes(&h, &b, "revived", |s| s["pending"].is_null() && s["known"] == true).await;
    assert_eq!(s["installed"], true, "{s}");

    h.forwards(CHAIN, &uninstall_op(&b, 1, &b.owner), "the owner's uninstall op, again")
        .await;
    let block = chain.uninstall(&b).await;
    sees(&h, &b, block).await;
    h.refuses(
        CHAIN,
        &session_pays(&b, 4, 1),
        "Revoked",
        "an op once the uninstall landed",
    )
    .await;
    let s = state_becomes(&h, &b, "confirmed", |s| s["pending"].is_null()).await;
    assert_eq!(s["installed"], false, "{s}");
    assert_eq!(s["known"], false, "{s}");

    // The owner uninstalls and at once re-issues the id with narrower policies, both through
    // opgate: the re-issue is forwarded while the uninstall is on its way, and once both landed
    // the new policies are enforced.
    let c = Account::new(v, base + 2);
    let block = chain.deploy(&c).await;
    sees(&h, &c, block).await;
    h.forwards(
        CHAIN,
        &enable_deployed(&c, &sudo_grant(), 1, 0, pay(1)),
        "c's enable op",
    )
    .await;
    let block = chain.install(&c, &sudo_grant(), 1).await;
    sees(&h, &c, block).await;
    h.forwards(CHAIN, &uninstall_op(&c, 0, &c.owner), "c's owner uninstalls")
        .await;
    h.forwards(
        CHAIN,
        &enable_deployed(&c, &narrow_grant(), 1, 1, pay(1)),
        "the re-issue sent while the uninstall is on its way",
    )
    .await;
    chain.uninstall(&c).await;
    let block = chain.install(&c, &narrow_grant(), 1).await;
    sees(&h, &c, block).await;
    h.forwards(CHAIN, &session_pays(&c, 2, 100), "what the re-issued policies allow")
        .await;
    h.refuses(
        CHAIN,
        &session_pays(&c, 3, 101),
        "ConditionFailed",
        "what only the uninstalled policies allowed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_state_is_confirmed_or_rolled_back_by_the_chain() {
    let chain = Chain::up().await;
    learned_state_waits_for_the_chain(&chain, "", 120).await;
    let prefix = redis_prefix("lifecycle-pending");
    let _keys = RedisKeys(prefix.clone());
    learned_state_waits_for_the_chain(&chain, &redis_store(&prefix), 130).await;
}

/// A node that cannot be read follows `on_sim_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_node_follows_on_sim_error() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    for (on_sim_error, refused) in [("reject", true), ("allow", false)] {
        let bundler = accepting_bundler().await;
        let toml = format!(
            "[[chains]]\nid = {CHAIN}\nupstreams = [\"{}\"]\nnode = \"{node}\"\n[chains.simulation]\nenabled = \
             false\non_sim_error = \"{on_sim_error}\"\ntimeout = \"500ms\"\n",
            bundler.url()
        );
        let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
        let h = Harness {
            bundler,
            opgate: Opgate::start_with_clock(config, Arc::new(ManualClock::new(NOW))).await,
        };
        let a = Account::new(KernelVersion::V3_1, 150);
        let op = enable_op(&a, &sudo_grant(), pay(1), EnableOpts::default());
        let sent = h.send(CHAIN, &op).await;
        if refused {
            assert!(!sent.0, "on_sim_error = reject: refused: {}", sent.1);
            assert_eq!(sent.1["error"]["code"], -32053, "{}", sent.1);
            assert_eq!(sent.1["error"]["data"]["reason"], "SimulationUnavailable", "{}", sent.1);
            assert_eq!(sent.1["error"]["data"]["policy"], "node", "{}", sent.1);
        } else {
            assert!(sent.0, "on_sim_error = allow: forwarded: {}", sent.1);
        }
    }
}
