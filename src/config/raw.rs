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
    pub(crate) tls: RawTls,
    #[serde(default)]
    pub(crate) chains: Vec<RawChain>,
    #[serde(default)]
    pub(crate) store: RawStore,
    #[serde(default)]
    pub(crate) session: RawSession,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    #[serde(default)]
    pub(crate) policies: Vec<RawPolicy>,
    #[serde(default)]
    pub(crate) delegates: Vec<RawDelegate>,
    #[serde(default)]
    pub(crate) tenants: Vec<super::tenants::RawTenant>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub(crate) backend: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) on_error: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) dedupe_ttl: Option<String>,
    pub(crate) max_entries: Option<u64>,
    pub(crate) durability: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSession {
    pub(crate) unknown_permission: Option<String>,
    pub(crate) unknown_validator: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Option<String>,
    pub(crate) token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub(crate) name: String,
    pub(crate) on_error: Option<String>,
    pub(crate) allow_privileged_calls: Option<bool>,
    pub(crate) allow_non_canonical_calldata: Option<bool>,
    pub(crate) allow_undeclared_delegatecalls: Option<bool>,
    pub(crate) allow_policy_gaps: Option<bool>,
    pub(crate) allow_cross_chain_replay: Option<bool>,
    pub(crate) allow_reverting_modes: Option<bool>,
    #[serde(default, rename = "match")]
    pub(crate) matcher: RawMatch,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    #[serde(default)]
    pub(crate) time: RawTime,
    pub(crate) calls: Option<Vec<RawCall>>,
    #[serde(default)]
    pub(crate) transfers: Vec<RawTransfer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelegate {
    pub(crate) target: String,
    pub(crate) function: String,
    pub(crate) chains: Option<Vec<u64>>,
    pub(crate) target_arg: Option<usize>,
    pub(crate) value_arg: Option<usize>,
    pub(crate) data_arg: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub(crate) chains: Option<Vec<u64>>,
    pub(crate) entry_points: Option<Vec<String>>,
    pub(crate) senders: Option<Vec<String>>,
    pub(crate) session_signers: Option<Vec<String>>,
    pub(crate) permission_ids: Option<Vec<String>>,
    pub(crate) paymasters: Option<Vec<String>>,
    pub(crate) tenants: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) counter_scope: Option<String>,
    pub(crate) shared_across_chains: Option<bool>,
    pub(crate) windows: Option<String>,
    pub(crate) ops: Option<RawBudget>,
    pub(crate) gas_wei: Option<RawBudget>,
    pub(crate) max_cost_per_op: Option<String>,
}

/// `{ count = 50, period = "1d" }` or `{ amount = "0.5 ether", period = "1d" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub(crate) count: Option<u64>,
    pub(crate) amount: Option<String>,
    pub(crate) period: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTime {
    pub(crate) not_before: Option<String>,
    pub(crate) not_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCall {
    pub(crate) target: String,
    pub(crate) function: Option<String>,
    pub(crate) selector: Option<String>,
    pub(crate) call_type: Option<String>,
    pub(crate) max_value_per_use: Option<String>,
    pub(crate) value_limit: Option<RawBudget>,
    #[serde(default)]
    pub(crate) constraints: Vec<RawConstraint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConstraint {
    pub(crate) param: u32,
    pub(crate) condition: String,
    pub(crate) value: Option<String>,
    pub(crate) values: Option<Vec<String>>,
    pub(crate) limit: Option<RawBudget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransfer {
    pub(crate) token: String,
    pub(crate) max_per_use: Option<String>,
    pub(crate) limit: Option<RawBudget>,
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
    pub(crate) max_connections_per_address: Option<u32>,
    pub(crate) head_timeout: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) body_timeout: Option<String>,
    pub(crate) shutdown_grace: Option<String>,
    pub(crate) cors: Option<RawCors>,
    pub(crate) requests_per_ip: Option<super::tenants::RawIpLimit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    #[serde(default)]
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) allowed_methods: Option<Vec<String>>,
    pub(crate) allowed_headers: Option<Vec<String>>,
    pub(crate) max_age: Option<String>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChain {
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) upstreams: Vec<RawUpstream>,
    pub(crate) node: Option<RawEndpoint>,
    #[serde(default)]
    pub(crate) simulation: RawSimulation,
    #[serde(default)]
    pub(crate) accounts: RawAccounts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccounts {
    pub(crate) read_from_node: Option<bool>,
    pub(crate) head_poll: Option<String>,
    pub(crate) pending_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSimulation {
    pub(crate) enabled: Option<bool>,
    pub(crate) on_sim_error: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) bundler: Option<String>,
    pub(crate) reject_reverting: Option<bool>,
    pub(crate) max_concurrent: Option<u32>,
}

/// An upstream is either a bare URL or a table.
#[derive(Debug)]
pub(crate) enum RawUpstream {
    Url(String),
    Full(RawUpstreamTable),
}

impl<'de> Deserialize<'de> for RawUpstream {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        url_or_table(
            deserializer,
            "an upstream URL string or a table with `url`",
            RawUpstream::Url,
            RawUpstream::Full,
        )
    }
}

/// A node is either a bare URL or a table with `url` and `headers`.
#[derive(Debug)]
pub(crate) enum RawEndpoint {
    Url(String),
    Full(RawEndpointTable),
}

impl<'de> Deserialize<'de> for RawEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        url_or_table(
            deserializer,
            "a node URL string or a table with `url`",
            RawEndpoint::Url,
            RawEndpoint::Full,
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpointTable {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
}

/// A string or a table `T`, as `url(..)` or `table(..)`.
fn url_or_table<'de, D, T, V>(
    deserializer: D,
    expecting: &'static str,
    url: fn(String) -> V,
    table: fn(T) -> V,
) -> Result<V, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Visitor<T, V> {
        expecting: &'static str,
        url: fn(String) -> V,
        table: fn(T) -> V,
    }
    impl<'de, T: Deserialize<'de>, V> serde::de::Visitor<'de> for Visitor<T, V> {
        type Value = V;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<V, E> {
            Ok((self.url)(v.to_string()))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<V, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(self.table)
        }
    }
    deserializer.deserialize_any(Visitor { expecting, url, table })
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
