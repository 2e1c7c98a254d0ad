//! The spec's spend sections through the binary: `validate` accepts prices, budgets, alerts and
//! the key-group breakdowns and locates every error in them (exit 2); `run` and `serve` refuse a
//! key-group breakdown (exit 2, before any call) until the Cloud Eye collection sums keys into
//! teams.

use crate::common;

use common::*;

const HEAD: &str = "apiVersion: maas-usage/v1\nkey_groups:\n  team-a: [key-a1]\nqueries:\n  - name: m\n    source: cloud_eye\n";

#[test]
fn validate_locates_every_spend_error() {
    let spec = spec_file(&format!(
        "{HEAD}prices:\n  currency: CNX\n  models:\n    - {{model: a, input: 1, output: 1}}\n    - {{model: a, input: 2, output: 2}}\nbudgets:\n  - {{name: b, key_group: ghost, tokens: 1, period: day}}\n"
    ));
    let out = bin().arg("validate").arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for want in [
        "spec.yaml:8:13: prices.currency: `CNX` is not an ISO 4217 currency code",
        "spec.yaml:11:15: prices.models[1].model: `a` has two entries without since",
        "spec.yaml:13:26: budgets[0].key_group: unknown key group `ghost`",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

#[test]
fn key_group_breakdowns_validate_but_are_not_collected_yet() {
    let sim = sim();
    let spec = spec_for(&sim)
        .section("key_groups", "team-a: [key-a1]")
        .query("name: teams, source: cloud_eye, breakdown: [model, key_group]")
        .write();
    let ok = bin().arg("validate").arg(&spec).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    for cmd in ["run", "serve"] {
        let out = authed()
            .arg(cmd)
            .arg("--spec")
            .arg(&spec)
            .args(["--now", NOW])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        assert_error_line(
            &stderr(&out),
            &[
                "query teams: breakdown [model, key_group]",
                "not collected yet",
            ],
        );
        assert!(stdout(&out).is_empty());
    }
    assert!(sim.requests().is_empty(), "refused before any call");
}
