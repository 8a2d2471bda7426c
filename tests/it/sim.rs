//! Simulation on the project's devnet: SimpleAccount ops run through the real EntryPoint in revm
//! against anvil's state, and the simulator reports validation, execution and effects.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{address, keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{sol, SolCall};
use k256::ecdsa::SigningKey;
use opgate::config::{OnError, SimulationConfig, DEFAULT_SIM_BUNDLER};
use opgate::sim::Simulator;
use opgate::userop::{self, EntryPointVersion, UserOperation};
use serde_json::{json, Value};

use crate::devnet::Devnet;
use crate::support::*;

sol! {
    function createAccount(address owner, uint256 salt);
    function getAddress(address owner, uint256 salt) returns (address);
    function execute(address dest, uint256 value, bytes func);
}

/// An EntryPoint and the SimpleAccountFactory the devnet deploys for it (`deploy.mjs`: canonical
/// CREATE2 addresses, the same as `state.env` gives).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deployment {
    pub version: EntryPointVersion,
    pub entry_point: Address,
    pub factory: Address,
}

pub(crate) const V06: Deployment = Deployment {
    version: EntryPointVersion::V06,
    entry_point: EntryPointVersion::V06_ADDRESS,
    factory: address!("9406Cc6185a346906296840746125a0E44976454"),
};
pub(crate) const V07: Deployment = Deployment {
    version: EntryPointVersion::V07,
    entry_point: EntryPointVersion::V07_ADDRESS,
    factory: address!("91E60e0613810449d098b0b5Ec8b51A0FE8c8985"),
};
pub(crate) const V08: Deployment = Deployment {
    version: EntryPointVersion::V08,
    entry_point: EntryPointVersion::V08_ADDRESS,
    factory: address!("13E9ed32155810FDbd067D4522C492D6f68E5944"),
};
const EP07: Address = V07.entry_point;

impl Deployment {
    /// Checks the devnet put this deployment where these constants say.
    pub(crate) fn check(&self, devnet: &Devnet) {
        let v = self.version.as_str().replace('.', "");
        let state = |key: &str| devnet.get(&format!("{key}_{v}")).parse::<Address>().unwrap();
        assert_eq!(state("ENTRYPOINT"), self.entry_point, "EntryPoint {}", self.version);
        assert_eq!(state("FACTORY"), self.factory, "SimpleAccountFactory {}", self.version);
    }

    /// What the version's SimpleAccount signs for `hash`: v0.6 and v0.7 recover the owner from the
    /// eth-signed userOpHash, v0.8 from the userOpHash itself (its EIP-712 digest).
    fn signed_digest(&self, hash: B256) -> B256 {
        match self.version {
            EntryPointVersion::V06 | EntryPointVersion::V07 => eth_signed(hash),
            EntryPointVersion::V08 => hash,
        }
    }
}

/// A SimpleAccount owner on the devnet, and the account its deployment's factory gives it.
pub(crate) struct Account {
    pub at: Deployment,
    pub key: SigningKey,
    pub owner: Address,
    pub sender: Address,
}

pub(crate) async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let v = call(url, method, &params.to_string()).await;
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

