//! Where the Redis store is and how to reach it: one server, a Redis Cluster, or a primary found
//! through Sentinel, in plaintext or over TLS.
//!
//! | URL | what |
//! |---|---|
//! | `redis://[user:pass@]host:port[/db]`, `redis+unix:///path` | one server |
//! | `redis+cluster://[user:pass@]host:port,host:port,…` | a cluster, from seed nodes (MOVED/ASK followed, topology refreshed) |
//! | `redis+sentinel://[user:pass@]host:port,host:port,…/master[/db]` | the primary Sentinel names `master`, asked again after a failure |
//!
//! `rediss`, `rediss+cluster` and `rediss+sentinel` are the same over TLS (to the sentinels too).
//! TLS is rustls with the ring provider: the server is verified against the public web roots, or,
//! when `[tls] ca_file` is set, against that file's certificates. Credentials (ACL user and
//! password) are those of the data nodes; percent-encode reserved characters, and use `${ENV}` in
//! the config file to keep them out of it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, RedisResult, ServerErrorKind, TlsCertificates, TlsMode, Value,
};

/// How the store's servers are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server.
    Single,
    /// A Redis Cluster.
    Cluster,
    /// A primary with replicas, found through Sentinel.
    Sentinel,
}

impl Topology {
    /// `single`, `cluster` or `sentinel`, for `/readyz`, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Cluster => "cluster",
            Topology::Sentinel => "sentinel",
        }
    }
}

/// A parsed store URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The arrangement.
    pub topology: Topology,
    /// Over TLS.
    pub tls: bool,
    /// `host:port` of every seed node or sentinel (for a single server: the URL itself, in `url`).
    pub nodes: Vec<(String, u16)>,
    /// Sentinel's name for the primary.
    pub master: Option<String>,
    /// ACL user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Database number (not on a cluster).
    pub db: i64,
    /// For a single server: the URL as given (the redis crate parses it).
    url: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("topology", &self.topology)
            .field("tls", &self.tls)
            .field("nodes", &self.nodes)
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .finish()
    }
}

impl Target {
    /// Parses a store URL (see the module docs). The error names what is wrong, never a password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "must be a redis://, rediss://, redis+cluster:// or redis+sentinel:// URL".to_string())?;
        let (topology, tls) = match scheme {
            "redis" | "redis+unix" | "unix" => (Topology::Single, false),
            "rediss" => (Topology::Single, true),
            "redis+cluster" => (Topology::Cluster, false),
            "rediss+cluster" => (Topology::Cluster, true),
            "redis+sentinel" => (Topology::Sentinel, false),
            "rediss+sentinel" => (Topology::Sentinel, true),
            other => {
                return Err(format!(
                    "scheme `{other}` is not one of redis, rediss, redis+unix, redis+cluster, rediss+cluster, \
                     redis+sentinel, rediss+sentinel"
                ))
            }
        };
        if topology == Topology::Single {
            let info = url
                .into_connection_info()
                .map_err(|e| format!("not a valid Redis URL: {}", e.detail().unwrap_or("malformed")))?;
            let r = info.redis_settings();
            return Ok(Self {
                topology,
                tls,
                nodes: Vec::new(),
                master: None,
                username: r.username().map(str::to_owned),
                password: r.password().map(str::to_owned),
                db: r.db(),
                url: url.to_owned(),
            });
        }
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| "the credentials are not valid percent-encoded UTF-8".to_string())
                };
                let user = Some(decode(user)?).filter(|u| !u.is_empty());
                let pass = pass.map(decode).transpose()?.filter(|p| !p.is_empty());
                (user, pass)
            }
        };
        let (hosts, path) = match rest.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if hosts.contains('?') || path.is_some_and(|p| p.contains('?')) {
            return Err("query parameters are not supported here".into());
        }
        let nodes = hosts
            .split(',')
            .map(|node| {
                let (host, port) = node
                    .rsplit_once(':')
                    .ok_or_else(|| format!("node `{node}` has no port (use host:port)"))?;
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("node `{node}` has an invalid port"))?;
                if host.is_empty() {
                    return Err(format!("node `{node}` has no host"));
                }
                Ok((host.trim_matches(['[', ']']).to_owned(), port))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if nodes.is_empty() || hosts.is_empty() {
            return Err("name at least one node (host:port)".into());
        }
        let mut segments = path.unwrap_or("").split('/').filter(|s| !s.is_empty());
        let (master, db) = match topology {
            Topology::Cluster => {
                if segments.next().is_some() {
                    return Err("a cluster URL takes no path (a cluster has only database 0)".into());
                }
                (None, 0)
            }
            _ => {
                let master = segments.next().ok_or_else(|| {
                    "name the primary after the sentinels: redis+sentinel://h:p,h:p/<master>".to_string()
                })?;
                let db = match segments.next() {
                    None => 0,
                    Some(db) => db.parse().map_err(|_| format!("`{db}` is not a database number"))?,
                };
                if segments.next().is_some() {
                    return Err("the path is /<master>[/<db>]".into());
                }
                (Some(master.to_owned()), db)
            }
        };
        Ok(Self {
            topology,
            tls,
            nodes,
            master,
            username,
            password,
            db,
            url: url.to_owned(),
        })
    }
}

