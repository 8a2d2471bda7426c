//! API keys, tenants and request limits on the JSON-RPC listener, against a real opgate in front
//! of a fake bundler on 127.0.0.1 (and Redis where replicas share limits and keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use opgate::clock::ManualClock;
use opgate::config::{Config, Overrides};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::support::*;

const ACME_KEY: &str = "acme-key-0123456789abcdef";
const BETA_KEY: &str = "beta-key-0123456789abcdef";
const TOKEN: &str = "test-admin-token-0123456789";
const CHAIN_ID: &str = r#"{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}"#;

fn tenants_toml(extra: &str) -> String {
    format!(
        "{extra}\n[[tenants]]\nname = \"acme\"\nkeys = [\"{ACME_KEY}\"]\nchains = [1]\n\n[[tenants]]\nname = \
         \"beta\"\nkeys = [\"{BETA_KEY}\"]\n"
    )
}

async fn opgate(upstream: &FakeBundler, extra: &str) -> Opgate {
    Opgate::start_toml(&format!(
        "{}\n[[chains]]\nid = 1\nupstreams = [\"{}\"]\n[[chains]]\nid = 2\nupstreams = [\"{}\"]\n",
        tenants_toml(extra),
        upstream.url(),
        upstream.url()
    ))
    .await
}

