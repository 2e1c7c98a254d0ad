//! Period mode: a simulated day of runs every 10 minutes (some failing) delivers every hourly
//! bucket exactly once to an OTLP receiver and at least once to a real InfluxDB, the buckets add
//! up to the simulator's exact total for the day, and nothing is emitted before it settles.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::influx::{influxql, start_influxd, write};
use common::otlp::{Answer, HttpReceiver};
use common::*;
use maas_usage::sim::model::Selection;
use maas_usage::sim::Simulator;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, AggregationTemporality::Cumulative,
    AggregationTemporality::Delta,
};

const H: i64 = 3_600_000;

/// The `(start, end, value)` of each point of the monotonic Sum `name` in `r`, checked to be
/// of `temporality` and in time order.
fn period_points(
    r: &common::otlp::Received,
    name: &str,
    temporality: AggregationTemporality,
) -> Vec<(i64, i64, i64)> {
    let mut out = Vec::new();
    for m in &r.request.resource_metrics[0].scope_metrics[0].metrics {
        if m.name != name {
            continue;
        }
        let Some(Data::Sum(sum)) = &m.data else {
            panic!("period points are Sums: {m:?}")
        };
        assert_eq!(sum.aggregation_temporality, temporality as i32);
        assert!(sum.is_monotonic);
        for p in &sum.data_points {
            let (start, end) = (
                (p.start_time_unix_nano / 1_000_000) as i64,
                (p.time_unix_nano / 1_000_000) as i64,
            );
            if let Some(&(_, last_end, _)) = out.last() {
                assert!(end > last_end, "points in time order");
            }
            let Some(number_data_point::Value::AsInt(v)) = p.value else {
                panic!("integer points: {p:?}")
            };
            out.push((start, end, v));
        }
    }
    out
}

/// `run` of `path` on `state` at `now_ms`, with the canary credentials.
fn run_command(path: &Path, state: &Path, now_ms: i64) -> std::process::Command {
    let mut c = authed();
    c.arg("run")
        .arg("--spec")
        .arg(path)
        .arg("--state-dir")
        .arg(state)
        .args(["--now", &rfc(now_ms)]);
    c
}

