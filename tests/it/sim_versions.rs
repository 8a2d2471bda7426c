//! Simulation on EntryPoint v0.6 and v0.8 (v0.7 is in `sim`).
//!
//! Each version gets a SimpleAccount from its own factory (0.6 / 0.8). v0.6 hashes the unpacked
//! `UserOperation` (`initCode`, `paymasterAndData`) and its SimpleAccount signs the eth-signed
//! hash; v0.8 hashes EIP-712 and its SimpleAccount (`@account-abstraction/contracts` 0.8.0,
//! `_validateSignature`: `ECDSA.recover(userOpHash, signature)`) signs that digest as it is. The
//! simulator's answer is then compared with what the chain does with the same op: Alto mines it
//! through opgate and the receipt's `actualGasUsed` must be the simulated one to the unit.

use std::sync::Arc;

use alloy_primitives::{Address, Bytes, B256, U256};
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
