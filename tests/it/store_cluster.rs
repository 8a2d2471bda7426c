//! Two opgate processes on a real Redis Cluster (3 primaries, 3 replicas on 127.0.0.1): exact
//! per-account limits with the accounts spread over every shard, and a primary killed with
//! `kill -9` in the middle of the load, with `durability = "replica"`, without one op admitted
//! over its limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::redis_topology::Cluster;
use crate::support::*;

/// Accounts sending, and sends per account: more than the limit, so every account hits it.
const ACCOUNTS: usize = 12;
const SENDS: usize = 8;
/// The per-account limit.
const LIMIT: usize = 3;

static PREFIXES: AtomicUsize = AtomicUsize::new(0);

/// The `n`-th sender.
fn sender(n: usize) -> String {
    format!("0x{:040x}", 0x5e5d_0000 + n)
}

/// `SENDS` distinct ops of each of `ACCOUNTS` SimpleAccounts (EntryPoint v0.8): the recorded op
/// with its sender and nonce changed, so every hash differs.
fn ops() -> Vec<(usize, String)> {
    let v = vector("ep08-simple-account-batch");
    let mut out = Vec::new();
    for nonce in 0..SENDS {
        for a in 0..ACCOUNTS {
            let mut op = v["userOperation"].clone();
            op["sender"] = json!(sender(a));
            op["nonce"] = json!(format!("{nonce:#x}"));
            out.push((a, json!([op, v["entryPoint"]["address"]]).to_string()));
        }
    }
    out
}

/// Two opgate processes on `store_url`, each ops' sender limited to `LIMIT` ops.
struct Replicas {
    ports: Vec<u16>,
    metrics: Vec<u16>,
    _children: Vec<Running>,
    dir: std::path::PathBuf,
}

