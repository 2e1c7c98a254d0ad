//! A wrong key must not get the access key locked: at most one rejected signature per
//! credential per five minutes, whatever runs (series, threads, processes, execd batches, serve
//! collections) try to use it, and whichever host (IAM accepting it says nothing of MaaS);
//! new credentials are tried at once, and a rotated credentials file is picked up by execd.

mod common;

use std::collections::BTreeSet;
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
    let mut c = bin();
    c.env("HW_ACCESS_KEY", AK).env("HW_SECRET_KEY", sk);
    run_in_state(c, spec, state).output().unwrap()
}

/// Moves every time recorded in `state`'s `auth.json` (rejections, acceptances) `minutes` into
/// the past, as if it had been recorded that long ago.
fn age_records(state: &Path, minutes: u64) {
    let auth = state.join("auth.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();
    let back = |v: &mut serde_json::Value| *v = (v.as_u64().unwrap() - minutes * 60_000).into();
    if let Some(rejections) = doc.get_mut("rejections").and_then(|r| r.as_object_mut()) {
        rejections.values_mut().for_each(|r| back(&mut r["at_ms"]));
    }
    if let Some(accepted) = doc.get_mut("accepted").and_then(|a| a.as_object_mut()) {
        for hosts in accepted.values_mut() {
            hosts.as_object_mut().unwrap().values_mut().for_each(back);
        }
    }
    std::fs::write(&auth, doc.to_string()).unwrap();
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
                && line.contains(&format!(
                    "to avoid locking the key (fix the credentials or run 'maas-usage state reset --auth --state-dir {} --runtime-dir ",
                    state.display()
                ))
                && line.contains(&format!("recorded in {}", state.join("auth.json").display())),
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
    reset_auth(&state);
    run_with(&spec, &state, wrong);
    assert_eq!(
        rejected(&sim),
        2,
        "after a reset the key is tried once more"
    );

    // Six minutes later (the record says so) it is tried again, once.
    age_records(&state, 6);
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

/// A key accepted a moment ago and disabled since, met by three runs at once on the same state
/// directory: each skips the lone probe, but the first to go holds the probe lock until its
/// first answer, and the others wait for it as for a probe and meet its rejection. At most
/// the calls in flight of one process (`limits.concurrency`, 4) are rejected, fleet-wide, not
/// four per process.
#[test]
fn runs_that_skip_the_probe_at_once_cost_the_calls_in_flight_of_one_process_not_of_each() {
    let mut cfg = sim_config();
    // Answers take a second: every run is started before the first one hears back.
    cfg.faults.latency = std::time::Duration::from_secs(1);
    cfg.faults.reject_signatures_after = Some(6);
    let sim = start(cfg);
    let spec = six_series(&sim, true);
    let state = tempdir();
    let good = run_with(&spec, &state, SK);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    assert_eq!(rejected(&sim), 0);
    // The key is disabled; three runs start together.
    let runs: Vec<std::process::Child> = (0..3)
        .map(|_| {
            let mut c = authed();
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            run_in_state(c, &spec, &state).spawn().unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_no_secret(&out);
    }
    let n = rejected(&sim);
    assert!(
        (1..=4).contains(&n),
        "{n} rejected signatures for three runs: at most one run's calls in flight"
    );
    assert_eq!(
        sim.requests().len(),
        6 + n,
        "nothing after the first rejection"
    );
}

#[test]
fn execd_probes_again_in_each_batch_so_a_key_disabled_between_batches_costs_one_call() {
    // The first batch's six calls are accepted; then the key is disabled, and the acceptance
    // is older than a few minutes (the record says so) when the next batch comes.
    let sim = revoked_after(6);
    let spec = six_series(&sim, true);
    let state = tempdir();
    let mut execd = Execd::start_with(&spec, |c| {
        c.arg("--state-dir").arg(&state);
    });
    let first = execd.collect();
    assert_eq!(first.last().unwrap().int("series_ok"), Some(6));
    age_records(&state, 10);
    let second = execd.collect();
    assert_eq!(second.last().unwrap().int("series_failed"), Some(6));
    let third = execd.collect();
    assert_eq!(third.last().unwrap().int("series_failed"), Some(6));
    assert_eq!(execd.finish(), Some(0));
    assert_eq!(rejected(&sim), 1, "one probe, then the gate holds");
    assert_eq!(sim.requests().len(), 7);
}

/// A key that the host accepted minutes ago and that was disabled since meets the next
/// collection's first calls unprobed: at most the calls in flight (`limits.concurrency`) are
/// rejected, as for a key disabled in the middle of a collection, and none after.
#[test]
fn execd_a_key_accepted_minutes_ago_and_disabled_since_costs_at_most_the_calls_in_flight() {
    let sim = revoked_after(6);
    let spec = six_series(&sim, true);
    let state = tempdir();
    let mut execd = Execd::start_with(&spec, |c| {
        c.arg("--state-dir").arg(&state);
    });
    let first = execd.collect();
    assert_eq!(first.last().unwrap().int("series_ok"), Some(6));
    for _ in 0..2 {
        let next = execd.collect();
        assert_eq!(next.last().unwrap().int("series_failed"), Some(6));
    }
    assert_eq!(execd.finish(), Some(0));
    let n = rejected(&sim);
    assert!((1..=4).contains(&n), "{n} rejected");
    assert_eq!(
        sim.requests().len(),
        6 + n,
        "nothing after the first rejection"
    );
}

#[test]
fn serve_a_key_disabled_between_collections_costs_at_most_the_calls_in_flight_then_nothing() {
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
    let n = rejected(&sim);
    assert!((1..=4).contains(&n), "{n} rejected");
    assert_eq!(
        sim.requests().len(),
        6 + n,
        "nothing after the first rejection"
    );
}

/// `run_with`, with `runtime` as the per-user runtime directory (where rejections go when the
/// state directory cannot take them) and `extra` environment.
fn run_sharing(
    spec: &Path,
    state: &Path,
    sk: &str,
    runtime: &Path,
    extra: &[(&str, &Path)],
) -> std::process::Output {
    let mut c = bin();
    c.env("HW_ACCESS_KEY", AK)
        .env("HW_SECRET_KEY", sk)
        .env("XDG_RUNTIME_DIR", runtime);
    for (k, v) in extra {
        c.env(k, v);
    }
    run_in_state(c, spec, state).output().unwrap()
}

/// A state directory that cannot record a rejection is no reason to forget it: the per-user
/// runtime directory keeps it. Broken two ways that hold for root too: the state directory's
/// path is a regular file (it cannot be opened), or the rejections' lock is a directory (it
/// opens, and cannot record).
#[test]
fn a_state_directory_that_cannot_record_rejections_leaves_them_to_the_runtime_directory() {
    let sim = sim();
    let spec = six_series(&sim, true);
    let file = tempdir().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let unlockable = tempdir().join("state");
    std::fs::create_dir_all(unlockable.join("auth.lock")).unwrap();
    for state in [file, unlockable] {
        sim.clear_log();
        let runtime = runtime_dir();
        for _ in 0..3 {
            let out = run_sharing(&spec, &state, "SKWRONG-broken-state", &runtime, &[]);
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            assert_no_secret(&out);
        }
        assert_eq!(rejected(&sim), 1, "{}: three runs", state.display());
    }
}

/// `c` as a user that file permissions bind: as is when the tests run as one, else (root, as in
/// CI) as `nobody`, to whom `dirs` are given.
fn unprivileged(c: &mut std::process::Command, dirs: &[&Path]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    const NOBODY: u32 = 65534;
    for d in dirs {
        std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    c.uid(NOBODY).gid(NOBODY);
}

/// A state directory that holds a rejection and then becomes read-only (or unreadable) is
/// still read: the next run, with another runtime directory, sends nothing (or, records it
/// cannot read, nothing at all), instead of trying the rejected key again.
#[test]
fn a_state_directory_that_became_read_only_still_holds_its_rejections() {
    use std::os::unix::fs::PermissionsExt;
    let sim = sim();
    let spec = six_series(&sim, true);
    let state = tempdir().join("st2");
    std::fs::create_dir(&state).unwrap();
    let mode = |m: u32| std::fs::set_permissions(&state, std::fs::Permissions::from_mode(m));
    let wrong = "SKWRONG-read-only";
    let run_as_user = || {
        let runtime = runtime_dir();
        let mut c = bin();
        c.env("HW_ACCESS_KEY", AK)
            .env("HW_SECRET_KEY", wrong)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("TMPDIR", &runtime);
        unprivileged(&mut c, &[&state, &runtime]);
        run_in_state(c, &spec, &state).output().unwrap()
    };
    let first = run_as_user();
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    assert_eq!(rejected(&sim), 1);
    assert!(state.join("auth.json").is_file());

    mode(0o500).unwrap();
    let read_only = run_as_user();
    let err = stderr(&read_only);
    assert_eq!(read_only.status.code(), Some(1), "{err}");
    assert_eq!(rejected(&sim), 1, "the rejection it holds counts: {err}");
    let recorded = format!("recorded in {}", state.join("auth.json").display());
    assert_error_line(&err, &["E! credentials were rejected at ", &recorded]);

    mode(0o000).unwrap();
    let unreadable = run_as_user();
    let err = stderr(&unreadable);
    mode(0o700).unwrap();
    assert_eq!(unreadable.status.code(), Some(1), "{err}");
    assert_error_line(&err, &["auth.json", "maas-usage state reset --auth"]);
    assert_eq!(sim.requests().len(), 1, "fail closed: {err}");
}

/// The command a blocked run's `E!` line gives (between `run '` and `'`), as arguments.
fn reset_command_of(err: &str) -> Vec<String> {
    let line = err
        .lines()
        .find(|l| l.starts_with("E! credentials were rejected at "))
        .unwrap_or_else(|| panic!("no blocked line: {err}"));
    let command = line
        .split_once("run '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .unwrap_or_else(|| panic!("no command: {line}"))
        .0;
    command.split(' ').map(str::to_string).collect()
}

/// Rejections recorded in the units' runtime directory (`XDG_RUNTIME_DIR=/run/maas-usage` in
/// the packaged units) while the state directory could not take them: a blocked run names the
/// file and the exact command that forgets them, which works from an operator's shell with
/// another `XDG_RUNTIME_DIR`; `state show` says which runtime directory it read, and reads the
/// units' with `--runtime-dir`.
#[test]
fn the_blocked_line_names_the_file_and_a_reset_that_reaches_the_units_runtime_directory() {
    let sim = sim();
    let spec = six_series(&sim, true);
    let state = tempdir().join("state");
    std::fs::create_dir_all(state.join("auth.lock")).unwrap();
    let units = runtime_dir();
    let wrong = "SKWRONG-units";
    let unit_run = || run_sharing(&spec, &state, wrong, &units, &[]);
    unit_run();
    let blocked = unit_run();
    let err = stderr(&blocked);
    let records = units.join("maas-usage/auth.json");
    assert_error_line(&err, &[&format!("recorded in {}", records.display())]);
    assert_eq!(rejected(&sim), 1);
    // The operator fixed the state directory and the key.
    std::fs::remove_dir(state.join("auth.lock")).unwrap();
    let show = |extra: &[&str]| {
        let out = bin()
            .args(["state", "show", "--state-dir"])
            .arg(&state)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let units_dir = units.join("maas-usage");
    let mine = show(&[]);
    assert!(
        mine.contains("runtime directory ") && !mine.contains(&units_dir.display().to_string()),
        "{mine}"
    );
    assert!(!mine.contains("rejected (HTTP 401)"), "{mine}");
    let theirs = show(&["--runtime-dir", units_dir.to_str().unwrap()]);
    assert!(
        theirs.contains(&format!("runtime directory {} ", units_dir.display()))
            && theirs.contains("rejected (HTTP 401)")
            && theirs.contains(&records.display().to_string()),
        "{theirs}"
    );
    // The command of the E! line, from a shell whose XDG_RUNTIME_DIR is another.
    let command = reset_command_of(&err);
    assert_eq!(command[..4], ["maas-usage", "state", "reset", "--auth"]);
    let reset = bin().args(&command[1..]).output().unwrap();
    assert_eq!(reset.status.code(), Some(0), "{}", stderr(&reset));
    assert!(
        stdout(&reset).contains("forgot 1 credential rejection(s)"),
        "{}",
        stdout(&reset)
    );
    assert!(!show(&["--runtime-dir", units_dir.to_str().unwrap()]).contains("rejected (HTTP"));
    unit_run();
    assert_eq!(rejected(&sim), 2, "the units try the key again");
}

/// A period spec on a state directory that cannot be opened: its period series are held back
/// (their checkpoints could not be recorded: `E!`, exit 1) while the credential gate's records
/// go to the runtime directory, so three runs with a wrong key still make one rejected call,
/// and with the right key the window query is delivered.
#[test]
fn a_period_spec_on_an_unusable_state_directory_holds_its_period_series_and_keeps_the_lockout() {
    let sim = sim();
    let spec = fixture(
        "auth/period-and-window.yaml",
        &[("url", &sim.url()), ("project", PROJECT)],
    );
    let file = tempdir().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let runtime = runtime_dir();
    for sk in ["SKWRONG-period", "SKWRONG-period", "SKWRONG-period", SK] {
        let out = run_sharing(&spec, &file, sk, &runtime, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_error_line(&err, &["period series", &file.display().to_string()]);
        assert_no_secret(&out);
        let queries: BTreeSet<String> = parse_lp(&stdout(&out))
            .iter()
            .filter(|l| l.measurement == "maas_usage")
            .filter_map(|l| l.tag("query").map(str::to_string))
            .collect();
        let expected: &[&str] = if sk == SK { &["today"] } else { &[] };
        assert_eq!(
            queries,
            expected.iter().map(|q| q.to_string()).collect(),
            "{err}"
        );
    }
    assert_eq!(rejected(&sim), 1, "three runs with the wrong key");
    assert!(runtime.join("maas-usage/auth.json").is_file());
}

/// With nowhere to record a rejection (the state directory, `XDG_RUNTIME_DIR` and the temporary
/// directory all unusable), one rejected call per run could lock the key: no signed call is
/// made, and the run says why.
#[test]
fn with_nowhere_to_record_a_rejection_no_signed_call_is_made() {
    let sim = sim();
    let spec = six_series(&sim, true);
    let file = tempdir().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for _ in 0..3 {
        let out = run_sharing(
            &spec,
            &file,
            "SKWRONG-nowhere",
            &file,
            &[("TMPDIR", file.as_path())],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_error_line(
            &stderr(&out),
            &["no signed call", "fix the state directory"],
        );
    }
    assert_eq!(sim.requests().len(), 0);
}

/// The credentials' key in the state directory's records (a fingerprint of AK, SK and token).
fn fingerprint_of(sk: &str) -> String {
    use maas_usage::cloud::credentials::{Credentials, Secret};
    maas_usage::cloud::auth::fingerprint(&Credentials {
        ak: Secret::new(AK),
        sk: Secret::new(sk),
        token: None,
        source: "test".into(),
        expires_at: None,
        agency: None,
    })
}

/// Records a rejection of `sk` now in `state`'s `auth.json`, as another process's 401 would.
fn record_rejection(state: &Path, sk: &str) {
    let auth = state.join("auth.json");
    let mut doc: serde_json::Value = std::fs::read_to_string(&auth)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let entry = serde_json::json!({"at_ms": now, "status": 401, "code": "APIGW.0301"});
    match doc.get_mut("rejections") {
        Some(r) => r[fingerprint_of(sk)] = entry,
        None => doc[fingerprint_of(sk)] = entry,
    }
    let tmp = state.join(".auth.json.test");
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, &auth).unwrap();
}

/// IAM (slow) accepts a probe; while it is out, another process records MaaS's 401 for the same
/// credentials. The acceptance is older than that rejection and must not erase it: the run
/// sends nothing to MaaS.
#[test]
fn an_accepted_probe_never_erases_a_rejection_recorded_while_it_was_out() {
    let mut cfg = sim_config();
    cfg.faults.latency = std::time::Duration::from_secs(2);
    let iam = start(cfg);
    let maas = revoked_after(0);
    let spec = six_series(&maas, false);
    let state = tempdir();
    let child = authed()
        .args(["run", "--iam-endpoint", &iam.url(), "--spec"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(&state)
        .args(["--now", NOW])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while iam.arrivals() == 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(iam.arrivals(), 1, "the discovery probe is out");
    record_rejection(&state, SK);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(iam.requests()[0].status, 200);
    assert_eq!(
        maas.requests().len(),
        0,
        "the rejection still holds: {}",
        stderr(&out)
    );
}

/// A rejection store that cannot be understood (cut, or one entry that is not a rejection) has
/// lost what it held: every credential counts as rejected until it is reset, and the run says
/// how to reset it.
#[test]
fn a_corrupt_rejection_store_blocks_every_credential_until_it_is_reset() {
    let sim = sim();
    let spec = six_series(&sim, true);
    let wrong = "SKWRONG-corrupt-store";
    type Corrupt = fn(&str) -> String;
    let cases: [(&str, Corrupt); 2] = [
        ("cut", |text| text[..text.len() / 2].to_string()),
        ("one bad entry", |text| {
            let mut doc: serde_json::Value = serde_json::from_str(text).unwrap();
            let bad = serde_json::json!({"at_ms": "yesterday", "status": 401});
            match doc.get_mut("rejections") {
                Some(r) => r["0123456789abcdef"] = bad,
                None => doc["0123456789abcdef"] = bad,
            }
            doc.to_string()
        }),
    ];
    for (case, corrupt) in cases {
        sim.clear_log();
        let state = tempdir();
        run_with(&spec, &state, wrong);
        assert_eq!(rejected(&sim), 1, "{case}");
        let auth = state.join("auth.json");
        let text = std::fs::read_to_string(&auth).unwrap();
        std::fs::write(&auth, corrupt(&text)).unwrap();
        for sk in [wrong, SK] {
            let out = run_with(&spec, &state, sk);
            assert_eq!(out.status.code(), Some(1), "{case}: {}", stderr(&out));
            assert_error_line(
                &stderr(&out),
                &["auth.json", "maas-usage state reset --auth"],
            );
        }
        assert_eq!(sim.requests().len(), 1, "{case}: no call after the first");
        reset_auth(&state);
        let fixed = run_with(&spec, &state, SK);
        assert_eq!(fixed.status.code(), Some(0), "{case}: {}", stderr(&fixed));
    }
}

/// An agency's temporary credentials (a fresh AK at every fetch here) are one credential to the
/// gate: its rejection holds for the next temporary key too.
#[test]
fn an_agency_rejected_once_is_not_tried_again_with_its_next_temporary_key() {
    let mut cfg = sim_config();
    cfg.metadata = Some(std::time::Duration::from_secs(3600));
    cfg.faults.reject_signatures_after = Some(0);
    let sim = start(cfg);
    let spec = six_series(&sim, true);
    let state = tempdir();
    for _ in 0..3 {
        let mut agency = bin();
        agency.env("MAAS_USAGE_METADATA_ENDPOINT", sim.url());
        let out = run_in_state(agency, &spec, &state).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    }
    assert_eq!(sim.credentials_issued(), 3, "a fresh key every run");
    assert_eq!(rejected(&sim), 1);
}

/// The calls of one run (its part of the log) that reached the server before its first answer:
/// 1 when the first call went out alone (a probe).
fn sent_before_the_first_answer(sim: &Simulator) -> usize {
    let log = sim.requests();
    let first = log.iter().map(|r| r.at).min().expect("a call");
    log.iter().filter(|r| r.arrived < first).count()
}

/// The lone first call (a probe) is skipped when the same host accepted the same credentials
/// minutes ago: a key disabled since costs at most the calls in flight, as one disabled in the
/// middle of a collection does. The acceptance expires; a rejection wins over it, and a reset
/// forgets it.
#[test]
fn a_recent_acceptance_skips_the_lone_probe_until_it_expires_and_a_rejection_wins() {
    let mut cfg = sim_config();
    // Answers take a second: calls sent together all reach the server before the first answer.
    cfg.faults.latency = std::time::Duration::from_secs(1);
    let sim = start(cfg);
    let spec = six_series(&sim, true);
    let state = tempdir();
    let run_ok = |what: &str| {
        sim.clear_log();
        let out = run_with(&spec, &state, SK);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        sent_before_the_first_answer(&sim)
    };
    assert_eq!(run_ok("first"), 1, "the first run probes");
    assert_eq!(
        run_ok("second"),
        4,
        "accepted a moment ago: four calls at once"
    );

    // A rejection recorded since wins over the acceptance: nothing is sent.
    record_rejection(&state, SK);
    sim.clear_log();
    let blocked = run_with(&spec, &state, SK);
    assert_eq!(blocked.status.code(), Some(1), "{}", stderr(&blocked));
    assert!(sim.requests().is_empty());
    // A reset forgets both: the next run probes again, and the one after need not.
    reset_auth(&state);
    assert_eq!(run_ok("after the reset"), 1);
    assert_eq!(run_ok("then"), 4);

    // An acceptance older than a few minutes is no proof: the next run probes.
    age_records(&state, 10);
    assert_eq!(run_ok("ten minutes later"), 1);
}
