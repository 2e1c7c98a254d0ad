//! A wrong key must not get the access key locked: at most one rejected signature per
//! credential per five minutes, whatever runs (series, threads, processes, execd batches, serve
//! collections) try to use it, and whichever host (IAM accepting it says nothing of MaaS);
//! new credentials are tried at once, and a rotated credentials file is picked up by execd.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use maas_usage::sim::Simulator;

/// Three queries x two service types = six series, four calls in flight at most.
fn six_series(sim: &Simulator, pinned: bool) -> PathBuf {
    let url = sim.url();
    if pinned {
        fixture(
            "auth/six-series.yaml",
            &[("url", &url), ("project", PROJECT)],
        )
    } else {
        fixture("auth/six-series-discovered.yaml", &[("url", &url)])
    }
}

fn rejected(sim: &Simulator) -> usize {
    sim.requests().iter().filter(|r| r.status == 401).count()
}

fn run_with(spec: &Path, state: &Path, sk: &str) -> std::process::Output {
    bin()
        .env("HW_ACCESS_KEY", AK)
        .env("HW_SECRET_KEY", sk)
        .arg("run")
        .arg("--spec")
        .arg(spec)
        .arg("--state-dir")
        .arg(state)
        .args(["--now", NOW])
        .output()
        .unwrap()
}

fn first_line(o: &std::process::Output) -> String {
    stderr(o).lines().next().unwrap_or("").to_string()
}

#[test]
fn three_runs_with_a_wrong_key_make_one_rejected_call() {
    let sim = sim();
    let spec = six_series(&sim, true);
    let state = tempdir();
    let wrong = "SKWRONGzx9cv8bn7m6l5k4j3h2g1f0d9s8a7p6o";

    let first = run_with(&spec, &state, wrong);
    assert_eq!(first.status.code(), Some(1));
    assert!(
        first_line(&first).starts_with("E! no series collected (0 of 6)")
            && first_line(&first).contains("HTTP 401 APIGW.0301")
            && first_line(&first).contains("check the AK/SK pair"),
        "{}",
        stderr(&first)
    );
    // Every series is reported, the rest with the same cause, without a call.
    assert_eq!(
        stderr(&first)
            .lines()
            .filter(|l| l.starts_with("E! query="))
            .count(),
        6,
        "{}",
        stderr(&first)
    );
    assert_eq!(rejected(&sim), 1, "the first run probed once");

    for _ in 0..2 {
        let again = run_with(&spec, &state, wrong);
        assert_eq!(again.status.code(), Some(1));
        let line = first_line(&again);
        assert!(
            line.starts_with("E! credentials were rejected at ")
                && line.contains("; not retrying until ")
                && line.contains(
                    "to avoid locking the key (fix the credentials or run 'maas-usage state reset --auth')"
                ),
            "{}",
            stderr(&again)
        );
        assert_no_secret(&again);
    }
    assert_eq!(
        rejected(&sim),
        1,
        "three consecutive runs, one rejected call"
    );
    assert!(
        !std::fs::read_to_string(state.join("auth.json"))
            .unwrap()
            .contains("SKWRONG"),
        "the state holds a fingerprint, never the key"
    );

    // Fixed credentials (a new fingerprint) are tried at once.
    let fixed = run_with(&spec, &state, SK);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    assert_eq!(parse_lp(&stdout(&fixed)).len(), 7);
    assert_eq!(rejected(&sim), 1);
}

