//! Configuration in stages: TOML text → [`raw`] serde types (unknown keys rejected) → `${ENV}`
//! expansion → command-line overrides → defaults → a validated [`Config`].
//!
//! Every error names the key it is about (`chains[0].upstreams[1].url`), so an operator can fix a
//! file without reading code. Nothing in this module panics on input.

pub mod cors;
mod env;
pub mod policy;
mod raw;
pub mod tenants;
pub mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::Address;
use raw::{RawAccounts, RawConfig, RawEndpoint, RawSimulation, RawTls, RawUpstream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use url::Url;

pub use cors::{CorsConfig, OriginRule};
pub use env::expand as expand_env;
pub use policy::{
    AdminConfig, Budget, CallRule, Condition, Constraint, CounterScope, Delegate, OnError, OperatorPolicy,
    PolicyLimits, PolicyMatch, Relaxations, RuleCallType, SessionConfig, StoreBackend, StoreConfig, Token,
    TransferRule, Windows,
};
pub use tenants::{key_hash, Cidr, IpLimit, RequestRate, TenantConfig};

/// Methods relayed by default. `debug_*` is deliberately absent: bundlers expose state-changing
/// debug calls (`debug_bundler_clearState`, `debug_bundler_sendBundleNow`) that no public client
/// should reach.
pub const DEFAULT_ALLOWED_METHODS: &[&str] = &[
    "eth_sendUserOperation",
    "eth_estimateUserOperationGas",
    "eth_getUserOperationByHash",
    "eth_getUserOperationReceipt",
    "eth_supportedEntryPoints",
    "eth_chainId",
    "pimlico_*",
    "zd_*",
    "rundler_*",
    "boost_*",
    "pm_*",
];

/// A configuration problem, naming the file or key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {message}")]
    Read {
        /// The path given.
        path: String,
        /// The operating system's reason.
        message: String,
    },
    /// The file is not valid TOML or does not match the schema (unknown key, wrong type).
    #[error("config file {path}: {message}")]
    Parse {
        /// The path given.
        path: String,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A value is present but not acceptable.
    #[error("invalid `{key}`: {message}")]
    Invalid {
        /// The dotted key path, e.g. `chains[0].upstreams[1].url`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable, for terminals.
    #[default]
    Pretty,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("`{other}` is not a log format (use \"pretty\" or \"json\")")),
        }
    }
}

/// Listener and limit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address of the JSON-RPC listener.
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics listener.
    pub metrics_listen: SocketAddr,
    /// Largest accepted request body.
    pub max_request_body_bytes: u32,
    /// Largest response body, for our answers and for what we accept from an upstream.
    pub max_response_body_bytes: u32,
    /// Largest accepted JSON-RPC batch.
    pub max_batch: u32,
    /// Most concurrent client connections.
    pub max_connections: u32,
    /// Most concurrent client connections from one client address.
    pub max_connections_per_address: u32,
    /// Time to receive a request head, from the accept or from a kept-alive request's first byte.
    pub head_timeout: Duration,
    /// Keep-alive idle time between requests.
    pub idle_timeout: Duration,
    /// Time to receive a request's body once its head has arrived.
    pub body_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// `[server.cors]`: browser origins allowed to call the JSON-RPC listener; `None`: off.
    pub cors: Option<CorsConfig>,
    /// `[server.requests_per_ip]`: a request rate per client IP; `None`: off.
    pub requests_per_ip: Option<IpLimit>,
}

impl ServerConfig {
    /// The client-side limits every listener applies.
    pub fn client_limits(&self) -> crate::listener::ClientLimits {
        crate::listener::ClientLimits {
            head_timeout: self.head_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections as usize,
            per_address: self.max_connections_per_address as usize,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4337)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            max_request_body_bytes: 1 << 20,
            max_response_body_bytes: 10 << 20,
            max_batch: 100,
            max_connections: 1024,
            max_connections_per_address: 64,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            cors: None,
            requests_per_ip: None,
        }
    }
}

/// Which JSON-RPC methods may pass through to the upstream bundler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRules {
    allow: Vec<MethodPattern>,
    deny: Vec<MethodPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MethodPattern {
    Exact(String),
    Prefix(String),
}

impl MethodPattern {
    fn parse(s: &str) -> Result<Self, String> {
        let valid = |name: &str| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if let Some(prefix) = s.strip_suffix('*') {
            if valid(prefix) {
                return Ok(Self::Prefix(prefix.to_string()));
            }
        } else if valid(s) {
            return Ok(Self::Exact(s.to_string()));
        }
        Err(format!("`{s}` is not a method name or a `prefix_*` pattern"))
    }

