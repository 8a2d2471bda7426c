//! Simulation on EntryPoint v0.6 and v0.8 (v0.7 is in `sim`), and agreement with the recorded
//! vectors wherever their chain state can be rebuilt on the devnet.
//!
//! Each version gets a SimpleAccount from its own factory (0.6 / 0.8). v0.6 hashes the unpacked
//! `UserOperation` (`initCode`, `paymasterAndData`) and its SimpleAccount signs the eth-signed
//! hash; v0.8 hashes EIP-712 and its SimpleAccount (`@account-abstraction/contracts` 0.8.0,
//! `_validateSignature`: `ECDSA.recover(userOpHash, signature)`) signs that digest as it is. The
//! simulator's answer is then compared with what the chain does with the same op: Alto mines it
//! through opgate and the receipt's `actualGasUsed` must be the simulated one to the unit.
//!
//! # The recorded vectors
//!
//! `ep08-simple-account-deploy` and `-batch` were recorded on anvil (chain 31337) with the canonical
//! EntryPoint v0.8 and the SimpleAccountFactory at `0x13E9…5944`: `deploy.mjs` puts the 0.8.0
//! factory there too (CREATE2 through the deterministic deployer, salt 0, constructor argument the
//! EntryPoint), so the counterfactual sender, the userOpHash and the signature are valid here as
//! recorded. What the recording chain had besides, and how it is rebuilt:
//!
//! - The sender's balance (the client funded it): 1 ether with `anvil_setBalance`; only its being
//!   enough matters.
//! - The base fee, which sets the gas price: the recorded one (`actualGasCost / actualGasUsed −
//!   maxPriorityFeePerGas`, 23,656 and 20,756 wei) through `anvil_setNextBlockBaseFeePerGas` and
//!   one mined block, so the simulation runs at the recorded price. The ops' `maxFeePerGas` was set
//!   against that base fee; a fresh devnet's (hundreds of millions of wei) would cap the price.
//! - The call target `0xedCC…494e` (`mint(address,uint256)` in the deploy op, `setNumber(uint256)`
//!   in the batch). Its bytecode is not in the vectors. Without code there the ops still succeed
//!   (SimpleAccount's call to an empty address does), but the gas falls short by 24,457 and 23,831
//!   — a cold storage write and a log each. `devnet/contracts/VectorTarget.sol` stands in for it,
//!   with those writes and logs; its runtime code is put at the address with `anvil_setCode`. It is
//!   not the recorded bytecode: function dispatch and argument decoding may differ by some tens of
//!   gas, hence [`GAS_TOLERANCE`].
//! - The batch's 8 wei recipient `0x0A58…d22F` existed on the recording chain (earlier vectors,
//!   e.g. `ep06-kernel-v24-batch`, paid it); sending value to an empty account would cost 25,000
//!   more. It gets 1 wei first.
//! - The batch op (nonce 1) needs the deploy op mined: it is, through opgate and Alto.
//!
//! Nothing else in either op depends on the chain: SimpleAccount returns no validity window, and
//! there is no paymaster.
//!
//! Every other vector runs a ZeroDev Kernel account (v2.4 on EntryPoint v0.6, v3.1 and v3.3 on
//! v0.7), and whether it was included, reverted or refused was decided by Kernel's code, its
//! validators and permission policies, and their state at that point of the recording. No package
//! reachable here ships those contracts (the `@zerodev/*` npm packages are client SDKs: ABIs and
//! addresses, no deployable bytecode), so none of them can be simulated, and none is faked:
//!
//! - included and successful (17 on Kernel v3.1, 6 on v3.3, `ep06-kernel-v24-deploy` and
//!   `-batch` on v2.4): need the Kernel factory, implementation and ECDSA / multi-chain ECDSA
//!   validators at their canonical addresses;
//! - `allowed-call-reverts-onchain` (included, the call reverted with `Panic(17)`): also the
//!   target's token balances at block 70;
//! - refused by the bundler in validation (`AA23` with `PolicyFailed(i)`, `AA22`): the call, gas,
//!   rate-limit, timestamp and value policy contracts with the usage they had counted
//!   (`rate-limit-exceeded` and `gas-policy-exceeded` follow their `-first` / `-within-allowance`
//!   ops) and, for `timestamp-*`, the recording's clock.
//!
//! [`every_recorded_vector_is_reproduced_or_accounted_for`] keeps this list honest: a vector that
//! is neither a Kernel one nor reproduced here fails it.

