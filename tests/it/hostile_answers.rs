//! Answers the API should never give: absurd, inconsistent or incomplete statistics. Each one
//! fails its series with a clear stderr line; none becomes a zero or a wrapped number.

use crate::common;

use common::*;
use maas_usage::sim::model::DEFAULT_MODELS;
use maas_usage::sim::Scripted;

/// A complete answer with `field` replaced by `value` (`None`: left out).
fn answer_with(field: &str, value: Option<&str>, batch: bool) -> String {
    let mut fields = vec![
        ("total_request_count", "120"),
        ("total_error_count", "7"),
        ("total_token", "1234.567"),
        ("total_prompt_token", "1000.5"),
        ("total_completion_token", "234.067"),
    ];
    if batch {
        fields.push(("total_completion_tasks", "2"));
        fields.push(("total_infer_count", "120"));
    }
    fields.retain(|(k, _)| *k != field);
    if let Some(v) = value {
        fields.push((field, v));
    }
    let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", inner.join(","))
}

/// The one-series spec (one call) of `infer_type` pointed at `sim`.
fn one_series(sim: &maas_usage::sim::Simulator, infer_type: &str) -> std::path::PathBuf {
    fixture_for(
        sim,
        "hostile_answers/one-series.yaml",
        &[("infer_type", infer_type)],
    )
}

/// Runs a one-series spec whose only call is answered with `body`; returns stderr.
fn one_series_answered_with(body: String, batch: bool) -> String {
    let sim = sim();
    let infer = if batch { "batch" } else { "real_time" };
    let path = one_series(&sim, infer);
    sim.push_script(Scripted::Body(body));
    let out = run(&path, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "nothing collected: {err}");
    assert_eq!(
        stats_calls(&sim).len(),
        1,
        "an unusable answer is not retried"
    );
    let lines = parse_lp(&stdout(&out));
    assert!(
        lines.iter().all(|l| l.measurement != "maas_usage"),
        "no series from an unusable answer: {}",
        stdout(&out)
    );
    let collector = lines
        .iter()
        .find(|l| l.measurement == "maas_usage_collector")
        .expect("the collector line is still written");
    assert_eq!(collector.int("series_failed"), Some(1));
    assert_eq!(collector.int("series_ok"), Some(0));
    assert_no_secret(&out);
    let first = err.lines().next().unwrap_or_default().to_string();
    assert!(
        first.starts_with("E! no series collected (0 of 1): query=q ")
            && first.contains("unusable answer from"),
        "{err}"
    );
    first
}

#[test]
fn a_count_beyond_i64_is_refused_not_wrapped() {
    let max = u64::MAX.to_string();
    let e = one_series_answered_with(answer_with("total_request_count", Some(&max), false), false);
    assert!(
        e.contains(&format!("field total_request_count: {max} is out of range")),
        "{e}"
    );
    let e = one_series_answered_with(answer_with("total_infer_count", Some(&max), true), true);
    assert!(
        e.contains(&format!("field total_infer_count: {max} is out of range")),
        "{e}"
    );
}

#[test]
fn more_errors_than_requests_is_refused() {
    let e = one_series_answered_with(answer_with("total_error_count", Some("121"), false), false);
    assert!(
        e.contains("total_error_count (121) is larger than total_request_count (120)"),
        "{e}"
    );
}

#[test]
fn a_negative_figure_is_refused() {
    let e = one_series_answered_with(answer_with("total_error_count", Some("-1"), false), false);
    assert!(e.contains("field total_error_count: -1 is negative"), "{e}");
    let e = one_series_answered_with(answer_with("total_token", Some("-0.5"), false), false);
    assert!(e.contains("field total_token: -0.5 is negative"), "{e}");
}

#[test]
fn a_missing_or_null_figure_is_refused_not_zero() {
    let e = one_series_answered_with(answer_with("total_error_count", None, false), false);
    assert!(
        e.contains("field total_error_count is missing (or null)"),
        "{e}"
    );
    let e = one_series_answered_with(
        answer_with("total_prompt_token", Some("null"), false),
        false,
    );
    assert!(
        e.contains("field total_prompt_token is missing (or null)"),
        "{e}"
    );
    let e = one_series_answered_with(answer_with("total_completion_tasks", None, true), true);
    assert!(
        e.contains("field total_completion_tasks is missing (or null)"),
        "{e}"
    );
}

