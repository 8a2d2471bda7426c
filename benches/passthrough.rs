//! Pass-through overhead: what opgate adds to a relayed read call, compared with calling the
//! upstream bundler directly, and what an API key check plus request limits add on top.
//!
//! One process, one multi-thread tokio runtime, everything on 127.0.0.1:
//! - a minimal upstream bundler (hyper, HTTP/1.1 keep-alive) that answers every call with the same
//!   ~1.4 KB `eth_getUserOperationReceipt` result, echoing only the request id;
//! - `opgate` in front of it, built from a plain `--upstream` configuration;
//! - `keyed`: a second opgate in front of the same upstream, identical but for one `[[tenants]]`
//!   entry with an API key and a request limit, and `[server.requests_per_ip]`, on the memory
//!   store; every request to it carries the key in an `x-api-key` header. The limits are far too
//!   high to refuse anything, and any answer that is not a JSON-RPC result (a 401 or 429, say)
//!   fails the run;
//! - a load driver that sends the same `eth_getUserOperationReceipt` calls to all three, from C
//!   clients on their own keep-alive connections (C = 16 by default), and again from a single
//!   client (C = 1), which shows per-request cost without the queueing that 16 clients cause on
//!   2 cores.
//!
//! Each repetition runs the three targets back to back, in the order direct, opgate, keyed and
//! then reversed on the next repetition, so that drift in machine load falls on all of them. The
//! figures reported are medians over the repetitions; an overhead is the median of the
//! per-repetition differences (opgate − direct, keyed − opgate).
//!
//! Then, when Redis answers (`--redis`, default `redis://127.0.0.1:6379`), one more keyed opgate on
//! the Redis store (under a key prefix of its own, deleted afterwards) is driven by one client
//! through a counting TCP proxy, which gives the store commands sent per keyed request once the
//! key is cached (target: exactly one round trip, the request-limit script).
//!
//! Run: `cargo bench --bench passthrough -- [--concurrency N] [--requests N | --duration SECS]
//! [--warmup N] [--reps N] [--only direct|opgate|keyed] [--redis URL|off] [--json FILE]`, or
//! `scripts/bench-passthrough.sh`.
//! Without any argument or `OPGATE_BENCH_*` variable (as under `cargo test --benches`) it does a
//! short smoke run instead. No tracing subscriber is installed, so opgate logs nothing whatever
//! `RUST_LOG` says.

#[path = "common/alloc.rs"]
mod allocator;
#[path = "common/resp_proxy.rs"]
mod resp_proxy;
use resp_proxy::{serve_proxy, Counts};
#[path = "common/host.rs"]
mod host;
use host::{args_or_exit, args_or_smoke, env_or, finish, load_average, machine_cpu, process_cpu, runtime, us, TICK_NS};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opgate::app::App;
use opgate::config::{Config, Overrides};
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Barrier};
use tokio::task::JoinSet;

/// Target from DESIGN §7: opgate − direct at p50, in nanoseconds.
const TARGET_P50_NS: i64 = 300_000;
/// Target from DESIGN §7: opgate − direct at p99, in nanoseconds.
const TARGET_P99_NS: i64 = 1_000_000;
/// Target for the API key check plus the request limits, memory store: keyed − opgate at p50, in
/// nanoseconds.
const TARGET_KEYED_P50_NS: i64 = 50_000;
/// The keyed target's API key (keys are at least 16 characters).
const API_KEY: &str = "opgate-bench-passthrough-key-0001";
/// Its request limits, per key and per client IP: never reached during a run.
const NEVER_REACHED: u32 = 4_000_000_000;
/// How long a Redis connection may take before the Redis part is skipped.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most SCAN calls when deleting the bench's Redis keys.
const SCAN_CALLS_MAX: usize = 10_000;
/// One call that takes longer than this fails the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on requests in `--duration` mode, so that the loop is bounded by count as well.
const DURATION_MODE_CAP: u64 = 100_000_000;
/// Share of the machine's CPU used by other processes above which the figures are flagged.
const BUSY_MACHINE: f64 = 0.05;
/// Histogram range: 1 ns to 60 s, three significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

