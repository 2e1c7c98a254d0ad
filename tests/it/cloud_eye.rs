//! `source: cloud_eye` against the simulator's Cloud Eye: exact per-model and per-key integer
//! sums, reconciliation with ShowStatistics, discovery through paged ListMetrics, windows split
//! within the server's limits, names falling back to ids, the cardinality guard, period mode, and
//! every output format.

use crate::common;

use std::collections::BTreeMap;

use common::*;
use maas_usage::sim::model::{key_id, Selection, DEFAULT_MODELS};
use maas_usage::sim::Simulator;
use maas_usage::sim::{Dataset, Size};

const H: i64 = 3_600_000;

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

fn model_lines(out: &std::process::Output) -> Vec<Line> {
    parse_lp(&stdout(out))
        .into_iter()
        .filter(|l| l.measurement == "maas_model_usage")
        .collect()
}

fn cloud_eye_calls(sim: &Simulator, path_end: &str) -> Vec<maas_usage::sim::Logged> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path.ends_with(path_end))
        .collect()
}

#[test]
fn per_model_totals_are_exact_and_reconcile_with_show_statistics() {
    let sim = sim();
    // Yesterday in Shanghai: a closed, hour-aligned day.
    let (start, end) = (
        ms("2026-05-20T00:00:00+08:00"),
        ms("2026-05-21T00:00:00+08:00"),
    );
    let path = spec_for(&sim)
        .query("name: models, source: cloud_eye, range: yesterday")
        .query("name: console, range: yesterday, service_types: [preset, my_service]")
        .write();
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let lines = model_lines(&out);
    assert_eq!(lines.len(), DEFAULT_MODELS.len());
    let mut by_model = 0i64;
    for (id, name, _) in DEFAULT_MODELS {
        let l = lines
            .iter()
            .find(|l| l.tag("model_id") == Some(id))
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(l.tag("model"), Some(*name), "names from the MaaS monitor");
        assert_eq!(l.timestamp, Some(end * 1_000_000));
        let want = sim.model_usage(id, None, start, end);
        assert_eq!(
            l.int("total_tokens"),
            Some(want.total_tokens as i64),
            "{name}"
        );
        assert_eq!(l.int("prompt_tokens"), Some(want.prompt_tokens as i64));
        assert_eq!(
            l.int("completion_tokens"),
            Some(want.completion_tokens as i64)
        );
        assert_eq!(l.int("requests"), Some(want.requests as i64));
        assert_eq!(l.int("errors"), Some(want.errors as i64));
        assert!(
            l.floats.contains_key("ttft_p99_ms"),
            "latency as a float in ms"
        );
        assert_eq!(l.int("window_seconds"), Some(86_400));
        by_model += l.int("total_tokens").unwrap();
    }
    // The console's figure for service types 1 + 2 is the sum over models, to the token.
    let console: i64 = parse_lp(&stdout(&out))
        .iter()
        .filter(|l| l.measurement == "maas_usage")
        .map(|l| l.int("total_tokens").unwrap())
        .sum();
    let expected: u64 = [1u8, 2]
        .iter()
        .map(|&st| {
            sim.expected(&Selection {
                service_type: st,
                batch: false,
                start_ms: start,
                end_ms: end,
                api_keys: None,
                ips: None,
            })
            .total_tokens
        })
        .sum();
    assert_eq!(console as u64, expected);
    assert_eq!(
        by_model, console,
        "per-model sum = ShowStatistics for types 1 + 2"
    );
    assert!(by_model > 0);
}

#[test]
fn per_key_totals_are_exact_and_filters_pick_by_name_or_id() {
    let sim = sim();
    let deepseek = DEFAULT_MODELS[0];
    let path = spec_for(&sim)
        .query(&format!(
            "name: keys, source: cloud_eye, range: yesterday, breakdown: [model, api_key], models: [{}], api_keys: [key-a1, {}]",
            deepseek.1,
            key_id("key-b1")
        ))
        .write();
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = model_lines(&out);
    let (start, end) = (
        ms("2026-05-20T00:00:00+08:00"),
        ms("2026-05-21T00:00:00+08:00"),
    );
    let got: BTreeMap<&str, i64> = lines
        .iter()
        .map(|l| (l.tag("api_key").unwrap(), l.int("total_tokens").unwrap()))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    for key in ["key-a1", "key-b1"] {
        let l = lines
            .iter()
            .find(|l| l.tag("api_key") == Some(key))
            .unwrap();
        assert_eq!(l.tag("api_key_id"), Some(key_id(key).as_str()));
        assert_eq!(l.tag("model"), Some(deepseek.1));
        let want = sim.model_usage(deepseek.0, Some(key), start, end);
        assert_eq!(got[key], want.total_tokens as i64, "{key}");
        assert_eq!(l.int("requests"), Some(want.requests as i64));
    }
}

