//! A fleet: agents on many hosts (each with its own state directory) sharing one key and one
//! destination, coordinated through a real redis-server: one request budget per identity and
//! per account, checked and taken on the server's clock (no 429 through a kill -9 and a
//! Redis restart); one rejected signature for a wrong key across the fleet; no signed call
//! while Redis is unreachable (or the state directory with one warning, when asked); period
//! series held back when Redis lost its state; each period bucket sent once per destination.
//!
//! redis-server is required when `MAAS_USAGE_REQUIRE_REDIS=1` (as in CI); skipped otherwise
//! when it is not on PATH.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::otlp::HttpReceiver;
use common::redis_server::RedisServer;
use common::*;
use maas_usage::sim::Simulator;

/// The simulator's limit and the client's budget: N calls per 2 s window.
const N: u32 = 8;
const WINDOW_MS: u64 = 2000;

fn throttling_sim() -> Simulator {
    common::throttling_sim(N, WINDOW_MS)
}

fn four_queries(sim: &Simulator, redis: &str) -> PathBuf {
    fixture_for(
        sim,
        "fleet/four-queries.yaml",
        &[("rpm", &N.to_string()), ("redis", redis)],
    )
}

/// A run on a host of its own (its own state directory), started.
pub(crate) fn host_run(spec: &Path, sk: &str) -> Child {
    let mut c = bin();
    c.env("HW_ACCESS_KEY", AK)
        .env("HW_SECRET_KEY", sk)
        .env("MAAS_USAGE_RATE_WINDOW_MS", WINDOW_MS.to_string());
    run_in_state(c, spec, &tempdir().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Three hosts of three coordination groups (three specs on one key): each makes its own
/// calls, from the one budget of the key.
fn three_hosts(spec: &Path) -> Vec<Child> {
    (0..3).map(|i| host_run(&own_group(spec, i), SK)).collect()
}

/// `spec` in a coordination group of its own, `host-<n>-<a number new to this process>`
/// (processes of one group share their collections: of separate groups, each collects).
fn own_group(spec: &Path, n: usize) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = format!(
        "{n}-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let text = std::fs::read_to_string(spec).unwrap();
    spec_file(&text.replace(
        "  engine: redis\n",
        &format!("  engine: redis\n  group: host-{n}\n"),
    ))
}

pub(crate) fn outputs(children: Vec<Child>) -> Vec<Output> {
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// The most calls that arrived at the simulator in any window of `window_ms`.
fn busiest_window(sim: &Simulator, window_ms: u64) -> usize {
    let mut at: Vec<Instant> = sim.requests().iter().map(|r| r.arrived).collect();
    at.sort();
    let w = Duration::from_millis(window_ms);
    (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t < at[i] + w).count())
        .max()
        .unwrap_or(0)
}

fn throttled(sim: &Simulator) -> usize {
    sim.requests().iter().filter(|r| r.status == 429).count()
}

#[test]
fn three_hosts_share_one_budget_through_a_kill_and_a_redis_restart() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let sim = throttling_sim();
    // Answers take a while, so that no host can be done by the time the first call is seen.
    sim.configure(|c| c.faults.latency = Duration::from_millis(500));
    let spec = four_queries(&sim, &redis.url);

    // Three hosts at once, 12 calls on a limit of 8 per window: they must queue, fleet-wide.
    // One is killed (-9) once calls have started: its slots stay taken, nobody exceeds.
    let mut round = three_hosts(&spec);
    wait_until("the first call", || sim.arrivals() >= 1);
    round[0].kill().unwrap();
    let killed = round.remove(0).wait_with_output().unwrap();
    assert!(!killed.status.success());
    for out in outputs(round) {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    // Redis killed (-9) and started again: the windows it holds (on disk) still count.
    redis.restart();
    for out in outputs(three_hosts(&spec)) {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let collector = parse_lp(&stdout(&out)).pop().unwrap();
        assert_eq!(collector.int("throttled"), Some(0));
    }
    assert_eq!(throttled(&sim), 0, "no 429 across the fleet");
    assert!(busiest_window(&sim, WINDOW_MS) <= N as usize);
    assert!(stats_calls(&sim).len() >= 20, "{}", stats_calls(&sim).len());
    // Key names are hashes: no credential, no identity in the clear.
    let keys: Vec<String> = redis.cmd(&["KEYS", "*"]);
    assert!(
        keys.iter().any(|k| k.starts_with("maas-usage:budget:")),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| !k.contains(AK) && !k.contains(SK)),
        "{keys:?}"
    );
}

#[test]
fn without_redis_the_same_three_hosts_are_throttled() {
    // The control experiment: three hosts, each with its own state directory and no engine,
    // overshoot the limit the test above keeps.
    let sim = throttling_sim();
    let text = std::fs::read_to_string(four_queries(&sim, "redis://127.0.0.1:9/0")).unwrap();
    let alone = spec_file(
        &text
            .lines()
            .filter(|l| !l.starts_with("coordination:") && !l.starts_with("  engine:"))
            .filter(|l| !l.starts_with("  url: redis") && !l.starts_with("  lease:"))
            .filter(|l| !l.starts_with("  group:"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    outputs(three_hosts(&alone));
    assert!(throttled(&sim) > 0);
}

#[test]
fn two_keys_of_one_account_keep_to_the_account_budget() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The simulator limits both keys together, as an account-wide limit would.
    let (other_ak, other_sk) = (
        "AKOTHER7Q2W3E4R5T6Y",
        "SKOTHERzx9cv8bn7m6l5k4j3h2g1f0d9s8a7p6o",
    );
    let mut cfg = sim_config();
    cfg.credentials.push(maas_usage::sim::SimCredential {
        ak: other_ak.into(),
        sk: other_sk.into(),
        token: None,
    });
    cfg.faults.rate_limit = Some(N);
    cfg.faults.rate_window = Duration::from_millis(WINDOW_MS);
    let sim = start(cfg);
    let text = std::fs::read_to_string(four_queries(&sim, &redis.url)).unwrap();
    // Each key may make N calls a window, and so may the account (the pinned project stands
    // for it): two keys together N, not 2 N.
    let spec = spec_file(&format!("{text}  account_requests_per_minute: {N}\n"));
    let mut children = Vec::new();
    for (i, (ak, sk)) in [
        (AK, SK),
        (other_ak, other_sk),
        (AK, SK),
        (other_ak, other_sk),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = bin();
        c.env("HW_ACCESS_KEY", ak)
            .env("HW_SECRET_KEY", sk)
            .env("MAAS_USAGE_RATE_WINDOW_MS", WINDOW_MS.to_string());
        children.push(
            run_in_state(c, &own_group(&spec, i), &tempdir().join("state"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for out in outputs(children) {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert_eq!(throttled(&sim), 0);
    assert!(busiest_window(&sim, WINDOW_MS) <= N as usize);
    assert_eq!(stats_calls(&sim).len(), 16);
}

pub(crate) fn six_series(sim: &Simulator, redis: &str, on_unavailable: &str) -> PathBuf {
    fixture_for(
        sim,
        "fleet/six-series.yaml",
        &[("redis", redis), ("on_unavailable", on_unavailable)],
    )
}

#[test]
fn a_wrong_key_on_three_hosts_costs_one_rejected_signature() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = sim();
    let spec = six_series(&sim, &redis.url, "stop");
    let wrong = "SKWRONGzx9cv8bn7m6l5k4j3h2g1f0d9s8a7p6o";
    let hosts: Vec<Child> = (0..3).map(|_| host_run(&spec, wrong)).collect();
    for out in outputs(hosts) {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_no_secret(&out);
    }
    // And three more hosts later: the fleet's one record keeps them from calling.
    for out in outputs((0..3).map(|_| host_run(&spec, wrong)).collect()) {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("E! credentials were rejected at ")
                && stderr(&out).contains(&format!("redis {}", redis.url)),
            "{}",
            stderr(&out)
        );
    }
    let rejected = sim.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(rejected, 1, "one rejected signature for the fleet");
    let keys: Vec<String> = redis.cmd(&["KEYS", "maas-usage:gate:*"]);
    assert!(keys.iter().all(|k| !k.contains("SKWRONG")), "{keys:?}");
}

#[test]
fn redis_unreachable_stops_every_signed_call_or_falls_back_to_the_state_directory() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let sim = sim();
    let url = redis.url.clone();
    redis.kill();
    let out = host_run(&six_series(&sim, &url, "stop"), SK)
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_error_line(
        &stderr(&out),
        &[
            "E! the coordination engine redis at",
            &url,
            "cannot be reached",
        ],
    );
    assert!(stdout(&out).is_empty(), "nothing emitted");
    assert!(sim.requests().is_empty(), "no signed call");

    let out = host_run(&six_series(&sim, &url, "local"), SK)
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("W! "))
        .collect::<Vec<_>>();
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    assert!(
        warnings[0].contains("on_unavailable: local"),
        "{warnings:?}"
    );
    assert_eq!(parse_lp(&stdout(&out)).len(), 7);

    // Back: the fleet goes on through it.
    redis.start_again();
    let out = host_run(&six_series(&sim, &url, "stop"), SK)
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_redis_password_comes_from_the_environment_and_is_never_printed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let password = "PWCANARY-redis-8c7d";
    let _: () = redis.cmd(&["CONFIG", "SET", "requirepass", password]);
    let sim = sim();
    let spec = six_series(&sim, &redis.url, "stop");
    let without = host_run(&spec, SK).wait_with_output().unwrap();
    assert_eq!(without.status.code(), Some(1), "{}", stderr(&without));
    assert!(
        stderr(&without).contains("cannot be reached"),
        "{}",
        stderr(&without)
    );
    let mut c = bin();
    c.env("HW_ACCESS_KEY", AK)
        .env("HW_SECRET_KEY", SK)
        .env("MAAS_USAGE_REDIS_PASSWORD", password);
    let out = run_in_state(c, &spec, &tempdir().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for o in [&without, &out] {
        assert!(!stderr(o).contains(password) && !stdout(o).contains(password));
    }
}

pub(crate) const H: i64 = 3_600_000;

/// A simulator (slow answers, so that hosts overlap), an OTLP receiver, and the hourly period
/// spec pushing to it through `redis`.
pub(crate) fn period_fleet(redis: &str) -> (Simulator, HttpReceiver, PathBuf) {
    let mut cfg = sim_config();
    cfg.faults.latency = Duration::from_millis(300);
    cfg.now = chrono::DateTime::from_timestamp_millis(ms(NOW) + 5 * H);
    let sim = start(cfg);
    let rx = HttpReceiver::start();
    let spec = fixture_for(
        &sim,
        "fleet/hourly-otlp.yaml",
        &[("otlp_endpoint", &rx.url), ("redis", redis)],
    );
    (sim, rx, spec)
}

/// A period run at `now_ms` on the host whose state directory is `state`.
pub(crate) fn period_run(spec: &Path, state: &Path, now_ms: i64, env: &[(&str, &str)]) -> Child {
    let mut c = authed();
    c.arg("run")
        .arg("--spec")
        .arg(spec)
        .arg("--state-dir")
        .arg(state)
        .args(["--now", &rfc(now_ms)]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every point of the period series the receiver has: bucket end -> the values sent for it.
pub(crate) fn received_buckets(rx: &HttpReceiver) -> BTreeMap<i64, Vec<i64>> {
    let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (at, v) in rx.points("maas.usage.period.total_tokens") {
        out.entry(at).or_default().push(v);
    }
    out
}

#[test]
fn three_hosts_send_each_period_bucket_once_and_a_crash_resends_it_identically() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_sim, rx, spec) = period_fleet(&redis.url);
    let hosts: Vec<PathBuf> = (0..3).map(|_| tempdir().join("state")).collect();
    let t0 = ms(NOW);
    let round = |now: i64| {
        let children: Vec<Child> = hosts
            .iter()
            .map(|h| period_run(&spec, h, now, &[]))
            .collect();
        for out in outputs(children) {
            assert!(
                out.status.code() == Some(0) || stderr(&out).contains("period-mode lock"),
                "{}",
                stderr(&out)
            );
        }
    };
    round(t0);
    round(t0 + H);
    // A cumulative Sum carries the running total: one point per run, at the last bucket.
    let once: BTreeMap<i64, usize> = [t0 - 2 * H, t0 - H].into_iter().map(|e| (e, 1)).collect();
    let counts = |b: &BTreeMap<i64, Vec<i64>>| -> BTreeMap<i64, usize> {
        b.iter().map(|(e, v)| (*e, v.len())).collect()
    };
    assert_eq!(
        counts(&received_buckets(&rx)),
        once,
        "each bucket once, across the fleet"
    );

    // One host is killed between delivery and commit: the bucket it sent goes again, once,
    // identically (the remaining window, exported but not committed), and nothing is skipped.
    let crashed = period_run(
        &spec,
        &hosts[0],
        t0 + 2 * H,
        &[("MAAS_USAGE_TEST_CRASH_BEFORE_CHECKPOINT", "1")],
    )
    .wait_with_output()
    .unwrap();
    assert!(!crashed.status.success(), "the hook kills it");
    round(t0 + 2 * H);
    let got = received_buckets(&rx);
    let mut expected = once.clone();
    expected.insert(t0, 2);
    assert_eq!(counts(&got), expected, "{}", stderr(&crashed));
    assert_eq!(got[&t0][0], got[&t0][1], "the resend is identical");
    // Running totals (cumulative) never go back.
    let totals: Vec<i64> = got.values().map(|v| v[0]).collect();
    assert!(totals.windows(2).all(|w| w[1] >= w[0]), "{totals:?}");
}

#[test]
fn period_series_are_held_back_when_redis_lost_its_state_until_state_reset_engine() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_sim, rx, spec) = period_fleet(&redis.url);
    let host = tempdir().join("state");
    let t0 = ms(NOW);
    let first = period_run(&spec, &host, t0, &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(received_buckets(&rx).len(), 1);

    // Redis forgets everything (a restart without persistence, FLUSHALL, a lagging replica).
    let _: () = redis.cmd(&["FLUSHALL"]);
    for _ in 0..2 {
        let held = period_run(&spec, &host, t0 + H, &[])
            .wait_with_output()
            .unwrap();
        assert_eq!(held.status.code(), Some(1), "{}", stderr(&held));
        assert_error_line(
            &stderr(&held),
            &["lost its state", &redis.url, "state reset --engine"],
        );
        assert_eq!(received_buckets(&rx).len(), 1, "no bucket while held back");
    }

    let reset = bin()
        .args(["state", "reset", "--engine", "--spec"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(&host)
        .output()
        .unwrap();
    assert_eq!(reset.status.code(), Some(0), "{}", stderr(&reset));
    assert!(
        stdout(&reset).contains("a new generation"),
        "{}",
        stdout(&reset)
    );
    let after = period_run(&spec, &host, t0 + H, &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(after.status.code(), Some(0), "{}", stderr(&after));
    assert!(received_buckets(&rx).contains_key(&(t0 - H)));
}

#[test]
fn the_kubernetes_example_spec_validates_without_redis() {
    // `validate` needs no Redis: the ConfigMap's spec names one that is not there.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml");
    let cm: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let spec = spec_file(cm["data"]["spec.yaml"].as_str().unwrap());
    let out = bin().arg("validate").arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = bin()
        .args(["plan", "--now", NOW, "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
}

#[test]
fn an_acl_user_limited_to_the_maas_usage_keys_is_enough() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The shorter ACL docs/operations.md mentions: its keys only, no dangerous command but
    // CLIENT LIST (fleet_tls.rs runs the least one, the line docs/operations.md gives).
    let password = "PWCANARY-acl-1b2c3d";
    let _: () = redis.cmd(&[
        "ACL",
        "SETUSER",
        "maas",
        "on",
        &format!(">{password}"),
        "~maas-usage:*",
        "+@all",
        "-@dangerous",
        "+client|list",
    ]);
    let url = redis.url.replace("redis://", "redis://maas@");
    let sim = sim();
    let spec = six_series(&sim, &url, "stop");
    let with_password = |sk: &str| {
        let mut c = bin();
        c.env("HW_ACCESS_KEY", AK)
            .env("HW_SECRET_KEY", sk)
            .env("MAAS_USAGE_REDIS_PASSWORD", password);
        run_in_state(c, &spec, &tempdir().join("state"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wrong = "SKWRONGzx9cv8bn7m6l5k4j3h2g1f0d9s8a7p6o";
    for out in outputs(vec![with_password(wrong), with_password(wrong)]) {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(!stderr(&out).contains(password));
    }
    assert_eq!(sim.requests().iter().filter(|r| r.status == 401).count(), 1);
    let reset = bin()
        .args(["state", "reset", "--auth", "--spec"])
        .arg(&spec)
        .env("MAAS_USAGE_REDIS_PASSWORD", password)
        .output()
        .unwrap();
    assert_eq!(reset.status.code(), Some(0), "{}", stderr(&reset));
    let out = with_password(SK).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(parse_lp(&stdout(&out)).len(), 7);
    let denied: Vec<redis::Value> = redis.cmd(&["ACL", "LOG"]);
    assert!(denied.is_empty(), "nothing denied to the user: {denied:?}");
}

#[test]
fn redis_gone_in_the_middle_of_an_execd_process_means_no_call_until_it_is_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let sim = sim();
    let spec = six_series(&sim, &redis.url, "stop");
    let state = tempdir().join("state");
    let mut execd = Execd::start_with(&spec, |c| {
        c.arg("--state-dir").arg(&state);
    });
    let first = execd.collect();
    assert_eq!(first.last().unwrap().int("series_ok"), Some(6));
    let calls = sim.requests().len();
    // Redis killed (-9): the next batch makes no call (no budget slot, no gate record).
    redis.kill();
    let down = execd.collect();
    assert_eq!(down.last().unwrap().int("series_ok"), Some(0));
    assert_eq!(sim.requests().len(), calls, "no call while Redis is down");
    // Back: the same process goes on.
    redis.start_again();
    let back = execd.collect();
    assert_eq!(back.last().unwrap().int("series_ok"), Some(6));
    assert_eq!(execd.finish(), Some(0));
}