use std::sync::Arc;

use alloy_primitives::{address, Address, Bytes, B256, U256};
use alloy_sol_types::{sol, SolCall, SolError};
use k256::ecdsa::SigningKey;
use opgate::sim::{Run, Simulator};
use opgate::userop::{self, EntryPointVersion, UserOperation};
use serde_json::{json, Value};

use crate::devnet::Devnet;
use crate::sim::*;
use crate::support::*;

sol! {
    function fail();
    /// OpenZeppelin 5 `ECDSA`: a signature that is not 64 or 65 bytes long.
    error ECDSAInvalidSignatureLength(uint256 length);
}

/// How far the simulated gas of a recorded op may be from the recorded `actualGasUsed`. The
/// stand-in target is not the recorded bytecode (dispatch, argument decoding: tens of gas); every
/// difference in state — a cold storage write (≥ 2,100), a new account (25,000), a log (≥ 375) —
/// is larger.
const GAS_TOLERANCE: u64 = 200;

/// The recorded vectors' call target and the batch's value recipient.
const VECTOR_TARGET: Address = address!("edCC53F25Bac99Ebb78D3a0012eC78Ae3e67494e");
const VECTOR_RECIPIENT: Address = address!("0A58b94B560399d82badd0386E0a049D45A4d22F");

fn simulator(node: &str) -> Arc<Simulator> {
    Arc::new(Simulator::new(
        sim_config(node),
        31337,
        tokio::runtime::Handle::current(),
    ))
}

