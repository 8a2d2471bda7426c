//! Every recorded attack, setup and control op of `tests/data/vectors-adversarial/` replayed in
//! order through opgate, on both recorded chains, in front of a fake bundler that answers what the
//! real bundler answered, with the clock pinned to the recording time. Each answer must be the
//! vector's `proxyShould`: `refuse` — opgate answers an error itself, naming a reason, a policy, a
//! rule and a detail, and the upstream never sees the op; `forward` — the upstream sees the op and
//! its answer comes back unchanged. `opgate_explainUserOperation`, asked before each send, must
//! give the same verdict and reason. Runs against the in-memory store and against Redis.

use std::path::Path;
use std::sync::{Arc, Mutex};

use opgate::clock::ManualClock;
use opgate::config::{Config, Overrides};
use serde_json::Value;

use crate::support::{call, FakeBundler, Opgate};

fn adversarial(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/vectors-adversarial/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The operator configuration the replay runs under: the recorded forwarder is a declared
/// delegate (it makes one call, `(target, value, data)` = its arguments 0, 1, 2).
const OPERATOR: &str = r#"
[[delegates]]
target = "0xCA7814dd41C717eefd3fF9fDCbabaE10Dc96a539"
function = "forward(address,uint256,bytes)"
"#;

/// opgate in front of a fake bundler answering each recorded op as the real one did.
struct Replay {
    opgate: Opgate,
    bundler: FakeBundler,
    answer: Arc<Mutex<String>>,
}

/// What opgate answered one vector, and whether the upstream saw it.
struct Sent {
    relayed: bool,
    got: Value,
}

impl Replay {
    async fn start(store_toml: &str) -> Self {
        let index = adversarial("index");
        let answer: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
        let bundler = FakeBundler::replaying(answer.clone()).await;
        let mut toml = format!("{store_toml}\n{OPERATOR}\n");
        for chain in index["chains"].as_array().unwrap() {
            toml.push_str(&format!(
                "[[chains]]\nid = {}\nupstreams = [\"{}\"]\n",
                chain["chainId"],
                bundler.url()
            ));
        }
        let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
        let clock = Arc::new(ManualClock::new(index["recordedAt"].as_u64().unwrap()));
        let opgate = Opgate::start_with_clock(config, clock).await;
        Self {
            opgate,
            bundler,
            answer,
        }
    }

    /// `opgate_explainUserOperation` of vector `v` on its chain.
    async fn explain(&self, v: &Value) -> Value {
        let chain = v["chainId"].as_u64().unwrap();
        let request: Value = serde_json::from_str(v["rpcRequest"].as_str().unwrap()).unwrap();
        call(
            &self.opgate.url(&format!("/{chain}")),
            "opgate_explainUserOperation",
            &request["params"].to_string(),
        )
        .await
    }

    /// Sends vector `v` on its chain.
    async fn send(&self, v: &Value) -> Sent {
        let chain = v["chainId"].as_u64().unwrap();
        let mut response: Value = v["rpcResponse"].clone();
        response["id"] = Value::String("{id}".into());
        *self.answer.lock().unwrap() = response.to_string().replace("\"{id}\"", "{id}");
        let request: Value = serde_json::from_str(v["rpcRequest"].as_str().unwrap()).unwrap();
        let params = request["params"].to_string();
        let before = self.bundler.received().len();
        let got = call(&self.opgate.url(&format!("/{chain}")), "eth_sendUserOperation", &params).await;
        Sent {
            relayed: self.bundler.received().len() > before,
            got,
        }
    }
}

/// Replays every vector and returns one line per verdict that differs from `proxyShould`.
async fn replay(store_toml: &str) -> Vec<String> {
    let index = adversarial("index");
    let r = Replay::start(store_toml).await;
    let mut wrong = Vec::new();
    for entry in index["vectors"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let v = adversarial(name);
        // The explanation, asked first (it charges nothing), must give the same verdict.
        let explained = r.explain(&v).await;
        let Sent { relayed, got } = r.send(&v).await;
        let reason = got["error"]["data"]["reason"].clone();
        let agrees = match &explained["result"]["decision"] {
            d if d == "accept" => relayed,
            d if d == "reject" => !relayed && explained["result"]["rejection"]["reason"] == reason,
            _ => false,
        };
        if !agrees {
            wrong.push(format!(
                "{name}: opgate_explainUserOperation says {} ({}), the send {}",
                explained["result"]["decision"],
                explained["result"]["rejection"]["reason"],
                if relayed {
                    "was relayed".to_string()
                } else {
                    format!("was refused ({reason})")
                }
            ));
        }
        let should = v["proxyShould"]["answer"].as_str().unwrap();
        let data = &got["error"]["data"];
        if std::env::var_os("OPGATE_VECTORS_VERBOSE").is_some() {
            eprintln!(
                "{name:55} {should:8} relayed={relayed:5} {} {} {} {}",
                data["reason"], data["policy"], data["rule"], data["detail"]
            );
        }
        let verdict = match (should, relayed) {
            ("refuse", false) => {
                let named = ["reason", "policy", "rule", "detail"]
                    .iter()
                    .all(|k| data[k].as_str().is_some_and(|s| !s.is_empty()));
                (!named).then(|| format!("refused without naming reason, policy, rule and detail: {got}"))
            }
            ("refuse", true) => Some(format!("forwarded; should refuse ({})", v["proxyShould"]["why"])),
            ("forward", true) => (got.get("result") != v["rpcResponse"].get("result")
                || got.get("error") != v["rpcResponse"].get("error"))
            .then(|| format!("the upstream's answer did not come back unchanged: {got}")),
            _ => Some(format!(
                "refused ({} / {} / {}: {}); should forward",
                data["reason"], data["policy"], data["rule"], data["detail"]
            )),
        };
        if let Some(w) = verdict {
            wrong.push(format!("{name} [{}]: {w}", v["role"].as_str().unwrap_or("")));
        }
    }
    wrong
}

fn assert_all_as_should(wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "{} vector(s) not answered as a careful proxy should:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_vectors_get_the_careful_answer_in_memory() {
    assert_all_as_should(&replay("").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_vectors_get_the_careful_answer_on_redis() {
    let prefix = format!("opgate-test:adversarial:{}:", std::process::id());
    let wrong = replay(&format!(
        "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nprefix = \"{prefix}\"\n"
    ))
    .await;
    crate::support::redis_cleanup(&prefix);
    assert_all_as_should(&wrong);
}

/// After the owner uninstalls a permission, the old enable approval of that permission is the
/// revoked key trying to come back: refused as `Revoked`, while the owner's fresh approval of the
/// same id (`owner-reenables-pid-same-nonce`) is forwarded; once the owner invalidates the nonce,
/// the old approval is refused as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstalled_permissions_old_approval_is_refused() {
    let index = adversarial("index");
    let r = Replay::start("").await;
    for entry in index["vectors"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        r.send(&adversarial(name)).await;
        if name == "pid-1-owner-uninstalls-session" {
            break;
        }
    }
    // The original enable op, with a fresh sequence number (a new userOpHash, same approval).
    let mut v = adversarial("pid-1-session-enable");
    let mut request: Value = serde_json::from_str(v["rpcRequest"].as_str().unwrap()).unwrap();
    let nonce = request["params"][0]["nonce"].as_str().unwrap().to_string();
    let bumped = format!("{}{}", &nonce[..nonce.len() - 1], "7");
    request["params"][0]["nonce"] = Value::String(bumped);
    v["rpcRequest"] = Value::String(request.to_string());
    let sent = r.send(&v).await;
    assert!(
        !sent.relayed,
        "the replayed approval reached the upstream: {}",
        sent.got
    );
    let data = &sent.got["error"]["data"];
    assert_eq!(data["reason"], "Revoked", "{}", sent.got);
    assert_eq!(data["rule"], "enable.uninstalled", "{}", sent.got);
    // The owner's fresh approval of the same id is forwarded.
    let fresh = r.send(&adversarial("owner-reenables-pid-same-nonce")).await;
    assert!(fresh.relayed, "{}", fresh.got);
    // Once the owner moved the nonce, the old approval is stale, and named so.
    let moved = r.send(&adversarial("pid-1-owner-invalidates-nonce")).await;
    assert!(moved.relayed, "{}", moved.got);
    let stale = r.send(&v).await;
    assert!(!stale.relayed, "{}", stale.got);
    let data = &stale.got["error"]["data"];
    assert_eq!(data["reason"], "InvalidSignature", "{}", stale.got);
    assert!(
        data["detail"]
            .as_str()
            .unwrap()
            .contains("stale: the owner signed it for nonce 1"),
        "{}",
        stale.got
    );
}
