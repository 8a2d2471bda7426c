//! Operator policies and usage counters against a real Redis: exact limits across two opgate
//! processes, refunds when the upstream refuses, Redis going away and coming back, forged
//! signatures charging nothing, periods rolling over on a paused clock.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opgate::clock::ManualClock;
use opgate::config::{Config, Overrides};
use serde_json::{json, Value};

use crate::support::*;

static PREFIXES: AtomicUsize = AtomicUsize::new(0);

/// A key prefix no other test (or test run) uses.
fn prefix(test: &str) -> String {
    format!(
        "opgate-test:{test}:{}:{}:",
        std::process::id(),
        PREFIXES.fetch_add(1, Ordering::Relaxed)
    )
}

/// `count` distinct operations of one SimpleAccount (EntryPoint v0.8): the recorded op with its
/// nonce changed, so every hash differs.
fn simple_ops(count: usize, first_nonce: usize) -> Vec<String> {
    let v = vector("ep08-simple-account-batch");
    (first_nonce..first_nonce + count)
        .map(|n| {
            let mut op = v["userOperation"].clone();
            op["nonce"] = json!(format!("{n:#x}"));
            json!([op, v["entryPoint"]["address"]]).to_string()
        })
        .collect()
}

fn sender() -> String {
    vector("ep08-simple-account-batch")["userOperation"]["sender"]
        .as_str()
        .unwrap()
        .to_lowercase()
}

/// A bundler that accepts every op (answering a hash) while `accept` is set, refuses otherwise.
async fn bundler(accept: Arc<AtomicBool>) -> FakeBundler {
    FakeBundler::start(move |r| {
        if r.method != "eth_sendUserOperation" || accept.load(Ordering::SeqCst) {
            Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":"0x01"}"#.into())
        } else {
            Reply::Json(
                r#"{"jsonrpc":"2.0","id":{id},"error":{"code":-32500,"message":"AA21 didn't pay prefund"}}"#.into(),
            )
        }
    })
    .await
}

fn sends(b: &FakeBundler) -> usize {
    b.received()
        .iter()
        .filter(|r| r.method == "eth_sendUserOperation")
        .count()
}

fn redis_store(prefix: &str, url: &str, extra: &str) -> String {
    format!("[store]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\ntimeout = \"300ms\"\n{extra}\n")
}

