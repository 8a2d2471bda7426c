//! A real browser: a dapp page (viem + permissionless.js, bundled from npm now with esbuild) in
//! Debian's headless Chromium, driven by playwright-core, sends a SimpleAccount UserOperation
//! through opgate — CORS on, a tenant key in the URL — to Alto on the devnet and sees it mined.
//! The same page without the key gets the 401 answer, and from an origin opgate does not allow
//! it gets a CORS failure. The page is served on 127.0.0.1 by this test, which also passes the
//! page's chain reads (`/rpc`) to anvil.
//!
//! Needs `chromium` (`apt-get install chromium`; `.ci/run` installs it) and the `browser/` npm
//! packages (installed here with `npm ci` when missing).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::devnet::{repo, Devnet};
use crate::support::*;

const KEY: &str = "browser-dapp-key-0123456789";

fn browser_dir() -> PathBuf {
    repo().join("browser")
}

/// `npm ci` in `browser/` when its packages are missing.
fn install() {
    let dir = browser_dir();
    if dir.join("node_modules/playwright-core/package.json").exists() && dir.join("node_modules/esbuild").exists() {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .expect("npm runs");
    assert!(
        out.status.success(),
        "npm ci in browser/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serves `dir`'s files and passes `POST /rpc` to `node`, on 127.0.0.1.
async fn serve_page(dir: PathBuf, node: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (dir, node) = (dir.clone(), node.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (dir, node) = (dir.clone(), node.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        let response = if path == "/rpc" {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                            let forwarded = hyper::Request::post(&node)
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap();
                            match client.request(forwarded).await {
                                Ok(r) => {
                                    let body = r.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(body))
                                        .unwrap()
                                }
                                Err(_) => hyper::Response::builder()
                                    .status(502)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            }
                        } else {
                            let (file, kind) = match path.as_str() {
                                "/" => ("index.html", "text/html"),
                                "/bundle.js" => ("bundle.js", "text/javascript"),
                                _ => ("", ""),
                            };
                            match std::fs::read(dir.join(file)).ok().filter(|_| !file.is_empty()) {
                                Some(bytes) => hyper::Response::builder()
                                    .header("content-type", kind)
                                    .body(Full::new(Bytes::from(bytes)))
                                    .unwrap(),
                                None => hyper::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            }
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

/// Opens `url` in headless Chromium and returns the page's outcome.
async fn open(url: String) -> Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(browser_dir().join("drive.mjs"))
            .arg(&url)
            .arg("150")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "drive.mjs: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn page_url(host: &str, port: u16, bundler: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(bundler.as_bytes()).collect();
    format!("http://{host}:{port}/?bundler={encoded}&chain=31337")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dapp_page_in_a_real_browser_gets_its_operation_mined_through_opgate() {
    assert!(
        Path::new(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())).exists(),
        "Chromium is needed (apt-get install chromium)"
    );
    tokio::task::spawn_blocking(install).await.unwrap();
    let out_dir = std::env::temp_dir().join(format!("opgate-browser-{}", std::process::id()));
    let built = Command::new("node")
        .arg(browser_dir().join("build.mjs"))
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let devnet = Devnet::up().await;
    let page_port = serve_page(out_dir.clone(), devnet.get("ANVIL_URL").to_string()).await;
    let opgate = Opgate::start_toml(&format!(
        "[server.cors]\nallowed_origins = [\"http://127.0.0.1:*\"]\n[[tenants]]\nname = \"dapp\"\nkeys = \
         [\"{KEY}\"]\n[[chains]]\nid = 31337\nupstreams = [\"{}\"]\n",
        devnet.get("BUNDLER_URL")
    ))
    .await;

    let with_key = opgate.url(&format!("/31337?apikey={KEY}"));
    let got = open(page_url("127.0.0.1", page_port, &with_key)).await;
    assert_eq!(got["ok"], true, "the page's operation: {got}");
    assert_eq!(got["success"], true, "mined and successful: {got}");

    let without_key = opgate.url("/31337");
    let got = open(page_url("127.0.0.1", page_port, &without_key)).await;
    assert_eq!(got["ok"], false, "{got}");
    let text = got.to_string();
    assert!(
        got["status"] == 401 || text.contains("401"),
        "without a key the page gets the 401 answer: {got}"
    );

    // localhost is another origin than 127.0.0.1: the preflight is refused, the browser blocks.
    let got = open(page_url("localhost", page_port, &with_key)).await;
    assert_eq!(got["ok"], false, "{got}");
    let blocked = got["failed"].as_array().is_some_and(|f| {
        f.iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains(&opgate.url("/31337"))))
    });
    assert!(blocked, "the browser blocked the cross-origin call to opgate: {got}");
    let metrics = opgate.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "opgate_requests_total{chain=\"31337\",method=\"eth_sendUserOperation\",outcome=\"success\",tenant=\"dapp\"}"
        ),
        Some(1.0),
        "one send, from the allowed origin with the key: {metrics}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}
