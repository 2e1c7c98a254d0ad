//! `maas-usage run` for Telegraf: line protocol, exact values, partial failure, execd, rate
//! budget, and the plan.

use crate::common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use maas_usage::sim::Scripted;

/// The window end of the example's queries at NOW, in ns (all end at NOW but yesterday).
fn maas_usage_end_ns(query: &str) -> i64 {
    let end = if query == "preset-yesterday" {
        "2026-05-21T00:00:00+08:00"
    } else {
        NOW
    };
    chrono::DateTime::parse_from_rfc3339(end)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

fn filters() -> Vec<(&'static str, &'static str)> {
    let mut f = vec![(r"duration_ms=\d+i", "duration_ms=[ms]i")];
    f.extend(last_success_filters());
    f
}

#[test]
fn example_spec_line_protocol_snapshot_and_exact_values() {
    let sim = sim();
    let text = example_spec_for(&sim);
    let path = spec_file(&text);
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).is_empty(),
        "a clean run says nothing: {}",
        stderr(&out)
    );
    let lp = stdout(&out);
    let all = parse_lp(&lp);
    let expected = expected_series(&sim, &text);
    assert_eq!(
        all.len(),
        EXAMPLE_LINES,
        "one line per series plus the collector line"
    );
    assert_eq!(
        all.iter()
            .filter(|l| l.measurement == "maas_model_usage")
            .count(),
        EXAMPLE_MODELS
    );
    assert_eq!(all.last().unwrap().measurement, "maas_usage_collector");
    let lines: Vec<_> = all
        .iter()
        .filter(|l| l.measurement == "maas_usage")
        .collect();
    assert_eq!(lines.len(), expected.len());
    for (line, (key, usage)) in lines.iter().zip(&expected) {
        assert_eq!(line.measurement, "maas_usage");
        assert_eq!(line.timestamp, Some(maas_usage_end_ns(&key.query)));
        assert_eq!(line.tag("query"), Some(key.query.as_str()));
        assert_eq!(line.tag("service_type"), Some(key.service_type.name()));
        assert_eq!(line.tag("key_group"), Some(key.key_group.as_str()));
        assert_eq!(line.tag("env"), Some("demo"));
        assert_eq!(
            line.int("total_tokens"),
            Some(usage.total_tokens as i64),
            "{key}"
        );
        assert_eq!(
            line.int("prompt_tokens"),
            Some(usage.prompt_tokens as i64),
            "{key}"
        );
        assert_eq!(
            line.int("completion_tokens"),
            Some(usage.completion_tokens as i64),
            "{key}"
        );
        assert_eq!(line.int("requests"), Some(usage.requests as i64), "{key}");
        assert_eq!(line.int("errors"), Some(usage.errors as i64), "{key}");
        if key.infer_type.name() == "batch" {
            assert_eq!(line.int("infer_count"), Some(usage.infer_count as i64));
            assert_eq!(
                line.int("completed_tasks"),
                Some(usage.completed_tasks as i64)
            );
        } else {
            assert_eq!(line.int("infer_count"), None);
        }
        assert!(usage.total_tokens > 0, "{key} has traffic");
    }
    let collector = all.last().unwrap();
    assert_eq!(collector.measurement, "maas_usage_collector");
    assert_eq!(
        collector.int("series_ok"),
        Some((expected.len() + EXAMPLE_MODELS) as i64)
    );
    assert_eq!(collector.int("series_failed"), Some(0));
    assert_eq!(
        collector.int("api_calls"),
        Some(sim.requests().len() as i64),
        "every call the simulator saw, Cloud Eye's too"
    );
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(lp);
    });
}

#[test]
fn plan_snapshot_and_identical_calls_made_once() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/spec.yaml");
    let out = bin()
        .args(["plan", "--spec", path, "--now", NOW])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("(one call, shared)"), "{text}");
    insta::assert_snapshot!(text);

    let sim = sim();
    let spec = example_spec_for(&sim);
    let path = spec_file(&spec);
    let out = run(&path, &[]);
    assert!(out.status.success());
    let bodies: std::collections::HashSet<String> =
        stats_calls(&sim).into_iter().map(|c| c.body).collect();
    assert_eq!(
        bodies.len(),
        stats_calls(&sim).len(),
        "no call was made twice"
    );
    assert!(
        text.contains(&format!("{} calls (", bodies.len())),
        "the plan's count is what run does"
    );
}

