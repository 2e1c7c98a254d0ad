//! Answers the API should never give: absurd, inconsistent or incomplete statistics. Each one
//! fails its series with a clear stderr line; none becomes a zero or a wrapped number.

mod common;

use common::*;
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
    fixture(
        "hostile_answers/one-series.yaml",
        &[
            ("url", &sim.url()),
            ("project", PROJECT),
            ("infer_type", infer_type),
        ],
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