#[test]
fn a_complete_answer_passes_through_exactly() {
    // The harness itself: the same body, untouched, is one collected series.
    let sim = sim();
    let path = one_series(&sim, "batch");
    sim.push_script(Scripted::Body(answer_with("", None, true)));
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = parse_lp(&stdout(&out));
    let s = lines
        .iter()
        .find(|l| l.measurement == "maas_usage")
        .unwrap();
    assert_eq!(s.int("requests"), Some(120));
    assert_eq!(s.int("errors"), Some(7));
    assert_eq!(s.int("total_tokens"), Some(1_234_567));
    assert_eq!(s.int("infer_count"), Some(120));
    assert_eq!(s.int("completed_tasks"), Some(2));
}

#[test]
fn a_hostile_error_message_cannot_forge_lines_or_flood_stderr() {
    let sim = sim();
    let path = one_series(&sim, "real_time");
    let message = format!(
        "bad request\nE! fake line\u{1b}[2J\r\u{202e}reversed\u{9b}31m{}",
        "A".repeat(10 * 1024)
    );
    sim.push_script(Scripted::Status {
        status: 400,
        body: serde_json::json!({"error_code": "ModelArts.0001", "error_msg": message}).to_string(),
        retry_after: None,
    });
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // Failure messages show the start only: the point is that the whole may be huge.
    let short: String = err.chars().take(600).collect();
    assert!(
        !out.stderr.contains(&0x1b),
        "no ESC byte reaches stderr: {short:?}"
    );
    assert!(!err.contains('\u{202e}') && !err.contains('\u{9b}') && !err.contains('\r'));
    assert!(
        err.lines().all(|l| !l.starts_with("E! fake")),
        "no forged line: {short}"
    );
    let first = err.lines().next().unwrap();
    assert!(
        first.contains("HTTP 400 ModelArts.0001: bad request\\u{a}E! fake line\\u{1b}[2J"),
        "{short}"
    );
    assert!(first.contains("AAAA…"), "cut with an ellipsis: {short}");
    assert!(
        err.len() < 2000,
        "10 kB of message are capped: {} bytes",
        err.len()
    );
    parse_lp(&stdout(&out));
}

/// A 200 answer is as hostile as an error: whatever of it a decode error quotes is scrubbed of
/// the credentials, escaped and capped like an error body.
#[test]
fn a_decode_error_quotes_the_answer_scrubbed_escaped_and_capped() {
    let hostile = format!("x {AK} {SK}\nE! forged\u{1b}[2J {}", "y".repeat(5000));
    let body = answer_with(
        "total_request_count",
        Some(&serde_json::Value::String(hostile).to_string()),
        false,
    );
    // `one_series_answered_with` also checks that no secret reached stdout or stderr.
    let first = one_series_answered_with(body, false);
    assert!(first.contains("field total_request_count:"), "{first}");
    assert!(
        first.contains("x *** ***"),
        "scrubbed, not cut out: {first}"
    );
    assert!(
        !first.contains('\u{1b}') && first.contains("E! forged"),
        "on the same line, escaped: {first}"
    );
    assert!(
        first.chars().count() < 800,
        "capped: {} chars",
        first.chars().count()
    );
    let e = one_series_answered_with(
        format!("{{\"total_token\": 1, \"x\": \"{}", "z".repeat(5000)),
        false,
    );
    assert!(
        e.chars().count() < 800,
        "capped: {} chars",
        e.chars().count()
    );
}

