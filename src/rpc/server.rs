use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{stop_channel, ServerHandle};
use jsonrpsee::server::{BatchRequestConfig, HttpBody, HttpResponse, Server, ServerConfig as RpcConfig};
use prometheus::{IntCounter, IntGauge};
use tokio::net::TcpListener;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt};

use super::gateway::Gateway;
use super::handlers;
use crate::chain::Chain;
use crate::config::{CorsConfig, ServerConfig};
use crate::listener::{Busy, Clients, TimedBody};
use crate::telemetry::Metrics;

/// A chain's jsonrpsee service, fed the request body opgate has already read (bounded).
type ChainService = BoxCloneSyncService<http::Request<http_body_util::Full<bytes::Bytes>>, HttpResponse, BoxError>;

/// The server could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A method could not be registered (a programming error caught at start-up).
    #[error("registering RPC methods: {0}")]
    Register(#[from] jsonrpsee::core::RegisterMethodError),
}

/// How long `/readyz` waits for an upstream.
const READY_PROBE_DEADLINE: Duration = Duration::from_secs(2);

struct Routes {
    by_id: HashMap<u64, ChainService>,
    /// Served at `/` when exactly one chain is configured.
    single: Option<ChainService>,
    chains: Vec<Arc<Chain>>,
    /// `[server.cors]`, when on.
    cors: Option<CorsConfig>,
    /// `[server] max_request_body`.
    max_request_body: usize,
}

/// The JSON-RPC HTTP server: a function of a bound listener and a shutdown future.
pub struct RpcServer {
    routes: Arc<Routes>,
    clients: Arc<Clients>,
    shutdown_grace: Duration,
    connections_active: IntGauge,
    connections_rejected: IntCounter,
    stop: ServerHandle,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("chains", &self.routes.chains.len())
            .finish_non_exhaustive()
    }
}