    fn matches(&self, method: &str) -> bool {
        match self {
            Self::Exact(name) => name == method,
            Self::Prefix(prefix) => method.starts_with(prefix.as_str()),
        }
    }
}

impl MethodRules {
    /// Builds rules from patterns (`eth_chainId`, `pimlico_*`). Deny wins over allow.
    pub fn new<S: AsRef<str>>(allow: &[S], deny: &[S]) -> Result<Self, String> {
        let parse = |v: &[S]| {
            v.iter()
                .map(|s| MethodPattern::parse(s.as_ref()))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            allow: parse(allow)?,
            deny: parse(deny)?,
        })
    }

    /// Whether `method` may be relayed.
    pub fn allows(&self, method: &str) -> bool {
        self.allow.iter().any(|p| p.matches(method)) && !self.deny.iter().any(|p| p.matches(method))
    }
}

impl Default for MethodRules {
    fn default() -> Self {
        Self::new::<&str>(DEFAULT_ALLOWED_METHODS, &[]).expect("default method patterns are valid")
    }
}

/// One upstream bundler endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Name used in logs and metrics (never the URL, which may carry an API key).
    pub name: String,
    /// Endpoint URL (http or https), secrets already expanded.
    pub url: Url,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Extra headers sent with every request (e.g. an API key header).
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL and headers may hold credentials: show only what identifies the upstream.
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("host", &self.url.host_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One chain: its id and its upstream bundlers in failover order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// EIP-155 chain id; `None` only when started from the command line without `--chain-id`, in
    /// which case it is asked of the upstream at start-up.
    pub id: Option<u64>,
    /// Upstream bundlers, tried in this order.
    pub upstreams: Vec<UpstreamConfig>,
    /// Simulation against the chain's node; `None` (no `node`) turns simulation off.
    pub simulation: Option<SimulationConfig>,
}

/// `node` and `[chains.simulation]`: how ops on one chain are simulated before they are relayed.
#[derive(Clone, PartialEq, Eq)]
pub struct SimulationConfig {
    /// The chain's JSON-RPC node (state is read from it): http or https, secrets already
    /// expanded. `user:password@` in it is sent as HTTP basic auth.
    pub node: Url,
    /// Extra headers sent with every request to the node (e.g. an API key header).
    pub node_headers: http::HeaderMap,
    /// What to do when a simulation times out or the node cannot be reached.
    pub on_sim_error: OnError,
    /// Deadline of one simulation, node reads included.
    pub timeout: Duration,
    /// The `handleOps` sender (and beneficiary) the simulation acts as.
    pub bundler: Address,
    /// Refuse ops whose execution (the account call) reverts.
    pub reject_reverting: bool,
    /// Simulations running at once; more wait their turn within their deadline.
    pub max_concurrent: u32,
    /// `[chains.simulation] enabled`: simulate ops (default); `false` keeps the node for account
    /// reads only.
    pub simulate: bool,
    /// `[chains.accounts]`: account state read from the node.
    pub accounts: AccountsConfig,
}

/// `[chains.accounts]`: what opgate reads of an account from the chain's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountsConfig {
    /// Read each Kernel account's state (root owner, nonces, the op's validation) from the node
    /// (default); `false` decides from what opgate learned alone.
    pub read_from_node: bool,
    /// How often the head is polled; account reads are cached per head.
    pub head_poll: Duration,
    /// How long what opgate learned from a relayed op waits for the chain to show it before it is
    /// dropped.
    pub pending_timeout: Duration,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            read_from_node: true,
            head_poll: DEFAULT_HEAD_POLL,
            pending_timeout: DEFAULT_PENDING_TIMEOUT,
        }
    }
}

const DEFAULT_HEAD_POLL: Duration = Duration::from_secs(1);
const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(600);

impl std::fmt::Debug for SimulationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The node URL and headers may carry an API key: show only the host and header names.
        f.debug_struct("SimulationConfig")
            .field("node_host", &self.node.host_str())
            .field("node_headers", &self.node_headers.keys().collect::<Vec<_>>())
            .field("on_sim_error", &self.on_sim_error)
            .field("timeout", &self.timeout)
            .field("bundler", &self.bundler)
            .field("reject_reverting", &self.reject_reverting)
            .field("max_concurrent", &self.max_concurrent)
            .field("simulate", &self.simulate)
            .field("accounts", &self.accounts)
            .finish()
    }
}