fn quantity(v: &Value) -> U256 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a quantity: {v}"));
    match s.strip_prefix("0x") {
        Some(hex) => U256::from_str_radix(hex, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

/// The gas price the EntryPoint charges `op` on a block with `base_fee`.
fn effective_price(op: &UserOperation, base_fee: u128) -> U256 {
    op.max_fee_per_gas()
        .min(op.max_priority_fee_per_gas() + U256::from(base_fee))
}

/// Simulates `op` and checks the gas report against the op and the block: used gas within the
/// op's limits, cost = gas × the price the EntryPoint charges at that block's base fee.
async fn simulate_ok(sim: &Simulator, node: &str, op: &UserOperation, entry_point: Address) -> Run {
    let hash = op.hash(entry_point, 31337).unwrap();
    let run = sim.simulate(op, entry_point, hash).await.unwrap();
    let s = &run.simulation;
    assert!(s.validation.ok && !s.validation.signature_failed, "{s:?}");
    let exec = s.execution.as_ref().unwrap_or_else(|| panic!("not executed: {s:?}"));
    assert!(exec.success, "{s:?}");
    let limits = op.pre_verification_gas() + op.verification_gas_limit() + op.call_gas_limit();
    assert!(
        exec.gas_used > U256::ZERO && exec.gas_used <= limits,
        "gas {} against limits {limits}",
        exec.gas_used
    );
    let base_fee = base_fee(node, json!(format!("{:#x}", s.block))).await;
    assert_eq!(exec.actual_cost, exec.gas_used * effective_price(op, base_fee), "{s:?}");
    assert!(exec.actual_cost <= op.max_gas_cost());
    run
}

/// Sends `rpc_op` through `opgate` (which simulates it first) and waits for Alto to mine it: the
/// receipt must say what the simulation said, to the unit of gas.
async fn mined_as_simulated(opgate: &Opgate, rpc_op: &Value, entry_point: Address, hash: B256, run: &Run) {
    let url = opgate.url("/31337");
    let v = call(&url, "eth_sendUserOperation", &send_params(rpc_op, entry_point)).await;
    let sent = v["result"].as_str().unwrap_or_else(|| panic!("relayed: {v}"));
    assert_eq!(sent.parse::<B256>().unwrap(), hash, "{v}");
    let receipt = mined(&url, sent).await;
    let exec = run.simulation.execution.as_ref().unwrap();
    assert_eq!(receipt["success"], exec.success, "{receipt}");
    assert_eq!(quantity(&receipt["actualGasUsed"]), exec.gas_used, "{receipt}");
}

/// Deploying op with value, a wrong signature, then the good op through opgate to Alto: the same
/// scenario as `sim` runs on v0.7.
async fn simulate_then_mine(at: Deployment, seed: u8) {
    let devnet = Devnet::up().await;
    at.check(&devnet);
    let node = devnet.get("ANVIL_URL").to_string();
    let sim = simulator(&node);
    let account = Account::funded(&node, at, seed).await;
    let ep = at.entry_point;

    // Deploys the account and sends 12345 wei: the call is the effect.
    let (op, good) = account
        .op(&node, true, DEAD, U256::from(12345), Bytes::new(), None)
        .await;
    let run = simulate_ok(&sim, &node, &op, ep).await;
    let effects = &run.simulation.effects;
    assert_eq!(effects.calls.len(), 1, "{effects:?}");
    assert_eq!(
        (effects.calls[0].target, effects.calls[0].value),
        (DEAD, U256::from(12345))
    );
    assert_eq!(effects.native_out, U256::from(12345));
    assert!(effects.transfers.is_empty() && effects.approvals.is_empty());

    // Signed by another key: the EntryPoint refuses it with AA24, and nothing ran.
    let stranger = SigningKey::from_slice(&[seed.wrapping_add(1); 32]).unwrap();
    let (bad_op, bad) = account
        .op(&node, true, DEAD, U256::from(1), Bytes::new(), Some(&stranger))
        .await;
    let refused = sim
        .simulate(&bad_op, ep, bad_op.hash(ep, 31337).unwrap())
        .await
        .unwrap();
    let v = &refused.simulation.validation;
    assert!(!v.ok && v.signature_failed, "{v:?}");
    assert_eq!(v.code.as_deref(), Some("AA24"));
    assert_eq!(v.reason.as_deref(), Some("AA24 signature error"));
    assert!(refused.simulation.execution.is_none());
    assert_eq!(refused.simulation.effects, Default::default());

    // A signature the account cannot even parse: its validateUserOp reverts (AA23), and the
    // account's revert data is kept — v0.6 folds OpenZeppelin 4's reason string into
    // `FailedOp`, v0.8 passes OpenZeppelin 5's custom error on in `FailedOpWithRevert`.
    let mut short = good.clone();
    short["signature"] = json!("0x01");
    let raw = serde_json::value::to_raw_value(&short).unwrap();
    let short_op = userop::parse_user_operation_for(&raw, ep).unwrap();
    let refused = sim
        .simulate(&short_op, ep, short_op.hash(ep, 31337).unwrap())
        .await
        .unwrap();
    let v = &refused.simulation.validation;
    assert!(!v.ok && !v.signature_failed, "{v:?}");
    assert_eq!(v.code.as_deref(), Some("AA23"), "{v:?}");
    let inner = v
        .revert_data
        .as_ref()
        .unwrap_or_else(|| panic!("no revert data: {v:?}"));
    match at.version {
        EntryPointVersion::V06 => {
            assert_eq!(
                v.reason.as_deref(),
                Some("AA23 reverted: ECDSA: invalid signature length")
            );
            assert_eq!(
                alloy_sol_types::decode_revert_reason(inner).as_deref(),
                Some("revert: ECDSA: invalid signature length")
            );
        }
        _ => {
            assert_eq!(v.reason.as_deref(), Some("AA23 reverted"));
            let e = ECDSAInvalidSignatureLength::abi_decode(inner).unwrap();
            assert_eq!(e.length, U256::from(1));
        }
    }

    // Its call reverts: validation passed, the execution failed with the decoded reason, the
    // reverted call is no effect, and the gas is still charged.
    let forwarder = deploy(&node, &compile().await, "Forwarder").await;
    let failing = Account::funded(&node, at, seed.wrapping_add(2)).await;
    let (failing_op, _) = failing
        .op(
            &node,
            true,
            forwarder,
            U256::ZERO,
            failCall {}.abi_encode().into(),
            None,
        )
        .await;
    let hash = failing_op.hash(ep, 31337).unwrap();
    let reverted = sim.simulate(&failing_op, ep, hash).await.unwrap();
    let s = &reverted.simulation;
    assert!(s.validation.ok, "{s:?}");
    let exec = s.execution.as_ref().unwrap();
    assert!(!exec.success, "{s:?}");
    assert_eq!(
        exec.revert_reason.as_deref(),
        Some("revert: Forwarder: refused"),
        "{s:?}"
    );
    assert_eq!(s.effects, Default::default());
    assert!(exec.gas_used > U256::ZERO && exec.actual_cost <= failing_op.max_gas_cost());

    // Through opgate: the bad op never reaches Alto, the good one is mined as simulated.
    let opgate = opgate_simulating(&devnet, true, "").await;
    let v = call(&opgate.url("/31337"), "eth_sendUserOperation", &send_params(&bad, ep)).await;
    assert_eq!(v["error"]["data"]["reason"], "ValidationFailed", "{v}");
    assert_eq!(v["error"]["data"]["rule"], "AA24", "{v}");
    assert_eq!(upstream_sends(&opgate.metrics().await), 0.0, "Alto never saw it");
    mined_as_simulated(&opgate, &good, ep, op.hash(ep, 31337).unwrap(), &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_point_v06_simple_account_simulates_as_the_chain_runs_it() {
    simulate_then_mine(V06, 0x61).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_point_v08_simple_account_simulates_as_the_chain_runs_it() {
    simulate_then_mine(V08, 0x81).await;
}

// ---- The recorded v0.8 vectors ----------------------------------------------------------------

/// A recorded op, parsed as opgate parses it, with the recording's figures.
struct Recorded {
    vector: Value,
    op: UserOperation,
    hash: B256,
    gas_used: U256,
    /// `actualGasCost / actualGasUsed`: the price the EntryPoint charged.
    price: U256,
}

impl Recorded {
    fn load(name: &str) -> Self {
        let vector = vector(name);
        let entry_point: Address = vector["entryPoint"]["address"].as_str().unwrap().parse().unwrap();
        let raw = serde_json::value::to_raw_value(&vector["userOperation"]).unwrap();
        let op = userop::parse_user_operation_for(&raw, entry_point).unwrap();
        let hash = op.hash(entry_point, vector["chainId"].as_u64().unwrap()).unwrap();
        assert_eq!(
            hash,
            vector["userOpHash"].as_str().unwrap().parse::<B256>().unwrap(),
            "{name}"
        );
        let gas_used = quantity(&vector["result"]["actualGasUsed"]);
        let cost = quantity(&vector["result"]["actualGasCost"]);
        assert_eq!(cost % gas_used, U256::ZERO, "{name}: cost is gas × price");
        Self {
            price: cost / gas_used,
            vector,
            op,
            hash,
            gas_used,
        }
    }

    fn entry_point(&self) -> Address {
        self.vector["entryPoint"]["address"].as_str().unwrap().parse().unwrap()
    }

    /// Makes the next block's base fee the one the recording charged at, and mines that block so
    /// the simulation (on the latest block) runs at the recorded gas price.
    async fn pin_base_fee(&self, node: &str) {
        let recorded = self.price - self.op.max_priority_fee_per_gas();
        rpc(
            node,
            "anvil_setNextBlockBaseFeePerGas",
            json!([format!("{recorded:#x}")]),
        )
        .await;
        rpc(node, "evm_mine", json!([])).await;
        assert_eq!(U256::from(base_fee(node, json!("latest")).await), recorded);
    }

    /// Simulates the op and compares with the recording: the same verdict, the recorded calls,
    /// gas within [`GAS_TOLERANCE`] and the cost at the recorded price.
    async fn agrees(&self, sim: &Simulator) -> Run {
        let name = self.vector["name"].as_str().unwrap();
        let run = sim.simulate(&self.op, self.entry_point(), self.hash).await.unwrap();
        let s = &run.simulation;
        let exec = s
            .execution
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: not executed: {s:?}"));
        let accepted = s.validation.ok && exec.success;
        let recorded = &self.vector["result"];
        assert_eq!(accepted, recorded["outcome"] == "accept", "{name}: {s:?}");
        assert_eq!(exec.success, recorded["success"], "{name}: {s:?}");
        let calls: Vec<(Address, U256, Bytes)> = self.vector["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["to"].as_str().unwrap().parse().unwrap(),
                    c["value"].as_str().unwrap().parse().unwrap(),
                    c["data"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        let seen: Vec<(Address, U256, Bytes)> = s
            .effects
            .calls
            .iter()
            .map(|c| (c.target, c.value, c.data.clone()))
            .collect();
        assert_eq!(seen, calls, "{name}");
        let (simulated, recorded_gas) = (exec.gas_used.to::<u64>(), self.gas_used.to::<u64>());
        eprintln!(
            "{name}: simulated gas {simulated}, recorded {recorded_gas} ({:+}); cost {} against {}",
            simulated as i64 - recorded_gas as i64,
            exec.actual_cost,
            self.vector["result"]["actualGasCost"].as_str().unwrap(),
        );
        assert!(
            simulated.abs_diff(recorded_gas) <= GAS_TOLERANCE,
            "{name}: simulated {simulated} gas, recorded {recorded_gas}"
        );
        assert_eq!(exec.actual_cost, exec.gas_used * self.price, "{name}");
        run
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_v08_simple_account_ops_simulate_as_they_were_recorded() {
    let devnet = Devnet::up().await;
    V08.check(&devnet);
    let node = devnet.get("ANVIL_URL").to_string();
    let deploy_op = Recorded::load("ep08-simple-account-deploy");
    let batch_op = Recorded::load("ep08-simple-account-batch");
    assert_eq!(deploy_op.entry_point(), V08.entry_point);
    assert_eq!(
        deploy_op.op.factory(),
        Some(V08.factory),
        "recorded with the devnet's factory"
    );
    let sender = deploy_op.op.sender();
    assert_eq!(batch_op.op.sender(), sender);

    // The recording chain's state, as far as these ops see it (module docs).
    rpc(&node, "anvil_setBalance", json!([sender, "0xde0b6b3a7640000"])).await;
    rpc(&node, "anvil_setBalance", json!([VECTOR_RECIPIENT, "0x1"])).await;
    let compiled = compile().await;
    let stand_in = deploy(&node, &compiled, "VectorTarget").await;
    let code = rpc(&node, "eth_getCode", json!([stand_in, "latest"])).await;
    rpc(&node, "anvil_setCode", json!([VECTOR_TARGET, code])).await;

    let sim = simulator(&node);
    let opgate = opgate_simulating(&devnet, true, "").await;

    // The batch (nonce 1) before the deploy op is mined: there is no account to run it.
    let early = sim
        .simulate(&batch_op.op, batch_op.entry_point(), batch_op.hash)
        .await
        .unwrap();
    assert_eq!(early.simulation.validation.code.as_deref(), Some("AA20"), "{early:?}");

    deploy_op.pin_base_fee(&node).await;
    let run = deploy_op.agrees(&sim).await;
    mined_as_simulated(
        &opgate,
        &deploy_op.vector["userOperation"],
        V08.entry_point,
        deploy_op.hash,
        &run,
    )
    .await;

    batch_op.pin_base_fee(&node).await;
    let run = batch_op.agrees(&sim).await;
    assert_eq!(run.simulation.effects.native_out, U256::from(8));
    mined_as_simulated(
        &opgate,
        &batch_op.vector["userOperation"],
        V08.entry_point,
        batch_op.hash,
        &run,
    )
    .await;
}

#[test]
fn every_recorded_vector_is_reproduced_or_accounted_for() {
    const REPRODUCED: [&str; 2] = ["ep08-simple-account-deploy", "ep08-simple-account-batch"];
    let dir = crate::devnet::repo().join("tests/data/vectors");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|f| f.strip_suffix(".json").map(str::to_string))
        .filter(|n| n != "index")
        .collect();
    names.sort();
    for name in REPRODUCED {
        assert!(names.iter().any(|n| n == name), "{name}");
    }
    for name in names.iter().filter(|n| !REPRODUCED.contains(&n.as_str())) {
        let kernel = vector(name)["kernelVersion"].as_str().map(str::to_string);
        assert!(
            matches!(kernel.as_deref(), Some("0.2.4" | "0.3.1" | "0.3.3")),
            "{name} is neither reproduced nor a Kernel vector (the module docs say why those are not)"
        );
    }
}
