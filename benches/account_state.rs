//! Account state from the node: what opgate's reads of Kernel account state cost
//! (`opgate::accounts::AccountReader`), cold and warm, and what node state adds to a warm send
//! decision.
//!
//! One process, one multi-thread tokio runtime (2 workers by default), and the project's devnet on
//! 127.0.0.1: `scripts/devnet.sh up` with `DEVNET_NO_BUNDLER=1` (anvil only), on a free port, in a
//! state directory of its own, stopped with `scripts/devnet.sh down` when the bench ends — on
//! success, error, panic, Ctrl-C or SIGTERM.
//!
//! The chain: the project's Kernel state contracts (`devnet/contracts/KernelState.sol`, compiled
//! with `devnet/compile.mjs`) put on anvil as `tests/it/lifecycle.rs` does: `EcdsaValidatorState`
//! at the three ECDSA validator addresses, `EcdsaSignerState` at the canonical ECDSA signer, and
//! `KernelAccountState` at the session's account, set up as a Kernel v3.1 account (root ECDSA
//! validator and its owner, `accountId`, the ERC-1967 implementation), with the session's
//! permission installed: the ECDSA signer, the same four policy contracts with the same flags in
//! the same order as the permission opgate knows, its session key stored in the signer, and
//! `execute` granted.
//!
//! The session and its ops are those of `benches/decision.rs`: a Kernel v3 permission with
//! CallPolicy 0.0.4, GasPolicy, RateLimitPolicy and TimestampPolicy, registered in opgate's registry
//! as the admin API would, and default-mode permission ops (EntryPoint v0.7) signed by the session
//! key, built before any timing. The store is the memory store.
//!
//! It measures, per repetition:
//! - **cold reads**: a fresh `AccountReader` per sample (a new outbound client, so a new connection
//!   to the node; an empty cache; no head yet) reading the account for the permission op: latency
//!   of `read` and `round_trips()`;
//! - **cache misses on a running reader**: one reader whose head is known and whose connection is
//!   open, each sample asking for another selector (another cache key): what an account's first op
//!   in a new block costs;
//! - **warm reads**: the same reader answering the op's own read from its block cache;
//! - **warm decisions, side by side**: `opgate::pipeline::decide` of the session's ops on two
//!   opgates built alike, one reading accounts from the node (`node = …`,
//!   `[chains.simulation] enabled = false`) and one without a node, both built afresh for each run
//!   and taking turns in blocks of 1,000 decisions (so that a slow spell of the machine slows both),
//!   in a closed loop with 1 and 16 decisions in flight. The opgate with a node reads the account
//!   once (its first decision) and its head poller runs as under `opgate run`; its node is reached
//!   through a counting HTTP proxy in the bench, so every request it sends during the measured
//!   decisions is seen, and its reader's `round_trips()` must equal the proxy's count. Every
//!   decision must be accepted and charged, and the one with a node must carry the node's state
//!   (`Prepared::on_chain`);
//!
//! then, once: the steps of a warm decision (prepare, evaluate, reserve) timed one at a time on
//! both opgates, and, through the counting proxy, the HTTP requests and JSON-RPC calls a cold read,
//! a cache miss and a warm read send.
//!
//! Run: `cargo bench --bench account_state -- [options]` (`--help`), or `scripts/bench-accounts.sh`.
//! Without any argument or `OPGATE_BENCH_*` variable (as under `cargo test --benches`) it does a
//! short smoke run instead, and skips when the devnet cannot be started (no node or npm).

#[path = "common/alloc.rs"]
mod allocator;
#[path = "common/kernel_session.rs"]
mod kernel_session;
use kernel_session::*;
#[path = "common/devnet.rs"]
mod devnet;
use devnet::{repo, Devnet};
#[path = "common/host.rs"]
mod host;
use host::{
    args_or_exit, args_or_smoke, cpu_of, env_or, finish, load_average, machine_cpu, parse_list, process_cpu, runtime,
    us, TICK_NS,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::{address, eip191_hash_message, keccak256, Address, Bytes, FixedBytes, B256, U256};
use alloy_provider::{Provider, RootProvider};
use alloy_rpc_client::RpcClient;
use alloy_sol_types::{sol, SolCall};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k256::ecdsa::SigningKey;
use opgate::accounts::{AccountReader, OnChain, Read, Served};
use opgate::app::App;
use opgate::chain::Chain;
use opgate::config::{Config, Overrides};
use opgate::decode::enable::KernelVersion;
use opgate::decode::init::{ECDSA_VALIDATOR, ECDSA_VALIDATOR_V3_0};
use opgate::decode::multichain::MULTICHAIN_ECDSA_VALIDATOR;
use opgate::decode::permission::ECDSA_SIGNER;
use opgate::decode::serialized::{derive_permission_id, validator_data, EXECUTE_SELECTOR};
use opgate::decode::{decode_permission_data, Permission};
use opgate::pipeline::{self, Gate};
use opgate::registry::{Source, StoredPermission};
use opgate::sim::{Node, NodeTransport};
use opgate::store::{Reservation, Reserved};
use opgate::userop::{self, EntryPointVersion};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Barrier};
use tokio::task::JoinSet;