/// The default `handleOps` sender of simulations: anvil's account #9 of the `test … junk`
/// mnemonic — any EOA does, its balance is topped up inside the simulation.
pub const DEFAULT_SIM_BUNDLER: Address = alloy_primitives::address!("a0Ee7A142d267C1f36714E4a8F75612F20a79720");
const DEFAULT_SIM_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_SIM_MAX_CONCURRENT: u32 = 64;

/// `[tls]`: certificate authorities trusted for https upstreams and nodes besides the public web
/// roots.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The PEM file given (`[tls] ca_file` or `--tls-ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Its certificates, each checked to be usable as a trust anchor.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_file", &self.ca_file)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listeners and limits.
    pub server: ServerConfig,
    /// Log format.
    pub log_format: LogFormat,
    /// Pass-through allow/deny rules.
    pub methods: MethodRules,
    /// Timeout for establishing an upstream or node connection.
    pub connect_timeout: Duration,
    /// Extra trusted certificate authorities for outbound https.
    pub tls: TlsConfig,
    /// Chains served; never empty.
    pub chains: Vec<ChainConfig>,
    /// Usage counters and the permission registry.
    pub store: StoreConfig,
    /// Session-key handling.
    pub session: SessionConfig,
    /// Admin listener.
    pub admin: AdminConfig,
    /// Operator policies, in file order.
    pub policies: Vec<OperatorPolicy>,
    /// Delegatecall targets whose behaviour the operator declared.
    pub delegates: Vec<Delegate>,
    /// `[[tenants]]`: with any, every JSON-RPC request needs one of their API keys.
    pub tenants: Vec<TenantConfig>,
}

