//! The JSON-RPC front: an HTTP server routing `/{chainId}` (and `/` for a single chain) to a
//! jsonrpsee service per chain, plus `/healthz` and `/readyz`.
//!
//! Layers, outside in: connection limit → path routing → jsonrpsee (body and batch limits, JSON-RPC
//! framing) → [`gateway::Gateway`] (per call: local handler, relay, or refusal) → handlers.

pub mod errors;
pub mod gateway;
pub mod handlers;
mod server;

pub use server::{RpcServer, ServerError};
