//! The Grafana dashboard and the alert rules only name metrics the code exports.

use std::collections::BTreeSet;

use opgate::telemetry::{MethodLabel, Metrics, Outcome, UpstreamOutcome};

fn exported() -> BTreeSet<String> {
    let metrics = Metrics::new();
    // Touch every family so that labelled ones appear in the exposition.
    let chain = metrics.chain("1", &["u".to_string()]);
    chain.observe_request(MethodLabel::ChainId, Outcome::Success, std::time::Duration::ZERO);
    chain.failover();
    chain
        .upstream(0)
        .unwrap()
        .observe(UpstreamOutcome::RpcError, std::time::Duration::ZERO, Some(-32500));
    metrics
        .registry()
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect()
}

fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("opgate_") {
        let start = i + pos;
        let before_ok = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        i = end;
    }
    names
}

#[test]
fn dashboards_and_alerts_name_only_exported_metrics() {
    let exported = exported();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut checked = 0;
    for file in ["opgate.json", "alerts.yml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        if file.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text).expect("the dashboard is valid JSON");
        }
        let names = referenced(&text);
        assert!(!names.is_empty(), "{file} names no metric");
        for name in names {
            // Grafana panel ids and the dashboard uid use the same prefix; only metric names count.
            if name == "opgate_" || name.starts_with("opgate_overview") {
                continue;
            }
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which opgate does not export: {exported:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} metric references checked");
}