impl RpcServer {
    /// Assembles one jsonrpsee service per chain.
    pub fn new(chains: Vec<Arc<Chain>>, cfg: &ServerConfig, metrics: &Metrics) -> Result<Self, ServerError> {
        let (stop_handle, stop) = stop_channel();
        let local: Arc<HashSet<&'static str>> = Arc::new(handlers::LOCAL_METHODS.iter().copied().collect());
        let max_response = cfg.max_response_body_bytes as usize;
        let mut by_id = HashMap::new();
        let mut services = Vec::with_capacity(chains.len());
        for chain in &chains {
            let rpc_cfg = RpcConfig::builder()
                .max_request_body_size(cfg.max_request_body_bytes)
                .max_response_body_size(cfg.max_response_body_bytes)
                .max_connections(cfg.max_connections)
                .set_batch_request_config(BatchRequestConfig::Limit(cfg.max_batch))
                .http_only()
                .build();
            let for_layer = chain.clone();
            let local = local.clone();
            let middleware = RpcServiceBuilder::new()
                .layer_fn(move |inner| Gateway::new(inner, for_layer.clone(), local.clone(), max_response));
            let service = Server::builder()
                .set_config(rpc_cfg)
                .set_rpc_middleware(middleware)
                .to_service_builder()
                .build(handlers::module(chain.clone())?, stop_handle.clone());
            let service: ChainService = BoxCloneSyncService::new(service);
            if let Some(id) = chain.id {
                by_id.insert(id, service.clone());
            }
            services.push(service);
        }
        let single = if services.len() == 1 { services.pop() } else { None };
        let (connections_active, connections_rejected) = metrics.connections();
        Ok(Self {
            routes: Arc::new(Routes {
                by_id,
                single,
                chains,
                cors: cfg.cors.clone(),
                max_request_body: cfg.max_request_body_bytes as usize,
            }),
            clients: Clients::new(cfg.client_limits(), metrics.connections_closed()),
            shutdown_grace: cfg.shutdown_grace,
            connections_active,
            connections_rejected,
            stop,
        })
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish for
    /// up to the configured grace period, and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let (sweep_stop, sweep_stopped) = tokio::sync::oneshot::channel::<()>();
        let sweeper = tokio::spawn(self.clients.clone().sweep(async move {
            let _ = sweep_stopped.await;
        }));
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let admitted = match self.clients.admit(peer) {
                Ok(a) => a,
                Err(why) => {
                    self.connections_rejected.inc();
                    tracing::debug!(%peer, reason = why.as_str(), "connection refused; closing");
                    drop(stream);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let routes = self.routes.clone();
            let requests = admitted.requests();
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let busy = requests.busy();
                let mut req = req.map(|body| requests.body(body));
                req.extensions_mut().insert(Peer(peer));
                route_busy(routes.clone(), req, busy)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(admitted.watch(stream)), service);
            let watched = graceful.watch(connection);
            let active = self.connections_active.clone();
            active.inc();
            tokio::spawn(async move {
                if let Some(Err(e)) = admitted.run(watched).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                active.dec();
            });
        }
        drop(listener);
        tracing::info!(
            connections = graceful.count(),
            "shutting down; waiting for in-flight requests"
        );
        if tokio::time::timeout(self.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
        let _ = self.stop.stop();
        let _ = sweep_stop.send(());
        let _ = sweeper.await;
    }
}

fn text(status: u16, body: &'static str) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(HttpBody::from(body))
        .expect("static response parts are valid")
}

/// [`route`], with the connection marked busy until the answer is ready.
async fn route_busy(
    routes: Arc<Routes>,
    req: http::Request<TimedBody<Incoming>>,
    busy: Busy,
) -> Result<HttpResponse, BoxError> {
    let answer = route(routes, req).await;
    drop(busy);
    answer
}

/// [`route_path`] under CORS, when it is on: a preflight from a browser origin is answered here
/// (never relayed), and every answer to an allowed origin carries its CORS headers.
async fn route(routes: Arc<Routes>, req: http::Request<TimedBody<Incoming>>) -> Result<HttpResponse, BoxError> {
    let origin = routes.cors.as_ref().and_then(|_| {
        req.headers()
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let (Some(cors), Some(origin)) = (routes.cors.as_ref(), origin) else {
        return admitted(routes, req).await;
    };
    if req.method() == http::Method::OPTIONS {
        return Ok(preflight(cors, &origin));
    }
    let cors = cors.clone();
    let mut response = admitted(routes, req).await?;
    let headers = response.headers_mut();
    headers.append(http::header::VARY, http::HeaderValue::from_static("origin"));
    if cors.allows(&origin) {
        if let Ok(v) = http::HeaderValue::from_str(&origin) {
            headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            headers.insert(
                http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
                http::HeaderValue::from_static("retry-after"),
            );
        }
    }
    Ok(response)
}

/// The answer to a CORS preflight: 204 with what the origin may send, or 403 for an origin that
/// is not allowed.
fn preflight(cors: &CorsConfig, origin: &str) -> HttpResponse {
    let allowed = cors.allows(origin);
    let mut b = http::Response::builder()
        .status(if allowed { 204 } else { 403 })
        .header(http::header::VARY, "origin");
    match http::HeaderValue::from_str(origin) {
        Ok(o) if allowed => {
            b = b
                .header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, o)
                .header(http::header::ACCESS_CONTROL_ALLOW_METHODS, cors.methods.join(", "))
                .header(http::header::ACCESS_CONTROL_ALLOW_HEADERS, cors.headers.join(", "))
                .header(http::header::ACCESS_CONTROL_MAX_AGE, cors.max_age.as_secs().to_string());
            b.body(HttpBody::empty()).expect("valid preflight answer")
        }
        _ => b
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(HttpBody::from("origin not allowed\n"))
            .expect("valid preflight answer"),
    }
}

/// The client's address, as accepted.
#[derive(Debug, Clone, Copy)]
struct Peer(std::net::SocketAddr);

/// [`route_path`] for a request its API key and the request limits admit (see
/// [`crate::tenants`]); the tenant travels on in the request's extensions.
async fn admitted(routes: Arc<Routes>, mut req: http::Request<TimedBody<Incoming>>) -> Result<HttpResponse, BoxError> {
    let Some(gate) = routes.chains.first().map(|c| c.gate.clone()) else {
        return route_path(routes, req).await;
    };
    let path = req.uri().path();
    if !gate.access.active() || matches!(path, "/healthz" | "/readyz") {
        return route_path(routes, req).await;
    }
    let chain_id = match path.trim_matches('/').split('/').next().filter(|s| !s.is_empty()) {
        Some(id) => id.parse::<u64>().ok(),
        None => routes
            .chains
            .first()
            .filter(|_| routes.single.is_some())
            .and_then(|c| c.id),
    };
    let key = crate::tenants::key_of(req.uri(), req.headers());
    let peer = req
        .extensions()
        .get::<Peer>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |p| p.0.ip());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match gate
        .access
        .admit(chain_id, key.as_deref(), peer, forwarded.as_deref(), gate.store_timeout)
        .await
    {
        Ok(tenant) => {
            if let Some(t) = tenant {
                req.extensions_mut().insert(t);
            }
            route_path(routes, req).await
        }
        Err(refusal) => Ok(refused(&gate, refusal)),
    }
}

/// The answer to a request refused before any work: a JSON-RPC error (`id` null), with the HTTP
/// status a client's transport understands.
fn refused(gate: &crate::pipeline::Gate, refusal: crate::tenants::Refusal) -> HttpResponse {
    use crate::tenants::Refusal;
    let (status, code, message, data, retry_after) = match &refusal {
        Refusal::Unauthorized(detail) => (
            401,
            super::errors::codes::UNAUTHORIZED,
            format!("unauthorized: {detail}"),
            serde_json::json!({ "reason": "Unauthorized", "detail": detail }),
            None,
        ),
        Refusal::RateLimited { limit, retry_after, .. } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            (
                429,
                super::errors::codes::REQUEST_RATE_LIMITED,
                format!("request limit of the {limit} exceeded; retry in {secs} s"),
                serde_json::json!({ "reason": "RequestRateLimited", "detail": format!("over the {limit}'s request limit"), "retryAfter": secs }),
                Some(secs),
            )
        }
        Refusal::StoreUnavailable => (
            200,
            super::errors::codes::STORE_UNAVAILABLE,
            "usage store unavailable; the request was not relayed".to_string(),
            serde_json::json!({ "reason": "StoreUnavailable", "retryable": true }),
            None,
        ),
    };
    let reason = data["reason"].as_str().unwrap_or("unknown").to_string();
    let tenant = match &refusal {
        Refusal::RateLimited { tenant: Some(t), .. } => t.to_string(),
        _ => "none".to_string(),
    };
    gate.metrics.access_refusal(&tenant, &reason);
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message, "data": data },
    });
    let mut b = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(secs) = retry_after {
        b = b.header(http::header::RETRY_AFTER, secs.to_string());
    }
    b.body(HttpBody::from(body.to_string())).expect("valid refusal")
}

