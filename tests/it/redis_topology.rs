//! Real Redis topologies on 127.0.0.1 for the integration tests, run with Debian's `redis-server`
//! and `redis-cli`: a Redis Cluster of 3 primaries and 3 replicas ([`Cluster`]), a primary with one
//! replica watched by 3 sentinels ([`Sentinels`]), and a server listening with TLS only, with a CA
//! made for it by rcgen ([`TlsRedis`]).
//!
//! Every server is a child of the test, binds 127.0.0.1 only, and has its own fresh temp dir (its
//! config, its log, its data). Dropping a topology kills its servers by their own `Child` handles
//! and removes the dirs. Every wait is bounded and panics with the last state it observed (and the
//! tail of the server's log when a server fails to start).
//!
//! Everything here blocks (`std::process`, `std::thread::sleep`). In an async test, start the
//! topology before the work it is meant for, or call a long wait (failover) inside
//! `tokio::task::block_in_place` under `#[tokio::test(flavor = "multi_thread")]`, so that opgate's
//! tasks keep running meanwhile.
//!
//! The self-checks at the end (`cargo test --test it redis_topology`) only test the topologies.

use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// The name the sentinels monitor their primary under.
pub const SENTINEL_MASTER: &str = "mymaster";

/// The Redis Cluster's slot count.
const SLOTS: u16 = 16_384;
/// How often a wait polls.
const POLL: Duration = Duration::from_millis(100);
/// How long a server may take to answer its first command.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a topology may take to settle after its servers answer, and a failover to complete.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports a server is tried on when the one picked was taken before it could bind.
const PORT_ATTEMPTS: usize = 3;
/// The cluster bus listens on the client port plus this.
const BUS_OFFSET: u16 = 10_000;

// ---------------------------------------------------------------------------------------------
// redis-cli

/// Runs `redis-cli -h 127.0.0.1 -p <port> <args>` (bounded: 5 s) and returns its stdout. Panics
/// when it cannot connect, times out, or the server answers with an error.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    try_redis_cli(port, args).unwrap_or_else(|e| panic!("redis-cli -p {port} {args:?}: {e}"))
}

/// [`redis_cli`] that returns the failure instead of panicking.
pub fn try_redis_cli(port: u16, args: &[&str]) -> Result<String, String> {
    try_redis_cli_with(port, &[], args)
}

/// [`redis_cli`] over TLS, trusting the CA certificate at `ca` (PEM).
pub fn redis_cli_tls(port: u16, ca: &Path, args: &[&str]) -> String {
    let ca = ca.to_str().expect("a UTF-8 path");
    try_redis_cli_with(port, &["--tls", "--cacert", ca], args)
        .unwrap_or_else(|e| panic!("redis-cli --tls -p {port} {args:?}: {e}"))
}

