//! The documented example configuration is valid, and `check-config` says so.

use opgate::config::{Config, Overrides};

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml")
}

#[test]
fn example_config_parses() {
    // The example references secrets through ${ENV}; give them values.
    std::env::set_var("PIMLICO_API_KEY", "test-key");
    let config = Config::load(&example(), &Overrides::default()).expect("config/example.toml is valid");
    assert!(config.chains.len() >= 2, "the example shows several chains");
    assert!(config.chains.iter().all(|c| !c.upstreams.is_empty()));
    assert!(config.server.cors.is_some(), "the example shows CORS");
    assert!(
        config.server.requests_per_ip.is_some(),
        "the example shows a per-IP limit"
    );
    assert!(!config.tenants.is_empty(), "the example shows a tenant");
}

#[test]
fn check_config_command() {
    std::env::set_var("PIMLICO_API_KEY", "test-key");
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_opgate"))
        .args(["check-config"])
        .arg(example())
        .env("PIMLICO_API_KEY", "test-key")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // As shipped: no variable needs to be set.
    let shipped = std::process::Command::new(env!("CARGO_BIN_EXE_opgate"))
        .args(["check-config"])
        .arg(example())
        .env_remove("PIMLICO_API_KEY")
        .output()
        .unwrap();
    assert!(shipped.status.success(), "{}", String::from_utf8_lossy(&shipped.stderr));

    let dir = std::env::temp_dir().join(format!("opgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[chains]]\nid = 1\nupstreams = [{ url = \"http://a\", timeuot = \"1s\" }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_opgate"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timeuot"), "the error names the key: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_config_parses() {
    // scripts/demo.sh sets these from the devnet's state and for its own run.
    for (name, value) in [
        ("BUNDLER_URL", "http://127.0.0.1:14337"),
        ("DEMO_REDIS_URL", "redis://127.0.0.1:6379"),
        ("DEMO_STORE_PREFIX", "opgate-demo-test:"),
        ("DEMO_ADMIN_PORT", "29465"),
        ("DEMO_ADMIN_TOKEN", "demo-0123456789abcdef"),
    ] {
        std::env::set_var(name, value);
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = Config::load(&path, &Overrides::default()).expect("config/demo.toml is valid");
    assert_eq!(config.chains.len(), 1);
    assert_eq!(config.chains[0].id, Some(31337), "the devnet's chain");
    let names: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["one-op-per-account", "gas-cap"],
        "scripts/demo.sh expects these"
    );
    assert!(config.admin.listen.is_some(), "the demo revokes through the admin API");
    // DEMO_STORE=redis rewrites exactly this line.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().filter(|l| *l == r#"backend = "memory""#).count(), 1);
}

#[test]
fn compose_config_parses_with_the_compose_flags() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/compose.toml");
    let ov = Overrides {
        upstreams: vec!["http://127.0.0.1:3000".into()],
        chain_id: Some(1),
        ..Default::default()
    };
    let config = Config::load(&path, &ov).expect("config/compose.toml is valid with the compose flags");
    assert_eq!(config.chains.len(), 1);
    assert_eq!(config.tenants.len(), 1, "the compose config has a tenant");
    assert_eq!(config.policies.len(), 1, "the compose config has a policy");
    assert!(matches!(
        config.store.backend,
        opgate::config::StoreBackend::Redis { .. }
    ));
}
