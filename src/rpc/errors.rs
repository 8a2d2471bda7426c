//! The one place JSON-RPC error codes and messages are decided.
//!
//! Upstream errors pass through untouched. Errors opgate originates say who is at fault and
//! whether a retry makes sense, and carry `data.reason`, a stable name clients can match on.
//! Internal failures answer a generic message; their detail goes to the log only.

use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
use serde_json::json;
use serde_json::value::RawValue;

use crate::policy::{Reason, Rejection};
use crate::relay::{AttemptFailure, RelayError, UpstreamAnswer};
use crate::telemetry::Outcome;

/// JSON-RPC codes opgate answers with.
pub mod codes {
    /// Method not found, or not allowed through this proxy.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Malformed params (the message names the field).
    pub const INVALID_PARAMS: i32 = -32602;
    /// Internal error (no detail on the wire).
    pub const INTERNAL_ERROR: i32 = -32603;
    /// No upstream bundler answered; nothing was delivered. Safe to retry.
    pub const UPSTREAM_UNAVAILABLE: i32 = -32050;
    /// An upstream may have received the operation but did not answer. Not safe to resend blindly.
    pub const UPSTREAM_OUTCOME_UNKNOWN: i32 = -32051;
    /// The usage store did not answer and the policies say `on_error = "reject"`. Safe to retry.
    pub const STORE_UNAVAILABLE: i32 = -32052;
    /// The simulation did not answer (timeout, node unreachable) and the chain says
    /// `on_sim_error = "reject"`. Safe to retry.
    pub const SIMULATION_UNAVAILABLE: i32 = -32053;
    /// No valid API key (HTTP 401).
    pub const UNAUTHORIZED: i32 = -32001;
    /// Over a request limit (HTTP 429 with `Retry-After`).
    pub const REQUEST_RATE_LIMITED: i32 = -32005;
    /// EIP-7769: rejected by validation or policy.
    pub const REJECTED: i32 = -32500;
    /// EIP-7769: paymaster rejected.
    pub const PAYMASTER_REJECTED: i32 = -32501;
    /// EIP-7769: outside the time range.
    pub const OUT_OF_TIME_RANGE: i32 = -32503;
    /// EIP-7769: throttled (rate limit or allowance exhausted, revoked).
    pub const THROTTLED: i32 = -32504;
    /// EIP-7769: signature check failed.
    pub const INVALID_SIGNATURE: i32 = -32507;
    /// EIP-7769: the execution phase reverts.
    pub const EXECUTION_REVERTED: i32 = -32521;
}

/// The JSON-RPC code of a policy rejection.
pub fn policy_code(reason: Reason) -> i32 {
    match reason {
        Reason::OutsideTimeWindow => codes::OUT_OF_TIME_RANGE,
        Reason::RateLimited
        | Reason::AllowanceExceeded
        | Reason::LifetimeUsageExceeded
        | Reason::GasBudgetExceeded
        | Reason::Revoked => codes::THROTTLED,
        Reason::InvalidSignature => codes::INVALID_SIGNATURE,
        Reason::PaymasterNotAllowed => codes::PAYMASTER_REJECTED,
        Reason::SimulationReverted => codes::EXECUTION_REVERTED,
        Reason::SimulationUnavailable => codes::SIMULATION_UNAVAILABLE,
        _ => codes::REJECTED,
    }
}

/// A policy rejection: EIP-7769 code, message naming the policy, `data` with
/// `{ reason, policy, rule, detail, retryAfter? }`.
pub fn policy(r: &Rejection) -> RpcFailure {
    let mut data = json!({
        "reason": r.reason.as_str(),
        "policy": r.policy,
        "rule": r.rule,
        "detail": r.detail,
    });
    if let Some(secs) = r.retry_after {
        data["retryAfter"] = json!(secs);
    }
    if r.reason == Reason::SimulationUnavailable {
        data["retryable"] = json!(true);
    }
    RpcFailure {
        error: ErrorObject::owned(
            policy_code(r.reason),
            format!("rejected by {} ({}): {}", r.policy, r.reason.as_str(), r.detail),
            Some(data),
        ),
        outcome: Outcome::Rejected,
    }
}

/// The usage store failed and the policies do not allow relaying without it.
pub fn store_unavailable() -> RpcFailure {
    RpcFailure {
        error: ErrorObject::owned(
            codes::STORE_UNAVAILABLE,
            "usage store unavailable; the operation was not relayed",
            Some(json!({ "reason": "StoreUnavailable", "retryable": true })),
        ),
        outcome: Outcome::Rejected,
    }
}