impl Replicas {
    async fn start(upstream: &str, store_url: &str, durability: &str) -> Self {
        let prefix = format!(
            "opgate-cluster:{}:{}:",
            std::process::id(),
            PREFIXES.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("opgate-{}", prefix.replace(':', "-")));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("opgate.toml");
        let toml = format!(
            "[server]\nmax_connections_per_address = 1024\n\
             [store]\nbackend = \"redis\"\nurl = \"{store_url}\"\nprefix = \"{prefix}\"\ntimeout = \"2s\"\n\
             durability = \"{durability}\"\n\
             [[chains]]\nid = 1\nupstreams = [\"{upstream}\"]\n\
             [[policies]]\nname = \"per-account\"\n[policies.limits]\ncounter_scope = \"sender\"\nops = {{ count = {LIMIT} }}\n"
        );
        std::fs::write(&file, toml).unwrap();
        let mut children = Vec::new();
        let mut ports = Vec::new();
        let mut metrics_ports = Vec::new();
        for _ in 0..2 {
            let (child, port, metrics) = spawn_opgate(&file).await;
            children.push(child);
            ports.push(port);
            metrics_ports.push(metrics);
        }
        for p in &ports {
            wait_healthy(*p).await;
        }
        Self {
            ports,
            metrics: metrics_ports,
            _children: children,
            dir,
        }
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the sends came to: per account, how many were admitted; and how many answers were store
/// failures (each retried until a final answer).
struct Outcome {
    admitted: Vec<usize>,
    store_failures: usize,
}

/// Sends every op once, concurrently, alternating replicas; an op answered `StoreUnavailable`
/// is sent again (the same op: a resend is never charged twice) until it gets a final answer.
async fn send_all(replicas: &Replicas, ops: Vec<(usize, String)>) -> Outcome {
    let tasks: Vec<_> = ops
        .into_iter()
        .enumerate()
        .map(|(i, (account, params))| {
            let url = format!("http://127.0.0.1:{}/", replicas.ports[i % 2]);
            tokio::spawn(async move {
                let mut store_failures = 0;
                let deadline = Instant::now() + Duration::from_secs(90);
                loop {
                    let v: Value = call(&url, "eth_sendUserOperation", &params).await;
                    if v.get("result").is_some() {
                        return (account, true, store_failures);
                    }
                    match v["error"]["data"]["reason"].as_str() {
                        Some("StoreUnavailable") => {
                            store_failures += 1;
                            assert!(Instant::now() < deadline, "no final answer for {params}: {v}");
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        _ => {
                            assert_eq!(v["error"]["code"], -32504, "{v}");
                            assert_eq!(v["error"]["data"]["policy"], "per-account", "{v}");
                            return (account, false, store_failures);
                        }
                    }
                }
            })
        })
        .collect();
    let mut admitted = vec![0; ACCOUNTS];
    let mut store_failures = 0;
    for t in tasks {
        let (account, ok, failures) = t.await.expect("send task");
        admitted[account] += usize::from(ok);
        store_failures += failures;
    }
    Outcome {
        admitted,
        store_failures,
    }
}

fn sends(b: &FakeBundler) -> usize {
    b.received()
        .iter()
        .filter(|r| r.method == "eth_sendUserOperation")
        .count()
}

async fn bundler() -> FakeBundler {
    FakeBundler::start(|_| Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":"0x01"}"#.into())).await
}

async fn started_cluster() -> Cluster {
    tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_a_cluster_admit_exactly_each_accounts_limit() {
    let cluster = started_cluster().await;
    let upstream = bundler().await;
    let replicas = Replicas::start(&upstream.url(), &cluster.seed_url(), "primary").await;
    let (status, body) = get(&format!("http://127.0.0.1:{}/readyz", replicas.ports[0])).await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready["store"],
        json!({"backend": "redis", "topology": "cluster", "ready": true})
    );
    let out = send_all(&replicas, ops()).await;
    assert_eq!(
        out.admitted,
        vec![LIMIT; ACCOUNTS],
        "every account got exactly its limit"
    );
    assert_eq!(out.store_failures, 0);
    assert_eq!(
        sends(&upstream),
        LIMIT * ACCOUNTS,
        "exactly the limits reached the upstream"
    );
    // The accounts' counters are spread over every primary.
    for port in cluster.primaries() {
        let counters = cluster.keys_matching(port, "*per-account*");
        assert!(counters > 0, "primary {port} holds none of the accounts' counters");
    }
}

/// `kill -9` of the primary holding some accounts while the sends are in flight: its ops are
/// refused as store failures (never admitted) until the shard is back with a replica, their
/// resends then get final answers, and no account is admitted over its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_load_admits_no_op_over_the_limit_with_replica_durability() {
    let mut cluster = started_cluster().await;
    let upstream = bundler().await;
    let replicas = Arc::new(Replicas::start(&upstream.url(), &cluster.seed_url(), "replica").await);
    let ops = ops();
    let third = ops.len() / 3;
    let warm = send_all(&replicas, ops[..third].to_vec()).await;
    assert_eq!(warm.store_failures, 0);

    // A primary dies while the second third is on its way; the last third is sent after it died.
    let victim = cluster.primaries()[0];
    let spawn_load = |part: Vec<(usize, String)>| {
        let replicas = replicas.clone();
        tokio::spawn(async move { send_all(&replicas, part).await })
    };
    let during = spawn_load(ops[third..2 * third].to_vec());
    tokio::task::block_in_place(|| cluster.kill_primary(victim));
    let after = spawn_load(ops[2 * third..].to_vec());
    tokio::task::block_in_place(|| {
        cluster.wait_failover(victim);
        // The promoted replica has no replica of its own: reservations there wait for one.
        cluster.restart(victim);
    });
    let (during, after) = (during.await.expect("load"), after.await.expect("load"));
    let metrics = get(&format!("http://127.0.0.1:{}/metrics", replicas.metrics[0]))
        .await
        .1
        + &get(&format!("http://127.0.0.1:{}/metrics", replicas.metrics[1]))
            .await
            .1;
    assert!(
        metrics.contains("opgate_store_errors_total{"),
        "store failures during the failover are counted"
    );
    assert!(
        metrics.contains("opgate_store_reconnects_total{topology=\"cluster\"}"),
        "the connections dropped by the failover are counted"
    );
    let admitted: Vec<usize> = (0..ACCOUNTS)
        .map(|a| warm.admitted[a] + during.admitted[a] + after.admitted[a])
        .collect();
    let failures = during.store_failures + after.store_failures;
    assert!(failures > 0, "the sends after the kill met the dead shard");
    assert_eq!(
        admitted,
        vec![LIMIT; ACCOUNTS],
        "exactly each account's limit across the failover ({failures} store failures resent)"
    );
    assert_eq!(
        sends(&upstream),
        LIMIT * ACCOUNTS,
        "exactly the limits reached the upstream"
    );
}
