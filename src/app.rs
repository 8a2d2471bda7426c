//! Wiring: builds every part from a [`Config`] and runs them until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::value::RawValue;
use tokio::net::TcpListener;

use crate::accounts::AccountReader;
use crate::chain::Chain;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StoreBackend, StoreConfig};
use crate::pipeline::Gate;
use crate::registry::Registry;
use crate::relay::{Relay, RelayBuildError, UpstreamAnswer};
use crate::rpc::{RpcServer, ServerError};
use crate::sim::Simulator;
use crate::store::memory::MemoryStore;
use crate::store::redis::{RedisOptions, RedisStore};
use crate::store::target::Target;
use crate::store::Store;
use crate::telemetry::{self, Metrics};

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// An upstream client could not be built.
    #[error(transparent)]
    Relay(#[from] RelayBuildError),
    /// The outbound HTTPS client could not be built from `[tls]`.
    #[error(transparent)]
    Tls(#[from] crate::outbound::TlsError),
    /// The RPC server could not be assembled.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The usage store could not be set up.
    #[error("usage store: {0}")]
    Store(String),
}

/// A built, not yet running, opgate.
#[derive(Debug)]
pub struct App {
    config: Config,
    metrics: Metrics,
    chains: Vec<Arc<Chain>>,
    gate: Arc<Gate>,
    admin: Option<(TcpListener, Option<std::path::PathBuf>)>,
}

/// How long start-up waits for an upstream to tell its chain id when none was configured.
const CHAIN_ID_PROBE: Duration = Duration::from_secs(5);

impl App {
    /// Builds every part. Chains configured without an id ask their upstream (`eth_chainId`).
    pub async fn build(config: Config) -> Result<Self, AppError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`App::build`] with a given clock (tests pin or advance it).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        let metrics = Metrics::new();
        let store = Arc::new(build_store(&config.store, &config.tls).await?);
        let registry = Arc::new(Registry::new(store.clone()));
        let gate = Arc::new(Gate {
            store: store.clone(),
            registry,
            clock,
            policies: std::sync::RwLock::new(Arc::new(config.policies.clone())),
            session: config.session,
            on_error: config.store.on_error,
            metrics: metrics.decisions(),
            delegates: config.delegates.clone(),
            access: Arc::new(crate::tenants::Access::new(
                config.tenants.clone(),
                config.server.requests_per_ip.clone(),
                store.clone(),
                config.store.on_error == crate::config::OnError::Allow,
            )),
            store_timeout: config.store.timeout,
        });
        let max_response = config.server.max_response_body_bytes as usize;
        // One client for every upstream and node: one TLS setup, one connection pool.
        let client = crate::outbound::client(&config.tls.extra_roots, config.connect_timeout)?;
        let mut chains = Vec::with_capacity(config.chains.len());
        for chain in &config.chains {
            let id = match chain.id {
                Some(id) => Some(id),
                None => {
                    let probe = Relay::new(&chain.upstreams, client.clone(), max_response, None)?;
                    ask_chain_id(&probe).await
                }
            };
            let label = id.map_or_else(|| "default".to_string(), |id| id.to_string());
            let names: Vec<String> = chain.upstreams.iter().map(|u| u.name.clone()).collect();
            let tenant_names: Vec<String> = config.tenants.iter().map(|t| t.name.clone()).collect();
            let chain_metrics = metrics.chain(&label, &names, &tenant_names);
            let relay = Relay::new(
                &chain.upstreams,
                client.clone(),
                max_response,
                Some(chain_metrics.clone()),
            )?;
            chains.push(Arc::new(Chain {
                id,
                label,
                relay,
                methods: config.methods.clone(),
                metrics: chain_metrics,
                gate: gate.clone(),
                accounts: match &chain.simulation {
                    Some(sim) if sim.accounts.read_from_node => {
                        let transport =
                            crate::sim::NodeTransport::new(&sim.node, sim.node_headers.clone(), client.clone());
                        let node = Arc::new(crate::sim::Node::new(transport, tokio::runtime::Handle::current()));
                        Some(crate::chain::ChainAccounts {
                            reader: Arc::new(AccountReader::new(
                                node,
                                sim.timeout,
                                sim.accounts.head_poll,
                                sim.accounts.pending_timeout,
                            )),
                            on_error: sim.on_sim_error,
                        })
                    }
                    _ => None,
                },
                simulator: match (&chain.simulation, id) {
                    (Some(sim), Some(id)) if sim.simulate => Some(Simulator::with_client(
                        sim.clone(),
                        id,
                        tokio::runtime::Handle::current(),
                        client.clone(),
                    )),
                    _ => None,
                },
            }));
        }
        Ok(Self {
            config,
            metrics,
            chains,
            gate,
            admin: None,
        })
    }

    /// Serves the admin API on `listener` too (needs `[admin] token`); `config_path` is what
    /// `/v1/reload` reads.
    pub fn with_admin(mut self, listener: TcpListener, config_path: Option<std::path::PathBuf>) -> Self {
        self.admin = Some((listener, config_path));
        self
    }

    /// The shared policy state.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The metrics registry (for tests and embedding).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The chains served, in configuration order.
    pub fn chains(&self) -> &[Arc<Chain>] {
        &self.chains
    }

    /// Serves JSON-RPC on `listener` and metrics on `metrics_listener` until `shutdown`
    /// resolves, then drains in-flight requests and returns.
    pub async fn run(
        self,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let server = RpcServer::new(self.chains.clone(), &self.config.server, &self.metrics)?;
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_task = metrics_listener.map(|l| {
            let metrics = self.metrics.clone();
            let limits = self.config.server.client_limits();
            tokio::spawn(telemetry::serve_metrics(
                l,
                metrics,
                limits,
                metrics_stopped.map(|_| ()),
            ))
        });
        if let Ok(addr) = listener.local_addr() {
            let chains: Vec<&str> = self.chains.iter().map(|c| c.label.as_str()).collect();
            tracing::info!(%addr, ?chains, "opgate listening");
        }
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = match (self.admin, &self.config.admin.token) {
            (Some((l, config_path)), Some(token)) => {
                let admin = Arc::new(crate::admin::Admin {
                    gate: self.gate.clone(),
                    token: token.clone(),
                    config_path,
                });
                if let Ok(addr) = l.local_addr() {
                    tracing::info!(%addr, "admin API listening");
                }
                let clients = crate::listener::Clients::new(
                    self.config.server.client_limits(),
                    self.metrics.connections_closed(),
                );
                Some(tokio::spawn(crate::admin::serve(
                    l,
                    admin,
                    clients,
                    admin_stopped.map(|_| ()),
                )))
            }
            (Some(_), None) => {
                tracing::warn!("admin listener given without [admin] token: admin API disabled");
                None
            }
            _ => None,
        };
        let (watch_stop, watch_stopped) = tokio::sync::oneshot::channel::<()>();
        let watch = tokio::spawn(self.gate.registry.clone().watch(watch_stopped.map(|_| ())));
        let (heads_stop, heads_stopped) = tokio::sync::watch::channel(false);
        let keys = self.gate.access.keys_required().then(|| {
            let mut stopped = heads_stopped.clone();
            tokio::spawn(self.gate.access.clone().watch(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        let heads: Vec<_> = self
            .chains
            .iter()
            .filter_map(|c| c.accounts.as_ref())
            .map(|a| {
                let mut stopped = heads_stopped.clone();
                tokio::spawn(a.reader.clone().watch_head(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }))
            })
            .collect();
        server.serve(listener, shutdown).await;
        let _ = watch_stop.send(());
        let _ = watch.await;
        let _ = heads_stop.send(true);
        for h in heads.into_iter().chain(keys) {
            let _ = h.await;
        }
        let _ = admin_stop.send(());
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        let _ = metrics_stop.send(());
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        tracing::info!("opgate stopped");
        Ok(())
    }
}

async fn build_store(c: &StoreConfig, tls: &crate::config::TlsConfig) -> Result<Store, AppError> {
    Ok(match &c.backend {
        StoreBackend::Memory => Store::Memory(MemoryStore::bounded(c.dedupe_ttl, c.max_entries)),
        StoreBackend::Redis { url } => {
            let target = Target::parse(url).map_err(|e| AppError::Store(format!("store.url: {e}")))?;
            let ca_pem = match &tls.ca_file {
                Some(path) if target.tls => Some(
                    std::fs::read(path).map_err(|e| AppError::Store(format!("tls.ca_file {}: {e}", path.display())))?,
                ),
                _ => None,
            };
            let options = RedisOptions {
                prefix: c.prefix.clone(),
                timeout: c.timeout,
                dedupe_ttl: c.dedupe_ttl,
                durability: c.durability,
                ca_pem,
            };
            Store::Redis(
                RedisStore::connect_with(&target, options)
                    .await
                    .map_err(|e| AppError::Store(e.to_string()))?,
            )
        }
    })
}

async fn ask_chain_id(relay: &Relay) -> Option<u64> {
    let params = RawValue::from_string("[]".into()).ok()?;
    let answer = tokio::time::timeout(CHAIN_ID_PROBE, relay.forward("eth_chainId", Some(&params))).await;
    let parsed = match answer {
        Ok(Ok(UpstreamAnswer::Result(raw))) => serde_json::from_str::<String>(raw.get())
            .ok()
            .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok()),
        _ => None,
    };
    match parsed {
        Some(id) => tracing::info!(chain_id = id, "chain id learned from the upstream"),
        None => tracing::warn!("the upstream did not tell its chain id; serving at / only"),
    }
    parsed
}
