//! `[[tenants]]` (API keys, the chains and request rate each may use) and
//! `[server.requests_per_ip]`.

use std::net::IpAddr;

use alloy_primitives::{keccak256, B256};
use serde::Deserialize;

use super::{env, invalid, ConfigError};

/// A request rate: `rate` per second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    /// Requests per second.
    pub rate: u32,
    /// Requests allowed at once (at least 1).
    pub burst: u32,
}

/// One tenant: its name (the `tenant` label), its keys (as hashes only) and what it may use.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// Name: in errors, logs and metrics.
    pub name: String,
    /// `keccak256(key)` of each configured key; the keys themselves are not kept.
    pub key_hashes: Vec<B256>,
    /// Chains it may use; `None`: every served chain.
    pub chains: Option<Vec<u64>>,
    /// Requests per key, shared by every replica; `None`: unlimited.
    pub requests: Option<RequestRate>,
}

impl std::fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfig")
            .field("name", &self.name)
            .field("keys", &self.key_hashes.len())
            .field("chains", &self.chains)
            .field("requests", &self.requests)
            .finish()
    }
}

impl TenantConfig {
    /// Whether the tenant may use chain `id`.
    pub fn may_use(&self, id: Option<u64>) -> bool {
        match (&self.chains, id) {
            (None, _) => true,
            (Some(list), Some(id)) => list.contains(&id),
            (Some(_), None) => false,
        }
    }
}

/// The hash an API key is known by.
pub fn key_hash(key: &str) -> B256 {
    keccak256(key.as_bytes())
}

/// `[server.requests_per_ip]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpLimit {
    /// The rate per client IP.
    pub rate: RequestRate,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
}

/// An address block (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6/n` or a bare address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not an address or block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Self { net, bits })
    }

    /// Whether `ip` lies in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.bits)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    name: String,
    #[serde(default)]
    keys: Vec<String>,
    chains: Option<Vec<u64>>,
    requests: Option<RawRate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    rate: u32,
    burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIpLimit {
    rate: u32,
    burst: Option<u32>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

fn rate(key: &str, raw: &RawRate) -> Result<RequestRate, ConfigError> {
    rate_of(key, raw.rate, raw.burst)
}

fn rate_of(key: &str, rate: u32, burst: Option<u32>) -> Result<RequestRate, ConfigError> {
    if rate == 0 {
        return Err(invalid(format!("{key}.rate"), "must be at least 1 request per second"));
    }
    let burst = burst.unwrap_or(rate);
    if burst == 0 {
        return Err(invalid(format!("{key}.burst"), "must be at least 1"));
    }
    Ok(RequestRate { rate, burst })
}

/// `[[tenants]]`.
pub(crate) fn tenants(raw: &[RawTenant], chains: &[Option<u64>]) -> Result<Vec<TenantConfig>, ConfigError> {
    let mut out: Vec<TenantConfig> = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let key = format!("tenants[{i}]");
        if t.name.is_empty()
            || t.name.len() > 64
            || !t
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(invalid(
                format!("{key}.name"),
                "1–64 characters of letters, digits, `-`, `_` or `.`",
            ));
        }
        if out.iter().any(|o| o.name == t.name) {
            return Err(invalid(format!("{key}.name"), format!("`{}` is used twice", t.name)));
        }
        let mut key_hashes = Vec::with_capacity(t.keys.len());
        for (j, k) in t.keys.iter().enumerate() {
            let kkey = format!("{key}.keys[{j}]");
            let k = env::expand(k).map_err(|m| invalid(&kkey, m))?;
            if k.len() < 16 {
                return Err(invalid(&kkey, "an API key is at least 16 characters"));
            }
            let h = key_hash(&k);
            if out.iter().any(|o| o.key_hashes.contains(&h)) || key_hashes.contains(&h) {
                return Err(invalid(&kkey, "the same key is listed twice"));
            }
            key_hashes.push(h);
        }
        if let Some(list) = &t.chains {
            for c in list {
                if !chains.contains(&Some(*c)) {
                    return Err(invalid(format!("{key}.chains"), format!("chain {c} is not served")));
                }
            }
        }
        out.push(TenantConfig {
            name: t.name.clone(),
            key_hashes,
            chains: t.chains.clone(),
            requests: t
                .requests
                .as_ref()
                .map(|r| rate(&format!("{key}.requests"), r))
                .transpose()?,
        });
    }
    Ok(out)
}

/// `[server.requests_per_ip]`.
pub(crate) fn ip_limit(raw: Option<&RawIpLimit>) -> Result<Option<IpLimit>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let key = "server.requests_per_ip";
    let rate = rate_of(key, raw.rate, raw.burst)?;
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .map(|p| Cidr::parse(p).map_err(|m| invalid(format!("{key}.trusted_proxies"), m)))
        .collect::<Result<_, _>>()?;
    Ok(Some(IpLimit { rate, trusted_proxies }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_contain_their_addresses() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }
}
