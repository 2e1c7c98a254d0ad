//! A fleet's period buckets through failures of its hosts and of Redis, against a real
//! redis-server and an OTLP receiver: a leader frozen (SIGSTOP) past its lease finds its commit
//! refused when it wakes, after another host took over and sent the buckets, and no bucket
//! reaches the receiver twice; while Redis is down no signed call is made, and once it is back
//! the running totals go on with no gap (the same as a fleet whose Redis never went down).

use crate::common;
use crate::fleet::{period_fleet, period_run, received_buckets, H};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};

use common::otlp::HttpReceiver;
use common::redis_server::RedisServer;
use common::*;
use maas_usage::sim::Simulator;

/// The hourly fleet spec with a short run (2 s) and so a short lease (twice that).
fn short_lease(redis: &str) -> (Simulator, HttpReceiver, PathBuf) {
    let (sim, rx, spec) = period_fleet(redis);
    let text = std::fs::read_to_string(spec).unwrap();
    assert!(text.contains("  timeout: 10s\n"));
    let short = spec_file(&text.replacen("  timeout: 10s\n", "  timeout: 2s\n", 1));
    (sim, rx, short)
}

/// A child that may be left stopped: killed (SIGKILL ends a stopped process too) if the test
/// fails before it is waited for.
struct Stopped(Option<Child>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The process is stopped (SIGSTOP): its state in /proc is `T`.
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, rest) = s.rsplit_once(')')?;
            rest.split_whitespace().next().map(|st| st == "T")
        })
        .unwrap_or(false)
}

fn lease_keys(redis: &RedisServer) -> Vec<String> {
    redis.cmd(&["KEYS", "maas-usage:*:lease:*"])
}

fn counts(b: &BTreeMap<i64, Vec<i64>>) -> BTreeMap<i64, usize> {
    b.iter().map(|(e, v)| (*e, v.len())).collect()
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

#[test]
fn a_leader_frozen_past_its_lease_is_fenced_on_waking_and_no_bucket_goes_twice() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_sim, rx, spec) = short_lease(&redis.url);
    let (a, b) = (tempdir().join("state"), tempdir().join("state"));
    let t0 = ms(NOW);

    // The leader stops itself once it has collected, before it prepares its commit (the hook
    // of a long GC pause or a frozen VM), holding the destination's lease.
    let mut frozen = Stopped(Some(period_run(
        &spec,
        &a,
        t0,
        &[("MAAS_USAGE_TEST_STOP_BEFORE_PREPARE", "1")],
    )));
    let pid = frozen.0.as_ref().unwrap().id();
    wait_until("the leader to stop itself", || stopped(pid));
    assert_eq!(
        lease_keys(&redis).len(),
        1,
        "the frozen leader holds the lease"
    );
    // Its lease runs out while it sleeps (Redis expires the key: no heartbeat from a stopped
    // process); then another host takes over, sends the buckets and commits.
    wait_until("the frozen leader's lease to end", || {
        lease_keys(&redis).is_empty()
    });
    ok(&period_run(&spec, &b, t0, &[]).wait_with_output().unwrap());
    let sent = received_buckets(&rx);
    assert_eq!(counts(&sent).values().sum::<usize>(), 1, "{sent:?}");

    // The ex-leader wakes: its commit is refused, it sends nothing.
    let cont = std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(cont.success());
    let woke = frozen.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(woke.status.code(), Some(1), "{}", stderr(&woke));
    assert_error_line(
        &stderr(&woke),
        &[
            "cannot record the period checkpoints",
            "taken over by another process",
        ],
    );
    assert_eq!(received_buckets(&rx), sent, "no bucket twice");

    // Both hosts go on: the next bucket once, the running total never back.
    for h in [&a, &b] {
        let out = period_run(&spec, h, t0 + H, &[])
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.code() == Some(0) || stderr(&out).contains("period-mode lock"),
            "{}",
            stderr(&out)
        );
    }
    let got = received_buckets(&rx);
    assert_eq!(
        counts(&got).values().copied().collect::<Vec<_>>(),
        vec![1, 1],
        "{got:?}"
    );
    let totals: Vec<i64> = got.values().map(|v| v[0]).collect();
    assert!(totals[1] >= totals[0], "{totals:?}");
}

/// Period runs of one host at `t0` and `t0 + 2 H`, with `between` called for `t0 + H`; the
/// totals the receiver got, per bucket end.
fn three_hours(
    spec: &Path,
    rx: &HttpReceiver,
    mut between: impl FnMut(&Path, i64),
) -> BTreeMap<i64, Vec<i64>> {
    let (host, t0) = (tempdir().join("state"), ms(NOW));
    ok(&period_run(spec, &host, t0, &[]).wait_with_output().unwrap());
    between(&host, t0 + H);
    ok(&period_run(spec, &host, t0 + 2 * H, &[])
        .wait_with_output()
        .unwrap());
    received_buckets(rx)
}

#[test]
fn redis_down_means_no_signed_call_and_back_the_period_totals_have_no_gap() {
    let (Some(mut redis), Some(steady)) = (RedisServer::start(), RedisServer::start()) else {
        return;
    };
    // The control: the same fleet, its Redis never down, a run every hour.
    let (_control_sim, control_rx, control_spec) = period_fleet(&steady.url);
    let control = three_hours(&control_spec, &control_rx, |host, now| {
        ok(&period_run(&control_spec, host, now, &[])
            .wait_with_output()
            .unwrap());
    });

    let (sim, rx, spec) = period_fleet(&redis.url);
    let got = three_hours(&spec, &rx, |host, now| {
        redis.kill();
        let calls = sim.requests().len();
        let down = period_run(&spec, host, now, &[])
            .wait_with_output()
            .unwrap();
        assert_eq!(down.status.code(), Some(1), "{}", stderr(&down));
        assert_error_line(
            &stderr(&down),
            &["coordination engine redis at", "cannot be reached"],
        );
        assert_eq!(
            sim.requests().len(),
            calls,
            "no signed call while Redis is down"
        );
        redis.start_again();
    });
    // The run after the outage sends the hour the outage held back as well: every bucket end
    // once, with the running totals of the fleet whose Redis never went down.
    assert_eq!(control.len(), 3, "{control:?}");
    assert!(control.values().all(|v| v.len() == 1), "{control:?}");
    assert_eq!(got, control, "no gap after Redis came back");
}
