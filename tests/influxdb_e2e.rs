//! End to end against a real InfluxDB 1.x: `run` output (against the simulator) is written to
//! `influxd` and read back through InfluxQL.
//!
//! Runs when `influxd` is on PATH. `.ci/run` installs Debian's `influxdb` and sets
//! `MAAS_USAGE_REQUIRE_INFLUXD=1`, which turns "influxd missing" into a failure.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Influxd {
    child: Child,
    url: String,
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_influxd() -> Option<Influxd> {
    let found = Command::new("influxd")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("MAAS_USAGE_REQUIRE_INFLUXD").is_err(),
            "influxd is required (MAAS_USAGE_REQUIRE_INFLUXD is set) but not on PATH"
        );
        eprintln!("skipped: influxd is not on PATH");
        return None;
    }
    let dir = tempdir();
    let (rpc, http) = (free_port(), free_port());
    let config = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n",
        d = dir.display()
    );
    let conf = dir.join("influxdb.conf");
    std::fs::write(&conf, config).unwrap();
    let child = Command::new("influxd")
        .arg("-config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("influxd starts");
    let db = Influxd {
        child,
        url: format!("http://127.0.0.1:{http}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = ureq::get(&format!("{}/ping", db.url)).call() {
            if r.status().as_u16() == 204 {
                return Some(db);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("influxd did not answer /ping within 20 s");
}

fn influxql(db: &Influxd, q: &str) -> Value {
    let mut r = ureq::post(&format!("{}/query", db.url))
        .query("db", "maas")
        .send_form([("q", q)])
        .unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn run_output_round_trips_through_influxdb() {
    let Some(db) = start_influxd() else { return };
    influxql(&db, "CREATE DATABASE maas");

    let sim = sim();
    let text = example_spec_for(&sim);
    let out = run(&spec_file(&text), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lp = stdout(&out);
    let resp = ureq::post(&format!("{}/write", db.url))
        .query("db", "maas")
        .query("precision", "ns")
        .send(lp.as_bytes())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204, "InfluxDB accepted every line");

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
    assert_eq!(row[1], expected.len());
    assert_eq!(row[2], 0);

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
