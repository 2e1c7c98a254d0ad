//! `maas-usage dashboard` prints a Grafana dashboard whose every panel expression is valid
//! PromQL and, with a real Prometheus scraping `serve` against the simulator, returns data
//! (every panel: the cost per model and per team, and the budgets, included); it reads the
//! names plugin.yaml declares and has the data source, query, model and key group variables.

use crate::common;

use common::prometheus::Prometheus;
use common::serving::Serve;
use common::*;

fn dashboard(spec: &std::path::Path) -> serde_json::Value {
    let out = bin()
        .arg("dashboard")
        .arg("--spec")
        .arg(spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json(&out)
}

/// (panel title, expression with the variables at "All").
fn expressions(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let mut e = t["expr"].as_str().unwrap().to_string();
            for v in ["query", "model", "key_group"] {
                e = e.replace(&format!("${v}"), ".*");
            }
            out.push((p["title"].as_str().unwrap().to_string(), e));
        }
    }
    out
}

#[test]
fn every_panel_is_valid_promql_and_returns_data_from_a_real_prometheus() {
    let sim = sim();
    let spec = fixture_for(&sim, "dashboard/serve.yaml", &[]);
    let d = dashboard(&spec);
    insta::assert_json_snapshot!("dashboard", d);
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "query", "model", "key_group"]);
    let state = tempdir().join("state");
    let serve = Serve::start(&spec, &state, "60s");
    serve.wait_for("/healthz", 200);
    let Some(prom) = Prometheus::start(&serve.addr) else {
        serve.stop();
        return;
    };
    prom.wait_for("maas_collector_last_success_timestamp_seconds");
    prom.wait_for("maas_model_requests");
    let mut empty = Vec::new();
    for (title, expr) in expressions(&d) {
        let v = prom.query(&expr);
        assert_eq!(v["status"], "success", "{title}: {expr}: {v}");
        let has_data = v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        if !has_data {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "panels without data: {empty:#?}");
    // The check can fail: an expression Prometheus refuses, and one of a name no output writes.
    assert_eq!(prom.query("sum by (")["status"], "error");
    let none = prom.query("maas_model_no_such_metric");
    assert_eq!(none["data"]["result"].as_array().map(Vec::len), Some(0));
    let (code, _) = serve.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn the_dashboard_reads_declared_names_only() {
    let m = maas_usage::manifest::load().unwrap();
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/spec.yaml");
    let d = dashboard(&spec);
    let mut declared: std::collections::BTreeSet<String> = m
        .collector_metrics
        .iter()
        .filter_map(|c| c.prometheus.clone())
        .chain(m.model_metrics.iter().map(|x| x.prometheus.clone()))
        .chain(m.model_attributes.iter().map(|a| a.prometheus.clone()))
        .collect();
    for s in &m.spend_metrics {
        declared.extend(s.fields.iter().map(|f| f.prometheus.clone()));
        declared.extend(s.attributes.iter().map(|a| a.prometheus.clone()));
    }
    declared.insert("maas_outcome".into());
    for (title, expr) in expressions(&d) {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("maas_") {
                assert!(declared.contains(word), "{title}: {word} is not declared");
            }
        }
    }
    let bad = bin()
        .args(["dashboard", "--spec", "/nonexistent/spec.yaml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).starts_with("E! "), "{}", stderr(&bad));
}
