//! `maas-usage query` against the simulator: exact totals, segmentation, filters, discovery,
//! errors and retries.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use maas_usage::domain::range::DAY_MS;
use maas_usage::domain::Usage;
use maas_usage::sim::model::Selection;
use maas_usage::sim::Scripted;
use serde_json::Value;

fn now_ms() -> i64 {
    now().timestamp_millis()
}

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

fn sel(st: u8, batch: bool, start_ms: i64, end_ms: i64) -> Selection<'static> {
    Selection {
        service_type: st,
        batch,
        start_ms,
        end_ms,
        api_keys: None,
        ips: None,
    }
}

/// The `values` of series `i` of a JSON output, as exact usage.
fn values(doc: &Value, i: usize) -> Usage {
    let v = &doc["series"][i]["values"];
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    Usage {
        total_tokens: n("total_tokens"),
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
        requests: n("requests"),
        errors: n("errors"),
        completed_tasks: n("completed_tasks"),
        infer_count: n("infer_count"),
    }
}

#[test]
fn seven_days_exact_totals() {
    let sim = sim();
    let out = query(&sim, &["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json(&out);
    let expected = sim.expected(&sel(2, false, now_ms() - 7 * DAY_MS, now_ms()));
    assert!(
        expected.total_tokens > 1_000_000,
        "the simulator has traffic"
    );
    assert_eq!(values(&doc, 0), expected);
    assert_eq!(
        doc["series"][0]["window"]["start_ms"],
        now_ms() - 7 * DAY_MS
    );
    assert_eq!(stats_calls(&sim).len(), 1);
}

#[test]
fn forty_five_days_are_one_call_from_the_retention_horizon() {
    let sim = sim();
    let out = query(&sim, &["--range", "last_45d", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: query query: the first 15 days of this window are older than the 30-day retention and read as zero; it is queried from 2026-04-21 10:00:00"
        ),
        "warns about the 30-day retention: {}",
        stderr(&out)
    );
    let calls = stats_calls(&sim);
    assert_eq!(calls.len(), 1, "data older than 30 days is not asked for");
    let b = body_of(&calls[0]);
    let horizon = now_ms() - 30 * DAY_MS;
    assert_eq!(b["start_time"].as_i64(), Some(horizon));
    assert_eq!(b["end_time"].as_i64(), Some(now_ms()));
    let doc = json(&out);
    assert_eq!(doc["series"][0]["window"]["start_ms"], horizon);
    let expected = sim.expected(&sel(2, false, horizon, now_ms()));
    assert!(expected.requests > 0);
    assert_eq!(values(&doc, 0), expected);
    // The 15 days before the horizon hold nothing: the service keeps 30.
    assert_eq!(
        sim.expected(&sel(2, false, now_ms() - 45 * DAY_MS, horizon)),
        Usage::default()
    );
}

#[test]
fn this_month_starts_at_local_midnight_of_the_first() {
    let sim = sim();
    let out = query(&sim, &["--range", "this_month", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let start = ms("2026-05-01T00:00:00+08:00");
    let body = body_of(&stats_calls(&sim)[0]);
    assert_eq!(body["start_time"], start);
    assert_eq!(body["timezone"], "Asia/Shanghai");
    assert_eq!(
        values(&json(&out), 0),
        sim.expected(&sel(2, false, start, now_ms()))
    );
}

#[test]
fn from_to_dates_include_the_to_day() {
    let sim = sim();
    let out = query(
        &sim,
        &[
            "--from",
            "2026-05-08",
            "--to",
            "2026-05-14",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (s, e) = (
        ms("2026-05-08T00:00:00+08:00"),
        ms("2026-05-15T00:00:00+08:00"),
    );
    let body = body_of(&stats_calls(&sim)[0]);
    assert_eq!(
        (body["start_time"].as_i64(), body["end_time"].as_i64()),
        (Some(s), Some(e))
    );
    assert_eq!(values(&json(&out), 0), sim.expected(&sel(2, false, s, e)));
}

#[test]
fn each_service_type_is_its_own_series() {
    let sim = sim();
    let out = query(
        &sim,
        &[
            "--service-type",
            "1,preset",
            "--service-type",
            "custom_endpoint",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json(&out);
    let mut seen = Vec::new();
    for (i, code) in [1u8, 2, 4].into_iter().enumerate() {
        assert_eq!(doc["series"][i]["service_type_code"], code);
        let v = values(&doc, i);
        assert_eq!(
            v,
            sim.expected(&sel(code, false, now_ms() - 7 * DAY_MS, now_ms()))
        );
        seen.push(v.total_tokens);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "service types have different traffic");
    let codes: Vec<i64> = stats_calls(&sim)
        .iter()
        .map(|c| body_of(c)["service_type"].as_i64().unwrap())
        .collect();
    assert_eq!(codes.len(), 3);
}

#[test]
fn batch_adds_tasks_and_inference_count() {
    let sim = sim();
    let out = query(&sim, &["--infer-type", "batch", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json(&out);
    let expected = sim.expected(&sel(2, true, now_ms() - 7 * DAY_MS, now_ms()));
    assert!(expected.infer_count > 0 && expected.completed_tasks > 0);
    assert_eq!(values(&doc, 0), expected);
    assert_eq!(body_of(&stats_calls(&sim)[0])["infer_type"], "batch");
    let table = stdout(&query(&sim, &["--infer-type", "batch"]));
    assert!(
        table.contains("Completed Tasks") && table.contains("Inference Count"),
        "{table}"
    );
    let rt = query(&sim, &["--format", "json"]);
    assert!(
        json(&rt)["series"][0]["values"]
            .get("infer_count")
            .is_none(),
        "real_time has no batch fields"
    );
}

#[test]
fn api_key_filter_and_online_experience_filter() {
    let sim = sim();
    let (s, e) = (now_ms() - 7 * DAY_MS, now_ms());
    let keys = vec!["key-a1".to_string(), "key-b1".to_string()];
    let out = query(
        &sim,
        &["--format", "json", "--api-keys", "key-a1", "key-b1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = sim.expected(&Selection {
        api_keys: Some(&keys),
        ..sel(2, false, s, e)
    });
    assert_eq!(values(&json(&out), 0), expected);
    assert_eq!(
        body_of(&stats_calls(&sim)[0])["api_keys"],
        serde_json::json!(["key-a1", "key-b1"])
    );

    sim.clear_log();
    let online = vec![String::new()];
    let out = query(&sim, &["--format", "json", "--api-keys", ""]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected_online = sim.expected(&Selection {
        api_keys: Some(&online),
        ..sel(2, false, s, e)
    });
    assert_eq!(values(&json(&out), 0), expected_online);
    assert_eq!(
        body_of(&stats_calls(&sim)[0])["api_keys"],
        serde_json::json!([""])
    );

    sim.clear_log();
    let out = query(&sim, &["--format", "json"]);
    let all = values(&json(&out), 0);
    assert!(
        body_of(&stats_calls(&sim)[0]).get("api_keys").is_none(),
        "no filter leaves the field out"
    );
    assert!(all.requests > expected.requests && all.requests > expected_online.requests);
}

#[test]
fn project_id_is_discovered_through_iam_or_pinned() {
    let sim = sim();
    let out = query(&sim, &["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let iam: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v3/projects")
        .collect();
    assert_eq!(iam.len(), 1);
    assert_eq!(iam[0].query, "name=cn-southwest-2");
    assert_eq!(json(&out)["project_id"], PROJECT);

    sim.clear_log();
    let out = query(&sim, &["--format", "json", "--project-id", PROJECT]);
    assert!(out.status.success());
    assert!(
        sim.requests().iter().all(|r| r.path != "/v3/projects"),
        "a pinned id saves the IAM call"
    );

    sim.clear_log();
    let url = sim.url();
    let out = authed()
        .env("HW_PROJECT_ID", PROJECT)
        .args([
            "query",
            "--endpoint",
            &url,
            "--iam-endpoint",
            &url,
            "--now",
            NOW,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        sim.requests().iter().all(|r| r.path != "/v3/projects"),
        "HW_PROJECT_ID saves it too"
    );
}

#[test]
fn unknown_region_in_discovery_is_a_clear_error() {
    let sim = sim();
    let out = query(&sim, &["--region", "ap-southeast-1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no project named ap-southeast-1") && err.contains("--project-id"),
        "{err}"
    );
}

#[test]
fn service_type_three_is_refused_before_any_call() {
    let sim = sim();
    let out = query(&sim, &["--service-type", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("use 4 for Custom Endpoint"),
        "{}",
        stderr(&out)
    );
    assert!(sim.requests().is_empty(), "no call at all");
}

#[test]
fn bad_input_is_refused_before_any_call() {
    let sim = sim();
    for (args, needle) in [
        (
            vec!["--from", "2026-05-09", "--to", "2026-05-08"],
            "is after",
        ),
        (vec!["--from", "2026-02-30"], "not a date"),
        (vec!["--range", "last_week"], "not a range"),
        (vec!["--infer-type", "stream"], "real_time or batch"),
        (vec!["--now", "yesterday"], "RFC 3339"),
    ] {
        let out = query(&sim, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let out = query(&sim, &["--timezone", "CST"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not an IANA time zone"),
        "{}",
        stderr(&out)
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn missing_or_half_set_credentials_exit_2() {
    let sim = sim();
    let url = sim.url();
    let out = bin().args(["query", "--endpoint", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("HW_ACCESS_KEY and HW_SECRET_KEY"),
        "{}",
        stderr(&out)
    );
    let out = bin()
        .env("HW_ACCESS_KEY", AK)
        .args(["query", "--endpoint", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("HW_ACCESS_KEY is set but HW_SECRET_KEY is not"),
        "{}",
        stderr(&out)
    );
    assert_no_secret(&out);
    assert!(sim.requests().is_empty());
}

#[test]
fn credentials_file_forms_and_permission_warning() {
    use std::os::unix::fs::PermissionsExt;
    let sim = sim();
    let dir = tempdir();
    let url = sim.url();
    for (i, text) in [
        format!("{AK}\n{SK}\n"),
        format!("{AK},{SK}\n"),
        format!("# ci\nHW_ACCESS_KEY={AK}\nHW_SECRET_KEY={SK}\n"),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(format!("aksk{i}"));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(if i == 0 { 0o644 } else { 0o600 }),
        )
        .unwrap();
        let out = bin()
            .args([
                "query",
                "--endpoint",
                &url,
                "--iam-endpoint",
                &url,
                "--now",
                NOW,
                "--credentials-file",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "form {i}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).contains("readable by group or others"),
            i == 0,
            "form {i}: {}",
            stderr(&out)
        );
        assert_no_secret(&out);
    }
}

#[test]
fn wrong_secret_is_exit_1_with_request_id_and_no_secret() {
    let sim = sim();
    let url = sim.url();
    let out = bin()
        .env("HW_ACCESS_KEY", AK)
        .env("HW_SECRET_KEY", "SKCANARY-but-wrong-0000000000")
        .env("HW_SECURITY_TOKEN", TOKEN)
        .args([
            "query",
            "-v",
            "--raw",
            "--endpoint",
            &url,
            "--project-id",
            PROJECT,
            "--now",
            NOW,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("HTTP 401 APIGW.0301"), "{err}");
    assert!(err.contains("(request id 0000"), "{err}");
    assert!(
        err.contains("canonical request"),
        "verbose shows the gateway's echo: {err}"
    );
    assert_no_secret(&out);
    assert!(!err.contains("SKCANARY-but-wrong"), "{err}");
    assert_eq!(stats_calls(&sim).len(), 1, "401 is never retried");
}

#[test]
fn security_token_is_sent_and_signed() {
    let mut cfg = sim_config();
    cfg.credentials[0].token = Some(TOKEN.into());
    let sim = start(cfg);
    let out = query(&sim, &["--project-id", PROJECT]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "without the token the gateway refuses"
    );
    let url = sim.url();
    let out = authed()
        .env("HW_SECURITY_TOKEN", TOKEN)
        .args([
            "query",
            "--endpoint",
            &url,
            "--project-id",
            PROJECT,
            "--now",
            NOW,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_secret(&out);
}

#[test]
fn throttled_then_ok_succeeds_after_a_retry() {
    let sim = sim();
    sim.push_script(Scripted::Status {
        status: 429,
        body: r#"{"error_code":"APIGW.0308","error_msg":"throttled"}"#.into(),
        retry_after: Some("1".into()),
    });
    let started = Instant::now();
    let out = query(&sim, &["--project-id", PROJECT, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(stats_calls(&sim).len(), 2);
    let c = &json(&out)["collector"];
    assert_eq!(
        (
            c["api_calls"].as_u64(),
            c["api_retries"].as_u64(),
            c["throttled"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let sim = sim();
    for _ in 0..2 {
        sim.push_script(Scripted::Status {
            status: 503,
            body: "{}".into(),
            retry_after: None,
        });
    }
    let out = query(&sim, &["--project-id", PROJECT]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stats_calls(&sim).len(), 3);
}

#[test]
fn a_5xx_storm_ends_in_a_clear_error_inside_the_timeout() {
    let mut cfg = sim_config();
    cfg.faults.fail_ratio = 1.0;
    let sim = start(cfg);
    let started = Instant::now();
    let out = query(&sim, &["--project-id", PROJECT, "--timeout", "4s"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let err = stderr(&out);
    assert!(err.contains("HTTP 503"), "{err}");
    assert!(stats_calls(&sim).len() >= 2, "it did retry");
}

#[test]
fn unreachable_endpoint_is_a_transport_error() {
    let out = authed()
        .args([
            "query",
            "--endpoint",
            "http://127.0.0.1:9",
            "--project-id",
            PROJECT,
            "--timeout",
            "3s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach http://127.0.0.1:9"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn malformed_answer_is_an_error_not_a_zero() {
    let sim = sim();
    sim.push_script(Scripted::Malformed);
    let out = query(&sim, &["--project-id", PROJECT]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not JSON"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn table_snapshot() {
    let sim = sim();
    let out = query(&sim, &["--range", "last_7d", "--service-type", "preset,4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn table_snapshot_with_raw_segments() {
    let sim = sim();
    let out = query(
        &sim,
        &["--range", "last_45d", "--raw", "--project-id", PROJECT],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Segments run concurrently, so which got which request id varies.
    insta::with_settings!({filters => vec![(r"request id [0-9a-f]{32}", "request id [id]")]}, {
        insta::assert_snapshot!(stdout(&out));
    });
}

#[test]
fn json_snapshot() {
    let sim = sim();
    let out = query(
        &sim,
        &[
            "--from",
            "2026-05-01",
            "--infer-type",
            "batch",
            "--format",
            "json",
            "--project-id",
            PROJECT,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut filters = vec![(r#""duration_ms": \d+"#, r#""duration_ms": "[ms]""#)];
    filters.extend(last_success_filters());
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!(stdout(&out));
    });
}

#[test]
fn help_teaches() {
    let out = bin().args(["query", "--help"]).output().unwrap();
    let help = stdout(&out);
    for needle in [
        "--api-keys",
        "online experience",
        "Examples:",
        "custom_endpoint (4)",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[test]
fn top_level_help_describes_every_command() {
    let out = bin().arg("--help").output().unwrap();
    let help = stdout(&out);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    for name in [
        "run",
        "validate",
        "plan",
        "schema",
        "query",
        "demo",
        "state",
        "simulator",
        "describe",
        "completions",
        "man",
    ] {
        let line = commands
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{help}"));
        assert!(
            line.split_whitespace().count() > 2,
            "{name} has no description: {line}"
        );
    }
    assert!(
        help.contains("maas-usage demo") && help.contains("Exit codes"),
        "{help}"
    );
}