/// A 200 answer that is not UTF-8 is an unusable answer of that series, said as such and not
/// retried: the network is fine, and asking again gets the same bytes.
#[test]
fn an_answer_that_is_not_utf8_is_unusable_not_a_network_failure() {
    let sim = sim();
    let path = one_series(&sim, "real_time");
    sim.push_script(Scripted::NotUtf8);
    let out = run(&path, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(stats_calls(&sim).len(), 1, "not retried: {err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("E! no series collected (0 of 1): query=q ")
            && first.contains("unusable answer from")
            && first.contains("not UTF-8 text (so not JSON)"),
        "{err}"
    );
    assert!(!err.contains("cannot reach"), "{err}");
    assert_no_secret(&out);
}

/// A simulator whose Cloud Eye answers `value` for every `filter` datapoint of the first model.
fn forging(filter: &str, value: serde_json::Value) -> maas_usage::sim::Simulator {
    let mut cfg = sim_config();
    cfg.cloud_eye.forged = Some(maas_usage::sim::Forged {
        model_id: DEFAULT_MODELS[0].0.into(),
        filter: filter.into(),
        value,
    });
    start(cfg)
}

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

/// Cloud Eye counts that are not whole numbers from 0 to 10^15 fail their series with one clear
/// `E!` line: nothing is rounded, clamped or wrapped, and the other models stay exact.
#[test]
fn a_cloud_eye_count_out_of_range_fails_its_series_instead_of_being_clamped() {
    let (bad_id, bad_name, _) = DEFAULT_MODELS[0];
    let yesterday = (
        ms("2026-05-20T00:00:00+08:00"),
        ms("2026-05-21T00:00:00+08:00"),
    );
    for (value, why) in [
        (serde_json::json!(u64::MAX), "over 10^15"),
        (serde_json::json!(1e16), "over 10^15"),
        (serde_json::json!(-5), "negative"),
        (serde_json::json!(2.5), "not a whole number"),
        (serde_json::json!("12"), "not a number"),
    ] {
        let sim = forging("sum", value.clone());
        let out = run(
            &fixture_for(
                &sim,
                "hostile_answers/models.yaml",
                &[("metrics", "total_tokens, ttft_p99")],
            ),
            &[],
        );
        let (text, err) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(0), "{value}: partial: {err}");
        let lines = parse_lp(&text);
        let models: Vec<&Line> = lines
            .iter()
            .filter(|l| l.measurement == "maas_model_usage")
            .collect();
        assert!(
            models.iter().all(|l| l.tag("model_id") != Some(bad_id)),
            "{value}: the series with the bad count is not emitted:\n{text}"
        );
        assert_eq!(models.len(), DEFAULT_MODELS.len() - 1, "{value}: {text}");
        for l in &models {
            let id = l.tag("model_id").unwrap();
            let want = sim.model_usage(id, None, yesterday.0, yesterday.1);
            assert_eq!(
                l.int("total_tokens"),
                Some(want.total_tokens as i64),
                "{id}"
            );
        }
        assert!(!text.contains("18446744073709551615"), "{text}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("E! ")).collect();
        assert_eq!(
            errors.len(),
            1,
            "{value}: one line for the one series: {err}"
        );
        let e = errors[0];
        assert!(
            e.starts_with("E! query=models source=cloud_eye (")
                && e.contains(&format!("model={bad_name}"))
                && e.contains("total_tokens")
                && e.contains(why),
            "{value}: {e}"
        );
        assert!(!err.contains("counted as"), "{err}");
        let collector = lines
            .iter()
            .find(|l| l.measurement == "maas_usage_collector")
            .unwrap();
        assert_eq!(collector.int("series_failed"), Some(1), "{value}");
    }
    // The same answer in OTLP: no point at all, let alone i64::MAX.
    let sim = forging("sum", serde_json::json!(u64::MAX));
    let out = run(
        &fixture_for(
            &sim,
            "hostile_answers/models.yaml",
            &[("metrics", "total_tokens")],
        ),
        &["--format", "otlp-json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("9223372036854775807"),
        "{}",
        stdout(&out)
    );
}

/// In period mode a bad count holds its bucket (and the later ones) back, like a failed call:
/// nothing clamped is sent, and the buckets come, exact, once Cloud Eye answers right.
#[test]
fn a_bad_cloud_eye_count_holds_its_period_buckets_back() {
    let sim = forging("sum", serde_json::json!(2.5));
    let path = fixture_for(&sim, "hostile_answers/models-hourly.yaml", &[]);
    let state = tempdir().join("state");
    let with_state = || run(&path, &["--state-dir", state.to_str().unwrap()]);
    let out = with_state();
    let err = stderr(&out);
    assert!(
        parse_lp(&stdout(&out))
            .iter()
            .all(|l| l.measurement != "maas_model_usage"),
        "no bucket while one is bad: {}",
        stdout(&out)
    );
    let failed: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("E! query=hourly source=cloud_eye (bucket "))
        .collect();
    assert_eq!(failed.len(), 1, "one line for the bucket: {err}");
    assert!(
        failed[0].contains("model=DeepSeek-V3: total_tokens at ")
            && failed[0].contains("is 2.5, not a whole number"),
        "{err}"
    );
    sim.configure(|c| c.cloud_eye.forged = None);
    let out = with_state();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let buckets: Vec<Line> = parse_lp(&stdout(&out))
        .into_iter()
        .filter(|l| l.measurement == "maas_model_usage")
        .collect();
    // 04:00 to 08:00 settled (backfill 6 h, delay 2 h): four hours per model.
    assert_eq!(buckets.len(), 4 * DEFAULT_MODELS.len(), "{}", stdout(&out));
    for b in &buckets {
        let end = b.timestamp.unwrap() / 1_000_000;
        let want = sim.model_usage(b.tag("model_id").unwrap(), None, end - 3_600_000, end);
        assert_eq!(b.int("total_tokens"), Some(want.total_tokens as i64));
    }
}

/// Server text reaches stderr only through the one sanitizer: a model named with escape codes,
/// a bell, a carriage return, a line break and a bidi override (by the MaaS monitor) can neither
/// rewrite the terminal nor start a forged `E!` line; and thousands of bad datapoints make one
/// line per failed series, not one per datapoint.
#[test]
fn hostile_names_and_bad_datapoints_can_neither_forge_nor_flood_stderr() {
    let mut cfg = sim_config();
    cfg.dataset.models[0].name = "evil\u{1b}[2J\u{7}\r\nE! forged line\u{202e}".into();
    cfg.cloud_eye.forged = Some(maas_usage::sim::Forged {
        model_id: DEFAULT_MODELS[0].0.into(),
        filter: "sum".into(),
        value: serde_json::json!(2.5),
    });
    let keys = cfg.dataset.keys.iter().filter(|k| !k.is_empty()).count();
    let sim = start(cfg);
    let path = fixture_for(&sim, "hostile_answers/keys.yaml", &[]);
    let out = run(&path, &[]);
    let err = stderr(&out);
    let short: String = err.chars().take(2000).collect();
    assert_eq!(out.status.code(), Some(0), "the other models: {short}");
    for byte in [0x1b, b'\r', 0x07] {
        assert!(
            !out.stderr.contains(&byte),
            "no byte {byte:#x} reaches stderr: {short:?}"
        );
    }
    assert!(!err.contains('\u{202e}'), "{short:?}");
    for line in err.lines() {
        assert!(
            ["E! ", "W! ", "I! ", "D! "]
                .iter()
                .any(|p| line.starts_with(p)),
            "every line has its level: {line:?}"
        );
        assert!(!line.starts_with("E! forged"), "{short}");
    }
    // One line per series of the bad model (one per API key), none per datapoint.
    let failed: Vec<&str> = err.lines().filter(|l| l.starts_with("E! ")).collect();
    assert_eq!(failed.len(), keys, "{short}");
    assert!(
        err.lines().count() <= keys + 2,
        "{} lines: {short}",
        err.lines().count()
    );
    assert!(
        failed[0].contains("model=evil\\u{1b}[2J\\u{7}\\u{d}\\u{a}E! forged line\\u{202e}"),
        "escaped where it stands: {}",
        failed[0]
    );
}

/// Whether `v` holds the string `s` anywhere.
fn holds(v: &serde_json::Value, s: &str) -> bool {
    match v {
        serde_json::Value::String(t) => t == s,
        serde_json::Value::Array(a) => a.iter().any(|x| holds(x, s)),
        serde_json::Value::Object(o) => o.values().any(|x| holds(x, s)),
        _ => false,
    }
}

/// A model named with a screen clear, a window title (OSC), a bell, CR/LF and a bidi override
/// by the MaaS monitor, in every output format: the table shows it escaped through the one
/// sanitizer stderr uses; JSON and OTLP/JSON carry it exactly (JSON escapes it); line protocol
/// and the Prometheus text cannot be broken by it (no line of its own, parsed back by their
/// readers; Prometheus label values keep every other character, as the format allows).
#[test]
fn hostile_server_text_reaches_no_output_raw() {
    let evil = "evil\u{1b}[2J\u{1b}]0;pwned\u{7}\r\nE! forged\u{202e}";
    let mut cfg = sim_config();
    cfg.dataset.models[0].name = evil.into();
    let sim = start(cfg);
    let path = fixture_for(
        &sim,
        "hostile_answers/models.yaml",
        &[("metrics", "total_tokens")],
    );
    let out_in = |format: &str| {
        let out = run(&path, &["--format", format]);
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stderr(&out));
        out
    };
    let no_line_of_its_own = |format: &str, text: &str| {
        assert!(
            text.lines().all(|l| !l.starts_with("E! forged")),
            "{format}: {text}"
        );
    };

    let table = out_in("table");
    for byte in [0x1b, b'\r', 0x07] {
        assert!(
            !table.stdout.contains(&byte),
            "table: no byte {byte:#x}: {:?}",
            stdout(&table)
        );
    }
    let text = stdout(&table);
    assert!(!text.contains('\u{202e}'), "{text:?}");
    assert!(
        text.contains("evil\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}\\u{a}E! forged\\u{202e}"),
        "escaped where it stands: {text}"
    );
    no_line_of_its_own("table", &text);

    let json = json(&out_in("json"));
    assert!(holds(&json, evil), "json carries it exactly: {json}");

    let text = stdout(&out_in("otlp-json"));
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(docs.iter().any(|d| holds(d, evil)), "{text}");

    let text = stdout(&out_in("influx"));
    no_line_of_its_own("influx", &text);
    let models: Vec<Line> = parse_lp(&text)
        .into_iter()
        .filter(|l| l.measurement == "maas_model_usage")
        .collect();
    assert_eq!(models.len(), DEFAULT_MODELS.len(), "{text}");

    let text = stdout(&out_in("prometheus"));
    no_line_of_its_own("prometheus", &text);
    assert!(
        text.lines()
            .all(|l| l.starts_with('#') || l.starts_with("maas_") || l.starts_with("target_info{")),
        "{text:?}"
    );
    promtool_check(&text);

    // `query --raw` shows the answers as received: each of their lines escaped the same way
    // (a bidi override in a string, a carriage return between tokens).
    let sim = common::sim();
    let answer = answer_with("", None, false);
    sim.push_script(Scripted::Body(format!(
        "{{\"note\":\"\u{202e}gnp.exe\",\r\n{}",
        &answer[1..]
    )));
    let out = query(&sim, &["--raw", "--project-id", PROJECT]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text.contains("\\u{202e}gnp.exe"), "{text}");
    assert!(
        !text.contains('\u{202e}') && !text.contains('\r'),
        "{text:?}"
    );
}

