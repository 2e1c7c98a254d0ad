//! The state directory: one request budget for every process sharing an IAM user or agency
//! (whatever temporary keys an agency hands out), the project id reused across runs, state that
//! is never fatal, and files nobody used for a day removed.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use maas_usage::sim::Simulator;

/// The simulator's limit and the client's budget: N calls per 2 s window.
const N: u32 = 8;
const WINDOW_MS: u64 = 2000;

fn throttling_sim() -> Simulator {
    common::throttling_sim(N, WINDOW_MS)
}

/// Four runs at once, each needing N/2 calls (four-queries.yaml), sharing `state` when given.
fn four_runs(sim: &Simulator, state: Option<&std::path::Path>) -> Vec<std::process::Output> {
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = authed();
            c.env("MAAS_USAGE_RATE_WINDOW_MS", WINDOW_MS.to_string())
                .arg("run")
                .arg("--spec")
                .arg(fixture_for(
                    sim,
                    "state/four-queries.yaml",
                    &[("rpm", &N.to_string())],
                ))
                .args(["--now", NOW])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(s) = state {
                c.arg("--state-dir").arg(s);
            }
            c.spawn().unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

#[test]
fn four_concurrent_runs_share_one_budget_and_get_no_429() {
    let sim = throttling_sim();
    let state = tempdir().join("state");
    let mut throttled = 0;
    for out in four_runs(&sim, Some(&state)) {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let collector = parse_lp(&stdout(&out)).pop().unwrap();
        throttled += collector.int("throttled").unwrap();
        assert_eq!(collector.int("series_failed"), Some(0));
    }
    assert_eq!(throttled, 0);
    assert_eq!(sim.requests().iter().filter(|r| r.status == 429).count(), 0);
    assert_eq!(stats_calls(&sim).len(), 16);
}

#[test]
fn without_the_shared_budget_the_same_load_is_throttled() {
    // The control experiment: the test above would pass vacuously if the simulator never
    // throttled. Per-process budgets (no state directory) overshoot the shared limit.
    let sim = throttling_sim();
    four_runs(&sim, None);
    assert!(sim.requests().iter().any(|r| r.status == 429));
}

#[test]
fn the_project_id_is_discovered_once_and_reused() {
    let sim = sim();
    let state = tempdir().join("state");
    let path = fixture_for(&sim, "state/one-query-discovered.yaml", &[]);
    for _ in 0..3 {
        let out = run(&path, &["--state-dir", state.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.path == "/v3/projects")
            .count(),
        1
    );
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for e in std::fs::read_dir(&state).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let body = std::fs::read_to_string(e.path()).unwrap_or_default();
        assert!(
            !name.contains(AK) && !body.contains(AK) && !body.contains(SK),
            "{name}"
        );
    }
}

#[test]
fn corrupt_or_unusable_state_is_a_warning_not_a_failure() {
    let sim = sim();
    let state = tempdir().join("state");
    let path = fixture_for(&sim, "state/one-query-discovered.yaml", &[]);
    assert!(run(&path, &["--state-dir", state.to_str().unwrap()])
        .status
        .success());
    // All but the credential gate's records, whose loss blocks every call instead
    // (auth.rs: a_corrupt_rejection_store_blocks_every_credential_until_it_is_reset).
    for e in std::fs::read_dir(&state).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && name != "auth.json" {
            std::fs::write(e.path(), "{{{ not json").unwrap();
        }
    }
    let out = run(&path, &["--state-dir", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("W! ignoring corrupt state file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(parse_lp(&stdout(&out)).len(), 2);

    let file = tempdir().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = run(&path, &["--state-dir", file.join("sub").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("cannot be used")
            && stderr(&out).contains("the request budget is per process"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_broken_state_directory_never_removes_the_budget() {
    let sim = sim();
    let path = fixture_for(&sim, "state/eight-queries.yaml", &[("rpm", "5")]);
    for broken in ["json", "lock"] {
        let state = tempdir().join("state");
        std::fs::create_dir_all(&state).unwrap();
        // A directory where the budget's file (or its lock) belongs: no write or lock can
        // succeed there, not even root's.
        let key = maas_usage::cloud::auth::access_key_id(AK);
        std::fs::create_dir(state.join(format!("budget-{key}.{broken}"))).unwrap();
        sim.clear_log();
        let out = run(&path, &["--state-dir", state.to_str().unwrap()]);
        assert_eq!(
            stats_calls(&sim).len(),
            5,
            "requests_per_minute: 5 holds ({broken}): {}",
            stderr(&out)
        );
        assert_eq!(
            stderr(&out)
                .lines()
                .filter(|l| l.contains("cannot hold the request budget"))
                .count(),
            1,
            "one warning: {}",
            stderr(&out)
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

#[test]
fn a_state_directory_others_can_write_is_a_warning() {
    let sim = sim();
    let path = fixture_for(&sim, "state/one-query.yaml", &[]);
    let state = tempdir().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(&path, &["--state-dir", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("W! the state directory")
            && stderr(&out).contains("can be written by group or others"),
        "{}",
        stderr(&out)
    );
    // Temporary files have random names and are gone after the run.
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".maas-usage-")),
        "{names:?}"
    );
}

/// An agency's temporary credentials (here a fresh AK at every fetch, the worst case) are one
/// identity to the API: the runs share one request budget and one discovered project id, and
/// leave one budget file, not one per temporary key.
#[test]
fn an_agency_is_one_budget_and_one_project_id_whatever_temporary_key_it_hands_out() {
    let mut cfg = sim_config();
    cfg.metadata = Some(Duration::from_secs(3600));
    let sim = start(cfg);
    let path = fixture_for(&sim, "state/eight-queries-discovered.yaml", &[("rpm", "5")]);
    let state = tempdir().join("state");
    for n in 0..3 {
        let mut agency = bin();
        agency.env("MAAS_USAGE_METADATA_ENDPOINT", sim.url());
        let out = run_in_state(agency, &path, &state).output().unwrap();
        // The first run spends the budget; the next two find none left.
        let want = if n == 0 { 0 } else { 1 };
        assert_eq!(out.status.code(), Some(want), "{}", stderr(&out));
    }
    assert_eq!(sim.credentials_issued(), 3, "a fresh key every run");
    let signed: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path != maas_usage::cloud::metadata::PATH)
        .collect();
    assert_eq!(
        signed.iter().filter(|r| r.path == "/v3/projects").count(),
        1,
        "the project id is discovered once"
    );
    assert_eq!(
        signed.len(),
        5,
        "requests_per_minute: 5 holds across the three runs"
    );
    let budgets: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("budget-") && n.ends_with(".json"))
        .collect();
    assert_eq!(budgets.len(), 1, "{budgets:?}");
}

/// Budget files, their locks and probe locks that nobody used for a day are removed (a key
/// rotated away, a temporary key of old); the ones in use, and any other file, stay.
#[test]
fn state_files_nobody_used_for_a_day_are_removed() {
    let sim = sim();
    let path = fixture_for(&sim, "state/one-query.yaml", &[]);
    let state = tempdir().join("state");
    let first = run(&path, &["--state-dir", state.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let names = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let own = names();
    let aged = |name: &str, age: Duration| {
        let p = state.join(name);
        std::fs::write(&p, "{}").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::SystemTime::now() - age).unwrap();
    };
    let day = Duration::from_secs(24 * 3600);
    let stale = [
        "budget-0123456789abcdef.json",
        "budget-0123456789abcdef.lock",
        "budget-ces-0123456789abcdef.json",
        "auth-probe-0123456789abcdef.lock",
    ];
    for name in stale {
        aged(name, 2 * day);
    }
    aged("budget-fedcba9876543210.json", Duration::from_secs(3600));
    aged("notes.json", 2 * day);
    // A destination whose runs stopped for a while keeps its checkpoints: removed, they would
    // send its whole backfill again.
    let destination = [
        "checkpoints-otlp-1a2b3c4d5e6f.json",
        "period-otlp-1a2b3c4d5e6f.lock",
    ];
    for name in destination {
        aged(name, 2 * day);
    }
    let second = run(&path, &["--state-dir", state.to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let after = names();
    for name in stale {
        assert!(!after.contains(name), "{name} stays: {after:?}");
    }
    for name in own
        .iter()
        .map(String::as_str)
        .chain(["budget-fedcba9876543210.json", "notes.json"])
        .chain(destination)
    {
        assert!(after.contains(name), "{name} was removed: {after:?}");
    }
}
