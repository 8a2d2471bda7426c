//! The Grafana dashboard and the alert rules only name metrics the code exports, and select them
//! only by labels those metrics carry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use opgate::telemetry::{MethodLabel, Metrics, Outcome, Stage, UpstreamOutcome};

/// Every exported metric family with its label names.
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let metrics = Metrics::new();
    // Touch every family so that labelled ones appear in the exposition.
    let chain = metrics.chain("1", &["u".to_string()], &["acme".to_string()]);
    chain.observe_request(MethodLabel::ChainId, Outcome::Success, 1, Duration::ZERO);
    chain.failover();
    chain
        .upstream(0)
        .unwrap()
        .observe(UpstreamOutcome::RpcError, Duration::ZERO, Some(-32500));
    let decisions = metrics.decisions();
    decisions.decision("1", "rejected", "RateLimited", "p", "none");
    decisions.access_refusal("none", "Unauthorized");
    decisions.stage("1", Stage::Store, Duration::ZERO);
    decisions.reservation("1", "charged");
    decisions.store_error("reserve", "timeout");
    decisions.store_fallback("1", "allowed");
    decisions.simulation("1", "ok");
    decisions.simulation_fallback("1", "allowed");
    decisions.account_read("1", "read");
    decisions.lifecycle("1", "confirmed");
    metrics
        .registry()
        .gather()
        .iter()
        .map(|f| {
            let labels = f
                .get_metric()
                .iter()
                .flat_map(|m| m.get_label().iter().map(|l| l.name().to_string()))
                .collect();
            (f.name().to_string(), labels)
        })
        .collect()
}

/// The label names a selector `{a="x",b=~"y"}` matches on.
fn selector_labels(selector: &str) -> Vec<String> {
    selector_matchers(selector).into_iter().map(|(name, _)| name).collect()
}

/// The label names and quoted values of a selector `{a="x",b=~"y"}`.
fn selector_matchers(selector: &str) -> Vec<(String, String)> {
    let mut matchers = Vec::new();
    let mut rest = selector;
    while let Some(op) = rest.find(['=', '!']) {
        let name = rest[..op].trim().trim_start_matches(',').trim().to_string();
        // Skip the operator and the quoted value (which may hold `=`, `,` or escaped quotes).
        let Some(open) = rest[op..].find('"') else {
            matchers.push((name, String::new()));
            break;
        };
        let start = op + open + 1;
        let mut i = start;
        let bytes = rest.as_bytes();
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        matchers.push((name, rest[start..i.min(rest.len())].to_string()));
        rest = &rest[(i + 1).min(rest.len())..];
    }
    matchers
}

/// Every `opgate_*` name in `text` (histogram series reduced to their family), with the label
/// names of the selector that follows it, if any.
fn referenced(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
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
            let labels = names.entry(base.to_string()).or_default();
            if text[end..].starts_with('{') {
                if let Some(close) = text[end..].find('}') {
                    labels.extend(selector_labels(&text[end + 1..end + close]));
                }
            }
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
        // In JSON the selectors' quotes are escaped.
        let text = text.replace("\\\"", "\"");
        let names = referenced(&text);
        assert!(!names.is_empty(), "{file} names no metric");
        for (name, labels) in names {
            // Grafana panel ids and the dashboard uid use the same prefix; only metric names count.
            if name == "opgate_" || name.starts_with("opgate_overview") {
                continue;
            }
            let Some(known) = exported.get(&name) else {
                panic!(
                    "{file} uses {name}, which opgate does not export: {:?}",
                    exported.keys()
                );
            };
            for label in labels {
                assert!(
                    label == "le" || known.contains(&label),
                    "{file} selects {name} by `{label}`, which it does not carry: {known:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} metric references checked");
}

#[test]
fn the_dashboard_covers_decisions_latency_and_the_store() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    // In JSON the selectors' quotes are escaped.
    let dashboard = std::fs::read_to_string(dir.join("opgate.json"))
        .unwrap()
        .replace("\\\"", "\"");
    let alerts = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    for (text, file, needles) in [
        (
            &dashboard,
            "opgate.json",
            &[
                "sum by (reason) (rate(opgate_decisions_total",
                "sum by (policy) (rate(opgate_decisions_total",
                "opgate_stage_duration_seconds_bucket",
                "opgate_store_errors_total",
                "opgate_store_fallbacks_total",
                "sum by (result) (rate(opgate_reservations_total",
                "sum by (chain, outcome) (rate(opgate_simulations_total",
                "opgate_stage_duration_seconds_bucket{chain=~\"$chain\",stage=\"simulation\"}",
                "sum by (chain, action) (rate(opgate_simulation_fallbacks_total",
            ][..],
        ),
        (
            &alerts,
            "alerts.yml",
            &[
                "opgate_store_errors_total",
                "opgate_store_fallbacks_total",
                "opgate_decisions_total{outcome=\"rejected\"}",
                "opgate_stage_duration_seconds_bucket",
                "opgate_simulations_total{outcome=~\"timeout|error\"}",
                "opgate_stage_duration_seconds_bucket{stage=\"simulation\"}",
            ][..],
        ),
    ] {
        for needle in needles {
            assert!(text.contains(needle), "{file} has no panel or rule over `{needle}`");
        }
    }
}

/// Label values that come from a closed set in the code: a selector naming another value matches
/// nothing, silently (`stage="sim"` instead of `stage="simulation"`).
fn closed_label_values(label: &str) -> Option<Vec<&'static str>> {
    match label {
        "stage" => Some(
            [Stage::Decode, Stage::Policy, Stage::Sim, Stage::Store, Stage::Upstream]
                .iter()
                .map(|s| s.as_str())
                .collect(),
        ),
        _ => None,
    }
}

#[test]
fn dashboards_and_alerts_select_only_values_the_code_emits() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut checked = 0;
    for file in ["opgate.json", "alerts.yml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap().replace("\\\"", "\"");
        let mut rest = text.as_str();
        while let Some(pos) = rest.find("opgate_") {
            rest = &rest[pos..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest = &rest[end..];
            let Some(selector) = rest.strip_prefix('{').and_then(|s| s.split_once('}')).map(|(s, _)| s) else {
                continue;
            };
            for (label, value) in selector_matchers(selector) {
                let Some(known) = closed_label_values(&label) else {
                    continue;
                };
                for alternative in value.split('|') {
                    assert!(
                        known.contains(&alternative),
                        "{file} selects `{label}` = `{alternative}`, which the code never emits: {known:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 4, "only {checked} label values checked");
}

#[test]
fn selectors_are_read_label_by_label() {
    assert_eq!(
        selector_labels(r#"chain=~"$chain",outcome="rejected", stage!~"a|b=c,d""#),
        ["chain", "outcome", "stage"]
    );
    assert!(selector_labels("").is_empty());
    assert_eq!(
        selector_matchers(r#"stage=~"decode|policy", chain="1""#),
        [
            ("stage".to_string(), "decode|policy".to_string()),
            ("chain".to_string(), "1".to_string())
        ]
    );
    let refs = referenced(r#"rate(opgate_stage_duration_seconds_bucket{stage="store"}[5m]) + opgate_x"#);
    assert_eq!(
        refs["opgate_stage_duration_seconds"],
        BTreeSet::from(["stage".to_string()])
    );
    assert!(refs["opgate_x"].is_empty());
}
