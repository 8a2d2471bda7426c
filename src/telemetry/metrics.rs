use std::sync::Arc;
use std::time::Duration;

use crate::listener::{Clients, TimedBody};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;

/// Latency buckets in seconds: 100 µs to 30 s, dense where a proxy lives.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

macro_rules! method_labels {
    ($($variant:ident => $label:literal),* $(,)?) => {
        /// The `method` label: known bundler methods by name, vendor namespaces by prefix, the rest
        /// as `other`. Bounded by construction.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum MethodLabel { $($variant),* }

        impl MethodLabel {
            /// Every label, in a fixed order.
            pub const ALL: &'static [MethodLabel] = &[$(MethodLabel::$variant),*];

            /// The label text.
            pub const fn as_str(self) -> &'static str {
                match self { $(MethodLabel::$variant => $label),* }
            }
        }
    };
}

method_labels! {
    SendUserOperation => "eth_sendUserOperation",
    EstimateUserOperationGas => "eth_estimateUserOperationGas",
    GetUserOperationByHash => "eth_getUserOperationByHash",
    GetUserOperationReceipt => "eth_getUserOperationReceipt",
    SupportedEntryPoints => "eth_supportedEntryPoints",
    ChainId => "eth_chainId",
    Pimlico => "pimlico_*",
    ZeroDev => "zd_*",
    Rundler => "rundler_*",
    Boost => "boost_*",
    Paymaster => "pm_*",
    Debug => "debug_*",
    Opgate => "opgate_*",
    Other => "other",
}