/// The base fee of `block` (a number or a tag).
pub(crate) async fn base_fee(node: &str, block: Value) -> u128 {
    let block = rpc(node, "eth_getBlockByNumber", json!([block, false])).await;
    u128::from_str_radix(block["baseFeePerGas"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

impl Account {
    /// A fresh owner (from `seed`) whose counterfactual account at `at` holds 1 ether.
    pub(crate) async fn funded(node: &str, at: Deployment, seed: u8) -> Self {
        let key = SigningKey::from_slice(&[seed; 32]).unwrap();
        let owner = Address::from_private_key(&key);
        let data = getAddressCall {
            owner,
            salt: U256::ZERO,
        }
        .abi_encode();
        let out = rpc(
            node,
            "eth_call",
            json!([{ "to": at.factory, "data": Bytes::from(data) }, "latest"]),
        )
        .await;
        let word: B256 = out.as_str().unwrap().parse().unwrap();
        let sender = Address::from_word(word);
        rpc(node, "anvil_setBalance", json!([sender, "0xde0b6b3a7640000"])).await;
        Self { at, key, owner, sender }
    }

    /// An op for the account's EntryPoint (deploying the account when `deploy`) calling `to` with
    /// `value` and `data`, signed by `signer` (the owner unless given): the parsed op and its RPC
    /// form.
    pub(crate) async fn op(
        &self,
        node: &str,
        deploy: bool,
        to: Address,
        value: U256,
        data: Bytes,
        signer: Option<&SigningKey>,
    ) -> (UserOperation, Value) {
        let base_fee = base_fee(node, json!("latest")).await;
        let mut rpc_op = json!({
            "sender": self.sender,
            "nonce": "0x0",
            "callData": Bytes::from(executeCall { dest: to, value, func: data }.abi_encode()),
            "callGasLimit": "0x30000",
            "verificationGasLimit": "0x80000",
            "preVerificationGas": "0x10000",
            "maxFeePerGas": format!("{:#x}", base_fee * 2 + 1_000_000_000),
            "maxPriorityFeePerGas": "0x3b9aca00",
            "signature": Bytes::from(vec![0u8; 65]),
        });
        let create = Bytes::from(
            createAccountCall {
                owner: self.owner,
                salt: U256::ZERO,
            }
            .abi_encode(),
        );
        match self.at.version {
            // v0.6 carries the factory call as `initCode` and always has `paymasterAndData`.
            EntryPointVersion::V06 => {
                let init_code = if deploy {
                    [self.at.factory.as_slice(), &create].concat()
                } else {
                    Vec::new()
                };
                rpc_op["initCode"] = json!(Bytes::from(init_code));
                rpc_op["paymasterAndData"] = json!("0x");
            }
            EntryPointVersion::V07 | EntryPointVersion::V08 => {
                if deploy {
                    rpc_op["factory"] = json!(self.at.factory);
                    rpc_op["factoryData"] = json!(create);
                }
            }
        }
        let entry_point = self.at.entry_point;
        let raw = serde_json::value::to_raw_value(&rpc_op).unwrap();
        let op = userop::parse_user_operation_for(&raw, entry_point).unwrap();
        let hash = op.hash(entry_point, 31337).unwrap();
        let sig = sign(signer.unwrap_or(&self.key), &self.at.signed_digest(hash));
        rpc_op["signature"] = json!(Bytes::from(sig.to_vec()));
        let raw = serde_json::value::to_raw_value(&rpc_op).unwrap();
        (userop::parse_user_operation_for(&raw, entry_point).unwrap(), rpc_op)
    }
}

fn eth_signed(hash: B256) -> B256 {
    let mut m = b"\x19Ethereum Signed Message:\n32".to_vec();
    m.extend_from_slice(hash.as_slice());
    keccak256(m)
}

fn sign(key: &SigningKey, hash: &B256) -> [u8; 65] {
    let (sig, recid) = key.sign_prehash_recoverable(hash.as_slice()).unwrap();
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = 27 + recid.to_byte();
    out
}

pub(crate) fn sim_config(node: &str) -> SimulationConfig {
    SimulationConfig {
        node: node.parse().unwrap(),
        node_headers: Default::default(),
        on_sim_error: OnError::Reject,
        timeout: Duration::from_secs(10),
        bundler: DEFAULT_SIM_BUNDLER,
        reject_reverting: false,
        max_concurrent: 4,
        simulate: true,
        accounts: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_account_op_runs_through_the_real_entry_point_with_its_effects() {
    let devnet = Devnet::up().await;
    let node = devnet.get("ANVIL_URL").to_string();
    let sim = Arc::new(Simulator::new(
        sim_config(&node),
        31337,
        tokio::runtime::Handle::current(),
    ));
    let account = Account::funded(&node, V07, 0x11).await;
    let to = address!("000000000000000000000000000000000000dEaD");

    // Deploys the account and sends 12345 wei: validation passes, the call is the effect.
    let (op, _) = account.op(&node, true, to, U256::from(12345), Bytes::new(), None).await;
    let hash = op.hash(EP07, 31337).unwrap();
    let trips = sim.round_trips();
    let run = sim.simulate(&op, EP07, hash).await.unwrap();
    let s = &run.simulation;
    assert!(s.validation.ok, "{s:?}");
    assert!(!s.validation.signature_failed);
    let exec = s.execution.as_ref().expect("executed");
    assert!(exec.success, "{s:?}");
    assert!(exec.actual_cost > U256::ZERO && exec.actual_cost <= op.max_gas_cost());
    assert_eq!(s.effects.calls.len(), 1, "{s:?}");
    assert_eq!(s.effects.calls[0].target, to);
    assert_eq!(s.effects.native_out, U256::from(12345));
    assert!(!run.warm);
    let cold_trips = sim.round_trips() - trips;
    assert!(cold_trips <= 3, "a cold op took {cold_trips} round trips");

    // The same op again: the block's state is warm, only the head is asked.
    let trips = sim.round_trips();
    let again = sim.simulate(&op, EP07, hash).await.unwrap();
    assert!(again.warm);
    assert_eq!(again.simulation, run.simulation);
    assert_eq!(sim.round_trips() - trips, 1);

    // Signed by another key: the EntryPoint refuses it with AA24.
    let stranger = SigningKey::from_slice(&[0x22; 32]).unwrap();
    let (bad, _) = account
        .op(&node, true, to, U256::from(1), Bytes::new(), Some(&stranger))
        .await;
    let run = sim.simulate(&bad, EP07, bad.hash(EP07, 31337).unwrap()).await.unwrap();
    let v = &run.simulation.validation;
    assert!(!v.ok && v.signature_failed, "{v:?}");
    assert_eq!(v.code.as_deref(), Some("AA24"));
    assert!(run.simulation.execution.is_none() && run.simulation.effects == Default::default());
}

// ---- Through opgate, in front of Alto, with simulation on -------------------------------------

sol! {
    function upgradeToAndCall(address newImplementation, bytes data);
    function accountImplementation() returns (address);
    function sweep(address to, uint256 value, address restore);
    function pull(address token, address to, uint256 value);
    function fail();
    function mint(address to, uint256 value);
    function approve(address spender, uint256 value);
}

/// The project's test contracts (`devnet/contracts`), compiled now with the solc npm package:
/// `{"Name": {"abi": […], "bytecode": "0x…"}}`.
pub(crate) async fn compile() -> Value {
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new("node")
            .arg(crate::devnet::repo().join("devnet/compile.mjs"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "solc: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Deploys contract `name` of `compiled` from anvil's account #0; returns where it landed.
pub(crate) async fn deploy(node: &str, compiled: &Value, name: &str) -> Address {
    let code = compiled[name]["bytecode"].as_str().unwrap();
    let tx = rpc(node, "eth_sendTransaction", json!([{ "from": FUNDER, "data": code }])).await;
    let receipt = tx_receipt(node, &tx).await;
    assert_eq!(receipt["status"], "0x1", "{name}: {receipt}");
    receipt["contractAddress"].as_str().unwrap().parse().unwrap()
}

/// Forwarder and TestToken, deployed from anvil's account #0.
struct Contracts {
    forwarder: Address,
    token: Address,
}

impl Contracts {
    async fn deploy(node: &str) -> Self {
        let compiled = compile().await;
        Self {
            forwarder: deploy(node, &compiled, "Forwarder").await,
            token: deploy(node, &compiled, "TestToken").await,
        }
    }

    /// Sends a transaction from `from` (impersonated: an account not deployed yet) to `to`.
    async fn send_as(node: &str, from: Address, to: Address, data: Vec<u8>) {
        rpc(node, "anvil_impersonateAccount", json!([from])).await;
        let tx = rpc(
            node,
            "eth_sendTransaction",
            json!([{ "from": from, "to": to, "data": Bytes::from(data) }]),
        )
        .await;
        rpc(node, "anvil_stopImpersonatingAccount", json!([from])).await;
        let receipt = tx_receipt(node, &tx).await;
        assert_eq!(receipt["status"], "0x1", "{receipt}");
        if from != FUNDER {
            // A counterfactual account keeps nonce 0, or its CREATE2 deployment would collide.
            rpc(node, "anvil_setNonce", json!([from, "0x0"])).await;
        }
    }
}

/// The receipt of transaction `tx` (anvil mines at once, but may answer before it did; at most 10 s).
pub(crate) async fn tx_receipt(node: &str, tx: &Value) -> Value {
    for _ in 0..100 {
        let r = rpc(node, "eth_getTransactionReceipt", json!([tx])).await;
        if !r.is_null() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{tx} was not mined within 10 s");
}

/// anvil's account #0 (deploys, funds).
pub(crate) const FUNDER: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
pub(crate) const DEAD: Address = address!("000000000000000000000000000000000000dEaD");

/// opgate in front of the devnet's Alto with simulation against its anvil, and `policies`.
pub(crate) async fn opgate_simulating(devnet: &Devnet, reject_reverting: bool, policies: &str) -> Opgate {
    Opgate::start_toml(&format!(
        "[[chains]]\nid = 31337\nupstreams = [\"{}\"]\nnode = \"{}\"\n\
         [chains.simulation]\ntimeout = \"10s\"\nreject_reverting = {reject_reverting}\n{policies}",
        devnet.get("BUNDLER_URL"),
        devnet.get("ANVIL_URL"),
    ))
    .await
}

/// `eth_sendUserOperation` params: the op's RPC form and its EntryPoint.
pub(crate) fn send_params(rpc_op: &Value, entry_point: Address) -> String {
    json!([rpc_op, entry_point]).to_string()
}

/// Polls the receipt of `hash` through opgate (at most 60 s).
pub(crate) async fn mined(url: &str, hash: &str) -> Value {
    for _ in 0..120 {
        let v = call(url, "eth_getUserOperationReceipt", &json!([hash]).to_string()).await;
        if !v["result"].is_null() && v.get("error").is_none() {
            return v["result"].clone();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{hash} was not mined within 60 s");
}

pub(crate) fn upstream_sends(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("opgate_upstream_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_limits_see_value_and_tokens_only_the_simulation_reveals() {
    let devnet = Devnet::up().await;
    let node = devnet.get("ANVIL_URL").to_string();
    let c = Contracts::deploy(&node).await;
    let opgate = opgate_simulating(
        &devnet,
        false,
        &format!(
            "[[policies]]\nname = \"outflow\"\n\
             [[policies.transfers]]\ntoken = \"native\"\nlimit = {{ amount = \"100\" }}\n\
             [[policies.transfers]]\ntoken = \"{}\"\nlimit = {{ amount = \"100\" }}\n",
            c.token
        ),
    )
    .await;
    let url = opgate.url("/31337");

    // The call data calls the account itself with no value; through upgradeToAndCall the
    // forwarder's code sends 1000 wei of the account's ether onward.
    let account = Account::funded(&node, V07, 0x31).await;
    let implementation = rpc(
        &node,
        "eth_call",
        json!([{ "to": V07.factory, "data": Bytes::from(accountImplementationCall {}.abi_encode()) }, "latest"]),
    )
    .await;
    let implementation = Address::from_word(implementation.as_str().unwrap().parse().unwrap());
    let sweep = sweepCall {
        to: DEAD,
        value: U256::from(1000),
        restore: implementation,
    }
    .abi_encode();
    let data = upgradeToAndCallCall {
        newImplementation: c.forwarder,
        data: sweep.into(),
    }
    .abi_encode();
    let (_, op) = account
        .op(&node, true, account.sender, U256::ZERO, data.into(), None)
        .await;
    let v = call(&url, "opgate_explainUserOperation", &send_params(&op, EP07)).await;
    let sim = &v["result"]["simulation"];
    assert_eq!(sim["effects"]["nativeOut"], "1000", "{v}");
    assert_eq!(sim["execution"]["success"], true, "{v}");
    assert_eq!(v["result"]["decision"], "reject", "{v}");
    // A call rule that allows only the call data's call refuses the call the simulation found.
    let calls_only_self = opgate_simulating(
        &devnet,
        false,
        &format!(
            "[[policies]]\nname = \"only-self\"\n[[policies.calls]]\ntarget = \"{}\"\n",
            account.sender
        ),
    )
    .await;
    let v = call(
        &calls_only_self.url("/31337"),
        "opgate_explainUserOperation",
        &send_params(&op, EP07),
    )
    .await;
    let rejection = &v["result"]["rejection"];
    assert_eq!(rejection["reason"], "CallPolicyViolated", "{v}");
    assert!(
        rejection["detail"].as_str().unwrap().starts_with("effects.calls[1]: "),
        "{v}"
    );
    let v = call(&url, "eth_sendUserOperation", &send_params(&op, EP07)).await;
    assert_eq!(v["error"]["code"], -32504, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "LifetimeUsageExceeded", "{v}");
    assert_eq!(v["error"]["data"]["rule"], "transfers[0].limit", "{v}");
    assert!(
        v["error"]["data"]["detail"]
            .as_str()
            .unwrap()
            .contains("needs 0.000000000000001 ether (1000 wei)"),
        "{v}"
    );

    // The call data calls the forwarder, which pulls 500 tokens from the account.
    let account = Account::funded(&node, V07, 0x32).await;
    Contracts::send_as(
        &node,
        FUNDER,
        c.token,
        mintCall {
            to: account.sender,
            value: U256::from(1000),
        }
        .abi_encode(),
    )
    .await;
    Contracts::send_as(
        &node,
        account.sender,
        c.token,
        approveCall {
            spender: c.forwarder,
            value: U256::MAX,
        }
        .abi_encode(),
    )
    .await;
    let data = pullCall {
        token: c.token,
        to: DEAD,
        value: U256::from(500),
    }
    .abi_encode();
    let (_, op) = account
        .op(&node, true, c.forwarder, U256::ZERO, data.into(), None)
        .await;
    let v = call(&url, "opgate_explainUserOperation", &send_params(&op, EP07)).await;
    let transfers = &v["result"]["simulation"]["effects"]["transfers"];
    assert_eq!(transfers[0]["amount"], "500", "{v}");
    assert_eq!(
        transfers[0]["token"].as_str().unwrap(),
        format!("{:#x}", c.token),
        "{v}"
    );
    let v = call(&url, "eth_sendUserOperation", &send_params(&op, EP07)).await;
    assert_eq!(v["error"]["data"]["reason"], "LifetimeUsageExceeded", "{v}");
    assert_eq!(v["error"]["data"]["rule"], "transfers[1].limit", "{v}");
    assert!(
        v["error"]["data"]["detail"].as_str().unwrap().contains("needs 500"),
        "{v}"
    );

    // Neither reached the bundler.
    let m = opgate.metrics().await;
    assert_eq!(upstream_sends(&m), 0.0, "{m}");
    assert_eq!(
        sample(&m, r#"opgate_simulations_total{chain="31337",outcome="ok"}"#),
        Some(4.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverting_op_is_refused_with_reject_reverting_and_relayed_without() {
    let devnet = Devnet::up().await;
    let node = devnet.get("ANVIL_URL").to_string();
    let c = Contracts::deploy(&node).await;
    let strict = opgate_simulating(&devnet, true, "").await;
    let lenient = opgate_simulating(&devnet, false, "").await;
    let account = Account::funded(&node, V07, 0x41).await;
    let (_, op) = account
        .op(
            &node,
            true,
            c.forwarder,
            U256::ZERO,
            failCall {}.abi_encode().into(),
            None,
        )
        .await;

    let v = call(&strict.url("/31337"), "eth_sendUserOperation", &send_params(&op, EP07)).await;
    assert_eq!(v["error"]["code"], -32521, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "SimulationReverted", "{v}");
    assert_eq!(v["error"]["data"]["policy"], "simulation", "{v}");
    assert!(
        v["error"]["data"]["detail"]
            .as_str()
            .unwrap()
            .contains("Forwarder: refused"),
        "{v}"
    );
    assert_eq!(upstream_sends(&strict.metrics().await), 0.0);

    let url = lenient.url("/31337");
    let v = call(&url, "eth_sendUserOperation", &send_params(&op, EP07)).await;
    let hash = v["result"].as_str().unwrap_or_else(|| panic!("relayed: {v}"));
    let receipt = mined(&url, hash).await;
    assert_eq!(receipt["success"], false, "{receipt}");
    let m = lenient.metrics().await;
    assert_eq!(
        sample(&m, r#"opgate_simulations_total{chain="31337",outcome="reverted"}"#),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused_before_the_bundler_and_a_good_op_is_mined() {
    let devnet = Devnet::up().await;
    let node = devnet.get("ANVIL_URL").to_string();
    let opgate = opgate_simulating(&devnet, true, "").await;
    let url = opgate.url("/31337");
    let account = Account::funded(&node, V07, 0x51).await;

    let stranger = SigningKey::from_slice(&[0x52; 32]).unwrap();
    let (_, bad) = account
        .op(&node, true, DEAD, U256::from(7), Bytes::new(), Some(&stranger))
        .await;
    let v = call(&url, "eth_sendUserOperation", &send_params(&bad, EP07)).await;
    assert_eq!(v["error"]["code"], -32500, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "ValidationFailed", "{v}");
    assert_eq!(v["error"]["data"]["rule"], "AA24", "{v}");
    assert!(
        v["error"]["data"]["detail"]
            .as_str()
            .unwrap()
            .contains("AA24 signature error"),
        "{v}"
    );
    assert_eq!(upstream_sends(&opgate.metrics().await), 0.0, "Alto never saw it");

    let (_, good) = account
        .op(&node, true, DEAD, U256::from(12345), Bytes::new(), None)
        .await;
    let v = call(&url, "opgate_explainUserOperation", &send_params(&good, EP07)).await;
    let sim = &v["result"]["simulation"];
    assert_eq!(sim["validation"]["ok"], true, "{v}");
    assert_eq!(sim["effects"]["calls"][0]["value"], "12345", "{v}");
    assert!(sim["actualCost"].as_str().unwrap().parse::<u128>().unwrap() > 0, "{v}");
    let v = call(&url, "eth_sendUserOperation", &send_params(&good, EP07)).await;
    let hash = v["result"].as_str().unwrap_or_else(|| panic!("relayed: {v}"));
    let receipt = mined(&url, hash).await;
    assert_eq!(receipt["success"], true, "{receipt}");
    let m = opgate.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"opgate_simulations_total{chain="31337",outcome="validation_failed"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"opgate_stage_duration_seconds_count{chain="31337",stage="simulation"}"#
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_follows_on_sim_error() {
    let upstream = FakeBundler::answering(r#""0x01""#).await;
    let node = closed_port_url().await;
    let v = vector("ep08-simple-account-batch");
    let params = json!([v["userOperation"], v["entryPoint"]["address"]]).to_string();
    let toml = |on_sim_error: &str| {
        format!(
            "[[chains]]\nid = 1\nupstreams = [\"{}\"]\nnode = \"{node}\"\n\
             [chains.simulation]\non_sim_error = \"{on_sim_error}\"\n",
            upstream.url()
        )
    };

    let strict = Opgate::start_toml(&toml("reject")).await;
    let r = call(&strict.url("/1"), "eth_sendUserOperation", &params).await;
    assert_eq!(r["error"]["code"], -32053, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "SimulationUnavailable", "{r}");
    assert_eq!(r["error"]["data"]["retryable"], true, "{r}");
    assert!(upstream.received().is_empty(), "nothing was relayed");
    let m = strict.metrics().await;
    assert_eq!(
        sample(&m, r#"opgate_simulation_fallbacks_total{action="rejected",chain="1"}"#),
        Some(1.0),
        "{m}"
    );

    let lenient = Opgate::start_toml(&toml("allow")).await;
    let r = call(&lenient.url("/1"), "eth_sendUserOperation", &params).await;
    assert_eq!(r["result"], "0x01", "{r}");
    let m = lenient.metrics().await;
    assert_eq!(
        sample(&m, r#"opgate_simulations_total{chain="1",outcome="error"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"opgate_simulation_fallbacks_total{action="allowed",chain="1"}"#),
        Some(1.0),
        "{m}"
    );
    let r = call(&lenient.url("/1"), "opgate_explainUserOperation", &params).await;
    assert!(
        r["result"]["simulation"]["error"].as_str().unwrap().starts_with("node"),
        "{r}"
    );

    // Without a node there is no simulation.
    let plain = Opgate::in_front_of(&[upstream.url()]).await;
    let r = call(&plain.url("/1"), "opgate_explainUserOperation", &params).await;
    assert!(r["result"]["simulation"].is_null(), "{r}");
    assert_eq!(r["result"]["decision"], "accept", "{r}");
}
