//! Cloud Eye at an organisation's scale, against `simulator --models N --keys K`: the fewest
//! calls the API allows (500 metric objects a call under its 3,000-datapoint cap, the coarsest
//! period that keeps the window exact) with exact sums; a `[model]` breakdown that lists and
//! names no key; runs the budget cannot finish, which read whole series (the others failing by
//! name, first in line next run) or the oldest period buckets (the others following, each
//! bucket once); and period buckets read in rounds, each once and exact.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use maas_usage::sim::{Dataset, Size};
use serde_json::Value;

const H: i64 = 3_600_000;

/// `simulator --models N --keys K --ips 4N` with its request log, and the dataset it serves.
struct Sized {
    _sim: SimProcess,
    url: String,
    log: PathBuf,
    data: Dataset,
}

impl Sized {
    fn start(models: usize, keys: usize) -> Sized {
        let log = tempdir().join("sim.jsonl");
        let (m, k, ips) = (
            models.to_string(),
            keys.to_string(),
            (4 * models).to_string(),
        );
        let sim = SimProcess::start(&[
            "--models",
            &m,
            "--keys",
            &k,
            "--ips",
            &ips,
            "--now",
            NOW,
            "--log",
            log.to_str().unwrap(),
        ]);
        let data = Dataset::sized(Size {
            models,
            keys,
            ips: 4 * models,
        });
        Sized {
            url: sim.url.clone(),
            _sim: sim,
            log,
            data,
        }
    }

    /// The calls logged since the last `calls`, whose path ends with `end`.
    fn calls(&self, end: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|c| c["path"].as_str().unwrap().ends_with(end))
            .collect()
    }

    fn clear(&self) {
        std::fs::write(&self.log, "").unwrap();
    }
}

const BATCH: &str = "/batch-query-metric-data";
const LIST: &str = "/metrics";
const NAMES: &str = "/maas/monitor/instances";

fn run_with(path: &Path, state: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut c = authed();
    for (k, v) in env {
        c.env(k, v);
    }
    c.args([
        "run",
        "--now",
        NOW,
        "--state-dir",
        state.to_str().unwrap(),
        "--spec",
    ])
    .arg(path)
    .output()
    .unwrap()
}

fn model_lines(out: &std::process::Output) -> Vec<Line> {
    parse_lp(&stdout(out))
        .into_iter()
        .filter(|l| l.measurement == "maas_model_usage")
        .collect()
}

/// A line's series: its model id and key.
fn series_of(l: &Line) -> Id {
    (
        l.tag("model_id").unwrap().to_string(),
        l.tag("api_key").map(String::from),
    )
}

/// Every line's counts are the simulator's exact sums over `[end - len, end)`.
fn assert_exact(sim: &Sized, lines: &[Line]) {
    let now = ms(NOW);
    for l in lines {
        let (model, key) = series_of(l);
        let end = l.timestamp.unwrap() / 1_000_000;
        let len = l.int("window_seconds").or(l.int("period_seconds")).unwrap() * 1000;
        let want = sim
            .data
            .model_usage(&model, key.as_deref(), end - len, end, now);
        assert_eq!(
            (l.int("total_tokens"), l.int("requests")),
            (Some(want.total_tokens as i64), Some(want.requests as i64)),
            "{model} {key:?} to {end}"
        );
    }
}

/// Every batch call carries at most 500 objects and 3,000 datapoints: nothing moved `from`.
fn assert_within_the_caps(batches: &[Value]) {
    for b in batches {
        let body: Value = serde_json::from_str(b["body"].as_str().unwrap()).unwrap();
        let objects = body["metrics"].as_array().unwrap().len() as i64;
        let period: i64 = body["period"].as_str().unwrap().parse().unwrap();
        let points =
            (body["to"].as_i64().unwrap() - body["from"].as_i64().unwrap()) / (period * 1000);
        assert!(
            objects <= 500 && objects * points <= 3000,
            "{objects} x {points}"
        );
    }
}

