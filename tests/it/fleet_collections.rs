//! One collection per interval per coordination group (issue 20), against a real
//! redis-server: `run` processes of one spec in one interval make one set of calls and emit
//! identical values; two `serve` replicas serve the same page (the leader's), one of them
//! calling, and the other takes over when the leader is killed; a `serve` whose Redis is gone
//! turns unhealthy after two intervals, saying which engine; pushing OTLP, the group's data
//! reach the collector once (the leader's export) and each process's self-metrics once.

use crate::common;

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use common::otlp::HttpReceiver;
use common::redis_server::RedisServer;
use common::serving::Serve;
use common::*;
use maas_usage::sim::Simulator;

use crate::fleet::{host_run, outputs, six_series};

/// The lines of a run's output without its self-metrics line (per process: its role, calls,
/// duration).
fn data_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with("maas_usage_collector"))
        .map(String::from)
        .collect()
}

/// A simulator answering after `latency_ms`, and the six-series spec coordinated by `redis`.
fn slow_six_series(redis: &RedisServer, latency_ms: u64) -> (Simulator, PathBuf) {
    let mut cfg = sim_config();
    cfg.faults.latency = Duration::from_millis(latency_ms);
    let sim = start(cfg);
    let spec = six_series(&sim, &redis.url, "stop");
    (sim, spec)
}

/// The self-metrics line of each run (which must have exited 0), and those of the leaders.
fn collectors_and_leaders(outs: &[std::process::Output]) -> (Vec<Line>, Vec<Line>) {
    let mut collectors = Vec::new();
    for out in outs {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
        collectors.push(parse_lp(&stdout(out)).pop().unwrap());
    }
    let leaders = collectors
        .iter()
        .filter(|c| c.int("leader") == Some(1))
        .cloned()
        .collect();
    (collectors, leaders)
}

#[test]
fn three_runs_of_one_spec_make_one_set_of_calls_and_emit_identical_values() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Answers take a while, so that the three runs overlap.
    let (sim, spec) = slow_six_series(&redis, 300);
    let runs: Vec<Child> = (0..3).map(|_| host_run(&spec, SK)).collect();
    let outs = outputs(runs);
    let (collectors, leaders) = collectors_and_leaders(&outs);
    assert_eq!(leaders.len(), 1, "one leader: {collectors:?}");
    let calls = leaders[0].int("api_calls").unwrap();
    assert!(calls > 0);
    assert_eq!(
        sim.requests().len() as i64,
        calls,
        "the simulator saw the leader's calls only"
    );
    for c in &collectors {
        assert_eq!(c.int("series_ok"), Some(6), "{c:?}");
        if c.int("leader") == Some(0) {
            assert_eq!(c.int("api_calls"), Some(0), "a follower calls nothing");
        }
    }
    let first = data_lines(&stdout(&outs[0]));
    assert_eq!(first.len(), 6);
    for out in &outs[1..] {
        assert_eq!(data_lines(&stdout(out)), first, "identical values");
    }
    // What is stored holds no secret.
    let keys: Vec<String> = redis.cmd(&["KEYS", "maas-usage:*:collection:*"]);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let stored: String = redis.cmd(&["GET", &keys[0]]);
    assert!(stored.contains("maas_usage"), "{stored}");
    assert!(!stored.contains(SK) && !stored.contains(AK));
    let ttl: i64 = redis.cmd(&["PTTL", &keys[0]]);
    assert!(ttl > 0, "kept for a few intervals, not for good");
}

#[test]
fn a_leader_killed_before_it_stored_is_taken_over_by_a_follower() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (sim, spec) = slow_six_series(&redis, 500);
    // The first run leads (its calls have started); two more wait for its collection.
    let mut leader = host_run(&spec, SK);
    wait_until("the leader's first call", || sim.arrivals() >= 1);
    let others: Vec<Child> = (0..2).map(|_| host_run(&spec, SK)).collect();
    leader.kill().unwrap();
    assert!(!leader.wait().unwrap().success());
    let outs = outputs(others);
    // One of them took the interval over (its lease went with the killed one's connection).
    let (collectors, took) = collectors_and_leaders(&outs);
    assert_eq!(took.len(), 1, "{collectors:?}");
    assert_eq!(took[0].int("failovers"), Some(1), "{collectors:?}");
    assert_eq!(data_lines(&stdout(&outs[0])), data_lines(&stdout(&outs[1])));
    assert_eq!(data_lines(&stdout(&outs[0])).len(), 6);
}

