//! `maas-usage rules` prints a Prometheus rule file for a spec that `promtool check rules`
//! accepts, whose every alert has a `promtool test rules` unit test (tests/promtool/) that fires
//! it on the series it is about and keeps it quiet otherwise; its names are the ones the outputs
//! write (plugin.yaml), and a bad spec is a located error, exit 2.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules_for(spec: &Path, extra: &[&str]) -> String {
    let out = bin()
        .arg("rules")
        .arg("--spec")
        .arg(spec)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
}

/// `promtool ARGS` in `dir`: its output, or `None` when it is not installed (a failure when
/// MAAS_USAGE_REQUIRE_PROMTOOL is set, as in CI).
pub fn promtool(dir: &Path, args: &[&str]) -> Option<std::process::Output> {
    match std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(o) => Some(o),
        Err(_) => {
            assert!(
                std::env::var("MAAS_USAGE_REQUIRE_PROMTOOL").is_err(),
                "promtool is required but not on PATH"
            );
            eprintln!("skipped promtool: not on PATH");
            None
        }
    }
}

fn alerts_of(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_rules_pass_promtool_and_each_alert_its_unit_test() {
    let spec = root().join("tests/testdata/rules/spec.yaml");
    let rules = rules_for(&spec, &["--interval", "60s"]);
    insta::assert_snapshot!("rules", rules);
    let dir = tempdir();
    std::fs::write(dir.join("rules.yml"), &rules).unwrap();
    let tests = std::fs::read_to_string(root().join("tests/promtool/alerts_test.yml")).unwrap();
    std::fs::write(dir.join("alerts_test.yml"), &tests).unwrap();
    // Every alert of the file has a test, and every test is of an alert of the file.
    let tested: BTreeSet<String> = tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("alertname: "))
        .map(str::to_string)
        .collect();
    assert_eq!(tested, alerts_of(&rules));
    assert_eq!(tested.len(), 8, "{tested:?}");
    let Some(check) = promtool(&dir, &["check", "rules", "rules.yml"]) else {
        return;
    };
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    let unit = promtool(&dir, &["test", "rules", "alerts_test.yml"]).unwrap();
    assert!(unit.status.success(), "{}{}", stdout(&unit), stderr(&unit));
    // The unit tests can fail: a threshold moved makes one.
    std::fs::write(dir.join("rules.yml"), rules.replace("> 0.05", "> 0.5")).unwrap();
    let broken = promtool(&dir, &["test", "rules", "alerts_test.yml"]).unwrap();
    assert!(!broken.status.success(), "{}", stdout(&broken));
}

#[test]
fn the_rules_read_the_names_plugin_yaml_declares() {
    let m = maas_usage::manifest::load().unwrap();
    let rules = rules_for(&root().join("tests/testdata/rules/spec.yaml"), &[]);
    let declared: BTreeSet<String> = m
        .collector_metrics
        .iter()
        .filter_map(|c| c.prometheus.clone())
        .chain(m.model_metrics.iter().map(|x| x.prometheus.clone()))
        .chain(
            m.spend_metrics
                .iter()
                .flat_map(|s| s.fields.iter().map(|f| f.prometheus.clone())),
        )
        .collect();
    let mut used = BTreeSet::new();
    for l in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
    {
        for word in l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("maas_") && !word.ends_with("_label") {
                used.insert(word.to_string());
            }
        }
    }
    // Labels are words too: keep the metric names.
    let labels = ["maas_outcome", "maas_query", "maas_model"];
    used.retain(|w| !labels.contains(&w.as_str()));
    let undeclared: Vec<_> = used.difference(&declared).collect();
    assert!(undeclared.is_empty(), "{undeclared:?}");
    assert!(used.len() >= 8, "{used:?}");
}

#[test]
fn a_spec_without_cloud_eye_or_budgets_gets_the_collector_rules() {
    let spec = spec_file(&statistics_only(
        &std::fs::read_to_string(root().join("examples/spec.yaml")).unwrap(),
    ));
    let rules = rules_for(&spec, &["--interval", "5m"]);
    assert_eq!(
        alerts_of(&rules),
        [
            "MaasCollectorSeriesFailed",
            "MaasCollectorStale",
            "MaasCollectorThrottled"
        ]
        .map(String::from)
        .into()
    );
    assert!(rules.contains("> 600\""), "two intervals of 5m: {rules}");
}

#[test]
fn a_bad_spec_is_a_located_error() {
    let spec =
        spec_file("apiVersion: maas-usage/v1\nqueries: [{name: q}]\nalerts:\n  error_ratio: 2\n");
    let out = bin()
        .arg("rules")
        .arg("--spec")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("spec.yaml:4:16: alerts.error_ratio"),
        "{}",
        stderr(&out)
    );
    let out = bin()
        .args(["rules", "--spec", "x.yaml", "--interval", "0s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
