//! Send decisions: what opgate spends deciding one `eth_sendUserOperation` — parse, userOpHash,
//! registry lookup, Kernel decoding, every policy (with the session key's ECDSA recovery) and the
//! reservation in Redis — without relaying it (the upstream is excluded).
//!
//! One process, one multi-thread tokio runtime (2 workers by default), Redis on loopback: one
//! server, or a Redis Cluster (`--redis redis+cluster://host:port,…`); `--redis` given more than once
//! measures each store in turn and ends with a side-by-side summary.
//! - opgate is built in process (`App::build`) with `[store] backend = "redis"` under a key prefix
//!   of its own, one chain (31337) whose upstream is a closed local port (never called), and an
//!   operator policy with an ops budget and a gas budget per session, so that every decision
//!   charges the Kernel session counters (GasPolicy, RateLimitPolicy) and the operator counters in
//!   the one reservation;
//! - a Kernel v3 session of its own: a secp256k1 session key, and a permission with CallPolicy
//!   0.0.4 (`transfer(address,uint256)`, recipient EQUAL, amount LESS_THAN_OR_EQUAL), GasPolicy,
//!   RateLimitPolicy, TimestampPolicy and the ECDSA signer, registered in the registry as the admin
//!   API would, for each of `--accounts` Kernel accounts (256 by default); the encoders are first
//!   checked against a recorded SDK vector;
//! - default-mode permission UserOperations (EntryPoint v0.7), each with its own nonce sequence
//!   and so its own userOpHash, their senders taken round-robin from those accounts (so that an
//!   account's counters, whose hash tag is the account, spread over a cluster's shards), signed by
//!   the session key (EIP-191 over the userOpHash, as the SDK signs), built before any timing;
//! - the driver calls [`opgate::pipeline::decide`] directly and checks that every decision was
//!   accepted and charged.
//!
//! It measures, per repetition: latency with one decision in flight; throughput and latency with
//! C concurrent tasks (closed loop, C = 1, 4, 16, 64); latency at fixed offered rates (open loop,
//! 2,500 to 10,000 decisions/s); then, once: the Redis commands each decision sends (one server:
//! through a counting TCP proxy; a cluster: from every primary's `MONITOR`, script-internal
//! commands left out; both: from the servers' `INFO commandstats`), and where the time goes (parse
//! and decode, policies, reservation, ECDSA recovery). On a cluster it also reports, per node, the
//! reservation scripts (`EVALSHA`) each primary ran and the CPU each node used. Op records are
//! deleted between runs (SCAN and UNLINK on every primary) so that every measured decision makes a
//! full reservation. Every key is deleted at the end. Besides the figures, the report gives the CPU
//! per decision of this process and of the Redis servers (`INFO cpu`, summed over every node), and
//! how much of the machine other processes used meanwhile.
//!
//! Run: `cargo bench --bench decision -- [options]` (`--help`), or `scripts/bench-decision.sh`
//! (which also starts a private 3-primary/3-replica cluster and measures it after the single server).
//! Without any argument or `OPGATE_BENCH_*` variable (as under `cargo test --benches`) it does a
//! short smoke run instead, and skips when no Redis answers.

