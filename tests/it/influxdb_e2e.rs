//! End to end against a real InfluxDB 1.x: `run` output (against the simulator) is written to
//! `influxd` and read back through InfluxQL.
//!
//! Runs when `influxd` is on PATH. `.ci/run` installs Debian's `influxdb` and sets
//! `MAAS_USAGE_REQUIRE_INFLUXD=1`, which turns "influxd missing" into a failure.

use crate::common;

use common::influx::{influxql, start_influxd, write};
use common::*;
use serde_json::Value;

#[test]
fn run_output_round_trips_through_influxdb() {
    let Some(db) = start_influxd() else { return };
    influxql(&db, "CREATE DATABASE maas");

    let sim = sim();
    let text = example_spec_for(&sim);
    let out = run(&spec_file(&text), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lp = stdout(&out);
    write(&db, &lp);

    let expected = expected_series(&sim, &text);
    let result = influxql(
        &db,
        "SELECT total_tokens, prompt_tokens, completion_tokens, requests, errors, error_ratio, window_seconds, infer_count, completed_tasks, env, infer_type, key_group, project_id, \"query\", region, service_type FROM maas_usage",
    );
    let series = &result["results"][0]["series"][0];
    let cols: Vec<&str> = series["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let rows = series["values"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len(), "one point per series: {result}");
    let col = |row: &Value, name: &str| row[cols.iter().position(|c| *c == name).unwrap()].clone();
    for (key, usage) in &expected {
        let row = rows
            .iter()
            .find(|r| {
                col(r, "query") == key.query.as_str()
                    && col(r, "service_type") == key.service_type.name()
                    && col(r, "key_group") == key.key_group.as_str()
            })
            .unwrap_or_else(|| panic!("{key} not in InfluxDB"));
        assert_eq!(col(row, "total_tokens"), usage.total_tokens, "{key}");
        assert_eq!(col(row, "prompt_tokens"), usage.prompt_tokens, "{key}");
        assert_eq!(
            col(row, "completion_tokens"),
            usage.completion_tokens,
            "{key}"
        );
        assert_eq!(col(row, "requests"), usage.requests, "{key}");
        assert_eq!(col(row, "errors"), usage.errors, "{key}");
        let ratio = col(row, "error_ratio").as_f64().unwrap();
        assert!((ratio - usage.error_ratio()).abs() < 1e-12, "{key}");
        assert_eq!(col(row, "infer_type"), key.infer_type.name());
        assert_eq!(col(row, "project_id"), PROJECT);
        assert_eq!(col(row, "region"), "cn-southwest-2");
        assert_eq!(col(row, "env"), "demo");
        if key.infer_type.name() == "batch" {
            assert_eq!(col(row, "infer_count"), usage.infer_count);
            assert_eq!(col(row, "completed_tasks"), usage.completed_tasks);
        } else {
            assert_eq!(col(row, "infer_count"), Value::Null);
        }
    }

    let collector = influxql(
        &db,
        "SELECT series_ok, series_failed, api_calls FROM maas_usage_collector",
    );
    let row = &collector["results"][0]["series"][0]["values"][0];
    assert_eq!(row[1], expected.len() + EXAMPLE_MODELS);
    assert_eq!(row[2], 0);

    // Per model: integer tokens, float latency, the model as a tag.
    let models = influxql(
        &db,
        "SELECT total_tokens, ttft_p99_ms, model FROM maas_model_usage",
    );
    let rows = models["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap();
    assert_eq!(rows.len(), EXAMPLE_MODELS, "{models}");
    for r in rows {
        assert!(r[1].as_u64().is_some_and(|t| t > 0), "{r}");
        assert!(r[2].as_f64().is_some_and(|t| t > 0.0), "{r}");
        assert!(r[3].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    }

    // The same window written again is the same point: re-emission is idempotent.
    let again = run(&spec_file(&text), &[]);
    ureq::post(&format!("{}/write", db.url))
        .query("db", "maas")
        .send(stdout(&again).as_bytes())
        .unwrap();
    let count = influxql(&db, "SELECT count(total_tokens) FROM maas_usage");
    assert_eq!(
        count["results"][0]["series"][0]["values"][0][1],
        expected.len()
    );
}