fn post_with(url: &str, headers: &[(&str, &str)], body: &str) -> hyper::Request<Full<Bytes>> {
    let mut b = hyper::Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn relayed(upstream: &FakeBundler) -> usize {
    upstream.received().len()
}

#[tokio::test]
async fn requests_need_a_valid_key_carried_any_way_sdks_pass_it() {
    let upstream = FakeBundler::answering("\"0x1\"").await;
    let opgate = opgate(&upstream, "").await;

    let (status, _, text) = request(post_with(&opgate.url("/1"), &[], CHAIN_ID)).await;
    assert_eq!(status, 401, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["data"]["reason"], "Unauthorized", "{v}");
    assert_eq!(v["error"]["code"], -32001, "{v}");
    let wrong = "not-a-key-0123456789abcdef";
    let (status, _, text) = request(post_with(&opgate.url(&format!("/1?apikey={wrong}")), &[], CHAIN_ID)).await;
    assert_eq!(status, 401, "{text}");
    assert!(!text.contains(wrong), "a key is never echoed: {text}");
    assert_eq!(relayed(&upstream), 0, "nothing was relayed without a valid key");

    let bearer = format!("Bearer {ACME_KEY}");
    let transports: Vec<(String, Vec<(&str, &str)>)> = vec![
        (opgate.url(&format!("/1?apikey={ACME_KEY}")), vec![]),
        (opgate.url(&format!("/1/{ACME_KEY}")), vec![]),
        (opgate.url("/1"), vec![("x-api-key", ACME_KEY)]),
        (opgate.url("/1"), vec![("authorization", bearer.as_str())]),
    ];
    for (i, (url, headers)) in transports.iter().enumerate() {
        let (status, _, text) = request(post_with(url, headers, CHAIN_ID)).await;
        assert_eq!(status, 200, "transport {i}: {text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["result"],
            "0x1",
            "transport {i}"
        );
        assert_eq!(relayed(&upstream), i + 1, "transport {i} relayed");
    }

    // acme may use chain 1 only; beta every chain.
    let (status, _, text) = request(post_with(&opgate.url(&format!("/2/{ACME_KEY}")), &[], CHAIN_ID)).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("tenant acme may not use chain 2"), "{text}");
    let (status, _, _) = request(post_with(&opgate.url(&format!("/2/{BETA_KEY}")), &[], CHAIN_ID)).await;
    assert_eq!(status, 200);

    let metrics = opgate.metrics().await;
    assert!(
        !metrics.contains(ACME_KEY) && !metrics.contains(wrong),
        "keys never reach metrics"
    );
    assert_eq!(
        sample(
            &metrics,
            "opgate_requests_total{chain=\"1\",method=\"eth_chainId\",outcome=\"success\",tenant=\"acme\"}"
        ),
        Some(4.0),
        "the tenant label joins the request metrics: {metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "opgate_access_refusals_total{reason=\"Unauthorized\",tenant=\"none\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    // Health and readiness need no key.
    assert_eq!(get(&opgate.url("/healthz")).await.0, 200);
}

#[tokio::test]
async fn a_key_over_its_request_limit_gets_429_with_retry_after() {
    let upstream = FakeBundler::answering("\"0x1\"").await;
    let opgate = Opgate::start_toml(&format!(
        "[[tenants]]\nname = \"acme\"\nkeys = [\"{ACME_KEY}\"]\nrequests = {{ rate = 1, burst = 3 }}\n[[chains]]\nid = \
         1\nupstreams = [\"{}\"]\n",
        upstream.url()
    ))
    .await;
    let url = opgate.url(&format!("/1/{ACME_KEY}"));
    let mut statuses = Vec::new();
    let mut last = (0, http::HeaderMap::new(), String::new());
    for _ in 0..5 {
        last = request(post_with(&url, &[], CHAIN_ID)).await;
        statuses.push(last.0);
    }
    // A burst of 3; the next requests wait about a second each (the loop takes far less).
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert_eq!(statuses[4], 429, "{statuses:?}");
    let (_, headers, text) = last;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], -32005, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "RequestRateLimited", "{v}");
    let retry = v["error"]["data"]["retryAfter"].as_u64().unwrap();
    assert!((1..=2).contains(&retry), "{v}");
    assert_eq!(
        headers.get("retry-after").and_then(|h| h.to_str().ok()),
        Some(retry.to_string().as_str())
    );
    assert!(relayed(&upstream) <= 4, "refused requests were not relayed");
    let metrics = opgate.metrics().await;
    assert!(
        sample(
            &metrics,
            "opgate_access_refusals_total{reason=\"RequestRateLimited\",tenant=\"acme\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn client_ips_are_limited_and_forwarded_for_is_believed_only_from_trusted_proxies() {
    let upstream = FakeBundler::answering("\"0x1\"").await;
    for (trusted, separate) in [("[\"127.0.0.1\"]", true), ("[]", false)] {
        let opgate = Opgate::start_toml(&format!(
            "[server.requests_per_ip]\nrate = 1\nburst = 2\ntrusted_proxies = {trusted}\n[[chains]]\nid = 1\nupstreams = \
             [\"{}\"]\n",
            upstream.url()
        ))
        .await;
        let from = |ip: &'static str| post_with(&opgate.url("/1"), &[("x-forwarded-for", ip)], CHAIN_ID);
        assert_eq!(request(from("198.51.100.1")).await.0, 200);
        assert_eq!(request(from("198.51.100.1")).await.0, 200);
        assert_eq!(
            request(from("198.51.100.1")).await.0,
            429,
            "the third request from one client"
        );
        let other = request(from("198.51.100.2")).await.0;
        if separate {
            assert_eq!(other, 200, "another client behind the trusted proxy has its own limit");
        } else {
            assert_eq!(other, 429, "X-Forwarded-For from an untrusted peer is not believed");
        }
    }
}

#[tokio::test]
async fn operator_policies_can_match_tenants() {
    let upstream = FakeBundler::answering("\"0x1\"").await;
    let opgate = opgate(
        &upstream,
        "[[policies]]\nname = \"acme-closed\"\n[policies.match]\ntenants = [\"acme\"]\n[policies.time]\nnot_after = \
         \"2000-01-01T00:00:00Z\"\n",
    )
    .await;
    let params = vector_params("ep08-simple-account-batch");
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendUserOperation","params":{params}}}"#);
    let (_, _, text) = request(post_with(&opgate.url(&format!("/1/{ACME_KEY}")), &[], &body)).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["data"]["policy"], "acme-closed", "{v}");
    assert!(
        v["error"]["data"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("until 2000-01-01T00:00:00Z (946684800)")),
        "times read as ISO-8601 next to Unix seconds: {v}"
    );
    let (_, _, text) = request(post_with(&opgate.url(&format!("/1/{BETA_KEY}")), &[], &body)).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v.get("error").is_none(), "another tenant's policy does not apply: {v}");

    let bad = Config::from_toml(
        &format!(
            "{}\n[[chains]]\nid = 1\nupstreams = [\"http://127.0.0.1:1\"]\n",
            tenants_toml("[[policies]]\nname = \"p\"\n[policies.match]\ntenants = [\"nobody\"]\n")
        ),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("policies[0].match.tenants[0]"), "{bad}");
}