#[test]
fn discovery_pages_through_list_metrics_and_finds_the_same_series() {
    let keys = "name: keys, source: cloud_eye, range: last_24h, breakdown: [model, api_key], metrics: [total_tokens, req_count]";
    let whole = sim();
    let a = run(&spec_for(&whole).query(keys).write(), &[]);
    let paged = sim();
    paged.configure(|c| c.cloud_eye.page_cap = Some(4));
    let b = run(&spec_for(&paged).query(keys).write(), &[]);
    assert_eq!(b.status.code(), Some(0), "{}", stderr(&b));
    assert_eq!(model_lines(&a), model_lines(&b));
    assert_eq!(model_lines(&b).len(), 3 * 4, "3 models x 4 named keys");
    // One metric listed (every series has every metric): 3 models and 12 keys, 4 a page.
    let pages = cloud_eye_calls(&paged, "/metrics");
    assert_eq!(pages.len(), 4, "paged: {} ListMetrics calls", pages.len());
    assert!(pages
        .iter()
        .all(|r| r.query.contains("metric_name=req_count")));
    assert!(
        pages.iter().any(|r| r.query.contains("start=")),
        "later pages start at the marker"
    );
}

#[test]
fn long_windows_are_split_within_the_servers_limit_and_stay_exact() {
    let sim = sim();
    // 14 days at hourly periods: the server keeps 10 days per call.
    let path = spec_for(&sim)
        .query("name: fortnight, source: cloud_eye, range: last_14d, metrics: [total_tokens]")
        .write();
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let batches = cloud_eye_calls(&sim, "/batch-query-metric-data");
    assert_eq!(batches.len(), 2, "two spans");
    let mut covered = Vec::new();
    for b in &batches {
        let body: serde_json::Value = serde_json::from_str(&b.body).unwrap();
        let (from, to) = (body["from"].as_i64().unwrap(), body["to"].as_i64().unwrap());
        assert_eq!(body["period"], "3600");
        assert!(to - from <= 10 * 24 * H, "within the 10-day limit");
        covered.push((from, to));
    }
    covered.sort();
    assert_eq!(covered[0].1, covered[1].0, "contiguous");
    let (start, end) = (covered[0].0, covered[1].1);
    assert_eq!(end - start, 14 * 24 * H);
    for l in model_lines(&out) {
        let id = l.tag("model_id").unwrap();
        let want = sim.model_usage(id, None, start, end);
        assert_eq!(
            l.int("total_tokens"),
            Some(want.total_tokens as i64),
            "{id}"
        );
    }
    // plan says how the window was aligned and which spans it calls.
    let plan = bin()
        .args(["plan", "--now", NOW, "--spec"])
        .arg(&path)
        .output()
        .unwrap();
    let text = stdout(&plan);
    assert!(text.contains("period 3600 s"), "{text}");
    assert_eq!(text.matches("call span").count(), 2, "{text}");
}

#[test]
fn names_fall_back_to_ids_with_one_warning_and_the_spec_can_pin_them() {
    let sim = sim();
    sim.configure(|c| c.cloud_eye.instances_status = Some(404));
    let (id, _, _) = DEFAULT_MODELS[1];
    let path = spec_for(&sim)
        .query("name: models, source: cloud_eye, range: yesterday, metrics: [total_tokens]")
        .section("names", &format!("models: {{{id}: qwen-pinned}}"))
        .write();
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("W! ").count(), 1, "{err}");
    assert!(err.contains("ids stand in"), "{err}");
    let lines = model_lines(&out);
    for (mid, _, _) in DEFAULT_MODELS {
        let l = lines
            .iter()
            .find(|l| l.tag("model_id") == Some(mid))
            .unwrap();
        let want = if *mid == id { "qwen-pinned" } else { mid };
        assert_eq!(l.tag("model"), Some(want));
    }
}