#[test]
fn partial_failure_keeps_the_good_series_and_exits_0() {
    let sim = sim();
    let text = example_spec_for(&sim).replace("  concurrency: 4", "  concurrency: 1");
    let path = spec_file(&text);
    // (A 401 or 403 would stop every call with the same credentials: tests/it/auth.rs.)
    sim.push_script(Scripted::Status {
        status: 400,
        body: r#"{"error_code":"ModelArts.4101","error_msg":"api_keys: too many keys"}"#.into(),
        retry_after: None,
    });
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.starts_with("E! query=preset-7d service_type=preset infer_type=real_time key_group=team-a status=400 code=ModelArts.4101 request_id="),
        "{err}"
    );
    assert!(first.contains("too many keys"), "says what failed: {first}");
    let lines = parse_lp(&stdout(&out));
    let collector = lines.last().unwrap();
    assert_eq!(collector.int("series_failed"), Some(1));
    assert_eq!(collector.int("series_ok"), Some(lines.len() as i64 - 1));
    assert!(lines
        .iter()
        .all(|l| l.tag("key_group") != Some("team-a") || l.tag("service_type") != Some("preset")));
}

#[test]
fn nothing_collected_exits_1_with_the_useful_line_first() {
    let sim = sim();
    let path = spec_file(&example_spec_for(&sim));
    let out = authed()
        .env("HW_SECRET_KEY", "SKCANARY-wrong-secret-000000")
        .arg("run")
        .arg("--spec")
        .arg(&path)
        .args(["--now", NOW])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.starts_with("E! no series collected (0 of 14): query="),
        "{err}"
    );
    assert!(
        first.contains("HTTP 401 APIGW.0301") && first.contains("request id"),
        "{first}"
    );
    assert!(
        first.len() < 512,
        "Telegraf shows 512 bytes: {}",
        first.len()
    );
    assert!(
        err.lines()
            .all(|l| l.starts_with("E! ") || l.starts_with("W! ")),
        "{err}"
    );
    assert_no_secret(&out);
    assert!(!err.contains("SKCANARY-wrong"));
}

#[test]
fn execd_collects_once_per_line_and_exits_on_eof() {
    let sim = sim();
    let path = spec_file(&example_spec_for(&sim));
    let mut execd = Execd::start(&path);
    let mut seen = 0;
    for round in 1..=2 {
        let lines = execd.collect();
        assert_eq!(
            lines.len(),
            EXAMPLE_LINES,
            "a complete batch in round {round}"
        );
        let collector = lines.last().unwrap();
        let made = sim.requests().len() - seen;
        seen += made;
        assert_eq!(
            collector.int("api_calls"),
            Some(made as i64),
            "each batch reports its own calls (round {round})"
        );
    }
    assert_eq!(execd.finish(), Some(0));
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.path == "/v3/projects")
            .count(),
        0,
        "project id pinned"
    );
    assert_eq!(stats_calls(&sim).len(), 24, "12 calls per round");
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The collector line says when the process last succeeded and how many collections failed in
/// a row since: across the batches of `--execd`, and for a run, the run itself (or 0 and 1).
#[test]
fn the_collector_line_carries_the_last_success_and_the_failures_since() {
    let sim = sim();
    let path = spec_for(&sim).limits("timeout: 5s").write();
    let collector = |lines: &[Line]| -> (i64, i64) {
        let c = lines.last().unwrap();
        assert_eq!(c.measurement, "maas_usage_collector");
        (
            c.int("last_success_ms").unwrap(),
            c.int("consecutive_failures").unwrap(),
        )
    };
    // A run: its own start when it succeeded, else 0 and 1.
    let before = unix_ms();
    let (at, failures) = collector(&parse_lp(&stdout(&run(&path, &[]))));
    assert!((before..=unix_ms()).contains(&at), "{at}");
    assert_eq!(failures, 0);
    sim.configure(|c| c.faults.fail_ratio = 1.0);
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(collector(&parse_lp(&stdout(&out))), (0, 1));

    // execd: the first batch fails (nothing yet), the second succeeds, two more fail.
    let mut execd = Execd::start(&path);
    assert_eq!(collector(&execd.collect()), (0, 1));
    sim.configure(|c| c.faults.fail_ratio = 0.0);
    let before = unix_ms();
    let (success, failures) = collector(&execd.collect());
    assert!((before..=unix_ms()).contains(&success), "{success}");
    assert_eq!(failures, 0);
    sim.configure(|c| c.faults.fail_ratio = 1.0);
    assert_eq!(collector(&execd.collect()), (success, 1));
    assert_eq!(collector(&execd.collect()), (success, 2));
    assert_eq!(execd.finish(), Some(0));
}

