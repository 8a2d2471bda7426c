//! The `opgate` binary itself: the README's serve command (embedded defaults, only `--upstream`)
//! and graceful shutdown on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn serve_with_only_an_upstream_then_drain_on_sigterm() {
    let upstream = FakeBundler::start(|r| {
        let result = if r.method == "eth_chainId" {
            r#""0x7a69""#
        } else {
            r#""done""#
        };
        let json = format!(r#"{{"jsonrpc":"2.0","id":{{id}},"result":{result}}}"#);
        if r.method == "eth_getUserOperationReceipt" {
            Reply::Delay(Duration::from_millis(800), Box::new(Reply::Json(json)))
        } else {
            Reply::Json(json)
        }
    })
    .await;
    let (port, metrics_port) = (free_port().await, free_port().await);
    let child = Command::new(env!("CARGO_BIN_EXE_opgate"))
        .args(["serve", "--upstream", &upstream.url()])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    wait_healthy(port).await;
    // `opgate health` (the container's health check) agrees, and fails on a closed port.
    let health = |url: String| async move {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_opgate"))
                .args(["health", "--url", &url])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let ok = health(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let closed = closed_port_url().await;
    let down = health(format!("{}healthz", closed)).await;
    assert!(!down.status.success());

    // Without --chain-id, opgate asks the upstream (after it binds its listener, so wait for it)
    // and serves the chain at / and /31337.
    for _ in 0..200 {
        if !upstream.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        upstream.received().first().map(|r| r.method.clone()).as_deref(),
        Some("eth_chainId")
    );
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        call(&format!("{base}/31337"), "eth_chainId", "[]").await["result"],
        "0x7a69"
    );
    let (status, metrics) = get(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics
        .contains(r#"opgate_requests_total{chain="31337",method="eth_chainId",outcome="success",tenant="none"} 1"#));

    let url = format!("{base}/");
    let in_flight = tokio::spawn(async move { call(&url, "eth_getUserOperationReceipt", r#"["0x01"]"#).await });
    for _ in 0..200 {
        if upstream
            .received()
            .iter()
            .any(|r| r.method == "eth_getUserOperationReceipt")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(
        in_flight.await.unwrap()["result"],
        "done",
        "the in-flight request finishes"
    );
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.expect("opgate exits after SIGTERM").success());
}

#[test]
fn a_bad_flag_or_config_is_a_one_line_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_opgate"))
        .args(["serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--upstream"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_opgate"))
        .args(["serve", "--upstream", "ftp://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream[0].url"));
}
