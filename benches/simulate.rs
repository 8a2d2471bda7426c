//! Simulation: what opgate spends simulating one UserOperation in revm through the real EntryPoint
//! against a node's state (`opgate::sim::Simulator`), warm (the block's state already cached) and
//! cold (a fresh simulator: nothing cached, no connection to the node yet).
//!
//! One process, one multi-thread tokio runtime (2 workers by default), and the project's devnet on
//! 127.0.0.1: `scripts/devnet.sh up` with `DEVNET_NO_BUNDLER=1` (anvil with the EntryPoints and
//! SimpleAccount factories; no Alto, whose polling would take CPU from the run), on free ports, in
//! a state directory of its own, stopped with `scripts/devnet.sh down` when the bench ends — on
//! success, error, panic, Ctrl-C or SIGTERM.
//!
//! The op stands in for a Kernel session op, as closely as the devnet allows (Kernel's contracts
//! are not available here):
//! - a SimpleAccount v0.7 (an ERC-1967 proxy, as Kernel v3 accounts are), deployed and funded
//!   beforehand, so the measured op does not deploy;
//! - ECDSA validation: the owner's signature over EIP-191(userOpHash), recovered on chain by the
//!   `ecrecover` precompile (Kernel's ECDSA validator and session signer do the same), the nonce
//!   checked and incremented by the EntryPoint, the prefund paid from the account's balance;
//! - execution: `executeBatch` of an ERC-20 `transfer` on the project's TestToken (a `Transfer`
//!   event the effects inspector records) and a call through the project's Forwarder that moves
//!   value (`forward{value}` sends it on to a third address), `--batch` times each;
//! - it differs from a Kernel session op in validation: Kernel's permission validation also calls
//!   the permission's policy contracts (call, gas, rate-limit, timestamp policies), which read and
//!   write their own storage, so a Kernel op runs more code than this one. The report gives this
//!   op's gas next to that of recorded Kernel ops.
//!
//! It measures, per repetition:
//! - **warm**: the op simulated again and again on the same block (simulation commits nothing, and
//!   no transaction is sent to anvil meanwhile, so its block never changes; the bench checks it),
//!   in a closed loop with 1, 2 and 8 tasks in flight: simulations/s and latency (HDR histogram);
//! - **cold**: a fresh `Simulator` per sample: the first simulation's latency and its node round
//!   trips (`Simulator::round_trips`);
//!
//! then, once, through a counting HTTP proxy between the simulator and anvil: the HTTP requests
//! and the JSON-RPC calls a cold and a warm simulation send, and the node's head round trip alone.
//! Besides the figures, it reports the CPU per simulation of this process and of anvil, and how
//! much of the machine other processes used meanwhile.
//!
//! Run: `cargo bench --bench simulate -- [options]` (`--help`), or `scripts/bench-sim.sh`.
//! Without any argument or `OPGATE_BENCH_*` variable (as under `cargo test --benches`) it does a
//! short smoke run instead (it still starts the devnet: node and npm are needed).

#[path = "common/alloc.rs"]
mod allocator;
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
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{address, keccak256, Address, Bytes, B256, U256};
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
use opgate::config::{Config, Overrides, SimulationConfig};
use opgate::sim::{Node, NodeTransport, Simulation, Simulator};
use opgate::userop::{self, UserOperation};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Barrier};
use tokio::task::JoinSet;

/// Target (issue): warm simulation p50, in nanoseconds.
const TARGET_P50_NS: u64 = 3_000_000;
/// Target (issue): warm simulations per second on 2 cores.
const TARGET_PER_SEC: f64 = 800.0;
/// Target (issue): node round trips of a cold start, where the node supports batching.
const TARGET_COLD_TRIPS: u64 = 3;

const CHAIN_ID: u64 = 31337;
/// anvil's account #0: deploys, funds, mints (through `eth_sendTransaction`).
const FUNDER: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
/// The owner key of the bench's SimpleAccount (any key does; fixed so runs are alike).
const OWNER_KEY: [u8; 32] = [0x5b; 32];
/// Who receives the tokens, and who the Forwarder sends the value to.
const TOKEN_RECIPIENT: Address = address!("02C968795e3E1AbF323307B002AA0522D4DfCF1B");
const VALUE_RECIPIENT: Address = address!("000000000000000000000000000000000000dEaD");
/// The op's preVerificationGas (what the recorded Kernel ops paid: 48,772–51,210).
const PRE_VERIFICATION_GAS: u64 = 50_000;
/// How close the gas limit search gets to the least that works.
const GAS_PRECISION: u64 = 500;
/// Tokens per transfer and wei per forward.
const TOKENS: u64 = 100;
const WEI: u64 = 1_000;
/// `actualGasUsed` of recorded Kernel v3.1 ops (tests/data/vectors), for comparison.
const KERNEL_GAS: [(&str, u64); 2] = [
    (
        "call-equal-regular-k031: session key, CallPolicy, one transfer",
        266_969,
    ),
    ("batch-two-allowed: session key, batch of two calls", 250_235),
];

/// A simulation slower than this fails the run (the simulator's own deadline).
const SIM_TIMEOUT: &str = "30s";
/// Histogram range: 1 ns to 60 s, three significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;
/// Most polls for a transaction receipt (100 ms apart).
const RECEIPT_POLLS: usize = 100;
/// Head round trips timed on their own.
const HEAD_SAMPLES: usize = 500;