async fn route_path(routes: Arc<Routes>, req: http::Request<TimedBody<Incoming>>) -> Result<HttpResponse, BoxError> {
    let path = req.uri().path();
    match path {
        "/healthz" => return Ok(text(200, "ok\n")),
        "/readyz" => return Ok(ready(&routes).await),
        _ => {}
    }
    let keyed = routes.chains.first().is_some_and(|c| c.gate.access.keys_required());
    let service = match path.trim_end_matches('/') {
        "" => routes.single.clone(),
        rest => rest
            .strip_prefix('/')
            // `/{chainId}/{apikey}` when API keys are in use.
            .map(|p| match p.split_once('/') {
                Some((id, key)) if keyed && !key.is_empty() && !key.contains('/') => id,
                _ => p,
            })
            .filter(|id| !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|id| id.parse::<u64>().ok())
            .and_then(|id| routes.by_id.get(&id).cloned()),
    };
    match service {
        Some(_) if req.method() != http::Method::POST => Ok(rpc_error(
            405,
            -32600,
            &format!("{} is not a JSON-RPC request: POST a JSON-RPC body", req.method()),
        )),
        Some(service) => {
            let mut req = req;
            // Any content type is read as JSON: clients that send none (or text/plain, to skip a
            // browser preflight) get an answer, not a 415.
            let json = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
            if !json {
                req.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
            }
            let (parts, body) = req.into_parts();
            let body = match http_body_util::Limited::new(body, routes.max_request_body)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    return Ok(rpc_error(
                        413,
                        -32007,
                        "the request body is over server.max_request_body",
                    ))
                }
                Err(e) => return Err(e),
            };
            let request = http::Request::from_parts(parts, http_body_util::Full::new(body.clone()));
            let answer = service.oneshot(request).await?;
            Ok(not_json_rpc(answer, &body).await)
        }
        None if path == "/" => Ok(rpc_error(404, -32601, "several chains are served: use /{chainId}")),
        None => Ok(rpc_error(404, -32601, "no such chain is served here: use /{chainId}")),
    }
}