impl MethodLabel {
    /// Classifies a client-sent method name.
    pub fn of(method: &str) -> Self {
        match method {
            "eth_sendUserOperation" => Self::SendUserOperation,
            "eth_estimateUserOperationGas" => Self::EstimateUserOperationGas,
            "eth_getUserOperationByHash" => Self::GetUserOperationByHash,
            "eth_getUserOperationReceipt" => Self::GetUserOperationReceipt,
            "eth_supportedEntryPoints" => Self::SupportedEntryPoints,
            "eth_chainId" => Self::ChainId,
            m if m.starts_with("pimlico_") => Self::Pimlico,
            m if m.starts_with("zd_") => Self::ZeroDev,
            m if m.starts_with("rundler_") => Self::Rundler,
            m if m.starts_with("boost_") => Self::Boost,
            m if m.starts_with("pm_") => Self::Paymaster,
            m if m.starts_with("debug_") => Self::Debug,
            m if m.starts_with("opgate_") => Self::Opgate,
            _ => Self::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a client request ended, as the `outcome` label of `opgate_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A result was returned.
    Success,
    /// The upstream answered with a JSON-RPC error, passed through.
    UpstreamRpcError,
    /// No usable answer from any upstream.
    UpstreamFailure,
    /// opgate refused the request (method not allowed, invalid params, policy).
    Rejected,
    /// An internal failure.
    Internal,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Self::Success,
        Self::UpstreamRpcError,
        Self::UpstreamFailure,
        Self::Rejected,
        Self::Internal,
    ];

    /// The label text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::UpstreamRpcError => "upstream_rpc_error",
            Self::UpstreamFailure => "upstream_failure",
            Self::Rejected => "rejected",
            Self::Internal => "internal",
        }
    }
}

/// How one upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// A JSON-RPC result.
    Ok,
    /// A JSON-RPC error object.
    RpcError,
    /// No answer within the timeout.
    Timeout,
    /// The connection could not be made.
    ConnectError,
    /// The connection broke after the request was sent.
    TransportError,
    /// An HTTP status without a JSON-RPC body.
    HttpError,
    /// A body that is not a JSON-RPC response, or too large.
    BadResponse,
}

impl UpstreamOutcome {
    const ALL: [UpstreamOutcome; 7] = [
        Self::Ok,
        Self::RpcError,
        Self::Timeout,
        Self::ConnectError,
        Self::TransportError,
        Self::HttpError,
        Self::BadResponse,
    ];

    /// The label text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RpcError => "rpc_error",
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::TransportError => "transport_error",
            Self::HttpError => "http_error",
            Self::BadResponse => "bad_response",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// JSON-RPC error codes bundlers use (EIP-7769 and the JSON-RPC spec); anything else is `other`.
const KNOWN_RPC_CODES: &[i32] = &[
    -32700, -32600, -32601, -32602, -32603, -32500, -32501, -32502, -32503, -32504, -32505, -32506, -32507, -32508,
    -32521, -32000, -32001, -32002, -32003, -32004, -32005,
];

/// Every metric opgate exports, registered once at start-up.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    in_flight: IntGaugeVec,
    upstream_requests: IntCounterVec,
    upstream_duration: HistogramVec,
    upstream_rpc_errors: IntCounterVec,
    failovers: IntCounterVec,
    connections_active: IntGauge,
    connections_rejected: IntCounter,
    connections_closed: Vec<IntCounter>,
    decisions: DecisionMetrics,
}

/// Decision, stage-latency and store metrics (policy labels come from configuration, so they are
/// bounded by it).
#[derive(Clone)]
pub struct DecisionMetrics {
    decisions: IntCounterVec,
    stages: HistogramVec,
    store_errors: IntCounterVec,
    store_fallbacks: IntCounterVec,
    reservations: IntCounterVec,
    simulations: IntCounterVec,
    simulation_fallbacks: IntCounterVec,
    store_entries: IntGauge,
    store_reconnects: IntCounterVec,
    account_reads: IntCounterVec,
    lifecycle: IntCounterVec,
    access_refusals: IntCounterVec,
}

impl std::fmt::Debug for DecisionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionMetrics")
    }
}

/// A stage of the send pipeline, as the `stage` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Parsing and decoding the op (with registry lookups).
    Decode,
    /// Evaluating policies.
    Policy,
    /// Simulating the op against the chain's node.
    Sim,
    /// The store's reservation round trip.
    Store,
    /// Relaying to the upstream.
    Upstream,
}

impl Stage {
    /// The label text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Policy => "policy",
            Self::Sim => "simulation",
            Self::Store => "store",
            Self::Upstream => "upstream",
        }
    }
}

impl DecisionMetrics {
    /// Counts one decision: `outcome` is `accepted`, `rejected` or `allowed_on_store_error`;
    /// `reason` and `policy` are `none` for accepted ops.
    pub fn decision(&self, chain: &str, outcome: &str, reason: &str, policy: &str, tenant: &str) {
        self.decisions
            .with_label_values(&[chain, outcome, reason, policy, tenant])
            .inc();
    }

    /// Records a stage's duration.
    pub fn stage(&self, chain: &str, stage: Stage, elapsed: Duration) {
        self.stages
            .with_label_values(&[chain, stage.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a store failure for `operation` (`reserve`, `commit`, `refund`, `registry`, `usage`,
    /// `revocation`) of `kind` (`timeout`, `unavailable`, `protocol`).
    pub fn store_error(&self, operation: &str, kind: &str) {
        self.store_errors.with_label_values(&[operation, kind]).inc();
    }

    /// Counts an op decided by `on_error` because the store failed (`action`: `allowed` or
    /// `rejected`).
    pub fn store_fallback(&self, chain: &str, action: &str) {
        self.store_fallbacks.with_label_values(&[chain, action]).inc();
    }

    /// Counts a reservation step result (`charged`, `already_charged`, `exceeded`,
    /// `not_yet_available`, `revoked`, `committed`, `refunded`).
    pub fn reservation(&self, chain: &str, result: &str) {
        self.reservations.with_label_values(&[chain, result]).inc();
    }

    /// Counts a simulation by outcome (`ok`, `validation_failed`, `reverted`, `timeout`, `error`).
    pub fn simulation(&self, chain: &str, outcome: &str) {
        self.simulations.with_label_values(&[chain, outcome]).inc();
    }

    /// Counts a send decided by `on_sim_error` because the simulation could not answer
    /// (`action`: `allowed` or `rejected`).
    pub fn simulation_fallback(&self, chain: &str, action: &str) {
        self.simulation_fallbacks.with_label_values(&[chain, action]).inc();
    }

    /// Counts an account state read (`outcome`: `cached`, `read`, `failed`).
    pub fn account_read(&self, chain: &str, outcome: &str) {
        self.account_reads.with_label_values(&[chain, outcome]).inc();
    }

    /// Counts what became of state learned from a relayed op once the chain was read (`outcome`:
    /// `confirmed`, `dropped`, `revived`, `uninstalled`).
    pub fn lifecycle(&self, chain: &str, outcome: &str) {
        self.lifecycle.with_label_values(&[chain, outcome]).inc();
    }

    /// Counts a request refused before any work (`reason`: `Unauthorized`, `RequestRateLimited`,
    /// `StoreUnavailable`), by tenant (`none` without a valid key).
    pub fn access_refusal(&self, tenant: &str, reason: &str) {
        self.access_refusals.with_label_values(&[tenant, reason]).inc();
    }

    /// Entries the memory store holds (`[store] max_entries` bounds them).
    pub fn store_entries(&self, entries: usize) {
        self.store_entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Brings the count of store connections dropped after a failure (a server gone, a
    /// failover, a timeout) up to `total`, the store's own count, for `topology`.
    pub fn store_reconnects(&self, topology: &str, total: u64) {
        let c = self.store_reconnects.with_label_values(&[topology]);
        let seen = c.get();
        if total > seen {
            c.inc_by(total - seen);
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn registered<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Metrics {
    /// Creates and registers every metric on a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("opgate".into()), None).expect("valid prefix");
        let buckets = LATENCY_BUCKETS.to_vec();
        let requests = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "requests_total",
                    "JSON-RPC calls received, by chain, method, outcome and tenant",
                ),
                &["chain", "method", "outcome", "tenant"],
            )
            .expect("valid"),
        );
        let request_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new("request_duration_seconds", "Time to answer one JSON-RPC call")
                    .buckets(buckets.clone()),
                &["chain", "method"],
            )
            .expect("valid"),
        );
        let in_flight = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("requests_in_flight", "JSON-RPC calls being answered"),
                &["chain"],
            )
            .expect("valid"),
        );
        let upstream_requests = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "upstream_requests_total",
                    "Requests sent to upstream bundlers, by outcome",
                ),
                &["chain", "upstream", "outcome"],
            )
            .expect("valid"),
        );
        let upstream_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new("upstream_request_duration_seconds", "Upstream round-trip time").buckets(buckets),
                &["chain", "upstream"],
            )
            .expect("valid"),
        );
        let upstream_rpc_errors = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "upstream_rpc_errors_total",
                    "JSON-RPC errors answered by upstreams, by code",
                ),
                &["chain", "code"],
            )
            .expect("valid"),
        );
        let failovers = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "upstream_failovers_total",
                    "Requests moved to the next upstream after a failure",
                ),
                &["chain"],
            )
            .expect("valid"),
        );
        let connections_active = registered(
            &registry,
            IntGauge::new("connections_active", "Open client connections").expect("valid"),
        );
        let connections_rejected = registered(
            &registry,
            IntCounter::new(
                "connections_rejected_total",
                "Client connections closed at the connection limit",
            )
            .expect("valid"),
        );
        let closed = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "connections_closed_total",
                    "Client connections opgate closed or refused, by reason (head_timeout, idle_timeout, \
                     body_timeout, per_address_limit, max_connections)",
                ),
                &["reason"],
            )
            .expect("valid"),
        );
        let connections_closed = crate::listener::CloseReason::ALL
            .iter()
            .map(|r| closed.with_label_values(&[r.as_str()]))
            .collect();
        let build_info = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("build_info", "Always 1; labels carry the version"),
                &["version"],
            )
            .expect("valid"),
        );
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let decisions = DecisionMetrics {
            decisions: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "decisions_total",
                        "eth_sendUserOperation decisions, by outcome, reason, policy and tenant",
                    ),
                    &["chain", "outcome", "reason", "policy", "tenant"],
                )
                .expect("valid"),
            ),
            stages: registered(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new("stage_duration_seconds", "Time spent in each stage of a send")
                        .buckets(LATENCY_BUCKETS.to_vec()),
                    &["chain", "stage"],
                )
                .expect("valid"),
            ),
            store_errors: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new("store_errors_total", "Usage-store failures, by operation and kind"),
                    &["operation", "kind"],
                )
                .expect("valid"),
            ),
            store_reconnects: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "store_reconnects_total",
                        "Redis connections dropped after a failure (server gone, failover, timeout) and made again on a later call, by topology",
                    ),
                    &["topology"],
                )
                .expect("valid"),
            ),
            store_fallbacks: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "store_fallbacks_total",
                        "Ops decided by on_error because the store failed, by action",
                    ),
                    &["chain", "action"],
                )
                .expect("valid"),
            ),
            reservations: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "reservations_total",
                        "Usage reservation steps, by result (charged, exceeded, committed, refunded, ...)",
                    ),
                    &["chain", "result"],
                )
                .expect("valid"),
            ),
            simulations: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "simulations_total",
                        "Simulations, by outcome (ok, validation_failed, reverted, timeout, error)",
                    ),
                    &["chain", "outcome"],
                )
                .expect("valid"),
            ),
            simulation_fallbacks: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "simulation_fallbacks_total",
                        "Sends decided by on_sim_error because the simulation could not answer, by action",
                    ),
                    &["chain", "action"],
                )
                .expect("valid"),
            ),
            account_reads: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "account_reads_total",
                        "Account state reads from the chain's node, by outcome (cached, read, failed)",
                    ),
                    &["chain", "outcome"],
                )
                .expect("valid"),
            ),
            lifecycle: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "learned_state_total",
                        "State learned from relayed ops, as the chain later showed it (confirmed, dropped, revived, \
                         uninstalled)",
                    ),
                    &["chain", "outcome"],
                )
                .expect("valid"),
            ),
            access_refusals: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "access_refusals_total",
                        "Requests refused before any work, by tenant and reason (Unauthorized, RequestRateLimited, \
                         StoreUnavailable)",
                    ),
                    &["tenant", "reason"],
                )
                .expect("valid"),
            ),
            store_entries: registered(
                &registry,
                IntGauge::new(
                    "store_entries",
                    "Entries the memory store holds: counters, op records, revocations, registry ([store] max_entries)",
                )
                .expect("valid"),
            ),
        };
        Self {
            registry,
            requests,
            request_duration,
            in_flight,
            upstream_requests,
            upstream_duration,
            upstream_rpc_errors,
            failovers,
            connections_active,
            connections_rejected,
            connections_closed,
            decisions,
        }
    }

    /// Decision and store metrics.
    pub fn decisions(&self) -> DecisionMetrics {
        self.decisions.clone()
    }

    /// The registry, for the exporter and for tests.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders the Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Handles for one chain, resolved now so the request path does no label lookups.
    /// `tenants` are the configured tenant names: the `tenant` label is one of them or `none`.
    pub fn chain(&self, chain: &str, upstreams: &[String], tenants: &[String]) -> ChainMetrics {
        let labels: Vec<&str> = std::iter::once("none")
            .chain(tenants.iter().map(String::as_str))
            .collect();
        let methods = MethodLabel::ALL
            .iter()
            .map(|m| MethodHandles {
                outcomes: labels
                    .iter()
                    .map(|t| {
                        Outcome::ALL
                            .iter()
                            .map(|o| self.requests.with_label_values(&[chain, m.as_str(), o.as_str(), t]))
                            .collect()
                    })
                    .collect(),
                duration: self.request_duration.with_label_values(&[chain, m.as_str()]),
            })
            .collect();
        let upstreams = upstreams
            .iter()
            .map(|name| {
                Arc::new(UpstreamMetrics {
                    outcomes: UpstreamOutcome::ALL
                        .iter()
                        .map(|o| self.upstream_requests.with_label_values(&[chain, name, o.as_str()]))
                        .collect(),
                    duration: self.upstream_duration.with_label_values(&[chain, name]),
                    rpc_errors: self.upstream_rpc_errors.clone(),
                    chain: chain.to_string(),
                })
            })
            .collect();
        ChainMetrics {
            methods: Arc::new(methods),
            upstreams,
            in_flight: self.in_flight.with_label_values(&[chain]),
            failovers: self.failovers.with_label_values(&[chain]),
        }
    }

    /// Connection gauge and rejection counter.
    pub fn connections(&self) -> (IntGauge, IntCounter) {
        (self.connections_active.clone(), self.connections_rejected.clone())
    }

    /// `connections_closed_total`, one counter per [`crate::listener::CloseReason`] in `ALL` order.
    pub fn connections_closed(&self) -> Vec<IntCounter> {
        self.connections_closed.clone()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

struct MethodHandles {
    /// By tenant index (0: none), then outcome.
    outcomes: Vec<Vec<IntCounter>>,
    duration: Histogram,
}

/// Pre-resolved handles for one chain.
#[derive(Clone)]
pub struct ChainMetrics {
    methods: Arc<Vec<MethodHandles>>,
    upstreams: Vec<Arc<UpstreamMetrics>>,
    in_flight: IntGauge,
    failovers: IntCounter,
}

impl std::fmt::Debug for ChainMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainMetrics")
    }
}

impl ChainMetrics {
    /// Records one answered call.
    /// `tenant` is the tenant's index (0: none, else 1 + its position in the configuration).
    pub fn observe_request(&self, method: MethodLabel, outcome: Outcome, tenant: usize, elapsed: Duration) {
        let handles = &self.methods[method.index()];
        let by_tenant = handles.outcomes.get(tenant).unwrap_or(&handles.outcomes[0]);
        by_tenant[outcome as usize].inc();
        handles.duration.observe(elapsed.as_secs_f64());
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// Counts a move to the next upstream.
    pub fn failover(&self) {
        self.failovers.inc();
    }

    /// Handles for the upstream at `index` in the chain's failover order.
    pub fn upstream(&self, index: usize) -> Option<Arc<UpstreamMetrics>> {
        self.upstreams.get(index).cloned()
    }
}

/// Pre-resolved handles for one upstream.
pub struct UpstreamMetrics {
    outcomes: Vec<IntCounter>,
    duration: Histogram,
    rpc_errors: IntCounterVec,
    chain: String,
}

impl std::fmt::Debug for UpstreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamMetrics")
    }
}

impl UpstreamMetrics {
    /// Records one attempt; `rpc_code` is the JSON-RPC error code when the upstream answered one.
    pub fn observe(&self, outcome: UpstreamOutcome, elapsed: Duration, rpc_code: Option<i32>) {
        self.outcomes[outcome.index()].inc();
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(code) = rpc_code {
            let label = if KNOWN_RPC_CODES.contains(&code) {
                code.to_string()
            } else {
                "other".to_string()
            };
            self.rpc_errors
                .with_label_values(&[self.chain.as_str(), label.as_str()])
                .inc();
        }
    }
}

/// Serves a small side listener (metrics, admin) until `shutdown` resolves: every connection
/// admitted by `clients` (per-address and total caps, head and idle timeouts) and answered by
/// `handle`, each request on its own task. `what` names the listener in logs.
pub async fn serve_side<H, F>(
    listener: TcpListener,
    what: &'static str,
    clients: Arc<Clients>,
    handle: H,
    shutdown: impl std::future::Future<Output = ()>,
) where
    H: Fn(hyper::Request<TimedBody<hyper::body::Incoming>>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let (sweep_stop, sweep_stopped) = tokio::sync::oneshot::channel::<()>();
    let sweeper = tokio::spawn(clients.clone().sweep(async move {
        let _ = sweep_stopped.await;
    }));
    side_loop(listener, what, &clients, handle, shutdown).await;
    let _ = sweep_stop.send(());
    let _ = sweeper.await;
}

async fn side_loop<H, F>(
    listener: TcpListener,
    what: &'static str,
    clients: &Arc<Clients>,
    handle: H,
    shutdown: impl std::future::Future<Output = ()>,
) where
    H: Fn(hyper::Request<TimedBody<hyper::body::Incoming>>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(admitted) = clients.admit(peer) else {
            tracing::debug!(%peer, listener = what, "connection refused; closing");
            continue;
        };
        let handle = handle.clone();
        let requests = admitted.requests();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let busy = requests.busy();
                let answer = handle(req.map(|body| requests.body(body)));
                async move {
                    let answer = answer.await;
                    drop(busy);
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let io = TokioIo::new(admitted.watch(stream));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = admitted.run(builder.serve_connection(io, svc)).await;
        });
    }
}

/// Serves `GET /metrics` on its own listener until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Metrics,
    limits: crate::listener::ClientLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let clients = Clients::new(limits, metrics.connections_closed());
    let handle = move |req: hyper::Request<TimedBody<hyper::body::Incoming>>| {
        let metrics = metrics.clone();
        async move {
            let resp = if req.uri().path() == "/metrics" {
                hyper::Response::builder()
                    .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                    .body(Full::new(Bytes::from(metrics.render())))
            } else {
                hyper::Response::builder()
                    .status(404)
                    .body(Full::new(Bytes::from_static(b"not found\n")))
            };
            resp.expect("static response parts are valid")
        }
    };
    serve_side(listener, "metrics", clients, handle, shutdown).await;
}
