//! Every recorded operation replayed in order through opgate, in front of a fake bundler that
//! answers what the real bundler answered, with the clock pinned to the recording time: opgate
//! must refuse exactly the ops the chain refused for policy reasons — naming the policy — and relay
//! the rest. Runs against the in-memory store and against Redis.
//!
//! opgate's guardrails go beyond the chain in one place these vectors reach: a session key's
//! delegatecall whose inner calls nothing checks (`delegatecall-enable-deploy` delegatecalls a
//! contract that is neither simulated nor a declared delegate). To compare with the chain alone,
//! the replay runs under an operator policy that relaxes exactly that guardrail; the adversarial
//! replay (`adversarial_vectors`) covers the guardrail itself.

use std::sync::{Arc, Mutex};

use opgate::clock::ManualClock;
use opgate::config::{Config, Overrides};
use serde_json::Value;

use crate::support::{call, vector, FakeBundler, Opgate};

/// The policy (and rule prefix) opgate must name for a vector refused at the bundler.
fn expected_policy(v: &Value) -> (String, Option<String>) {
    let err = &v["result"]["bundlerError"];
    let decoded = err["revertDecoded"].as_str().unwrap_or("");
    let aa = err["aaCode"].as_str().unwrap_or("");
    if let Some(i) = decoded.strip_prefix("PolicyFailed(").and_then(|r| r.strip_suffix(')')) {
        let i: usize = i.parse().unwrap();
        let ty = v["session"]["policies"][i]["type"].as_str().unwrap();
        return (format!("session:{ty}"), Some(format!("policies[{i}]")));
    }
    if aa == "AA22" {
        return ("session:timestamp".into(), None);
    }
    match decoded {
        "InvalidCallData()" | "CallViolatesParamRule()" | "CallViolatesValueRule()" | "CallViolatesTargetRule()" => {
            ("session:call".into(), None)
        }
        other => panic!("{}: no mapping for bundler error {other} / {aa}", v["name"]),
    }
}

async fn replay(store_toml: &str) {
    let index = vector("index");
    let recorded_at = index["recordedAt"].as_u64().unwrap();
    let answer: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let bundler = FakeBundler::replaying(answer.clone()).await;
    let toml = format!(
        "{store_toml}\n[[chains]]\nid = 31337\nupstreams = [\"{}\"]\n\n[[policies]]\nname = \"chain-only\"\n\
         allow_undeclared_delegatecalls = true\n",
        bundler.url()
    );
    let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
    let clock = Arc::new(ManualClock::new(recorded_at));
    let opgate = Opgate::start_with_clock(config, clock).await;

    let mut checked = 0;
    for entry in index["vectors"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let v = vector(name);
        let mut response: Value = v["rpcResponse"].clone();
        response["id"] = Value::String("{id}".into());
        *answer.lock().unwrap() = response.to_string().replace("\"{id}\"", "{id}");
        let before = bundler.received().len();
        let params = serde_json::to_string(&v["rpcRequest"].as_str().map_or_else(
            || v["rpcRequest"]["params"].clone(),
            |s| serde_json::from_str::<Value>(s).unwrap()["params"].clone(),
        ))
        .unwrap();
        let got = call(&opgate.url("/31337"), "eth_sendUserOperation", &params).await;
        let relayed = bundler.received().len() > before;
        let outcome = v["result"]["outcome"].as_str().unwrap();
        let stage = v["result"]["stage"].as_str().unwrap_or("");
        if outcome == "reject" && stage == "bundler" {
            assert!(
                !relayed,
                "{name}: the chain refused it for a policy reason, yet opgate relayed it: {got}"
            );
            let (policy, rule) = expected_policy(&v);
            let data = &got["error"]["data"];
            assert_eq!(data["policy"], policy, "{name}: {got}");
            if let Some(rule) = rule {
                assert!(data["rule"].as_str().unwrap().starts_with(&rule), "{name}: {got}");
            }
            assert!(
                data["reason"].is_string() && data["detail"].is_string(),
                "{name}: {got}"
            );
        } else {
            assert!(
                relayed,
                "{name}: the chain accepted it (or failed it only in execution), yet opgate refused: {got}"
            );
            assert_eq!(got.get("result"), v["rpcResponse"].get("result"), "{name}: {got}");
        }
        checked += 1;
    }
    assert_eq!(checked, index["vectors"].as_array().unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_replay_with_the_chains_verdicts_in_memory() {
    replay("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_replay_with_the_chains_verdicts_on_redis() {
    let prefix = format!("opgate-test:vectors:{}:", std::process::id());
    replay(&format!(
        "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nprefix = \"{prefix}\"\n"
    ))
    .await;
    crate::support::redis_cleanup(&prefix);
}