/// Runs `redis-cli` against 127.0.0.1:`port` with connection `options` (`--tls`, `--user`, …)
/// before the command `args`, under `timeout` (5 s, then SIGKILL 2 s later). `Ok(stdout)` when it
/// exited 0; it runs with `-e`, so an error reply is an `Err` too, as are a refused connection and
/// the timeout. Output is redis-cli's raw form (stdout is not a terminal): one line per element.
pub fn try_redis_cli_with(port: u16, options: &[&str], args: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .args([
            "-k",
            "2",
            "5",
            "redis-cli",
            "-e",
            "--no-auth-warning",
            "-h",
            "127.0.0.1",
            "-p",
        ])
        .arg(port.to_string())
        .args(options)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run timeout/redis-cli: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let why = match out.status.code() {
        Some(124) | Some(137) => "timed out after 5 s".to_string(),
        _ => format!("exited with {}", out.status),
    };
    Err(format!(
        "{why}; stdout: {:?}; stderr: {:?}",
        stdout.trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// The value of `field` in `INFO`-style `field:value` lines.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':'))
}

/// The `key → value` pairs of a flat reply printed one element a line (`SENTINEL MASTER`).
fn pairs(reply: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = reply.lines().map(str::trim_end).collect();
    lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].into(), c[1].into()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Ports, dirs, processes

/// Ports this process handed out (client and bus ports): never handed out twice.
static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A random number (std's per-process random hasher keys, mixed with the time).
fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Whether 127.0.0.1:`port` can be bound now.
fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free port on 127.0.0.1 in 11000..21000, with `port + 10000` (the cluster bus) free too when
/// `with_bus`. The range lies below Linux's ephemeral ports (32768 and up) for both, so no outgoing
/// connection, and no `127.0.0.1:0` listener of another test, takes one of them meanwhile.
fn pick_port(with_bus: bool) -> u16 {
    const LOW: u64 = 11_000;
    const SPAN: u64 = 10_000;
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let start = random();
    // 7919 is prime and does not divide SPAN: the walk visits every port of the range once.
    for i in 0..SPAN {
        let port = (LOW + start.wrapping_add(i * 7919) % SPAN) as u16;
        let bus = port + BUS_OFFSET;
        if taken.contains(&port) || taken.contains(&bus) {
            continue;
        }
        if bindable(port) && (!with_bus || bindable(bus)) {
            taken.extend([port, bus]);
            return port;
        }
    }
    panic!("no free port pair in 11000..31000 on 127.0.0.1");
}

/// A fresh directory under the system temp dir, removed with its contents when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "opgate-redis-{what}-{}-{}-{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            random() as u32
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One `redis-server` child: its config (`redis.conf`) and log (`redis.log`) live in its own temp
/// dir, which is also its working dir. Killed (SIGKILL, by its handle) and its dir removed when
/// dropped.
struct Server {
    what: String,
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

/// How a server's start went.
enum Started {
    Ready,
    /// It exited because its port was taken between the pick and its bind.
    PortTaken,
    Failed(String),
}

impl Server {
    /// Starts `redis-server <dir>/redis.conf <extra_args>` with the config `conf(port, dir)` on a
    /// port from [`pick_port`], and waits (bounded: 10 s) until it answers `INFO server` with its
    /// own process id (so a server of someone else on that port does not count). `cli_options` are
    /// the redis-cli options it needs (TLS, credentials). Tried on another port when the one picked
    /// was taken before the server could bind it.
    fn start(
        what: String,
        with_bus: bool,
        extra_args: &[&str],
        cli_options: &dyn Fn(&Path) -> Vec<String>,
        conf: &dyn Fn(u16, &Path) -> String,
    ) -> Self {
        let dir = TempDir::new(&what.replace(' ', "-"));
        let mut server = Self {
            what,
            port: 0,
            child: None,
            dir,
        };
        let options = cli_options(server.dir.path());
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = pick_port(with_bus);
            let conf_path = server.dir.path().join("redis.conf");
            fs::write(&conf_path, conf(server.port, server.dir.path()))
                .unwrap_or_else(|e| panic!("write {}: {e}", conf_path.display()));
            let log = File::create(server.log_path()).expect("create the server log");
            let child = Command::new("redis-server")
                .arg(&conf_path)
                .args(extra_args)
                .current_dir(server.dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .expect("redis-server runs (apt-get install redis-server)");
            server.child = Some(child);
            match server.wait_ready(&options) {
                Started::Ready => return server,
                Started::PortTaken if attempt < PORT_ATTEMPTS => server.kill(),
                Started::PortTaken => panic!(
                    "{} could not bind a port in {PORT_ATTEMPTS} attempts; log tail:\n{}",
                    server.what,
                    server.log_tail()
                ),
                Started::Failed(why) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until the server answers with its own process id, or it exits, or 10 s pass.
    fn wait_ready(&mut self, options: &[&str]) -> Started {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid = self.child.as_ref().map(Child::id).unwrap_or_default();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let log = self.log_tail();
                if log.contains("Address already in use") {
                    return Started::PortTaken;
                }
                return Started::Failed(format!(
                    "{} on port {} exited ({status}) before answering; log tail:\n{log}",
                    self.what, self.port
                ));
            }
            let last = match try_redis_cli_with(self.port, options, &["INFO", "server"]) {
                Ok(info) if info_field(&info, "process_id") == Some(&pid.to_string()) => return Started::Ready,
                Ok(info) => format!("answered for process {:?}", info_field(&info, "process_id")),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Started::Failed(format!(
                    "{} on port {} did not answer within {START_TIMEOUT:?}; last: {last}; log tail:\n{}",
                    self.what,
                    self.port,
                    self.log_tail()
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The last 20 lines of the server's log.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// Starts a killed server again on its port, with its config (a cluster node keeps its
    /// identity in its `nodes.conf` and rejoins). Waits as [`Server::start`] does.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.what);
        let log = File::options()
            .append(true)
            .open(self.log_path())
            .expect("open the server log");
        let child = Command::new("redis-server")
            .arg(self.dir.path().join("redis.conf"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        match self.wait_ready(&[]) {
            Started::Ready => {}
            Started::PortTaken => panic!("{}: port {} was taken before the restart", self.what, self.port),
            Started::Failed(why) => panic!("{why}"),
        }
    }

    /// SIGKILL by the child's handle, then reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The config lines every server here shares: 127.0.0.1 only, no persistence, log to stdout (the
/// log file), its dir as working dir, and full syncs without the 5 s diskless-sync delay.
fn common_conf(dir: &Path) -> String {
    format!(
        "bind 127.0.0.1\n\
         protected-mode no\n\
         daemonize no\n\
         logfile \"\"\n\
         dir \"{}\"\n\
         save \"\"\n\
         appendonly no\n\
         repl-diskless-sync yes\n\
         repl-diskless-sync-delay 0\n",
        dir.display()
    )
}

/// Polls `check` every 100 ms until it returns `Ok`, for at most `limit`; panics with `what` and
/// the last `Err` (the last observed state) otherwise.
fn wait_until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(v) => return v,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out ({limit:?}) waiting for {what}; last observed:\n{state}")
            }
            Err(_) => sleep(POLL),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster

/// One node as a `CLUSTER NODES` line describes it.
#[derive(Clone, Debug)]
struct NodeLine {
    id: String,
    port: u16,
    flags: Vec<String>,
    master_id: Option<String>,
    /// Slot ranges, inclusive (importing/migrating markers left out).
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// A primary holding slots, not flagged failed by the node asked.
    fn serving(&self) -> bool {
        self.has("master") && !self.has("fail") && !self.slots.is_empty()
    }

    fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch>
/// <link> <slot>...`. Lines it cannot read (a node still in handshake) are left out.
fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let addr = f[1].split('@').next()?;
            let port: u16 = addr.rsplit(':').next()?.parse().ok().filter(|&p| p != 0)?;
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            Some(NodeLine {
                id: f[0].into(),
                port,
                flags: f[2].split(',').map(str::to_string).collect(),
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                slots,
            })
        })
        .collect()
}

/// A Redis Cluster on 127.0.0.1: 3 primaries, one replica each. `cluster-node-timeout` is 1 s and
/// `cluster-replica-validity-factor` 0, so a replica always takes over within a few seconds of its
/// primary's death, however stale its data. Dropping it kills every node and removes their dirs.
pub struct Cluster {
    nodes: Vec<Server>,
    /// The primaries right after creation, in port order: the seeds of [`Cluster::seed_url`].
    seeds: Vec<u16>,
    /// Each primary killed by [`Cluster::kill_primary`], with the replicas it had then.
    killed: Vec<(u16, Vec<u16>)>,
}

impl Cluster {
    /// Starts 6 nodes, each in its own temp dir with a free port whose bus port (+10000) is free
    /// too, creates the cluster with `redis-cli --cluster create … --cluster-replicas 1`, and waits
    /// (bounded: 30 s) until every node reports `cluster_state:ok` with all 16384 slots assigned,
    /// every node sees the same 3 primaries and 3 replicas, and every replica's link to its
    /// primary is up. Blocking; about 2.5 s on a 2-core machine (1 s of it in `--cluster create`).
    pub fn start() -> Self {
        let nodes: Vec<Server> = (0..6)
            .map(|i| {
                Server::start(format!("cluster node {i}"), true, &[], &|_| Vec::new(), &|port, dir| {
                    format!(
                        "port {port}\n{}\
                         cluster-enabled yes\n\
                         cluster-config-file nodes.conf\n\
                         cluster-node-timeout 1000\n\
                         cluster-replica-validity-factor 0\n\
                         cluster-allow-replica-migration no\n\
                         cluster-require-full-coverage yes\n",
                        common_conf(dir)
                    )
                })
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("timeout")
            .args(["-k", "2", "60", "redis-cli", "--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("[OK] All 16384 slots covered"),
            "redis-cli --cluster create {addrs:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cluster = Self {
            nodes,
            seeds: Vec::new(),
            killed: Vec::new(),
        };
        wait_until("the cluster to settle", SETTLE_TIMEOUT, || cluster.settled());
        cluster.seeds = cluster.primaries();
        cluster
    }

    /// `Ok` when every node reports the cluster ok with all slots assigned and 6 known nodes, sees
    /// 3 serving primaries and 3 replicas of them, and every replica's link is up.
    fn settled(&self) -> Result<(), String> {
        for node in &self.nodes {
            let info = try_redis_cli(node.port, &["CLUSTER", "INFO"]).map_err(|e| format!("{}: {e}", node.port))?;
            let ok = info_field(&info, "cluster_state") == Some("ok")
                && info_field(&info, "cluster_slots_assigned") == Some("16384")
                && info_field(&info, "cluster_known_nodes") == Some("6");
            if !ok {
                return Err(format!("{}: CLUSTER INFO\n{info}", node.port));
            }
            let text = try_redis_cli(node.port, &["CLUSTER", "NODES"]).map_err(|e| format!("{}: {e}", node.port))?;
            let view = parse_nodes(&text);
            let primaries: Vec<&NodeLine> = view.iter().filter(|n| n.serving()).collect();
            let replicas = view
                .iter()
                .filter(|n| n.has("slave") && primaries.iter().any(|p| Some(&p.id) == n.master_id.as_ref()))
                .count();
            if primaries.len() != 3 || replicas != 3 {
                return Err(format!("{}: CLUSTER NODES\n{text}", node.port));
            }
            let role = try_redis_cli(node.port, &["INFO", "replication"]).map_err(|e| format!("{}: {e}", node.port))?;
            if info_field(&role, "role") == Some("slave") && info_field(&role, "master_link_status") != Some("up") {
                return Err(format!("{}: INFO replication\n{role}", node.port));
            }
        }
        Ok(())
    }

    /// `CLUSTER NODES` of the first live node that answers: (its port, its text).
    fn view(&self) -> (u16, String) {
        let mut errors = Vec::new();
        for node in self.nodes.iter().filter(|n| n.alive()) {
            match try_redis_cli(node.port, &["CLUSTER", "NODES"]) {
                Ok(text) => return (node.port, text),
                Err(e) => errors.push(format!("{}: {e}", node.port)),
            }
        }
        panic!("no live cluster node answers CLUSTER NODES: {errors:?}");
    }

    /// Runs `args` on the first live node that answers and returns its stdout.
    fn ask_any(&self, args: &[&str]) -> String {
        let mut errors = Vec::new();
        for node in self.nodes.iter().filter(|n| n.alive()) {
            match try_redis_cli(node.port, args) {
                Ok(out) => return out,
                Err(e) => errors.push(format!("{}: {e}", node.port)),
            }
        }
        panic!("no live cluster node answers {args:?}: {errors:?}");
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`: the three primaries as created
    /// (after a failover one of them may be dead; clients move on to the next seed).
    pub fn seed_url(&self) -> String {
        let seeds: Vec<String> = self.seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The ports of all 6 nodes, dead or alive, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The ports now serving as primaries, sorted: primaries holding slots and not flagged failed
    /// in `CLUSTER NODES` of a live node, whose process is alive.
    pub fn primaries(&self) -> Vec<u16> {
        let (_, text) = self.view();
        let mut ports: Vec<u16> = parse_nodes(&text)
            .iter()
            .filter(|n| n.serving() && self.is_alive(n.port))
            .map(|n| n.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The ports of `primary`'s replicas (per `CLUSTER NODES` of a live node), sorted.
    pub fn replicas_of(&self, primary: u16) -> Vec<u16> {
        let (_, text) = self.view();
        let view = parse_nodes(&text);
        let Some(id) = view.iter().find(|n| n.port == primary).map(|n| n.id.clone()) else {
            panic!("{primary} is not a node of the cluster:\n{text}");
        };
        let mut ports: Vec<u16> = view
            .iter()
            .filter(|n| n.has("slave") && n.master_id.as_ref() == Some(&id))
            .map(|n| n.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The port of the primary owning `key`'s slot (`CLUSTER KEYSLOT`), per `CLUSTER NODES` of a
    /// live node: between a primary's death and the end of its failover, still the dead one.
    pub fn primary_for_key(&self, key: &str) -> u16 {
        let slot_text = self.ask_any(&["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = slot_text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key:?} answered {slot_text:?}"));
        assert!(slot < SLOTS, "slot {slot}");
        let (asked, text) = self.view();
        parse_nodes(&text)
            .iter()
            .find(|n| n.has("master") && n.owns(slot))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no primary owns slot {slot} per {asked}:\n{text}"))
    }

    /// `DBSIZE` of the node on `port`.
    pub fn dbsize(&self, port: u16) -> u64 {
        let out = redis_cli(port, &["DBSIZE"]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("DBSIZE on {port} answered {out:?}"))
    }

    /// How many keys of the node on `port` match `pattern` (a `SCAN … MATCH` glob), counted with
    /// `SCAN` (bounded: 10,000 rounds of COUNT 1000). redis-cli prints an empty reply as an empty
    /// line, so the empty key is not counted, and keys holding a newline are miscounted.
    pub fn keys_matching(&self, port: u16, pattern: &str) -> u64 {
        let mut cursor = "0".to_string();
        let mut count = 0u64;
        for _ in 0..10_000 {
            let out = redis_cli(port, &["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"]);
            let mut lines = out.lines();
            cursor = lines.next().unwrap_or_default().trim().to_string();
            count += lines.filter(|l| !l.is_empty()).count() as u64;
            if cursor == "0" {
                return count;
            }
            assert!(cursor.parse::<u64>().is_ok(), "SCAN on {port} answered {out:?}");
        }
        panic!("SCAN on {port} for {pattern:?} did not finish in 10,000 rounds");
    }

    fn is_alive(&self, port: u16) -> bool {
        self.nodes.iter().any(|n| n.port == port && n.alive())
    }

    /// Kills (SIGKILL, by its `Child` handle) the primary on `port`, after noting its replicas for
    /// [`Cluster::wait_failover`]. Panics if `port` is not a live primary.
    pub fn kill_primary(&mut self, port: u16) {
        let (asked, text) = self.view();
        let view = parse_nodes(&text);
        let Some(node) = view.iter().find(|n| n.port == port && n.serving()) else {
            panic!("{port} is not a serving primary per {asked}:\n{text}");
        };
        let replicas: Vec<u16> = view
            .iter()
            .filter(|n| n.has("slave") && n.master_id.as_ref() == Some(&node.id))
            .map(|n| n.port)
            .collect();
        let server = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port && n.alive())
            .unwrap_or_else(|| panic!("{port} is not a live node of this cluster"));
        server.kill();
        self.killed.push((port, replicas));
    }

    /// Starts the node killed on `port` again and waits (bounded: 30 s) until it serves as a
    /// replica with its link to its (new) primary up.
    pub fn restart(&mut self, port: u16) {
        let server = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("{port} is not a node of this cluster"));
        server.restart();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = try_redis_cli(port, &["INFO", "replication"]).unwrap_or_default();
            if info_field(&info, "role") == Some("slave") && info_field(&info, "master_link_status") == Some("up") {
                return;
            }
            assert!(Instant::now() < deadline, "{port} did not rejoin as a replica:\n{info}");
            sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded: 30 s) until every live node reports `cluster_state:ok`, flags the primary
    /// killed on `dead_port` failed, and sees one of its former replicas serving as a primary;
    /// returns that replica's port. Panics if `dead_port` was not killed by
    /// [`Cluster::kill_primary`].
    pub fn wait_failover(&self, dead_port: u16) -> u16 {
        let Some((_, replicas)) = self.killed.iter().find(|(p, _)| *p == dead_port) else {
            panic!("{dead_port} was not killed by kill_primary");
        };
        assert!(
            !replicas.is_empty(),
            "the primary on {dead_port} had no replica to take over"
        );
        wait_until(
            &format!("a replica {replicas:?} of the dead primary {dead_port} to take over"),
            SETTLE_TIMEOUT,
            || {
                let mut promoted = None;
                for node in self.nodes.iter().filter(|n| n.alive()) {
                    let port = node.port;
                    let info = try_redis_cli(port, &["CLUSTER", "INFO"]).map_err(|e| format!("{port}: {e}"))?;
                    if info_field(&info, "cluster_state") != Some("ok") {
                        return Err(format!("{port}: CLUSTER INFO\n{info}"));
                    }
                    let text = try_redis_cli(port, &["CLUSTER", "NODES"]).map_err(|e| format!("{port}: {e}"))?;
                    let view = parse_nodes(&text);
                    let dead_failed = view.iter().any(|n| n.port == dead_port && n.has("fail"));
                    let serving = view.iter().find(|n| replicas.contains(&n.port) && n.serving());
                    match serving {
                        Some(n) if dead_failed && promoted.is_none_or(|p| p == n.port) => promoted = Some(n.port),
                        _ => return Err(format!("{port}: CLUSTER NODES\n{text}")),
                    }
                }
                promoted.ok_or_else(|| "no live node".to_string())
            },
        )
    }
}

impl Drop for Cluster {
    /// Kills every node first, then their dirs go (as the `Server`s drop).
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sentinel

/// A primary, its replica (`replicaof`) and 3 sentinels monitoring it as [`SENTINEL_MASTER`] with
/// quorum 2, `down-after-milliseconds` 1000 and `failover-timeout` 5000. Each sentinel has its own
/// writable config file (sentinels rewrite it). Dropping it kills all five and removes their dirs.
pub struct Sentinels {
    primary: Server,
    replica: Server,
    sentinels: Vec<Server>,
}

impl Sentinels {
    /// Starts the primary, then the replica, and waits (bounded: 30 s) for the replica's
    /// `master_link_status:up`; then starts the sentinels (after the link is up, so their first
    /// `INFO` of the primary lists the replica) and waits (bounded: 30 s) until each answers
    /// `SENTINEL get-master-addr-by-name mymaster` with the primary and knows 1 replica and the 2
    /// other sentinels. Blocking; about 2.5 s on a 2-core machine.
    pub fn start() -> Self {
        let data_conf = |replica_of: Option<u16>| {
            move |port: u16, dir: &Path| {
                let replica_of = replica_of
                    .map(|p| format!("replicaof 127.0.0.1 {p}\n"))
                    .unwrap_or_default();
                format!("port {port}\n{}{replica_of}", common_conf(dir))
            }
        };
        let primary = Server::start("sentinel primary".into(), false, &[], &|_| Vec::new(), &data_conf(None));
        let replica = Server::start(
            "sentinel replica".into(),
            false,
            &[],
            &|_| Vec::new(),
            &data_conf(Some(primary.port)),
        );
        wait_until("the replica's link to its primary", SETTLE_TIMEOUT, || {
            let info = try_redis_cli(replica.port, &["INFO", "replication"])?;
            match info_field(&info, "master_link_status") {
                Some("up") => Ok(()),
                _ => Err(format!("{}: INFO replication\n{info}", replica.port)),
            }
        });
        let primary_port = primary.port;
        let sentinels: Vec<Server> = (0..3)
            .map(|i| {
                Server::start(
                    format!("sentinel {i}"),
                    false,
                    &["--sentinel"],
                    &|_| Vec::new(),
                    &|port, dir| {
                        format!(
                            "port {port}\n\
                             bind 127.0.0.1\n\
                             protected-mode no\n\
                             daemonize no\n\
                             logfile \"\"\n\
                             dir \"{}\"\n\
                             sentinel resolve-hostnames no\n\
                             sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary_port} 2\n\
                             sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                             sentinel failover-timeout {SENTINEL_MASTER} 5000\n",
                            dir.display()
                        )
                    },
                )
            })
            .collect();
        let set = Self {
            primary,
            replica,
            sentinels,
        };
        wait_until(
            "the sentinels to know the primary, the replica and each other",
            SETTLE_TIMEOUT,
            || {
                for s in &set.sentinels {
                    let master = set.master_addr(s.port)?;
                    let state = pairs(&try_redis_cli(s.port, &["SENTINEL", "MASTER", SENTINEL_MASTER])?);
                    let field = |k: &str| state.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
                    let ok = master == Some(primary_port)
                        && field("flags") == Some("master")
                        && field("num-slaves") == Some("1")
                        && field("num-other-sentinels") == Some("2");
                    if !ok {
                        return Err(format!(
                            "sentinel {}: master at {master:?}; SENTINEL MASTER {state:?}",
                            s.port
                        ));
                    }
                }
                Ok(())
            },
        );
        set
    }

    /// The port sentinel `port` gives for the master (`SENTINEL get-master-addr-by-name`).
    fn master_addr(&self, port: u16) -> Result<Option<u16>, String> {
        let out = try_redis_cli(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER])?;
        let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
        Ok(match lines.as_slice() {
            ["127.0.0.1", p] => p.parse().ok(),
            _ => None,
        })
    }

    /// `redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    /// The port of the server started as the primary (dead after [`Sentinels::kill_primary`]).
    pub fn primary_port(&self) -> u16 {
        self.primary.port
    }

    /// The port of the server started as the replica (the primary after a failover).
    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// Kills the primary (SIGKILL, by its `Child` handle).
    pub fn kill_primary(&mut self) {
        self.primary.kill();
    }

    /// Waits (bounded: 30 s) until every sentinel gives the former replica as the master and the
    /// replica reports `role:master`; returns its port.
    pub fn wait_promotion(&self) -> u16 {
        let replica = self.replica.port;
        wait_until(
            &format!("the sentinels to promote the replica {replica}"),
            SETTLE_TIMEOUT,
            || {
                let mut seen = Vec::new();
                for s in &self.sentinels {
                    let master = self.master_addr(s.port)?;
                    let state = pairs(&try_redis_cli(s.port, &["SENTINEL", "MASTER", SENTINEL_MASTER])?);
                    let field = |k: &str| state.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
                    seen.push(format!(
                        "sentinel {}: master {master:?}, flags {:?}, failover-state {:?}",
                        s.port,
                        field("flags"),
                        field("failover-state")
                    ));
                    if master != Some(replica) {
                        return Err(seen.join("\n"));
                    }
                }
                let info = try_redis_cli(replica, &["INFO", "replication"])?;
                match info_field(&info, "role") {
                    Some("master") => Ok(replica),
                    role => Err(format!("{}\nreplica {replica}: role {role:?}", seen.join("\n"))),
                }
            },
        )
    }
}

impl Drop for Sentinels {
    /// Kills the sentinels first (so none acts on the others' deaths), then the data servers.
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            s.kill();
        }
        self.replica.kill();
        self.primary.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

/// Who a [`TlsRedis`] lets in.
#[derive(Clone, Debug)]
pub enum TlsAuth {
    /// Anyone (the default user, no password).
    Open,
    /// The default user with this password (`requirepass`).
    Password(String),
    /// Only this ACL user (`user <name> on ><password> ~* &* +@all`); the default user is off.
    User {
        /// The user name.
        name: String,
        /// Its password.
        password: String,
    },
}

/// A `redis-server` listening with TLS only (`port 0`, `tls-port`), with a server certificate for
/// `127.0.0.1` (IP SAN) and `localhost` signed by a CA made for it; clients are not asked for a
/// certificate. Its PEM files are in its temp dir: `ca.pem`, `server.pem`, `server.key`. Dropping
/// it kills the server and removes the dir.
pub struct TlsRedis {
    server: Server,
    auth: TlsAuth,
}

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`: a CA, and a certificate for
/// 127.0.0.1 and localhost (server auth) it signed.
fn write_pki(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "opgate redis test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    for (name, pem) in [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", cert.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        fs::write(dir.join(name), pem).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
}

/// Percent-encodes a URL userinfo part.
fn userinfo(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl TlsRedis {
    /// A TLS server anyone may use. See [`TlsRedis::start_with`].
    pub fn start() -> Self {
        Self::start_with(TlsAuth::Open)
    }

    /// A TLS server with `requirepass password`.
    pub fn with_password(password: &str) -> Self {
        Self::start_with(TlsAuth::Password(password.into()))
    }

    /// A TLS server only the ACL user `name` (all keys, channels and commands) may use.
    pub fn with_user(name: &str, password: &str) -> Self {
        Self::start_with(TlsAuth::User {
            name: name.into(),
            password: password.into(),
        })
    }

    /// Makes the CA and the server certificate, starts the server, and waits (bounded: 10 s) until
    /// it answers over TLS with that CA (and the credentials). Blocking; well under 1 s. Passwords
    /// and names must not hold whitespace, quotes or backslashes (they go into the config file).
    pub fn start_with(auth: TlsAuth) -> Self {
        let plain = |s: &str| !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || "\"'\\".contains(c));
        let auth_conf = match &auth {
            TlsAuth::Open => String::new(),
            TlsAuth::Password(pw) => {
                assert!(plain(pw), "unusable password {pw:?}");
                format!("requirepass \"{pw}\"\n")
            }
            TlsAuth::User { name, password } => {
                assert!(plain(name) && plain(password), "unusable user {name:?} / {password:?}");
                format!("user default off\nuser {name} on >{password} ~* &* +@all\n")
            }
        };
        let options = |dir: &Path| {
            let mut o = vec![
                "--tls".into(),
                "--cacert".into(),
                dir.join("ca.pem").display().to_string(),
            ];
            o.extend(auth_options(&auth));
            o
        };
        let server = Server::start("tls redis".into(), false, &[], &options, &|port, dir| {
            if !dir.join("ca.pem").exists() {
                write_pki(dir);
            }
            format!(
                "port 0\n\
                 tls-port {port}\n\
                 tls-cert-file \"{d}/server.pem\"\n\
                 tls-key-file \"{d}/server.key\"\n\
                 tls-ca-cert-file \"{d}/ca.pem\"\n\
                 tls-auth-clients no\n\
                 {}{auth_conf}",
                common_conf(dir),
                d = dir.display()
            )
        });
        Self { server, auth }
    }

    /// The TLS port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `rediss://127.0.0.1:<port>` (no credentials).
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.server.port)
    }

    /// The URL with its credentials: `rediss://:pw@127.0.0.1:p` or `rediss://alice:secret@…`
    /// (percent-encoded); [`TlsRedis::url`] for an open server.
    pub fn url_with_credentials(&self) -> String {
        let port = self.server.port;
        match &self.auth {
            TlsAuth::Open => self.url(),
            TlsAuth::Password(pw) => format!("rediss://:{}@127.0.0.1:{port}", userinfo(pw)),
            TlsAuth::User { name, password } => {
                format!("rediss://{}:{}@127.0.0.1:{port}", userinfo(name), userinfo(password))
            }
        }
    }

    /// The CA certificate (PEM file) that signed the server's certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.server.dir.path().join("ca.pem")
    }

    /// The CA certificate's PEM text.
    pub fn ca_pem(&self) -> String {
        fs::read_to_string(self.ca_path()).expect("the CA file")
    }

    /// Runs `redis-cli` over TLS with the CA and the server's credentials; see [`redis_cli`].
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| panic!("redis-cli --tls -p {} {args:?}: {e}", self.server.port))
    }

    /// [`TlsRedis::cli`] that returns the failure instead of panicking.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let ca = self.ca_path().display().to_string();
        let mut options = vec!["--tls".to_string(), "--cacert".into(), ca];
        options.extend(auth_options(&self.auth));
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        try_redis_cli_with(self.server.port, &options, args)
    }
}

/// redis-cli's options for `auth`.
fn auth_options(auth: &TlsAuth) -> Vec<String> {
    match auth {
        TlsAuth::Open => Vec::new(),
        TlsAuth::Password(pw) => vec!["--pass".into(), pw.clone()],
        TlsAuth::User { name, password } => vec!["--user".into(), name.clone(), "--pass".into(), password.clone()],
    }
}

// ---------------------------------------------------------------------------------------------
// Self-checks

#[test]
fn a_cluster_starts_with_three_primaries_covering_every_slot() {
    let started = Instant::now();
    let cluster = Cluster::start();
    eprintln!("cluster started in {:?}", started.elapsed());
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    assert_eq!(cluster.ports().len(), 6);
    let seeds = primaries
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(cluster.seed_url(), format!("redis+cluster://{seeds}"));
    for port in cluster.ports() {
        let info = redis_cli(port, &["CLUSTER", "INFO"]);
        assert_eq!(info_field(&info, "cluster_state"), Some("ok"), "{port}: {info}");
        assert_eq!(
            info_field(&info, "cluster_slots_assigned"),
            Some("16384"),
            "{port}: {info}"
        );
    }
    for p in &primaries {
        assert_eq!(cluster.replicas_of(*p).len(), 1, "{p}");
    }

    // A key lands on the primary owning its slot, and only there among the primaries.
    let owner = cluster.primary_for_key("opgate-topology:key");
    assert!(primaries.contains(&owner), "{owner} not in {primaries:?}");
    assert_eq!(redis_cli(owner, &["SET", "opgate-topology:key", "v"]).trim(), "OK");
    let moved = try_redis_cli(
        *primaries.iter().find(|&&p| p != owner).unwrap(),
        &["GET", "opgate-topology:key"],
    );
    assert!(moved.as_ref().is_err_and(|e| e.contains("MOVED")), "{moved:?}");
    for p in &primaries {
        let expected = u64::from(*p == owner);
        assert_eq!(cluster.dbsize(*p), expected, "{p}");
        assert_eq!(cluster.keys_matching(*p, "opgate-topology:*"), expected, "{p}");
        assert_eq!(cluster.keys_matching(*p, "other:*"), 0, "{p}");
    }
}

#[test]
fn killing_a_cluster_primary_promotes_its_replica() {
    let mut cluster = Cluster::start();
    let dead = cluster.primary_for_key("opgate-topology:failover");
    let replica = cluster.replicas_of(dead);
    assert_eq!(replica.len(), 1, "{replica:?}");
    redis_cli(dead, &["SET", "opgate-topology:failover", "kept"]);
    // Replicated before the primary dies.
    assert_eq!(redis_cli(dead, &["WAIT", "1", "5000"]).trim(), "1");

    let started = Instant::now();
    cluster.kill_primary(dead);
    let promoted = cluster.wait_failover(dead);
    eprintln!("cluster failover took {:?}", started.elapsed());
    assert_eq!(promoted, replica[0]);
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    assert!(
        primaries.contains(&promoted) && !primaries.contains(&dead),
        "{primaries:?}"
    );
    assert_eq!(cluster.primary_for_key("opgate-topology:failover"), promoted);
    assert_eq!(redis_cli(promoted, &["GET", "opgate-topology:failover"]).trim(), "kept");
    assert!(try_redis_cli(dead, &["PING"]).is_err());
}

#[test]
fn sentinels_promote_the_replica_when_the_primary_dies() {
    let started = Instant::now();
    let mut set = Sentinels::start();
    eprintln!("sentinels started in {:?}", started.elapsed());
    let hosts: Vec<String> = set.sentinel_ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
    assert_eq!(set.url(), format!("redis+sentinel://{}/mymaster", hosts.join(",")));
    let (primary, replica) = (set.primary_port(), set.replica_port());
    redis_cli(primary, &["SET", "opgate-topology:sentinel", "kept"]);
    assert_eq!(redis_cli(primary, &["WAIT", "1", "5000"]).trim(), "1");

    let started = Instant::now();
    set.kill_primary();
    assert_eq!(set.wait_promotion(), replica);
    eprintln!("sentinel failover took {:?}", started.elapsed());
    assert_eq!(redis_cli(replica, &["GET", "opgate-topology:sentinel"]).trim(), "kept");
    assert_eq!(
        redis_cli(replica, &["SET", "opgate-topology:sentinel", "new"]).trim(),
        "OK"
    );
}

#[test]
fn a_tls_server_answers_over_tls_only_and_checks_credentials() {
    let started = Instant::now();
    let open = TlsRedis::start();
    eprintln!("TLS server started in {:?}", started.elapsed());
    assert_eq!(open.url(), format!("rediss://127.0.0.1:{}", open.port()));
    assert_eq!(open.url_with_credentials(), open.url());
    assert!(open.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(redis_cli_tls(open.port(), &open.ca_path(), &["PING"]).trim(), "PONG");

    // Plaintext: no answer but a closed connection (or a TLS alert).
    let plain = try_redis_cli(open.port(), &["PING"]);
    assert!(!plain.as_ref().is_ok_and(|o| o.contains("PONG")), "{plain:?}");
    let mut tcp = TcpStream::connect(("127.0.0.1", open.port())).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"PING\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("PONG"), "{answer:?}");

    // Another CA is not trusted.
    let other = TlsRedis::start();
    let wrong_ca = try_redis_cli_with(
        open.port(),
        &["--tls", "--cacert", other.ca_path().to_str().unwrap()],
        &["PING"],
    );
    assert!(wrong_ca.is_err(), "{wrong_ca:?}");

    let with_password = TlsRedis::with_password("pw1");
    assert_eq!(with_password.cli(&["PING"]).trim(), "PONG");
    assert_eq!(
        with_password.url_with_credentials(),
        format!("rediss://:pw1@127.0.0.1:{}", with_password.port())
    );
    let anonymous = try_redis_cli_with(
        with_password.port(),
        &["--tls", "--cacert", with_password.ca_path().to_str().unwrap()],
        &["PING"],
    );
    assert!(anonymous.as_ref().is_err_and(|e| e.contains("NOAUTH")), "{anonymous:?}");

    let alice = TlsRedis::with_user("alice", "secret");
    assert_eq!(alice.cli(&["SET", "k", "v"]).trim(), "OK");
    assert_eq!(
        alice.url_with_credentials(),
        format!("rediss://alice:secret@127.0.0.1:{}", alice.port())
    );
    let ca = alice.ca_path();
    let tls = ["--tls", "--cacert", ca.to_str().unwrap()];
    let anonymous = try_redis_cli_with(alice.port(), &tls, &["PING"]);
    assert!(anonymous.as_ref().is_err_and(|e| e.contains("NOAUTH")), "{anonymous:?}");
    let wrong = try_redis_cli_with(
        alice.port(),
        &[&tls[..], &["--user", "alice", "--pass", "nope"]].concat(),
        &["PING"],
    );
    assert!(wrong.is_err(), "{wrong:?}");
}
