//! A devnet (anvil only: `scripts/devnet.sh up` with `DEVNET_NO_BUNDLER=1`) that a bench starts
//! in a fresh directory on a free port and that is stopped when its guard drops.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The devnet this run started: anvil only, on a free port, with a state directory of its own.
/// Dropping it stops exactly what `devnet.sh up` started there (by its pid files).
pub(crate) struct Devnet {
    dir: PathBuf,
    state: HashMap<String, String>,
}

impl Devnet {
    /// A guard for a devnet in a fresh directory; `start` brings it up.
    pub(crate) fn new(tag: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "opgate-bench-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(Self {
            dir,
            state: HashMap::new(),
        })
    }

    /// `scripts/devnet.sh up` without the bundler; reads its `state.env`.
    pub(crate) fn start(&mut self) -> Result<(), String> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.local_addr().map_err(|e| e.to_string())?.port()
        };
        let out = Command::new(repo().join("scripts/devnet.sh"))
            .arg("up")
            .env("DEVNET_DIR", &self.dir)
            .env("DEVNET_ANVIL_PORT", port.to_string())
            .env("DEVNET_NO_BUNDLER", "1")
            .output()
            .map_err(|e| format!("running scripts/devnet.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "devnet up failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = std::fs::read_to_string(self.dir.join("state.env")).map_err(|e| format!("devnet state: {e}"))?;
        self.state = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Ok(())
    }

    pub(crate) fn get(&self, key: &str) -> Result<&str, String> {
        self.state
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{key} missing from the devnet state"))
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        match Command::new(repo().join("scripts/devnet.sh"))
            .arg("down")
            .env("DEVNET_DIR", &self.dir)
            .output()
        {
            Ok(out) if out.status.success() => eprintln!("devnet stopped"),
            Ok(out) => eprintln!("devnet down failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("devnet down failed: {e}"),
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