/// jsonrpsee answers `-32700` (parse error) to JSON that is not a JSON-RPC request; the JSON-RPC
/// specification (and the README's table) say `-32600` for that. Only short error answers are
/// looked at.
async fn not_json_rpc(answer: HttpResponse, request: &bytes::Bytes) -> HttpResponse {
    const SHORT: u64 = 256;
    let short = hyper::body::Body::size_hint(answer.body())
        .upper()
        .is_some_and(|n| n <= SHORT);
    if !short {
        return answer;
    }
    let (parts, body) = answer.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
        return http::Response::from_parts(parts, HttpBody::empty());
    };
    let parse_error = serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|v| v["error"]["code"] == -32700 && v.get("id").is_some_and(serde_json::Value::is_null));
    if parse_error && serde_json::from_slice::<serde::de::IgnoredAny>(request).is_ok() {
        return rpc_error(
            200,
            -32600,
            "not a JSON-RPC request: expected {\"jsonrpc\":\"2.0\",\"method\":…,\"id\":…} or a batch of them",
        );
    }
    http::Response::from_parts(parts, HttpBody::new(http_body_util::Full::new(bytes)))
}

/// A JSON-RPC error answer (`id` null) with an HTTP status.
fn rpc_error(status: u16, code: i32, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(HttpBody::from(body.to_string()))
        .expect("valid error answer")
}

async fn ready(routes: &Routes) -> HttpResponse {
    let probes = routes
        .chains
        .iter()
        .map(|c| async move { (c.label.clone(), c.relay.probe(READY_PROBE_DEADLINE).await) });
    // The store is one for every chain: every gate holds the same.
    let store = routes.chains.first().map(|c| c.gate.clone());
    let store_probe = async move {
        let gate = store?;
        let ok = matches!(
            tokio::time::timeout(READY_PROBE_DEADLINE, gate.store.ping()).await,
            Ok(Ok(()))
        );
        gate.metrics
            .store_reconnects(gate.store.topology(), gate.store.reconnects());
        Some((gate.store.backend(), gate.store.topology(), ok))
    };
    let (results, store) = futures::join!(join_all(probes), store_probe);
    let store_ready = store.is_none_or(|(_, _, ok)| ok);
    let all_ready = results.iter().all(|(_, ok)| *ok) && store_ready;
    let chains: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(label, ok)| (label, serde_json::Value::Bool(ok)))
        .collect();
    let mut body = serde_json::json!({ "ready": all_ready, "chains": chains });
    if let Some((backend, topology, ok)) = store {
        body["store"] = serde_json::json!({ "backend": backend, "topology": topology, "ready": ok });
    }
    http::Response::builder()
        .status(if all_ready { 200 } else { 503 })
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(HttpBody::from(body.to_string()))
        .expect("static response parts are valid")
}