#[test]
fn execd_discovers_the_project_once() {
    let sim = sim();
    let text = example_spec_for(&sim).replace(&format!("  project_id: {PROJECT}\n"), "");
    let path = spec_file(&text);
    let mut child = authed()
        .args(["run", "--execd", "--spec"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"\n\n\n").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("maas_usage_collector")
            .count(),
        3
    );
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.path == "/v3/projects")
            .count(),
        1
    );
}

#[test]
fn rate_budget_keeps_a_big_spec_under_the_limit() {
    let mut cfg = sim_config();
    cfg.faults.rate_limit = Some(5);
    cfg.faults.rate_window = Duration::from_millis(1500);
    let sim = start(cfg);
    // The simulator's limit is one for every API; Cloud Eye's budget is its own, so its calls
    // are left out here.
    let text = statistics_only(&example_spec_for(&sim))
        .replace("requests_per_minute: 200", "requests_per_minute: 5")
        .replace("concurrency: 4", "concurrency: 8");
    let path = spec_file(&text);
    let started = std::time::Instant::now();
    let out = authed()
        .env("MAAS_USAGE_RATE_WINDOW_MS", "1500")
        .arg("run")
        .arg("--spec")
        .arg(&path)
        .args(["--now", NOW])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = parse_lp(&stdout(&out));
    let collector = lines.last().unwrap();
    assert_eq!(collector.int("throttled"), Some(0), "{}", stderr(&out));
    assert_eq!(
        collector.int("api_calls"),
        Some(12),
        "the plan's 12 calls, no retry"
    );
    assert_eq!(collector.int("series_failed"), Some(0));
    assert!(sim.requests().iter().all(|r| r.status != 429));
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "12 calls at 5 per window need three windows"
    );
}

#[test]
fn output_file_is_replaced_whole() {
    let sim = sim();
    let path = spec_file(&example_spec_for(&sim));
    let target = tempdir().join("metrics.lp");
    std::fs::write(&target, "old\n").unwrap();
    let out = run(&path, &["--output", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let written = std::fs::read_to_string(&target).unwrap();
    assert_eq!(parse_lp(&written).len(), EXAMPLE_LINES);
    assert!(!written.contains("old"));
}

#[test]
fn table_and_json_formats_from_run() {
    let sim = sim();
    let path = spec_file(&example_spec_for(&sim));
    let out = run(&path, &["--format", "json"]);
    let doc = json(&out);
    assert_eq!(doc["series"].as_array().unwrap().len(), EXAMPLE_STATISTICS);
    assert_eq!(doc["models"].as_array().unwrap().len(), EXAMPLE_MODELS);
    assert_eq!(
        doc["collector"]["series_ok"],
        EXAMPLE_STATISTICS + EXAMPLE_MODELS
    );
    let out = run(&path, &["--format", "table"]);
    assert!(
        stdout(&out)
            .contains("MaaS My Service Usage Statistics (query preset-7d, key group team-a)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn demo_prints_line_protocol_without_any_credentials() {
    let out = bin().args(["demo", "--now", NOW]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines = parse_lp(&text);
    // The example's lines, and the demo's own spend: two priced models' costs and a budget.
    assert_eq!(lines.len(), EXAMPLE_LINES + 3);
    assert!(lines.iter().all(|l| !l.measurement.is_empty()));
    let spend = |m: &str| lines.iter().filter(|l| l.measurement == m).count();
    assert_eq!((spend("maas_model_cost"), spend("maas_budget")), (2, 1));
    // Per model too: at least two models, each with tokens.
    let models: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.measurement == "maas_model_usage")
        .filter(|l| l.int("total_tokens").is_some_and(|t| t > 0))
        .filter_map(|l| l.tag("model"))
        .collect();
    assert!(models.len() >= 2, "{models:?}");
    let out = bin()
        .args(["demo", "--now", NOW, "--format", "table"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("Period: "));
}