/// Command-line values that take precedence over the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--upstream`, repeatable, in failover order.
    pub upstreams: Vec<String>,
    /// `--chain-id`.
    pub chain_id: Option<u64>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--node`: the node of the chain given by `--chain-id` (or of the only chain).
    pub node: Option<String>,
    /// `--tls-ca-file`: replaces `[tls] ca_file`.
    pub tls_ca_file: Option<String>,
}

const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `upstream_defaults.connect_timeout`, which bounds node connections too.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Config {
    /// Reads, parses and validates a file, then applies `overrides`.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text, overrides).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text, then applies `overrides`.
    pub fn from_toml(text: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<inline>".into(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Self::from_raw(raw, overrides)
    }

    /// The embedded default: no file, everything from the command line.
    pub fn from_overrides(overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::from_raw(RawConfig::default(), overrides)
    }

    fn from_raw(raw: RawConfig, ov: &Overrides) -> Result<Self, ConfigError> {
        let defaults = ServerConfig::default();
        let s = &raw.server;
        let addr = |key: &str, v: &Option<String>, d: SocketAddr| -> Result<SocketAddr, ConfigError> {
            match v {
                None => Ok(d),
                Some(v) => env::expand(v)
                    .map_err(|m| invalid(key, m))?
                    .parse()
                    .map_err(|_| invalid(key, format!("`{v}` is not a socket address like 127.0.0.1:4337"))),
            }
        };
        let size = |key: &str, v: &Option<String>, d: u32| -> Result<u32, ConfigError> {
            match v {
                None => Ok(d),
                Some(v) => {
                    let n = units::parse_byte_size(v).map_err(|m| invalid(key, m))?;
                    if n == 0 || n > u64::from(u32::MAX) {
                        return Err(invalid(key, "must be between 1 byte and 4 GiB"));
                    }
                    Ok(n as u32)
                }
            }
        };
        let positive = |key: &str, v: Option<u32>, d: u32| -> Result<u32, ConfigError> {
            match v {
                Some(0) => Err(invalid(key, "must be at least 1")),
                Some(n) => Ok(n),
                None => Ok(d),
            }
        };

        let mut server = ServerConfig {
            listen: match ov.listen {
                Some(a) => a,
                None => addr("server.listen", &s.listen, defaults.listen)?,
            },
            metrics_listen: match ov.metrics_listen {
                Some(a) => a,
                None => addr("server.metrics_listen", &s.metrics_listen, defaults.metrics_listen)?,
            },
            max_request_body_bytes: size(
                "server.max_request_body",
                &s.max_request_body,
                defaults.max_request_body_bytes,
            )?,
            max_response_body_bytes: size(
                "server.max_response_body",
                &s.max_response_body,
                defaults.max_response_body_bytes,
            )?,
            max_batch: positive("server.max_batch", s.max_batch, defaults.max_batch)?,
            max_connections: positive("server.max_connections", s.max_connections, defaults.max_connections)?,
            max_connections_per_address: positive(
                "server.max_connections_per_address",
                s.max_connections_per_address,
                defaults.max_connections_per_address,
            )?,
            head_timeout: duration("server.head_timeout", &s.head_timeout, defaults.head_timeout)?,
            idle_timeout: duration("server.idle_timeout", &s.idle_timeout, defaults.idle_timeout)?,
            body_timeout: duration("server.body_timeout", &s.body_timeout, defaults.body_timeout)?,
            shutdown_grace: duration("server.shutdown_grace", &s.shutdown_grace, defaults.shutdown_grace)?,
            cors: cors::cors(s.cors.as_ref())?,
            requests_per_ip: tenants::ip_limit(s.requests_per_ip.as_ref())?,
        };
        if server.max_connections_per_address > server.max_connections {
            if s.max_connections_per_address.is_some() {
                return Err(invalid(
                    "server.max_connections_per_address",
                    format!("must not exceed server.max_connections ({})", server.max_connections),
                ));
            }
            server.max_connections_per_address = server.max_connections;
        }

        let log_format = match (ov.log_format, &raw.log.format) {
            (Some(f), _) => f,
            (None, Some(f)) => f.parse().map_err(|m| invalid("log.format", m))?,
            (None, None) => LogFormat::default(),
        };

        let methods = {
            let allow: Vec<String> = match &raw.methods.allow {
                Some(list) => list.clone(),
                None => DEFAULT_ALLOWED_METHODS.iter().map(|s| s.to_string()).collect(),
            };
            MethodRules::new(&allow, &raw.methods.deny).map_err(|m| invalid("methods", m))?
        };

        let upstream_timeout = duration(
            "upstream_defaults.timeout",
            &raw.upstream_defaults.timeout,
            DEFAULT_UPSTREAM_TIMEOUT,
        )?;
        let connect_timeout = duration(
            "upstream_defaults.connect_timeout",
            &raw.upstream_defaults.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?;

        let mut chains = Vec::with_capacity(raw.chains.len());
        for (i, chain) in raw.chains.iter().enumerate() {
            let key = format!("chains[{i}]");
            if chain.id == 0 {
                return Err(invalid(format!("{key}.id"), "chain id 0 is not a chain"));
            }
            if chains.iter().any(|c: &ChainConfig| c.id == Some(chain.id)) {
                return Err(invalid(
                    format!("{key}.id"),
                    format!("chain {} is configured twice", chain.id),
                ));
            }
            let mut upstreams = Vec::with_capacity(chain.upstreams.len());
            for (j, up) in chain.upstreams.iter().enumerate() {
                let key = format!("{key}.upstreams[{j}]");
                upstreams.push(upstream(&key, j, up, upstream_timeout)?);
            }
            let simulation = simulation(&key, chain.node.as_ref(), &chain.simulation, &chain.accounts)?;
            chains.push(ChainConfig {
                id: Some(chain.id),
                upstreams,
                simulation,
            });
        }

        if !ov.upstreams.is_empty() {
            let mut upstreams = Vec::with_capacity(ov.upstreams.len());
            for (j, url) in ov.upstreams.iter().enumerate() {
                let key = format!("--upstream[{j}]");
                upstreams.push(upstream(&key, j, &RawUpstream::Url(url.clone()), upstream_timeout)?);
            }
            let target = match ov.chain_id {
                Some(id) => chains.iter().position(|c| c.id == Some(id)),
                None if chains.len() <= 1 => (!chains.is_empty()).then_some(0),
                None => {
                    return Err(invalid(
                        "--upstream",
                        "the config file has several chains: say which one with --chain-id",
                    ))
                }
            };
            match target {
                Some(i) => chains[i].upstreams = upstreams,
                None => chains.push(ChainConfig {
                    id: ov.chain_id,
                    upstreams,
                    simulation: None,
                }),
            }
        } else if let Some(id) = ov.chain_id {
            if !chains.iter().any(|c| c.id == Some(id)) {
                return Err(invalid(
                    "--chain-id",
                    format!("chain {id} has no upstream: add --upstream URL"),
                ));
            }
        }

        if chains.is_empty() {
            return Err(invalid(
                "chains",
                "no chain configured: pass --upstream URL or add a [[chains]] table",
            ));
        }
        for (i, chain) in chains.iter().enumerate() {
            if chain.upstreams.is_empty() {
                return Err(invalid(
                    format!("chains[{i}].upstreams"),
                    "at least one upstream is needed",
                ));
            }
        }

        if let Some(node) = &ov.node {
            let target = match ov.chain_id {
                Some(id) => chains.iter().position(|c| c.id == Some(id)),
                None if chains.len() == 1 => Some(0),
                None => None,
            };
            let Some(i) = target else {
                return Err(invalid(
                    "--node",
                    "say which chain the node serves with --chain-id (a chain that is served)",
                ));
            };
            let defaults = (RawSimulation::default(), RawAccounts::default());
            let (key, raw_sim, raw_accounts) =
                match ov.chain_id.and_then(|id| raw.chains.iter().position(|c| c.id == id)) {
                    Some(j) => (
                        format!("chains[{j}]"),
                        &raw.chains[j].simulation,
                        &raw.chains[j].accounts,
                    ),
                    None => ("--node".to_string(), &defaults.0, &defaults.1),
                };
            chains[i].simulation = simulation(&key, Some(&RawEndpoint::Url(node.clone())), raw_sim, raw_accounts)?;
        }

        let tls = tls(&raw.tls, ov.tls_ca_file.as_deref())?;
        let store = policy::store(&raw.store)?;
        let session = policy::session(&raw.session)?;
        let admin = policy::admin(&raw.admin)?;
        let policies = policy::policies(&raw.policies, store.on_error)?;
        let delegates = policy::delegates(&raw.delegates)?;
        for (i, d) in delegates.iter().enumerate() {
            for (j, id) in d.chains.iter().flatten().enumerate() {
                if !chains.iter().any(|c| c.id.is_none() || c.id == Some(*id)) {
                    return Err(invalid(
                        format!("delegates[{i}].chains[{j}]"),
                        format!("chain {id} is not served"),
                    ));
                }
            }
        }
        for (i, p) in policies.iter().enumerate() {
            if let Some(ids) = &p.matcher.chains {
                for (j, id) in ids.iter().enumerate() {
                    if !chains.iter().any(|c| c.id.is_none() || c.id == Some(*id)) {
                        return Err(invalid(
                            format!("policies[{i}].match.chains[{j}]"),
                            format!("chain {id} is not served"),
                        ));
                    }
                }
            }
        }

        let ids: Vec<Option<u64>> = chains.iter().map(|c| c.id).collect();
        let tenants = tenants::tenants(&raw.tenants, &ids)?;
        for (i, p) in policies.iter().enumerate() {
            for (j, t) in p.matcher.tenants.iter().flatten().enumerate() {
                if !tenants.iter().any(|x| &x.name == t) {
                    return Err(invalid(
                        format!("policies[{i}].match.tenants[{j}]"),
                        format!("no tenant `{t}` is configured"),
                    ));
                }
            }
        }
        Ok(Self {
            server,
            log_format,
            methods,
            connect_timeout,
            tls,
            chains,
            store,
            session,
            admin,
            delegates,
            policies,
            tenants,
        })
    }
}

/// A duration value at `key`, or `default` when absent. Zero is refused.
fn duration(key: &str, value: &Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => {
            let d = units::parse_duration(v).map_err(|m| invalid(key, m))?;
            if d.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
            Ok(d)
        }
    }
}

/// `[tls]` (or `--tls-ca-file`): the PEM file's certificates, read and checked now so that a bad
/// file stops start-up (and `check-config`) instead of failing every https call.
fn tls(raw: &RawTls, flag: Option<&str>) -> Result<TlsConfig, ConfigError> {
    let (key, path) = match (flag, &raw.ca_file) {
        (Some(path), _) => ("--tls-ca-file", path.to_string()),
        (None, Some(path)) => ("tls.ca_file", env::expand(path).map_err(|m| invalid("tls.ca_file", m))?),
        (None, None) => return Ok(TlsConfig::default()),
    };
    let path = PathBuf::from(path);
    let pem = std::fs::read(&path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("{}: not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            format!("{} holds no `BEGIN CERTIFICATE` block", path.display()),
        ));
    }
    crate::outbound::tls_config(&certs).map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
    Ok(TlsConfig {
        ca_file: Some(path),
        extra_roots: certs,
    })
}

/// `node` and `[chains.simulation]` of one chain; `None` without a node.
fn simulation(
    key: &str,
    node: Option<&RawEndpoint>,
    raw: &RawSimulation,
    raw_accounts: &RawAccounts,
) -> Result<Option<SimulationConfig>, ConfigError> {
    let (node, headers, node_key) = match node {
        None => return Ok(None),
        Some(RawEndpoint::Url(url)) => (url, None, format!("{key}.node")),
        Some(RawEndpoint::Full(t)) => (&t.url, Some(&t.headers), format!("{key}.node.url")),
    };
    let expanded = env::expand(node).map_err(|m| invalid(&node_key, m))?;
    let node = Url::parse(&expanded).map_err(|e| invalid(&node_key, format!("not a URL: {e}")))?;
    if !matches!(node.scheme(), "http" | "https") || node.host_str().is_none() {
        return Err(invalid(&node_key, "must be an http:// or https:// URL with a host"));
    }
    let mut bare = node.clone();
    let _ = (bare.set_username(""), bare.set_password(None));
    if bare.as_str().parse::<http::Uri>().is_err() {
        return Err(invalid(&node_key, "not a URL an HTTP request can be sent to"));
    }
    let mut node_headers = http::HeaderMap::new();
    for (h, v) in headers.into_iter().flatten() {
        let hkey = format!("{key}.node.headers.{h}");
        let name = http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| invalid(&hkey, "not a valid header name"))?;
        let v = env::expand(v).map_err(|m| invalid(&hkey, m))?;
        let mut value = http::HeaderValue::from_str(&v).map_err(|_| invalid(&hkey, "not a valid header value"))?;
        value.set_sensitive(true);
        node_headers.insert(name, value);
    }
    if node_headers.contains_key(http::header::AUTHORIZATION)
        && (!node.username().is_empty() || node.password().is_some())
    {
        return Err(invalid(
            &node_key,
            "credentials both in the URL (user:password@) and in an Authorization header: keep one",
        ));
    }
    let akey = format!("{key}.accounts");
    let accounts = AccountsConfig {
        read_from_node: raw_accounts.read_from_node.unwrap_or(true),
        head_poll: duration(&format!("{akey}.head_poll"), &raw_accounts.head_poll, DEFAULT_HEAD_POLL)?,
        pending_timeout: duration(
            &format!("{akey}.pending_timeout"),
            &raw_accounts.pending_timeout,
            DEFAULT_PENDING_TIMEOUT,
        )?,
    };
    let key = format!("{key}.simulation");
    let on_sim_error = match &raw.on_sim_error {
        Some(v) => OnError::parse(&format!("{key}.on_sim_error"), v)?,
        None => OnError::Reject,
    };
    let bundler = match &raw.bundler {
        Some(v) => v
            .parse()
            .map_err(|_| invalid(format!("{key}.bundler"), format!("`{v}` is not an address")))?,
        None => DEFAULT_SIM_BUNDLER,
    };
    let max_concurrent = match raw.max_concurrent {
        Some(0) => return Err(invalid(format!("{key}.max_concurrent"), "must be at least 1")),
        Some(n) => n,
        None => DEFAULT_SIM_MAX_CONCURRENT,
    };
    Ok(Some(SimulationConfig {
        node,
        node_headers,
        on_sim_error,
        timeout: duration(&format!("{key}.timeout"), &raw.timeout, DEFAULT_SIM_TIMEOUT)?,
        bundler,
        reject_reverting: raw.reject_reverting.unwrap_or(false),
        max_concurrent,
        simulate: raw.enabled.unwrap_or(true),
        accounts,
    }))
}

fn upstream(
    key: &str,
    index: usize,
    raw: &RawUpstream,
    default_timeout: Duration,
) -> Result<UpstreamConfig, ConfigError> {
    let (url, name, timeout, headers) = match raw {
        RawUpstream::Url(url) => (url, None, None, BTreeMap::new()),
        RawUpstream::Full(t) => (&t.url, t.name.clone(), t.timeout.clone(), t.headers.clone()),
    };
    let url_key = format!("{key}.url");
    let expanded = env::expand(url).map_err(|m| invalid(&url_key, m))?;
    let url = Url::parse(&expanded).map_err(|e| invalid(&url_key, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(&url_key, "must be an http:// or https:// URL with a host"));
    }
    let name = name.unwrap_or_else(|| format!("upstream-{index}"));
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(invalid(format!("{key}.name"), "use 1-64 characters from [A-Za-z0-9_-]"));
    }
    let timeout = duration(&format!("{key}.timeout"), &timeout, default_timeout)?;
    let mut expanded_headers = BTreeMap::new();
    for (h, v) in headers {
        let hkey = format!("{key}.headers.{h}");
        http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| invalid(&hkey, "not a valid header name"))?;
        let v = env::expand(&v).map_err(|m| invalid(&hkey, m))?;
        http::HeaderValue::from_str(&v).map_err(|_| invalid(&hkey, "not a valid header value"))?;
        expanded_headers.insert(h, v);
    }
    Ok(UpstreamConfig {
        name,
        url,
        timeout,
        headers: expanded_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov_upstream(url: &str) -> Overrides {
        Overrides {
            upstreams: vec![url.into()],
            ..Default::default()
        }
    }

    #[test]
    fn embedded_default_needs_only_an_upstream() {
        let c = Config::from_overrides(&ov_upstream("http://127.0.0.1:14337")).unwrap();
        assert_eq!(c.chains.len(), 1);
        assert_eq!(c.chains[0].id, None);
        assert_eq!(c.server, ServerConfig::default());
        assert!(c.methods.allows("pimlico_getUserOperationGasPrice"));
        assert!(!c.methods.allows("debug_bundler_clearState"));
        let err = Config::from_overrides(&Overrides::default()).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { ref key, .. } if key == "chains"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err =
            Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", &Overrides::default()).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse { message, .. } if message.contains("lisen")),
            "{err}"
        );
        let err = Config::from_toml(
            "[[chains]]\nid = 1\nupstreams = [{ url = \"http://a\", tmeout = \"1s\" }]\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("tmeout"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            (
                "[[chains]]\nid = 1\nupstreams = [\"ftp://x\"]\n",
                "chains[0].upstreams[0].url",
            ),
            ("[[chains]]\nid = 1\nupstreams = []\n", "chains[0].upstreams"),
            (
                "[server]\nmax_batch = 0\n[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n",
                "server.max_batch",
            ),
            (
                "[server]\nshutdown_grace = \"10\"\n[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n",
                "server.shutdown_grace",
            ),
            (
                "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n[[chains]]\nid = 1\nupstreams = [\"http://b\"]\n",
                "chains[1].id",
            ),
            (
                "[[chains]]\nid = 1\nupstreams = [{ url = \"http://a/${OPGATE_TEST_UNSET_VAR}\" }]\n",
                "chains[0].upstreams[0].url",
            ),
            (
                "[methods]\nallow = [\"eth chainId\"]\n[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n",
                "methods",
            ),
        ];
        for (text, key) in cases {
            match Config::from_toml(text, &Overrides::default()) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "for {text}"),
                other => panic!("expected an error at {key}, got {other:?}"),
            }
        }
    }

    #[test]
    fn flags_override_the_file() {
        let text = "[server]\nlisten = \"127.0.0.1:1000\"\n[[chains]]\nid = 10\nupstreams = [\"http://a\"]\n";
        let ov = Overrides {
            listen: Some("127.0.0.1:2000".parse().unwrap()),
            upstreams: vec!["http://b".into()],
            ..Default::default()
        };
        let c = Config::from_toml(text, &ov).unwrap();
        assert_eq!(c.server.listen.port(), 2000);
        assert_eq!(c.chains[0].id, Some(10));
        assert_eq!(c.chains[0].upstreams[0].url.as_str(), "http://b/");
        let two = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n[[chains]]\nid = 2\nupstreams = [\"http://b\"]\n";
        assert!(Config::from_toml(two, &ov_upstream("http://c")).is_err());
        let ov = Overrides {
            chain_id: Some(3),
            upstreams: vec!["http://c".into()],
            ..Default::default()
        };
        assert_eq!(Config::from_toml(two, &ov).unwrap().chains.len(), 3);
    }

    #[test]
    fn account_reads_are_on_with_a_node_and_configurable() {
        let base = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\nnode = \"http://n:8545\"\n";
        let c = Config::from_toml(base, &Overrides::default()).unwrap();
        let s = c.chains[0].simulation.as_ref().unwrap();
        assert!(s.simulate);
        assert_eq!(s.accounts, AccountsConfig::default());
        assert!(s.accounts.read_from_node);

        let text = format!(
            "{base}[chains.simulation]\nenabled = false\n[chains.accounts]\nread_from_node = false\n\
             head_poll = \"250ms\"\npending_timeout = \"2m\"\n"
        );
        let c = Config::from_toml(&text, &Overrides::default()).unwrap();
        let s = c.chains[0].simulation.as_ref().unwrap();
        assert!(!s.simulate);
        assert_eq!(
            s.accounts,
            AccountsConfig {
                read_from_node: false,
                head_poll: Duration::from_millis(250),
                pending_timeout: Duration::from_secs(120),
            }
        );

        let bad = format!("{base}[chains.accounts]\nhead_poll = \"0s\"\n");
        let e = Config::from_toml(&bad, &Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("chains[0].accounts.head_poll"), "{e}");
        let bad = format!("{base}[chains.accounts]\nheadpoll = \"1s\"\n");
        assert!(Config::from_toml(&bad, &Overrides::default()).is_err());
    }

    #[test]
    fn simulation_is_off_without_a_node() {
        let text = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n";
        let c = Config::from_toml(text, &Overrides::default()).unwrap();
        assert_eq!(c.chains[0].simulation, None);

        let text = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\nnode = \"http://n:8545\"\n\
                    [chains.simulation]\non_sim_error = \"allow\"\ntimeout = \"500ms\"\nreject_reverting = true\n";
        let c = Config::from_toml(text, &Overrides::default()).unwrap();
        let s = c.chains[0].simulation.as_ref().unwrap();
        assert_eq!(s.node.as_str(), "http://n:8545/");
        assert_eq!((s.on_sim_error, s.reject_reverting), (OnError::Allow, true));
        assert_eq!(
            (s.timeout, s.bundler, s.max_concurrent),
            (Duration::from_millis(500), DEFAULT_SIM_BUNDLER, 64)
        );

        let ov = Overrides {
            upstreams: vec!["http://b".into()],
            chain_id: Some(5),
            node: Some("http://node".into()),
            ..Default::default()
        };
        let c = Config::from_overrides(&ov).unwrap();
        assert_eq!(c.chains[0].simulation.as_ref().unwrap().node.as_str(), "http://node/");

        let bad = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\nnode = \"ftp://n\"\n";
        match Config::from_toml(bad, &Overrides::default()) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "chains[0].node"),
            other => panic!("{other:?}"),
        }
        let bad = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\nnode = \"http://n\"\n[chains.simulation]\nmax_concurrent = 0\n";
        assert!(Config::from_toml(bad, &Overrides::default()).is_err());
    }

    #[test]
    fn deny_wins_over_allow() {
        let rules = MethodRules::new(&["eth_*", "debug_*"], &["debug_bundler_clearState"]).unwrap();
        assert!(rules.allows("debug_bundler_dumpMempool"));
        assert!(!rules.allows("debug_bundler_clearState"));
        assert!(!rules.allows("pimlico_x"));
    }

    #[test]
    fn a_node_takes_headers_and_hides_them() {
        let text = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n\
                    [chains.node]\nurl = \"https://n.example/v2/SECRET\"\nheaders = { x-api-key = \"SECRET\" }\n";
        let c = Config::from_toml(text, &Overrides::default()).unwrap();
        let s = c.chains[0].simulation.as_ref().unwrap();
        assert_eq!(s.node.as_str(), "https://n.example/v2/SECRET");
        assert_eq!(s.node_headers["x-api-key"], "SECRET");
        assert!(s.node_headers["x-api-key"].is_sensitive());
        assert!(!format!("{c:?}").contains("SECRET"));

        let bad = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n\
                   node = { url = \"https://u:p@n\", headers = { authorization = \"Bearer t\" } }\n";
        match Config::from_toml(bad, &Overrides::default()) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "chains[0].node.url"),
            other => panic!("{other:?}"),
        }
        let bad = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\nnode = { url = \"https://n\", headers = { \"a b\" = \"x\" } }\n";
        match Config::from_toml(bad, &Overrides::default()) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "chains[0].node.headers.a b"),
            other => panic!("{other:?}"),
        }
        let bad = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\nnode = { url = \"https://n\", timeout = \"1s\" }\n";
        assert!(Config::from_toml(bad, &Overrides::default()).is_err());
    }

    #[test]
    fn the_ca_file_flag_replaces_the_file_key() {
        let text = "[tls]\nca_file = \"/nonexistent/a.pem\"\n[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n";
        match Config::from_toml(text, &Overrides::default()) {
            Err(ConfigError::Invalid { key, message }) => {
                assert_eq!(key, "tls.ca_file");
                assert!(message.contains("cannot read /nonexistent/a.pem"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let ov = Overrides {
            tls_ca_file: Some("/nonexistent/b.pem".into()),
            ..Default::default()
        };
        match Config::from_toml(text, &ov) {
            Err(ConfigError::Invalid { key, message }) => {
                assert_eq!(key, "--tls-ca-file");
                assert!(message.contains("b.pem"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let plain = "[[chains]]\nid = 1\nupstreams = [\"http://a\"]\n";
        assert_eq!(
            Config::from_toml(plain, &Overrides::default()).unwrap().tls,
            TlsConfig::default()
        );
    }

    #[test]
    fn upstream_debug_hides_credentials() {
        let text = "[[chains]]\nid = 1\nupstreams = [{ url = \"https://h/rpc?apikey=SECRET\", headers = { x-api-key = \"SECRET\" } }]\n";
        let c = Config::from_toml(text, &Overrides::default()).unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
    }
}
