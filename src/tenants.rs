//! API keys, tenants and request limits: who may use opgate's JSON-RPC listener, and how often.
//!
//! - **Keys.** With `[[tenants]]` configured, every JSON-RPC request carries an API key — in the
//!   query (`?apikey=`), the path (`/{chainId}/{apikey}`), `x-api-key` or `Authorization: Bearer`
//!   — that names its tenant; without one it is refused before any work. Keys are known by their
//!   hash only (`keccak256`). Keys added or revoked through the admin API live in the store
//!   (`tenantkey:{hash}` = the tenant's name, or `-` for a revoked configured key), read once and
//!   cached per replica; the cache is dropped when the store's version moves (polled, as the
//!   registry's), so a change reaches every replica within a second.
//! - **Request limits.** Per key (the tenant's `requests`) and per client IP
//!   (`[server.requests_per_ip]`, `X-Forwarded-For` believed only from `trusted_proxies`), checked
//!   together in one store round trip ([`Store::rate_limit`], GCRA).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy_primitives::B256;

use crate::config::{key_hash, IpLimit, TenantConfig};
use crate::store::{Store, StoreError};

/// Most cached key look-ups (hits and misses); past it the cache is cleared.
const CACHE_CAPACITY: usize = 50_000;

/// The tenant a request was admitted for; travels in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its name.
    pub name: Arc<str>,
    /// 1 + its position in the configuration (the metrics' tenant index; 0 is `none`).
    pub index: usize,
}

/// Why a request is refused before any work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No key, an unknown or revoked key, or a chain the tenant may not use.
    Unauthorized(String),
    /// Over a request limit; admitted again after the wait.
    RateLimited {
        /// The tenant the key named, if any.
        tenant: Option<Arc<str>>,
        /// Which limit (`tenant <name>` or `client IP`).
        limit: String,
        /// Until admitted again.
        retry_after: Duration,
    },
    /// The store did not answer and `[store] on_error = "reject"`.
    StoreUnavailable,
}

/// Keys, tenants and request limits of the JSON-RPC listener.
#[derive(Debug)]
pub struct Access {
    tenants: Vec<TenantConfig>,
    by_hash: HashMap<B256, usize>,
    ip_limit: Option<IpLimit>,
    store: Arc<Store>,
    store_fails_open: bool,
    cache: RwLock<HashMap<B256, Option<usize>>>,
    version: AtomicU64,
}

/// The store entry of a key added or revoked through the admin API.
fn entry_key(hash: &B256) -> String {
    format!("tenantkey:{hash}")
}

/// The value that marks a configured key revoked.
const REVOKED: &str = "-";

impl Access {
    /// Access control over `store`; `store_fails_open` is `[store] on_error = "allow"`.
    pub fn new(
        tenants: Vec<TenantConfig>,
        ip_limit: Option<IpLimit>,
        store: Arc<Store>,
        store_fails_open: bool,
    ) -> Self {
        let by_hash = tenants
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.key_hashes.iter().map(move |h| (*h, i)))
            .collect();
        Self {
            tenants,
            by_hash,
            ip_limit,
            store,
            store_fails_open,
            cache: RwLock::new(HashMap::new()),
            version: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether requests need a key.
    pub fn keys_required(&self) -> bool {
        !self.tenants.is_empty()
    }

    /// Whether anything is checked per request.
    pub fn active(&self) -> bool {
        self.keys_required() || self.ip_limit.is_some()
    }

    /// The configured tenant names (the `tenant` label's values).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(|t| t.name.as_str())
    }

    fn tenant_named(&self, name: &str) -> Option<usize> {
        self.tenants.iter().position(|t| t.name == name)
    }