/// How connections are made: timeouts and the trusted CA.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Bounds connecting and every answer.
    pub timeout: Duration,
    /// PEM certificates to verify TLS servers with instead of the web roots.
    pub ca_pem: Option<Vec<u8>>,
}

/// A shared handle to the store's servers, whatever their arrangement; cheap to clone.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
    Sentinel(Arc<SentinelLink>),
}

impl Conn {
    /// Prepares the connection; nothing is dialled yet (the first call connects, and a broken
    /// connection is made again by a later call).
    pub(crate) fn new(target: &Target, o: &ConnectOptions) -> Result<Self, String> {
        let certs = || TlsCertificates {
            client_tls: None,
            root_cert: o.ca_pem.clone(),
        };
        match target.topology {
            Topology::Single => {
                let client = match (&o.ca_pem, target.tls) {
                    (Some(_), true) => Client::build_with_tls(target.url.as_str(), certs()),
                    _ => Client::open(target.url.as_str()),
                }
                .map_err(|e| format!("invalid Redis URL: {e}"))?;
                // Few quick retries inside one attempt: the caller's timeout bounds every call, and
                // the next call starts a new attempt.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(o.timeout))
                    .set_response_timeout(Some(o.timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(200));
                ConnectionManager::new_lazy_with_config(client, config)
                    .map(Conn::Single)
                    .map_err(|e| format!("Redis connection setup: {e}"))
            }
            Topology::Cluster => {
                let nodes = target.nodes.iter().map(|(h, p)| {
                    if target.tls {
                        format!("rediss://{h}:{p}")
                    } else {
                        format!("redis://{h}:{p}")
                    }
                });
                let mut b = ClusterClientBuilder::new(nodes)
                    .connection_timeout(o.timeout)
                    .response_timeout(o.timeout)
                    .retries(3)
                    .min_retry_wait(20)
                    .max_retry_wait(200);
                if let Some(u) = &target.username {
                    b = b.username(u);
                }
                if let Some(p) = &target.password {
                    b = b.password(p);
                }
                if target.tls {
                    b = b.tls(TlsMode::Secure);
                    if o.ca_pem.is_some() {
                        b = b.certs(certs());
                    }
                }
                let client = b.build().map_err(|e| format!("Redis Cluster setup: {e}"))?;
                Ok(Conn::Cluster(Arc::new(Relink::new(
                    client,
                    "Redis Cluster connection lost; reconnecting from the seed nodes on the next call",
                ))))
            }
            Topology::Sentinel => {
                let addrs = target.nodes.iter().map(|(h, p)| {
                    if target.tls {
                        ConnectionAddr::TcpTls {
                            host: h.clone(),
                            port: *p,
                            insecure: false,
                            tls_params: None,
                        }
                    } else {
                        ConnectionAddr::Tcp(h.clone(), *p)
                    }
                });
                let master = target.master.clone().unwrap_or_default();
                let mut b = SentinelClientBuilder::new(addrs, &master, SentinelServerType::Master)
                    .map_err(|e| format!("Sentinel setup: {e}"))?
                    .set_client_to_redis_db(target.db);
                if let Some(u) = &target.username {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(p) = &target.password {
                    b = b.set_client_to_redis_password(p);
                }
                if target.tls {
                    b = b
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                    if o.ca_pem.is_some() {
                        b = b
                            .set_client_to_redis_certificates(certs())
                            .set_client_to_sentinel_certificates(certs());
                    }
                }
                let client = b.build().map_err(|e| format!("Sentinel setup: {e}"))?;
                Ok(Conn::Sentinel(Arc::new(SentinelLink {
                    link: Relink::new(
                        client,
                        "lost the Sentinel primary; asking the sentinels again on the next call",
                    ),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(o.timeout))
                        .set_response_timeout(Some(o.timeout)),
                })))
            }
        }
    }

    /// Sends `pipe` to the primary serving `key`'s slot (on one server: to the server), as one
    /// round trip. Used where commands must reach one node together (a script and its `WAIT`).
    pub(crate) async fn pipeline_at(&mut self, key: &str, pipe: &Pipeline) -> RedisResult<Vec<Value>> {
        let n = pipe.len();
        match self {
            Conn::Cluster(c) => {
                let mut conn = c.connection().await?;
                conn.route_pipeline(
                    pipe.clone(),
                    0,
                    n,
                    SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master)),
                )
                .await
            }
            other => other.req_packed_commands(pipe, 0, n).await,
        }
    }

    /// Asks every primary to `PING` (one server: the server).
    pub(crate) async fn ping_all(&mut self) -> RedisResult<Value> {
        match self {
            Conn::Cluster(c) => {
                use ::redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
                let mut conn = c.connection().await?;
                conn.route_command(
                    ::redis::cmd("PING"),
                    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::AllSucceeded))),
                )
                .await
            }
            other => ::redis::cmd("PING").query_async(other).await,
        }
    }
}

