//! `[server.cors]`: which browser origins may call opgate, and what their preflight is told.

use std::time::Duration;

use super::raw::RawCors;
use super::{duration, invalid, ConfigError};

/// CORS for the JSON-RPC listener. Off (`None` in [`super::ServerConfig`]) unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins; empty with `any` set allows every origin.
    pub origins: Vec<OriginRule>,
    /// `"*"` was listed: every origin is allowed.
    pub any: bool,
    /// `Access-Control-Allow-Methods`.
    pub methods: Vec<String>,
    /// `Access-Control-Allow-Headers` (lowercase).
    pub headers: Vec<String>,
    /// `Access-Control-Max-Age`.
    pub max_age: Duration,
}

/// One allowed origin: `scheme://host[:port]`, where the host may start with `*.` (any
/// subdomain, at any depth, not the bare domain) and the port may be `*` (any port, or none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRule {
    scheme: String,
    /// The host, or with a wildcard the suffix after `*` (starting with `.`).
    host: String,
    wildcard_host: bool,
    port: PortRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// No port: the scheme's default.
    Default,
    Exact(u16),
    Any,
}

/// The parts of an origin.
fn split(origin: &str) -> Option<(&str, &str, Option<&str>)> {
    let (scheme, rest) = origin.split_once("://")?;
    if scheme.is_empty() || rest.is_empty() || rest.contains('/') {
        return None;
    }
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    (!host.is_empty()).then_some((scheme, host, port))
}

fn host_chars_ok(host: &str) -> bool {
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
}

impl OriginRule {
    /// Parses `https://app.example.com`, `https://*.example.com`, `http://127.0.0.1:*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim_end_matches('/').to_ascii_lowercase();
        let (scheme, host, port) = split(&lower)
            .ok_or_else(|| format!("`{text}` is not an origin (scheme://host[:port], no path), or \"*\""))?;
        let (wildcard_host, host) = match host.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && rest.len() > 1 => (true, rest),
            Some(_) => return Err(format!("`{text}`: a host wildcard is `*.` followed by a domain")),
            None => (false, host),
        };
        if host.contains('*') || !host_chars_ok(host) {
            return Err(format!("`{text}`: the host may only start with `*.`"));
        }
        let port = match port {
            None => PortRule::Default,
            Some("*") => PortRule::Any,
            Some(p) => PortRule::Exact(p.parse().map_err(|_| format!("`{text}`: `{p}` is not a port or `*`"))?),
        };
        Ok(Self {
            scheme: scheme.to_string(),
            host: host.to_string(),
            wildcard_host,
            port,
        })
    }

    /// Whether `origin` (as a browser sends it) is allowed by this rule.
    pub fn matches(&self, origin: &str) -> bool {
        let lower = origin.to_ascii_lowercase();
        let Some((scheme, host, port)) = split(&lower) else {
            return false;
        };
        if scheme != self.scheme || !host_chars_ok(host) {
            return false;
        }
        let host_ok = if self.wildcard_host {
            host.len() > self.host.len() && host.ends_with(&self.host)
        } else {
            host == self.host
        };
        let port_ok = match (self.port, port) {
            (PortRule::Any, None) => true,
            (PortRule::Any, Some(p)) => p.parse::<u16>().is_ok(),
            (PortRule::Default, None) => true,
            (PortRule::Default, Some(_)) => false,
            (PortRule::Exact(want), Some(p)) => p.parse::<u16>().ok() == Some(want),
            (PortRule::Exact(_), None) => false,
        };
        host_ok && port_ok
    }
}

impl CorsConfig {
    /// Whether a browser at `origin` may read opgate's answers.
    pub fn allows(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|r| r.matches(origin))
    }
}

const DEFAULT_METHODS: [&str; 2] = ["POST", "OPTIONS"];
const DEFAULT_HEADERS: [&str; 3] = ["content-type", "authorization", "x-api-key"];
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// `[server.cors]`: `None` when the table is absent.
pub(super) fn cors(raw: Option<&RawCors>) -> Result<Option<CorsConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let key = "server.cors.allowed_origins";
    if raw.allowed_origins.is_empty() {
        return Err(invalid(key, "list at least one origin (or \"*\")"));
    }
    let mut any = false;
    let mut origins = Vec::new();
    for o in &raw.allowed_origins {
        if o == "*" {
            any = true;
        } else {
            origins.push(OriginRule::parse(o).map_err(|m| invalid(key, m))?);
        }
    }
    let methods = match &raw.allowed_methods {
        Some(m) => {
            for x in m {
                if x.is_empty() || !x.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(invalid("server.cors.allowed_methods", format!("`{x}` is not a method")));
                }
            }
            m.iter().map(|x| x.to_ascii_uppercase()).collect()
        }
        None => DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
    };
    let headers = match &raw.allowed_headers {
        Some(h) => {
            for x in h {
                if http::HeaderName::from_bytes(x.as_bytes()).is_err() {
                    return Err(invalid(
                        "server.cors.allowed_headers",
                        format!("`{x}` is not a header name"),
                    ));
                }
            }
            h.iter().map(|x| x.to_ascii_lowercase()).collect()
        }
        None => DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect(),
    };
    Ok(Some(CorsConfig {
        origins,
        any,
        methods,
        headers,
        max_age: duration("server.cors.max_age", &raw.max_age, DEFAULT_MAX_AGE)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OriginRule {
        OriginRule::parse(s).unwrap()
    }

    #[test]
    fn exact_origins_match_scheme_host_and_port() {
        let r = rule("https://app.example.com");
        assert!(r.matches("https://app.example.com"));
        assert!(r.matches("HTTPS://App.Example.com"));
        assert!(!r.matches("http://app.example.com"));
        assert!(!r.matches("https://app.example.com:8443"));
        assert!(!r.matches("https://app.example.com.evil.io"));
        assert!(!r.matches("https://evilapp.example.com"));
        assert!(!r.matches("null"));
    }

    #[test]
    fn wildcards_cover_subdomains_and_ports_only() {
        let r = rule("https://*.example.com");
        assert!(r.matches("https://a.example.com"));
        assert!(r.matches("https://a.b.example.com"));
        assert!(!r.matches("https://example.com"));
        assert!(!r.matches("https://a.example.com.evil.io"));
        assert!(!r.matches("https://aexample.com"));
        assert!(!r.matches("https://a.example.com/x"));
        let r = rule("http://127.0.0.1:*");
        assert!(r.matches("http://127.0.0.1:5173"));
        assert!(r.matches("http://127.0.0.1"));
        assert!(!r.matches("http://127.0.0.2:5173"));
        assert!(!r.matches("http://127.0.0.1:x"));
        assert_eq!(rule("http://127.0.0.1:8080"), rule("http://127.0.0.1:8080/"));
        assert!(rule("http://127.0.0.1:8080").matches("http://127.0.0.1:8080"));
    }

    #[test]
    fn bad_rules_are_named() {
        for bad in [
            "app.example.com",
            "https://",
            "https://a/b",
            "https://a*.example.com",
            "https://*",
            "https://x:y",
        ] {
            assert!(OriginRule::parse(bad).is_err(), "{bad}");
        }
    }
}
