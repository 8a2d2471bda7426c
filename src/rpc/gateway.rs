//! The per-call gateway: a jsonrpsee RPC middleware that sees every call, batched or not.
//!
//! Methods opgate implements itself (`eth_sendUserOperation`, `opgate_*`) go to their registered
//! handlers, where policy lives. Every other method is relayed upstream if the chain's rules allow
//! it, and refused otherwise. Because this layer runs per call, a batch cannot smuggle a method
//! past it. It also owns request metrics: one place counts every call exactly once.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use jsonrpsee::server::middleware::rpc::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::server::{BatchResponseBuilder, MethodResponse, ResponsePayload};
use jsonrpsee::types::{ErrorObjectOwned, Request};
use serde_json::value::RawValue;

use super::errors::{self, RpcFailure};
use crate::chain::Chain;
use crate::telemetry::{MethodLabel, Outcome};

/// Where a handler reports how its call ended, for metrics. Travels in the request extensions.
#[derive(Debug, Clone, Default)]
pub struct OutcomeSlot(Arc<AtomicU8>);

const UNSET: u8 = u8::MAX;

impl OutcomeSlot {
    fn new() -> Self {
        Self(Arc::new(AtomicU8::new(UNSET)))
    }

    /// Records the outcome of the call.
    pub fn set(&self, outcome: Outcome) {
        self.0.store(outcome as u8, Ordering::Relaxed);
    }

    fn get(&self) -> Option<Outcome> {
        let v = self.0.load(Ordering::Relaxed);
        [
            Outcome::Success,
            Outcome::UpstreamRpcError,
            Outcome::UpstreamFailure,
            Outcome::Rejected,
            Outcome::Internal,
        ]
        .into_iter()
        .find(|o| *o as u8 == v)
    }
}

/// Builds a response from a handler-style result.
pub fn respond(
    id: jsonrpsee::types::Id<'_>,
    result: Result<Box<RawValue>, ErrorObjectOwned>,
    max: usize,
) -> MethodResponse {
    match result {
        Ok(raw) => MethodResponse::response(id, ResponsePayload::success(raw), max),
        Err(e) => MethodResponse::error(id, e),
    }
}

/// The middleware. `S` is jsonrpsee's own method dispatcher.
#[derive(Clone)]
pub struct Gateway<S> {
    inner: S,
    chain: Arc<Chain>,
    local: Arc<HashSet<&'static str>>,
    max_response_bytes: usize,
}

impl<S> Gateway<S> {
    /// Wraps `inner`; `local` lists the methods registered on it.
    pub fn new(inner: S, chain: Arc<Chain>, local: Arc<HashSet<&'static str>>, max_response_bytes: usize) -> Self {
        Self {
            inner,
            chain,
            local,
            max_response_bytes,
        }
    }
}

/// Decrements the in-flight gauge even when the client goes away mid-call.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<S> RpcServiceT for Gateway<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    type MethodResponse = MethodResponse;
    type BatchResponse = MethodResponse;
    type NotificationResponse = MethodResponse;

    fn call<'a>(&self, mut req: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let this = self.clone();
        async move {
            let started = Instant::now();
            let label = MethodLabel::of(req.method_name());
            let tenant = req.extensions().get::<crate::tenants::Tenant>().map_or(0, |t| t.index);
            let metrics = &this.chain.metrics;
            metrics.in_flight().inc();
            let _guard = InFlight(metrics.in_flight());

            let (response, outcome) = if this.local.contains(req.method_name()) {
                let slot = OutcomeSlot::new();
                req.extensions_mut().insert(slot.clone());
                let response = this.inner.call(req).await;
                let outcome = slot.get().unwrap_or(if response.is_success() {
                    Outcome::Success
                } else {
                    // Params jsonrpsee itself refused before the handler ran.
                    Outcome::Rejected
                });
                (response, outcome)
            } else if this.chain.methods.allows(req.method_name()) {
                let params = req.params.as_deref();
                let result = match this.chain.relay.forward(req.method_name(), params).await {
                    Ok(answer) => errors::from_answer(answer),
                    Err(e) => Err(errors::from_relay(&e)),
                };
                let outcome = match &result {
                    Ok(_) => Outcome::Success,
                    Err(f) => f.outcome,
                };
                (
                    respond(req.id, result.map_err(|f: RpcFailure| f.error), this.max_response_bytes),
                    outcome,
                )
            } else {
                let failure = errors::method_not_allowed(req.method_name());
                (MethodResponse::error(req.id, failure.error), failure.outcome)
            };
            metrics.observe_request(label, outcome, tenant, started.elapsed());
            response
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let this = self.clone();
        async move {
            // Reads run concurrently; sends run one after another in the order given, as a client
            // submitting consecutive nonces in one batch expects.
            let mut reads = Vec::new();
            let mut sends = Vec::new();
            let mut answers: Vec<Option<MethodResponse>> = Vec::new();
            let mut got_notification = false;
            for entry in batch {
                match entry {
                    Ok(BatchEntry::Call(req)) => {
                        let index = answers.len();
                        answers.push(None);
                        if req.method_name() == "eth_sendUserOperation" {
                            sends.push((index, req));
                        } else {
                            reads.push((index, req));
                        }
                    }
                    Ok(BatchEntry::Notification(_)) => got_notification = true,
                    Err(err) => {
                        let (err, id) = err.into_parts();
                        answers.push(Some(MethodResponse::error(id, err)));
                    }
                }
            }
            let reads = join_all(reads.into_iter().map(|(i, req)| {
                let this = this.clone();
                async move { (i, this.call(req).await) }
            }));
            let sends = async {
                let mut out = Vec::with_capacity(sends.len());
                for (i, req) in sends {
                    out.push((i, this.call(req).await));
                }
                out
            };
            let (reads, sends) = futures::join!(reads, sends);
            for (i, rp) in reads.into_iter().chain(sends) {
                answers[i] = Some(rp);
            }
            let mut builder = BatchResponseBuilder::new_with_limit(this.max_response_bytes);
            for rp in answers.into_iter().flatten() {
                if let Err(too_large) = builder.append(rp) {
                    return too_large;
                }
            }
            if builder.is_empty() && got_notification {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(builder.finish())
            }
        }
    }

    #[allow(clippy::manual_async_fn)] // the trait fixes the signature; `n` must move into the future
    fn notification<'a>(&self, n: Notification<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        // JSON-RPC notifications expect no answer and bundler methods have no use for them: they
        // are accepted and not relayed.
        async move { MethodResponse::notification().with_extensions(n.extensions) }
    }
}