#[test]
fn the_cardinality_guard_names_the_breakdown_that_exploded() {
    let sim = sim();
    let path = spec_for(&sim).query("name: models, source: cloud_eye, range: yesterday, metrics: [total_tokens]").query("name: keys, source: cloud_eye, range: yesterday, breakdown: [model, api_key], metrics: [total_tokens]").limits("max_series: 5").write();
    let out = run(&path, &[]);
    // The first query fits and is delivered; the second does not and says why.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = model_lines(&out);
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.tag("query") == Some("models")));
    let err = stderr(&out);
    assert!(
        err.contains("E! query=keys source=cloud_eye (cardinality guard)")
            && err.contains("breakdown [model, api_key] gives 12 series")
            && err.contains("limits.max_series (5)"),
        "{err}"
    );
    assert!(
        cloud_eye_calls(&sim, "/batch-query-metric-data")
            .iter()
            .all(|b| !b.body.contains("maas_key_id")),
        "nothing is asked for the refused query"
    );
    // Alone, the refused query is the spec's doing: exit 2.
    let alone = spec_for(&sim)
        .query("name: keys, source: cloud_eye, range: yesterday, breakdown: [model, api_key]")
        .limits("max_series: 5")
        .write();
    assert_eq!(run(&alone, &[]).status.code(), Some(2));
}

#[test]
fn a_metric_cloud_eye_does_not_report_is_a_warning_not_a_failure() {
    let sim = sim();
    let path = spec_for(&sim)
        .query(
            "name: models, source: cloud_eye, range: yesterday, metrics: [total_tokens, ttft_p80]",
        )
        .write();
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Cloud Eye reports no `ttft_p80`"),
        "{}",
        stderr(&out)
    );
    assert!(model_lines(&out)
        .iter()
        .all(|l| l.int("total_tokens").is_some() && !l.floats.contains_key("ttft_p80_ms")));
}

#[test]
fn period_buckets_come_once_in_order_with_exact_counts() {
    let sim = sim();
    let path = spec_for(&sim).query("name: hourly, source: cloud_eye, range: {every: 1h, delay: 2h, backfill: 4h}, metrics: [total_tokens, ttft_p99]").write();
    let state = tempdir().join("state");
    let at = |now: &str| {
        sim.configure(|c| c.now = Some(chrono::DateTime::parse_from_rfc3339(now).unwrap().into()));
        let out = authed()
            .args(["run", "--now", now, "--spec"])
            .arg(&path)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        model_lines(&out)
    };
    let first = at("2026-05-21T10:00:00+08:00");
    let second = at("2026-05-21T10:00:00+08:00");
    let third = at("2026-05-21T12:00:00+08:00");
    assert!(second.is_empty(), "nothing new settled: nothing again");
    let ends = |lines: &[Line]| {
        let mut e: Vec<i64> = lines
            .iter()
            .map(|l| l.timestamp.unwrap() / 1_000_000)
            .collect();
        e.dedup();
        e
    };
    assert_eq!(
        ends(&first),
        vec![
            ms("2026-05-21T07:00:00+08:00"),
            ms("2026-05-21T08:00:00+08:00")
        ]
    );
    assert_eq!(
        ends(&third),
        vec![
            ms("2026-05-21T09:00:00+08:00"),
            ms("2026-05-21T10:00:00+08:00")
        ]
    );
    for l in first.iter().chain(&third) {
        let end = l.timestamp.unwrap() / 1_000_000;
        let want = sim.model_usage(l.tag("model_id").unwrap(), None, end - H, end);
        assert_eq!(l.int("total_tokens"), Some(want.total_tokens as i64));
        assert_eq!(l.int("period_seconds"), Some(3600));
    }
}

