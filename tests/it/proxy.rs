//! Pass-through behaviour against a real HTTP fake bundler: what a client sees through opgate is
//! what it would see from the upstream.

use std::time::Duration;

use crate::support::*;

/// A real operation (a SimpleAccount on EntryPoint v0.8), with odd spacing between the params.
fn send_params() -> String {
    vector_params("ep08-simple-account-batch").replacen("},\"0x", "},  \"0x", 1)
}

fn methods() -> Vec<(&'static str, String)> {
    let mut m = vec![("eth_sendUserOperation", send_params())];
    m.extend(METHODS.iter().map(|(k, v)| (*k, v.to_string())));
    m
}

const METHODS: &[(&str, &str)] = &[
    (
        "eth_estimateUserOperationGas",
        r#"[{"sender":"0x01"}, "0x0000000071727De22E5E9d8BAf0edAc6f37da032", {"0x01":{"balance":"0x1"}}]"#,
    ),
    (
        "eth_getUserOperationByHash",
        r#"["0x1111111111111111111111111111111111111111111111111111111111111111"]"#,
    ),
    (
        "eth_getUserOperationReceipt",
        r#"["0x2222222222222222222222222222222222222222222222222222222222222222"]"#,
    ),
    ("eth_supportedEntryPoints", "[]"),
    ("eth_chainId", "[]"),
    ("pimlico_getUserOperationGasPrice", "[]"),
    ("zd_sponsorUserOperation", r#"[{"chainId":1}]"#),
    ("rundler_maxPriorityFeePerGas", "[]"),
    ("boost_getUserOperationGasPrice", "[]"),
    (
        "pm_getPaymasterStubData",
        r#"[{}, "0x0000000071727De22E5E9d8BAf0edAc6f37da032", "0x1", null]"#,
    ),
];

#[tokio::test]
async fn results_and_params_pass_through_byte_for_byte() {
    // Odd spacing, key order and big numbers must survive untouched.
    let result = r#"{"z":1,  "a":[ "0xABCdef", 123456789012345678901234567890, null ], "nested":{"k":"v"}}"#;
    let upstream = FakeBundler::answering(result).await;
    let opgate = Opgate::in_front_of(&[upstream.url()]).await;
    let methods = methods();
    for (method, params) in &methods {
        let body = format!(r#"{{"jsonrpc":"2.0","id":"abc-{method}","method":"{method}","params":{params}}}"#);
        let (status, text) = post(&opgate.url("/"), body).await;
        assert_eq!(status, 200, "{method}: {text}");
        assert_eq!(raw_result(&text), result, "{method}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], format!("abc-{method}"), "the client's id comes back");
    }
    let received = upstream.received();
    assert_eq!(received.len(), methods.len());
    for ((method, params), got) in methods.iter().zip(&received) {
        assert_eq!(&got.method, method);
        assert_eq!(
            got.params.as_deref(),
            Some(params.as_str()),
            "{method}: params reach the upstream unchanged"
        );
    }
}

#[tokio::test]
async fn null_results_stay_null() {
    let upstream = FakeBundler::answering("null").await;
    let opgate = Opgate::in_front_of(&[upstream.url()]).await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getUserOperationReceipt","params":["0x01"]}"#;
    let (_, text) = post(&opgate.url("/"), body).await;
    assert_eq!(raw_result(&text), "null");
}

#[tokio::test]
async fn upstream_errors_pass_through_with_code_message_and_data() {
    let cases = [
        r#"{"code":-32500,"message":"AA23 reverted 0x59d52e40","data":{"reason":"x",  "revertData":"0x59d52e40"}}"#,
        r#"{"code":-32602,"message":"Invalid params: sender","data":null}"#,
        r#"{"code":-32601,"message":"Method not found"}"#,
        r#"{"code":12345,"message":"vendor specific é ✓","data":[1,"two",{"3":3}]}"#,
    ];
    for error in cases {
        let upstream =
            FakeBundler::start(move |_| Reply::Json(format!(r#"{{"jsonrpc":"2.0","id":{{id}},"error":{error}}}"#)))
                .await;
        let opgate = Opgate::in_front_of(&[upstream.url()]).await;
        for method in [
            "eth_sendUserOperation",
            "eth_estimateUserOperationGas",
            "pimlico_getUserOperationGasPrice",
        ] {
            let params = if method == "eth_sendUserOperation" {
                vector_params("ep08-simple-account-batch")
            } else {
                "[]".to_string()
            };
            let v = call(&opgate.url("/"), method, &params).await;
            let want: serde_json::Value = serde_json::from_str(error).unwrap();
            assert_eq!(v["error"], want, "{method}");
            assert!(v.get("result").is_none());
        }
    }
}

#[tokio::test]
async fn error_data_bytes_are_preserved() {
    let upstream = FakeBundler::start(|_| {
        Reply::Json(
            r#"{"jsonrpc":"2.0","id":{id},"error":{"code":-32521,"message":"reverted","data":{"b":2,  "a":1}}}"#.into(),
        )
    })
    .await;
    let opgate = Opgate::in_front_of(&[upstream.url()]).await;
    let (_, text) = post(
        &opgate.url("/"),
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_estimateUserOperationGas","params":[]}"#,
    )
    .await;
    assert!(text.contains(r#""data":{"b":2,  "a":1}"#), "{text}");
}

#[tokio::test]
async fn batches_answer_every_call_in_order() {
    let upstream =
        FakeBundler::start(|r| Reply::Json(format!(r#"{{"jsonrpc":"2.0","id":{{id}},"result":"{}"}}"#, r.method)))
            .await;
    let opgate = Opgate::in_front_of(&[upstream.url()]).await;
    let (op_a, op_b) = (
        vector_params("ep08-simple-account-batch"),
        vector_params("ep08-simple-account-deploy"),
    );
    let body = format!(
        r#"[
        {{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}},
        {{"jsonrpc":"2.0","id":"two","method":"debug_bundler_clearState","params":[]}},
        {{"jsonrpc":"2.0","id":3,"method":"eth_sendUserOperation","params":{op_a}}},
        {{"jsonrpc":"2.0","id":4,"method":"pimlico_getUserOperationGasPrice","params":[]}},
        {{"jsonrpc":"2.0","id":5,"method":"eth_sendUserOperation","params":{op_b}}}
    ]"#
    );
    let (status, text) = post(&opgate.url("/"), body).await;
    assert_eq!(status, 200);
    let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(v.len(), 5);
    assert_eq!(v[0]["id"], 1);
    assert_eq!(v[0]["result"], "eth_chainId");
    assert_eq!(v[1]["id"], "two");
    assert_eq!(v[1]["error"]["code"], -32601, "a batch cannot smuggle a denied method");
    assert_eq!(v[2]["result"], "eth_sendUserOperation");
    assert_eq!(v[3]["result"], "pimlico_getUserOperationGasPrice");
    assert_eq!(v[4]["id"], 5);
    let sends: Vec<_> = upstream
        .received()
        .into_iter()
        .filter(|r| r.method == "eth_sendUserOperation")
        .map(|r| r.params)
        .collect();
    assert_eq!(sends, vec![Some(op_a), Some(op_b)]);
    assert!(!upstream.received().iter().any(|r| r.method.starts_with("debug_")));
}

#[tokio::test]
async fn batch_size_is_limited() {
    let upstream = FakeBundler::answering("1").await;
    let opgate = Opgate::start_toml(&format!(
        "[server]\nmax_batch = 2\n[[chains]]\nid = 1\nupstreams = [\"{}\"]\n",
        upstream.url()
    ))
    .await;
    let one = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    let (_, text) = post(&opgate.url("/"), format!("[{one},{one},{one}]")).await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], -32010, "{text}");
    assert!(upstream.received().is_empty());
    let (_, text) = post(&opgate.url("/"), format!("[{one},{one}]")).await;
    assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap().len(), 2);
}

#[tokio::test]
async fn allow_list_governs_pass_through() {
    let upstream = FakeBundler::answering("true").await;
    let opgate = Opgate::in_front_of(&[upstream.url()]).await;
    for method in [
        "debug_bundler_clearState",
        "eth_sendRawTransaction",
        "admin_peers",
        "web3_clientVersion",
    ] {
        let v = call(&opgate.url("/"), method, "[]").await;
        assert_eq!(v["error"]["code"], -32601, "{method}");
        assert!(v["error"]["message"].as_str().unwrap().contains(method));
    }
    assert!(
        upstream.received().is_empty(),
        "refused methods never reach the upstream"
    );

    let opgate = Opgate::start_toml(&format!(
        "[methods]\nallow = [\"eth_*\", \"debug_*\"]\ndeny = [\"debug_bundler_clearState\"]\n\
         [[chains]]\nid = 1\nupstreams = [\"{}\"]\n",
        upstream.url()
    ))
    .await;
    assert_eq!(
        call(&opgate.url("/"), "debug_bundler_dumpMempool", "[]").await["result"],
        true
    );
    assert_eq!(
        call(&opgate.url("/"), "debug_bundler_clearState", "[]").await["error"]["code"],
        -32601
    );
    assert_eq!(
        call(&opgate.url("/"), "pimlico_getUserOperationGasPrice", "[]").await["error"]["code"],
        -32601
    );
}

#[tokio::test]
async fn reads_fail_over_to_the_next_upstream() {
    let answering = FakeBundler::answering(r#""0x1""#).await;
    let broken_html = FakeBundler::start(|_| Reply::Status(502, "<html>bad gateway</html>".into())).await;
    let garbage = FakeBundler::start(|_| Reply::Json("this is not json".into())).await;
    let slow = FakeBundler::start(|_| {
        Reply::Delay(
            Duration::from_secs(5),
            Box::new(Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":"late"}"#.into())),
        )
    })
    .await;
    let toml = format!(
        "[[chains]]\nid = 1\nupstreams = [\"{}\", \"{}\", \"{}\", {{ url = \"{}\", timeout = \"200ms\" }}, \"{}\"]\n",
        closed_port_url().await,
        broken_html.url(),
        garbage.url(),
        slow.url(),
        answering.url()
    );
    let opgate = Opgate::start_toml(&toml).await;
    let v = call(&opgate.url("/"), "eth_getUserOperationByHash", r#"["0x01"]"#).await;
    assert_eq!(v["result"], "0x1", "{v}");
    assert_eq!(broken_html.received().len(), 1);
    assert_eq!(garbage.received().len(), 1);
    assert_eq!(slow.received().len(), 1);
    assert_eq!(answering.received().len(), 1);
    let m = opgate.metrics().await;
    assert_eq!(
        sample(&m, r#"opgate_upstream_failovers_total{chain="1"}"#),
        Some(4.0),
        "{m}"
    );
    for (upstream, outcome) in [
        ("upstream-0", "connect_error"),
        ("upstream-1", "http_error"),
        ("upstream-2", "bad_response"),
        ("upstream-3", "timeout"),
        ("upstream-4", "ok"),
    ] {
        let key = format!(r#"opgate_upstream_requests_total{{chain="1",outcome="{outcome}",upstream="{upstream}"}}"#);
        assert_eq!(sample(&m, &key), Some(1.0), "{key}\n{m}");
    }
}

#[tokio::test]
async fn a_json_rpc_error_is_an_answer_not_a_failover() {
    let first = FakeBundler::start(|_| {
        Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"error":{"code":-32602,"message":"bad"}}"#.into())
    })
    .await;
    let second = FakeBundler::answering("1").await;
    let opgate = Opgate::in_front_of(&[first.url(), second.url()]).await;
    let v = call(&opgate.url("/"), "eth_estimateUserOperationGas", "[]").await;
    assert_eq!(v["error"]["code"], -32602);
    assert!(second.received().is_empty());
}

#[tokio::test]
async fn a_send_never_reaches_a_second_upstream_once_the_first_may_have_it() {
    let slow = FakeBundler::start(|_| {
        Reply::Delay(
            Duration::from_secs(5),
            Box::new(Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":"0x1"}"#.into())),
        )
    })
    .await;
    let bad_gateway = FakeBundler::start(|_| Reply::Status(502, "bad gateway".into())).await;
    let second = FakeBundler::answering(r#""0xhash""#).await;
    for (first_url, first) in [
        (format!("{{ url = \"{}\", timeout = \"200ms\" }}", slow.url()), &slow),
        (format!("\"{}\"", bad_gateway.url()), &bad_gateway),
    ] {
        let toml = format!("[[chains]]\nid = 1\nupstreams = [{first_url}, \"{}\"]\n", second.url());
        let opgate = Opgate::start_toml(&toml).await;
        let v = call(
            &opgate.url("/"),
            "eth_sendUserOperation",
            &vector_params("ep08-simple-account-batch"),
        )
        .await;
        assert_eq!(v["error"]["code"], -32051, "{v}");
        assert_eq!(v["error"]["data"]["reason"], "UpstreamOutcomeUnknown");
        assert_eq!(v["error"]["data"]["retryable"], false);
        assert_eq!(first.received().len(), 1);
        assert!(
            !second.received().iter().any(|r| r.method == "eth_sendUserOperation"),
            "the second upstream never sees the operation"
        );
        // A read on the same chain does fail over.
        let v = call(&opgate.url("/"), "eth_getUserOperationByHash", r#"["0x01"]"#).await;
        assert_eq!(v["result"], "0xhash");
    }
}

#[tokio::test]
async fn a_send_moves_on_when_the_first_upstream_cannot_have_received_it() {
    let rate_limited = FakeBundler::start(|_| Reply::Status(429, "slow down".into())).await;
    let second = FakeBundler::answering(r#""0xhash""#).await;
    let opgate = Opgate::in_front_of(&[closed_port_url().await, rate_limited.url(), second.url()]).await;
    let v = call(
        &opgate.url("/"),
        "eth_sendUserOperation",
        &vector_params("ep08-simple-account-batch"),
    )
    .await;
    assert_eq!(v["result"], "0xhash", "{v}");
    assert_eq!(second.received().len(), 1);
}

#[tokio::test]
async fn no_upstream_answers_gives_a_clear_retryable_error() {
    let slow = FakeBundler::start(|_| {
        Reply::Delay(
            Duration::from_secs(10),
            Box::new(Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":1}"#.into())),
        )
    })
    .await;
    let toml = format!(
        "[upstream_defaults]\ntimeout = \"300ms\"\n[[chains]]\nid = 1\nupstreams = [\"{}\"]\n",
        slow.url()
    );
    let opgate = Opgate::start_toml(&toml).await;
    let started = std::time::Instant::now();
    let v = call(&opgate.url("/"), "eth_getUserOperationReceipt", r#"["0x01"]"#).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout bounds the wait"
    );
    assert_eq!(v["error"]["code"], -32050);
    assert_eq!(v["error"]["data"]["reason"], "UpstreamUnavailable");
    assert_eq!(v["error"]["data"]["retryable"], true);
    assert!(v["error"]["message"].as_str().unwrap().contains("timed out"), "{v}");

    let down = Opgate::in_front_of(&[closed_port_url().await]).await;
    let v = call(&down.url("/"), "eth_chainId", "[]").await;
    assert_eq!(v["error"]["code"], -32050);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("connection failed"),
        "{v}"
    );
    let v = call(
        &down.url("/"),
        "eth_sendUserOperation",
        &vector_params("ep08-simple-account-batch"),
    )
    .await;
    assert_eq!(
        v["error"]["code"], -32050,
        "a refused connection delivered nothing: retryable"
    );
}

#[tokio::test]
async fn upstream_urls_never_leak_to_clients() {
    let toml =
        "[[chains]]\nid = 1\nupstreams = [{ url = \"http://127.0.0.1:1/rpc?apikey=SECRET\", name = \"primary\" }]\n";
    let opgate = Opgate::start_toml(toml).await;
    let (_, text) = post(
        &opgate.url("/"),
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#,
    )
    .await;
    assert!(!text.contains("SECRET") && !text.contains("127.0.0.1:1"), "{text}");
    assert!(text.contains("primary"), "{text}");
}

#[tokio::test]
async fn request_body_is_limited() {
    let upstream = FakeBundler::answering("1").await;
    let opgate = Opgate::start_toml(&format!(
        "[server]\nmax_request_body = \"1KiB\"\n[[chains]]\nid = 1\nupstreams = [\"{}\"]\n",
        upstream.url()
    ))
    .await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendUserOperation","params":["{}"]}}"#,
        "a".repeat(2048)
    );
    let (status, text) = post(&opgate.url("/"), big).await;
    assert_eq!(status, 413, "{text}");
    assert!(upstream.received().is_empty());
    let (status, _) = post(
        &opgate.url("/"),
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn malformed_json_rpc_is_refused_by_opgate() {
    let upstream = FakeBundler::answering("1").await;
    let opgate = Opgate::in_front_of(&[upstream.url()]).await;
    let (_, text) = post(&opgate.url("/"), "{not json").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], -32700);
    let (_, text) = post(&opgate.url("/"), r#"{"jsonrpc":"2.0","id":1}"#).await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], -32600);
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn chains_are_routed_by_path() {
    let one = FakeBundler::answering(r#""one""#).await;
    let two = FakeBundler::answering(r#""two""#).await;
    let toml = format!(
        "[[chains]]\nid = 1\nupstreams = [\"{}\"]\n[[chains]]\nid = 8453\nupstreams = [\"{}\"]\n",
        one.url(),
        two.url()
    );
    let opgate = Opgate::start_toml(&toml).await;
    assert_eq!(call(&opgate.url("/1"), "eth_chainId", "[]").await["result"], "one");
    assert_eq!(call(&opgate.url("/8453"), "eth_chainId", "[]").await["result"], "two");
    assert_eq!(call(&opgate.url("/8453/"), "eth_chainId", "[]").await["result"], "two");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    assert_eq!(
        post(&opgate.url("/"), body).await.0,
        404,
        "several chains: / is ambiguous"
    );
    assert_eq!(post(&opgate.url("/10"), body).await.0, 404);
    assert_eq!(post(&opgate.url("/abc"), body).await.0, 404);

    let single = Opgate::in_front_of(&[one.url()]).await;
    assert_eq!(call(&single.url("/"), "eth_chainId", "[]").await["result"], "one");
    assert_eq!(call(&single.url("/1"), "eth_chainId", "[]").await["result"], "one");
}

#[tokio::test]
async fn health_and_readiness() {
    let upstream = FakeBundler::answering("[]").await;
    let opgate = Opgate::in_front_of(&[upstream.url()]).await;
    assert_eq!(get(&opgate.url("/healthz")).await, (200, "ok\n".to_string()));
    let (status, body) = get(&opgate.url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["chains"]["1"],
        true
    );
    assert_eq!(upstream.received()[0].method, "eth_supportedEntryPoints");
    let store = &serde_json::from_str::<serde_json::Value>(&body).unwrap()["store"];
    assert_eq!(store["backend"], "memory", "{body}");
    assert_eq!(store["ready"], true, "{body}");

    let down = Opgate::in_front_of(&[closed_port_url().await]).await;
    assert_eq!(
        get(&down.url("/healthz")).await.0,
        200,
        "alive even when the upstream is not"
    );
    let (status, body) = get(&down.url("/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["ready"],
        false
    );
}

#[tokio::test]
async fn metrics_count_requests_by_method_and_outcome() {
    let upstream = FakeBundler::start(|r| match r.method.as_str() {
        "eth_estimateUserOperationGas" => {
            Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"error":{"code":-32500,"message":"AA21"}}"#.into())
        }
        _ => Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":"0x1"}"#.into()),
    })
    .await;
    let opgate = Opgate::in_front_of(&[upstream.url()]).await;
    call(&opgate.url("/"), "eth_chainId", "[]").await;
    call(&opgate.url("/"), "eth_chainId", "[]").await;
    call(&opgate.url("/"), "eth_estimateUserOperationGas", "[]").await;
    call(&opgate.url("/"), "eth_sendUserOperation", &send_params()).await;
    call(&opgate.url("/"), "not_a_method_0x1234", "[]").await;
    let m = opgate.metrics().await;
    let count = |method: &str, outcome: &str| {
        sample(
            &m,
            &format!(r#"opgate_requests_total{{chain="1",method="{method}",outcome="{outcome}",tenant="none"}}"#),
        )
    };
    assert_eq!(count("eth_chainId", "success"), Some(2.0), "{m}");
    assert_eq!(count("eth_estimateUserOperationGas", "upstream_rpc_error"), Some(1.0));
    assert_eq!(count("eth_sendUserOperation", "success"), Some(1.0));
    assert_eq!(count("other", "rejected"), Some(1.0));
    assert!(
        !m.contains("not_a_method_0x1234"),
        "client-sent names never become labels"
    );
    assert_eq!(
        sample(&m, r#"opgate_upstream_rpc_errors_total{chain="1",code="-32500"}"#),
        Some(1.0)
    );
    assert!(m.contains(r#"opgate_request_duration_seconds_bucket{chain="1",method="eth_chainId",le="0.001"}"#));
    assert_eq!(sample(&m, r#"opgate_requests_in_flight{chain="1"}"#), Some(0.0));
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let slow = FakeBundler::start(|_| {
        Reply::Delay(
            Duration::from_millis(700),
            Box::new(Reply::Json(r#"{"jsonrpc":"2.0","id":{id},"result":"done"}"#.into())),
        )
    })
    .await;
    let mut opgate = Opgate::in_front_of(&[slow.url()]).await;
    let url = opgate.url("/");
    let in_flight = tokio::spawn(async move { call(&url, "eth_getUserOperationReceipt", r#"["0x01"]"#).await });
    // Wait until the request has reached the upstream, then ask opgate to stop.
    for _ in 0..200 {
        if !slow.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slow.received().len(), 1);
    let stopped = opgate.shutdown();
    assert_eq!(in_flight.await.unwrap()["result"], "done");
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("opgate stops")
        .unwrap();
    // The listener is closed: new connections are refused.
    let refused = tokio::net::TcpStream::connect(opgate.addr).await;
    assert!(refused.is_err());
}

/// Every answer a client can get is JSON-RPC, with the code and HTTP status the README's error
/// table lists: a body that is not JSON or not JSON-RPC, an oversized body, a missing content
/// type, an unknown chain path and a GET.
#[tokio::test]
async fn every_answer_is_json_rpc_with_the_documented_status() {
    let upstream = FakeBundler::answering("\"0x1\"").await;
    let opgate = Opgate::start_toml(&format!(
        "[[chains]]\nid = 1\nupstreams = [\"{}\"]\n[[chains]]\nid = 2\nupstreams = [\"{}\"]\n",
        upstream.url(),
        upstream.url()
    ))
    .await;
    let post = |path: &str, content_type: Option<&str>, body: &str| {
        let mut b = hyper::Request::post(opgate.url(path));
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
            .unwrap()
    };
    let chain_id = r#"{"jsonrpc":"2.0","id":3,"method":"eth_chainId","params":[]}"#;
    let cases: Vec<(&str, hyper::Request<http_body_util::Full<bytes::Bytes>>, u16, i64)> = vec![
        (
            "not JSON",
            post("/1", Some("application/json"), "{not json"),
            200,
            -32700,
        ),
        (
            "not JSON-RPC",
            post("/1", Some("application/json"), r#"{"foo":1}"#),
            200,
            -32600,
        ),
        (
            "an oversized body",
            post("/1", Some("application/json"), &"x".repeat(2 << 20)),
            413,
            -32007,
        ),
        (
            "an unknown chain path",
            post("/999", Some("application/json"), chain_id),
            404,
            -32601,
        ),
        (
            "a GET",
            hyper::Request::get(opgate.url("/1"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
            405,
            -32600,
        ),
    ];
    for (what, req, status, code) in cases {
        let (got, headers, text) = request(req).await;
        assert_eq!(got, status, "{what}: {text}");
        assert!(
            headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json")),
            "{what}: {headers:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert_eq!(v["jsonrpc"], "2.0", "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
    }
    // A missing or other content type is read as JSON: the call is answered.
    for ct in [None, Some("text/plain")] {
        let (got, _, text) = request(post("/1", ct, chain_id)).await;
        assert_eq!(got, 200, "{ct:?}: {text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["result"],
            "0x1"
        );
    }
}

/// An upstream's error answer is an answer, whatever its HTTP status: Alto answers some calls
/// with HTTP 500 and an error without a code. It reaches the client (the code filled with
/// -32603, the message kept), a read does not fail over, and a refused send is not charged.
#[tokio::test]
async fn an_upstream_error_answer_with_http_500_is_passed_through() {
    let upstream =
        FakeBundler::start(|_| Reply::Status(500, r#"{"error":{"message":"no userOps in mempool"}}"#.into())).await;
    let second = FakeBundler::answering("\"0x1\"").await;
    let opgate = Opgate::in_front_of(&[upstream.url(), second.url()]).await;
    let got = call(&opgate.url("/"), "eth_getUserOperationByHash", r#"["0x01"]"#).await;
    assert_eq!(got["error"]["code"], -32603, "{got}");
    assert_eq!(got["error"]["message"], "no userOps in mempool", "{got}");
    assert!(second.received().is_empty(), "an answer is not a failure: no failover");
    let got = call(&opgate.url("/"), "eth_sendUserOperation", &send_params()).await;
    assert_eq!(got["error"]["message"], "no userOps in mempool", "{got}");
    let m = opgate.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"opgate_requests_total{chain="1",method="eth_getUserOperationByHash",outcome="upstream_rpc_error",tenant="none"}"#
        ),
        Some(1.0),
        "{m}"
    );
}
