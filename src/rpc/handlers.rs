//! Methods opgate answers itself, registered on jsonrpsee. Each handler is a thin adapter: it
//! takes the raw params, calls logic that knows nothing of jsonrpsee, and reports its outcome.

use std::sync::Arc;

use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Extensions, RpcModule};
use serde_json::value::RawValue;

use super::errors::RpcFailure;
use super::gateway::OutcomeSlot;
use crate::chain::Chain;
use crate::pipeline;
use crate::session_state;
use crate::telemetry::Outcome;

/// Names of the methods registered by [`module`], for the gateway's dispatch.
pub const LOCAL_METHODS: &[&str] = &[
    "eth_sendUserOperation",
    "opgate_explainUserOperation",
    "opgate_getSessionState",
];

fn finish(ext: &Extensions, result: Result<Box<RawValue>, RpcFailure>) -> Result<Box<RawValue>, ErrorObjectOwned> {
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(f) => f.outcome,
    };
    if let Some(slot) = ext.get::<OutcomeSlot>() {
        slot.set(outcome);
    }
    result.map_err(|f| f.error)
}

/// The chain's locally implemented methods.
pub fn module(chain: Arc<Chain>) -> Result<RpcModule<Chain>, RegisterMethodError> {
    let mut module = RpcModule::from_arc(chain);
    module.register_async_method("eth_sendUserOperation", |params, chain, ext| async move {
        let raw: Option<&RawValue> = params.as_str().and_then(|s| serde_json::from_str(s).ok());
        let result = pipeline::send_user_operation(&chain.gate, &chain, raw, tenant(&ext)).await;
        finish(&ext, result)
    })?;
    module.register_async_method("opgate_explainUserOperation", |params, chain, ext| async move {
        let raw: Option<&RawValue> = params.as_str().and_then(|s| serde_json::from_str(s).ok());
        let result = pipeline::explain(&chain.gate, &chain, raw, tenant(&ext))
            .await
            .and_then(to_raw);
        finish(&ext, result)
    })?;
    module.register_async_method("opgate_getSessionState", |params, chain, ext| async move {
        let raw: Option<&RawValue> = params.as_str().and_then(|s| serde_json::from_str(s).ok());
        let result = session_state::get(&chain.gate, &chain, raw, tenant(&ext))
            .await
            .and_then(to_raw);
        finish(&ext, result)
    })?;
    Ok(module)
}

/// The tenant the request was admitted for.
fn tenant(ext: &Extensions) -> Option<Arc<str>> {
    ext.get::<crate::tenants::Tenant>().map(|t| t.name.clone())
}

fn to_raw<T: serde::Serialize>(value: T) -> Result<Box<RawValue>, RpcFailure> {
    serde_json::value::to_raw_value(&value).map_err(|e| super::errors::internal(&e))
}