/// The value of the sample `name` on a page (its first), if there is one.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A page without the self-metrics (each replica's own: its role, calls, duration, failovers).
fn data_part(body: &str) -> String {
    body.lines()
        .filter(|l| !l.contains("maas_collector_"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn metrics(s: &Serve) -> Option<String> {
    let a = s.get("/metrics", None);
    (a.status == 200).then_some(a.body)
}

#[test]
fn two_serve_replicas_serve_the_leaders_page_and_the_follower_takes_over() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = sim();
    let spec = six_series(&sim, &redis.url, "stop");
    let a = Serve::start(&spec, &tempdir().join("state"), "2s");
    wait_until("the first replica's page", || metrics(&a).is_some());
    let b = Serve::start(&spec, &tempdir().join("state"), "2s");
    // Both have published a collection of the same interval: one leads, one follows.
    let a_leads = wait_for("one leader and one follower, on the same page", || {
        let (pa, pb) = (metrics(&a)?, metrics(&b)?);
        let la = sample(&pa, "maas_collector_leader")?;
        let lb = sample(&pb, "maas_collector_leader")?;
        (la + lb == 1.0 && data_part(&pa) == data_part(&pb)).then_some(la == 1.0)
    });
    let (mut leader, follower) = if a_leads { (a, b) } else { (b, a) };
    let lead_page = metrics(&leader).unwrap();
    let follow_page = metrics(&follower).unwrap();
    assert!(sample(&lead_page, "maas_collector_calls").unwrap() > 0.0);
    assert_eq!(sample(&follow_page, "maas_collector_calls"), Some(0.0));
    assert!(
        data_part(&lead_page).contains("maas_usage_total_tokens"),
        "{lead_page}"
    );
    // The leader killed (-9): the follower collects from the next interval on.
    let calls = sim.requests().len();
    leader.child.kill().unwrap();
    leader.child.wait().unwrap();
    let killed = std::time::Instant::now();
    let took_over = wait_for("the follower to take over", || {
        let p = metrics(&follower)?;
        (sample(&p, "maas_collector_leader") == Some(1.0)).then_some(p)
    });
    // Within the lease (twice limits.timeout: 20 s) and one interval (2 s), with room for a
    // slow machine; a killed leader's lease goes with its connection, so about one interval.
    assert!(killed.elapsed() < Duration::from_secs(20 + 2 + 5));
    assert_eq!(sample(&took_over, "maas_collector_failovers"), Some(1.0));
    assert!(sample(&took_over, "maas_collector_calls").unwrap() > 0.0);
    assert!(sim.requests().len() > calls, "it calls now");
    assert_eq!(data_part(&took_over), data_part(&follow_page));
}

#[test]
fn serve_without_redis_is_unhealthy_after_two_intervals_and_names_the_engine() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let password = "PWCANARY-healthz-5e6f";
    let _: () = redis.cmd(&["CONFIG", "SET", "requirepass", password]);
    let sim = sim();
    let spec = six_series(&sim, &redis.url, "stop");
    let mut s = Serve::start_with(&spec, &tempdir().join("state"), "1s", |c| {
        c.env("MAAS_USAGE_REDIS_PASSWORD", password);
    });
    s.wait_for("/healthz", 200);
    redis.kill();
    let calls = sim.requests().len();
    // The page ages: two intervals without a collection make /healthz answer 503.
    s.wait_for("/healthz", 503);
    s.wait_for_line("E! the coordination engine redis at");
    let (_, err) = s.stop();
    assert_error_line(&err, &["E! the coordination engine redis at", &redis.url]);
    assert!(!err.contains(password), "{err}");
    // At most the collection under way when Redis went (its calls had their slots).
    let after = sim.requests().len();
    assert!(
        after - calls <= 6,
        "no call without the engine: {calls} then {after}"
    );
}

/// The values of the OTLP gauge or sum `name` the receiver got, over all its requests.
fn otlp_values(rx: &HttpReceiver, name: &str) -> Vec<i64> {
    rx.points(name).into_iter().map(|(_, v)| v).collect()
}

#[test]
fn three_otlp_runs_of_one_spec_export_the_data_once_and_each_its_self_metrics() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (sim, spec) = slow_six_series(&redis, 300);
    let rx = HttpReceiver::start();
    let text = std::fs::read_to_string(&spec).unwrap()
        + &format!(
            "output:\n  format: otlp\n  otlp:\n    endpoint: {}\n",
            rx.url
        );
    let spec = spec_file(&text);
    let outs = outputs((0..3).map(|_| host_run(&spec, SK)).collect());
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
        assert!(stdout(out).is_empty(), "OTLP goes to the collector");
    }
    let mut leaders = otlp_values(&rx, "maas.collector.leader");
    leaders.sort_unstable();
    assert_eq!(leaders, [0, 0, 1], "one leader, two followers");
    assert_eq!(
        otlp_values(&rx, "maas.usage.total_tokens").len(),
        6,
        "each of the six series once at the collector, not once per process"
    );
    let calls = otlp_values(&rx, "maas.collector.calls");
    assert_eq!(calls.iter().filter(|c| **c > 0).count(), 1, "{calls:?}");
    assert_eq!(
        sim.requests().len() as i64,
        calls.iter().sum::<i64>(),
        "the simulator saw the leader's calls only"
    );
}
