//! Raw configuration as written in TOML: every key optional where a default exists, unknown keys
//! rejected. Nothing here is validated beyond its TOML type; see [`super::Config`] for that.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) log: RawLog,
    #[serde(default)]
    pub(crate) methods: RawMethods,
    #[serde(default)]
    pub(crate) upstream_defaults: RawUpstreamDefaults,
    #[serde(default)]
    pub(crate) chains: Vec<RawChain>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<String>,
    pub(crate) metrics_listen: Option<String>,
    pub(crate) max_request_body: Option<String>,
    pub(crate) max_response_body: Option<String>,
    pub(crate) max_batch: Option<u32>,
    pub(crate) max_connections: Option<u32>,
    pub(crate) shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub(crate) format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMethods {
    pub(crate) allow: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamDefaults {
    pub(crate) timeout: Option<String>,
    pub(crate) connect_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChain {
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) upstreams: Vec<RawUpstream>,
}

/// An upstream is either a bare URL or a table.
#[derive(Debug)]
pub(crate) enum RawUpstream {
    Url(String),
    Full(RawUpstreamTable),
}

impl<'de> Deserialize<'de> for RawUpstream {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawUpstream;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an upstream URL string or a table with `url`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawUpstream, E> {
                Ok(RawUpstream::Url(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawUpstream, A::Error> {
                RawUpstreamTable::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(RawUpstream::Full)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTable {
    pub(crate) url: String,
    pub(crate) name: Option<String>,
    pub(crate) timeout: Option<String>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
}
