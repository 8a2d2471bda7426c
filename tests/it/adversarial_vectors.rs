//! Every recorded attack, setup and control op of `tests/data/vectors-adversarial/` replayed in
//! order through opgate, on both recorded chains, in front of a fake bundler that answers what the
//! real bundler answered, with the clock pinned to the recording time. Each answer must be the
//! vector's `proxyShould`: `refuse` — opgate answers an error itself, naming a reason, a policy, a
//! rule and a detail, and the upstream never sees the op; `forward` — the upstream sees the op and
//! its answer comes back unchanged. Runs against the in-memory store and against Redis.

use std::path::Path;
use std::sync::{Arc, Mutex};

use opgate::clock::ManualClock;
use opgate::config::{Config, Overrides};
use serde_json::Value;

use crate::support::{call, FakeBundler, Opgate, Reply};

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

/// Replays every vector and returns one line per verdict that differs from `proxyShould`.
async fn replay(store_toml: &str) -> Vec<String> {
    let index = adversarial("index");
    let recorded_at = index["recordedAt"].as_u64().unwrap();
    let answer: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let a = answer.clone();
    let bundler = FakeBundler::start(move |r| {
        if r.method == "eth_sendUserOperation" {
            Reply::Json(a.lock().unwrap().clone())
        } else {
            Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":null}"#.into())
        }
    })
    .await;
    let mut toml = format!("{store_toml}\n{OPERATOR}\n");
    for chain in index["chains"].as_array().unwrap() {
        toml.push_str(&format!(
            "[[chains]]\nid = {}\nupstreams = [\"{}\"]\n",
            chain["chainId"],
            bundler.url()
        ));
    }
    let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
    let clock = Arc::new(ManualClock::new(recorded_at));
    let opgate = Opgate::start_with_clock(config, clock).await;

    let mut wrong = Vec::new();
    let vectors = index["vectors"].as_array().unwrap();
    for entry in vectors {
        let name = entry["name"].as_str().unwrap();
        let v = adversarial(name);
        let chain = v["chainId"].as_u64().unwrap();
        let mut response: Value = v["rpcResponse"].clone();
        response["id"] = Value::String("{id}".into());
        *answer.lock().unwrap() = response.to_string().replace("\"{id}\"", "{id}");
        let request: Value = serde_json::from_str(v["rpcRequest"].as_str().unwrap()).unwrap();
        let params = request["params"].to_string();
        let before = bundler.received().len();
        let got = call(&opgate.url(&format!("/{chain}")), "eth_sendUserOperation", &params).await;
        let relayed = bundler.received().len() > before;
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