/// The chain's node could not be read for a query (`opgate_getSessionState`): retryable.
pub fn node_unavailable(detail: &str) -> RpcFailure {
    RpcFailure {
        error: ErrorObject::owned(
            codes::SIMULATION_UNAVAILABLE,
            "the chain's node could not be read",
            Some(json!({ "reason": "SimulationUnavailable", "policy": "node", "detail": detail, "retryable": true })),
        ),
        outcome: Outcome::Rejected,
    }
}

/// An error answer together with how it is counted.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcFailure {
    /// What the client receives.
    pub error: ErrorObjectOwned,
    /// How `opgate_requests_total` counts it.
    pub outcome: Outcome,
}

/// Turns an upstream answer into the handler's result, passing errors through unchanged.
pub fn from_answer(answer: UpstreamAnswer) -> Result<Box<RawValue>, RpcFailure> {
    match answer {
        UpstreamAnswer::Result(raw) => Ok(raw),
        UpstreamAnswer::Error(e) => Err(RpcFailure {
            error: ErrorObject::owned(e.code, e.message, e.data),
            outcome: Outcome::UpstreamRpcError,
        }),
    }
}

fn short(failure: &AttemptFailure) -> String {
    match failure {
        AttemptFailure::Connect(_) => "connection failed".into(),
        AttemptFailure::Timeout(d) => format!("timed out after {} ms", d.as_millis()),
        AttemptFailure::Transport(_) => "connection broke before an answer".into(),
        AttemptFailure::HttpStatus(s) => format!("HTTP status {s}"),
        AttemptFailure::BadResponse(_) => "answer was not a JSON-RPC response".into(),
    }
}

/// Maps a relay failure.
pub fn from_relay(err: &RelayError) -> RpcFailure {
    let error = match err {
        RelayError::Unavailable { attempts } => {
            let detail = attempts
                .last()
                .map(|a| format!("{}: {}", a.upstream, short(&a.failure)));
            ErrorObject::owned(
                codes::UPSTREAM_UNAVAILABLE,
                match &detail {
                    Some(d) => format!("upstream bundler unavailable ({d})"),
                    None => "upstream bundler unavailable".to_string(),
                },
                Some(json!({
                    "reason": "UpstreamUnavailable",
                    "retryable": true,
                    "attempts": attempts
                        .iter()
                        .map(|a| json!({ "upstream": a.upstream, "error": short(&a.failure) }))
                        .collect::<Vec<_>>(),
                })),
            )
        }
        RelayError::OutcomeUnknown { attempt, .. } => ErrorObject::owned(
            codes::UPSTREAM_OUTCOME_UNKNOWN,
            format!(
                "upstream bundler {} may have received the operation but {}; look it up with \
                 eth_getUserOperationByHash before sending it again",
                attempt.upstream,
                short(&attempt.failure)
            ),
            Some(json!({
                "reason": "UpstreamOutcomeUnknown",
                "retryable": false,
                "upstream": attempt.upstream,
                "error": short(&attempt.failure),
            })),
        ),
    };
    RpcFailure {
        error,
        outcome: Outcome::UpstreamFailure,
    }
}

/// The method is not served by this proxy.
pub fn method_not_allowed(method: &str) -> RpcFailure {
    // Client-sent text goes back only in a bounded, quoted form.
    let shown: String = method.chars().take(64).collect();
    RpcFailure {
        error: ErrorObject::owned(
            codes::METHOD_NOT_FOUND,
            format!("method `{shown}` is not available through this proxy"),
            None::<()>,
        ),
        outcome: Outcome::Rejected,
    }
}

/// Malformed params; `message` names the field.
pub fn invalid_params(message: impl Into<String>) -> RpcFailure {
    RpcFailure {
        error: ErrorObject::owned(codes::INVALID_PARAMS, message.into(), None::<()>),
        outcome: Outcome::Rejected,
    }
}

/// An internal failure: the detail is logged with `request` context, never sent.
pub fn internal(detail: &dyn std::fmt::Display) -> RpcFailure {
    tracing::error!(%detail, "internal error");
    RpcFailure {
        error: ErrorObject::owned(codes::INTERNAL_ERROR, "internal error", None::<()>),
        outcome: Outcome::Internal,
    }
}