fn budget_policy(name: &str, ops: &str, extra: &str) -> String {
    format!(
        "[[policies]]\nname = \"{name}\"\n{extra}\n[policies.match]\nsenders = [\"{}\"]\n[policies.limits]\ncounter_scope = \"sender\"\nops = {ops}\n",
        sender()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_redis_accept_exactly_the_limit() {
    let accept = Arc::new(AtomicBool::new(true));
    let upstream = bundler(accept).await;
    let prefix = prefix("two-replicas");
    let dir = std::env::temp_dir().join(format!("opgate-{}", prefix.replace(':', "-")));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("opgate.toml");
    let toml = format!(
        "[server]\nmax_connections_per_address = 1024\n{}[[chains]]\nid = 1\nupstreams = [\"{}\"]\n{}",
        // Exactness is the point here, not latency: a generous store timeout keeps a loaded CI
        // machine from turning slow round trips into StoreUnavailable answers. All 200 parallel
        // sends come from 127.0.0.1, so the per-address cap is raised to the connection limit.
        redis_store(&prefix, "redis://127.0.0.1:6379", "").replace("300ms", "5s"),
        upstream.url(),
        budget_policy("fifty", "{ count = 50 }", "")
    );
    std::fs::write(&file, toml).unwrap();
    let mut replicas = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..2 {
        let (child, port, _) = spawn_opgate(&file).await;
        replicas.push(child);
        ports.push(port);
    }
    for p in &ports {
        wait_healthy(*p).await;
    }
    let ops = simple_ops(200, 1000);
    let tasks: Vec<_> = ops
        .into_iter()
        .enumerate()
        .map(|(i, params)| {
            let url = format!("http://127.0.0.1:{}/", ports[i % 2]);
            tokio::spawn(async move { call(&url, "eth_sendUserOperation", &params).await })
        })
        .collect();
    let mut accepted = 0;
    let mut limited = 0;
    for t in tasks {
        let v: Value = t.await.unwrap();
        if v.get("result").is_some() {
            accepted += 1;
        } else {
            assert_eq!(v["error"]["code"], -32504, "{v}");
            assert_eq!(v["error"]["data"]["reason"], "RateLimited", "{v}");
            assert_eq!(v["error"]["data"]["policy"], "fifty", "{v}");
            limited += 1;
        }
    }
    assert_eq!(accepted, 50);
    assert_eq!(limited, 150);
    assert_eq!(sends(&upstream), 50, "exactly the limit reached the upstream");
    drop(replicas);
    redis_cleanup(&prefix);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_ops_are_refunded() {
    let accept = Arc::new(AtomicBool::new(false));
    let upstream = bundler(accept.clone()).await;
    let prefix = prefix("refund");
    let toml = format!(
        "{}[[chains]]\nid = 1\nupstreams = [\"{}\"]\n{}",
        redis_store(&prefix, "redis://127.0.0.1:6379", ""),
        upstream.url(),
        budget_policy("five", "{ count = 5 }", "")
    );
    let opgate = Opgate::start_toml(&toml).await;
    for params in simple_ops(8, 0) {
        let v = call(&opgate.url("/"), "eth_sendUserOperation", &params).await;
        assert_eq!(
            v["error"]["message"], "AA21 didn't pay prefund",
            "the upstream's refusal passes through"
        );
    }
    assert_eq!(sends(&upstream), 8, "refused ops were refunded, so none hit the limit");
    accept.store(true, Ordering::SeqCst);
    let mut accepted = 0;
    for params in simple_ops(8, 100) {
        let v = call(&opgate.url("/"), "eth_sendUserOperation", &params).await;
        accepted += usize::from(v.get("result").is_some());
    }
    assert_eq!(accepted, 5);
    // The same op sent again is not charged twice: it goes through without using the budget.
    let again = &simple_ops(1, 100)[0];
    let v = call(&opgate.url("/"), "eth_sendUserOperation", again).await;
    assert_eq!(v["result"], "0x01", "{v}");
    let m = opgate.metrics().await;
    assert_eq!(
        sample(&m, r#"opgate_reservations_total{chain="1",result="refunded"}"#),
        Some(8.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"opgate_reservations_total{chain="1",result="already_charged"}"#),
        Some(1.0),
        "{m}"
    );
    redis_cleanup(&prefix);
}

/// A private Redis on its own port, started and stopped by this test.
struct PrivateRedis {
    port: u16,
    child: Option<Running>,
}

impl PrivateRedis {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        wait_healthy(port).await;
        Self {
            port,
            child: Some(Running(child)),
        }
    }

    fn stop(&mut self) {
        drop(self.child.take());
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_follows_on_error_then_recovers() {
    let accept = Arc::new(AtomicBool::new(true));
    let upstream = bundler(accept).await;
    let port = free_port().await;
    let mut redis = PrivateRedis::start(port).await;
    let strict = Opgate::start_toml(&format!(
        "{}[[chains]]\nid = 1\nupstreams = [\"{}\"]\n{}",
        redis_store("strict:", &redis.url(), ""),
        upstream.url(),
        budget_policy("strict", "{ count = 100 }", "")
    ))
    .await;
    let lenient = Opgate::start_toml(&format!(
        "{}[[chains]]\nid = 1\nupstreams = [\"{}\"]\n{}",
        redis_store("lenient:", &redis.url(), ""),
        upstream.url(),
        budget_policy("lenient", "{ count = 100 }", "on_error = \"allow\"")
    ))
    .await;
    let ops = simple_ops(6, 0);
    for (opgate, params) in [(&strict, &ops[0]), (&lenient, &ops[1])] {
        let v = call(&opgate.url("/"), "eth_sendUserOperation", params).await;
        assert_eq!(v["result"], "0x01", "{v}");
    }
    redis.stop();
    let before = sends(&upstream);
    let v = call(&strict.url("/"), "eth_sendUserOperation", &ops[2]).await;
    assert_eq!(v["error"]["code"], -32052, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "StoreUnavailable");
    assert_eq!(sends(&upstream), before, "on_error = reject relays nothing");
    let v = call(&lenient.url("/"), "eth_sendUserOperation", &ops[3]).await;
    assert_eq!(v["result"], "0x01", "on_error = allow relays uncharged: {v}");
    let m = lenient.metrics().await;
    assert_eq!(
        sample(&m, r#"opgate_store_fallbacks_total{action="allowed",chain="1"}"#),
        Some(1.0),
        "{m}"
    );
    let m = strict.metrics().await;
    assert!(
        sample(
            &m,
            r#"opgate_store_errors_total{kind="unavailable",operation="reserve"}"#
        )
        .unwrap_or(0.0)
            + sample(&m, r#"opgate_store_errors_total{kind="timeout",operation="reserve"}"#).unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );

    let _redis = PrivateRedis::start(port).await;
    let mut recovered = false;
    for _ in 0..50 {
        let v = call(&strict.url("/"), "eth_sendUserOperation", &ops[4]).await;
        if v.get("result").is_some() {
            recovered = true;
            break;
        }
        assert_eq!(v["error"]["code"], -32052, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "opgate uses Redis again once it is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periods_roll_over_on_a_paused_clock() {
    let accept = Arc::new(AtomicBool::new(true));
    let upstream = bundler(accept).await;
    let prefix = prefix("periods");
    let start = 1_800_000_000u64; // 3600-aligned + 0 s into the hour
    let clock = Arc::new(ManualClock::new(start + 600));
    let toml = format!(
        "{}[[chains]]\nid = 1\nupstreams = [\"{}\"]\n{}",
        redis_store(&prefix, "redis://127.0.0.1:6379", ""),
        upstream.url(),
        budget_policy("hourly", "{ count = 2, period = \"1h\" }", "")
    );
    let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
    let opgate = Opgate::start_with_clock(config, clock.clone()).await;
    let ops = simple_ops(5, 0);
    for params in &ops[..2] {
        assert_eq!(
            call(&opgate.url("/"), "eth_sendUserOperation", params).await["result"],
            "0x01"
        );
    }
    let v = call(&opgate.url("/"), "eth_sendUserOperation", &ops[2]).await;
    assert_eq!(v["error"]["code"], -32504, "{v}");
    assert_eq!(
        v["error"]["data"]["retryAfter"], 3000,
        "the hour window ends 3000 s later: {v}"
    );
    clock.advance(2999);
    let v = call(&opgate.url("/"), "eth_sendUserOperation", &ops[2]).await;
    assert_eq!(v["error"]["data"]["retryAfter"], 1, "{v}");
    clock.advance(1);
    for params in &ops[2..4] {
        assert_eq!(
            call(&opgate.url("/"), "eth_sendUserOperation", params).await["result"],
            "0x01"
        );
    }
    let v = call(&opgate.url("/"), "eth_sendUserOperation", &ops[4]).await;
    assert_eq!(v["error"]["data"]["reason"], "RateLimited", "{v}");
    assert_eq!(sends(&upstream), 4);
    redis_cleanup(&prefix);
}

/// Flips one bit of the ECDSA `s` value at the end of the signature.
fn forge(params: &str) -> String {
    let mut v: Value = serde_json::from_str(params).unwrap();
    let sig = v[0]["signature"].as_str().unwrap().to_string();
    let (head, tail) = sig.split_at(sig.len() - 4);
    let flipped = format!("{:02x}", u8::from_str_radix(&tail[..2], 16).unwrap() ^ 1);
    v[0]["signature"] = json!(format!("{head}{flipped}{}", &tail[2..]));
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_session_signatures_are_refused_and_charge_nothing() {
    let accept = Arc::new(AtomicBool::new(true));
    let upstream = bundler(accept).await;
    let prefix = prefix("forged");
    let clock = Arc::new(ManualClock::new(1_795_283_914));
    let toml = format!(
        "{}[[chains]]\nid = 31337\nupstreams = [\"{}\"]\n",
        redis_store(&prefix, "redis://127.0.0.1:6379", ""),
        upstream.url()
    );
    let opgate = Opgate::start_with_clock(Config::from_toml(&toml, &Overrides::default()).unwrap(), clock).await;
    let url = opgate.url("/31337");
    let enable = vector("call-equal-enable-k031");
    let v = call(&url, "eth_sendUserOperation", &vector_params("call-equal-enable-k031")).await;
    assert_eq!(v["result"], "0x01", "{v}");
    let account = enable["sender"].as_str().unwrap().to_lowercase();
    let pid = enable["session"]["permissionId"].as_str().unwrap();
    let state = |v: &Value| -> Vec<(String, String)> {
        v["result"]["limits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["policy"].as_str().unwrap().to_string(),
                    l["used"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let params = format!(r#"["31337","{account}","{pid}"]"#);
    let before = call(&url, "opgate_getSessionState", &params).await;
    assert_eq!(before["result"]["known"], true, "{before}");
    assert!(
        state(&before).iter().any(|(p, used)| p == "session:gas" && used != "0"),
        "{before}"
    );

    let regular = vector_params("call-equal-regular-k031");
    let forged = forge(&regular);
    let sent = sends(&upstream);
    let v = call(&url, "eth_sendUserOperation", &forged).await;
    assert_eq!(v["error"]["code"], -32507, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "InvalidSignature");
    assert_eq!(v["error"]["data"]["policy"], "session");
    assert_eq!(sends(&upstream), sent, "a forged op never reaches the bundler");
    let explained = call(&url, "opgate_explainUserOperation", &forged).await;
    assert_eq!(explained["result"]["decision"], "reject", "{explained}");
    let after = call(&url, "opgate_getSessionState", &params).await;
    assert_eq!(state(&before), state(&after), "nothing was charged for the forged op");

    let v = call(&url, "eth_sendUserOperation", &regular).await;
    assert_eq!(v["result"], "0x01", "the genuine op passes: {v}");
    let signer = enable["session"]["sessionKeyAddress"].as_str().unwrap().to_lowercase();
    let by_signer = call(
        &url,
        "opgate_getSessionState",
        &format!(r#"[31337,"{account}","{signer}"]"#),
    )
    .await;
    assert_eq!(by_signer["result"]["permissionId"], pid, "{by_signer}");
    assert_ne!(state(&by_signer), state(&after), "the genuine op was charged");
    redis_cleanup(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_budget_can_span_every_chain() {
    let accept = Arc::new(AtomicBool::new(true));
    let upstream = bundler(accept).await;
    let prefix = prefix("cross-chain");
    let policy = budget_policy("everywhere", "{ count = 1 }", "").replace(
        "counter_scope = \"sender\"",
        "counter_scope = \"sender\"\nshared_across_chains = true",
    );
    let per_chain = budget_policy("per-chain", "{ count = 5 }", "");
    let toml = format!(
        "{}[[chains]]\nid = 1\nupstreams = [\"{u}\"]\n[[chains]]\nid = 8453\nupstreams = [\"{u}\"]\n{policy}{per_chain}",
        redis_store(&prefix, "redis://127.0.0.1:6379", ""),
        u = upstream.url()
    );
    let opgate = Opgate::start_toml(&toml).await;
    let ops = simple_ops(2, 0);
    let v = call(&opgate.url("/1"), "eth_sendUserOperation", &ops[0]).await;
    assert_eq!(v["result"], "0x01", "{v}");
    let v = call(&opgate.url("/8453"), "eth_sendUserOperation", &ops[1]).await;
    assert_eq!(
        v["error"]["data"]["policy"], "everywhere",
        "the budget used on chain 1 is spent on 8453: {v}"
    );
    let state = call(
        &opgate.url("/8453"),
        "opgate_getSessionState",
        &format!(r#"["0x2105","{}","0x00000000"]"#, sender()),
    )
    .await;
    let limits = state["result"]["limits"].as_array().unwrap().clone();
    let used = |p: &str| limits.iter().find(|l| l["policy"] == p).map(|l| l["used"].clone());
    assert_eq!(used("everywhere"), Some(json!("1")), "{state}");
    assert_eq!(
        used("per-chain"),
        Some(json!("0")),
        "the refused op charged nothing, not even the per-chain budget it passed: {state}"
    );
    redis_cleanup(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_rules_apply_to_every_call_of_a_simple_account_batch() {
    let accept = Arc::new(AtomicBool::new(true));
    let upstream = bundler(accept).await;
    // The recorded batch: setNumber(8) on a target, then 8 wei to another address.
    let rules = |limit: u64, value_cap: &str| {
        format!(
            "[[policies]]\nname = \"calls\"\n[[policies.calls]]\ntarget = \"0xedCC53F25Bac99Ebb78D3a0012eC78Ae3e67494e\"\n\
             function = \"setNumber(uint256)\"\n[[policies.calls.constraints]]\nparam = 0\ncondition = \"lte\"\n\
             value = \"{limit}\"\n[[policies.calls]]\ntarget = \"*\"\nselector = \"0x00000000\"\n\
             max_value_per_use = \"{value_cap}\"\n"
        )
    };
    for (limit, cap, want) in [
        (8, "8", None),
        (7, "8", Some(("ConditionFailed", "calls[0].constraints[0]"))),
        (8, "7", Some(("MaxValueExceeded", "calls[1].max_value_per_use"))),
    ] {
        let toml = format!(
            "[[chains]]\nid = 1\nupstreams = [\"{}\"]\n{}",
            upstream.url(),
            rules(limit, cap)
        );
        let opgate = Opgate::start_toml(&toml).await;
        let v = call(
            &opgate.url("/"),
            "eth_sendUserOperation",
            &vector_params("ep08-simple-account-batch"),
        )
        .await;
        match want {
            None => assert_eq!(v["result"], "0x01", "{v}"),
            Some((reason, rule)) => {
                assert_eq!(v["error"]["data"]["reason"], reason, "{v}");
                assert_eq!(v["error"]["data"]["rule"], rule, "{v}");
            }
        }
    }
    // A call to a target no rule names.
    let toml = format!(
        "[[chains]]\nid = 1\nupstreams = [\"{}\"]\n[[policies]]\nname = \"only-one\"\n[[policies.calls]]\ntarget = \"0xedCC53F25Bac99Ebb78D3a0012eC78Ae3e67494e\"\n",
        upstream.url()
    );
    let opgate = Opgate::start_toml(&toml).await;
    let v = call(
        &opgate.url("/"),
        "eth_sendUserOperation",
        &vector_params("ep08-simple-account-batch"),
    )
    .await;
    assert_eq!(v["error"]["data"]["reason"], "CallPolicyViolated", "{v}");
    assert!(
        v["error"]["data"]["detail"].as_str().unwrap().starts_with("calls[1]"),
        "{v}"
    );
}

/// A session key may sign EIP-191(userOpHash), as the SDK does, or the raw userOpHash: Kernel's
/// ECDSASigner accepts both, and so does opgate, whichever it tries first. Another key is refused.
#[tokio::test]
async fn session_signatures_over_either_hash_are_accepted_and_other_keys_refused() {
    use alloy_primitives::{eip191_hash_message, keccak256, Address, B256, U256};
    use k256::ecdsa::SigningKey;
    use opgate::decode::parse_serialized_permission_account;
    use opgate::decode::permission::ECDSA_SIGNER;
    use opgate::registry::{Source, StoredPermission};
    use opgate::userop::{parse_user_operation_str, EntryPointVersion};

    // The recorded session's policies, bound to a key this test holds.
    let v = vector("call-equal-regular-k031");
    let blob = v["session"]["serializedPermissionAccount"].as_str().unwrap();
    let sp = parse_serialized_permission_account(blob).unwrap();
    let address_of = |k: &SigningKey| {
        let point = k.verifying_key().to_encoded_point(false);
        Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..])
    };
    let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let other = SigningKey::from_slice(&[8u8; 32]).unwrap();
    let signer = address_of(&key);
    let pid = sp.derive_id_for(ECDSA_SIGNER, signer.as_slice());

    let config = Config::from_toml(
        &format!(
            "[[chains]]\nid = 31337\nupstreams = [\"{}\"]\n",
            closed_port_url().await
        ),
        &Overrides::default(),
    )
    .unwrap();
    // Inside the session's TimestampPolicy window.
    let clock = Arc::new(ManualClock::new(
        v["session"]["policies"][3]["params"]["validAfter"].as_u64().unwrap() + 60,
    ));
    let app = opgate::app::App::build_with_clock(config, clock).await.unwrap();
    let stored = StoredPermission {
        validator_data: sp.validator_data_with_key(signer),
        selectors: vec![sp.action.selector],
        source: Source::Operator,
        learned_at: 0,
        hook: None,
        enable_nonce: None,
        uninstalled: false,
        pending: None,
    };
    app.gate()
        .registry
        .put_permission(31337, sp.account, pid, &stored)
        .await
        .unwrap();

    // The recorded op, under this permission id: nonce `0x00 ‖ 0x02 ‖ pid ‖ 0^16 ‖ 0^2 ‖ 0^8`.
    let mut op = v["userOperation"].clone();
    let mut nonce = [0u8; 32];
    nonce[1] = 0x02;
    nonce[2..6].copy_from_slice(pid.as_slice());
    op["nonce"] = json!(format!("{:#x}", U256::from_be_bytes(nonce)));
    let ep: Address = v["entryPoint"]["address"].as_str().unwrap().parse().unwrap();
    let hash = parse_user_operation_str(&op.to_string(), EntryPointVersion::V07)
        .unwrap()
        .hash(ep, 31337)
        .unwrap();
    let eip191: B256 = eip191_hash_message(hash);
    for (name, by, digest, accepted) in [
        ("EIP-191", &key, eip191, true),
        ("raw hash", &key, hash, true),
        ("another key, EIP-191", &other, eip191, false),
        ("another key, raw hash", &other, hash, false),
    ] {
        let (sig, recid) = by.sign_prehash_recoverable(digest.as_slice()).unwrap();
        let mut signature = vec![0xff];
        signature.extend_from_slice(&sig.to_bytes());
        signature.push(27 + recid.to_byte());
        op["signature"] = json!(format!("0x{}", alloy_primitives::hex::encode(&signature)));
        let params = serde_json::value::to_raw_value(&json!([op, v["entryPoint"]["address"]])).unwrap();
        let e = opgate::pipeline::explain(app.gate(), &app.chains()[0], Some(&params), None)
            .await
            .unwrap();
        if accepted {
            assert_eq!(e.decision, "accept", "{name}: {:?}", e.rejection);
        } else {
            let r = e.rejection.unwrap_or_else(|| panic!("{name}: accepted"));
            assert_eq!(
                (r.reason.as_str(), r.policy.as_str(), r.rule.as_str()),
                ("InvalidSignature", "session", "signer"),
                "{name}"
            );
        }
    }
}