const USAGE: &str = "\
usage: cargo bench --bench simulate -- [options]

  --warm N           warm simulations per concurrency level and repetition [env OPGATE_BENCH_WARM, 3000]
  --warmup N         unmeasured warm simulations before each run         [env OPGATE_BENCH_WARMUP, 200]
  --concurrency LIST simulations in flight (closed loop), comma-separated [env OPGATE_BENCH_CONCURRENCY, 1,2,8]
  --cold N           cold samples (a fresh simulator each) per repetition [env OPGATE_BENCH_COLD, 50]
  --probe N          cold samples through the counting proxy              [env OPGATE_BENCH_PROBE, 5]
  --batch N          (transfer, forward) pairs in the op's executeBatch   [env OPGATE_BENCH_BATCH, 1]
  --workers N        tokio worker threads                                 [env OPGATE_BENCH_WORKERS, 2]
  --reps N           repetitions; figures are medians over them           [env OPGATE_BENCH_REPS, 3]
  --json FILE        also write the results as JSON

Needs node and npm: the devnet (anvil from npm) is started for the run and stopped after it.
With no argument and no OPGATE_BENCH_* variable (as under `cargo test --benches`), a short smoke
run checks that everything works; its figures mean nothing.
";

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone)]
struct Args {
    warm: usize,
    warmup: usize,
    concurrency: Vec<usize>,
    cold: usize,
    probe: usize,
    batch: usize,
    workers: usize,
    reps: usize,
    json: Option<PathBuf>,
    smoke: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        warm: env_or("OPGATE_BENCH_WARM", 3_000)?,
        warmup: env_or("OPGATE_BENCH_WARMUP", 200)?,
        concurrency: parse_list(&env_or("OPGATE_BENCH_CONCURRENCY", "1,2,8".to_string())?)?,
        cold: env_or("OPGATE_BENCH_COLD", 50)?,
        probe: env_or("OPGATE_BENCH_PROBE", 5)?,
        batch: env_or("OPGATE_BENCH_BATCH", 1)?,
        workers: env_or("OPGATE_BENCH_WORKERS", 2)?,
        reps: env_or("OPGATE_BENCH_REPS", 3)?,
        json: None,
        smoke: false,
    };
    let (given, smoke) = args_or_smoke();
    if smoke {
        // Keep it short.
        args.warm = 20;
        args.warmup = 5;
        args.cold = 3;
        args.probe = 1;
        args.reps = 1;
        args.smoke = true;
    }
    let mut it = given.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|_| format!("`{v}` is not a number"));
        match flag.as_str() {
            // cargo passes `--bench` to every bench binary.
            "--bench" => {}
            "--warm" | "-n" => args.warm = number(value()?)?,
            "--warmup" => args.warmup = number(value()?)?,
            "--concurrency" | "-c" => args.concurrency = parse_list(&value()?)?,
            "--cold" => args.cold = number(value()?)?,
            "--probe" => args.probe = number(value()?)?,
            "--batch" => args.batch = number(value()?)?,
            "--workers" => args.workers = number(value()?)?,
            "--reps" => args.reps = number(value()?)?,
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if args.concurrency.contains(&0) || args.workers == 0 || args.reps == 0 || args.probe == 0 {
        return Err("--concurrency, --workers, --reps and --probe must be at least 1".into());
    }
    if !(1..=16).contains(&args.batch) {
        return Err("--batch must be between 1 and 16".into());
    }
    if args.warm == 0 && args.cold == 0 {
        return Err("--warm and --cold cannot both be 0".into());
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
// The devnet

/// Raw JSON-RPC calls to anvil for the setup (never timed).
struct Rpc(RootProvider);

/// The transport opgate's simulator uses, to `url`.
fn transport(url: &str) -> Result<NodeTransport, String> {
    let url: url::Url = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let client = opgate::outbound::client(&[], Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok(NodeTransport::new(&url, Default::default(), client))
}

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

    async fn eth_call(&self, to: Address, data: Vec<u8>) -> Result<Vec<u8>, String> {
        let out = self
            .call("eth_call", json!([{ "to": to, "data": Bytes::from(data) }, "latest"]))
            .await?;
        let hex = out.as_str().ok_or("eth_call: not a string")?;
        alloy_primitives::hex::decode(hex).map_err(|e| format!("eth_call: {e}"))
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

    async fn head(&self) -> Result<(u64, B256, u128), String> {
        let b = self.call("eth_getBlockByNumber", json!(["latest", false])).await?;
        let number = hex_u128(&b["number"])? as u64;
        let hash = b["hash"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .ok_or("block without a hash")?;
        Ok((number, hash, hex_u128(&b["baseFeePerGas"])?))
    }
}

fn hex_u128(v: &Value) -> Result<u128, String> {
    v.as_str()
        .and_then(|s| u128::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| format!("`{v}` is not a hex number"))
}

// ---------------------------------------------------------------------------------------------
// The account, the contracts and the op

sol! {
    function createAccount(address owner, uint256 salt);
    function getAddress(address owner, uint256 salt) returns (address);
    function getNonce(address sender, uint192 key) returns (uint256);
    function executeBatch(address[] dest, uint256[] value, bytes[] func);
    function transfer(address to, uint256 value);
    function forward(address to);
    function mint(address to, uint256 value);
}

/// What the setup made, and the op every simulation runs.
struct Scene {
    entry_point: Address,
    sender: Address,
    token: Address,
    forwarder: Address,
    op: Arc<UserOperation>,
    hash: B256,
    call_data_len: usize,
    /// The op's gas limits (see `set_up`).
    call_gas: u64,
    verification_gas: u64,
}

/// Compiles and deploys the project's test contracts (Forwarder, TestToken).
async fn deploy_contracts(rpc: &Rpc) -> Result<(Address, Address), String> {
    let out = tokio::task::spawn_blocking(|| Command::new("node").arg(repo().join("devnet/compile.mjs")).output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("running node devnet/compile.mjs: {e}"))?;
    if !out.status.success() {
        return Err(format!("solc: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let compiled: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("solc output: {e}"))?;
    let mut deployed = Vec::new();
    for name in ["Forwarder", "TestToken"] {
        let code = compiled[name]["bytecode"]
            .as_str()
            .ok_or_else(|| format!("no bytecode for {name}"))?;
        let receipt = rpc.send(json!({ "from": FUNDER, "data": code })).await?;
        let at = receipt["contractAddress"]
            .as_str()
            .and_then(|a| a.parse::<Address>().ok())
            .ok_or_else(|| format!("{name}: no contract address in {receipt}"))?;
        deployed.push(at);
    }
    Ok((deployed[0], deployed[1]))
}

fn eth_signed(hash: B256) -> B256 {
    let mut m = b"\x19Ethereum Signed Message:\n32".to_vec();
    m.extend_from_slice(hash.as_slice());
    keccak256(m)
}

fn sign(key: &SigningKey, hash: &B256) -> Result<[u8; 65], String> {
    let (sig, recid) = key
        .sign_prehash_recoverable(hash.as_slice())
        .map_err(|e| e.to_string())?;
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = 27 + recid.to_byte();
    Ok(out)
}

/// Deploys the contracts and the account, funds it, and builds the signed op.
async fn set_up(devnet: &Devnet, rpc: &Rpc, config: &SimulationConfig, batch: usize) -> Result<Scene, String> {
    let entry_point: Address = devnet.get("ENTRYPOINT_07")?.parse().map_err(|_| "ENTRYPOINT_07")?;
    let factory: Address = devnet.get("FACTORY_07")?.parse().map_err(|_| "FACTORY_07")?;
    let (forwarder, token) = deploy_contracts(rpc).await?;

    let key = SigningKey::from_slice(&OWNER_KEY).map_err(|e| e.to_string())?;
    let owner = Address::from_private_key(&key);
    let word = rpc
        .eth_call(
            factory,
            getAddressCall {
                owner,
                salt: U256::ZERO,
            }
            .abi_encode(),
        )
        .await?;
    let sender = Address::from_word(B256::try_from(&word[..]).map_err(|_| "getAddress: not one word")?);
    // Deployed now, so that the measured op does not deploy (v0.7's factory lets anyone call it).
    let create = createAccountCall {
        owner,
        salt: U256::ZERO,
    }
    .abi_encode();
    rpc.send(json!({ "from": FUNDER, "to": factory, "data": Bytes::from(create) }))
        .await?;
    let code = rpc.call("eth_getCode", json!([sender, "latest"])).await?;
    if code.as_str().is_none_or(|c| c.len() <= 2) {
        return Err(format!("the account {sender} was not deployed"));
    }
    rpc.send(json!({ "from": FUNDER, "to": sender, "value": "0x8ac7230489e80000" }))
        .await?;
    let mint = mintCall {
        to: sender,
        value: U256::from(10u64).pow(U256::from(24u64)),
    }
    .abi_encode();
    rpc.send(json!({ "from": FUNDER, "to": token, "data": Bytes::from(mint) }))
        .await?;
    let nonce = rpc
        .eth_call(
            entry_point,
            getNonceCall {
                sender,
                key: alloy_primitives::aliases::U192::ZERO,
            }
            .abi_encode(),
        )
        .await?;
    let nonce = U256::from_be_slice(&nonce);

    let mut dest = Vec::new();
    let mut value = Vec::new();
    let mut func = Vec::new();
    for _ in 0..batch {
        dest.push(token);
        value.push(U256::ZERO);
        func.push(Bytes::from(
            transferCall {
                to: TOKEN_RECIPIENT,
                value: U256::from(TOKENS),
            }
            .abi_encode(),
        ));
        dest.push(forwarder);
        value.push(U256::from(WEI));
        func.push(Bytes::from(forwardCall { to: VALUE_RECIPIENT }.abi_encode()));
    }
    let call_data = executeBatchCall { dest, value, func }.abi_encode();
    let call_data_len = call_data.len();
    let (_, _, base_fee) = rpc.head().await?;
    let max_fee = base_fee * 2 + 1_000_000_000;
    // The op with these gas limits, signed, and its userOpHash.
    let build = |call_gas: u64, verification_gas: u64| -> Result<(UserOperation, B256), String> {
        let mut rpc_op = json!({
            "sender": sender,
            "nonce": format!("{nonce:#x}"),
            "callData": Bytes::from(call_data.clone()),
            "callGasLimit": format!("{call_gas:#x}"),
            "verificationGasLimit": format!("{verification_gas:#x}"),
            "preVerificationGas": format!("{PRE_VERIFICATION_GAS:#x}"),
            "maxFeePerGas": format!("{max_fee:#x}"),
            "maxPriorityFeePerGas": "0x3b9aca00",
            "signature": Bytes::from(vec![0u8; 65]),
        });
        let parse = |v: &Value| {
            let raw = serde_json::value::to_raw_value(v).map_err(|e| e.to_string())?;
            userop::parse_user_operation_for(&raw, entry_point).map_err(|e| format!("the op: {e}"))
        };
        let hash = parse(&rpc_op)?.hash(entry_point, CHAIN_ID).map_err(|e| e.to_string())?;
        rpc_op["signature"] = json!(Bytes::from(sign(&key, &eth_signed(hash))?.to_vec()));
        let op = parse(&rpc_op)?;
        if op.hash(entry_point, CHAIN_ID).map_err(|e| e.to_string())? != hash {
            return Err("the signature changed the userOpHash".into());
        }
        Ok((op, hash))
    };

    // Gas limits as a bundler's estimate sets them, so that the op's actualGasUsed compares with
    // recorded ops: the least that works (found by simulating), plus 10%. The limits change what
    // the op pays, not what the EVM runs.
    let sim = Simulator::new(config.clone(), CHAIN_ID, tokio::runtime::Handle::current());
    let generous_call = 0x30000 + 0x20000 * batch as u64;
    let generous_verification = 0x40000;
    let mut limits = [generous_call, generous_verification];
    for which in 0..2 {
        let (mut lo, mut hi) = (0u64, limits[which]);
        for step in 0..64 {
            if step > 0 && hi - lo <= GAS_PRECISION {
                break;
            }
            let gas = if step == 0 { hi } else { lo + (hi - lo) / 2 };
            let (op, hash) = if which == 0 {
                build(gas, generous_verification)?
            } else {
                build(limits[0], gas)?
            };
            let run = sim
                .simulate(&op, entry_point, hash)
                .await
                .map_err(|e| format!("gas estimate: {e}"))?;
            let s = &run.simulation;
            let works = s.validation.ok && s.execution.as_ref().is_some_and(|e| e.success);
            match (step, works) {
                (0, false) => return Err(format!("the op fails even with generous gas limits: {s:?}")),
                (_, true) => hi = gas,
                (_, false) => lo = gas,
            }
        }
        limits[which] = hi * 11 / 10;
    }
    let [call_gas, verification_gas] = limits;
    let (op, hash) = build(call_gas, verification_gas)?;
    Ok(Scene {
        entry_point,
        sender,
        token,
        forwarder,
        op: Arc::new(op),
        hash,
        call_data_len,
        call_gas,
        verification_gas,
    })
}

/// The simulation settings opgate builds for `node = URL` (defaults), with a long deadline so that
/// a slow sample is measured rather than failed.
fn sim_config(node: &str) -> Result<SimulationConfig, String> {
    let toml = format!(
        "[[chains]]\nid = {CHAIN_ID}\nupstreams = [\"http://127.0.0.1:9/\"]\nnode = \"{node}\"\n\
         [chains.simulation]\ntimeout = \"{SIM_TIMEOUT}\"\n"
    );
    let config = Config::from_toml(&toml, &Overrides::default()).map_err(|e| e.to_string())?;
    config
        .chains
        .first()
        .and_then(|c| c.simulation.clone())
        .ok_or_else(|| "no simulation in the configuration".into())
}

/// Fails unless the simulation says the op validated, executed and had exactly its effects.
fn check_simulation(s: &Simulation, scene: &Scene, batch: usize) -> Result<(), String> {
    let fail = |what: &str| Err(format!("unexpected simulation ({what}): {s:?}"));
    if !s.validation.ok || s.validation.signature_failed {
        return fail("validation");
    }
    if !s.execution.as_ref().is_some_and(|e| e.success) {
        return fail("execution");
    }
    let e = &s.effects;
    let calls_ok = e.calls.len() == 2 * batch
        && e.calls.chunks(2).all(|pair| {
            pair[0].target == scene.token
                && pair[0].value.is_zero()
                && pair[1].target == scene.forwarder
                && pair[1].value == U256::from(WEI)
        });
    if !calls_ok {
        return fail("calls");
    }
    if e.native_out != U256::from(WEI * batch as u64) {
        return fail("native value out");
    }
    let transfers_ok = e.transfers.len() == batch
        && e.transfers
            .iter()
            .all(|t| t.token == scene.token && t.to == TOKEN_RECIPIENT && t.amount == U256::from(TOKENS));
    if !transfers_ok {
        return fail("token transfers");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Measurement

/// Figures of one run, latencies in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    sims: u64,
    per_sec: f64,
    /// CPU of this process (driver and simulator) per simulation, in nanoseconds.
    cpu: u64,
    /// CPU of anvil per simulation, in nanoseconds.
    node_cpu: u64,
    /// Node round trips per simulation.
    trips: f64,
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::<u64>::new_with_bounds(1, HIST_MAX_NS, 3).map_err(|e| e.to_string())
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, HIST_MAX_NS)
}

/// What a run shares between its tasks.
struct Warm {
    sim: Arc<Simulator>,
    scene: Arc<Scene>,
    expected: Arc<Simulation>,
}

/// `n` warm simulations from `tasks` tasks in a closed loop: returns the merged histogram and the
/// wall time from the start line to the last answer.
async fn closed_loop(w: &Warm, tasks: usize, n: usize) -> Result<(Histogram<u64>, Duration), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let start_line = Arc::new(Barrier::new(tasks + 1));
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let (sim, scene, expected) = (w.sim.clone(), w.scene.clone(), w.expected.clone());
        let (next, start_line) = (next.clone(), start_line.clone());
        set.spawn(async move {
            let mut hist = histogram()?;
            start_line.wait().await;
            for _ in 0..n {
                if next.fetch_add(1, Ordering::Relaxed) >= n {
                    break;
                }
                let t = Instant::now();
                let run = sim
                    .simulate(&scene.op, scene.entry_point, scene.hash)
                    .await
                    .map_err(|e| format!("simulation failed: {e}"))?;
                hist.saturating_record(elapsed_ns(t));
                if !run.warm {
                    return Err("a warm run found the block's state cold: did the block change?".to_string());
                }
                if run.simulation != *expected {
                    return Err(format!("the simulation changed: {:?}", run.simulation));
                }
            }
            Ok::<_, String>(hist)
        });
    }
    start_line.wait().await;
    let started = Instant::now();
    let mut hist = histogram()?;
    let mut failure = None;
    while let Some(joined) = set.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(h) => hist.add(&h).map_err(|e| e.to_string())?,
            Err(e) => {
                failure.get_or_insert(e);
                set.abort_all();
            }
        }
    }
    let wall = started.elapsed();
    match failure {
        Some(e) => Err(e),
        None => Ok((hist, wall)),
    }
}

/// One warm run at `tasks` in flight: warm-up, then `n` measured simulations.
async fn warm_run(w: &Warm, tasks: usize, warmup: usize, n: usize, anvil_pid: &str) -> Result<Figures, String> {
    if warmup > 0 {
        closed_loop(w, tasks, warmup).await?;
    }
    let trips0 = w.sim.round_trips();
    let (cpu0, node0) = (process_cpu(), cpu_of(anvil_pid));
    let (hist, wall) = closed_loop(w, tasks, n).await?;
    let (cpu1, node1) = (process_cpu(), cpu_of(anvil_pid));
    let sims = hist.len();
    let per = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if sims > 0 => b.saturating_sub(a) / sims,
        _ => 0,
    };
    Ok(Figures {
        p50: hist.value_at_quantile(0.50),
        p90: hist.value_at_quantile(0.90),
        p99: hist.value_at_quantile(0.99),
        max: hist.max(),
        sims,
        per_sec: sims as f64 / wall.as_secs_f64().max(1e-9),
        cpu: per(cpu0, cpu1),
        node_cpu: per(node0, node1),
        trips: (w.sim.round_trips() - trips0) as f64 / sims.max(1) as f64,
    })
}

/// Cold samples of one repetition.
#[derive(Debug, Clone, Default)]
struct Cold {
    p50: u64,
    p99: u64,
    max: u64,
    samples: u64,
    trips_min: u64,
    trips_max: u64,
}

/// `n` cold simulations, each by a fresh simulator (empty cache, no connection yet).
async fn cold_run(config: &SimulationConfig, scene: &Scene, expected: &Simulation, n: usize) -> Result<Cold, String> {
    let mut hist = histogram()?;
    let (mut lo, mut hi) = (u64::MAX, 0);
    for _ in 0..n {
        let sim = Simulator::new(config.clone(), CHAIN_ID, tokio::runtime::Handle::current());
        let t = Instant::now();
        let run = sim
            .simulate(&scene.op, scene.entry_point, scene.hash)
            .await
            .map_err(|e| format!("cold simulation failed: {e}"))?;
        hist.saturating_record(elapsed_ns(t));
        if run.warm {
            return Err("a fresh simulator found the state warm".into());
        }
        if run.simulation != *expected {
            return Err(format!("the cold simulation differs: {:?}", run.simulation));
        }
        let trips = sim.round_trips();
        lo = lo.min(trips);
        hi = hi.max(trips);
    }
    Ok(Cold {
        p50: hist.value_at_quantile(0.50),
        p99: hist.value_at_quantile(0.99),
        max: hist.max(),
        samples: hist.len(),
        trips_min: if hist.is_empty() { 0 } else { lo },
        trips_max: hi,
    })
}

// ---------------------------------------------------------------------------------------------
// The counting proxy: HTTP requests and JSON-RPC calls between the simulator and the node

/// The JSON-RPC methods of each HTTP request the proxy forwarded, in order.
type RequestLog = Arc<Mutex<Vec<Vec<String>>>>;

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
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return failed(400, e.to_string()),
    };
    if let Ok(mut l) = log.lock() {
        l.push(methods_of(&body));
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

/// The requests one simulation sent, as counted by the proxy.
#[derive(Debug, Clone, Default)]
struct Requests {
    /// Per HTTP request: JSON-RPC method → calls.
    requests: Vec<BTreeMap<String, usize>>,
}

impl Requests {
    fn of(log: Vec<Vec<String>>) -> Self {
        Self {
            requests: log
                .into_iter()
                .map(|methods| {
                    let mut m = BTreeMap::new();
                    for name in methods {
                        *m.entry(name).or_insert(0) += 1;
                    }
                    m
                })
                .collect(),
        }
    }

    fn calls(&self) -> usize {
        self.requests.iter().map(|r| r.values().sum::<usize>()).sum()
    }

    fn describe(r: &BTreeMap<String, usize>) -> String {
        r.iter()
            .map(|(m, n)| {
                if *n == 1 {
                    format!("`{m}`")
                } else {
                    format!("`{m}` ×{n}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the proxy saw.
#[derive(Debug, Clone, Default)]
struct Probe {
    /// Each cold sample's requests, and its `round_trips()`.
    cold: Vec<(Requests, u64)>,
    /// A warm simulation's requests (the same simulator, again), and its `round_trips()` delta.
    warm: (Requests, u64),
    /// The node's head round trip alone (`Node::latest`, sequential, direct): p50, p99.
    head_p50: u64,
    head_p99: u64,
}

async fn probe(args: &Args, anvil: &str, scene: &Scene, expected: &Simulation) -> Result<Probe, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let upstream: hyper::Uri = anvil.parse().map_err(|e| format!("{anvil}: {e}"))?;
    let log: RequestLog = Arc::default();
    let (stop, stopped) = oneshot::channel();
    let proxy = tokio::spawn(serve_proxy(listener, upstream, log.clone(), stopped));
    let take = || log.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
    let outcome = async {
        let config = sim_config(&format!("http://{addr}/"))?;
        let mut out = Probe::default();
        for i in 0..args.probe {
            let sim = Simulator::new(config.clone(), CHAIN_ID, tokio::runtime::Handle::current());
            take();
            let run = sim
                .simulate(&scene.op, scene.entry_point, scene.hash)
                .await
                .map_err(|e| format!("probe: {e}"))?;
            if run.warm || run.simulation != *expected {
                return Err(format!("probe: unexpected cold run {run:?}"));
            }
            out.cold.push((Requests::of(take()), sim.round_trips()));
            if i + 1 == args.probe {
                let trips = sim.round_trips();
                let run = sim
                    .simulate(&scene.op, scene.entry_point, scene.hash)
                    .await
                    .map_err(|e| format!("probe: {e}"))?;
                if !run.warm || run.simulation != *expected {
                    return Err(format!("probe: unexpected warm run {run:?}"));
                }
                out.warm = (Requests::of(take()), sim.round_trips() - trips);
            }
        }
        Ok::<_, String>(out)
    }
    .await;
    let _ = stop.send(());
    let _ = proxy.await;
    let mut out = outcome?;

    let node = Node::new(transport(anvil)?, tokio::runtime::Handle::current());
    let mut hist = histogram()?;
    let samples = if args.smoke { 20 } else { HEAD_SAMPLES };
    for _ in 0..samples {
        let t = Instant::now();
        node.latest().await.map_err(|e| e.to_string())?;
        hist.saturating_record(elapsed_ns(t));
    }
    out.head_p50 = hist.value_at_quantile(0.5);
    out.head_p99 = hist.value_at_quantile(0.99);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The report

fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

fn median_by<T: Clone>(runs: &[T], key: impl Fn(&T) -> f64) -> Option<T> {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v.get(v.len() / 2).cloned()
}

/// Medians of each figure over the repetitions.
fn medians(runs: &[Figures]) -> Figures {
    let m = |f: fn(&Figures) -> u64| median_by(runs, |r| f(r) as f64).map_or(0, |r| f(&r));
    Figures {
        p50: m(|f| f.p50),
        p90: m(|f| f.p90),
        p99: m(|f| f.p99),
        max: m(|f| f.max),
        sims: m(|f| f.sims),
        per_sec: median_by(runs, |r| r.per_sec).map_or(0.0, |r| r.per_sec),
        cpu: m(|f| f.cpu),
        node_cpu: m(|f| f.node_cpu),
        trips: median_by(runs, |r| r.trips).map_or(0.0, |r| r.trips),
    }
}

fn cold_medians(runs: &[Cold]) -> Cold {
    let m = |f: fn(&Cold) -> u64| median_by(runs, |r| f(r) as f64).map_or(0, |r| f(&r));
    Cold {
        p50: m(|c| c.p50),
        p99: m(|c| c.p99),
        max: runs.iter().map(|c| c.max).max().unwrap_or(0),
        samples: runs.iter().map(|c| c.samples).sum(),
        trips_min: runs.iter().map(|c| c.trips_min).min().unwrap_or(0),
        trips_max: runs.iter().map(|c| c.trips_max).max().unwrap_or(0),
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

struct Report<'a> {
    args: &'a Args,
    scene: &'a Scene,
    expected: &'a Simulation,
    warm: Vec<(usize, Vec<Figures>)>,
    cold: Vec<Cold>,
    probe: Probe,
    load_before: String,
    load_after: String,
    /// Share of the machine's CPU that processes other than this one and anvil used meanwhile.
    others_busy: Option<f64>,
}

impl Report<'_> {
    fn gas_used(&self) -> U256 {
        self.expected.execution.as_ref().map(|e| e.gas_used).unwrap_or_default()
    }

    /// The highest-throughput level whose p50 is within the target, if any.
    fn both_targets(&self) -> Option<(usize, Figures)> {
        self.warm
            .iter()
            .map(|(c, runs)| (*c, medians(runs)))
            .filter(|(_, f)| f.p50 <= TARGET_P50_NS && f.per_sec >= TARGET_PER_SEC)
            .max_by(|a, b| a.1.per_sec.total_cmp(&b.1.per_sec))
    }
}

fn print_report(r: &Report<'_>) {
    let (args, scene) = (r.args, r.scene);
    println!();
    if args.smoke {
        println!("**Smoke run**: too short to measure anything. Run `cargo bench --bench simulate`.");
        println!();
    }
    println!("## Simulation (revm, real EntryPoint v0.7, state from anvil on loopback)");
    println!();
    println!(
        "The op: SimpleAccount v0.7 `{}` (deployed), nonce key 0, ECDSA over EIP-191(userOpHash); \
         `executeBatch` of {} × (TestToken `transfer({TOKEN_RECIPIENT}, {TOKENS})`, Forwarder \
         `forward{{value: {WEI}}}({VALUE_RECIPIENT})`), {} bytes of call data; gas limits: call {}, \
         verification {}, preVerification {PRE_VERIFICATION_GAS} (the least that works + 10%); \
         actualGasUsed {} (recorded Kernel v3.1 ops: {}).",
        scene.sender,
        args.batch,
        scene.call_data_len,
        scene.call_gas,
        scene.verification_gas,
        r.gas_used(),
        KERNEL_GAS
            .iter()
            .map(|(what, gas)| format!("{gas} for {what}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!();
    let others = r
        .others_busy
        .map_or_else(|| "n/a".into(), |f| format!("{:.0}%", f * 100.0));
    println!(
        "{} tokio workers; {} warm-up simulations before each warm run; medians over {} repetitions. \
         Other processes (neither this one nor anvil) used {others} of the machine's CPU during the \
         repetitions; load average before: {}, after: {}.",
        args.workers, args.warmup, args.reps, r.load_before, r.load_after
    );
    println!();
    println!("Warm (the block's state cached; closed loop, each task starts its next simulation when the previous one ends):");
    println!();
    println!(
        "| in flight | simulations | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | simulations/s | \
         process CPU/sim (µs) | anvil CPU/sim (µs) | node round trips/sim |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (c, runs) in &r.warm {
        let f = medians(runs);
        println!(
            "| {c} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {:.2} |",
            f.sims,
            ms(f.p50),
            ms(f.p90),
            ms(f.p99),
            ms(f.max),
            f.per_sec,
            us(f.cpu),
            us(f.node_cpu),
            f.trips
        );
    }
    println!();
    if !r.cold.is_empty() {
        let c = cold_medians(&r.cold);
        println!(
            "Cold (a fresh simulator per sample: empty cache, new connection; {} samples per repetition, \
             p50/p99 medians over repetitions, max and round trips over all {} samples):",
            args.cold, c.samples
        );
        println!();
        println!("| p50 (ms) | p99 (ms) | max (ms) | node round trips (min–max) |");
        println!("|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {} | {}–{} |",
            ms(c.p50),
            ms(c.p99),
            ms(c.max),
            c.trips_min,
            c.trips_max
        );
        println!();
    }
    let p = &r.probe;
    if let Some((first, _)) = p.cold.first() {
        let http = p.cold.iter().map(|(q, _)| q.requests.len());
        let calls = p.cold.iter().map(|(q, _)| q.calls());
        let trips = p.cold.iter().map(|(_, t)| *t);
        println!(
            "What a simulation sends the node, counted by an HTTP proxy between the simulator and anvil \
             ({} cold samples: {}–{} HTTP requests, {}–{} JSON-RPC calls, `round_trips()` {}–{}; the \
             requests of the first are listed):",
            p.cold.len(),
            http.clone().min().unwrap_or(0),
            http.max().unwrap_or(0),
            calls.clone().min().unwrap_or(0),
            calls.max().unwrap_or(0),
            trips.clone().min().unwrap_or(0),
            trips.max().unwrap_or(0),
        );
        println!();
        println!("| run | HTTP request | JSON-RPC calls | methods |");
        println!("|---|---:|---:|---|");
        for (i, req) in first.requests.iter().enumerate() {
            println!(
                "| cold | {} | {} | {} |",
                i + 1,
                req.values().sum::<usize>(),
                Requests::describe(req)
            );
        }
        for (i, req) in p.warm.0.requests.iter().enumerate() {
            println!(
                "| warm | {} | {} | {} |",
                i + 1,
                req.values().sum::<usize>(),
                Requests::describe(req)
            );
        }
        println!();
        println!(
            "The head round trip alone (`eth_getBlockByNumber`, `Node::latest`, sequential): p50 {} µs, p99 {} µs.",
            us(p.head_p50),
            us(p.head_p99)
        );
        println!();
    }
    if args.smoke {
        return;
    }
    if let Some((_, runs)) = r.warm.first() {
        let f = medians(runs);
        println!(
            "- warm p50 with {} in flight: {} ms (target ≤ 3 ms: {})",
            r.warm[0].0,
            ms(f.p50),
            met(f.p50 <= TARGET_P50_NS)
        );
    }
    if let Some((c, f)) = r
        .warm
        .iter()
        .map(|(c, runs)| (*c, medians(runs)))
        .max_by(|a, b| a.1.per_sec.total_cmp(&b.1.per_sec))
    {
        println!(
            "- highest warm throughput: {:.0} simulations/s with {c} in flight, p50 {} ms (target ≥ 800/s: {})",
            f.per_sec,
            ms(f.p50),
            met(f.per_sec >= TARGET_PER_SEC)
        );
    }
    match r.both_targets() {
        Some((c, f)) => println!(
            "- both at once: {:.0}/s with p50 {} ms at {c} in flight",
            f.per_sec,
            ms(f.p50)
        ),
        None => println!("- both at once: NOT met at any concurrency measured"),
    }
    if !r.cold.is_empty() {
        let c = cold_medians(&r.cold);
        println!(
            "- cold start: at most {} node round trips (target ≤ {TARGET_COLD_TRIPS}: {}), p50 {} ms",
            c.trips_max,
            met(c.trips_max <= TARGET_COLD_TRIPS),
            ms(c.p50)
        );
    }
}

fn figures_json(f: &Figures) -> Value {
    json!({
        "p50_seconds": f.p50 as f64 / 1e9,
        "p90_seconds": f.p90 as f64 / 1e9,
        "p99_seconds": f.p99 as f64 / 1e9,
        "max_seconds": f.max as f64 / 1e9,
        "simulations": f.sims,
        "simulations_per_second": f.per_sec,
        "process_cpu_seconds_per_simulation": f.cpu as f64 / 1e9,
        "node_cpu_seconds_per_simulation": f.node_cpu as f64 / 1e9,
        "node_round_trips_per_simulation": f.trips,
    })
}

fn cold_json(c: &Cold) -> Value {
    json!({
        "p50_seconds": c.p50 as f64 / 1e9,
        "p99_seconds": c.p99 as f64 / 1e9,
        "max_seconds": c.max as f64 / 1e9,
        "samples": c.samples,
        "node_round_trips_min": c.trips_min,
        "node_round_trips_max": c.trips_max,
    })
}

fn requests_json(q: &Requests) -> Value {
    json!({
        "http_requests": q.requests.len(),
        "json_rpc_calls": q.calls(),
        "requests": q.requests,
    })
}

fn report_json(r: &Report<'_>) -> Value {
    let cold = (!r.cold.is_empty()).then(|| cold_medians(&r.cold));
    let mut warm_requests = requests_json(&r.probe.warm.0);
    warm_requests["round_trips"] = json!(r.probe.warm.1);
    json!({
        "bench": "simulate",
        "op": {
            "account": "SimpleAccount v0.7 (deployed)",
            "sender": r.scene.sender,
            "batch_pairs": r.args.batch,
            "call_data_bytes": r.scene.call_data_len,
            "call_gas_limit": r.scene.call_gas,
            "verification_gas_limit": r.scene.verification_gas,
            "pre_verification_gas": PRE_VERIFICATION_GAS,
            "actual_gas_used": r.gas_used().to_string(),
        },
        "workers": r.args.workers,
        "warmup_simulations": r.args.warmup,
        "repetitions": r.args.reps,
        "load_average_before": r.load_before,
        "load_average_after": r.load_after,
        "other_processes_cpu_share": r.others_busy,
        "warm": r.warm.iter().map(|(c, runs)| json!({
            "in_flight": c,
            "median": figures_json(&medians(runs)),
            "repetitions": runs.iter().map(figures_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "cold": cold.as_ref().map(|c| json!({
            "median": cold_json(c),
            "repetitions": r.cold.iter().map(cold_json).collect::<Vec<_>>(),
        })),
        "proxy": {
            "cold": r.probe.cold.iter().map(|(q, trips)| {
                let mut v = requests_json(q);
                v["round_trips"] = json!(trips);
                v
            }).collect::<Vec<_>>(),
            "warm": warm_requests,
        },
        "head_round_trip_seconds": { "p50": r.probe.head_p50 as f64 / 1e9, "p99": r.probe.head_p99 as f64 / 1e9 },
        "targets_met": {
            "warm_p50": r.warm.first().map(|(_, runs)| medians(runs).p50 <= TARGET_P50_NS),
            "warm_throughput": r.warm.iter().any(|(_, runs)| medians(runs).per_sec >= TARGET_PER_SEC),
            "both_at_once": r.both_targets().is_some(),
            "cold_round_trips": cold.map(|c| c.trips_max <= TARGET_COLD_TRIPS),
        },
    })
}

// ---------------------------------------------------------------------------------------------

async fn run(args: Args) -> Result<(), String> {
    // The guard exists before anything starts, so whatever `up` started is stopped on the way out.
    let devnet = Devnet::new("sim")?;
    let t = Instant::now();
    let devnet = tokio::task::spawn_blocking(move || {
        let mut devnet = devnet;
        devnet.start().map(|()| devnet)
    })
    .await
    .map_err(|e| e.to_string())??;
    let anvil = devnet.get("ANVIL_URL")?.to_string();
    let anvil_pid = devnet.get("ANVIL_PID")?.to_string();
    eprintln!(
        "devnet up in {:.1} s: anvil {anvil} (pid {anvil_pid}), no bundler",
        t.elapsed().as_secs_f64()
    );
    let rpc = Rpc::new(&anvil)?;
    let config = sim_config(&anvil)?;
    let scene = Arc::new(set_up(&devnet, &rpc, &config, args.batch).await?);
    let sim = Arc::new(Simulator::new(
        config.clone(),
        CHAIN_ID,
        tokio::runtime::Handle::current(),
    ));

    // The first simulation loads the block's state; it must find the op valid with its effects.
    let first = sim
        .simulate(&scene.op, scene.entry_point, scene.hash)
        .await
        .map_err(|e| format!("the first simulation: {e}"))?;
    check_simulation(&first.simulation, &scene, args.batch)?;
    let expected = Arc::new(first.simulation.clone());
    let (block, head, _) = rpc.head().await?;
    if expected.block != block {
        return Err(format!("simulated block {} but the head is {block}", expected.block));
    }
    eprintln!(
        "op {} of {} checked: valid, executed, {} calls, {} wei and {} token transfers out; actualGasUsed {}; block {block}",
        scene.hash,
        scene.sender,
        expected.effects.calls.len(),
        expected.effects.native_out,
        expected.effects.transfers.len(),
        expected.execution.as_ref().map(|e| e.gas_used).unwrap_or_default()
    );
    let w = Warm {
        sim: sim.clone(),
        scene: scene.clone(),
        expected: expected.clone(),
    };

    let load_before = load_average();
    let machine0 = machine_cpu();
    let own0 = process_cpu();
    let anvil0 = cpu_of(&anvil_pid);
    let mut warm: Vec<(usize, Vec<Figures>)> = args.concurrency.iter().map(|c| (*c, Vec::new())).collect();
    let mut cold = Vec::new();
    for rep in 1..=args.reps {
        if args.warm > 0 {
            for (c, runs) in &mut warm {
                let f = warm_run(&w, *c, args.warmup, args.warm, &anvil_pid).await?;
                eprintln!(
                    "rep {rep}/{} warm, {c} in flight: {:.0}/s, p50 {} ms, p99 {} ms, CPU/sim {} µs + anvil {} µs, {:.2} round trips/sim",
                    args.reps,
                    f.per_sec,
                    ms(f.p50),
                    ms(f.p99),
                    us(f.cpu),
                    us(f.node_cpu),
                    f.trips
                );
                runs.push(f);
            }
        }
        if args.cold > 0 {
            let c = cold_run(&config, &scene, &expected, args.cold).await?;
            eprintln!(
                "rep {rep}/{} cold: p50 {} ms, p99 {} ms, max {} ms, {}–{} round trips",
                args.reps,
                ms(c.p50),
                ms(c.p99),
                ms(c.max),
                c.trips_min,
                c.trips_max
            );
            cold.push(c);
        }
        // Nothing may have moved the chain: every run above simulated on one block.
        let (_, now, _) = rpc.head().await?;
        if now != head {
            return Err("the block changed during the run (a transaction reached anvil)".into());
        }
    }
    let load_after = load_average();
    let others_busy = match (machine0, machine_cpu(), own0, process_cpu(), anvil0, cpu_of(&anvil_pid)) {
        (Some((busy0, total0)), Some((busy1, total1)), Some(own0), Some(own1), Some(a0), Some(a1))
            if total1 > total0 =>
        {
            let ours = (own1.saturating_sub(own0) + a1.saturating_sub(a0)) as f64 / TICK_NS as f64;
            let busy = busy1.saturating_sub(busy0) as f64;
            Some(((busy - ours) / (total1 - total0) as f64).clamp(0.0, 1.0))
        }
        _ => None,
    };
    let probe = probe(&args, &anvil, &scene, &expected).await?;
    let report = Report {
        args: &args,
        scene: &scene,
        expected: &expected,
        warm: if args.warm > 0 { warm } else { Vec::new() },
        cold,
        probe,
        load_before,
        load_after,
        others_busy,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report_json(&report)).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
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
    let args = args_or_exit("simulate", parse_args());
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
    finish("simulate", outcome);
}