fn run_at(path: &Path, state: &Path, now_ms: i64, env: &[(&str, &str)]) -> std::process::Output {
    let mut c = run_command(path, state, now_ms);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn a_simulated_day_delivers_every_bucket_once_to_otlp_and_at_least_once_to_influxdb() {
    let day = ms("2026-05-20T00:00:00+08:00");
    let sim = start(sim_config());
    let rx = HttpReceiver::start();
    let otlp_spec = fixture_otlp(&sim, &rx.url, "period/hourly-otlp.yaml");
    let influx_spec = fixture_for(&sim, "period/hourly.yaml", &[]);
    let (otlp_state, influx_state) = (tempdir().join("otlp"), tempdir().join("influx"));
    let db = start_influxd();
    if let Some(db) = &db {
        influxql(db, "CREATE DATABASE maas");
    }

    // OTLP points received: bucket end -> (start, running total, emitted at now).
    let mut otlp_points: BTreeMap<i64, Vec<(i64, i64, i64)>> = BTreeMap::new();
    let mut seen_requests = 0;
    let mut influx_writes = 0;
    let mut now = day;
    let mut step = 0;
    while now <= day + 28 * H {
        sim.configure(|c| {
            c.now = Some(chrono::DateTime::from_timestamp_millis(now).unwrap());
            // Every fifth run the cloud is down for the InfluxDB pipeline's run.
            c.faults.fail_ratio = 0.0;
        });
        // The collector refuses every seventh export: nothing may be recorded then.
        let refuse = step % 7 == 3;
        if refuse {
            rx.push(Answer::Status(400, "collector refused"));
        }
        let out = run_at(&otlp_spec, &otlp_state, now, &[]);
        assert_eq!(
            out.status.code(),
            Some(if refuse { 1 } else { 0 }),
            "step {step}: {}",
            stderr(&out)
        );
        let got = rx.requests();
        // A refused export is not among the received (the receiver keeps what it accepted).
        for r in &got[seen_requests..] {
            for (start, end, v) in period_points(r, "maas.usage.period.total_tokens", Cumulative) {
                assert!(
                    end <= now - 2 * H,
                    "bucket ending {} emitted at {} before it settled",
                    rfc(end),
                    rfc(now)
                );
                otlp_points.entry(end).or_default().push((start, v, now));
            }
        }
        seen_requests = got.len();

        let cloud_down = step % 5 == 2;
        sim.configure(|c| c.faults.fail_ratio = if cloud_down { 1.0 } else { 0.0 });
        let out = run_at(&influx_spec, &influx_state, now, &[]);
        let lines = parse_lp(&stdout(&out));
        let buckets = lines
            .iter()
            .filter(|l| l.measurement == "maas_usage")
            .count();
        if cloud_down && buckets == 0 {
            assert!(
                out.status.code() == Some(1) || stderr(&out).is_empty(),
                "{}",
                stderr(&out)
            );
        }
        for l in lines.iter().filter(|l| l.measurement == "maas_usage") {
            assert!(
                l.timestamp.unwrap() / 1_000_000 <= now - 2 * H,
                "settled only"
            );
            assert_eq!(l.int("period_seconds"), Some(3600));
        }
        if let Some(db) = &db {
            write(db, &stdout(&out));
            influx_writes += 1;
        }
        now += 10 * 60_000;
        step += 1;
    }

    // Exactly once toward OTLP for every bucket of the day, and exact totals.
    let expected_day = sim.expected(&Selection {
        service_type: 2,
        batch: false,
        start_ms: day,
        end_ms: day + 24 * H,
        api_keys: None,
        ips: None,
    });
    // Cumulative: one start for the series, the running total never falls, each bucket is the
    // difference between its end's total and the previous end's.
    let starts: BTreeSet<i64> = otlp_points.values().flatten().map(|p| p.0).collect();
    assert_eq!(starts.len(), 1, "one start time for the series: {starts:?}");
    let first_start = *starts.iter().next().unwrap();
    let mut total = 0i64;
    for h in 0..24 {
        let end = day + (h + 1) * H;
        let emitted = otlp_points
            .get(&end)
            .unwrap_or_else(|| panic!("bucket ending {} never emitted", rfc(end)));
        assert_eq!(
            emitted.len(),
            1,
            "bucket ending {} emitted {} times",
            rfc(end),
            emitted.len()
        );
        let before = if end - H == first_start {
            0
        } else {
            otlp_points[&(end - H)][0].1
        };
        assert!(emitted[0].1 >= before, "a cumulative total never falls");
        total += emitted[0].1 - before;
    }
    assert_eq!(total as u64, expected_day.total_tokens);
    assert!(expected_day.total_tokens > 0);

    // At least once toward InfluxDB, idempotent there: the day sums to the same total.
    if let Some(db) = &db {
        assert!(influx_writes > 100);
        let q = format!(
            "SELECT sum(total_tokens), count(total_tokens) FROM maas_usage WHERE time > {}ms AND time <= {}ms",
            day,
            day + 24 * H
        );
        let r = influxql(db, &q);
        let row = &r["results"][0]["series"][0]["values"][0];
        assert_eq!(row[1], expected_day.total_tokens, "{r}");
        assert_eq!(row[2], 24);
    }
}

#[test]
fn a_kill_between_output_and_checkpoint_means_one_resend_and_no_gap() {
    let sim = start(sim_config());
    let spec = fixture_for(&sim, "period/hourly.yaml", &[]);
    let state = tempdir().join("state");
    let t0 = ms("2026-05-21T10:00:00+08:00");
    sim.configure(|c| c.now = Some(chrono::DateTime::from_timestamp_millis(t0 + 5 * H).unwrap()));
    let buckets = |o: &std::process::Output| -> Vec<i64> {
        parse_lp(&stdout(o))
            .iter()
            .filter(|l| l.measurement == "maas_usage")
            .map(|l| l.timestamp.unwrap() / 1_000_000)
            .collect()
    };
    // A normal run sets the checkpoint: buckets ending 06:00, 07:00, 08:00.
    let first = run_at(&spec, &state, t0, &[]);
    assert_eq!(buckets(&first).len(), 3, "{}", stderr(&first));
    // Two hours later, the run is killed after writing and before recording.
    let crashed_run = run_at(
        &spec,
        &state,
        t0 + 2 * H,
        &[("MAAS_USAGE_TEST_CRASH_BEFORE_CHECKPOINT", "1")],
    );
    assert!(!crashed_run.status.success(), "the hook kills the process");
    let crashed = buckets(&crashed_run);
    assert_eq!(crashed, vec![t0 - H, t0], "{}", stderr(&crashed_run));
    // The next run sends them once more, then the one that settled since: no gap.
    let next = run_at(&spec, &state, t0 + 3 * H, &[]);
    assert_eq!(buckets(&next), vec![t0 - H, t0, t0 + H]);
    let after = run_at(&spec, &state, t0 + 3 * H, &[]);
    assert!(buckets(&after).is_empty(), "then nothing twice");
    let all: Vec<i64> = [buckets(&first), buckets(&next)].concat();
    assert!(
        all.windows(2).all(|w| w[1] - w[0] == H),
        "contiguous: {all:?}"
    );
}

#[test]
fn catching_up_stays_within_the_budget_and_says_so() {
    let sim = start(sim_config());
    let spec = fixture_for(&sim, "period/backlog.yaml", &[]);
    let state = tempdir().join("state");
    let plan = bin()
        .args(["plan", "--now", NOW, "--state-dir"])
        .arg(&state)
        .arg("--spec")
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        stdout(&plan)
            .contains("cn-southwest-2/backlog/preset/real_time/all: 46 settled buckets pending"),
        "{}",
        stdout(&plan)
    );
    assert!(
        stdout(&plan).contains("19 planned in this run"),
        "{}",
        stdout(&plan)
    );
    let out = run(&spec, &["--state-dir", state.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("W! query=backlog service_type=preset infer_type=real_time key_group=all: 46 settled buckets pending; this run emits the oldest 19"), "{}", stderr(&out));
    let lines = parse_lp(&stdout(&out));
    let collector = lines.last().unwrap();
    assert_eq!(
        collector.int("api_calls"),
        Some(20),
        "never more than the budget"
    );
    let first: Vec<i64> = lines
        .iter()
        .filter(|l| l.tag("query") == Some("backlog"))
        .map(|l| l.timestamp.unwrap())
        .collect();
    assert_eq!(first.len(), 19);
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "oldest first, in order"
    );

    let shown = bin()
        .args(["state", "show", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        stdout(&shown).contains("cn-southwest-2/backlog/preset/real_time/all"),
        "{}",
        stdout(&shown)
    );
    let reset = bin()
        .args(["state", "reset", "--series", "backlog", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(
        stdout(&reset),
        "reset cn-southwest-2/backlog/preset/real_time/all (influx-stdout)\n"
    );
    let missing = bin()
        .args(["state", "reset", "--series", "nope", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn period_mode_needs_a_state_directory() {
    let sim = start(sim_config());
    let spec = fixture_for(&sim, "period/hourly.yaml", &[]);
    let out = run(&spec, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("state directory"), "{}", stderr(&out));
    assert!(sim.requests().is_empty());
}

/// The value of the sample `name{...maas_query="hourly"...}` in a Prometheus exposition.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("maas_query=\"hourly\""))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn in_prometheus_period_buckets_are_counters_of_running_totals_across_runs() {
    let sim = start(sim_config());
    let text = fixture_text_for(&sim, "period/hourly.yaml", &[]);
    let spec = spec_file(&text.replace("format: influx", "format: prometheus"));
    let state = tempdir().join("state");
    let total = |from: i64, to: i64| {
        sim.expected(&Selection {
            service_type: 2,
            batch: false,
            start_ms: from,
            end_ms: to,
            api_keys: None,
            ips: None,
        })
        .total_tokens
    };
    let scrape = |now: i64| {
        sim.configure(|c| c.now = Some(chrono::DateTime::from_timestamp_millis(now).unwrap()));
        let out = run_at(&spec, &state, now, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    // At 10:00 with 5 h of backfill and 2 h to settle: the buckets 05:00 to 08:00.
    let t0 = ms("2026-05-21T10:00:00+08:00");
    let first_start = ms("2026-05-21T05:00:00+08:00");
    let first = scrape(t0);
    assert!(
        first.contains("# TYPE maas_usage_period_tokens_total counter"),
        "{first}"
    );
    let c0 = sample(&first, "maas_usage_period_tokens_total");
    assert_eq!(c0, total(first_start, ms("2026-05-21T08:00:00+08:00")));
    assert!(c0 > 0);
    promtool_check(&first);
    // The page shows the buckets through their totals only (they are let go of as they come),
    // and they count as collected: three buckets of each period series.
    let counters = first
        .lines()
        .filter(|l| l.starts_with("maas_usage_period_tokens_total{"))
        .count();
    let collected = first
        .lines()
        .find(|l| l.starts_with("maas_collector_series{") && l.contains("outcome=\"ok\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<usize>().ok());
    assert_eq!(collected, Some(3 * counters), "{first}");

    // Two hours later, two more buckets: the counter grows by exactly them.
    let t1 = t0 + 2 * H;
    let second = scrape(t1);
    let c1 = sample(&second, "maas_usage_period_tokens_total");
    assert_eq!(c1, total(first_start, ms("2026-05-21T10:00:00+08:00")));
    assert!(c1 > c0);
    // Nothing new settled: the counter holds (no reset for the scraper to see).
    let again = scrape(t1);
    assert_eq!(sample(&again, "maas_usage_period_tokens_total"), c1);
}

#[test]
fn a_shared_state_directory_shows_each_spec_only_its_own_counters() {
    let sim = start(sim_config());
    let text = fixture_text_for(&sim, "period/hourly.yaml", &[])
        .replace("format: influx", "format: prometheus");
    let a = spec_file(&text);
    let b = spec_file(&text.replace("name: hourly", "name: other"));
    let state = tempdir().join("state");
    let t0 = ms("2026-05-21T10:00:00+08:00");
    let out = run_at(&b, &state, t0, &[]);
    assert!(stdout(&out).contains("maas_query=\"other\""));
    let out = run_at(&a, &state, t0, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("maas_query=\"hourly\""), "{text}");
    assert!(
        !text.contains("maas_query=\"other\""),
        "another spec's counters are not this one's: {text}"
    );
}

/// `hourly.yaml` as Prometheus text, with `extra` queries (YAML list items) after `hourly`.
fn hourly_prometheus(sim: &Simulator, extra: &str) -> String {
    fixture_text_for(sim, "period/hourly.yaml", &[])
        .replace("format: influx", "format: prometheus")
        .replace("output:", &format!("{extra}output:"))
}

/// The value of `name{...maas_query="hourly"...}` in an exposition, if it is there.
fn sample_if_any(text: &str, name: &str) -> Option<u64> {
    let any = text
        .lines()
        .any(|l| l.starts_with(&format!("{name}{{")) && l.contains("maas_query=\"hourly\""));
    any.then(|| sample(text, name))
}

/// `run_at` of `spec` at `now` while another process (this test) holds the lock file `lock` of
/// `state`.
fn run_while_held(spec: &Path, state: &Path, lock: &str, now: i64) -> std::process::Output {
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(state.join(lock))
        .unwrap();
    held.lock().unwrap();
    run_at(spec, state, now, &[])
}

/// A run that cannot take the destination's period lock (another run holds it) emits no
/// bucket and no counter of the period series: the counters it could read without the lock
/// may be older than those the other run commits before this one writes.
#[test]
fn a_run_without_the_period_lock_writes_no_period_counter() {
    let sim = start(sim_config());
    let text = hourly_prometheus(&sim, "").replace("timeout: 10s", "timeout: 2s");
    let spec = spec_file(&text);
    let state = tempdir().join("state");
    let t0 = ms("2026-05-21T10:00:00+08:00");
    let first = stdout(&run_at(&spec, &state, t0, &[]));
    assert!(sample(&first, "maas_usage_period_tokens_total") > 0);
    let out = run_while_held(&spec, &state, "period-prometheus-stdout.lock", t0 + 2 * H);
    assert!(
        stderr(&out).contains("W! another run holds the period-mode lock"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        sample_if_any(&stdout(&out), "maas_usage_period_tokens_total"),
        None,
        "{}",
        stdout(&out)
    );
}

/// Two specs with the same period query write one textfile on one state directory; B (with a
/// window query too, on a slow simulator) cannot get the period lock, and while its window
/// call is out, A commits newer counters and writes them. What B writes after must not take
/// the counter back: it leaves the period counters out. The test holds the lock until B says
/// it gave up, then lets A run: events, not sleeps.
#[test]
fn overlapping_runs_never_take_a_prometheus_counter_back() {
    let fast = start(sim_config());
    // B signs with a key of its own: its calls to the slow simulator never hold A's up (one
    // probe per credential at a time, across processes).
    let (b_ak, b_sk) = (
        "AKSECONDRUN000000001",
        "SKSECONDRUNxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    );
    let mut cfg = sim_config();
    cfg.faults.latency = std::time::Duration::from_secs(2);
    cfg.credentials = vec![maas_usage::sim::SimCredential {
        ak: b_ak.into(),
        sk: b_sk.into(),
        token: None,
    }];
    let slow = start(cfg);
    let a = spec_file(&hourly_prometheus(&fast, "").replace("timeout: 10s", "timeout: 20s"));
    let b = spec_file(
        &hourly_prometheus(&slow, "  - name: today\n    range: today\n")
            .replace("timeout: 10s", "timeout: 6s"),
    );
    let dir = tempdir();
    let (state, textfile) = (dir.join("state"), dir.join("tf.prom"));
    let to_textfile = |mut c: std::process::Command| {
        c.args(["--output", textfile.to_str().unwrap()]);
        c
    };
    let counter = || {
        let text = std::fs::read_to_string(&textfile).unwrap();
        sample_if_any(&text, "maas_usage_period_tokens_total")
    };
    let t0 = ms("2026-05-21T10:00:00+08:00");
    let out = to_textfile(run_command(&a, &state, t0)).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let c0 = counter().unwrap();

    // Another run holds the destination's lock while B starts.
    let lock_file = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("period-prometheus-")
        })
        .unwrap();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_file)
        .unwrap();
    lock.lock().unwrap();
    let mut run_b = to_textfile(run_command(&b, &state, t0 + 2 * H))
        .env("HW_ACCESS_KEY", b_ak)
        .env("HW_SECRET_KEY", b_sk)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut b_err = std::io::BufReader::new(run_b.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("holds the period-mode lock") {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut b_err, &mut line).unwrap();
        assert!(n > 0, "B ended without waiting for the lock: {said}");
        said.push_str(&line);
    }
    // B gave the period series up and its window call is out: A runs, later, and commits.
    drop(lock);
    let out = to_textfile(run_command(&a, &state, t0 + 2 * H))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let c1 = counter().unwrap();
    assert!(c1 > c0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut b_err, &mut rest).unwrap();
    let status = run_b.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{said}{rest}");
    let text = std::fs::read_to_string(&textfile).unwrap();
    assert!(
        text.contains("maas_query=\"today\""),
        "B wrote last: {said}{rest}{text}"
    );
    let after = counter();
    assert!(
        after.is_none_or(|c| c >= c1),
        "the counter went back from {c1} to {after:?}: {text}"
    );
}

/// A period lock that cannot be taken at all (a directory or a symlink where the lock file
/// should be) is the operator's to fix: the period series are held back with an `E!` line
/// naming it, and the run exits 1 (the window query is still delivered). A lock another run
/// merely holds stays a `W!` line and exit 0.
#[test]
fn an_unusable_period_lock_holds_the_period_series_with_an_error_and_exit_1() {
    let sim = start(sim_config());
    let text = fixture_text_for(&sim, "period/hourly.yaml", &[])
        .replace("timeout: 10s", "timeout: 2s")
        .replace("output:", "  - name: today\n    range: today\noutput:");
    let spec = spec_file(&text);
    let t0 = ms("2026-05-21T10:00:00+08:00");
    let queries = |o: &std::process::Output| -> BTreeSet<String> {
        parse_lp(&stdout(o))
            .iter()
            .filter(|l| l.measurement == "maas_usage")
            .filter_map(|l| l.tag("query").map(str::to_string))
            .collect()
    };
    let today: BTreeSet<String> = ["today".to_string()].into();
    type Plant = fn(&Path);
    let unusable: [(&str, Plant); 2] = [
        ("a directory", |p| std::fs::create_dir(p).unwrap()),
        ("a symlink", |p| {
            std::os::unix::fs::symlink(p.with_file_name("elsewhere"), p).unwrap()
        }),
    ];
    for (what, plant) in unusable {
        let state = tempdir().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let lock = state.join("period-influx-stdout.lock");
        plant(&lock);
        for _ in 0..2 {
            let out = run_at(&spec, &state, t0, &[]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{what}: {err}");
            assert_error_line(
                &err,
                &["period-mode lock", &lock.display().to_string(), "remove"],
            );
            assert_eq!(queries(&out), today, "{what}: {err}");
        }
    }
    // Merely held by another run: a warning, exit 0, and the window query.
    let state = tempdir().join("state");
    run_at(&spec, &state, t0, &[]);
    let out = run_while_held(&spec, &state, "period-influx-stdout.lock", t0 + 2 * H);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("W! another run holds the period-mode lock"),
        "{err}"
    );
    assert!(!err.contains("E! "), "{err}");
    assert_eq!(queries(&out), today, "{err}");
}

#[test]
fn the_delta_preference_sends_each_bucket_as_its_own_count() {
    let sim = start(sim_config());
    let rx = HttpReceiver::start();
    let spec = fixture_otlp(&sim, &rx.url, "period/hourly-otlp.yaml");
    let state = tempdir().join("state");
    let delta = [("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")];
    let t0 = ms("2026-05-21T10:00:00+08:00");
    for now in [t0, t0 + H] {
        sim.configure(|c| c.now = Some(chrono::DateTime::from_timestamp_millis(now).unwrap()));
        let out = run_at(&spec, &state, now, &delta);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let points: Vec<(i64, i64, i64)> = rx
        .requests()
        .iter()
        .flat_map(|r| period_points(r, "maas.usage.period.total_tokens", Delta))
        .collect();
    // At 10:00, 3 h of backfill and 2 h to settle leave the bucket 07:00 to 08:00; an hour
    // later 08:00 to 09:00 follows: each once.
    let ends: Vec<i64> = points.iter().map(|p| p.1).collect();
    assert_eq!(
        ends,
        vec![
            ms("2026-05-21T08:00:00+08:00"),
            ms("2026-05-21T09:00:00+08:00")
        ]
    );
    for (start, end, v) in points {
        assert_eq!(end - start, H, "a delta point spans its bucket");
        let expected = sim.expected(&Selection {
            service_type: 2,
            batch: false,
            start_ms: start,
            end_ms: end,
            api_keys: None,
            ips: None,
        });
        assert_eq!(v as u64, expected.total_tokens);
    }
}

#[test]
fn a_failed_bucket_holds_back_the_later_ones() {
    let sim = start(sim_config());
    let spec = fixture_for(&sim, "period/hourly.yaml", &[])
        .to_string_lossy()
        .into_owned();
    let spec_text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("limits:\n", "limits:\n  concurrency: 1\n");
    let spec = spec_file(&spec_text);
    let state = tempdir().join("state");
    let t0 = ms("2026-05-21T10:00:00+08:00");
    sim.push_script(maas_usage::sim::Scripted::NotJson);
    let out = run_at(&spec, &state, t0, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the oldest bucket failed, so nothing is delivered: {}",
        stderr(&out)
    );
    assert!(parse_lp(&stdout(&out))
        .iter()
        .all(|l| l.measurement != "maas_usage"));
    let out = run_at(&spec, &state, t0, &[]);
    assert_eq!(
        parse_lp(&stdout(&out))
            .iter()
            .filter(|l| l.measurement == "maas_usage")
            .count(),
        3,
        "all three next time"
    );
}

fn bucket_ends(o: &std::process::Output) -> Vec<i64> {
    parse_lp(&stdout(o))
        .iter()
        .filter(|l| l.measurement == "maas_usage")
        .map(|l| l.timestamp.unwrap() / 1_000_000)
        .collect()
}

#[test]
fn overlapping_runs_emit_each_bucket_once_in_total() {
    // Cron starting while a slow run is still going: three runs at once on one state
    // directory, then a later one. Slow answers make them overlap.
    let mut cfg = sim_config();
    cfg.faults.latency = std::time::Duration::from_millis(700);
    let sim = start(cfg);
    let spec = fixture_for(&sim, "period/hourly.yaml", &[]);
    let state = tempdir().join("state");
    let t0 = ms(NOW);
    let spawn = || {
        run_command(&spec, &state, t0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..3).map(|_| spawn()).collect();
    let mut outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    outs.push(spawn().wait_with_output().unwrap());
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for o in &outs {
        for end in bucket_ends(o) {
            *seen.entry(end).or_default() += 1;
        }
    }
    let expected: BTreeMap<i64, usize> = [t0 - 4 * H, t0 - 3 * H, t0 - 2 * H]
        .into_iter()
        .map(|e| (e, 1))
        .collect();
    let errs: Vec<String> = outs.iter().map(stderr).collect();
    assert_eq!(seen, expected, "each bucket exactly once: {errs:#?}");
    for o in &outs {
        assert!(
            o.status.code() == Some(0) || stderr(o).contains("period-mode lock"),
            "a run that got nothing says why: {}",
            stderr(o)
        );
    }
}

/// `command` as on a full disk: no file may grow past `room` bytes (RLIMIT_FSIZE, which binds
/// root too), and a write that would fails with EFBIG instead of raising SIGXFSZ (ignored, as
/// exec keeps it). It binds every file system alike, the runtime directory's too.
fn on_a_full_disk(command: &mut std::process::Command, room: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure only makes two async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: room,
                rlim_max: room,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The points of every period series the receiver has, by bucket end.
fn otlp_bucket_ends(rx: &HttpReceiver) -> BTreeMap<i64, usize> {
    let mut ends = BTreeMap::new();
    for r in rx.requests() {
        for (_, end, _) in period_points(&r, "maas.usage.period.total_tokens", Cumulative) {
            *ends.entry(end).or_default() += 1;
        }
    }
    ends
}

/// The simulator, an OTLP receiver, `hourly-otlp.yaml` pushing to it, and a fresh state
/// directory.
fn otlp_period() -> (
    Simulator,
    HttpReceiver,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let sim = start(sim_config());
    let rx = HttpReceiver::start();
    let spec = fixture_otlp(&sim, &rx.url, "period/hourly-otlp.yaml");
    (sim, rx, spec, tempdir().join("state"))
}

#[test]
fn a_state_directory_that_cannot_record_checkpoints_sends_no_bucket_and_exits_1() {
    let (sim, rx, spec, state) = otlp_period();
    let t0 = ms(NOW);
    // Every file system full: nothing can record a credential rejection either (neither the
    // state directory nor the runtime directory), so no signed call goes out at all.
    let mut c = run_command(&spec, &state, t0);
    on_a_full_disk(&mut c, 0);
    let out = c.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_error_line(&err, &["no signed call", &state.display().to_string()]);
    assert_eq!(sim.requests().len(), 0, "{err}");
    assert_eq!(otlp_bucket_ends(&rx), BTreeMap::new(), "{err}");
    // A disk with room for the small records (the credential gate's, about 100 bytes, and the
    // budget's) but not for the checkpoints (over 500 bytes): the calls go out, the checkpoints
    // cannot be written, so no bucket may go out (it would go out again at every run).
    for _ in 0..3 {
        let mut c = run_command(&spec, &state, t0);
        on_a_full_disk(&mut c, 256);
        let out = c.output().unwrap();
        let err = stderr(&out);
        assert_eq!(otlp_bucket_ends(&rx), BTreeMap::new(), "{err}");
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_error_line(&err, &["checkpoints", &state.display().to_string()]);
    }
    assert!(!sim.requests().is_empty(), "the collection itself went out");
    // Room again: the buckets go out, once.
    for _ in 0..2 {
        let out = run_at(&spec, &state, t0, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let sent = otlp_bucket_ends(&rx);
    assert_eq!(sent.keys().copied().collect::<Vec<_>>(), vec![t0 - 2 * H]);
    assert!(sent.values().all(|&n| n > 0));
    let once = sent.clone();
    // A state directory that cannot be written at all (read-only; root ignores modes, so for
    // root one below a regular file, which no one can create).
    let blocked = tempdir().join("ro");
    std::fs::create_dir_all(&blocked).unwrap();
    let unusable = if unsafe { libc::geteuid() } == 0 {
        std::fs::write(blocked.join("file"), "").unwrap();
        blocked.join("file").join("state")
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&blocked, std::fs::Permissions::from_mode(0o555)).unwrap();
        blocked.join("state")
    };
    let out = run_at(&spec, &unusable, t0 + H, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_error_line(&err, &["period series", &unusable.display().to_string()]);
    assert_eq!(otlp_bucket_ends(&rx), once, "{err}");
}

#[test]
fn a_clock_stepped_back_sends_no_bucket_twice() {
    let (_sim, rx, spec, state) = otlp_period();
    let t0 = ms(NOW);
    let first = run_at(&spec, &state, t0, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let series = otlp_bucket_ends(&rx)[&(t0 - 2 * H)];
    // The clock goes back three hours, beyond the 2 h delay.
    let back = run_at(&spec, &state, t0 - 3 * H, &[]);
    let err = stderr(&back);
    assert_eq!(back.status.code(), Some(0), "{err}");
    let once: BTreeMap<i64, usize> = [(t0 - 2 * H, series)].into();
    assert_eq!(otlp_bucket_ends(&rx), once, "nothing sent again: {err}");
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("W! ") && l.contains("clock"))
        .collect();
    assert_eq!(warned.len(), 1, "one W! line says so: {err}");
    assert!(warned[0].contains("never"), "{}", warned[0]);
    // Then forward again: only what settled since, and nothing twice.
    let next = run_at(&spec, &state, t0 + H, &[]);
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    let expected: BTreeMap<i64, usize> = [(t0 - 2 * H, series), (t0 - H, series)].into();
    assert_eq!(otlp_bucket_ends(&rx), expected, "{err}");
}

#[test]
fn a_clock_stepped_back_never_inflates_a_prometheus_counter() {
    let sim = start(sim_config());
    let text = fixture_text_for(&sim, "period/hourly.yaml", &[]);
    let spec = spec_file(&text.replace("format: influx", "format: prometheus"));
    let state = tempdir().join("state");
    let t0 = ms(NOW);
    let counter = |now: i64| {
        let out = run_at(&spec, &state, now, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        sample(&stdout(&out), "maas_usage_period_tokens_total")
    };
    let c0 = counter(t0);
    assert!(c0 > 0);
    // Three hours back: a reset of the counter would make increase() count it all again.
    assert_eq!(counter(t0 - 3 * H), c0, "nothing counted again");
    let bucket = sim
        .expected(&Selection {
            service_type: 2,
            batch: false,
            start_ms: t0 - 2 * H,
            end_ms: t0 - H,
            api_keys: None,
            ips: None,
        })
        .total_tokens;
    assert_eq!(counter(t0 + H), c0 + bucket, "then only the new bucket");
}

#[test]
fn a_checkpoint_from_the_future_holds_its_series_until_the_clock_passes_it_or_a_reset() {
    let sim = start(sim_config());
    let spec = fixture_for(&sim, "period/hourly.yaml", &[]);
    let state = tempdir().join("state");
    // A run with a future --now (the real clock is earlier) leaves a checkpoint from the future.
    let future = ms("2027-01-01T10:00:00+08:00");
    sim.configure(|c| c.now = Some(chrono::DateTime::from_timestamp_millis(future).unwrap()));
    let ahead = run_at(&spec, &state, future, &[]);
    assert_eq!(bucket_ends(&ahead).len(), 3, "{}", stderr(&ahead));
    let show = bin()
        .args(["state", "show", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        stdout(&show).contains("later than now"),
        "state show marks it: {}",
        stdout(&show)
    );
    // Back to the present: nothing is sent again, and the warning says how to start over.
    let t0 = ms(NOW);
    sim.configure(|c| c.now = Some(chrono::DateTime::from_timestamp_millis(t0).unwrap()));
    let back = run_at(&spec, &state, t0, &[]);
    assert!(bucket_ends(&back).is_empty(), "{}", stderr(&back));
    assert!(
        stderr(&back).contains("W! ") && stderr(&back).contains("maas-usage state reset"),
        "{}",
        stderr(&back)
    );
    let reset = bin()
        .args(["state", "reset", "--series", "hourly", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(reset.status.code(), Some(0), "{}", stderr(&reset));
    let again = run_at(&spec, &state, t0, &[]);
    assert_eq!(
        bucket_ends(&again),
        vec![t0 - 4 * H, t0 - 3 * H, t0 - 2 * H]
    );
    assert!(!stderr(&again).contains("clock"), "{}", stderr(&again));
}

/// An OTLP push goes a request of whole buckets at a time, each request's checkpoints in force
/// once the collector accepted it: a later request refused (exit 1) costs none of the accepted
/// buckets twice, and the next run sends the rest, each once.
#[test]
fn a_push_refused_after_accepted_requests_sends_none_of_them_again() {
    let sim = start(sim_config());
    let rx = HttpReceiver::start();
    let spec = spec_for(&sim)
        .query("name: hourly, source: cloud_eye, range: {every: 1h, delay: 2h, backfill: 14d}, breakdown: [model, api_key], metrics: [total_tokens]")
        .output(&format!("format: otlp, otlp: {{endpoint: '{}', compression: gzip}}", rx.url))
        .limits("timeout: 60s")
        .write();
    let state = tempdir().join("state");
    let t0 = ms(NOW);
    sim.configure(|c| c.now = Some(chrono::DateTime::from_timestamp_millis(t0).unwrap()));
    let ends = || received_once(&rx, "maas.model.period.total_tokens");
    // The first push accepted, the second refused.
    rx.push(Answer::Slow(std::time::Duration::ZERO));
    rx.push(Answer::Status(400, "collector refused"));
    // Requests of a few buckets each (12 series of one figure a bucket).
    let small = [("MAAS_USAGE_TEST_PUSH_FIGURES", "50")];
    let out = run_at(&spec, &state, t0, &small);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let first = ends();
    assert!(
        !first.is_empty(),
        "the first request was accepted: {}",
        stderr(&out)
    );
    let out = run_at(&spec, &state, t0, &small);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = ends();
    // 14 days less the 2 h to settle: 334 hourly buckets, each once per series.
    assert_eq!(all.len(), 334, "{all:?}");
    assert!(
        first.values().sum::<usize>() < all.values().sum::<usize>(),
        "{first:?}"
    );
    let counts: BTreeSet<usize> = all.values().copied().collect();
    assert_eq!(counts.len(), 1, "a series missing from a bucket: {all:?}");
}

/// [`each_once`] of the requests `rx` received.
fn received_once(rx: &HttpReceiver, name: &str) -> BTreeMap<i64, usize> {
    let requests = rx.requests();
    each_once(requests.iter().map(|r| &r.request), name)
}

/// The series of each bucket end among the points of the Sum `name` in `requests`; a series'
/// bucket seen twice fails.
fn each_once<'a>(
    requests: impl IntoIterator<
        Item = &'a opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    >,
    name: &str,
) -> BTreeMap<i64, usize> {
    let mut seen = BTreeSet::new();
    let mut per_end: BTreeMap<i64, usize> = BTreeMap::new();
    for m in requests
        .into_iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == name)
    {
        let Some(Data::Sum(sum)) = &m.data else {
            panic!("period points are Sums: {m:?}")
        };
        for p in &sum.data_points {
            let end = (p.time_unix_nano / 1_000_000) as i64;
            let series = format!("{:?}", p.attributes);
            assert!(
                seen.insert((end, series.clone())),
                "sent twice: {end} {series}"
            );
            *per_end.entry(end).or_default() += 1;
        }
    }
    per_end
}

/// OTLP/JSON lines of a period spec, appended to a file: the buckets in lines of whole buckets
/// as they come (each line's checkpoints in force once it is written and synced), then a line
/// with the rest and the self-metrics; over three runs, each bucket once.
#[test]
fn otlp_json_lines_carry_the_buckets_a_few_a_line_and_each_once() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    let sim = start(sim_config());
    let spec = spec_for(&sim)
        .query("name: hourly, source: cloud_eye, range: {every: 1h, delay: 2h, backfill: 1d}, breakdown: [model, api_key], metrics: [total_tokens]")
        .write();
    let state = tempdir().join("state");
    let file = tempdir().join("metrics.jsonl");
    let t0 = ms(NOW);
    for now in [t0, t0, t0 + 2 * H] {
        sim.configure(|c| c.now = Some(chrono::DateTime::from_timestamp_millis(now).unwrap()));
        let out = run_command(&spec, &state, now)
            .args(["--format", "otlp-json", "--output"])
            .arg(&file)
            .env("MAAS_USAGE_TEST_PUSH_FIGURES", "50")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let requests: Vec<ExportMetricsServiceRequest> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines = requests.len();
    let per_end = each_once(&requests, "maas.model.period.total_tokens");
    // A day less the 2 h to settle, then two more hours: 24 buckets, each once per series.
    assert_eq!(per_end.len(), 24, "{per_end:?}");
    let counts: BTreeSet<usize> = per_end.values().copied().collect();
    assert_eq!(
        counts.len(),
        1,
        "a series missing from a bucket: {per_end:?}"
    );
    assert!(
        lines > 6,
        "a few buckets a line, then the rest: {lines} lines"
    );
}

/// Two clouds pushing to one collector: their rounds go one at a time through one output, each
/// request committed once accepted; a request refused ends both clouds' collections (exit 1),
/// and the next run sends the rest: every bucket of every series of both clouds once.
#[test]
fn two_clouds_push_their_buckets_through_one_output_each_once() {
    let (a, b) = (start(sim_config()), start(sim_config()));
    let rx = HttpReceiver::start();
    let text = format!(
        "apiVersion: maas-usage/v1\nclouds:\n  - name: one\n    region: cn-southwest-2\n    endpoint: {}\n    project_id: {PROJECT}\n  - name: two\n    region: cn-southwest-2\n    endpoint: {}\n    project_id: {PROJECT}\ntimezone: Asia/Shanghai\nqueries:\n  - name: hourly\n    range: {{every: 1h, delay: 2h, backfill: 2d}}\noutput:\n  format: otlp\n  otlp:\n    endpoint: '{}'\n    compression: gzip\nlimits:\n  timeout: 30s\n",
        a.url(),
        b.url(),
        rx.url
    );
    let spec = spec_file(&text);
    let state = tempdir().join("state");
    let t0 = ms(NOW);
    let small = [("MAAS_USAGE_TEST_PUSH_FIGURES", "20")];
    let points = || received_once(&rx, "maas.usage.period.total_tokens");
    rx.push(Answer::Slow(std::time::Duration::ZERO));
    rx.push(Answer::Slow(std::time::Duration::ZERO));
    rx.push(Answer::Status(400, "collector refused"));
    let out = run_at(&spec, &state, t0, &small);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let first = points();
    assert!(!first.is_empty(), "{}", stderr(&out));
    let out = run_at(&spec, &state, t0, &small);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = points();
    // Two days less the 2 h to settle: 46 hourly buckets, each of every series of both clouds.
    assert_eq!(all.len(), 46, "{all:?}");
    let counts: BTreeSet<usize> = all.values().copied().collect();
    assert_eq!(counts.len(), 1, "a series missing from a bucket: {all:?}");
    let clouds: BTreeSet<String> = rx
        .requests()
        .iter()
        .flat_map(|r| &r.request.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == "maas.usage.period.total_tokens")
        .flat_map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.clone(),
            _ => Vec::new(),
        })
        .flat_map(|p| p.attributes)
        .filter(|kv| kv.key == "maas.cloud")
        .map(|kv| format!("{:?}", kv.value))
        .collect();
    assert_eq!(clouds.len(), 2, "{clouds:?}");
}