    /// The tenant `key` belongs to, if any (a revoked key belongs to none).
    async fn tenant_of(&self, key: &str) -> Result<Option<usize>, StoreError> {
        let hash = key_hash(key);
        if let Some(hit) = self.cache.read().ok().and_then(|c| c.get(&hash).copied()) {
            return Ok(hit);
        }
        let found = match self.store.get_permission(&entry_key(&hash)).await? {
            Some(v) if v == REVOKED => None,
            Some(name) => self.tenant_named(&name),
            None => self.by_hash.get(&hash).copied(),
        };
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= CACHE_CAPACITY {
                c.clear();
            }
            c.insert(hash, found);
        }
        Ok(found)
    }

    /// Admits one request on chain `chain` from `peer` with `key` (when it carries one) and
    /// `forwarded_for` (its `X-Forwarded-For`): the tenant it is for, or why not.
    pub async fn admit(
        &self,
        chain: Option<u64>,
        key: Option<&str>,
        peer: IpAddr,
        forwarded_for: Option<&str>,
        store_timeout: Duration,
    ) -> Result<Option<Tenant>, Refusal> {
        let mut tenant = None;
        if self.keys_required() {
            let Some(key) = key.filter(|k| !k.is_empty()) else {
                return Err(Refusal::Unauthorized(
                    "an API key is required: ?apikey=, /{chainId}/{apikey}, x-api-key or Authorization: Bearer".into(),
                ));
            };
            let found = match tokio::time::timeout(store_timeout, self.tenant_of(key)).await {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "API key look-up failed");
                    return Err(Refusal::StoreUnavailable);
                }
                Err(_) => return Err(Refusal::StoreUnavailable),
            };
            let Some(i) = found else {
                return Err(Refusal::Unauthorized("the API key is not valid".into()));
            };
            let t = &self.tenants[i];
            if !t.may_use(chain) {
                return Err(Refusal::Unauthorized(format!(
                    "tenant {} may not use chain {}",
                    t.name,
                    chain.map_or_else(|| "(unknown)".to_string(), |c| c.to_string())
                )));
            }
            tenant = Some((i, key_hash(key)));
        }
        let key_limit = tenant.and_then(|(i, hash)| self.tenants[i].requests.map(|r| (format!("key:{hash}"), r, i)));
        let ip_limit = self.ip_limit.as_ref().map(|l| {
            let ip = client_ip(peer, forwarded_for, &l.trusted_proxies);
            (format!("ip:{ip}"), l.rate)
        });
        let mut asked: Vec<(&str, u32, u32)> = Vec::with_capacity(2);
        if let Some((k, r, _)) = &key_limit {
            asked.push((k.as_str(), r.rate, r.burst));
        }
        if let Some((k, r)) = &ip_limit {
            asked.push((k.as_str(), r.rate, r.burst));
        }
        if !asked.is_empty() {
            let answer = tokio::time::timeout(
                store_timeout,
                self.store.rate_limit(&asked, std::time::SystemTime::now()),
            )
            .await;
            match answer {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(wait))) => {
                    let limit = match (&key_limit, &ip_limit) {
                        (Some((_, _, i)), None) => format!("tenant {}", self.tenants[*i].name),
                        (None, Some(_)) => "client IP".to_string(),
                        _ => "tenant or client IP".to_string(),
                    };
                    return Err(Refusal::RateLimited {
                        tenant: tenant.map(|(i, _)| Arc::from(self.tenants[i].name.as_str())),
                        limit,
                        retry_after: wait,
                    });
                }
                Ok(Err(e)) if !self.store_fails_open => {
                    tracing::warn!(error = %e, "request limit check failed");
                    return Err(Refusal::StoreUnavailable);
                }
                Err(_) if !self.store_fails_open => return Err(Refusal::StoreUnavailable),
                _ => tracing::debug!("request limit not checked (store failed, on_error = allow)"),
            }
        }
        Ok(tenant.map(|(i, _)| Tenant {
            name: Arc::from(self.tenants[i].name.as_str()),
            index: i + 1,
        }))
    }

    /// Checks the store's version and drops the key cache when it moved.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let v = self.store.version().await?;
        if self.version.swap(v, Ordering::SeqCst) != v {
            if let Ok(mut c) = self.cache.write() {
                c.clear();
            }
        }
        Ok(())
    }

    /// Polls the store's version until `stop` resolves.
    pub async fn watch(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(crate::registry::POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::debug!(error = %e, "key version poll failed");
                    }
                }
            }
        }
    }

    /// Adds `key` to tenant `name` (admin API). Errors name what is wrong.
    pub async fn add_key(&self, name: &str, key: &str) -> Result<(), AccessError> {
        if self.tenant_named(name).is_none() {
            return Err(AccessError::NoTenant(name.to_string()));
        }
        if key.len() < 16 {
            return Err(AccessError::ShortKey);
        }
        let hash = key_hash(key);
        if let Some(i) = self.by_hash.get(&hash) {
            if self.tenants[*i].name != name {
                return Err(AccessError::Taken);
            }
        }
        self.store.put_permission(&entry_key(&hash), name).await?;
        self.forget(&hash);
        Ok(())
    }

    /// Revokes `key` (admin API): a configured key is marked revoked, an added one removed.
    /// Returns whether the key belonged to `name`.
    pub async fn revoke_key(&self, name: &str, key: &str) -> Result<bool, AccessError> {
        let hash = key_hash(key);
        let owner = match self.store.get_permission(&entry_key(&hash)).await? {
            Some(v) if v == REVOKED => None,
            Some(n) => self.tenant_named(&n),
            None => self.by_hash.get(&hash).copied(),
        };
        if owner.and_then(|i| self.tenants.get(i)).map(|t| t.name.as_str()) != Some(name) {
            return Ok(false);
        }
        if self.by_hash.contains_key(&hash) {
            self.store.put_permission(&entry_key(&hash), REVOKED).await?;
        } else {
            self.store.delete_permission(&entry_key(&hash)).await?;
        }
        self.forget(&hash);
        Ok(true)
    }

    fn forget(&self, hash: &B256) {
        if let Ok(mut c) = self.cache.write() {
            c.remove(hash);
        }
    }
}

