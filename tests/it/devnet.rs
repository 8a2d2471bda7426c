//! End to end on the project's devnet: a real client (viem + permissionless.js SimpleAccount) sends
//! UserOperations through opgate to Alto on anvil, for EntryPoint v0.6, v0.7 and v0.8, and sees
//! them mined — receipts fetched through opgate too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use opgate::config::{Config, Overrides};

use crate::support::*;

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A devnet started for this test on free ports; stopped (by its own pid files) on drop.
pub(crate) struct Devnet {
    dir: PathBuf,
    state: HashMap<String, String>,
}

impl Devnet {
    pub(crate) async fn up() -> Self {
        Self::start(false).await
    }

    /// Anvil with the EntryPoints and factories deployed, and no bundler.
    pub(crate) async fn anvil_only() -> Self {
        Self::start(true).await
    }

    async fn start(no_bundler: bool) -> Self {
        let free = || async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let (anvil_port, bundler_port) = (free().await, free().await);
        let dir = std::env::temp_dir().join(format!("opgate-devnet-{}-{anvil_port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut devnet = Self {
            dir: dir.clone(),
            state: HashMap::new(),
        };
        let out = tokio::task::spawn_blocking(move || {
            Command::new(repo().join("scripts/devnet.sh"))
                .arg("up")
                .env("DEVNET_DIR", &dir)
                .env("DEVNET_ANVIL_PORT", anvil_port.to_string())
                .env("DEVNET_BUNDLER_PORT", bundler_port.to_string())
                .env("DEVNET_NO_BUNDLER", if no_bundler { "1" } else { "0" })
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "devnet up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(devnet.dir.join("state.env")).unwrap();
        devnet.state = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_string(),
                    v.trim().trim_matches('"').trim_matches('\'').to_string(),
                )
            })
            .collect();
        devnet
    }

    pub(crate) fn get(&self, key: &str) -> &str {
        self.state
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the devnet state"))
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/devnet.sh"))
            .arg("down")
            .env("DEVNET_DIR", &self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_gets_its_user_operations_mined_through_opgate() {
    let devnet = Devnet::up().await;
    let ov = Overrides {
        upstreams: vec![devnet.get("BUNDLER_URL").to_string()],
        chain_id: Some(31337),
        ..Default::default()
    };
    let opgate = Opgate::start(Config::from_overrides(&ov).unwrap()).await;
    let through_opgate = opgate.url("/31337");

    let mut hashes = Vec::new();
    for version in ["0.7", "0.6", "0.8"] {
        let (bundler, rpc) = (through_opgate.clone(), devnet.get("ANVIL_URL").to_string());
        let out = tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(repo().join("devnet/send-userop.mjs"))
                .args([
                    "--bundler",
                    &bundler,
                    "--rpc",
                    &rpc,
                    "--entry-point",
                    version,
                    "--timeout",
                    "90",
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "EntryPoint {version}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
        assert_eq!(line["success"], true, "EntryPoint {version}: {line}");
        hashes.push(line["userOpHash"].as_str().unwrap().to_string());
    }

    // The receipts are there through opgate as well.
    for hash in &hashes {
        let v = call(
            &through_opgate,
            "eth_getUserOperationReceipt",
            &format!(r#"["{hash}"]"#),
        )
        .await;
        assert_eq!(v["result"]["success"], true, "{v}");
        assert_eq!(
            v["result"]["userOpHash"].as_str().unwrap().to_lowercase(),
            hash.to_lowercase()
        );
    }
    let m = opgate.metrics().await;
    let sends = sample(
        &m,
        r#"opgate_requests_total{chain="31337",method="eth_sendUserOperation",outcome="success",tenant="none"}"#,
    );
    assert_eq!(sends, Some(3.0), "{m}");
    let receipts = sample(
        &m,
        r#"opgate_requests_total{chain="31337",method="eth_getUserOperationReceipt",outcome="success",tenant="none"}"#,
    );
    assert!(
        receipts.unwrap_or(0.0) >= 6.0,
        "the client polled receipts through opgate: {m}"
    );
}