#[test]
fn spec_errors_for_cloud_eye_queries_are_located() {
    let sim = sim();
    // Block style: the error's line and column are asserted.
    let path = spec_for(&sim)
        .queries("  - name: bad\n    source: cloud_eye\n    service_types: [preset]\n    api_keys: [k1]\n    metrics: [tokens_per_minute]\n")
        .write();
    let out = bin().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(".yaml:12:15: queries[0].metrics[0]"), "{err}");
    assert!(err.contains("queries[0].metrics[0]"), "{err}");
    let path = spec_for(&sim)
        .query("name: bad, source: cloud_eye, service_types: [preset], api_keys: [k1]")
        .write();
    let err = stderr(&bin().arg("validate").arg(&path).output().unwrap());
    assert!(
        err.contains("queries[0].service_types: `service_types` applies to ShowStatistics"),
        "{err}"
    );
    assert!(
        err.contains("queries[0].api_keys: filtering API keys needs `breakdown: [model, api_key]`"),
        "{err}"
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn every_output_format_carries_the_per_model_series() {
    let sim = sim();
    let path = spec_for(&sim).query("name: keys, source: cloud_eye, range: yesterday, breakdown: [model, api_key], models: [DeepSeek-V3], api_keys: [key-a1, key-b1], metrics: [total_tokens, req_count, req_count_429, ttft_p99]").output("tags: {env: demo}").write();
    let render = |format: &str| render_ok(&path, format);
    insta::with_settings!({filters => run_filters()}, {
        insta::assert_snapshot!("influx", render("influx"));
        insta::assert_snapshot!("json", render("json"));
        insta::assert_snapshot!("table", render("table"));
        insta::assert_snapshot!("prometheus", render("prometheus"));
        insta::assert_snapshot!("otlp_json", render("otlp-json"));
    });
}

#[test]
fn discovery_is_cached_in_the_state_directory_for_an_hour() {
    let sim = sim();
    let models = spec_for(&sim)
        .query(
            "name: models, source: cloud_eye, range: yesterday, metrics: [total_tokens, req_count]",
        )
        .write();
    let state = tempdir().join("state");
    let with_state = |path: &std::path::Path| {
        let out = run(path, &["--state-dir", state.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        model_lines(&out)
    };
    let calls = |path: &str| cloud_eye_calls(&sim, path).len();
    // A [model] breakdown: the monitor's models, with their names, in one page.
    let first = with_state(&models);
    assert_eq!(
        (calls("/metrics"), calls("/maas/monitor/instances")),
        (0, 1)
    );
    let second = with_state(&models);
    assert_eq!(first, second);
    assert_eq!(
        (calls("/metrics"), calls("/maas/monitor/instances")),
        (0, 1),
        "cached"
    );
    // Keys are not in that discovery: a key breakdown lists one metric (one page) and names
    // the keys (one page), then is cached too; the [model] breakdown is content with it.
    let keys = spec_for(&sim).query("name: keys, source: cloud_eye, range: yesterday, breakdown: [model, api_key], metrics: [total_tokens]").write();
    assert_eq!(with_state(&keys).len(), 3 * 4);
    assert_eq!(
        (calls("/metrics"), calls("/maas/monitor/instances")),
        (1, 2)
    );
    with_state(&keys);
    assert_eq!(with_state(&models), first);
    assert_eq!(
        (calls("/metrics"), calls("/maas/monitor/instances")),
        (1, 2)
    );
    // A full reset forgets everything.
    let reset = bin()
        .args(["state", "reset", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(stdout(&reset).contains("reset the Cloud Eye discovery cache"));
    with_state(&models);
    assert_eq!(calls("/maas/monitor/instances"), 3);
}

#[test]
fn cloud_eye_calls_keep_to_their_own_budget_and_count_in_the_self_metrics() {
    // The simulator's limit is one for every API: 4 Cloud Eye calls per window, plus the two
    // pages of names (the MaaS monitor, on MaaS's budget), fit under 6.
    let mut cfg = sim_config();
    cfg.faults.rate_limit = Some(6);
    cfg.faults.rate_window = std::time::Duration::from_millis(1500);
    let sim = start(cfg);
    let path = spec_for(&sim).query("name: keys, source: cloud_eye, range: yesterday, breakdown: [model, api_key], metrics: [total_tokens, req_count, ttft_p99]").limits("ces_requests_per_minute: 4, timeout: 60s").write();
    let out = authed()
        .env("MAAS_USAGE_RATE_WINDOW_MS", "1500")
        .args(["run", "--now", NOW, "--spec"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = parse_lp(&stdout(&out));
    let collector = all.last().unwrap();
    assert_eq!(collector.int("throttled"), Some(0), "{}", stderr(&out));
    assert_eq!(
        collector.int("api_calls"),
        Some(sim.requests().len() as i64),
        "every Cloud Eye and monitor call counts"
    );
    assert_eq!(model_lines(&out).len(), 3 * 4);
}

#[test]
fn a_cloud_eye_permission_refusal_never_locks_the_key() {
    let sim = sim();
    let state = tempdir().join("state");
    let with_state = |path: &std::path::Path| run(path, &["--state-dir", state.to_str().unwrap()]);
    // Cloud Eye refuses (no CES policy): that query fails, saying what to grant...
    sim.push_script(maas_usage::sim::Scripted::Status {
        status: 403,
        body: r#"{"error_code":"ces.0003","error_msg":"Forbidden"}"#.into(),
        retry_after: None,
    });
    let keys = spec_for(&sim)
        .query("name: keys, source: cloud_eye, range: yesterday, breakdown: [model, api_key]")
        .write();
    let out = with_state(&keys);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("CES ReadOnlyAccess"),
        "{}",
        stderr(&out)
    );
    // ... and the key stays usable: ShowStatistics right after, from the same state.
    let statistics = spec_for(&sim)
        .query("name: console, range: yesterday")
        .write();
    let out = with_state(&statistics);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("rejected"), "{}", stderr(&out));
    // The same for a refusal of the monitor (best effort): a warning, the models are listed
    // with ListMetrics instead, and the key is fine.
    sim.configure(|c| c.cloud_eye.instances_status = Some(403));
    let models = spec_for(&sim)
        .query("name: models, source: cloud_eye, range: yesterday")
        .write();
    let out = with_state(&models);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(with_state(&statistics).status.code(), Some(0));
}

#[test]
fn a_names_api_that_never_answers_costs_a_few_seconds_not_the_data() {
    let sim = sim();
    // Accepts connections (the kernel does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let path = spec_for(&sim)
        .query("name: models, source: cloud_eye, range: yesterday, metrics: [total_tokens]")
        .limits("timeout: 20s")
        .write();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "  ces_endpoint:",
        &format!(
            "  maas_monitor_endpoint: http://{}\n  ces_endpoint:",
            silent.local_addr().unwrap()
        ),
    );
    let out = run(&spec_file(&text), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = model_lines(&out);
    assert_eq!(lines.len(), DEFAULT_MODELS.len());
    assert!(lines.iter().all(|l| l.tag("model") == l.tag("model_id")));
    assert!(stderr(&out).contains("ids stand in"), "{}", stderr(&out));
    drop(silent);
}

#[test]
fn a_month_in_a_half_hour_zone_costs_a_few_calls_and_stays_exact() {
    let sim = sim();
    let path = spec_for(&sim)
        .timezone("Asia/Kolkata")
        .query("name: month, source: cloud_eye, range: this_month, metrics: [total_tokens]")
        .write();
    // 2026-05-21T07:30+05:30 is NOW: May's midnight in Kolkata is on a half hour.
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let batches = cloud_eye_calls(&sim, "/batch-query-metric-data");
    assert!(batches.len() <= 6, "{} calls for a month", batches.len());
    let spans: Vec<(i64, i64, String)> = batches
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(&b.body).unwrap();
            (
                v["from"].as_i64().unwrap(),
                v["to"].as_i64().unwrap(),
                v["period"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let start = ms("2026-05-01T00:00:00+05:30");
    let end = spans.iter().map(|s| s.1).max().unwrap();
    assert_eq!(spans.iter().map(|s| s.0).min(), Some(start), "{spans:?}");
    assert!(spans.iter().any(|s| s.2 == "3600") && spans.iter().any(|s| s.2 == "300"));
    for l in model_lines(&out) {
        let want = sim.model_usage(l.tag("model_id").unwrap(), None, start, end);
        assert_eq!(l.int("total_tokens"), Some(want.total_tokens as i64));
    }
}

/// A ListMetrics whose markers loop (A, B, A, B...) costs a couple of pages per metric, not the
/// Cloud Eye budget: discovery stops at the first page that brings nothing new, says so on one
/// `W!` line per metric, and goes on with what it found.
#[test]
fn looping_list_metrics_markers_stop_discovery_instead_of_spending_the_budget() {
    let mut cfg = sim_config();
    cfg.cloud_eye.looping_markers = true;
    cfg.cloud_eye.page_cap = Some(2);
    let sim = start(cfg);
    let path = spec_for(&sim).query("name: keys, source: cloud_eye, range: yesterday, breakdown: [model, api_key], metrics: [total_tokens, req_count]").limits("timeout: 10s").write();
    let state = tempdir().join("state");
    let out = run(&path, &["--state-dir", state.to_str().unwrap()]);
    let err = stderr(&out);
    let pages = cloud_eye_calls(&sim, "/metrics").len();
    assert_eq!(pages, 2, "two pages, not the budget: {err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("W! ") && l.contains("ListMetrics"))
        .collect();
    assert_eq!(warned.len(), 1, "one line: {err}");
    for w in &warned {
        assert!(
            w.contains("nothing new") && w.contains("may be missing"),
            "{w}"
        );
    }
    assert!(!err.contains("E! "), "{err}");
    assert!(!model_lines(&out).is_empty(), "what was found is collected");
    // A partial discovery is not cached as the whole: the next run looks again.
    sim.clear_log();
    let out = run(&path, &["--state-dir", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(cloud_eye_calls(&sim, "/metrics").len(), 2);
}

#[test]
fn a_sized_simulator_serves_every_model_and_key_with_exact_sums() {
    // `simulator --models 7 --keys 3`: 7 x 3 per-key series, each exact, named by the monitor.
    let size = Size {
        models: 7,
        keys: 3,
        ips: 14,
    };
    let sim = SimProcess::start(&["--models", "7", "--keys", "3", "--ips", "14", "--now", NOW]);
    let data = Dataset::sized(size);
    let path = spec_at(&sim.url)
        .query("name: keys, source: cloud_eye, range: yesterday, breakdown: [model, api_key], metrics: [total_tokens, req_count]")
        .query("name: models, source: cloud_eye, range: yesterday, metrics: [total_tokens, req_count]")
        .write();
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let (start, end) = (
        ms("2026-05-20T00:00:00+08:00"),
        ms("2026-05-21T00:00:00+08:00"),
    );
    let now = ms(NOW);
    let lines = model_lines(&out);
    let keys: Vec<&Line> = lines
        .iter()
        .filter(|l| l.tag("query") == Some("keys"))
        .collect();
    let mut pairs = BTreeMap::new();
    for l in &keys {
        let (model_id, key) = (l.tag("model_id").unwrap(), l.tag("api_key").unwrap());
        let model = data.models.iter().find(|m| m.id == model_id).unwrap();
        assert_eq!(
            l.tag("model"),
            Some(model.name.as_str()),
            "named by the monitor"
        );
        assert_eq!(l.tag("api_key_id"), Some(key_id(key).as_str()));
        let want = data.model_usage(model_id, Some(key), start, end, now);
        let got = (l.int("total_tokens"), l.int("requests"));
        let exact = (want.total_tokens as i64, want.requests as i64);
        assert_eq!(got, (Some(exact.0), Some(exact.1)), "{model_id} {key}");
        pairs.insert((model_id, key), want.requests);
    }
    assert_eq!(keys.len(), 7 * 3);
    assert_eq!(pairs.len(), 7 * 3, "each model and key once");
    assert!(
        pairs.values().filter(|r| **r > 0).count() >= 7 * 3 * 3 / 4,
        "most series have traffic: {pairs:?}"
    );
    let models: Vec<&Line> = lines
        .iter()
        .filter(|l| l.tag("query") == Some("models"))
        .collect();
    let ids: std::collections::BTreeSet<&str> =
        models.iter().map(|l| l.tag("model_id").unwrap()).collect();
    assert_eq!(ids, data.models.iter().map(|m| m.id.as_str()).collect());
    for l in &models {
        let want = data.model_usage(l.tag("model_id").unwrap(), None, start, end, now);
        assert_eq!(l.int("total_tokens"), Some(want.total_tokens as i64));
        assert!(want.total_tokens > 0);
    }
}
