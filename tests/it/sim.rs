//! Simulation on the project's devnet: SimpleAccount ops run through the real EntryPoint in revm
//! against anvil's state, and the simulator reports validation, execution and effects.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{address, keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{sol, SolCall};
use k256::ecdsa::SigningKey;
use opgate::config::{OnError, SimulationConfig, DEFAULT_SIM_BUNDLER};
use opgate::sim::Simulator;
use opgate::userop::{self, UserOperation};
use serde_json::{json, Value};

use crate::devnet::Devnet;
use crate::support::*;

sol! {
    function createAccount(address owner, uint256 salt);
    function getAddress(address owner, uint256 salt) returns (address);
    function execute(address dest, uint256 value, bytes func);
}

pub(crate) const EP07: Address = address!("0000000071727De22E5E9d8BAf0edAc6f37da032");
pub(crate) const FACTORY07: Address = address!("91E60e0613810449d098b0b5Ec8b51A0FE8c8985");

/// A SimpleAccount owner on the devnet, and the account the v0.7 factory gives it.
pub(crate) struct Account {
    pub key: SigningKey,
    pub owner: Address,
    pub sender: Address,
}

pub(crate) async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let v = call(url, method, &params.to_string()).await;
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

impl Account {
    /// A fresh owner (from `seed`) whose counterfactual account holds 1 ether.
    pub(crate) async fn funded(node: &str, seed: u8) -> Self {
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
            json!([{ "to": FACTORY07, "data": Bytes::from(data) }, "latest"]),
        )
        .await;
        let word: B256 = out.as_str().unwrap().parse().unwrap();
        let sender = Address::from_word(word);
        rpc(node, "anvil_setBalance", json!([sender, "0xde0b6b3a7640000"])).await;
        Self { key, owner, sender }
    }

    /// A v0.7 op (deploying the account when `deploy`) calling `to` with `value` and `data`,
    /// signed by `signer` (the owner unless given).
    pub(crate) async fn op(
        &self,
        node: &str,
        deploy: bool,
        to: Address,
        value: U256,
        data: Bytes,
        signer: Option<&SigningKey>,
    ) -> (UserOperation, Value) {
        let block = rpc(node, "eth_getBlockByNumber", json!(["latest", false])).await;
        let base_fee =
            u128::from_str_radix(block["baseFeePerGas"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
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
        if deploy {
            rpc_op["factory"] = json!(FACTORY07);
            rpc_op["factoryData"] = json!(Bytes::from(
                createAccountCall {
                    owner: self.owner,
                    salt: U256::ZERO
                }
                .abi_encode()
            ));
        }
        let raw = serde_json::value::to_raw_value(&rpc_op).unwrap();
        let op = userop::parse_user_operation_for(&raw, EP07).unwrap();
        let hash = op.hash(EP07, 31337).unwrap();
        let sig = sign(signer.unwrap_or(&self.key), &eth_signed(hash));
        rpc_op["signature"] = json!(Bytes::from(sig.to_vec()));
        let raw = serde_json::value::to_raw_value(&rpc_op).unwrap();
        (userop::parse_user_operation_for(&raw, EP07).unwrap(), rpc_op)
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
        on_sim_error: OnError::Reject,
        timeout: Duration::from_secs(10),
        bundler: DEFAULT_SIM_BUNDLER,
        reject_reverting: false,
        max_concurrent: 4,
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
    let account = Account::funded(&node, 0x11).await;
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