/// Thousands of latency datapoints that are not latencies (negative) are left out, said on one
/// `W!` line per metric with how many there were: the series keeps its counts, not the figure.
#[test]
fn bad_latency_datapoints_are_left_out_with_one_warning_per_metric() {
    let sim = forging("max", serde_json::json!(-1));
    let path = fixture_for(&sim, "hostile_answers/keys.yaml", &[]);
    let out = run(&path, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let latency = [
        "ttft_p50",
        "ttft_p99",
        "tpot_p50",
        "tpot_p99",
        "latency_avg",
    ];
    let warned: Vec<&str> = err.lines().filter(|l| l.starts_with("W! ")).collect();
    assert_eq!(warned.len(), latency.len(), "{err}");
    for (w, metric) in warned.iter().zip([
        "latency_avg",
        "tpot_p50",
        "tpot_p99",
        "ttft_p50",
        "ttft_p99",
    ]) {
        let n: usize = w
            .split("Cloud Eye answered ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{w}"));
        assert!(n > 50, "counted, not one line each: {w}");
        assert!(
            w.starts_with(&format!("W! query keys: Cloud Eye answered {n} `{metric}` datapoint(s) that are negative; they are left out")),
            "{w}"
        );
    }
    assert!(!err.contains("E! "), "{err}");
    for l in parse_lp(&stdout(&out))
        .iter()
        .filter(|l| l.measurement == "maas_model_usage")
    {
        let bad = l.tag("model_id") == Some(DEFAULT_MODELS[0].0);
        assert_eq!(l.floats.contains_key("ttft_p99_ms"), !bad, "{l:?}");
        assert!(l.int("total_tokens").is_some(), "the counts stay: {l:?}");
    }
}