/// A connection made on first use by one caller at a time, and dropped by [`Relink::reset`]
/// after a failure that may be a server gone, so that the next call makes it again.
pub(crate) struct Relink<C, M> {
    /// What makes a connection (a cluster client, a Sentinel client).
    maker: tokio::sync::Mutex<M>,
    current: Mutex<Option<C>>,
    /// Logged when a connection is dropped.
    what: &'static str,
}

impl<C: Clone, M> Relink<C, M> {
    fn new(maker: M, what: &'static str) -> Self {
        Self {
            maker: tokio::sync::Mutex::new(maker),
            current: Mutex::new(None),
            what,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<C>> {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current connection, or a new one from `make`.
    async fn get<F>(&self, make: F) -> RedisResult<C>
    where
        F: AsyncFnOnce(&mut M) -> RedisResult<C>,
    {
        if let Some(c) = self.slot().clone() {
            return Ok(c);
        }
        // One caller at a time makes it; the others find its connection.
        let mut maker = self.maker.lock().await;
        if let Some(c) = self.slot().clone() {
            return Ok(c);
        }
        let conn = make(&mut maker).await?;
        *self.slot() = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the connection; returns whether there was one.
    fn reset(&self) -> bool {
        let dropped = self.slot().take().is_some();
        if dropped {
            tracing::warn!("{}", self.what);
        }
        dropped
    }
}

/// A cluster connection. The redis crate follows MOVED and ASK and reconnects to known nodes;
/// after a failure that may be a node gone (a failover) the next call makes a new one from the
/// seed nodes, with the topology as it is then.
pub(crate) type LazyCluster = Relink<ClusterConnection, ::redis::cluster::ClusterClient>;

impl LazyCluster {
    async fn connection(&self) -> RedisResult<ClusterConnection> {
        self.get(async |client: &mut ::redis::cluster::ClusterClient| client.get_async_connection().await)
            .await
    }
}

/// The primary Sentinel names, asked for again after a failure that may be a failover.
pub(crate) struct SentinelLink {
    link: Relink<MultiplexedConnection, SentinelClient>,
    config: AsyncConnectionConfig,
}

impl SentinelLink {
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let config = &self.config;
        self.link
            .get(async |client: &mut SentinelClient| client.get_async_connection_with_config(config).await)
            .await
    }
}

/// Whether `e` may mean the server is gone or no longer serves as primary (a failover), so the
/// connection should be made again.
pub(crate) fn lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ReadOnly
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
        )
}

impl Conn {
    /// After a failure (`None`: a timeout) that may be a lost server: drop the cluster or Sentinel
    /// connection so the next call makes a new one (a single server's connection manager
    /// reconnects by itself). Returns whether the connection is to be made again.
    pub(crate) fn lost(&self, e: Option<&RedisError>) -> bool {
        if e.is_some_and(|e| !lost(e)) {
            return false;
        }
        match self {
            Conn::Single(_) => true,
            Conn::Cluster(c) => c.reset(),
            Conn::Sentinel(s) => s.link.reset(),
        }
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = RedisResult<T>> + Send + 'a>>;

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let f: Boxed<'a, Value> = match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => {
                let c = c.clone();
                Box::pin(async move { c.connection().await?.req_packed_command(cmd).await })
            }
            Conn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move { s.connection().await?.req_packed_command(cmd).await })
            }
        };
        f
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let f: Boxed<'a, Vec<Value>> = match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => {
                let c = c.clone();
                Box::pin(async move { c.connection().await?.req_packed_commands(cmd, offset, count).await })
            }
            Conn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move { s.connection().await?.req_packed_commands(cmd, offset, count).await })
            }
        };
        f
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
            Conn::Sentinel(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        let t = Target::parse("redis://127.0.0.1:6379/2").unwrap();
        assert_eq!((t.topology, t.tls, t.db), (Topology::Single, false, 2));
        let t = Target::parse("rediss://alice:s%40cret@cache.example:6380").unwrap();
        assert_eq!((t.topology, t.tls), (Topology::Single, true));
        assert_eq!(
            (t.username.as_deref(), t.password.as_deref()),
            (Some("alice"), Some("s@cret"))
        );

        let t = Target::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002").unwrap();
        assert_eq!(t.topology, Topology::Cluster);
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.nodes[1], ("127.0.0.1".to_owned(), 7001));
        let t = Target::parse("rediss+cluster://:pw@h1:1,h2:2").unwrap();
        assert_eq!((t.tls, t.username, t.password.as_deref()), (true, None, Some("pw")));

        let t = Target::parse("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381/mymaster").unwrap();
        assert_eq!(
            (t.topology, t.master.as_deref(), t.db),
            (Topology::Sentinel, Some("mymaster"), 0)
        );
        let t = Target::parse("rediss+sentinel://u:p@s:26379/main/3").unwrap();
        assert_eq!((t.tls, t.master.as_deref(), t.db), (true, Some("main"), 3));
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        let err = |u: &str| Target::parse(u).unwrap_err();
        assert!(err("http://x:1").contains("scheme `http`"));
        assert!(err("127.0.0.1:6379").contains("redis://"));
        assert!(err("redis+cluster://127.0.0.1").contains("no port"));
        assert!(err("redis+cluster://127.0.0.1:0").contains("invalid port"));
        assert!(err("redis+cluster://h:1/3").contains("no path"));
        assert!(err("redis+sentinel://h:1").contains("name the primary"));
        assert!(err("redis+sentinel://h:1/m/x").contains("not a database"));
        assert!(!err("redis+sentinel://u:hunter2@h:1").contains("hunter2"));
    }

    #[test]
    fn debug_hides_the_password() {
        let t = Target::parse("redis+cluster://u:hunter2@h:1").unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