#[test]
fn a_day_of_every_key_costs_the_fewest_calls_the_api_allows_and_is_exact() {
    // 20 models x 5 keys, the 13 default metrics (8 counts, 5 latencies): 800 and 500 objects.
    let sim = Sized::start(20, 5);
    let state = tempdir().join("state");
    let path = spec_at(&sim.url)
        .query("name: q, source: cloud_eye, range: last_24h, breakdown: [model, api_key]")
        .write();
    let out = run_with(&path, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = model_lines(&out);
    assert_eq!(lines.len(), 100);
    assert_exact(&sim, &lines);
    // One listing of one metric (120 series), two pages of names, and the day from 02:00 UTC
    // read at hours to 04:00, at four hours to 00:00, at hours to 02:00: 2 + 1 calls a span.
    assert_eq!(sim.calls(LIST).len(), 1);
    assert_eq!(sim.calls(NAMES).len(), 2);
    let batches = sim.calls(BATCH);
    assert_eq!(batches.len(), 9, "3 spans x (2 + 1)");
    assert_within_the_caps(&batches);
    // Discovery cached: the batches alone.
    sim.clear();
    let again = run_with(&path, &state, &[]);
    assert_eq!(model_lines(&again).len(), 100);
    assert_eq!(
        (
            sim.calls(LIST).len(),
            sim.calls(NAMES).len(),
            sim.calls(BATCH).len()
        ),
        (0, 0, 9)
    );
}

#[test]
fn a_model_breakdown_lists_and_names_no_key() {
    let sim = Sized::start(20, 5);
    let state = tempdir().join("state");
    let path = spec_at(&sim.url)
        .query("name: q, source: cloud_eye, range: last_24h")
        .write();
    let out = run_with(&path, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = model_lines(&out);
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| l.tag("api_key").is_none()));
    assert_exact(&sim, &lines);
    // No ListMetrics (it lists every key), names of the models alone, no key in a batch.
    assert_eq!(sim.calls(LIST).len(), 0, "ListMetrics lists every key");
    let names = sim.calls(NAMES);
    assert_eq!(names.len(), 1);
    for n in &names {
        let body: Value = serde_json::from_str(n["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            body["query"],
            serde_json::json!([{"dim_name": "maas_api_id"}])
        );
    }
    for b in sim.calls(BATCH) {
        assert!(!b["body"].as_str().unwrap().contains("maas_key_id"));
    }
}

#[test]
fn a_budget_too_small_reads_whole_series_and_the_rest_come_first_next_run() {
    // 10 x 10 per key: 100 series, 9 calls at the fewest; 5 Cloud Eye calls a (1 s) window.
    let sim = Sized::start(10, 10);
    let state = tempdir().join("state");
    let path = spec_at(&sim.url)
        .query("name: q, source: cloud_eye, range: last_24h, breakdown: [model, api_key]")
        .limits("ces_requests_per_minute: 5")
        .write();
    let window = [("MAAS_USAGE_RATE_WINDOW_MS", "1000")];
    let mut seen: BTreeSet<Id> = BTreeSet::new();
    let mut runs = 0;
    while seen.len() < 100 {
        runs += 1;
        assert!(runs <= 10, "{} of 100 series after 9 runs", seen.len());
        sim.clear();
        let out = run_with(&path, &state, &window);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        let lines = model_lines(&out);
        assert!(!lines.is_empty(), "every run reads some: {err}");
        assert_exact(&sim, &lines);
        // (A window of one second frees the listing's slot before the batches.)
        let batches = sim.calls(BATCH).len();
        assert!(batches <= 5, "{batches} batch calls");
        assert_within_the_caps(&sim.calls(BATCH));
        for l in &lines {
            // First in line: no series comes twice before every one has come once (the lines
            // are in line order; once all have come, the first come again).
            if seen.len() < 100 {
                assert!(seen.insert(series_of(l)), "{:?} again", series_of(l));
            }
        }
        let left = 100 - seen.len();
        if left > 0 {
            // The others fail by name, said in a few lines, not one per series.
            assert!(
                err.contains("not asked this run") && err.contains("first in line next run"),
                "{err}"
            );
            let errors = err.lines().filter(|l| l.starts_with("E! ")).count();
            assert!(errors <= 3, "{errors} E! lines: {err}");
        }
    }
    assert!(
        runs >= 3,
        "5 calls a run cannot read 100 series at once: {runs} runs"
    );
}

/// A series: its model id and API key.
type Id = (String, Option<String>);
/// The series of each bucket, by its end.
type Buckets = BTreeMap<i64, BTreeSet<Id>>;

/// Runs a day of hourly buckets per key until a run emits nothing, with `limit` Cloud Eye
/// calls a (1 s) window; checks each run's calls, that buckets come oldest first and each
/// once, a sample exact. Returns the runs that emitted, and every bucket's series.
fn backfill(sim: &Sized, limit: u32) -> (usize, Buckets) {
    let state = tempdir().join("state");
    let path = spec_at(&sim.url)
        .query("name: q, source: cloud_eye, range: {every: 1h, delay: 2h, backfill: 1d}, breakdown: [model, api_key]")
        .limits(&format!("ces_requests_per_minute: {limit}, timeout: 120s"))
        .write();
    let window = [("MAAS_USAGE_RATE_WINDOW_MS", "1000")];
    let mut buckets = Buckets::new();
    for runs in 0..6 {
        sim.clear();
        let out = run_with(&path, &state, &window);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let lines = model_lines(&out);
        if lines.is_empty() {
            return (runs, buckets);
        }
        let batches = sim.calls(BATCH).len();
        assert!(batches <= limit as usize, "{batches} batch calls");
        assert_within_the_caps(&sim.calls(BATCH));
        let mut last = 0;
        for l in &lines {
            let end = l.timestamp.unwrap() / 1_000_000;
            assert!(end >= last, "buckets in order, oldest first");
            last = end;
            assert!(
                buckets.entry(end).or_default().insert(series_of(l)),
                "a bucket twice"
            );
        }
        let sample: Vec<Line> = lines
            .into_iter()
            .filter(|l| l.tag("model_id") == Some(sim.data.models[7].id.as_str()))
            .collect();
        assert_exact(sim, &sample);
    }
    panic!("the backfill never finished");
}

#[test]
fn period_buckets_come_in_rounds_each_once_exact_and_the_budget_takes_the_oldest() {
    // 50 x 20 per key, a day of hours: 1,000 series x 13 metrics a bucket (13,000 figures),
    // read in spans of 6 hours (2 x 500 counts and 2 x 500 latencies under the 3,000 cap):
    // 104 calls, in rounds of at most three spans.
    let sim = Sized::start(50, 20);
    let (runs, whole) = backfill(&sim, 200);
    assert_eq!(runs, 1, "one run reads it all, round after round");
    let ends: Vec<i64> = whole.keys().copied().collect();
    assert!(ends.len() >= 20, "{ends:?}");
    assert!(
        ends.windows(2).all(|w| w[1] - w[0] == H),
        "no bucket skipped"
    );
    assert!(whole.values().all(|s| s.len() == 1000));
    // 60 calls a run read the oldest two spans; the next runs go on from there.
    let (runs, cut) = backfill(&sim, 60);
    assert!(runs >= 2, "{runs} runs");
    assert_eq!(cut, whole, "the same buckets, each once");
}