#[path = "common/alloc.rs"]
mod allocator;
#[path = "common/resp_proxy.rs"]
mod resp_proxy;
use resp_proxy::{label, serve_proxy, Counts};
#[path = "common/kernel_session.rs"]
mod kernel_session;
use kernel_session::*;
#[path = "common/host.rs"]
mod host;
use host::{
    args_or_exit, args_or_smoke, env_or, finish, load_average, machine_cpu, parse_list, process_cpu, runtime, us,
    TICK_NS,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::{address, eip191_hash_message, keccak256, Address, Bytes, FixedBytes, B256, U256};
use hdrhistogram::Histogram;
use k256::ecdsa::SigningKey;
use opgate::app::App;
use opgate::chain::Chain;
use opgate::config::{Config, Overrides};
use opgate::decode::ecdsa::{recover, recover_eip191};
use opgate::decode::permission::ECDSA_SIGNER;
use opgate::decode::serialized::{derive_permission_id, validator_data, EXECUTE_SELECTOR};
use opgate::decode::{decode_permission_data, DecodeOptions};
use opgate::pipeline::{self, Gate};
use opgate::registry::{Source, StoredPermission};
use opgate::store::target::{Target, Topology};
use opgate::store::{Reservation, Reserved};
use opgate::userop::{self, EntryPointVersion};
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// Target (issue): decision p99, in nanoseconds.
const TARGET_P99_NS: u64 = 1_000_000;
/// Target (issue): decisions per second.
const TARGET_PER_SEC: f64 = 10_000.0;
/// Target (issue): Redis round trips per decision.
const TARGET_ROUND_TRIPS: f64 = 1.0;

const CHAIN_ID: u64 = 31337;
const ENTRY_POINT: Address = address!("0000000071727De22E5E9d8BAf0edAc6f37da032");
/// The first Kernel account the session belongs to (never deployed: opgate does not look at chain
/// state); the others are derived from a fixed seed ([`accounts`]).
const ACCOUNT: Address = address!("49f0faDC8c183a2c18D7cd4515Ebe0329ab0B839");
/// The token the session may call.
const TARGET: Address = address!("edCC53F25Bac99Ebb78D3a0012eC78Ae3e67494e");
/// The only recipient the session may pay.
const RECIPIENT: Address = address!("02C968795e3E1AbF323307B002AA0522D4DfCF1B");
/// The session's CallPolicy cap on the amount, and what every op transfers.
const MAX_AMOUNT: u64 = 1_000_000;
const AMOUNT: u64 = 100;
/// CallPolicy conditions (`ParamCondition`).
const EQUAL: u8 = 0;
const LESS_THAN_OR_EQUAL: u8 = 4;

/// A decision slower than this fails the run.
const DECISION_TIMEOUT: Duration = Duration::from_secs(10);
/// Histogram range: 1 ns to 60 s, three significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;
/// Most SCAN calls a key cleanup makes (the loop's bound; 1,000 keys each).
const SCAN_CALLS_MAX: usize = 100_000;
/// Recorded SDK vector the encoders are checked against.
const VECTOR: &str = "call-equal-regular-k031";
/// How long the MONITOR readers may take to catch up with the commands sent so far.
const MONITOR_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// The `ECHO` argument that marks where a MONITOR count ends (never counted as a command).
const MONITOR_MARK: &str = "dbench-monitor-sync";

const USAGE: &str = "\
usage: cargo bench --bench decision -- [options]

  --sequential N     decisions timed with one in flight, per repetition  [env OPGATE_BENCH_SEQUENTIAL, 20000]
  --decisions N      decisions per concurrency level and repetition      [env OPGATE_BENCH_DECISIONS, 20000]
  --warmup N         unmeasured decisions before each run                [env OPGATE_BENCH_WARMUP, 2000]
  --concurrency LIST concurrent tasks (closed loop), comma-separated     [env OPGATE_BENCH_CONCURRENCY, 1,4,16,64]
  --rates LIST       offered decisions/s (open loop), comma-separated    [env OPGATE_BENCH_RATES, 2500,5000]
  --open-secs S      seconds each open-loop rate is offered              [env OPGATE_BENCH_OPEN_SECS, 2]
  --workers N        tokio worker threads                                [env OPGATE_BENCH_WORKERS, 2]
  --reps N           repetitions; figures are medians over them          [env OPGATE_BENCH_REPS, 3]
  --probe N          decisions for the round-trip count and the breakdown [env OPGATE_BENCH_PROBE, 5000]
  --accounts N       sender accounts; ops are spread round-robin over them [env OPGATE_BENCH_ACCOUNTS, 256]
  --redis URL        Redis server (redis://host:port[/db]) or cluster     [env OPGATE_BENCH_REDIS, redis://127.0.0.1:6379]
                     (redis+cluster://host:port,host:port,…: its nodes are found with CLUSTER NODES);
                     repeat it (or list URLs separated by spaces in the variable) to measure each in
                     turn, each with its own report, then a side-by-side summary

With no argument and no OPGATE_BENCH_* variable (as under `cargo test --benches`), a short smoke
run checks that everything works (and is skipped when no Redis answers); its figures mean nothing.
";

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone)]
struct Args {
    sequential: usize,
    decisions: usize,
    warmup: usize,
    concurrency: Vec<usize>,
    rates: Vec<usize>,
    open_secs: usize,
    workers: usize,
    reps: usize,
    probe: usize,
    accounts: usize,
    redis: Vec<String>,
    smoke: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sequential: env_or("OPGATE_BENCH_SEQUENTIAL", 20_000)?,
        decisions: env_or("OPGATE_BENCH_DECISIONS", 20_000)?,
        warmup: env_or("OPGATE_BENCH_WARMUP", 2_000)?,
        concurrency: parse_list(&env_or("OPGATE_BENCH_CONCURRENCY", "1,4,16,64".to_string())?)?,
        rates: parse_list(&env_or("OPGATE_BENCH_RATES", "2500,5000".to_string())?)?,
        open_secs: env_or("OPGATE_BENCH_OPEN_SECS", 2)?,
        workers: env_or("OPGATE_BENCH_WORKERS", 2)?,
        reps: env_or("OPGATE_BENCH_REPS", 3)?,
        probe: env_or("OPGATE_BENCH_PROBE", 5_000)?,
        accounts: env_or("OPGATE_BENCH_ACCOUNTS", 256)?,
        redis: env_or("OPGATE_BENCH_REDIS", "redis://127.0.0.1:6379".to_string())?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        smoke: false,
    };
    let (given, smoke) = args_or_smoke();
    if smoke {
        // Keep it short.
        args.sequential = 200;
        args.decisions = 200;
        args.warmup = 20;
        args.reps = 1;
        args.probe = 100;
        args.rates = vec![1000];
        args.open_secs = 1;
        args.smoke = true;
    }
    let mut it = given.into_iter();
    // The first `--redis` replaces the default (or the variable's list); later ones add to it.
    let mut redis_given = false;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|_| format!("`{v}` is not a number"));
        match flag.as_str() {
            // cargo passes `--bench` to every bench binary.
            "--bench" => {}
            "--sequential" => args.sequential = number(value()?)?,
            "--decisions" | "-n" => args.decisions = number(value()?)?,
            "--warmup" => args.warmup = number(value()?)?,
            "--concurrency" | "-c" => args.concurrency = parse_list(&value()?)?,
            "--rates" => args.rates = parse_list(&value()?)?,
            "--open-secs" => args.open_secs = number(value()?)?,
            "--workers" => args.workers = number(value()?)?,
            "--reps" => args.reps = number(value()?)?,
            "--probe" => args.probe = number(value()?)?,
            "--accounts" => args.accounts = number(value()?)?,
            "--redis" => {
                let url = value()?;
                if !redis_given {
                    args.redis.clear();
                    redis_given = true;
                }
                args.redis.push(url);
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if args.concurrency.contains(&0)
        || args.rates.contains(&0)
        || args.workers == 0
        || args.reps == 0
        || args.probe == 0
        || args.accounts == 0
    {
        return Err("--concurrency, --rates, --workers, --reps, --probe and --accounts must be at least 1".into());
    }
    if args.redis.is_empty() {
        return Err("name a Redis server with --redis".into());
    }
    if args.sequential == 0 && args.decisions == 0 {
        return Err("--sequential and --decisions cannot both be 0".into());
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
// The session: policies, permission and signed operations

fn parse_hex(v: &serde_json::Value, what: &str) -> Result<Vec<u8>, String> {
    let s = v.as_str().ok_or_else(|| format!("vector: {what} is not a string"))?;
    alloy_primitives::hex::decode(s).map_err(|e| format!("vector: {what}: {e}"))
}

fn json_u64(v: &serde_json::Value, what: &str) -> Result<u64, String> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| format!("vector: {what} is not a number"))
}

/// Rebuilds the policies of a recorded SDK session from their parameters with this bench's
/// encoders, and checks the install data, the permission id and the call data the SDK produced.
fn check_encoders_against_vector() -> Result<(), String> {
    let path = format!("{}/tests/data/vectors/{VECTOR}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading vector {VECTOR}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("vector {VECTOR}: {e}"))?;
    let session = &v["session"];
    let policies = session["policies"]
        .as_array()
        .ok_or("vector: session.policies is not an array")?;
    let mut entries = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        let rebuilt = match p["type"].as_str() {
            Some("call") => {
                let perm = &p["permissions"][0];
                let target: Address = perm["target"].as_str().and_then(|s| s.parse().ok()).ok_or("target")?;
                let selector: [u8; 4] = parse_hex(&perm["selector"], "selector")?
                    .try_into()
                    .map_err(|_| "selector length")?;
                let rules = perm["rules"]
                    .as_array()
                    .ok_or("rules")?
                    .iter()
                    .map(|r| {
                        let params = r["params"]
                            .as_array()
                            .ok_or("params")?
                            .iter()
                            .map(|w| Ok(B256::from_slice(&word(&parse_hex(w, "param")?))))
                            .collect::<Result<Vec<_>, String>>()?;
                        Ok((
                            json_u64(&r["conditionId"], "conditionId")? as u8,
                            json_u64(&r["offset"], "offset")?,
                            params,
                        ))
                    })
                    .collect::<Result<Vec<Rule>, String>>()?;
                let value_limit = U256::from(json_u64(&perm["valueLimit"], "valueLimit")?);
                call_policy(target, selector, value_limit, &rules)
            }
            Some("gas") => {
                let q = &p["params"];
                let allowed: u128 = q["allowed"].as_str().and_then(|s| s.parse().ok()).ok_or("allowed")?;
                let paymaster: Address = q["allowedPaymaster"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or("allowedPaymaster")?;
                gas_policy(allowed, q["enforcePaymaster"].as_bool().unwrap_or(false), paymaster)
            }
            Some("rate-limit") => {
                let q = &p["params"];
                rate_limit_policy(
                    json_u64(&q["interval"], "interval")?,
                    json_u64(&q["count"], "count")?,
                    json_u64(&q["startAt"], "startAt")?,
                )
            }
            Some("timestamp") => {
                let q = &p["params"];
                timestamp_policy(
                    json_u64(&q["validAfter"], "validAfter")?,
                    json_u64(&q["validUntil"], "validUntil")?,
                )
            }
            other => return Err(format!("vector: unexpected policy type {other:?}")),
        };
        let recorded = parse_hex(&p["installData"], "installData")?;
        if rebuilt.data.as_ref() != recorded.as_slice() {
            return Err(format!(
                "the bench's encoding of policies[{i}] ({:?}) differs from the SDK's:\n  bench {}\n  sdk   {}",
                p["type"],
                hex_bytes(&rebuilt.data),
                hex_bytes(&recorded)
            ));
        }
        entries.push(rebuilt);
    }
    let key: Address = session["sessionKeyAddress"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("vector: sessionKeyAddress")?;
    let pid = derive_permission_id(&entries, ECDSA_SIGNER, key.as_slice(), [0, 0]);
    let recorded_pid: FixedBytes<4> = session["permissionId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("vector: permissionId")?;
    if pid != recorded_pid {
        return Err(format!(
            "derived permission id {pid} differs from the SDK's {recorded_pid}"
        ));
    }
    // The SDK's session signer signs EIP-191 over the userOpHash, as this bench does.
    let hash: B256 = v["userOpHash"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("vector: userOpHash")?;
    let signature = parse_hex(&v["userOperation"]["signature"], "signature")?;
    if signature.first() != Some(&0xff) || recover_eip191(&hash, &signature[1..]).ok() != Some(key) {
        return Err("the SDK's session signature is not `0xff ‖ ECDSA over EIP-191(userOpHash)`".into());
    }
    let call = &v["calls"][0];
    let rebuilt = execute_call(
        call["to"].as_str().and_then(|s| s.parse().ok()).ok_or("calls[0].to")?,
        U256::ZERO,
        &parse_hex(&call["data"], "calls[0].data")?,
    );
    let recorded = parse_hex(&v["userOperation"]["callData"], "callData")?;
    if rebuilt.as_ref() != recorded.as_slice() {
        return Err("the bench's Kernel execute call data differs from the SDK's".into());
    }
    Ok(())
}

/// The session key, its permission and the operations it signs.
struct Session {
    key: SigningKey,
    signer: Address,
    pid: FixedBytes<4>,
    validator_data: Bytes,
    call_data: Bytes,
}

impl Session {
    fn new(now: u64) -> Result<Self, String> {
        // A fixed key: runs are reproducible, and every run uses a key prefix of its own.
        let secret = keccak256("opgate decision bench session key");
        let key = SigningKey::from_slice(secret.as_slice()).map_err(|e| e.to_string())?;
        let point = key.verifying_key().to_encoded_point(false);
        let signer = Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..]);
        let policies = [
            call_policy(
                TARGET,
                TRANSFER,
                U256::ZERO,
                &[
                    (EQUAL, 0, vec![B256::from(word(RECIPIENT.as_slice()))]),
                    (LESS_THAN_OR_EQUAL, 32, vec![B256::from(u64_word(MAX_AMOUNT))]),
                ],
            ),
            // 10^30 wei: never reached.
            gas_policy(10u128.pow(30), false, Address::ZERO),
            // The most a uint48 count holds, no interval: never reached, never waits.
            rate_limit_policy(0, (1 << 48) - 1, 0),
            // Valid from a day ago for a year.
            timestamp_policy(now - 86_400, now + 365 * 86_400),
        ];
        let validator_data = validator_data(&policies, ECDSA_SIGNER, signer.as_slice(), [0, 0]);
        let pid = derive_permission_id(&policies, ECDSA_SIGNER, signer.as_slice(), [0, 0]);
        let permission = decode_permission_data(&validator_data).map_err(|e| format!("own permission: {e}"))?;
        if permission.signer.address != Some(signer) || permission.policies.len() != 4 {
            return Err(format!("own permission decodes unexpectedly: {permission:?}"));
        }
        Ok(Self {
            key,
            signer,
            pid,
            validator_data,
            call_data: execute_call(TARGET, U256::ZERO, &transfer_data(RECIPIENT, AMOUNT)),
        })
    }

    /// Kernel nonce `0x00 (default mode) ‖ 0x02 (permission) ‖ pid ‖ 0^16 ‖ lane ‖ sequence`.
    fn nonce(&self, lane: u16, sequence: u64) -> U256 {
        let mut n = [0u8; 32];
        n[1] = 0x02;
        n[2..6].copy_from_slice(self.pid.as_slice());
        n[22..24].copy_from_slice(&lane.to_be_bytes());
        n[24..].copy_from_slice(&sequence.to_be_bytes());
        U256::from_be_bytes(n)
    }

    /// `eth_sendUserOperation` params for `sender`'s op with this sequence, signed.
    fn params(&self, sender: Address, sequence: u64) -> Result<Box<RawValue>, String> {
        let mut op = serde_json::json!({
            "sender": sender.to_checksum(None),
            "nonce": format!("{:#x}", self.nonce(0, sequence)),
            "callData": hex_bytes(&self.call_data),
            "callGasLimit": "0x5c5f",
            "verificationGasLimit": "0x3cf87",
            "preVerificationGas": "0xbe84",
            "maxFeePerGas": "0x3bade899",
            "maxPriorityFeePerGas": "0x3b9aca00",
            "paymasterVerificationGasLimit": "0x0",
            "paymasterPostOpGasLimit": "0x0",
            "signature": hex_bytes(&[0xff; 66]),
        });
        let hash = userop::parse_user_operation_str(&op.to_string(), EntryPointVersion::V07)
            .map_err(|e| format!("own op does not parse: {e}"))?
            .hash(ENTRY_POINT, CHAIN_ID)
            .map_err(|e| e.to_string())?;
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(eip191_hash_message(hash).as_slice())
            .map_err(|e| e.to_string())?;
        let mut signature = vec![0xff];
        signature.extend_from_slice(&sig.to_bytes());
        signature.push(27 + recid.to_byte());
        op["signature"] = serde_json::Value::String(hex_bytes(&signature));
        serde_json::value::to_raw_value(&serde_json::json!([op, ENTRY_POINT.to_checksum(None)]))
            .map_err(|e| e.to_string())
    }
}

/// The `n` Kernel accounts the session is registered for: [`ACCOUNT`], then addresses derived
/// from a fixed seed (reproducible runs).
fn accounts(n: usize) -> Vec<Address> {
    (0..n)
        .map(|i| {
            if i == 0 {
                ACCOUNT
            } else {
                Address::from_slice(&keccak256(format!("opgate decision bench account {i}"))[12..])
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// opgate and Redis

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// opgate built in process: Redis store under `prefix`, one chain, one operator policy.
async fn build_app(redis: &str, prefix: &str, closed_upstream: SocketAddr) -> Result<App, String> {
    let toml = format!(
        r#"
[store]
backend = "redis"
url = "{redis}"
prefix = "{prefix}"
timeout = "2s"
dedupe_ttl = "30m"

[[chains]]
id = {CHAIN_ID}
upstreams = ["http://{closed_upstream}/"]

[[policies]]
name = "bench-budget"
[policies.match]
chains = [{CHAIN_ID}]
[policies.limits]
counter_scope = "session"
windows = "epoch"
ops = {{ count = 1000000000000, period = "1d" }}
gas_wei = {{ amount = "1000000000 ether", period = "1d" }}
"#
    );
    let config = Config::from_toml(&toml, &Overrides::default()).map_err(|e| format!("bench config: {e}"))?;
    App::build(config).await.map_err(|e| e.to_string())
}

/// A plain connection for INFO, SCAN, UNLINK and CLUSTER (not opgate's).
async fn control(redis: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(redis).map_err(|e| format!("Redis URL {redis}: {e}"))?;
    tokio::time::timeout(Duration::from_secs(3), client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("Redis at {redis} did not answer within 3 s"))?
        .map_err(|e| format!("Redis at {redis}: {e}"))
}

/// One Redis server the bench reads figures from and cleans up on.
struct Node {
    /// `host:port` (one server: the URL as given).
    addr: String,
    /// A primary (one server: always); replicas are only read for their CPU.
    primary: bool,
    /// The slot ranges a cluster primary serves.
    slots: Vec<(u16, u16)>,
    con: redis::aio::MultiplexedConnection,
}

impl Node {
    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }

    fn slot_count(&self) -> u32 {
        self.slots.iter().map(|(a, b)| u32::from(*b) - u32::from(*a) + 1).sum()
    }
}

/// The servers behind a store URL: one server, or every node of a Redis Cluster.
struct Servers {
    cluster: bool,
    /// Primaries first (sorted by address), then replicas.
    nodes: Vec<Node>,
}

impl Servers {
    /// Connects to the server of a `redis://` URL, or to every node of a `redis+cluster://`
    /// cluster, found with `CLUSTER NODES` on the first seed node that answers.
    async fn connect(url: &str) -> Result<Self, String> {
        let target = Target::parse(url).map_err(|e| format!("Redis URL {url}: {e}"))?;
        match target.topology {
            Topology::Single => Ok(Self {
                cluster: false,
                nodes: vec![Node {
                    addr: url.to_owned(),
                    primary: true,
                    slots: Vec::new(),
                    con: control(url).await?,
                }],
            }),
            Topology::Cluster => {
                if target.tls || target.username.is_some() || target.password.is_some() {
                    return Err("the bench reads a cluster's nodes over plain TCP without credentials".into());
                }
                let mut seed = None;
                let mut last = String::new();
                for (host, port) in &target.nodes {
                    match control(&format!("redis://{host}:{port}")).await {
                        Ok(c) => {
                            seed = Some(c);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let mut seed = seed.ok_or_else(|| format!("no seed node of {url} answers: {last}"))?;
                let text: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut seed)
                    .await
                    .map_err(|e| format!("CLUSTER NODES: {e}"))?;
                let mut nodes = Vec::new();
                for (addr, primary, slots) in parse_cluster_nodes(&text)? {
                    let con = control(&format!("redis://{addr}")).await?;
                    nodes.push(Node {
                        addr,
                        primary,
                        slots,
                        con,
                    });
                }
                nodes.sort_by(|a, b| (!a.primary, &a.addr).cmp(&(!b.primary, &b.addr)));
                let served: u32 = nodes.iter().map(Node::slot_count).sum();
                if served != 16_384 {
                    return Err(format!("the cluster's primaries serve {served} of 16384 slots"));
                }
                Ok(Self { cluster: true, nodes })
            }
            Topology::Sentinel => Err("the bench takes one server or a cluster, not Sentinel".into()),
        }
    }

    fn primaries(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.primary)
    }

    /// `single server` or `cluster (3 primaries, 3 replicas)`.
    fn describe(&self) -> String {
        if self.cluster {
            let p = self.primaries().count();
            format!("Redis Cluster ({p} primaries, {} replicas)", self.nodes.len() - p)
        } else {
            "single Redis server".into()
        }
    }

    /// Index (among the primaries) of the primary serving `key`.
    async fn primary_of(&self, key: &str) -> Result<usize, String> {
        if !self.cluster {
            return Ok(0);
        }
        let mut con = self.nodes[0].con.clone();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut con)
            .await
            .map_err(|e| format!("CLUSTER KEYSLOT: {e}"))?;
        self.primaries()
            .position(|n| n.serves(slot))
            .ok_or_else(|| format!("no primary serves slot {slot}"))
    }
}

/// A node as `CLUSTER NODES` lists it: `host:port`, whether a primary, its slot ranges.
type ListedNode = (String, bool, Vec<(u16, u16)>);

/// Every connected node in `CLUSTER NODES` output.
fn parse_cluster_nodes(text: &str) -> Result<Vec<ListedNode>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (f.get(1), f.get(2)) else {
            return Err(format!("CLUSTER NODES line `{line}`"));
        };
        // `ip:port@bus[,hostname]`
        let addr = addr.split(['@', ',']).next().unwrap_or_default();
        if flags.contains("fail") || flags.contains("noaddr") || addr.starts_with(':') {
            continue;
        }
        let primary = flags.contains("master");
        let mut slots = Vec::new();
        for range in f.iter().skip(8).filter(|r| !r.starts_with('[')) {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let parse = |s: &str| {
                s.parse::<u16>()
                    .map_err(|_| format!("CLUSTER NODES slot range `{range}`"))
            };
            slots.push((parse(a)?, parse(b)?));
        }
        out.push((addr.to_owned(), primary, slots));
    }
    Ok(out)
}

/// Deletes every key matching `pattern` on every primary (SCAN + UNLINK each key, one pipeline
/// per SCAN batch: on a cluster, keys of different slots cannot share a command); returns how many.
async fn delete_keys(servers: &Servers, pattern: &str) -> Result<usize, String> {
    let mut deleted = 0;
    for node in servers.primaries() {
        deleted += scan_keys(node, pattern, true).await?;
    }
    Ok(deleted)
}

/// How many keys match `pattern` on each primary.
async fn count_keys(servers: &Servers, pattern: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for node in servers.primaries() {
        out.push(scan_keys(node, pattern, false).await?);
    }
    Ok(out)
}

/// SCANs `node` for `pattern`, deleting what it finds when `delete`; returns how many keys.
async fn scan_keys(node: &Node, pattern: &str, delete: bool) -> Result<usize, String> {
    let mut con = node.con.clone();
    let mut cursor: u64 = 0;
    let mut found = 0;
    for _ in 0..SCAN_CALLS_MAX {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
            .map_err(|e| format!("SCAN on {}: {e}", node.addr))?;
        if delete && !keys.is_empty() {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("UNLINK").arg(key);
            }
            let n: Vec<usize> = pipe
                .query_async(&mut con)
                .await
                .map_err(|e| format!("UNLINK on {}: {e}", node.addr))?;
            found += n.iter().sum::<usize>();
        } else {
            found += keys.len();
        }
        cursor = next;
        if cursor == 0 {
            return Ok(found);
        }
    }
    Err(format!("SCAN over {pattern} on {} did not finish", node.addr))
}

async fn info(node: &Node, section: &str) -> Result<String, String> {
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut node.con.clone())
        .await
        .map_err(|e| format!("INFO {section} on {}: {e}", node.addr))
}

/// One node's `INFO commandstats`: calls and total microseconds per command.
async fn command_stats(node: &Node) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let text = info(node, "commandstats").await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let field = |key: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(name.to_string(), (field("calls"), field("usec")));
    }
    Ok(out)
}