const USAGE: &str = "\
usage: cargo bench --bench passthrough -- [options]

  --concurrency N   concurrent clients in the concurrent run   [env OPGATE_BENCH_CONCURRENCY, 16]
  --requests N      measured requests per target and run        [env OPGATE_BENCH_REQUESTS, 20000]
  --duration SECS   measure for SECS per target and run instead [env OPGATE_BENCH_DURATION]
  --warmup N        unmeasured requests before each run         [env OPGATE_BENCH_WARMUP, 2000]
  --reps N          repetitions (order reversed every time)     [env OPGATE_BENCH_REPS, 5]
  --only TARGET     drive only `direct`, `opgate` or `keyed` (for profiling; no overhead figures)
  --redis URL|off   Redis to count a keyed request's store round trips, skipped when it does not
                    answer                   [env OPGATE_BENCH_REDIS, redis://127.0.0.1:6379]
  --json FILE       also write the results as JSON

Targets: `direct` (the upstream itself), `opgate` (plain pass-through) and `keyed` (opgate with
one tenant's API key, a per-key and a per-IP request limit, memory store; the key in `x-api-key`).

With no argument and no OPGATE_BENCH_* variable (as under `cargo test --benches`), a short smoke
run checks that everything works; its figures mean nothing.
";

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone)]
struct Args {
    concurrency: usize,
    requests: u64,
    duration: Option<Duration>,
    warmup: u64,
    reps: usize,
    only: Option<Target>,
    /// Redis URL for the round-trip count; `None`: off.
    redis: Option<String>,
    json: Option<PathBuf>,
    /// A short run that only checks that everything works.
    smoke: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        concurrency: env_or("OPGATE_BENCH_CONCURRENCY", 16)?,
        requests: env_or("OPGATE_BENCH_REQUESTS", 20_000)?,
        duration: match std::env::var("OPGATE_BENCH_DURATION") {
            Ok(v) => Some(parse_secs(&v)?),
            Err(_) => None,
        },
        warmup: env_or("OPGATE_BENCH_WARMUP", 2_000)?,
        reps: env_or("OPGATE_BENCH_REPS", 5)?,
        only: None,
        redis: redis_url(env_or("OPGATE_BENCH_REDIS", "redis://127.0.0.1:6379".to_string())?),
        json: None,
        smoke: false,
    };
    let (given, smoke) = args_or_smoke();
    if smoke {
        // Keep it short.
        args.requests = 200;
        args.warmup = 50;
        args.reps = 1;
        args.smoke = true;
    }
    let mut it = given.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("`{v}` is not a number"));
        match flag.as_str() {
            // cargo passes `--bench` to every bench binary.
            "--bench" => {}
            "--concurrency" | "-c" => args.concurrency = number(value()?)? as usize,
            "--requests" | "-n" => args.requests = number(value()?)?,
            "--duration" => args.duration = Some(parse_secs(&value()?)?),
            "--warmup" => args.warmup = number(value()?)?,
            "--reps" => args.reps = number(value()?)? as usize,
            "--only" => {
                args.only = Some(match value()?.as_str() {
                    "direct" => Target::Direct,
                    "opgate" => Target::Opgate,
                    "keyed" => Target::Keyed,
                    other => return Err(format!("--only takes `direct`, `opgate` or `keyed`, not `{other}`")),
                })
            }
            "--redis" => args.redis = redis_url(value()?),
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if args.concurrency == 0 || args.reps == 0 || (args.duration.is_none() && args.requests == 0) {
        return Err("--concurrency, --reps and --requests must be at least 1".into());
    }
    Ok(args)
}

/// `off` (or empty) turns the Redis part off.
fn redis_url(v: String) -> Option<String> {
    (!v.is_empty() && v != "off").then_some(v)
}

