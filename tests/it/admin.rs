//! The admin API: registering a serialized permission account so that default-mode ops of a
//! permission opgate never saw enabled are checked; revoking a session key on every replica.

use std::sync::Arc;

use opgate::clock::ManualClock;
use opgate::config::{Config, Overrides};
use serde_json::json;
use tokio::net::TcpListener;

use crate::support::*;

const TOKEN: &str = "test-admin-token-0123456789";

async fn replica(prefix: &str, upstream: &FakeBundler) -> (Opgate, String) {
    let toml = format!(
        "[store]\nbackend = \"redis\"\nprefix = \"{prefix}\"\n[admin]\ntoken = \"{TOKEN}\"\n[[chains]]\nid = 31337\nupstreams = [\"{}\"]\n",
        upstream.url()
    );
    let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    let clock = Arc::new(ManualClock::new(1_795_283_914));
    (Opgate::start_full(config, clock, Some(admin)).await, admin_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_permissions_are_enforced_and_revocations_reach_every_replica() {
    let upstream = FakeBundler::answering(r#""0x01""#).await;
    let prefix = format!("opgate-test:admin:{}:", std::process::id());
    let (a, admin_a) = replica(&prefix, &upstream).await;
    let (b, _) = replica(&prefix, &upstream).await;
    let v = vector("call-equal-regular-k031");
    let params = vector_params("call-equal-regular-k031");

    let got = call(&a.url("/31337"), "eth_sendUserOperation", &params).await;
    assert_eq!(got["error"]["data"]["reason"], "UnknownPermission", "{got}");

    let (status, body) = admin("GET", &format!("{admin_a}/v1/revocations"), "wrong", None).await;
    assert_eq!(status, 401, "{body}");
    let serialized = v["session"]["serializedPermissionAccount"].as_str().unwrap();
    let signer = v["session"]["sessionKeyAddress"].as_str().unwrap();
    let (status, body) = admin(
        "POST",
        &format!("{admin_a}/v1/permissions"),
        TOKEN,
        Some(json!({ "chainId": 31337, "serialized": serialized })),
    )
    .await;
    assert_eq!(status, 400, "the blob does not carry the session key: {body}");
    let wrong = "0x000000000000000000000000000000000000dEaD";
    let (status, body) = admin(
        "POST",
        &format!("{admin_a}/v1/permissions"),
        TOKEN,
        Some(json!({ "chainId": 31337, "serialized": serialized, "signer": wrong })),
    )
    .await;
    assert_eq!(
        status, 400,
        "a signer the permission id was not derived with is refused: {body}"
    );
    let (status, body) = admin(
        "POST",
        &format!("{admin_a}/v1/permissions"),
        TOKEN,
        Some(json!({ "chainId": 31337, "serialized": serialized, "signer": signer })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["permissionId"], v["session"]["permissionId"]);

    // Replica b learns of the registration through the shared store.
    let got = call(&b.url("/31337"), "eth_sendUserOperation", &params).await;
    assert_eq!(got["result"], "0x01", "{got}");

    // A violating op of the same permission is now refused by its own CallPolicy.
    let violation = vector_params("call-equal-violation-recipient-k031");
    let got = call(&b.url("/31337"), "eth_sendUserOperation", &violation).await;
    assert_eq!(got["error"]["data"]["policy"], "session:call", "{got}");

    let (status, body) = admin(
        "POST",
        &format!("{admin_a}/v1/revocations"),
        TOKEN,
        Some(json!({ "signer": signer })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = call(&b.url("/31337"), "eth_sendUserOperation", &params).await;
    assert_eq!(
        got["error"]["code"], -32504,
        "revoked on the other replica at once: {got}"
    );
    assert_eq!(got["error"]["data"]["reason"], "Revoked", "{got}");
    let subject = body["revoked"].as_str().unwrap().to_string();
    let (status, list) = admin("GET", &format!("{admin_a}/v1/revocations"), TOKEN, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["revoked"][0]["subject"], subject.as_str(), "{list}");
    let (status, _) = admin("DELETE", &format!("{admin_a}/v1/revocations/{subject}"), TOKEN, None).await;
    assert_eq!(status, 200);
    let got = call(&b.url("/31337"), "eth_sendUserOperation", &params).await;
    assert_eq!(got["result"], "0x01", "{got}");
    redis_cleanup(&prefix);
}