/// `INFO commandstats` of every primary.
async fn primaries_stats(servers: &Servers) -> Result<Vec<BTreeMap<String, (u64, u64)>>, String> {
    let mut out = Vec::new();
    for node in servers.primaries() {
        out.push(command_stats(node).await?);
    }
    Ok(out)
}

/// Each node's CPU time so far (`INFO cpu`: user + system), in nanoseconds, in `servers.nodes`
/// order.
async fn nodes_cpu(servers: &Servers) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for node in &servers.nodes {
        let text = info(node, "cpu").await?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        out.push(((get("used_cpu_user") + get("used_cpu_sys")) * 1e9) as u64);
    }
    Ok(out)
}

/// The Redis servers' CPU time so far, summed over every node (replicas included), in nanoseconds.
async fn redis_cpu(servers: &Servers) -> Result<u64, String> {
    Ok(nodes_cpu(servers).await?.iter().sum())
}

// ---------------------------------------------------------------------------------------------
// MONITOR: the commands clients send to each of a cluster's primaries, by name

/// Per primary, what clients sent, read from `MONITOR` (commands run by scripts left out).
struct Monitors {
    states: Vec<Arc<std::sync::Mutex<MonitorState>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// `ECHO` marks sent to each primary so far.
    marks: u64,
}

#[derive(Default)]
struct MonitorState {
    counts: BTreeMap<String, u64>,
    marks: u64,
    ended: Option<String>,
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// `(source, first two arguments)` of a `MONITOR` line: `+<time> [<db> <source>] "<cmd>" "<arg>" …`
/// (`source` is `lua` for a command a script ran).
fn parse_monitor_line(line: &str) -> Option<(&str, Vec<String>)> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let source = line[open + 1..close].split_once(' ')?.1;
    let mut args = Vec::new();
    let mut chars = line[close + 1..].chars();
    while args.len() < 2 {
        // The next quoted argument; escapes (`\"`, `\\`, `\xNN`) keep their escaped form.
        if !chars.by_ref().any(|c| c == '"') {
            break;
        }
        let mut arg = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => {
                    arg.push('\\');
                    arg.push(chars.next()?);
                }
                c => arg.push(c),
            }
        }
        args.push(arg);
    }
    Some((source, args))
}