fn parse_secs(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{v}` is not a duration in seconds between 0 and 3600"))
}

// ---------------------------------------------------------------------------------------------
// The upstream bundler

/// A realistic ERC-4337 v0.7 `eth_getUserOperationReceipt` result (about 1.4 KB, a third of it the
/// receipt's logs bloom).
fn receipt_result() -> String {
    let ep = "0x0000000071727De22E5E9d8BAf0edAc6f37da032";
    let mut bloom = "0".repeat(512);
    // A handful of set bits, as a bloom for a few logs has.
    for (at, nibble) in [(3, "2"), (77, "8"), (140, "1"), (301, "4"), (466, "2")] {
        bloom.replace_range(at..at + 1, nibble);
    }
    format!(
        concat!(
            r#"{{"userOpHash":"0x8f2c6b0e4a1d9e73c5b2f8a06d4e1c37b9a25f80e6d3c1b4a7f02e9d8c6b5a41","#,
            r#""entryPoint":"{ep}","sender":"0x3a9f1B2c4D5e6F708192a3b4C5d6E7f8091A2b3C","#,
            r#""nonce":"0x1a2b3c4d000000000000000000000000000000000000000000000007","#,
            r#""paymaster":"0x0000000000000000000000000000000000000000","#,
            r#""actualGasCost":"0x1b4f7a3c9e00","actualGasUsed":"0x2a8f1","success":true,"reason":"0x","logs":[],"#,
            r#""receipt":{{"transactionHash":"0x5d7e3c1a9b8f6e4d2c0b1a3f5e7d9c8b6a4f2e0d1c3b5a7f9e8d6c4b2a0f1e3d","#,
            r#""transactionIndex":"0x3","blockHash":"0xa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90","#,
            r#""blockNumber":"0x12d4f3a","from":"0x4337001fFf419768E088Ce247456C1B892888084","to":"{ep}","#,
            r#""cumulativeGasUsed":"0x5c3b21","gasUsed":"0x2f7c4","contractAddress":null,"logs":[],"#,
            r#""logsBloom":"0x{bloom}","status":"0x1","effectiveGasPrice":"0x3b9aca07","type":"0x2"}}}}"#,
        ),
        ep = ep,
        bloom = bloom
    )
}

/// The response body, split around the request id.
struct Canned {
    head: &'static [u8],
    tail: Bytes,
}

#[derive(serde::Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
}

impl Canned {
    fn new() -> Self {
        Self {
            head: br#"{"jsonrpc":"2.0","id":"#,
            tail: Bytes::from(format!(r#","result":{}}}"#, receipt_result())),
        }
    }

    /// The answer to `request`, or `None` when it carries no id.
    fn answer(&self, request: &[u8]) -> Option<Bytes> {
        // Only the id is read; the rest is skipped by the parser.
        let id = serde_json::from_slice::<IdOnly<'_>>(request).ok()?.id.get();
        let mut out = Vec::with_capacity(self.head.len() + id.len() + self.tail.len());
        out.extend_from_slice(self.head);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&self.tail);
        Some(Bytes::from(out))
    }
}

async fn answer(
    canned: Arc<Canned>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let response = match canned.answer(&body) {
        Some(body) => hyper::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body)),
        None => hyper::Response::builder().status(400).body(Full::new(Bytes::new())),
    };
    Ok(response.expect("static response parts are valid"))
}

/// Serves on `listener` until `stop` fires; then aborts its connection tasks. Counts the
/// connections it accepts in `accepted`: a direct run opens one per client, and an opgate run shows
/// how many its relay opened.
async fn serve_upstream(listener: TcpListener, accepted: Arc<AtomicU64>, mut stop: oneshot::Receiver<()>) {
    let canned = Arc::new(Canned::new());
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => break,
            },
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let canned = canned.clone();
        connections.spawn(async move {
            let svc = service_fn(move |req| answer(canned.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    connections.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The load driver

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Opgate,
    /// opgate with an API key check and request limits.
    Keyed,
}

impl Target {
    const ALL: [Self; 3] = [Self::Direct, Self::Opgate, Self::Keyed];

    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Opgate => "opgate",
            Self::Keyed => "keyed",
        }
    }

    /// Its position in [`Target::ALL`] and in [`Series::runs`].
    fn index(self) -> usize {
        self as usize
    }

    /// The API key its requests carry.
    fn api_key(self) -> Option<&'static str> {
        (self == Self::Keyed).then_some(API_KEY)
    }
}

/// Figures of one run against one target, latencies in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    requests: u64,
    per_sec: f64,
    /// Connections the upstream accepted during the run.
    upstream_connections: u64,
    /// CPU time of the whole process (client, upstream and, for opgate runs, opgate) per
    /// measured request, in nanoseconds; 0 where `/proc/self/stat` cannot be read.
    cpu_per_request: u64,
}

impl Figures {
    fn of(hist: &Histogram<u64>, wall: Duration) -> Self {
        let secs = wall.as_secs_f64();
        Self {
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            requests: hist.len(),
            per_sec: if secs > 0.0 { hist.len() as f64 / secs } else { 0.0 },
            upstream_connections: 0,
            cpu_per_request: 0,
        }
    }
}

/// How much load one run applies.
#[derive(Debug, Clone, Copy)]
struct Load {
    clients: usize,
    /// Measured requests, shared by all clients.
    requests: u64,
    duration: Option<Duration>,
    /// Unmeasured requests before the measured phase, shared by all clients.
    warmup: u64,
}

const REQUEST_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getUserOperationReceipt","params":["0x8f2c6b0e4a1d9e73c5b2f8a06d4e1c37b9a25f80e6d3c1b4a7f02e9d8c6b5a41"]}"#;

struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    /// Sent as `x-api-key` with every call.
    api_key: Option<&'static str>,
}

impl Connection {
    async fn open(
        addr: SocketAddr,
        api_key: Option<&'static str>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok((
            Self {
                sender,
                host: addr.to_string(),
                api_key,
            },
            task,
        ))
    }

    /// One call: returns the status and the full body.
    async fn call(&mut self, body: &Bytes) -> Result<(u16, Bytes), String> {
        let mut request = hyper::Request::post("/")
            .header(http::header::HOST, self.host.as_str())
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = self.api_key {
            request = request.header("x-api-key", key);
        }
        let request = request.body(Full::new(body.clone())).map_err(|e| e.to_string())?;
        let exchange = async {
            self.sender.ready().await.map_err(|e| e.to_string())?;
            let response = self.sender.send_request(request).await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_bytes()))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
    }
}

fn check(status: u16, body: &[u8]) -> Result<(), String> {
    let has_result = body.windows(9).any(|w| w == br#""result":"#);
    if status == 200 && has_result {
        Ok(())
    } else if matches!(status, 401 | 429) {
        Err(format!(
            "refused with HTTP {status} (API key or request limit): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    } else {
        Err(format!(
            "unexpected answer: HTTP {status}, {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    }
}

struct ClientRun {
    hist: Histogram<u64>,
    started: Instant,
    ended: Instant,
}

async fn client(
    addr: SocketAddr,
    api_key: Option<&'static str>,
    load: Load,
    next: Arc<AtomicU64>,
    start_line: Arc<Barrier>,
) -> Result<ClientRun, String> {
    let body = Bytes::from_static(REQUEST_BODY.as_bytes());
    let (mut conn, task) = Connection::open(addr, api_key).await?;
    let warmup = load.warmup.div_ceil(load.clients as u64);
    for _ in 0..warmup {
        let (status, answer) = conn.call(&body).await?;
        check(status, &answer)?;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, HIST_MAX_NS, 3).map_err(|e| e.to_string())?;
    start_line.wait().await;
    let started = Instant::now();
    let (limit, deadline) = match load.duration {
        Some(d) => (DURATION_MODE_CAP, Some(started + d)),
        None => (load.requests, None),
    };
    for _ in 0..limit {
        if next.fetch_add(1, Ordering::Relaxed) >= limit || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let sent = Instant::now();
        let (status, answer) = conn.call(&body).await?;
        let took = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
        hist.saturating_record(took.clamp(1, HIST_MAX_NS));
        check(status, &answer)?;
    }
    let ended = Instant::now();
    drop(conn);
    let _ = task.await;
    Ok(ClientRun { hist, started, ended })
}

/// Applies `load` to `addr`, every request carrying `api_key` if given, and returns the merged
/// figures. Every answer must be a JSON-RPC result: anything else fails the run.
async fn drive(addr: SocketAddr, api_key: Option<&'static str>, load: Load) -> Result<Figures, String> {
    let next = Arc::new(AtomicU64::new(0));
    let start_line = Arc::new(Barrier::new(load.clients));
    let mut clients = JoinSet::new();
    for _ in 0..load.clients {
        clients.spawn(client(addr, api_key, load, next.clone(), start_line.clone()));
    }
    let mut runs = Vec::with_capacity(load.clients);
    let mut failure = None;
    while let Some(joined) = clients.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(run) => runs.push(run),
            Err(e) => {
                // A failed client would leave the others waiting at the start line: stop them all.
                failure.get_or_insert(e);
                clients.abort_all();
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, HIST_MAX_NS, 3).map_err(|e| e.to_string())?;
    for run in &runs {
        hist.add(&run.hist).map_err(|e| e.to_string())?;
    }
    let started = runs.iter().map(|r| r.started).min();
    let ended = runs.iter().map(|r| r.ended).max();
    let wall = match (started, ended) {
        (Some(s), Some(e)) => e.duration_since(s),
        _ => Duration::ZERO,
    };
    Ok(Figures::of(&hist, wall))
}

// ---------------------------------------------------------------------------------------------
// Repetitions and the report

/// One load shape: its label and the figures of every repetition for each target.
struct Series {
    label: String,
    load: Load,
    /// Per target, in [`Target::ALL`] order.
    runs: [Vec<Figures>; 3],
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn median_i64(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Series {
    fn median(runs: &[Figures]) -> Figures {
        if runs.is_empty() {
            return Figures::default();
        }
        let m = |f: fn(&Figures) -> u64| median_u64(runs.iter().map(f).collect());
        Figures {
            p50: m(|f| f.p50),
            p90: m(|f| f.p90),
            p99: m(|f| f.p99),
            p999: m(|f| f.p999),
            max: m(|f| f.max),
            requests: m(|f| f.requests),
            per_sec: median_f64(runs.iter().map(|f| f.per_sec).collect()),
            upstream_connections: m(|f| f.upstream_connections),
            cpu_per_request: m(|f| f.cpu_per_request),
        }
    }

    fn of(&self, target: Target) -> &[Figures] {
        &self.runs[target.index()]
    }

    /// Whether both targets of `pair` ran, so that an overhead can be given.
    fn compared(&self, pair: Pair) -> bool {
        !self.of(pair.base).is_empty() && !self.of(pair.over).is_empty()
    }

    /// Median over repetitions of (`pair.over` − `pair.base`) for one figure, in nanoseconds.
    fn overhead(&self, pair: Pair, f: fn(&Figures) -> u64) -> i64 {
        if !self.compared(pair) {
            return 0;
        }
        median_i64(
            self.of(pair.base)
                .iter()
                .zip(self.of(pair.over))
                .map(|(b, o)| f(o) as i64 - f(b) as i64)
                .collect(),
        )
    }
}

/// Two targets whose difference is reported.
#[derive(Debug, Clone, Copy)]
struct Pair {
    base: Target,
    over: Target,
}

/// What opgate adds to the upstream.
const PASS_THROUGH: Pair = Pair {
    base: Target::Direct,
    over: Target::Opgate,
};
/// What the API key check and the request limits add to opgate.
const KEYS: Pair = Pair {
    base: Target::Opgate,
    over: Target::Keyed,
};

fn signed_us(ns: i64) -> String {
    format!("{:+.1}", ns as f64 / 1_000.0)
}

fn verdict(overhead_ns: i64, target_ns: i64) -> &'static str {
    if overhead_ns <= target_ns {
        "met"
    } else {
        "NOT met"
    }
}

/// What else the machine was doing while the bench ran.
struct Background {
    load_before: String,
    load_after: String,
    /// Share of the machine's CPU time used by other processes during the measurement.
    others_busy: Option<f64>,
}

impl Background {
    fn describe(&self) -> String {
        let others = self
            .others_busy
            .map_or_else(|| "n/a".into(), |f| format!("{:.0}%", f * 100.0));
        format!(
            "other processes used {others} of the machine's CPU during the measurement; load average before: \
             {}, after: {}",
            self.load_before, self.load_after
        )
    }
}

fn print_report(args: &Args, series: &[Series], background: &Background, response_bytes: usize, redis: &RedisPart) {
    let amount = match args.duration {
        Some(d) => format!("{:.1} s", d.as_secs_f64()),
        None => format!("{} requests", args.requests),
    };
    println!();
    if args.smoke {
        println!("**Smoke run**: too short to measure anything. Run `cargo bench --bench passthrough`.");
        println!();
    }
    println!("## Pass-through overhead: `eth_getUserOperationReceipt`, {response_bytes}-byte response");
    println!();
    let targets = match args.only {
        Some(t) => format!("{} only", t.name()),
        None => "direct, opgate and keyed in turn (the order reversed every other repetition)".into(),
    };
    println!(
        "Per run: {} warm-up requests, then {amount}; {} repetitions, {targets}; medians over repetitions. \
         keyed: one tenant's API key (`x-api-key`), a per-key and a per-IP request limit, memory store. \
         Machine: {}.",
        args.warmup,
        args.reps,
        background.describe()
    );
    println!();
    println!(
        "| clients | target | p50 (µs) | p90 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | requests/s | \
         CPU/request (µs) | new upstream connections |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in series {
        for target in Target::ALL {
            let runs = s.of(target);
            if runs.is_empty() {
                continue;
            }
            let m = Series::median(runs);
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |",
                s.label,
                target.name(),
                us(m.p50),
                us(m.p90),
                us(m.p99),
                us(m.p999),
                us(m.max),
                m.per_sec,
                us(m.cpu_per_request),
                m.upstream_connections
            );
        }
        for (pair, name) in [(PASS_THROUGH, "**overhead**"), (KEYS, "**keyed − opgate**")] {
            if !s.compared(pair) {
                continue;
            }
            println!(
                "| {} | {name} | **{}** | {} | **{}** | {} | | | {} | |",
                s.label,
                signed_us(s.overhead(pair, |f| f.p50)),
                signed_us(s.overhead(pair, |f| f.p90)),
                signed_us(s.overhead(pair, |f| f.p99)),
                signed_us(s.overhead(pair, |f| f.p999)),
                signed_us(s.overhead(pair, |f| f.cpu_per_request)),
            );
        }
    }
    println!();
    if !args.smoke {
        for s in series {
            if s.compared(PASS_THROUGH) {
                let p50 = s.overhead(PASS_THROUGH, |f| f.p50);
                let p99 = s.overhead(PASS_THROUGH, |f| f.p99);
                println!(
                    "- {}: overhead p50 {} µs (target ≤ 300: {}), p99 {} µs (target ≤ 1000: {})",
                    s.label,
                    signed_us(p50),
                    verdict(p50, TARGET_P50_NS),
                    signed_us(p99),
                    verdict(p99, TARGET_P99_NS)
                );
            }
            if s.compared(KEYS) {
                let p50 = s.overhead(KEYS, |f| f.p50);
                println!(
                    "- {}: API key check + request limits (keyed − opgate, memory store) p50 {} µs \
                     (target ≤ 50: {}), p99 {} µs",
                    s.label,
                    signed_us(p50),
                    verdict(p50, TARGET_KEYED_P50_NS),
                    signed_us(s.overhead(KEYS, |f| f.p99)),
                );
            }
        }
    }
    print_redis(args, redis);
    if background.others_busy.is_some_and(|f| f > BUSY_MACHINE) {
        println!();
        println!(
            "**The machine was busy**: other processes competed for the CPUs, which inflates opgate's figures \
             more than direct's. Re-run on an idle machine before quoting them."
        );
    }
}

fn print_redis(args: &Args, redis: &RedisPart) {
    println!();
    let t = match redis {
        RedisPart::Skipped(why) => {
            println!("Store round trips per keyed request (Redis): not measured: {why}.");
            return;
        }
        RedisPart::Counted(t) => t,
    };
    println!("### Store round trips per keyed request (Redis store)");
    println!();
    println!(
        "One keyed opgate on the Redis store, one client, {} requests after {} warm-up requests (the key cached); \
         commands counted by a TCP proxy between opgate and Redis.",
        t.requests, t.warmup
    );
    println!();
    println!("| command (opgate → Redis) | during the run | per request |");
    println!("|---|---:|---:|");
    for (label, n) in &t.commands {
        if label == VERSION_POLL {
            println!("| {label} (background poll, every 400 ms) | {n} | – |");
        } else {
            println!("| {label} | {n} | {:.3} |", *n as f64 / t.requests.max(1) as f64);
        }
    }
    println!();
    println!(
        "- round trips per request (background polls left out): {:.3} (target: exactly 1{})",
        t.per_request(),
        if args.smoke {
            String::new()
        } else if t.met() {
            ": met".into()
        } else {
            ": NOT met".into()
        }
    );
    if let Some(n) = t.server_scripts {
        println!(
            "- server side, `INFO commandstats`: EVALSHA + EVAL calls rose by {n} during the run (every client \
             of the server counts)"
        );
    }
    println!(
        "- latency through the proxy, for information only: p50 {} µs, p99 {} µs",
        us(t.figures.p50),
        us(t.figures.p99)
    );
}

fn figures_json(f: &Figures) -> serde_json::Value {
    serde_json::json!({
        "p50_seconds": f.p50 as f64 / 1e9,
        "p90_seconds": f.p90 as f64 / 1e9,
        "p99_seconds": f.p99 as f64 / 1e9,
        "p999_seconds": f.p999 as f64 / 1e9,
        "max_seconds": f.max as f64 / 1e9,
        "requests": f.requests,
        "requests_per_second": f.per_sec,
        "upstream_connections_opened": f.upstream_connections,
        "process_cpu_seconds_per_request": f.cpu_per_request as f64 / 1e9,
    })
}

fn overhead_json(s: &Series, pair: Pair) -> Option<serde_json::Value> {
    s.compared(pair).then(|| {
        serde_json::json!({
            "p50": s.overhead(pair, |f| f.p50) as f64 / 1e9,
            "p90": s.overhead(pair, |f| f.p90) as f64 / 1e9,
            "p99": s.overhead(pair, |f| f.p99) as f64 / 1e9,
            "p999": s.overhead(pair, |f| f.p999) as f64 / 1e9,
            "process_cpu_per_request": s.overhead(pair, |f| f.cpu_per_request) as f64 / 1e9,
        })
    })
}

fn report_json(args: &Args, series: &[Series], background: &Background, redis: &RedisPart) -> serde_json::Value {
    let loads: Vec<serde_json::Value> = series
        .iter()
        .map(|s| {
            let median = |t: Target| (!s.of(t).is_empty()).then(|| figures_json(&Series::median(s.of(t))));
            let every = |t: Target| s.of(t).iter().map(figures_json).collect::<Vec<_>>();
            serde_json::json!({
                "clients": s.load.clients,
                "direct": median(Target::Direct),
                "opgate": median(Target::Opgate),
                "keyed": median(Target::Keyed),
                "overhead_seconds": overhead_json(s, PASS_THROUGH),
                "keyed_overhead_seconds": overhead_json(s, KEYS),
                "targets_met": s.compared(PASS_THROUGH).then(|| serde_json::json!({
                    "p50": s.overhead(PASS_THROUGH, |f| f.p50) <= TARGET_P50_NS,
                    "p99": s.overhead(PASS_THROUGH, |f| f.p99) <= TARGET_P99_NS,
                })),
                "keyed_target_met": s.compared(KEYS).then(|| serde_json::json!({
                    "p50": s.overhead(KEYS, |f| f.p50) <= TARGET_KEYED_P50_NS,
                })),
                "repetitions": {
                    "direct": every(Target::Direct),
                    "opgate": every(Target::Opgate),
                    "keyed": every(Target::Keyed),
                },
            })
        })
        .collect();
    let redis = match redis {
        RedisPart::Skipped(why) => serde_json::json!({ "skipped": why }),
        RedisPart::Counted(t) => serde_json::json!({
            "clients": 1,
            "warmup_requests": t.warmup,
            "requests": t.requests,
            "commands": t.commands,
            "version_polls": t.commands.get(VERSION_POLL).copied().unwrap_or(0),
            "round_trips_per_request": t.per_request(),
            "target_met": t.met(),
            "server_script_calls": t.server_scripts,
            "through_proxy": figures_json(&t.figures),
        }),
    };
    serde_json::json!({
        "bench": "passthrough",
        "method": "eth_getUserOperationReceipt",
        "warmup_requests": args.warmup,
        "requests_per_run": args.duration.map_or(Some(args.requests), |_| None),
        "duration_seconds_per_run": args.duration.map(|d| d.as_secs_f64()),
        "repetitions": args.reps,
        "keyed": {
            "api_key_in": "x-api-key header",
            "requests_per_key": { "rate": NEVER_REACHED, "burst": NEVER_REACHED },
            "requests_per_ip": { "rate": NEVER_REACHED, "burst": NEVER_REACHED },
            "store": "memory",
        },
        "load_average_before": background.load_before,
        "load_average_after": background.load_after,
        "other_processes_cpu_share": background.others_busy,
        "loads": loads,
        "redis_round_trips": redis,
    })
}

// ---------------------------------------------------------------------------------------------
// opgate instances

/// The keyed configuration: one chain on `upstream`, one tenant with [`API_KEY`] and a request
/// limit, a per-client-IP limit, and `store` (a `[store]` table).
fn keyed_config(upstream: SocketAddr, store: &str) -> Result<Config, String> {
    let toml = format!(
        r#"
{store}
[server.requests_per_ip]
rate = {NEVER_REACHED}
burst = {NEVER_REACHED}

[[chains]]
id = 1
upstreams = ["http://{upstream}/"]

[[tenants]]
name = "bench"
keys = ["{API_KEY}"]
requests = {{ rate = {NEVER_REACHED}, burst = {NEVER_REACHED} }}
"#
    );
    let config = Config::from_toml(&toml, &Overrides::default()).map_err(|e| format!("keyed config: {e}"))?;
    let limited =
        config.tenants.len() == 1 && config.tenants[0].requests.is_some() && config.server.requests_per_ip.is_some();
    if !limited {
        return Err("keyed config: expected one tenant with a request limit and a per-IP limit".into());
    }
    Ok(config)
}

/// opgate serving on a port of its own until stopped.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), opgate::app::AppError>>,
}

impl Running {
    async fn start(config: Config) -> Result<Self, String> {
        let app = App::build(config).await.map_err(|e| e.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(listener, None, async move {
            let _ = stopped.await;
        }));
        Ok(Self { addr, stop, task })
    }

    async fn stop(self, name: &str) -> Result<(), String> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{name}: {e}")),
            Err(e) => Err(format!("{name} task: {e}")),
        }
    }
}

/// Checks that the keyed opgate turns away a request without a key, and admits one with it.
async fn preflight_keyed(addr: SocketAddr) -> Result<(), String> {
    let body = Bytes::from_static(REQUEST_BODY.as_bytes());
    let (mut bare, task) = Connection::open(addr, None).await?;
    let (status, _) = bare.call(&body).await?;
    drop(bare);
    let _ = task.await;
    if status != 401 {
        return Err(format!(
            "keyed: a request without the API key got HTTP {status}, not 401"
        ));
    }
    let (mut keyed, task) = Connection::open(addr, Some(API_KEY)).await?;
    let (status, answer) = keyed.call(&body).await?;
    drop(keyed);
    let _ = task.await;
    check(status, &answer).map_err(|e| format!("keyed: a request with the API key: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Store round trips per keyed request, on Redis

/// The label the proxy gives the version polls (registry and key cache), which are not per request.
const VERSION_POLL: &str = "GET version";

enum RedisPart {
    /// Not measured, and why.
    Skipped(String),
    Counted(StoreTrips),
}

struct StoreTrips {
    warmup: u64,
    requests: u64,
    /// Commands opgate sent during the measured run, by label.
    commands: BTreeMap<String, u64>,
    /// `INFO commandstats`: EVALSHA + EVAL calls during the run, from every client of the server.
    server_scripts: Option<u64>,
    /// Latency, through the proxy.
    figures: Figures,
}

impl StoreTrips {
    /// Commands per request, the version polls left out.
    fn hot(&self) -> u64 {
        self.commands
            .iter()
            .filter(|(l, _)| l.as_str() != VERSION_POLL)
            .map(|(_, n)| n)
            .sum()
    }

    fn per_request(&self) -> f64 {
        self.hot() as f64 / self.requests.max(1) as f64
    }

    fn met(&self) -> bool {
        self.hot() == self.requests
    }
}

async fn redis_part(args: &Args, upstream: SocketAddr) -> Result<RedisPart, String> {
    let Some(url) = args.redis.as_deref() else {
        return Ok(RedisPart::Skipped("turned off (`--redis off`)".into()));
    };
    if args.only.is_some_and(|t| t != Target::Keyed) {
        return Ok(RedisPart::Skipped("`--only` names another target".into()));
    }
    let (redis, db) = match redis_addr(url) {
        Ok(a) => a,
        Err(e) => return Ok(RedisPart::Skipped(e)),
    };
    let mut con = match control(url).await {
        Ok(c) => c,
        Err(e) => return Ok(RedisPart::Skipped(e)),
    };
    let proxy_listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let proxy_addr = proxy_listener.local_addr().map_err(|e| e.to_string())?;
    let counts = Counts::default();
    let proxy = tokio::spawn(serve_proxy(proxy_listener, redis, counts.clone()));
    let prefix = format!(
        "pbench-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    );
    let db = if db.is_empty() { String::new() } else { format!("/{db}") };
    let store = format!(
        "[store]\nbackend = \"redis\"\nurl = \"redis://{proxy_addr}{db}\"\nprefix = \"{prefix}\"\ntimeout = \"2s\"\n"
    );
    let outcome = count_trips(args, upstream, &store, &counts, &mut con).await;
    proxy.abort();
    // Whatever happened, leave nothing behind.
    match delete_keys(&mut con, &format!("{{{prefix}}}*")).await {
        Ok(n) => eprintln!("deleted the bench's {n} Redis keys ({{{prefix}}}*)"),
        Err(e) => eprintln!("passthrough: could not delete the Redis keys {{{prefix}}}*: {e}"),
    }
    outcome.map(RedisPart::Counted)
}

async fn count_trips(
    args: &Args,
    upstream: SocketAddr,
    store: &str,
    counts: &Counts,
    con: &mut redis::aio::MultiplexedConnection,
) -> Result<StoreTrips, String> {
    let keyed = Running::start(keyed_config(upstream, store)?).await?;
    let measured = async {
        preflight_keyed(keyed.addr).await?;
        // Past the first version polls (every 400 ms), the first of which drops the key cache.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let warmup = args.warmup.max(1);
        let warm = Load {
            clients: 1,
            requests: warmup,
            duration: None,
            warmup: 0,
        };
        drive(keyed.addr, Some(API_KEY), warm).await?;
        let before = snapshot(counts);
        let server_before = script_calls(con).await.ok();
        let load = Load {
            clients: 1,
            requests: args.requests,
            duration: args.duration,
            warmup: 0,
        };
        let figures = drive(keyed.addr, Some(API_KEY), load).await?;
        let after = snapshot(counts);
        let server_after = script_calls(con).await.ok();
        let commands = after
            .into_iter()
            .map(|(l, n)| {
                let was = before.get(&l).copied().unwrap_or(0);
                (l, n - was)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        eprintln!(
            "redis keyed C=1: p50 {} µs, p99 {} µs (through the counting proxy)",
            us(figures.p50),
            us(figures.p99)
        );
        Ok::<_, String>(StoreTrips {
            warmup,
            requests: figures.requests,
            commands,
            server_scripts: server_before.zip(server_after).map(|(b, a)| a.saturating_sub(b)),
            figures,
        })
    }
    .await;
    let stopped = keyed.stop("keyed (Redis)").await;
    let trips = measured?;
    stopped?;
    Ok(trips)
}

fn snapshot(counts: &Counts) -> BTreeMap<String, u64> {
    counts.lock().map(|c| c.clone()).unwrap_or_default()
}

/// A plain connection for INFO, SCAN and UNLINK (not opgate's).
async fn control(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| format!("Redis URL {url}: {e}"))?;
    tokio::time::timeout(REDIS_CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("Redis at {url} did not answer within {REDIS_CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("Redis at {url}: {e}"))
}

/// EVALSHA + EVAL calls so far (`INFO commandstats`; a script's own commands are counted under
/// their names, but a script cannot run a script).
async fn script_calls(con: &mut redis::aio::MultiplexedConnection) -> Result<u64, String> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .map_err(|e| format!("INFO commandstats: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let rest = l
                .strip_prefix("cmdstat_evalsha:")
                .or_else(|| l.strip_prefix("cmdstat_eval:"))?;
            rest.split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

/// Deletes every key matching `pattern` (SCAN + UNLINK); returns how many.
async fn delete_keys(con: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Result<usize, String> {
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    for _ in 0..SCAN_CALLS_MAX {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await
            .map_err(|e| format!("SCAN: {e}"))?;
        if !keys.is_empty() {
            let n: usize = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(con)
                .await
                .map_err(|e| format!("UNLINK: {e}"))?;
            deleted += n;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(deleted);
        }
    }
    Err(format!("SCAN over {pattern} did not finish"))
}

/// `host:port` and database of a `redis://host:port[/db]` URL.
fn redis_addr(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("the round-trip proxy needs a redis:// URL, not {url}"))?;
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

async fn run(args: Args) -> Result<(), String> {
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let upstream_addr = upstream_listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_upstream, upstream_stopped) = oneshot::channel();
    let accepted = Arc::new(AtomicU64::new(0));
    let upstream = tokio::spawn(serve_upstream(upstream_listener, accepted.clone(), upstream_stopped));

    let overrides = Overrides {
        upstreams: vec![format!("http://{upstream_addr}/")],
        chain_id: Some(1),
        ..Default::default()
    };
    let config = Config::from_overrides(&overrides).map_err(|e| e.to_string())?;
    let opgate = Running::start(config).await?;
    let keyed = Running::start(keyed_config(upstream_addr, "[store]\nbackend = \"memory\"\n")?).await?;
    let (opgate_addr, keyed_addr) = (opgate.addr, keyed.addr);

    let response_bytes = Canned::new().answer(REQUEST_BODY.as_bytes()).map_or(0, |b| b.len());
    let mut outcome = preflight_keyed(keyed_addr).await;
    let load_before = load_average();
    let machine_before = machine_cpu();
    let own_before = process_cpu();
    eprintln!(
        "upstream on {upstream_addr}, opgate on {opgate_addr}, keyed opgate on {keyed_addr} \
         (API key in x-api-key); load average {load_before}; {} repetitions",
        args.reps
    );

    let mut series: Vec<Series> = [args.concurrency, 1]
        .into_iter()
        .map(|clients| Series {
            label: format!("C={clients}"),
            load: Load {
                clients,
                requests: args.requests,
                duration: args.duration,
                warmup: args.warmup,
            },
            runs: Default::default(),
        })
        .collect();
    'reps: for rep in 0..args.reps {
        if outcome.is_err() {
            break;
        }
        let mut order = Target::ALL;
        if rep % 2 == 1 {
            order.reverse();
        }
        for s in &mut series {
            for target in order.into_iter().filter(|t| args.only.is_none_or(|only| only == *t)) {
                let addr = match target {
                    Target::Direct => upstream_addr,
                    Target::Opgate => opgate_addr,
                    Target::Keyed => keyed_addr,
                };
                let accepted_before = accepted.load(Ordering::Relaxed);
                let cpu_before = process_cpu();
                match drive(addr, target.api_key(), s.load).await {
                    Ok(mut f) => {
                        f.upstream_connections = accepted.load(Ordering::Relaxed) - accepted_before;
                        // Includes the warm-up: divide by every request the run sent.
                        let sent = f.requests + s.load.warmup.div_ceil(s.load.clients as u64) * s.load.clients as u64;
                        f.cpu_per_request = match (cpu_before, process_cpu()) {
                            (Some(b), Some(a)) if sent > 0 => a.saturating_sub(b) / sent,
                            _ => 0,
                        };
                        eprintln!(
                            "rep {}/{} {} {:>6}: p50 {} µs, p99 {} µs, {:.0} req/s, {} µs CPU/request, \
                             {} new upstream connections",
                            rep + 1,
                            args.reps,
                            s.label,
                            target.name(),
                            us(f.p50),
                            us(f.p99),
                            f.per_sec,
                            us(f.cpu_per_request),
                            f.upstream_connections
                        );
                        s.runs[target.index()].push(f);
                    }
                    Err(e) => {
                        outcome = Err(format!("{} {}: {e}", s.label, target.name()));
                        break 'reps;
                    }
                }
            }
        }
    }
    let background = Background {
        load_before,
        load_after: load_average(),
        others_busy: match (machine_before, machine_cpu(), own_before, process_cpu()) {
            (Some((busy0, total0)), Some((busy1, total1)), Some(own0), Some(own1)) if total1 > total0 => {
                let own = (own1.saturating_sub(own0) / TICK_NS) as f64;
                let busy = busy1.saturating_sub(busy0) as f64;
                Some(((busy - own) / (total1 - total0) as f64).clamp(0.0, 1.0))
            }
            _ => None,
        },
    };

    let stopped = opgate.stop("opgate").await;
    outcome = outcome.and(stopped);
    let stopped = keyed.stop("keyed").await;
    outcome = outcome.and(stopped);
    // After the measurement proper, which it does not disturb: the Redis store's round trips.
    let redis = match &outcome {
        Ok(()) => match redis_part(&args, upstream_addr).await {
            Ok(r) => Some(r),
            Err(e) => {
                outcome = Err(format!("Redis round trips: {e}"));
                None
            }
        },
        Err(_) => None,
    };
    let _ = stop_upstream.send(());
    let _ = upstream.await;
    outcome?;
    let redis = redis.unwrap_or_else(|| RedisPart::Skipped("not run".into()));
    if let RedisPart::Skipped(why) = &redis {
        eprintln!("store round trips on Redis not measured: {why}");
    }

    print_report(&args, &series, &background, response_bytes, &redis);
    if let Some(path) = &args.json {
        let json = report_json(&args, &series, &background, &redis);
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn main() {
    let args = args_or_exit("passthrough", parse_args());
    let runtime = runtime(None);
    finish("passthrough", runtime.block_on(run(args)));
}