#[test]
fn the_rejection_expires_after_five_minutes_or_on_reset() {
    let sim = sim();
    let spec = six_series(&sim, true);
    let state = tempdir();
    let wrong = "SKWRONG-expiry";
    run_with(&spec, &state, wrong);
    assert_eq!(rejected(&sim), 1);

    // `state show` tells; `state reset --auth` forgets.
    let show = bin()
        .args(["state", "show", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        stdout(&show).contains("rejected (HTTP 401)"),
        "{}",
        stdout(&show)
    );
    let reset = bin()
        .args(["state", "reset", "--auth", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(reset.status.code(), Some(0), "{}", stderr(&reset));
    run_with(&spec, &state, wrong);
    assert_eq!(
        rejected(&sim),
        2,
        "after a reset the key is tried once more"
    );

    // Six minutes later (the record says so) it is tried again, once.
    let auth = state.join("auth.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();
    for (_, r) in doc.as_object_mut().unwrap() {
        let at = r["at_ms"].as_u64().unwrap();
        r["at_ms"] = (at - 6 * 60 * 1000).into();
    }
    std::fs::write(&auth, doc.to_string()).unwrap();
    run_with(&spec, &state, wrong);
    assert_eq!(rejected(&sim), 3);
    run_with(&spec, &state, wrong);
    assert_eq!(rejected(&sim), 3, "and then not again for five minutes");
}

#[test]
fn without_a_state_directory_one_run_still_probes_once() {
    let sim = sim();
    let spec = six_series(&sim, true);
    let not_a_dir = tempdir().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let out = run_with(&spec, &not_a_dir, "SKWRONG-nostate");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(rejected(&sim), 1, "{}", stderr(&out));
}

#[test]
fn a_rejected_discovery_blocks_the_next_runs_too() {
    let sim = sim();
    let spec = six_series(&sim, false);
    let state = tempdir();
    let out = run_with(&spec, &state, "SKWRONG-discovery");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HTTP 401"), "{}", stderr(&out));
    let again = run_with(&spec, &state, "SKWRONG-discovery");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        first_line(&again).starts_with("E! credentials were rejected at "),
        "{}",
        stderr(&again)
    );
    assert_eq!(rejected(&sim), 1);
}

#[test]
fn a_forbidden_answer_closes_the_gate_as_well() {
    let sim = sim();
    sim.push_script(maas_usage::sim::Scripted::Status {
        status: 403,
        body: r#"{"error_code":"ModelArts.0203","error_msg":"no permission"}"#.into(),
        retry_after: None,
    });
    let spec = six_series(&sim, true);
    let state = tempdir();
    let out = run_with(&spec, &state, SK);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("modelarts:monitoring:get"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        sim.requests().len(),
        1,
        "one forbidden call, then none: {}",
        stderr(&out)
    );
}

#[test]
fn execd_rereads_a_rotated_credentials_file() {
    let sim = sim();
    let url = sim.url();
    let dir = tempdir();
    let creds = dir.join("aksk");
    std::fs::write(
        &creds,
        format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY=SKWRONG-rotation\n"),
    )
    .unwrap();
    let spec = fixture(
        "auth/rotated-credentials.yaml",
        &[
            ("url", &url),
            ("project", PROJECT),
            ("credentials_file", &creds.display().to_string()),
        ],
    );
    let mut execd = Execd::start_with(&spec, |c| {
        c.env_remove("HW_ACCESS_KEY").env_remove("HW_SECRET_KEY");
    });
    let batch = execd.collect();
    let c = batch.last().unwrap();
    assert_eq!(c.int("series_failed"), Some(1));
    // The key is rotated; the next batch signs with the new one, at once.
    std::fs::write(&creds, format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY={SK}\n")).unwrap();
    let batch = execd.collect();
    let c = batch.last().unwrap();
    assert_eq!(c.int("series_ok"), Some(1), "{batch:?}");
    assert_eq!(execd.finish(), Some(0));
    assert_eq!(rejected(&sim), 1);
}

/// A simulator that accepts `n` correctly signed requests, then rejects every signature (the
/// key was disabled while in use).
fn revoked_after(n: u64) -> Simulator {
    let mut cfg = sim_config();
    cfg.faults.reject_signatures_after = Some(n);
    start(cfg)
}

#[test]
fn iam_accepting_the_key_does_not_let_maas_calls_out_unprobed() {
    // IAM (its own host) accepts the key; MaaS rejects it. Four calls may be in flight, but
    // the first one to the MaaS host goes alone.
    let iam = sim();
    let maas = revoked_after(0);
    let spec = six_series(&maas, false);
    let state = tempdir();
    let out = bin()
        .env("HW_ACCESS_KEY", AK)
        .env("HW_SECRET_KEY", SK)
        .args(["run", "--iam-endpoint", &iam.url(), "--spec"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(&state)
        .args(["--now", NOW])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(iam.requests().len(), 1, "the discovery call");
    assert!(iam.requests().iter().all(|r| r.status == 200));
    assert_eq!(rejected(&maas), 1, "{}", stderr(&out));
    assert_eq!(maas.requests().len(), 1, "{}", stderr(&out));
    assert_no_secret(&out);
}

/// A key disabled in the middle of a collection: the calls already in flight when it happens
/// (at most `limits.concurrency`) can be rejected; no call is sent after the first 401, and the
/// next run sends none.
#[test]
fn a_key_disabled_mid_collection_costs_at_most_the_calls_in_flight() {
    let sim = revoked_after(2);
    let spec = six_series(&sim, true);
    let state = tempdir();
    let out = run_with(&spec, &state, SK);
    let err = stderr(&out);
    let first = rejected(&sim);
    assert!((1..=4).contains(&first), "{first} rejected: {err}");
    assert!(sim.requests().len() <= 2 + 4, "{err}");
    // Every call sent after the first rejection went out before it was known.
    let next = run_with(&spec, &state, SK);
    assert_eq!(next.status.code(), Some(1), "{}", stderr(&next));
    assert_eq!(rejected(&sim), first, "the next run sends nothing");
}

#[test]
fn execd_probes_again_in_each_batch_so_a_key_disabled_between_batches_costs_one_call() {
    // The first batch's six calls are accepted; then the key is disabled.
    let sim = revoked_after(6);
    let spec = six_series(&sim, true);
    let state = tempdir();
    let mut execd = Execd::start_with(&spec, |c| {
        c.arg("--state-dir").arg(&state);
    });
    let first = execd.collect();
    assert_eq!(first.last().unwrap().int("series_ok"), Some(6));
    let second = execd.collect();
    assert_eq!(second.last().unwrap().int("series_failed"), Some(6));
    let third = execd.collect();
    assert_eq!(third.last().unwrap().int("series_failed"), Some(6));
    assert_eq!(execd.finish(), Some(0));
    assert_eq!(rejected(&sim), 1, "one probe, then the gate holds");
    assert_eq!(sim.requests().len(), 7);
}

#[test]
fn serve_probes_again_in_each_collection_so_a_key_disabled_between_them_costs_one_call() {
    let sim = revoked_after(6);
    let spec = six_series(&sim, true);
    let state = tempdir();
    let mut child = authed()
        .args(["serve", "--listen", "127.0.0.1:0", "--interval", "1s"])
        .args(["--now", NOW, "--spec"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The second collection meets the disabled key; two more follow it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while rejected(&sim) == 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(rejected(&sim), 1, "one probe, then the gate holds");
    assert_eq!(sim.requests().len(), 7);
}
