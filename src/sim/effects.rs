//! What a simulation found: the validation outcome, the execution outcome, the gas, and the
//! effects policies are evaluated on a second time.

use alloy_primitives::{Address, Bytes, U256};
use serde::Serialize;

use crate::decode::ser;
use crate::decode::Call;

/// An ERC-20 `Transfer` or `Approval` whose `from` / `owner` is the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenMove {
    /// The token contract (the log's address).
    #[serde(serialize_with = "ser::address")]
    pub token: Address,
    /// Recipient (`Transfer`) or spender (`Approval`).
    #[serde(serialize_with = "ser::address")]
    pub to: Address,
    /// Amount in the token's smallest unit.
    #[serde(serialize_with = "ser::decimal")]
    pub amount: U256,
}

/// What the op did, as far as policies care: only what was kept (a reverted frame's effects are
/// gone, as on chain).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Effects {
    /// Every `CALL` the account's own frames made during execution, at any depth, in order.
    pub calls: Vec<Call>,
    /// Native value those calls carried out of the account (wei).
    #[serde(serialize_with = "ser::decimal")]
    pub native_out: U256,
    /// ERC-20 `Transfer` events from the account during execution.
    pub transfers: Vec<TokenMove>,
    /// ERC-20 `Approval` events by the account during execution.
    pub approvals: Vec<TokenMove>,
}

/// The validation outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// The EntryPoint accepted the op's validation.
    pub ok: bool,
    /// The EntryPoint's code (`AA24`), when it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The EntryPoint's reason (`AA24 signature error`), when it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The account reported a signature failure.
    pub signature_failed: bool,
    /// `validAfter` the account returned (0: none).
    pub valid_after: u64,
    /// `validUntil` the account returned (0: none).
    pub valid_until: u64,
    /// The Kernel policy index that failed (`PolicyFailed(i)`), when the revert data says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_policy_failed: Option<u64>,
    /// Raw revert data of the account's or the EntryPoint's refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert_data: Option<Bytes>,
}

/// The execution outcome (only when validation passed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// The account call succeeded (`UserOperationEvent.success`).
    pub success: bool,
    /// Its revert reason, decoded when it is an `Error(string)` or a panic, else hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert_reason: Option<String>,
    /// `actualGasUsed`.
    #[serde(serialize_with = "ser::decimal")]
    pub gas_used: U256,
    /// `actualGasCost` (wei).
    #[serde(serialize_with = "ser::decimal")]
    pub actual_cost: U256,
}

/// One simulation's full report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    /// The block whose state and timestamp were used.
    pub block: u64,
    /// Validation.
    pub validation: Validation,
    /// Execution, when validation passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
    /// Effects (empty when validation failed).
    pub effects: Effects,
}