impl Monitors {
    /// Starts a `MONITOR` reader on every primary.
    async fn start(servers: &Servers) -> Result<Self, String> {
        let mut states = Vec::new();
        let mut readers = Vec::new();
        for node in servers.primaries() {
            let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(&node.addr))
                .await
                .map_err(|_| format!("MONITOR: {} did not accept within 3 s", node.addr))?
                .map_err(|e| format!("MONITOR on {}: {e}", node.addr))?;
            let mut reader = BufReader::new(stream);
            reader
                .get_mut()
                .write_all(b"*1\r\n$7\r\nMONITOR\r\n")
                .await
                .map_err(|e| format!("MONITOR on {}: {e}", node.addr))?;
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(3), reader.read_line(&mut line))
                .await
                .map_err(|_| format!("MONITOR on {}: no answer within 3 s", node.addr))?
                .map_err(|e| format!("MONITOR on {}: {e}", node.addr))?;
            if line.trim_end() != "+OK" {
                return Err(format!("MONITOR on {} answered {}", node.addr, line.trim_end()));
            }
            let state = Arc::new(std::sync::Mutex::new(MonitorState::default()));
            let shared = state.clone();
            readers.push(tokio::spawn(async move {
                let mut line = String::new();
                loop {
                    line.clear();
                    let end = match reader.read_line(&mut line).await {
                        Ok(0) => Some("closed".to_string()),
                        Err(e) => Some(e.to_string()),
                        Ok(_) => None,
                    };
                    let Ok(mut s) = shared.lock() else { return };
                    if let Some(e) = end {
                        s.ended = Some(e);
                        return;
                    }
                    let Some((source, args)) = parse_monitor_line(line.trim_end()) else {
                        *s.counts.entry("(unparsed)".into()).or_default() += 1;
                        continue;
                    };
                    if source == "lua" {
                        continue;
                    }
                    if args.first().is_some_and(|a| a.eq_ignore_ascii_case("ECHO"))
                        && args.get(1).is_some_and(|a| a.starts_with(MONITOR_MARK))
                    {
                        s.marks += 1;
                        continue;
                    }
                    let parts: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
                    *s.counts.entry(label(&parts)).or_default() += 1;
                }
            }));
            states.push(state);
        }
        Ok(Self {
            states,
            readers,
            marks: 0,
        })
    }

    /// The commands each primary received since the last call (or the start), once every reader
    /// has caught up with them: an `ECHO` mark sent to each primary after them must have shown.
    async fn take(&mut self, servers: &Servers) -> Result<Vec<BTreeMap<String, u64>>, String> {
        self.marks += 1;
        for node in servers.primaries() {
            let _: String = redis::cmd("ECHO")
                .arg(format!("{MONITOR_MARK}-{}", self.marks))
                .query_async(&mut node.con.clone())
                .await
                .map_err(|e| format!("ECHO on {}: {e}", node.addr))?;
        }
        let deadline = Instant::now() + MONITOR_SYNC_TIMEOUT;
        loop {
            let mut behind = false;
            for s in &self.states {
                let s = s.lock().map_err(|_| "a MONITOR reader panicked".to_string())?;
                if let Some(e) = &s.ended {
                    return Err(format!("a MONITOR connection ended: {e}"));
                }
                behind |= s.marks < self.marks;
            }
            if !behind {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the MONITOR readers did not catch up within {MONITOR_SYNC_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.states
            .iter()
            .map(|s| {
                s.lock()
                    .map(|mut s| std::mem::take(&mut s.counts))
                    .map_err(|_| "a MONITOR reader panicked".to_string())
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// A counting proxy: the commands opgate sends to Redis, by name

/// `host:port` of a `redis://host:port[/db]` URL.
fn redis_addr(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("the proxy needs a redis:// URL, not {url}"))?;
    let (hostport, db) = rest.split_once('/').map_or((rest, ""), |(h, d)| (h, d));
    if hostport.contains('@') {
        return Err("the round-trip proxy does not take a URL with credentials".into());
    }
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .map_err(|e| format!("{hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport} does not resolve"))?;
    Ok((addr, db.to_string()))
}

// ---------------------------------------------------------------------------------------------
// The load driver

struct Bench {
    gate: Arc<Gate>,
    chain: Arc<Chain>,
    ops: Arc<Vec<Box<RawValue>>>,
}

async fn decide_one(gate: &Gate, chain: &Chain, params: &RawValue) -> Result<(), String> {
    match tokio::time::timeout(DECISION_TIMEOUT, pipeline::decide(gate, chain, Some(params))).await {
        Ok(Ok(d)) if d.charged() => Ok(()),
        Ok(Ok(_)) => Err("a decision passed but charged nothing (was its op hash already reserved?)".into()),
        Ok(Err(e)) => Err(format!(
            "a decision was refused: {} {}",
            e.error.message(),
            e.error.data().map(|d| d.get()).unwrap_or_default()
        )),
        Err(_) => Err(format!("a decision took more than {DECISION_TIMEOUT:?}")),
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

fn record(hist: &mut Histogram<u64>, since: Instant) {
    let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
    hist.saturating_record(ns.clamp(1, HIST_MAX_NS));
}

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    /// Open loop: the rate at which decisions were actually started (per second).
    started_per_sec: f64,
    /// Open loop: p99 of how late decisions were started against their schedule (ns).
    lag_p99: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    decisions: u64,
    per_sec: f64,
    /// This process's CPU per decision (ns).
    cpu: u64,
    /// The Redis servers' CPU per decision (ns), from `INFO cpu` (whole servers, summed over every
    /// node of a cluster, replicas included).
    redis_cpu: u64,
}

/// Decides `ops[range]` with `tasks` concurrent tasks; returns the merged histogram and the wall
/// time from the first task's start to the last one's end.
async fn drive(b: &Bench, range: std::ops::Range<usize>, tasks: usize) -> Result<(Histogram<u64>, Duration), String> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let start_line = Arc::new(Barrier::new(tasks));
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let (gate, chain, ops, next, start_line) = (
            b.gate.clone(),
            b.chain.clone(),
            b.ops.clone(),
            next.clone(),
            start_line.clone(),
        );
        let end = range.end;
        set.spawn(async move {
            let mut hist = histogram();
            start_line.wait().await;
            let started = Instant::now();
            for _ in 0..end {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let t = Instant::now();
                decide_one(&gate, &chain, &ops[i]).await?;
                record(&mut hist, t);
            }
            Ok::<_, String>((hist, started, Instant::now()))
        });
    }
    let mut hist = histogram();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let mut failure = None;
    while let Some(joined) = set.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok((h, s, e)) => {
                hist.add(&h).map_err(|e| e.to_string())?;
                first = Some(first.map_or(s, |f| f.min(s)));
                last = Some(last.map_or(e, |l| l.max(e)));
            }
            Err(e) => {
                failure.get_or_insert(e);
                set.abort_all();
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let wall = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f),
        _ => Duration::ZERO,
    };
    Ok((hist, wall))
}

/// Starts `ops[range]` on a schedule of `rate` decisions per second, whatever is in flight (an
/// open loop: a slow decision does not delay the next one). The schedule is kept at the tokio
/// timer's granularity (1 ms): every decision due by a tick starts at that tick, as requests read
/// in one wake-up of a server would. (A thread of its own sleeping until each start time was
/// tried: waking a worker from outside the runtime for every decision cost more CPU than the
/// decision.) A decision's latency runs from its start; how late starts were against the
/// schedule is returned too, with the rate at which decisions actually started.
async fn drive_open(
    b: &Bench,
    range: std::ops::Range<usize>,
    rate: usize,
) -> Result<(Histogram<u64>, Duration, Histogram<u64>, f64), String> {
    let n = range.len();
    let period = 1.0 / rate as f64;
    let mut set = JoinSet::new();
    let mut hist = histogram();
    let mut lag = histogram();
    let mut last_done = None::<Instant>;
    let mut reap = |joined: Result<Result<(u64, Instant), String>, tokio::task::JoinError>,
                    hist: &mut Histogram<u64>| {
        let (ns, done) = joined.map_err(|e| e.to_string())??;
        hist.saturating_record(ns.clamp(1, HIST_MAX_NS));
        last_done = Some(last_done.map_or(done, |l: Instant| l.max(done)));
        Ok::<_, String>(())
    };
    let t0 = Instant::now();
    let due = |i: usize| t0 + Duration::from_secs_f64(i as f64 * period);
    let mut i = 0;
    let mut last_start = t0;
    while i < n {
        if due(i) > Instant::now() {
            tokio::time::sleep_until(due(i).into()).await;
        }
        let now = Instant::now();
        while i < n && due(i) <= now {
            let ns = u64::try_from(now.duration_since(due(i)).as_nanos()).unwrap_or(u64::MAX);
            lag.saturating_record(ns.clamp(1, HIST_MAX_NS));
            let (gate, chain, ops) = (b.gate.clone(), b.chain.clone(), b.ops.clone());
            let at = range.start + i;
            set.spawn(async move {
                let t = Instant::now();
                decide_one(&gate, &chain, &ops[at]).await?;
                let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                Ok::<_, String>((ns, Instant::now()))
            });
            last_start = now;
            i += 1;
        }
        while let Some(joined) = set.try_join_next() {
            if let Err(e) = reap(joined, &mut hist) {
                set.abort_all();
                return Err(e);
            }
        }
    }
    let started_secs = last_start.duration_since(t0).as_secs_f64();
    while let Some(joined) = set.join_next().await {
        if let Err(e) = reap(joined, &mut hist) {
            set.abort_all();
            return Err(e);
        }
    }
    let wall = last_done.map_or(Duration::ZERO, |l| l.duration_since(t0));
    let started_per_sec = if started_secs > 0.0 {
        n.saturating_sub(1) as f64 / started_secs
    } else {
        0.0
    };
    Ok((hist, wall, lag, started_per_sec))
}

/// How a run applies load.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// `tasks` concurrent tasks, each starting its next decision when its previous one is decided.
    Closed { tasks: usize },
    /// Decisions started at `rate` per second, whatever is in flight.
    Open { rate: usize },
}

/// One measured run: warm-up, then `n` decisions under `load`, with CPU accounting.
async fn measure(
    b: &Bench,
    servers: &Servers,
    op_pattern: &str,
    warmup: usize,
    n: usize,
    load: Load,
) -> Result<Figures, String> {
    // Every op must make a full reservation: forget the op records of the previous run.
    delete_keys(servers, op_pattern).await?;
    if warmup > 0 {
        match load {
            Load::Closed { tasks } => drive(b, 0..warmup, tasks).await.map(|_| ())?,
            Load::Open { rate } => drive_open(b, 0..warmup, rate).await.map(|_| ())?,
        }
    }
    let cpu0 = process_cpu();
    let redis0 = redis_cpu(servers).await?;
    let (hist, wall, lag, started_per_sec) = match load {
        Load::Closed { tasks } => {
            let (hist, wall) = drive(b, warmup..warmup + n, tasks).await?;
            (hist, wall, None, 0.0)
        }
        Load::Open { rate } => {
            let (hist, wall, lag, started) = drive_open(b, warmup..warmup + n, rate).await?;
            (hist, wall, Some(lag), started)
        }
    };
    let redis1 = redis_cpu(servers).await?;
    let cpu1 = process_cpu();
    let count = hist.len().max(1);
    let secs = wall.as_secs_f64();
    Ok(Figures {
        started_per_sec,
        lag_p99: lag.map_or(0, |l| l.value_at_quantile(0.99)),
        p50: hist.value_at_quantile(0.50),
        p90: hist.value_at_quantile(0.90),
        p99: hist.value_at_quantile(0.99),
        p999: hist.value_at_quantile(0.999),
        max: hist.max(),
        decisions: hist.len(),
        per_sec: if secs > 0.0 { hist.len() as f64 / secs } else { 0.0 },
        cpu: match (cpu0, cpu1) {
            (Some(a), Some(b)) => b.saturating_sub(a) / count,
            _ => 0,
        },
        redis_cpu: redis1.saturating_sub(redis0) / count,
    })
}

// ---------------------------------------------------------------------------------------------
// Round trips and breakdown

struct RoundTrips {
    /// How the client's commands were counted.
    counted_by: &'static str,
    /// Commands of the first decision, with an empty registry cache.
    cold: BTreeMap<String, u64>,
    /// Commands per decision over the steady-state batch.
    steady: BTreeMap<String, f64>,
    /// The same, per primary (one server: one entry).
    steady_by_primary: Vec<BTreeMap<String, f64>>,
    steady_decisions: usize,
    /// Server-side `INFO commandstats` per decision over a sequential batch on the direct
    /// connection, summed over the primaries: (calls, µs per call), script-internal commands
    /// included.
    server: BTreeMap<String, (f64, f64)>,
}

/// What counts the commands a probe opgate sends: a proxy in front of one server, or `MONITOR`
/// on every primary of a cluster.
enum Counter {
    Proxy(Counts, tokio::task::JoinHandle<()>),
    Monitor(Monitors),
}

impl Counter {
    /// The commands sent since the last call, per primary.
    async fn take(&mut self, servers: &Servers) -> Result<Vec<BTreeMap<String, u64>>, String> {
        match self {
            Counter::Proxy(counts, _) => Ok(vec![counts
                .lock()
                .map(|mut c| std::mem::take(&mut *c))
                .unwrap_or_default()]),
            Counter::Monitor(m) => m.take(servers).await,
        }
    }

    /// Stops counting: the proxy stops accepting, and the MONITOR connections are closed (a
    /// monitored server spends CPU on every command, script-internal ones included).
    async fn stop(&mut self) {
        match self {
            Counter::Proxy(_, proxy) => proxy.abort(),
            Counter::Monitor(m) => {
                for r in m.readers.drain(..) {
                    r.abort();
                    let _ = r.await;
                }
            }
        }
    }
}

/// Sums per-primary counts.
fn summed<V: Copy + Default + std::ops::AddAssign>(by_node: &[BTreeMap<String, V>]) -> BTreeMap<String, V> {
    let mut out = BTreeMap::new();
    for node in by_node {
        for (k, v) in node {
            *out.entry(k.clone()).or_default() += *v;
        }
    }
    out
}

/// Sums per-primary `INFO commandstats` (calls, µs).
fn summed_stats(by_node: &[BTreeMap<String, (u64, u64)>]) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::<String, (u64, u64)>::new();
    for node in by_node {
        for (k, (calls, usec)) in node {
            let e = out.entry(k.clone()).or_default();
            e.0 += calls;
            e.1 += usec;
        }
    }
    out
}

/// Counts the commands decisions send, on a second opgate with an empty registry cache (one server:
/// through a counting proxy; a cluster: with `MONITOR` on every primary); then reads `INFO
/// commandstats` of every primary around a batch on the first opgate.
async fn round_trips(
    args: &Args,
    b: &Bench,
    url: &str,
    servers: &Servers,
    prefix: &str,
    closed: SocketAddr,
    op_pattern: &str,
) -> Result<RoundTrips, String> {
    let (mut counter, probe_url) = if servers.cluster {
        (Counter::Monitor(Monitors::start(servers).await?), url.to_owned())
    } else {
        let (upstream, db) = redis_addr(url)?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let proxy_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let counts: Counts = Arc::default();
        let proxy = tokio::spawn(serve_proxy(listener, upstream, counts.clone()));
        let probe_url = if db.is_empty() {
            format!("redis://{proxy_addr}")
        } else {
            format!("redis://{proxy_addr}/{db}")
        };
        (Counter::Proxy(counts, proxy), probe_url)
    };
    let outcome = async {
        // Same prefix: it sees the permission the first opgate registered, but its registry cache
        // is empty, as in a replica that has not served this session yet.
        let app = build_app(&probe_url, prefix, closed).await?;
        let probe = Bench {
            gate: app.gate().clone(),
            chain: app.chains()[0].clone(),
            ops: b.ops.clone(),
        };
        delete_keys(servers, op_pattern).await?;
        counter.take(servers).await?; // the PING made at start-up
        drive(&probe, 0..1, 1).await?;
        let cold = summed(&counter.take(servers).await?);
        // The first op of every other account, uncounted: each account's registry entries are
        // cached after it, as the first opgate's are after its warm-up.
        let accounts = args.accounts.min(b.ops.len());
        if accounts > 1 {
            drive(&probe, 1..accounts, 16.min(accounts - 1)).await?;
        }
        counter.take(servers).await?;
        let n = args.probe.min(b.ops.len() - accounts);
        drive(&probe, accounts..accounts + n, 16.min(n)).await?;
        let per_decision = |m: BTreeMap<String, u64>| -> BTreeMap<String, f64> {
            m.into_iter().map(|(k, v)| (k, v as f64 / n as f64)).collect()
        };
        let steady_by_primary: Vec<_> = counter.take(servers).await?.into_iter().map(per_decision).collect();
        let steady = summed(&steady_by_primary);
        counter.stop().await;

        // The servers' view, on the first opgate: every command they ran, script-internal ones
        // included, by anyone (a server may be shared).
        delete_keys(servers, op_pattern).await?;
        let before = summed_stats(&primaries_stats(servers).await?);
        drive(b, 0..n, 1).await?;
        let after = summed_stats(&primaries_stats(servers).await?);
        let server = after
            .iter()
            // `info` is this bench reading the figures; `replconf` is replicas acknowledging.
            .filter(|(name, _)| !matches!(name.as_str(), "info" | "replconf"))
            .filter_map(|(name, (calls, usec))| {
                let (c0, u0) = before.get(name).copied().unwrap_or_default();
                let calls = calls.saturating_sub(c0);
                (calls > 0).then(|| {
                    (
                        name.clone(),
                        (calls as f64 / n as f64, usec.saturating_sub(u0) as f64 / calls as f64),
                    )
                })
            })
            .collect();
        Ok::<_, String>(RoundTrips {
            counted_by: if servers.cluster {
                "every primary's MONITOR (commands run by scripts left out)"
            } else {
                "a proxy between opgate and Redis"
            },
            cold,
            steady,
            steady_by_primary,
            steady_decisions: n,
            server,
        })
    }
    .await;
    counter.stop().await;
    outcome
}

#[derive(Default)]
struct Stage {
    hist: Option<Histogram<u64>>,
    total_ns: u128,
}

impl Stage {
    fn add(&mut self, since: Instant) {
        let ns = since.elapsed().as_nanos();
        self.total_ns += ns;
        record(self.hist.get_or_insert_with(histogram), since);
    }

    fn mean(&self) -> f64 {
        let n = self.hist.as_ref().map_or(0, |h| h.len());
        if n == 0 {
            0.0
        } else {
            self.total_ns as f64 / n as f64
        }
    }

    fn p50(&self) -> u64 {
        self.hist.as_ref().map_or(0, |h| h.value_at_quantile(0.5))
    }

    fn p99(&self) -> u64 {
        self.hist.as_ref().map_or(0, |h| h.value_at_quantile(0.99))
    }
}

/// Where one decision's time goes, one at a time: the steps of `decide` timed separately, and
/// parts of them (parse and hash, decoding, ECDSA recovery) timed again on their own.
async fn breakdown(
    args: &Args,
    b: &Bench,
    session: &Session,
    servers: &Servers,
    op_pattern: &str,
) -> Result<Vec<(&'static str, Stage)>, String> {
    delete_keys(servers, op_pattern).await?;
    let n = args.probe.min(b.ops.len());
    let (gate, chain) = (&*b.gate, &*b.chain);
    let mut prepare = Stage::default();
    let mut evaluate = Stage::default();
    let mut reserve = Stage::default();
    let mut total = Stage::default();
    let mut parse = Stage::default();
    let mut registry = Stage::default();
    let mut decode = Stage::default();
    let mut raw = Stage::default();
    let mut eip191 = Stage::default();
    let mut ping = Stage::default();
    for params in b.ops.iter().take(n) {
        let t0 = Instant::now();
        let p = pipeline::prepare(gate, chain, Some(params))
            .await
            .map_err(|e| e.error.message().to_string())?;
        prepare.add(t0);
        let t = Instant::now();
        let ev = p.evaluate(gate, &gate.policies(), None);
        evaluate.add(t);
        let permit = ev.into_permit().map_err(|r| format!("refused: {}", r.detail))?;
        let t = Instant::now();
        let charges: Vec<_> = permit.charges().iter().map(|c| c.charge.clone()).collect();
        let r = Reservation {
            op: p.hash,
            account: p.op.sender(),
            attempt: opgate::store::new_attempt(),
            now: p.now,
            charges: &charges,
            guards: permit.guards(),
        };
        let reserved = gate.store.reserve(&r).await.map_err(|e| e.to_string())?;
        reserve.add(t);
        total.add(t0);
        if reserved != Reserved::Charged {
            return Err(format!("reservation answered {reserved:?}"));
        }
        let t = Instant::now();
        gate.store.ping().await.map_err(|e| e.to_string())?;
        ping.add(t);

        // Parts, timed again on their own.
        let items: Vec<&RawValue> = serde_json::from_str(params.get()).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let op = userop::parse_user_operation_for(items[0], ENTRY_POINT).map_err(|e| e.to_string())?;
        let hash = op.hash(ENTRY_POINT, CHAIN_ID).map_err(|e| e.to_string())?;
        parse.add(t);
        let t = Instant::now();
        let known = gate
            .registry
            .permission(CHAIN_ID, op.sender(), session.pid)
            .await
            .map_err(|e| e.to_string())?;
        registry.add(t);
        if known.is_none() {
            return Err("the registry lost the permission".into());
        }
        let t = Instant::now();
        let opts = DecodeOptions {
            chain_id: Some(CHAIN_ID),
            ..Default::default()
        };
        let decoded = opgate::explain::decode_op_with(&op, ENTRY_POINT, &opts);
        decode.add(t);
        std::hint::black_box(decoded);
        let sig = &op.signature()[1..];
        let t = Instant::now();
        let a = recover(&hash, sig).ok();
        raw.add(t);
        let t = Instant::now();
        let e = recover_eip191(&hash, sig).ok();
        eip191.add(t);
        if e != Some(session.signer) || a == Some(session.signer) {
            return Err("the session signature does not recover as expected".into());
        }
    }
    Ok(vec![
        ("decide, stepwise (sum of the three below)", total),
        (
            "1. prepare: params, parse, userOpHash, registry (cached), Kernel decoding",
            prepare,
        ),
        ("2. evaluate: every policy, incl. session-key ECDSA recovery", evaluate),
        (
            if servers.cluster {
                "3. reserve: EVALSHA on the account's primary (+ HMGET revocations on theirs, at once)"
            } else {
                "3. reserve: one EVALSHA round trip (Lua script + loopback)"
            },
            reserve,
        ),
        ("  in 1: parse the op JSON + userOpHash", parse),
        ("  in 1: registry lookup (cache hit)", registry),
        ("  in 1: Kernel decoding (explain::decode_op_with)", decode),
        ("  in 2: ECDSA recover over EIP-191(userOpHash) (the match)", eip191),
        (
            "  (ECDSA recover over the raw userOpHash: only when EIP-191 does not match)",
            raw,
        ),
        (
            if servers.cluster {
                "  (PING to every primary at once on the store's connection: 3 without the script)"
            } else {
                "  (a PING round trip on the store's connection: 3 without the script)"
            },
            ping,
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// The report

fn median<T: Copy, K: PartialOrd>(runs: &[T], key: impl Fn(&T) -> K) -> Option<T> {
    let mut v: Vec<T> = runs.to_vec();
    v.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied()
}

/// Medians of each figure over the repetitions.
fn medians(runs: &[Figures]) -> Figures {
    let m = |f: fn(&Figures) -> u64| median(runs, f).map(|r| f(&r)).unwrap_or(0);
    Figures {
        started_per_sec: median(runs, |r| r.started_per_sec).map_or(0.0, |r| r.started_per_sec),
        lag_p99: m(|f| f.lag_p99),
        p50: m(|f| f.p50),
        p90: m(|f| f.p90),
        p99: m(|f| f.p99),
        p999: m(|f| f.p999),
        max: m(|f| f.max),
        decisions: m(|f| f.decisions),
        per_sec: median(runs, |r| r.per_sec).map_or(0.0, |r| r.per_sec),
        cpu: m(|f| f.cpu),
        redis_cpu: m(|f| f.redis_cpu),
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// How a cluster's nodes shared the repetitions.
struct SpreadRow {
    addr: String,
    primary: bool,
    /// Whether the registry and revocations (`{prefix}`) live here.
    registry: bool,
    slots: u32,
    /// The bench's accounts whose hash tag this primary serves.
    accounts: usize,
    /// Reservation scripts run during the repetitions.
    evalsha: u64,
    /// CPU used during the repetitions (ns).
    cpu: u64,
    /// The bench's keys held after the breakdown (counters, its op records, the registry).
    keys: usize,
}

struct Report<'a> {
    args: &'a Args,
    url: &'a str,
    servers: &'a Servers,
    sequential: Vec<Figures>,
    concurrent: Vec<(usize, Vec<Figures>)>,
    open: Vec<(usize, Vec<Figures>)>,
    trips: RoundTrips,
    stages: Vec<(&'static str, Stage)>,
    load_before: String,
    load_after: String,
    /// Share of the machine's CPU that processes other than this one and Redis used while the
    /// repetitions ran.
    others_busy: Option<f64>,
    /// A cluster's nodes during the repetitions (empty for one server).
    spread: Vec<SpreadRow>,
}

fn print_report(r: &Report<'_>) {
    let args = r.args;
    println!();
    if args.smoke {
        println!("**Smoke run**: too short to measure anything. Run `cargo bench --bench decision`.");
        println!();
    }
    println!(
        "## Send decisions on a {} (decode + policies + Redis reserve, upstream excluded)",
        r.servers.describe()
    );
    println!();
    let others = r
        .others_busy
        .map_or_else(|| "n/a".into(), |f| format!("{:.0}%", f * 100.0));
    let redis_cpu_of = if r.servers.cluster {
        "Redis CPU is summed over every node, replicas included"
    } else {
        "Redis CPU is the server's"
    };
    println!(
        "{} tokio workers, Redis at {}; ops from {} sender accounts, round-robin; {} warm-up decisions \
         before each run; medians over {} repetitions; {redis_cpu_of}. Other processes (neither this \
         one nor Redis) used {others} of the machine's CPU during the repetitions; load average \
         before: {}, after: {}.",
        args.workers, r.url, args.accounts, args.warmup, args.reps, r.load_before, r.load_after
    );
    println!();
    println!("Closed loop (each task starts its next decision when the previous one is decided):");
    println!();
    println!(
        "| run | decisions | p50 (µs) | p90 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | decisions/s | \
         process CPU/decision (µs) | Redis CPU/decision (µs) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let row = |name: String, f: &Figures| {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            f.decisions,
            us(f.p50),
            us(f.p90),
            us(f.p99),
            us(f.p999),
            us(f.max),
            f.per_sec,
            us(f.cpu),
            us(f.redis_cpu)
        );
    };
    if !r.sequential.is_empty() {
        row("sequential (1 in flight)".into(), &medians(&r.sequential));
    }
    for (c, runs) in &r.concurrent {
        row(format!("C={c}"), &medians(runs));
    }
    println!();
    if !r.open.is_empty() {
        println!(
            "Open loop (decisions started on a fixed schedule at the 1 ms timer's granularity, whatever \
             is in flight, for {} s per rate; latency from each decision's start):",
            args.open_secs
        );
        println!();
        println!(
            "| offered/s | started/s | decided/s | p50 (µs) | p90 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | \
             start lag p99 (µs) | process CPU/decision (µs) | Redis CPU/decision (µs) |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (rate, runs) in &r.open {
            let f = medians(runs);
            println!(
                "| {rate} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f.started_per_sec,
                f.per_sec,
                us(f.p50),
                us(f.p90),
                us(f.p99),
                us(f.p999),
                us(f.max),
                us(f.lag_p99),
                us(f.cpu),
                us(f.redis_cpu)
            );
        }
        println!();
    }

    println!(
        "Redis commands per decision, counted by {} (a second opgate, same store, empty registry \
         cache; the first op of every other account decided uncounted before the steady batch):",
        r.trips.counted_by
    );
    println!();
    let by_primary = r.servers.cluster;
    let primaries: Vec<&Node> = r.servers.primaries().collect();
    let per_node_head = primaries
        .iter()
        .map(|n| n.addr.as_str())
        .collect::<Vec<_>>()
        .join(" / ");
    if by_primary {
        println!(
            "| command | first decision (cold cache) | per decision, next {} (C=16) | by primary ({per_node_head}) |",
            r.trips.steady_decisions
        );
        println!("|---|---:|---:|---:|");
    } else {
        println!(
            "| command | first decision (cold cache) | per decision, next {} (C=16) |",
            r.trips.steady_decisions
        );
        println!("|---|---:|---:|");
    }
    let mut names: Vec<&String> = r.trips.cold.keys().chain(r.trips.steady.keys()).collect();
    names.sort();
    names.dedup();
    let by_node = |name: Option<&str>| {
        r.trips
            .steady_by_primary
            .iter()
            .map(|m| {
                let v = match name {
                    Some(name) => m.get(name).copied().unwrap_or(0.0),
                    None => m.values().sum(),
                };
                format!("{v:.4}")
            })
            .collect::<Vec<_>>()
            .join(" / ")
    };
    for name in &names {
        print!(
            "| {name} | {} | {:.4} |",
            r.trips.cold.get(*name).copied().unwrap_or(0),
            r.trips.steady.get(*name).copied().unwrap_or(0.0)
        );
        if by_primary {
            print!(" {} |", by_node(Some(name.as_str())));
        }
        println!();
    }
    let steady_total: f64 = r.trips.steady.values().sum();
    print!(
        "| **total** | {} | **{steady_total:.4}** |",
        r.trips.cold.values().sum::<u64>()
    );
    if by_primary {
        print!(" {} |", by_node(None));
    }
    println!();
    println!();
    println!(
        "Server side (`INFO commandstats` delta over a sequential batch{}, script-internal commands included):",
        if r.servers.cluster {
            ", summed over the primaries"
        } else {
            ""
        }
    );
    println!();
    println!("| command | calls/decision | µs/call |");
    println!("|---|---:|---:|");
    for (name, (calls, usec)) in &r.trips.server {
        println!("| {name} | {calls:.3} | {usec:.2} |");
    }
    println!();
    println!("Where one decision's time goes (sequential, {} decisions):", args.probe);
    println!();
    println!("| step | mean (µs) | p50 (µs) | p99 (µs) |");
    println!("|---|---:|---:|---:|");
    for (name, s) in &r.stages {
        println!(
            "| {name} | {:.1} | {} | {} |",
            s.mean() / 1_000.0,
            us(s.p50()),
            us(s.p99())
        );
    }
    println!();
    if !r.spread.is_empty() {
        let scripts: u64 = r.spread.iter().map(|n| n.evalsha).sum();
        println!(
            "Spread over the cluster during the repetitions ({scripts} reservation scripts; `INFO commandstats` \
             `EVALSHA` calls and `INFO cpu` of each node, before and after; CPU/decision divides by all \
             {scripts}):"
        );
        println!();
        println!(
            "| node | role | slots | bench accounts | reservation scripts (EVALSHA) | share | CPU (s) | \
             CPU/decision (µs) | bench keys at the end |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for n in &r.spread {
            let role = match (n.primary, n.registry) {
                (true, true) => "primary (+ registry, revocations)",
                (true, false) => "primary",
                (false, _) => "replica",
            };
            let share = if scripts > 0 {
                n.evalsha as f64 * 100.0 / scripts as f64
            } else {
                0.0
            };
            if n.primary {
                println!(
                    "| {} | {role} | {} | {} | {} | {share:.1}% | {:.2} | {} | {} |",
                    n.addr,
                    n.slots,
                    n.accounts,
                    n.evalsha,
                    n.cpu as f64 / 1e9,
                    us(n.cpu / scripts.max(1)),
                    n.keys
                );
            } else {
                println!(
                    "| {} | {role} | | | | | {:.2} | {} | |",
                    n.addr,
                    n.cpu as f64 / 1e9,
                    us(n.cpu / scripts.max(1))
                );
            }
        }
        println!();
    }
    if args.smoke {
        return;
    }
    let seq = medians(&r.sequential);
    let best = r
        .concurrent
        .iter()
        .map(|(c, runs)| (*c, medians(runs)))
        .max_by(|a, b| a.1.per_sec.total_cmp(&b.1.per_sec));
    if !r.sequential.is_empty() {
        println!(
            "- p99 with one decision in flight: {} µs (target ≤ 1000: {})",
            us(seq.p99),
            met(seq.p99 <= TARGET_P99_NS)
        );
    }
    for (c, runs) in &r.concurrent {
        let f = medians(runs);
        println!(
            "- closed loop C={c}: {:.0} decisions/s, p99 {} µs (≤ 1000: {})",
            f.per_sec,
            us(f.p99),
            met(f.p99 <= TARGET_P99_NS)
        );
    }
    if let Some((c, f)) = best {
        println!(
            "- highest closed-loop throughput: {:.0} decisions/s at C={c} (target ≥ 10000: {})",
            f.per_sec,
            met(f.per_sec >= TARGET_PER_SEC)
        );
    }
    for (rate, runs) in &r.open {
        let f = medians(runs);
        // The offered rate counts as sustained when decisions kept up with it (within 2%).
        let kept_up = f.per_sec >= *rate as f64 * 0.98;
        println!(
            "- open loop at {rate}/s: decided {:.0}/s ({}), p99 {} µs (target ≤ 1000: {})",
            f.per_sec,
            if kept_up { "kept up" } else { "fell behind" },
            us(f.p99),
            met(f.p99 <= TARGET_P99_NS)
        );
    }
    let scripts = r.trips.steady.get("EVALSHA").copied().unwrap_or(0.0);
    if r.servers.cluster {
        let others: Vec<String> = r
            .trips
            .steady
            .iter()
            .filter(|(k, _)| k.as_str() != "EVALSHA")
            .map(|(k, v)| format!(", {k} {v:.4}"))
            .collect();
        println!(
            "- Redis commands per decision in the steady state: {steady_total:.4}: EVALSHA {scripts:.4} (the \
             reservation script, on the account's primary){} (target {TARGET_ROUND_TRIPS} command: {}; one \
             script on one primary per decision: {})",
            others.concat(),
            met((steady_total - TARGET_ROUND_TRIPS).abs() < 1e-9),
            met((scripts - 1.0).abs() < 1e-9)
        );
        if r.trips.steady.contains_key("HMGET revoked") {
            println!(
                "- on a cluster the store reads the revocations (`HMGET revoked`, on the registry's primary) \
                 at the same time as it runs the script (`RedisStore::reserve`): two commands, one round trip \
                 of waiting"
            );
        }
    } else {
        println!(
            "- Redis round trips per decision in the steady state: {steady_total:.4} (target {TARGET_ROUND_TRIPS}: {})",
            met((steady_total - TARGET_ROUND_TRIPS).abs() < 1e-9)
        );
    }
    if !r.spread.is_empty() {
        let scripts: Vec<u64> = r.spread.iter().filter(|n| n.primary).map(|n| n.evalsha).collect();
        let total: u64 = scripts.iter().sum();
        let most = scripts.iter().copied().max().unwrap_or(0);
        println!(
            "- reservations spread over {} primaries: the busiest ran {:.1}% of them (an even spread: {:.1}%)",
            scripts.len(),
            most as f64 * 100.0 / total.max(1) as f64,
            100.0 / scripts.len().max(1) as f64
        );
    }
}

// ---------------------------------------------------------------------------------------------

/// One store's figures, for the side-by-side summary.
struct Summary {
    name: String,
    sequential: Option<Figures>,
    concurrent: Vec<(usize, Figures)>,
    open: Vec<(usize, Figures)>,
    /// Commands per decision in the steady state, and of them reservation scripts.
    commands: f64,
    scripts: f64,
    /// The reservation step of the breakdown: p50 and p99 (ns).
    reserve: (u64, u64),
}

async fn run(args: Args) -> Result<(), String> {
    check_encoders_against_vector()?;
    let now = now_secs();
    let session = Session::new(now)?;
    let accounts = accounts(args.accounts);
    let open_max = args.rates.iter().map(|r| r * args.open_secs).max().unwrap_or(0);
    let count = (args.warmup + args.sequential.max(args.decisions).max(open_max)).max(args.probe + args.accounts);
    let t = Instant::now();
    let ops = (0..count)
        .map(|i| session.params(accounts[i % accounts.len()], i as u64))
        .collect::<Result<Vec<_>, _>>()?;
    eprintln!(
        "session key {}, permission {} of {} accounts ({ACCOUNT} first); {count} signed ops, their senders \
         round-robin over the accounts, built in {:.1} s",
        session.signer,
        session.pid,
        accounts.len(),
        t.elapsed().as_secs_f64()
    );
    let ops = Arc::new(ops);
    let mut summaries = Vec::new();
    for (i, url) in args.redis.iter().enumerate() {
        let servers = match Servers::connect(url).await {
            Ok(s) => s,
            Err(e) if args.smoke => {
                eprintln!("decision: smoke run against {url} skipped: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        eprintln!(
            "{}: {}",
            servers.describe(),
            servers
                .nodes
                .iter()
                .map(|n| format!("{} ({})", n.addr, if n.primary { "primary" } else { "replica" }))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let prefix = format!(
            "dbench-{}-{}-{i}:",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        );
        let outcome = measure_all(&args, url, &servers, &session, &accounts, &ops, &prefix).await;
        // Whatever happened, leave nothing behind: every key whose hash tag begins with the prefix.
        let all = format!("{{{prefix}*");
        match delete_keys(&servers, &all).await {
            Ok(n) => eprintln!("deleted the bench's {n} Redis keys ({all})"),
            Err(e) => eprintln!("decision: could not delete the keys {all}: {e}"),
        }
        summaries.push(outcome?);
    }
    if summaries.len() > 1 {
        print_summary(&args, &summaries);
    }
    Ok(())
}

async fn measure_all(
    args: &Args,
    url: &str,
    servers: &Servers,
    session: &Session,
    accounts: &[Address],
    ops: &Arc<Vec<Box<RawValue>>>,
    prefix: &str,
) -> Result<Summary, String> {
    // An upstream that is never called: a local port nothing listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?
    };
    let app = build_app(url, prefix, closed).await?;
    let gate = app.gate().clone();
    let chain = app.chains()[0].clone();
    for account in accounts {
        gate.registry
            .put_permission(
                CHAIN_ID,
                *account,
                session.pid,
                &StoredPermission {
                    validator_data: session.validator_data.clone(),
                    selectors: vec![FixedBytes(EXECUTE_SELECTOR)],
                    source: Source::Operator,
                    learned_at: now_secs(),
                    hook: None,
                    enable_nonce: None,
                    uninstalled: false,
                    pending: None,
                },
            )
            .await
            .map_err(|e| format!("registering the permission for {account}: {e}"))?;
    }
    eprintln!(
        "permission registered for {} accounts; key prefix {{{prefix}…}}",
        accounts.len()
    );
    let b = Bench {
        gate,
        chain,
        ops: ops.clone(),
    };
    // Op records of every account (`{<prefix>a:<account>}op:…`) and shared ones (`{<prefix>p}op:…`).
    let op_pattern = format!("{{{prefix}*}}op:*");

    // Fail loudly unless a decision passes and charges.
    delete_keys(servers, &op_pattern).await?;
    decide_one(&b.gate, &b.chain, &b.ops[0])
        .await
        .map_err(|e| format!("the first decision: {e}"))?;
    eprintln!("first decision: accepted and charged");

    let load_before = load_average();
    let machine0 = machine_cpu();
    let own0 = process_cpu();
    let nodes0 = nodes_cpu(servers).await?;
    let stats0 = primaries_stats(servers).await?;
    let redis0: u64 = nodes0.iter().sum();
    let mut sequential = Vec::new();
    let mut concurrent: Vec<(usize, Vec<Figures>)> = args.concurrency.iter().map(|c| (*c, Vec::new())).collect();
    let mut open: Vec<(usize, Vec<Figures>)> = args.rates.iter().map(|r| (*r, Vec::new())).collect();
    for rep in 1..=args.reps {
        if args.sequential > 0 {
            let load = Load::Closed { tasks: 1 };
            let f = measure(&b, servers, &op_pattern, args.warmup, args.sequential, load).await?;
            eprintln!(
                "rep {rep}/{} sequential: p50 {} µs, p99 {} µs, max {} µs, {:.0}/s",
                args.reps,
                us(f.p50),
                us(f.p99),
                us(f.max),
                f.per_sec
            );
            sequential.push(f);
        }
        if args.decisions > 0 {
            for (c, runs) in &mut concurrent {
                let load = Load::Closed { tasks: *c };
                let f = measure(&b, servers, &op_pattern, args.warmup, args.decisions, load).await?;
                eprintln!(
                    "rep {rep}/{} C={c:<3}: {:.0}/s, p50 {} µs, p99 {} µs, CPU/decision opgate {} µs + Redis {} µs",
                    args.reps,
                    f.per_sec,
                    us(f.p50),
                    us(f.p99),
                    us(f.cpu),
                    us(f.redis_cpu)
                );
                runs.push(f);
            }
        }
        for (rate, runs) in &mut open {
            let n = *rate * args.open_secs;
            if n == 0 {
                continue;
            }
            let f = measure(
                &b,
                servers,
                &op_pattern,
                args.warmup.min(n),
                n,
                Load::Open { rate: *rate },
            )
            .await?;
            eprintln!(
                "rep {rep}/{} offered {rate}/s: started {:.0}/s, decided {:.0}/s, p50 {} µs, p99 {} µs, start lag p99 {} µs",
                args.reps,
                f.started_per_sec,
                f.per_sec,
                us(f.p50),
                us(f.p99),
                us(f.lag_p99)
            );
            runs.push(f);
        }
    }
    let load_after = load_average();
    let nodes1 = nodes_cpu(servers).await;
    let stats1 = primaries_stats(servers).await?;
    let others_busy = match (machine0, machine_cpu(), own0, process_cpu(), &nodes1) {
        (Some((busy0, total0)), Some((busy1, total1)), Some(own0), Some(own1), Ok(nodes1)) if total1 > total0 => {
            let redis1: u64 = nodes1.iter().sum();
            let ours = (own1.saturating_sub(own0) + redis1.saturating_sub(redis0)) as f64 / TICK_NS as f64;
            let busy = busy1.saturating_sub(busy0) as f64;
            Some(((busy - ours) / (total1 - total0) as f64).clamp(0.0, 1.0))
        }
        _ => None,
    };
    let nodes1 = nodes1?;
    let trips = round_trips(args, &b, url, servers, prefix, closed, &op_pattern).await?;
    let stages = breakdown(args, &b, session, servers, &op_pattern).await?;
    let spread = if servers.cluster {
        let mut accounts_on = vec![0usize; stats1.len()];
        for account in accounts {
            accounts_on[servers.primary_of(&format!("{{{prefix}a:{account:#x}}}")).await?] += 1;
        }
        let registry = servers.primary_of(&format!("{{{prefix}}}")).await?;
        let keys = count_keys(servers, &format!("{{{prefix}*")).await?;
        let evalsha = |stats: &BTreeMap<String, (u64, u64)>| stats.get("evalsha").map_or(0, |s| s.0);
        servers
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                // Primaries come first, in the order of `stats` and `keys`.
                let p = n.primary.then_some(i);
                SpreadRow {
                    addr: n.addr.clone(),
                    primary: n.primary,
                    registry: p == Some(registry),
                    slots: n.slot_count(),
                    accounts: p.map_or(0, |p| accounts_on[p]),
                    evalsha: p.map_or(0, |p| evalsha(&stats1[p]).saturating_sub(evalsha(&stats0[p]))),
                    cpu: nodes1[i].saturating_sub(nodes0[i]),
                    keys: p.map_or(0, |p| keys[p]),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let concurrent = if args.decisions > 0 { concurrent } else { Vec::new() };
    let open: Vec<_> = open.into_iter().filter(|(_, runs)| !runs.is_empty()).collect();
    let reserve = stages
        .iter()
        .find(|(name, _)| name.starts_with("3. reserve"))
        .map_or((0, 0), |(_, s)| (s.p50(), s.p99()));
    let summary = Summary {
        name: if servers.cluster { "cluster" } else { "single" }.to_string(),
        sequential: (!sequential.is_empty()).then(|| medians(&sequential)),
        concurrent: concurrent.iter().map(|(c, runs)| (*c, medians(runs))).collect(),
        open: open.iter().map(|(r, runs)| (*r, medians(runs))).collect(),
        commands: trips.steady.values().sum(),
        scripts: trips.steady.get("EVALSHA").copied().unwrap_or(0.0),
        reserve,
    };
    print_report(&Report {
        args,
        url,
        servers,
        sequential,
        concurrent,
        open,
        trips,
        stages,
        load_before,
        load_after,
        others_busy,
        spread,
    });
    Ok(summary)
}

/// The stores side by side: each figure of the first next to the others'.
fn print_summary(args: &Args, all: &[Summary]) {
    let names: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if all.iter().filter(|o| o.name == s.name).count() > 1 {
                format!("{} #{}", s.name, i + 1)
            } else {
                s.name.clone()
            }
        })
        .collect();
    let first = &all[0];
    println!();
    println!("## Side by side: {}", names.join(" vs "));
    println!();
    println!(
        "Medians over {} repetitions each, the same signed ops from {} sender accounts; Redis CPU summed \
         over every node (a cluster's replicas included). Open-loop rows give decided/s.",
        args.reps, args.accounts
    );
    println!();
    let cols = |what: &str| names.iter().map(|n| format!(" {what}: {n} |")).collect::<String>();
    let ratio_head = names[1..]
        .iter()
        .map(|n| format!(" {n} / {} |", names[0]))
        .collect::<String>();
    println!(
        "| run |{}{ratio_head}{}{}{}",
        cols("decisions/s"),
        cols("p50 (µs)"),
        cols("p99 (µs)"),
        cols("Redis CPU/decision (µs)")
    );
    let columns = 1 + 4 * all.len() + (all.len() - 1);
    println!("|---|{}", "---:|".repeat(columns - 1));
    let row = |label: String, pick: &dyn Fn(&Summary) -> Option<Figures>| {
        let figures: Vec<Option<Figures>> = all.iter().map(pick).collect();
        let cell = |f: &dyn Fn(&Figures) -> String| {
            figures
                .iter()
                .map(|x| format!(" {} |", x.as_ref().map_or_else(|| "–".into(), f)))
                .collect::<String>()
        };
        let base = figures[0].map_or(0.0, |f| f.per_sec);
        let ratios = figures[1..]
            .iter()
            .map(|x| match x {
                Some(f) if base > 0.0 => format!(" {:.2} |", f.per_sec / base),
                _ => " – |".into(),
            })
            .collect::<String>();
        println!(
            "| {label} |{}{ratios}{}{}{}",
            cell(&|f| format!("{:.0}", f.per_sec)),
            cell(&|f| us(f.p50)),
            cell(&|f| us(f.p99)),
            cell(&|f| us(f.redis_cpu))
        );
    };
    if first.sequential.is_some() {
        row("sequential (1 in flight)".into(), &|s| s.sequential);
    }
    for (c, _) in &first.concurrent {
        row(format!("closed loop C={c}"), &|s| {
            s.concurrent.iter().find(|(x, _)| x == c).map(|(_, f)| *f)
        });
    }
    for (rate, _) in &first.open {
        row(format!("open loop {rate}/s offered"), &|s| {
            s.open.iter().find(|(x, _)| x == rate).map(|(_, f)| *f)
        });
    }
    println!();
    println!("| | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(all.len()));
    let line = |label: &str, f: &dyn Fn(&Summary) -> String| {
        println!("| {label} | {} |", all.iter().map(f).collect::<Vec<_>>().join(" | "));
    };
    line("Redis commands per decision (steady state)", &|s| {
        format!("{:.4}", s.commands)
    });
    line("of which reservation scripts (EVALSHA)", &|s| {
        format!("{:.4}", s.scripts)
    });
    line("reservation step p50 (µs, sequential)", &|s| us(s.reserve.0));
    line("reservation step p99 (µs, sequential)", &|s| us(s.reserve.1));
    println!();
    if args.smoke {
        return;
    }
    let best = |s: &Summary| {
        s.concurrent
            .iter()
            .copied()
            .max_by(|a, b| a.1.per_sec.total_cmp(&b.1.per_sec))
    };
    for (s, name) in all.iter().zip(&names).skip(1) {
        for ((c, a), (_, b)) in first.concurrent.iter().zip(&s.concurrent) {
            println!(
                "- closed loop C={c}: {name} {:.0} decisions/s against {} {:.0} ({:.2}×; {name} ≥ {}: {})",
                b.per_sec,
                names[0],
                a.per_sec,
                b.per_sec / a.per_sec.max(f64::MIN_POSITIVE),
                names[0],
                met(b.per_sec >= a.per_sec)
            );
        }
        if let (Some((ca, a)), Some((cb, b))) = (best(first), best(s)) {
            println!(
                "- highest closed-loop throughput: {name} {:.0}/s at C={cb}, {} {:.0}/s at C={ca} ({name} ≥ {}: {})",
                b.per_sec,
                names[0],
                a.per_sec,
                names[0],
                met(b.per_sec >= a.per_sec)
            );
        }
        println!(
            "- reservation scripts per decision: {name} {:.4}, {} {:.4} (one per decision: {})",
            s.scripts,
            names[0],
            first.scripts,
            met((s.scripts - 1.0).abs() < 1e-9)
        );
    }
}

fn main() {
    let args = args_or_exit("decision", parse_args());
    let runtime = runtime(Some(args.workers));
    finish("decision", runtime.block_on(run(args)));
}