async fn replica(prefix: &str, upstream: &FakeBundler, burst: u32) -> (Opgate, String) {
    let toml = format!(
        "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nprefix = \"{prefix}\"\ntimeout = \"2s\"\n[admin]\ntoken = \
         \"{TOKEN}\"\n[[tenants]]\nname = \"acme\"\nkeys = [\"{ACME_KEY}\"]\nrequests = {{ rate = 1, burst = {burst} \
         }}\n[[chains]]\nid = 1\nupstreams = [\"{}\"]\n",
        upstream.url()
    );
    let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    (
        Opgate::start_full(config, Arc::new(ManualClock::new(1_800_000_000)), Some(admin)).await,
        admin_url,
    )
}

/// Two replicas sharing Redis admit exactly the burst of one key under concurrent load, and a key
/// added or revoked through one replica's admin API holds on both within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_request_limits_and_keys_through_redis() {
    let upstream = FakeBundler::answering("\"0x1\"").await;
    let prefix = format!("opgate-test:tenants:{}:", std::process::id());
    redis_cleanup(&prefix);
    const BURST: u32 = 10;
    let (a, admin_a) = replica(&prefix, &upstream, BURST).await;
    let (b, _) = replica(&prefix, &upstream, BURST).await;

    let started = Instant::now();
    let sends = (0..40).map(|i| {
        let url = if i % 2 == 0 { a.url("/1") } else { b.url("/1") };
        async move { request(post_with(&url, &[("x-api-key", ACME_KEY)], CHAIN_ID)).await.0 }
    });
    let statuses = futures::future::join_all(sends).await;
    let elapsed = started.elapsed();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    let refused = statuses.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!(admitted + refused, 40, "{statuses:?}");
    // GCRA at 1 request/s: the burst at once, then one more per whole second that passed.
    let allowed = u64::from(BURST) + elapsed.as_secs();
    assert!(
        admitted >= u64::from(BURST) && admitted <= allowed,
        "{admitted} admitted in {elapsed:?} (burst {BURST}): {statuses:?}"
    );
    if elapsed < Duration::from_secs(1) {
        assert_eq!(admitted, u64::from(BURST), "exactly the burst within the first second");
    }

    // A key added on one replica works on both; revoking the configured key holds on both.
    let added = "added-key-0123456789abcdef";
    let (status, body) = admin(
        "POST",
        &format!("{admin_a}/v1/tenants/acme/keys"),
        TOKEN,
        Some(json!({ "key": added })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin(
        "DELETE",
        &format!("{admin_a}/v1/tenants/acme/keys"),
        TOKEN,
        Some(json!({ "key": ACME_KEY })),
    )
    .await;
    assert_eq!((status, &body["revoked"]), (200, &json!(true)), "{body}");
    for replica in [&a, &b] {
        let mut ok = false;
        for _ in 0..40 {
            let revoked = request(post_with(&replica.url("/1"), &[("x-api-key", ACME_KEY)], CHAIN_ID))
                .await
                .0;
            let new = request(post_with(&replica.url("/1"), &[("x-api-key", added)], CHAIN_ID))
                .await
                .0;
            if revoked == 401 && new != 401 {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "the revocation and the new key reach every replica within 2 s");
    }
    let (status, body) = admin(
        "POST",
        &format!("{admin_a}/v1/tenants/nobody/keys"),
        TOKEN,
        Some(json!({ "key": added })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    redis_cleanup(&prefix);
}