const CHAIN_ID: u64 = 31337;
const ENTRY_POINT: Address = address!("0000000071727De22E5E9d8BAf0edAc6f37da032");
/// anvil's account #0: deploys and sends the setters (through `eth_sendTransaction`).
const FUNDER: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
/// The Kernel account the session belongs to (the state contract's code is put there).
const ACCOUNT: Address = address!("49f0faDC8c183a2c18D7cd4515Ebe0329ab0B839");
/// The account's root owner, as the ECDSA validator stores it (any address: permission ops do not
/// use it).
const OWNER: Address = address!("7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
/// Kernel v3.1's implementation, which the account's ERC-1967 slot names.
const KERNEL_V3_1: Address = address!("BAC849bB641841b44E965fB01A4Bf5F074f84b4D");
const ACCOUNT_ID: &str = "kernel.advanced.v0.3.1";
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
/// The installed permission's `validationConfig` nonce (the account's `currentNonce` after setUp).
const INSTALL_NONCE: u32 = 1;

/// A decision slower than this fails the run.
const DECISION_TIMEOUT: Duration = Duration::from_secs(10);
/// The bench's readers' deadline: long, so that a slow sample is measured instead of failing.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The bench's readers' head poll and pending timeout (opgate's defaults; the cold and miss readers
/// never poll).
const HEAD_POLL: Duration = Duration::from_secs(1);
const PENDING_TIMEOUT: Duration = Duration::from_secs(600);
/// Histogram range: 1 ns to 60 s, three significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;
/// Most polls for a transaction receipt (100 ms apart).
const RECEIPT_POLLS: usize = 100;
/// Most 1 ms waits for the reader's and the proxy's counts to agree (no request in flight).
const SETTLE_POLLS: usize = 2_000;

const USAGE: &str = "\
usage: cargo bench --bench account_state -- [options]

  --cold N           cold reads (a fresh reader each) per repetition      [env OPGATE_BENCH_COLD, 200]
  --misses N         cache misses on a running reader per repetition     [env OPGATE_BENCH_MISSES, 200]
  --warm N           warm decisions per opgate, level and repetition     [env OPGATE_BENCH_WARM, 20000]
  --warmup N         unmeasured decisions before each warm run           [env OPGATE_BENCH_WARMUP, 2000]
  --concurrency LIST decisions in flight (closed loop), comma-separated  [env OPGATE_BENCH_CONCURRENCY, 1,16]
  --probe N          cold reads through the counting proxy               [env OPGATE_BENCH_PROBE, 5]
  --workers N        tokio worker threads                                [env OPGATE_BENCH_WORKERS, 2]
  --reps N           repetitions; figures are medians over them          [env OPGATE_BENCH_REPS, 5]

Needs node and npm: the devnet (anvil from npm) is started for the run and stopped after it.
With no argument and no OPGATE_BENCH_* variable (as under `cargo test --benches`), a short smoke
run checks that everything works (and is skipped when the devnet cannot start); its figures mean
nothing.
";

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone)]
struct Args {
    cold: usize,
    misses: usize,
    warm: usize,
    warmup: usize,
    concurrency: Vec<usize>,
    probe: usize,
    workers: usize,
    reps: usize,
    smoke: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        cold: env_or("OPGATE_BENCH_COLD", 200)?,
        misses: env_or("OPGATE_BENCH_MISSES", 200)?,
        warm: env_or("OPGATE_BENCH_WARM", 20_000)?,
        warmup: env_or("OPGATE_BENCH_WARMUP", 2_000)?,
        concurrency: parse_list(&env_or("OPGATE_BENCH_CONCURRENCY", "1,16".to_string())?)?,
        probe: env_or("OPGATE_BENCH_PROBE", 5)?,
        workers: env_or("OPGATE_BENCH_WORKERS", 2)?,
        reps: env_or("OPGATE_BENCH_REPS", 5)?,
        smoke: false,
    };
    let (given, smoke) = args_or_smoke();
    if smoke {
        // Keep it short.
        args.cold = 5;
        args.misses = 5;
        args.warm = 200;
        args.warmup = 20;
        args.probe = 1;
        args.reps = 1;
        args.smoke = true;
    }
    let mut it = given.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("`{v}` is not a number\n{USAGE}"))
        };
        match flag.as_str() {
            // cargo passes `--bench` to every bench binary.
            "--bench" => {}
            "--cold" => args.cold = number(value()?)?,
            "--misses" => args.misses = number(value()?)?,
            "--warm" | "-n" => args.warm = number(value()?)?,
            "--warmup" => args.warmup = number(value()?)?,
            "--concurrency" | "-c" => args.concurrency = parse_list(&value()?).map_err(|e| format!("{e}\n{USAGE}"))?,
            "--probe" => args.probe = number(value()?)?,
            "--workers" => args.workers = number(value()?)?,
            "--reps" => args.reps = number(value()?)?,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if args.concurrency.is_empty()
        || args.concurrency.contains(&0)
        || args.workers == 0
        || args.reps == 0
        || args.probe == 0
    {
        return Err(format!(
            "--concurrency, --workers, --reps and --probe must be at least 1\n{USAGE}"
        ));
    }
    if args.cold == 0 && args.misses == 0 && args.warm == 0 {
        return Err(format!("--cold, --misses and --warm cannot all be 0\n{USAGE}"));
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
// The devnet

/// Whether the devnet can be started here at all: `node` and `npm` run.
fn devnet_tools() -> Result<(), String> {
    for tool in ["node", "npm"] {
        match Command::new(tool).arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(_) => return Err(format!("`{tool} --version` failed")),
            Err(e) => return Err(format!("`{tool}` cannot be run: {e}")),
        }
    }
    Ok(())
}

/// The transport opgate reads the node with, to `url`, on a new outbound client (a connection
/// pool of its own).
fn transport(url: &str) -> Result<NodeTransport, String> {
    let url: url::Url = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let client = opgate::outbound::client(&[], Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok(NodeTransport::new(&url, Default::default(), client))
}

/// Raw JSON-RPC calls to anvil for the setup (never timed).
struct Rpc(RootProvider);

impl Rpc {
    fn new(url: &str) -> Result<Self, String> {
        Ok(Self(RootProvider::new(RpcClient::new(transport(url)?, true))))
    }

    async fn call(&self, method: &'static str, params: Value) -> Result<Value, String> {
        self.0
            .raw_request::<Value, Value>(Cow::Borrowed(method), params)
            .await
            .map_err(|e| format!("{method}: {e}"))
    }

    /// Sends a transaction from anvil's account #0 and waits until it is mined successfully.
    async fn send(&self, tx: Value) -> Result<Value, String> {
        let hash = self.call("eth_sendTransaction", json!([tx])).await?;
        for _ in 0..RECEIPT_POLLS {
            let r = self.call("eth_getTransactionReceipt", json!([hash])).await?;
            if !r.is_null() {
                if r["status"] != "0x1" {
                    return Err(format!("transaction {hash} failed: {r}"));
                }
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("transaction {hash} was not mined within 10 s"))
    }

    async fn call_to(&self, to: Address, data: Vec<u8>) -> Result<(), String> {
        self.send(json!({ "from": FUNDER, "to": to, "data": Bytes::from(data) }))
            .await
            .map(|_| ())
    }

    async fn block_number(&self) -> Result<u64, String> {
        let n = self.call("eth_blockNumber", json!([])).await?;
        n.as_str()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| format!("eth_blockNumber: `{n}` is not a hex number"))
    }
}

// ---------------------------------------------------------------------------------------------
// The session: policies, permission and signed operations (as in benches/decision.rs)

sol! {
    // The state contracts' setters (devnet/contracts/KernelState.sol).
    function setUp(bytes21 root, string id, address implementation);
    function installPermission(bytes4 pId, uint32 nonce, address hook, address signer, bytes22[] policyData, bytes4 selector);
    function setOwner(address account, address owner);
    function setSigner(bytes32 id, address wallet, address key);
}

/// The session key, its permission and the operations it signs.
struct Session {
    key: SigningKey,
    signer: Address,
    pid: FixedBytes<4>,
    validator_data: Bytes,
    permission: Permission,
    call_data: Bytes,
}

impl Session {
    fn new(now: u64) -> Result<Self, String> {
        // A fixed key: runs are reproducible.
        let secret = keccak256("opgate account state bench session key");
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
            permission,
            call_data: execute_call(TARGET, U256::ZERO, &transfer_data(RECIPIENT, AMOUNT)),
        })
    }

    /// `0x02 ‖ pid ‖ 0^16`: the permission's validation id.
    fn validation_id(&self) -> FixedBytes<21> {
        let mut v = [0u8; 21];
        v[0] = 0x02;
        v[1..5].copy_from_slice(self.pid.as_slice());
        FixedBytes(v)
    }

    /// What opgate reads for one of the session's ops.
    fn read(&self) -> Read {
        Read {
            account: ACCOUNT,
            validation: Some(self.validation_id()),
            selector: Some(FixedBytes(EXECUTE_SELECTOR)),
        }
    }

    /// Kernel nonce `0x00 (default mode) ‖ 0x02 (permission) ‖ pid ‖ 0^16 ‖ lane ‖ sequence`.
    fn nonce(&self, sequence: u64) -> U256 {
        let mut n = [0u8; 32];
        n[1] = 0x02;
        n[2..6].copy_from_slice(self.pid.as_slice());
        n[24..].copy_from_slice(&sequence.to_be_bytes());
        U256::from_be_bytes(n)
    }

    /// `eth_sendUserOperation` params for the op with this sequence, signed.
    fn params(&self, sequence: u64) -> Result<Box<RawValue>, String> {
        let mut op = json!({
            "sender": ACCOUNT.to_checksum(None),
            "nonce": format!("{:#x}", self.nonce(sequence)),
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
        op["signature"] = Value::String(hex_bytes(&signature));
        serde_json::value::to_raw_value(&json!([op, ENTRY_POINT.to_checksum(None)])).map_err(|e| e.to_string())
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The chain: the Kernel state contracts on anvil

/// Compiles the project's test contracts (`node devnet/compile.mjs`).
async fn compile() -> Result<Value, String> {
    let out = tokio::task::spawn_blocking(|| Command::new("node").arg(repo().join("devnet/compile.mjs")).output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("running node devnet/compile.mjs: {e}"))?;
    if !out.status.success() {
        return Err(format!("solc: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("solc output: {e}"))
}

/// Deploys `name` from anvil's account #0 and returns its runtime code.
async fn runtime_code(rpc: &Rpc, compiled: &Value, name: &str) -> Result<Value, String> {
    let code = compiled[name]["bytecode"]
        .as_str()
        .ok_or_else(|| format!("no bytecode for {name}"))?;
    let receipt = rpc.send(json!({ "from": FUNDER, "data": code })).await?;
    let at = receipt["contractAddress"]
        .as_str()
        .and_then(|a| a.parse::<Address>().ok())
        .ok_or_else(|| format!("{name}: no contract address in {receipt}"))?;
    rpc.call("eth_getCode", json!([at, "latest"])).await
}

/// Puts the state contracts at the module addresses and at the account, sets the account up as a
/// Kernel v3.1 account with the ECDSA root validator, and installs the session's permission as
/// opgate knows it. Returns the head block afterwards.
async fn set_up_chain(rpc: &Rpc, session: &Session) -> Result<u64, String> {
    let compiled = compile().await?;
    let validator = runtime_code(rpc, &compiled, "EcdsaValidatorState").await?;
    let signer = runtime_code(rpc, &compiled, "EcdsaSignerState").await?;
    let account = runtime_code(rpc, &compiled, "KernelAccountState").await?;
    for (at, code) in [
        (ECDSA_VALIDATOR, &validator),
        (ECDSA_VALIDATOR_V3_0, &validator),
        (MULTICHAIN_ECDSA_VALIDATOR, &validator),
        (ECDSA_SIGNER, &signer),
        (ACCOUNT, &account),
    ] {
        rpc.call("anvil_setCode", json!([at, code])).await?;
    }
    let mut root = [0u8; 21];
    root[0] = 0x01;
    root[1..].copy_from_slice(ECDSA_VALIDATOR.as_slice());
    rpc.call_to(
        ACCOUNT,
        setUpCall {
            root: FixedBytes(root),
            id: ACCOUNT_ID.into(),
            implementation: KERNEL_V3_1,
        }
        .abi_encode(),
    )
    .await?;
    rpc.call_to(
        ECDSA_VALIDATOR,
        setOwnerCall {
            account: ACCOUNT,
            owner: OWNER,
        }
        .abi_encode(),
    )
    .await?;
    // The policies exactly as opgate decodes them from the permission it knows: flag ‖ address,
    // in order.
    let policy_data = session
        .permission
        .policies
        .iter()
        .map(|p| FixedBytes::<22>::from_slice(&[p.flag.as_slice(), p.address.as_slice()].concat()))
        .collect();
    rpc.call_to(
        ACCOUNT,
        installPermissionCall {
            pId: session.pid,
            nonce: INSTALL_NONCE,
            hook: Address::ZERO,
            signer: ECDSA_SIGNER,
            policyData: policy_data,
            selector: FixedBytes(EXECUTE_SELECTOR),
        }
        .abi_encode(),
    )
    .await?;
    let mut id = B256::ZERO;
    id[..4].copy_from_slice(session.pid.as_slice());
    rpc.call_to(
        ECDSA_SIGNER,
        setSignerCall {
            id,
            wallet: ACCOUNT,
            key: session.signer,
        }
        .abi_encode(),
    )
    .await?;
    rpc.block_number().await
}

/// Fails unless `c` is the account as the bench set it up, read at `head`.
fn check_state(c: &OnChain, session: &Session, head: u64) -> Result<(), String> {
    let fail = |what: &str| Err(format!("the node's account state is not as set up ({what}): {c:?}"));
    if c.block != head {
        return fail(&format!("read at block {}, the head is {head}", c.block));
    }
    if c.kernel_version != Some(KernelVersion::V3_1) || c.root_owner != Some(OWNER) {
        return fail("release or root owner");
    }
    if c.current_nonce != Some(INSTALL_NONCE) || c.valid_nonce_from != Some(0) {
        return fail("nonces");
    }
    let Some(v) = c.validation.as_ref() else {
        return fail("no validation");
    };
    if !v.installed() || v.has_hook() || v.nonce != INSTALL_NONCE {
        return fail("validation config");
    }
    let Some(p) = v.permission.as_ref() else {
        return fail("no permission config");
    };
    if let Some(m) = p.mismatch(&session.permission) {
        return fail(&m);
    }
    if p.session_key != Some(session.signer) {
        return fail("session key");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The counting proxy: HTTP requests and JSON-RPC calls between opgate's readers and the node

/// Per path (`/<tag>`, one per reader or opgate): the JSON-RPC methods of each HTTP request, in
/// the order the proxy received them.
type RequestLog = Arc<Mutex<HashMap<String, Vec<Vec<String>>>>>;

fn methods_of(body: &[u8]) -> Vec<String> {
    let method = |v: &Value| v["method"].as_str().unwrap_or("?").to_string();
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(calls)) => calls.iter().map(method).collect(),
        Ok(v) => vec![method(&v)],
        Err(_) => vec!["(not JSON)".into()],
    }
}

async fn forward(
    client: Client<HttpConnector, Full<bytes::Bytes>>,
    upstream: hyper::Uri,
    log: RequestLog,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<bytes::Bytes>>, Infallible> {
    let failed = |status: u16, what: String| {
        let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(what)));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        Ok::<_, Infallible>(r)
    };
    let tag = req.uri().path().trim_matches('/').to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return failed(400, e.to_string()),
    };
    if let Ok(mut l) = log.lock() {
        l.entry(tag).or_default().push(methods_of(&body));
    }
    let request = hyper::Request::post(upstream)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body));
    let request = match request {
        Ok(r) => r,
        Err(e) => return failed(500, e.to_string()),
    };
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) => return failed(502, e.to_string()),
    };
    let status = response.status();
    match response.into_body().collect().await {
        Ok(b) => {
            let mut r = hyper::Response::new(Full::new(b.to_bytes()));
            *r.status_mut() = status;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        Err(e) => failed(502, e.to_string()),
    }
}

/// Serves on `listener`, forwarding every request to `upstream`, until `stop` fires.
async fn serve_proxy(listener: TcpListener, upstream: hyper::Uri, log: RequestLog, mut stop: oneshot::Receiver<()>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => break,
            },
        };
        while connections.try_join_next().is_some() {}
        let (client, upstream, log) = (client.clone(), upstream.clone(), log.clone());
        connections.spawn(async move {
            let svc = service_fn(move |req| forward(client.clone(), upstream.clone(), log.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    connections.shutdown().await;
}

/// The proxy, running for the whole bench.
struct Proxy {
    addr: SocketAddr,
    log: RequestLog,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(anvil: &str) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let upstream: hyper::Uri = anvil.parse().map_err(|e| format!("{anvil}: {e}"))?;
        let log: RequestLog = Arc::default();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve_proxy(listener, upstream, log.clone(), stopped));
        Ok(Self {
            addr,
            log,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The node URL whose requests the proxy files under `tag`.
    fn url(&self, tag: &str) -> String {
        format!("http://{}/{tag}", self.addr)
    }

    /// The requests received under `tag` so far.
    fn requests(&self, tag: &str) -> Vec<Vec<String>> {
        self.log
            .lock()
            .map(|l| l.get(tag).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn count(&self, tag: &str) -> usize {
        self.log
            .lock()
            .map(|l| l.get(tag).map_or(0, Vec::len))
            .unwrap_or_default()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The reader's round trips and the proxy's requests under `tag` when they agree: every request
/// the reader started has reached the proxy (nothing is in flight, or only a request started
/// after the reader's count was taken). The reader counts a request when it starts it, the proxy
/// when it has its body.
async fn settled(reader: &AccountReader, proxy: &Proxy, tag: &str) -> Result<(u64, usize), String> {
    for _ in 0..SETTLE_POLLS {
        let trips = reader.round_trips();
        let seen = proxy.count(tag);
        if trips == seen as u64 {
            return Ok((trips, seen));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(format!(
        "{tag}: the reader counted {} round trips but the proxy received {} requests (after {} ms)",
        reader.round_trips(),
        proxy.count(tag),
        SETTLE_POLLS
    ))
}

/// One request's methods, e.g. "`eth_call` ×10, `eth_getCode`".
fn describe(methods: &[String]) -> String {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for name in methods {
        *m.entry(name.as_str()).or_insert(0) += 1;
    }
    m.iter()
        .map(|(name, n)| {
            if *n == 1 {
                format!("`{name}`")
            } else {
                format!("`{name}` ×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_head_poll(methods: &[String]) -> bool {
    methods.len() == 1 && methods[0] == "eth_blockNumber"
}

// ---------------------------------------------------------------------------------------------
// Account reads

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).map_err(|e| e.to_string())
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, HIST_MAX_NS)
}

/// A reader of `url` as opgate builds one: its own outbound client, so its own connections.
fn reader(url: &str) -> Result<AccountReader, String> {
    let node = Arc::new(Node::new(transport(url)?, tokio::runtime::Handle::current()));
    Ok(AccountReader::new(node, READ_TIMEOUT, HEAD_POLL, PENDING_TIMEOUT))
}

/// Latency figures of one set of samples, with the round trips each sample made.
#[derive(Debug, Clone, Copy, Default)]
struct Reads {
    samples: u64,
    p50: u64,
    p99: u64,
    mean: f64,
    max: u64,
    trips_min: u64,
    trips_max: u64,
}

impl Reads {
    fn of(hist: &Histogram<u64>, trips: (u64, u64)) -> Self {
        Self {
            samples: hist.len(),
            p50: hist.value_at_quantile(0.50),
            p99: hist.value_at_quantile(0.99),
            mean: hist.mean(),
            max: hist.max(),
            trips_min: if hist.is_empty() { 0 } else { trips.0 },
            trips_max: trips.1,
        }
    }
}

/// `n` cold reads, each by a fresh reader (new connection, empty cache, no head).
async fn cold_reads(anvil: &str, session: &Session, head: u64, n: usize) -> Result<Reads, String> {
    let mut hist = histogram()?;
    let (mut lo, mut hi) = (u64::MAX, 0);
    for _ in 0..n {
        let r = reader(anvil)?;
        let t = Instant::now();
        let (state, served) = r.read(session.read()).await.map_err(|e| format!("cold read: {e}"))?;
        hist.saturating_record(elapsed_ns(t));
        if served != Served::Read {
            return Err("a fresh reader answered from its cache".into());
        }
        check_state(&state, session, head)?;
        let trips = r.round_trips();
        lo = lo.min(trips);
        hi = hi.max(trips);
    }
    Ok(Reads::of(&hist, (lo, hi)))
}

/// Another cache key for the session's account: the same read with selector `i` (never `execute`).
fn miss_key(session: &Session, i: u64) -> Read {
    let mut sel = (0x8000_0000u32 | (i as u32 & 0x7fff_ffff)).to_be_bytes();
    if sel == EXECUTE_SELECTOR {
        sel[3] ^= 1;
    }
    Read {
        selector: Some(FixedBytes(sel)),
        ..session.read()
    }
}

/// `n` cache misses on `r`, a running reader (head known, connection open), each under a key not
/// read before; `next` numbers the keys.
async fn misses(r: &AccountReader, session: &Session, next: &mut u64, n: usize) -> Result<Reads, String> {
    let mut hist = histogram()?;
    let (mut lo, mut hi) = (u64::MAX, 0);
    for _ in 0..n {
        let key = miss_key(session, *next);
        *next += 1;
        let before = r.round_trips();
        let t = Instant::now();
        let (state, served) = r.read(key).await.map_err(|e| format!("cache miss read: {e}"))?;
        hist.saturating_record(elapsed_ns(t));
        if served != Served::Read || state.validation.as_ref().and_then(|v| v.selector).map(|s| s.1) != Some(false) {
            return Err(format!("a cache miss was not read as expected: {served:?} {state:?}"));
        }
        let trips = r.round_trips() - before;
        lo = lo.min(trips);
        hi = hi.max(trips);
    }
    Ok(Reads::of(&hist, (lo, hi)))
}

/// `n` warm reads of the session's key on `r` (cached for the block).
async fn warm_reads(r: &AccountReader, session: &Session, n: usize) -> Result<Reads, String> {
    let mut hist = histogram()?;
    let before = r.round_trips();
    let key = session.read();
    for _ in 0..n {
        let t = Instant::now();
        let (_, served) = r.read(key).await.map_err(|e| format!("warm read: {e}"))?;
        hist.saturating_record(elapsed_ns(t));
        if served != Served::Cached {
            return Err("a warm read was not served from the cache".into());
        }
    }
    let trips = r.round_trips() - before;
    Ok(Reads::of(&hist, (trips, trips)))
}

// ---------------------------------------------------------------------------------------------
// Warm decisions

/// Which opgate decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// No node: the registry alone (as benches/decision.rs, on the memory store).
    NoNode,
    /// Reads accounts from the node (through the counting proxy), head poller running.
    Node,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::NoNode => "without a node",
            Self::Node => "with a node (state cached)",
        }
    }
}

/// opgate built in process: memory store, one chain whose upstream is a closed local port (never
/// called), the operator policy of benches/decision.rs, and, for `node`, account reads from it.
async fn build_app(closed_upstream: SocketAddr, node: Option<&str>) -> Result<App, String> {
    let node = match node {
        Some(url) => format!("node = \"{url}\"\n[chains.simulation]\nenabled = false\n"),
        None => String::new(),
    };
    let toml = format!(
        r#"
[[chains]]
id = {CHAIN_ID}
upstreams = ["http://{closed_upstream}/"]
{node}
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

/// Registers the session's permission as the admin API would.
async fn register(gate: &Gate, session: &Session) -> Result<(), String> {
    gate.registry
        .put_permission(
            CHAIN_ID,
            ACCOUNT,
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
        .map_err(|e| format!("registering the permission: {e}"))
}

/// One decision, which must be accepted and charged, and carry the node's state exactly when the
/// chain reads accounts.
async fn decide_one(gate: &Gate, chain: &Chain, params: &RawValue) -> Result<Option<Arc<OnChain>>, String> {
    match tokio::time::timeout(DECISION_TIMEOUT, pipeline::decide(gate, chain, Some(params))).await {
        Ok(Ok(d)) if !d.charged() => Err("a decision passed but charged nothing".into()),
        Ok(Ok(d)) if d.prepared.on_chain.is_some() != chain.accounts.is_some() => Err(format!(
            "a decision {} the node's state",
            if chain.accounts.is_some() { "lacks" } else { "carries" }
        )),
        Ok(Ok(d)) => Ok(d.prepared.on_chain.clone()),
        Ok(Err(e)) => Err(format!(
            "a decision was refused: {} {}",
            e.error.message(),
            e.error.data().map(|d| d.get()).unwrap_or_default()
        )),
        Err(_) => Err(format!("a decision took more than {DECISION_TIMEOUT:?}")),
    }
}

/// Decides `ops[range]` with `tasks` concurrent tasks; returns the merged histogram and the wall
/// time from the first task's start to the last one's end.
async fn drive(
    gate: &Arc<Gate>,
    chain: &Arc<Chain>,
    ops: &Arc<Vec<Box<RawValue>>>,
    range: std::ops::Range<usize>,
    tasks: usize,
) -> Result<(Histogram<u64>, Duration), String> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let start_line = Arc::new(Barrier::new(tasks));
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let (gate, chain, ops, next, start_line) = (
            gate.clone(),
            chain.clone(),
            ops.clone(),
            next.clone(),
            start_line.clone(),
        );
        let end = range.end;
        set.spawn(async move {
            let mut hist = histogram()?;
            start_line.wait().await;
            let started = Instant::now();
            for _ in 0..end {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let t = Instant::now();
                decide_one(&gate, &chain, &ops[i]).await?;
                hist.saturating_record(elapsed_ns(t));
            }
            Ok::<_, String>((hist, started, Instant::now()))
        });
    }
    let mut hist = histogram()?;
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

/// One warm run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    decisions: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
    per_sec: f64,
    /// This process's CPU per decision (ns).
    cpu: u64,
    /// With a node: the reader's round trips during the measured decisions.
    reader_trips: u64,
    /// With a node: what the proxy received meanwhile, head polls and everything else.
    head_polls: u64,
    other_requests: u64,
}

/// The shared inputs of the warm runs.
struct Warm<'a> {
    session: &'a Session,
    ops: Arc<Vec<Box<RawValue>>>,
    proxy: &'a Proxy,
    closed: SocketAddr,
    head: u64,
}

/// CPU time this process's threads have spent running so far, in nanoseconds, from
/// `/proc/self/task/*/schedstat` (exact, unlike the 10 ms ticks of `/proc/self/stat`; threads that
/// have exited are not counted, and the bench's threads live for the whole run).
fn threads_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // a thread that just exited
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// One opgate of a warm run, built fresh: memory store, the session registered, its first decision
/// made (with a node, that one reads the account, which is checked), and with a node the head
/// poller running as `App::run` runs it.
struct Opgate {
    variant: Variant,
    tag: String,
    gate: Arc<Gate>,
    chain: Arc<Chain>,
    reader: Option<Arc<AccountReader>>,
    stop: Option<oneshot::Sender<()>>,
    poller: Option<tokio::task::JoinHandle<()>>,
}

impl Opgate {
    async fn start(w: &Warm<'_>, variant: Variant, tag: String) -> Result<Self, String> {
        let url = w.proxy.url(&tag);
        let app = build_app(w.closed, (variant == Variant::Node).then_some(url.as_str())).await?;
        let gate = app.gate().clone();
        let chain = app.chains()[0].clone();
        register(&gate, w.session).await?;
        let reader = chain.accounts.as_ref().map(|a| a.reader.clone());
        if (variant == Variant::Node) != reader.is_some() {
            return Err(format!("the opgate {} reads accounts wrongly", variant.name()));
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let poller = reader.clone().map(|r| {
            tokio::spawn(r.watch_head(async move {
                let _ = stopped.await;
            }))
        });
        let o = Self {
            variant,
            tag,
            gate,
            chain,
            reader,
            stop: Some(stop),
            poller,
        };
        match decide_one(&o.gate, &o.chain, &w.ops[0]).await {
            Ok(Some(c)) => check_state(&c, w.session, w.head).map(|()| o),
            Ok(None) => Ok(o),
            Err(e) => {
                o.stop().await;
                Err(format!("the first decision {}: {e}", variant.name()))
            }
        }
    }

    /// With a node: the reader's round trips and the proxy's requests, settled.
    async fn counts(&self, proxy: &Proxy) -> Result<Option<(u64, usize)>, String> {
        match &self.reader {
            Some(r) => settled(r, proxy, &self.tag).await.map(Some),
            None => Ok(None),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(p) = self.poller.take() {
            let _ = p.await;
        }
    }
}

/// Decisions per block: the two opgates take turns, a block each, so that whatever slows the
/// machine for a while slows both alike.
const BLOCK: usize = 1_000;

/// What one opgate's blocks add up to.
struct Tally {
    hist: Histogram<u64>,
    wall: Duration,
    cpu_ns: u64,
    cpu_known: bool,
}

impl Tally {
    fn new() -> Result<Self, String> {
        Ok(Self {
            hist: histogram()?,
            wall: Duration::ZERO,
            cpu_ns: 0,
            cpu_known: true,
        })
    }

    fn figures(&self) -> Figures {
        let n = self.hist.len();
        Figures {
            decisions: n,
            p50: self.hist.value_at_quantile(0.50),
            p90: self.hist.value_at_quantile(0.90),
            p99: self.hist.value_at_quantile(0.99),
            p999: self.hist.value_at_quantile(0.999),
            max: self.hist.max(),
            mean: self.hist.mean(),
            per_sec: if self.wall.as_secs_f64() > 0.0 {
                n as f64 / self.wall.as_secs_f64()
            } else {
                0.0
            },
            cpu: if self.cpu_known { self.cpu_ns / n.max(1) } else { 0 },
            ..Figures::default()
        }
    }
}

/// One warm run: two fresh opgates, one without a node and one with (`first` starts), each warmed
/// up with `warmup` decisions, then `n` measured decisions each with `tasks` in flight, in
/// alternating blocks of [`BLOCK`]. Returns (without a node, with a node).
async fn warm_run(
    w: &Warm<'_>,
    tag: &str,
    first: Variant,
    tasks: usize,
    warmup: usize,
    n: usize,
) -> Result<(Figures, Figures), String> {
    let none = Opgate::start(w, Variant::NoNode, format!("{tag}-none")).await?;
    let node = match Opgate::start(w, Variant::Node, format!("{tag}-node")).await {
        Ok(o) => o,
        Err(e) => {
            none.stop().await;
            return Err(e);
        }
    };
    let pair = if first == Variant::NoNode {
        [&none, &node]
    } else {
        [&node, &none]
    };
    let outcome = async {
        for o in pair {
            drive(&o.gate, &o.chain, &w.ops, 1..1 + warmup, tasks).await?;
        }
        let before = node.counts(w.proxy).await?;
        let mut tallies = [Tally::new()?, Tally::new()?];
        let start = 1 + warmup;
        for (b, at) in (start..start + n).step_by(BLOCK).enumerate() {
            let range = at..(at + BLOCK).min(start + n);
            let order = if b % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let o = pair[i];
                let cpu0 = threads_cpu_ns();
                let (hist, wall) = drive(&o.gate, &o.chain, &w.ops, range.clone(), tasks).await?;
                let cpu1 = threads_cpu_ns();
                let t = &mut tallies[i];
                t.hist.add(&hist).map_err(|e| e.to_string())?;
                t.wall += wall;
                match (cpu0, cpu1) {
                    (Some(a), Some(b)) => t.cpu_ns += b.saturating_sub(a),
                    _ => t.cpu_known = false,
                }
            }
        }
        let mut figures = [tallies[0].figures(), tallies[1].figures()];
        if let (Some(r), Some((trips0, seen0)), Some((trips1, seen1))) =
            (&node.reader, before, node.counts(w.proxy).await?)
        {
            let log = w.proxy.requests(&node.tag);
            let window = &log[seen0..seen1];
            let f = &mut figures[if first == Variant::Node { 0 } else { 1 }];
            f.reader_trips = trips1 - trips0;
            f.head_polls = window.iter().filter(|m| is_head_poll(m)).count() as u64;
            f.other_requests = window.len() as u64 - f.head_polls;
            if f.other_requests > 0 {
                let other: Vec<String> = window
                    .iter()
                    .filter(|m| !is_head_poll(m))
                    .map(|m| describe(m))
                    .collect();
                return Err(format!(
                    "warm decisions sent {} requests to the node besides head polls: {}",
                    f.other_requests,
                    other.join("; ")
                ));
            }
            if f.reader_trips != f.head_polls {
                return Err(format!(
                    "the reader counted {} round trips during the warm decisions, the proxy {} head polls",
                    f.reader_trips, f.head_polls
                ));
            }
            if r.head() != Some(w.head) {
                return Err(format!("the reader's head moved to {:?}", r.head()));
            }
        } else {
            return Err("the opgate with a node has no reader".into());
        }
        Ok::<_, String>(if first == Variant::NoNode {
            (figures[0], figures[1])
        } else {
            (figures[1], figures[0])
        })
    }
    .await;
    none.stop().await;
    node.stop().await;
    outcome
}

// ---------------------------------------------------------------------------------------------
// Where a warm decision's time goes, with and without the node

/// One step's latencies.
struct Stage {
    hist: Histogram<u64>,
    total_ns: u128,
}

impl Stage {
    fn new() -> Result<Self, String> {
        Ok(Self {
            hist: histogram()?,
            total_ns: 0,
        })
    }

    fn add(&mut self, since: Instant) {
        let ns = elapsed_ns(since);
        self.total_ns += u128::from(ns);
        self.hist.saturating_record(ns);
    }

    fn mean(&self) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.total_ns as f64 / self.hist.len() as f64
        }
    }
}

/// The steps of `decide`, one decision at a time: prepare (params, parse, userOpHash, registry,
/// Kernel decoding, and with a node the account read from the cache and the decoding again with
/// the chain's view), evaluate (every policy), reserve (the memory store).
async fn steps(o: &Opgate, ops: &[Box<RawValue>], stages: &mut [Stage; 4]) -> Result<(), String> {
    let (gate, chain) = (&*o.gate, &*o.chain);
    let policies = gate.policies();
    for params in ops {
        let t0 = Instant::now();
        let p = pipeline::prepare(gate, chain, Some(params))
            .await
            .map_err(|e| e.error.message().to_string())?;
        stages[1].add(t0);
        if p.on_chain.is_some() != (o.variant == Variant::Node) {
            return Err("stepwise: the node's state is not where it should be".into());
        }
        let t = Instant::now();
        let permit = p
            .evaluate(gate, &policies, None)
            .into_permit()
            .map_err(|r| format!("stepwise: refused: {}", r.detail))?;
        stages[2].add(t);
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
        stages[3].add(t);
        stages[0].add(t0);
        if reserved != Reserved::Charged {
            return Err(format!("stepwise: the reservation answered {reserved:?}"));
        }
    }
    Ok(())
}

/// [`steps`] for `n` decisions on two fresh opgates, without a node and with one, in alternating
/// blocks. Returns (without a node, with a node).
async fn stepwise(w: &Warm<'_>, n: usize) -> Result<([Stage; 4], [Stage; 4]), String> {
    let none = Opgate::start(w, Variant::NoNode, "stepwise-none".into()).await?;
    let node = match Opgate::start(w, Variant::Node, "stepwise-node".into()).await {
        Ok(o) => o,
        Err(e) => {
            none.stop().await;
            return Err(e);
        }
    };
    let outcome = async {
        let new = || -> Result<[Stage; 4], String> { Ok([Stage::new()?, Stage::new()?, Stage::new()?, Stage::new()?]) };
        let (mut a, mut b) = (new()?, new()?);
        for (i, at) in (1..1 + n).step_by(BLOCK).enumerate() {
            let ops = &w.ops[at..(at + BLOCK).min(1 + n)];
            if i % 2 == 0 {
                steps(&none, ops, &mut a).await?;
                steps(&node, ops, &mut b).await?;
            } else {
                steps(&node, ops, &mut b).await?;
                steps(&none, ops, &mut a).await?;
            }
        }
        Ok::<_, String>((a, b))
    }
    .await;
    none.stop().await;
    node.stop().await;
    outcome
}

// ---------------------------------------------------------------------------------------------
// The counting probe

/// What the proxy saw for each kind of read.
#[derive(Debug, Default)]
struct Probe {
    /// Each probed cold read's requests (methods per HTTP request), and its `round_trips()`.
    cold: Vec<(Vec<Vec<String>>, u64)>,
    /// A cache miss on a running reader, and its `round_trips()` delta.
    miss: (Vec<Vec<String>>, u64),
    /// A warm read, and its `round_trips()` delta.
    warm: (Vec<Vec<String>>, u64),
}

async fn probe(args: &Args, proxy: &Proxy, session: &Session, head: u64) -> Result<Probe, String> {
    let mut out = Probe::default();
    for i in 0..args.probe {
        let tag = format!("probe-cold-{i}");
        let r = reader(&proxy.url(&tag))?;
        let (state, served) = r.read(session.read()).await.map_err(|e| format!("probe: {e}"))?;
        if served != Served::Read {
            return Err("probe: a fresh reader answered from its cache".into());
        }
        check_state(&state, session, head)?;
        settled(&r, proxy, &tag).await?;
        out.cold.push((proxy.requests(&tag), r.round_trips()));
        if i + 1 == args.probe {
            let (_, seen) = settled(&r, proxy, &tag).await?;
            let trips = r.round_trips();
            let (_, served) = r
                .read(miss_key(session, u64::from(u32::MAX)))
                .await
                .map_err(|e| format!("probe: {e}"))?;
            if served != Served::Read {
                return Err("probe: the miss was answered from the cache".into());
            }
            let (_, seen1) = settled(&r, proxy, &tag).await?;
            out.miss = (proxy.requests(&tag)[seen..seen1].to_vec(), r.round_trips() - trips);
            let trips = r.round_trips();
            let (_, served) = r.read(session.read()).await.map_err(|e| format!("probe: {e}"))?;
            if served != Served::Cached {
                return Err("probe: the warm read was not cached".into());
            }
            let (_, seen2) = settled(&r, proxy, &tag).await?;
            out.warm = (proxy.requests(&tag)[seen1..seen2].to_vec(), r.round_trips() - trips);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The report

fn median_by<T: Clone>(runs: &[T], key: impl Fn(&T) -> f64) -> Option<T> {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v.get(v.len() / 2).cloned()
}

/// Medians of each figure over the repetitions; round trips and requests are totals.
fn medians(runs: &[Figures]) -> Figures {
    let m = |f: fn(&Figures) -> f64| median_by(runs, f).map(|r| f(&r)).unwrap_or(0.0);
    Figures {
        decisions: runs.iter().map(|r| r.decisions).sum(),
        p50: m(|f| f.p50 as f64) as u64,
        p90: m(|f| f.p90 as f64) as u64,
        p99: m(|f| f.p99 as f64) as u64,
        p999: m(|f| f.p999 as f64) as u64,
        max: m(|f| f.max as f64) as u64,
        mean: m(|f| f.mean),
        per_sec: m(|f| f.per_sec),
        cpu: m(|f| f.cpu as f64) as u64,
        reader_trips: runs.iter().map(|r| r.reader_trips).sum(),
        head_polls: runs.iter().map(|r| r.head_polls).sum(),
        other_requests: runs.iter().map(|r| r.other_requests).sum(),
    }
}

fn read_medians(runs: &[Reads]) -> Reads {
    let m = |f: fn(&Reads) -> f64| median_by(runs, f).map(|r| f(&r)).unwrap_or(0.0);
    Reads {
        samples: runs.iter().map(|r| r.samples).sum(),
        p50: m(|r| r.p50 as f64) as u64,
        p99: m(|r| r.p99 as f64) as u64,
        mean: m(|r| r.mean),
        max: runs.iter().map(|r| r.max).max().unwrap_or(0),
        trips_min: runs.iter().map(|r| r.trips_min).min().unwrap_or(0),
        trips_max: runs.iter().map(|r| r.trips_max).max().unwrap_or(0),
    }
}

fn us_f(ns: f64) -> String {
    format!("{:.1}", ns / 1_000.0)
}

fn signed_us(ns: f64) -> String {
    format!("{:+.1}", ns / 1_000.0)
}

struct Report<'a> {
    args: &'a Args,
    anvil: &'a str,
    head: u64,
    cold: Vec<Reads>,
    misses: Vec<Reads>,
    warm_reads: Vec<Reads>,
    /// Per level: (tasks, runs without a node, runs with one).
    decisions: Vec<(usize, Vec<Figures>, Vec<Figures>)>,
    probe: Probe,
    /// The steps of a warm decision, one at a time: (without a node, with one).
    steps: Option<([Stage; 4], [Stage; 4])>,
    load_before: String,
    load_after: String,
    others_busy: Option<f64>,
}

fn print_report(r: &Report<'_>) {
    let args = r.args;
    println!();
    if args.smoke {
        println!("**Smoke run**: too short to measure anything. Run `cargo bench --bench account_state`.");
        println!();
    }
    println!("## Account state from the node");
    println!();
    let others = r
        .others_busy
        .map_or_else(|| "n/a".into(), |f| format!("{:.0}%", f * 100.0));
    println!(
        "{} tokio workers; anvil at {} (loopback, head block {}); memory store; medians over {} repetitions \
         (a read's max is over all its samples, a decision run's the median of the maxima). Other processes (neither this one nor anvil) used {others} of the machine's \
         CPU during the repetitions; load average before: {}, after: {}.",
        args.workers, r.anvil, r.head, args.reps, r.load_before, r.load_after
    );
    println!();
    println!("Account reads (`AccountReader::read` of the session's account for a permission op):");
    println!();
    println!("| read | samples | p50 (µs) | p99 (µs) | mean (µs) | max (µs) | node round trips per read |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, runs: &[Reads]| {
        if runs.is_empty() {
            return;
        }
        let f = read_medians(runs);
        let trips = if f.trips_min == f.trips_max {
            f.trips_min.to_string()
        } else {
            format!("{}–{}", f.trips_min, f.trips_max)
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {trips} |",
            f.samples,
            us(f.p50),
            us(f.p99),
            us_f(f.mean),
            us(f.max)
        );
    };
    row(
        "cold: a fresh reader (new connection, empty cache, no head yet)",
        &r.cold,
    );
    row(
        "cache miss on a running reader (head known, connection open)",
        &r.misses,
    );
    row("warm: the same key again, from the block's cache", &r.warm_reads);
    println!();
    println!("What one read sends to the node, counted by a proxy between the reader and anvil:");
    println!();
    println!("| read | HTTP request | JSON-RPC calls | methods | `round_trips()` |");
    println!("|---|---:|---:|---|---:|");
    let requests = |name: &str, reqs: &[Vec<String>], trips: u64| {
        if reqs.is_empty() {
            println!("| {name} | 0 | 0 | — | {trips} |");
        }
        for (i, m) in reqs.iter().enumerate() {
            let trips = if i == 0 { trips.to_string() } else { String::new() };
            println!("| {name} | {} | {} | {} | {trips} |", i + 1, m.len(), describe(m));
        }
    };
    if let Some((reqs, trips)) = r.probe.cold.last() {
        let same = r.probe.cold.iter().all(|(q, t)| q == reqs && t == trips);
        requests(
            &format!(
                "cold ({} probed: {})",
                r.probe.cold.len(),
                if same { "all alike" } else { "NOT all alike" }
            ),
            reqs,
            *trips,
        );
    }
    requests("cache miss", &r.probe.miss.0, r.probe.miss.1);
    requests("warm", &r.probe.warm.0, r.probe.warm.1);
    println!();
    println!(
        "Warm send decisions (`pipeline::decide`: decode, policies, memory-store reservation; upstream excluded), \
         side by side in one run: two fresh opgates per run, one without a node and one reading accounts from \
         it, each warmed up with {} decisions (with a node, the first reads the account), then taking turns in \
         blocks of {BLOCK} decisions; closed loop:",
        args.warmup
    );
    println!();
    println!(
        "| opgate | in flight | decisions (all runs) | p50 (µs) | p90 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | mean (µs) | \
         decisions/s | process CPU/decision (µs) | reader round trips (all runs) | proxy: head polls (all runs) | \
         proxy: other requests (all runs) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (tasks, none, node) in &r.decisions {
        let (a, b) = (medians(none), medians(node));
        for (v, f) in [(Variant::NoNode, &a), (Variant::Node, &b)] {
            let (trips, polls, other) = match v {
                Variant::NoNode => ("—".to_string(), "—".to_string(), "—".to_string()),
                Variant::Node => (
                    f.reader_trips.to_string(),
                    f.head_polls.to_string(),
                    format!("**{}**", f.other_requests),
                ),
            };
            println!(
                "| {} | {tasks} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {trips} | {polls} | {other} |",
                v.name(),
                f.decisions,
                us(f.p50),
                us(f.p90),
                us(f.p99),
                us(f.p999),
                us(f.max),
                us_f(f.mean),
                f.per_sec,
                us(f.cpu)
            );
        }
        // Paired: each repetition's two opgates ran in the same blocks of time.
        let diff = |f: fn(&Figures) -> f64| {
            let d: Vec<f64> = none.iter().zip(node).map(|(a, b)| f(b) - f(a)).collect();
            median_by(&d, |x| *x).unwrap_or(0.0)
        };
        println!(
            "| node − no node (median of the paired differences) | {tasks} | | {} | {} | {} | | | {} | {:+.0} | {} | | | |",
            signed_us(diff(|f| f.p50 as f64)),
            signed_us(diff(|f| f.p90 as f64)),
            signed_us(diff(|f| f.p99 as f64)),
            signed_us(diff(|f| f.mean)),
            diff(|f| f.per_sec),
            signed_us(diff(|f| f.cpu as f64))
        );
    }
    println!();
    println!(
        "(Each repetition runs both opgates in the same blocks of time; the difference row is the median of the \
         {} per-repetition differences, which drift of the machine between repetitions does not skew.)",
        args.reps
    );
    println!();
    if let Some((none, node)) = &r.steps {
        println!(
            "Where a warm decision's time goes, one decision at a time ({} decisions on each opgate):",
            none[0].hist.len()
        );
        println!();
        println!(
            "| step | without a node: mean (µs) | p50 (µs) | p99 (µs) | with a node: mean (µs) | p50 (µs) | p99 (µs) | \
             difference of the means (µs) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let names = [
            "decide, stepwise (the three below)",
            "1. prepare: parse, userOpHash, registry, Kernel decoding (with a node: + the cached read, decoded again)",
            "2. evaluate: every policy (with a node: + the on-chain checks)",
            "3. reserve (memory store)",
        ];
        for ((name, a), b) in names.iter().zip(none.iter()).zip(node.iter()) {
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                us_f(a.mean()),
                us(a.hist.value_at_quantile(0.5)),
                us(a.hist.value_at_quantile(0.99)),
                us_f(b.mean()),
                us(b.hist.value_at_quantile(0.5)),
                us(b.hist.value_at_quantile(0.99)),
                signed_us(b.mean() - a.mean())
            );
        }
        println!();
    }
    let all: Vec<Figures> = r.decisions.iter().flat_map(|(_, _, n)| n.iter().copied()).collect();
    let total = medians(&all);
    println!(
        "- Across all {} measured warm decisions with a node: the reader counted {} round trips, and the proxy \
         received {} `eth_blockNumber` requests (the head poller's) and {} other requests meanwhile: the warm \
         path added **{} node round trips**.",
        total.decisions,
        total.reader_trips,
        total.head_polls,
        total.other_requests,
        total.reader_trips - total.head_polls + total.other_requests
    );
}

// ---------------------------------------------------------------------------------------------

async fn run(args: Args) -> Result<(), String> {
    if args.smoke {
        if let Err(e) = devnet_tools() {
            eprintln!("account_state: smoke run skipped: the devnet cannot start here: {e}");
            return Ok(());
        }
    }
    // The guard exists before anything starts, so whatever `up` started is stopped on the way out.
    let devnet = Devnet::new("accounts")?;
    let t = Instant::now();
    let started = tokio::task::spawn_blocking(move || {
        let mut devnet = devnet;
        devnet.start().map(|()| devnet)
    })
    .await
    .map_err(|e| e.to_string())?;
    let devnet = match started {
        Ok(d) => d,
        Err(e) if args.smoke => {
            eprintln!("account_state: smoke run skipped: the devnet did not start: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let anvil = devnet.get("ANVIL_URL")?.to_string();
    let anvil_pid = devnet.get("ANVIL_PID")?.to_string();
    eprintln!(
        "devnet up in {:.1} s: anvil {anvil} (pid {anvil_pid}), no bundler",
        t.elapsed().as_secs_f64()
    );
    let rpc = Rpc::new(&anvil)?;
    let session = Session::new(now_secs())?;
    let head = set_up_chain(&rpc, &session).await?;
    eprintln!(
        "account {ACCOUNT} set up on anvil (Kernel v3.1 state contracts); permission {} with session key {} \
         installed; head block {head}",
        session.pid, session.signer
    );
    let count = 1 + args.warmup + args.warm;
    let t = Instant::now();
    let ops = Arc::new(
        (0..count as u64)
            .map(|seq| session.params(seq))
            .collect::<Result<Vec<_>, _>>()?,
    );
    eprintln!("{count} signed ops built in {:.1} s", t.elapsed().as_secs_f64());
    let proxy = Proxy::start(&anvil).await?;
    let outcome = measure_all(&args, &anvil, &anvil_pid, &rpc, &session, ops, &proxy, head).await;
    proxy.stop().await;
    outcome
}

#[allow(clippy::too_many_arguments, reason = "the run's shared inputs, passed once")]
async fn measure_all(
    args: &Args,
    anvil: &str,
    anvil_pid: &str,
    rpc: &Rpc,
    session: &Session,
    ops: Arc<Vec<Box<RawValue>>>,
    proxy: &Proxy,
    head: u64,
) -> Result<(), String> {
    // An upstream that is never called: a local port nothing listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?
    };
    let w = Warm {
        session,
        ops,
        proxy,
        closed,
        head,
    };
    // The running reader of the miss and warm-read samples: head and connection already there.
    let running = reader(anvil)?;
    let (state, _) = running
        .read(session.read())
        .await
        .map_err(|e| format!("the first read: {e}"))?;
    check_state(&state, session, head)?;
    eprintln!("first read: the account's state is as set up, at block {head}");
    let mut next_key = 0u64;

    let load_before = load_average();
    let machine0 = machine_cpu();
    let own0 = process_cpu();
    let anvil0 = cpu_of(anvil_pid);
    let (mut cold, mut miss, mut hits) = (Vec::new(), Vec::new(), Vec::new());
    let mut decisions: Vec<(usize, Vec<Figures>, Vec<Figures>)> =
        args.concurrency.iter().map(|c| (*c, Vec::new(), Vec::new())).collect();
    for rep in 1..=args.reps {
        if args.cold > 0 {
            let c = cold_reads(anvil, session, head, args.cold).await?;
            eprintln!(
                "rep {rep}/{} cold reads: p50 {} µs, p99 {} µs, mean {} µs, {}–{} round trips",
                args.reps,
                us(c.p50),
                us(c.p99),
                us_f(c.mean),
                c.trips_min,
                c.trips_max
            );
            cold.push(c);
        }
        if args.misses > 0 {
            let m = misses(&running, session, &mut next_key, args.misses).await?;
            eprintln!(
                "rep {rep}/{} cache misses: p50 {} µs, p99 {} µs, mean {} µs, {}–{} round trips",
                args.reps,
                us(m.p50),
                us(m.p99),
                us_f(m.mean),
                m.trips_min,
                m.trips_max
            );
            miss.push(m);
        }
        if args.warm > 0 {
            let h = warm_reads(&running, session, args.warm).await?;
            eprintln!(
                "rep {rep}/{} warm reads: p50 {} µs, p99 {} µs, mean {} µs, {} round trips",
                args.reps,
                us(h.p50),
                us(h.p99),
                us_f(h.mean),
                h.trips_max
            );
            hits.push(h);
            for (tasks, none, node) in &mut decisions {
                // Alternate which opgate starts, so that drift favours neither.
                let first = if rep % 2 == 1 { Variant::NoNode } else { Variant::Node };
                let tag = format!("warm-{rep}-{tasks}");
                let (a, b) = warm_run(&w, &tag, first, *tasks, args.warmup, args.warm).await?;
                for (v, f) in [(Variant::NoNode, &a), (Variant::Node, &b)] {
                    eprintln!(
                        "rep {rep}/{} {tasks:>2} in flight, {:<27}: p50 {} µs, p99 {} µs, mean {} µs, {:.0}/s, \
                         CPU/decision {} µs{}",
                        args.reps,
                        v.name(),
                        us(f.p50),
                        us(f.p99),
                        us_f(f.mean),
                        f.per_sec,
                        us(f.cpu),
                        match v {
                            Variant::Node => format!(
                                ", node: {} round trips ({} head polls, {} other requests)",
                                f.reader_trips, f.head_polls, f.other_requests
                            ),
                            Variant::NoNode => String::new(),
                        }
                    );
                }
                none.push(a);
                node.push(b);
            }
        }
        // Nothing may have moved the chain: every read above was at one block.
        let now = rpc.block_number().await?;
        if now != head {
            return Err(format!("the head moved from {head} to {now} during the run"));
        }
    }
    let load_after = load_average();
    let others_busy = match (machine0, machine_cpu(), own0, process_cpu(), anvil0, cpu_of(anvil_pid)) {
        (Some((busy0, total0)), Some((busy1, total1)), Some(own0), Some(own1), Some(a0), Some(a1))
            if total1 > total0 =>
        {
            let ours = (own1.saturating_sub(own0) + a1.saturating_sub(a0)) as f64 / TICK_NS as f64;
            let busy = busy1.saturating_sub(busy0) as f64;
            Some(((busy - ours) / (total1 - total0) as f64).clamp(0.0, 1.0))
        }
        _ => None,
    };
    let steps = if args.warm > 0 {
        Some(stepwise(&w, args.warm).await?)
    } else {
        None
    };
    let probe = probe(args, proxy, session, head).await?;
    print_report(&Report {
        args,
        anvil,
        head,
        cold,
        misses: miss,
        warm_reads: hits,
        decisions: if args.warm > 0 { decisions } else { Vec::new() },
        probe,
        steps,
        load_before,
        load_after,
        others_busy,
    });
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, naming it.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "interrupted";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

fn main() {
    let args = args_or_exit("account_state", parse_args());
    let runtime = runtime(Some(args.workers));
    // On a signal the run is dropped, and with it the devnet guard, which stops the devnet.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(args) => r,
            s = stop_signal() => Err(format!("{s}; the devnet was stopped")),
        }
    });
    // Waits for blocking work still running (a devnet still starting is then stopped by its guard).
    drop(runtime);
    finish("account_state", outcome);
}