/// An admin key change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No such tenant is configured.
    #[error("no tenant `{0}` is configured")]
    NoTenant(String),
    /// The key is too short.
    #[error("an API key is at least 16 characters")]
    ShortKey,
    /// The key belongs to another tenant.
    #[error("the key belongs to another tenant")]
    Taken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The client's IP: the peer, or — when the peer is a trusted proxy — the right-most address of
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[crate::config::Cidr]) -> IpAddr {
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let Some(list) = forwarded_for else { return peer };
    let mut last = peer;
    for hop in list.rsplit(',').map(str::trim) {
        let Some(ip) = hop
            .parse::<IpAddr>()
            .ok()
            .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        else {
            return last;
        };
        if !trusted.iter().any(|c| c.contains(ip)) {
            return ip;
        }
        last = ip;
    }
    last
}

/// The API key a request carries, by the transports SDK users pass it: `?apikey=` (or
/// `api_key`), the path's second segment (`/{chainId}/{apikey}`), `x-api-key`, or
/// `Authorization: Bearer`.
pub fn key_of(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    if let Some(q) = uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if k == "apikey" || k == "api_key" {
                return Some(v.into_owned());
            }
        }
    }
    let mut segments = uri.path().trim_matches('/').split('/');
    if let (Some(_chain), Some(key), None) = (segments.next(), segments.next(), segments.next()) {
        if !key.is_empty() {
            return Some(
                percent_encoding::percent_decode_str(key)
                    .decode_utf8_lossy()
                    .into_owned(),
            );
        }
    }
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_string());
    }
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|k| k.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(client_ip(other, Some("198.51.100.7"), &trusted), other);
        assert_eq!(
            client_ip(peer, Some("198.51.100.7"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, Some("1.1.1.1, 198.51.100.7, 10.2.2.2"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "the right-most untrusted hop; the client-written left part is not believed"
        );
        assert_eq!(client_ip(peer, Some("garbage"), &trusted), peer);
        assert_eq!(client_ip(peer, None, &trusted), peer);
    }

    #[test]
    fn keys_travel_the_ways_sdks_pass_them() {
        let h = http::HeaderMap::new();
        let uri: http::Uri = "/1?apikey=abc".parse().unwrap();
        assert_eq!(key_of(&uri, &h).as_deref(), Some("abc"));
        let uri: http::Uri = "/8453/k%2Fey".parse().unwrap();
        assert_eq!(key_of(&uri, &h).as_deref(), Some("k/ey"));
        let uri: http::Uri = "/8453".parse().unwrap();
        assert_eq!(key_of(&uri, &h), None);
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "xk".parse().unwrap());
        assert_eq!(key_of(&uri, &h).as_deref(), Some("xk"));
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer bk".parse().unwrap());
        assert_eq!(key_of(&uri, &h).as_deref(), Some("bk"));
    }
}
