//! Hostile files where the plugin reads one: a credentials file, a CA bundle, a spec, the state
//! directory. Nothing of their contents is ever echoed, and anything that is not a regular file
//! is refused quickly (exit 2 for input) instead of being read forever; a planted symlink in
//! the state directory is never followed, a checkpoint file that cannot be read holds the
//! period series back instead of sending their buckets again, and a credential-rejection file
//! that cannot be read lets no signed call out.

use crate::common;

use common::*;

#[test]
fn a_malformed_credentials_file_never_echoes_its_text() {
    let sim = sim();
    let dir = tempdir();
    let url = sim.url();
    for (i, text) in [
        format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY {SK}=x\n"),
        format!("HW_ACCESS_KEY={AK}\n{SK}=x\n"),
        format!("HW_ACCESS_KEY={AK}\nhw_secret_key {SK}\n"),
        format!("HW_SECRET_KEY {SK}=x\n"),
        format!("{AK}\n{SK}\n{SK}\n"),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(format!("aksk-{i}"));
        std::fs::write(&path, text).unwrap();
        let out = bin()
            .args([
                "query",
                "--endpoint",
                &url,
                "--iam-endpoint",
                &url,
                "--credentials-file",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("credentials file {}:", path.display())),
            "names the file and line: {}",
            stderr(&out)
        );
        assert_no_secret(&out);
    }
    assert!(sim.requests().is_empty());
}

/// Runs `cmd` to completion within a generous bound; a hang (a FIFO opened for reading
/// waits for a writer forever) kills the process and fails the test.
fn bounded(mut cmd: std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(out) => out.expect("binary runs"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("still running after 10 s: a hang");
        }
    }
}

/// A directory, a FIFO and /dev/zero, each with what the message calls it.
fn not_regular_files() -> Vec<(std::path::PathBuf, &'static str)> {
    let dir = tempdir();
    let sub = dir.join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let fifo = dir.join("a-fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    vec![
        (sub, "a directory"),
        (fifo, "a FIFO"),
        ("/dev/zero".into(), "a character device"),
    ]
}

#[test]
fn a_credentials_file_that_is_not_a_regular_file_is_refused_at_once() {
    let sim = sim();
    let url = sim.url();
    for (path, kind) in not_regular_files() {
        let mut c = bin();
        c.args([
            "query",
            "--endpoint",
            &url,
            "--iam-endpoint",
            &url,
            "--credentials-file",
        ])
        .arg(&path);
        let out = bounded(c);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{kind}: {err}");
        assert!(
            err.contains(&path.display().to_string())
                && err.contains("--credentials-file")
                && err.contains(&format!("not a regular file but {kind}")),
            "{err}"
        );
    }
    assert!(sim.requests().is_empty());
}

#[test]
fn a_ca_file_that_is_not_a_regular_file_is_refused_at_once() {
    let sim = sim();
    let url = sim.url();
    let big = tempdir().join("huge.pem");
    std::fs::write(&big, vec![b'A'; 2 * 1024 * 1024]).unwrap();
    let mut cases = not_regular_files();
    cases.push((big, "larger than"));
    for (path, kind) in cases {
        let mut c = authed();
        c.args([
            "query",
            "--endpoint",
            &url,
            "--iam-endpoint",
            &url,
            "--project-id",
            PROJECT,
            "--ca-file",
        ])
        .arg(&path);
        let out = bounded(c);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{kind}: {err}");
        assert!(
            err.contains("--ca-file")
                && err.contains(&path.display().to_string())
                && err.contains(kind),
            "{err}"
        );
        assert!(!err.contains("AAAA"), "never the contents: {err}");
    }
    assert!(sim.requests().is_empty());
}

#[test]
fn a_spec_that_is_not_a_regular_file_is_refused_at_once() {
    for (path, kind) in not_regular_files() {
        let name = path.display().to_string();
        let mut v = bin();
        v.arg("validate").arg(&path);
        let mut r = authed();
        r.args(["run", "--now", NOW, "--spec"]).arg(&path);
        for out in [bounded(v), bounded(r)] {
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{kind}: {err}");
            let expected = if kind == "a directory" {
                // A directory is a directory of specs.
                "the directory holds no *.yaml or *.yml file".to_string()
            } else {
                format!("not a regular file but {kind}")
            };
            assert!(err.contains(&name) && err.contains(&expected), "{err}");
        }
    }
}

/// `run --spec <hostile_files/name> --state-dir state` against `sim`, bounded (see `bounded`).
fn state_run(
    sim: &maas_usage::sim::Simulator,
    name: &str,
    state: &std::path::Path,
) -> std::process::Output {
    let spec = fixture_for(sim, &format!("hostile_files/{name}"), &[]);
    let mut c = authed();
    c.args(["run", "--now", NOW, "--spec"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(state);
    bounded(c)
}

fn buckets(o: &std::process::Output) -> usize {
    parse_lp(&stdout(o))
        .iter()
        .filter(|l| l.measurement == "maas_usage")
        .count()
}

#[test]
fn a_planted_symlink_at_a_state_lock_is_never_followed() {
    let sim = sim();
    // The lock of the destination the run writes to (line protocol on stdout).
    let lock = "period-influx-stdout.lock";
    let state = tempdir().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let victim = tempdir().join("victim");
    std::os::unix::fs::symlink(&victim, state.join(lock)).unwrap();
    let out = state_run(&sim, "period.yaml", &state);
    let err = stderr(&out);
    assert!(!victim.exists(), "{lock}: the symlink was followed: {err}");
    assert!(err.contains(lock) && err.contains("symbolic link"), "{err}");
}

#[test]
fn a_checkpoint_file_that_cannot_be_read_safely_holds_the_period_series_back() {
    let sim = sim();
    let state = tempdir().join("state");
    let first = state_run(&sim, "period.yaml", &state);
    assert_eq!(buckets(&first), 3, "{}", stderr(&first));
    let checkpoints = state.join("checkpoints-influx-stdout.json");
    let big = tempdir().join("huge.json");
    std::fs::write(&big, vec![b' '; 20 * 1024 * 1024]).unwrap();
    // Regular files that are not the JSON a run writes (emptied, cut, overwritten): read as
    // empty, they would send the backfill's delivered buckets again.
    let corrupt = |name: &str, bytes: &[u8]| {
        let p = tempdir().join(name);
        std::fs::write(&p, bytes).unwrap();
        (p, "not the JSON")
    };
    let mut cases = not_regular_files();
    cases.push((big, "larger than"));
    cases.push(corrupt("empty.json", b""));
    cases.push(corrupt("cut.json", b"{\"series\": {\"cn-south"));
    cases.push(corrupt("binary.json", &[0xff, 0x00, 0x7b]));
    for (path, kind) in cases {
        std::fs::remove_file(&checkpoints).unwrap();
        std::os::unix::fs::symlink(&path, &checkpoints).unwrap();
        let out = state_run(&sim, "period.yaml", &state);
        let err = stderr(&out);
        assert_eq!(buckets(&out), 0, "{kind}: buckets sent again: {err}");
        assert_eq!(out.status.code(), Some(1), "{kind}: {err}");
        assert!(
            err.lines().any(|l| l.starts_with("E! ")
                && l.contains(&checkpoints.display().to_string())
                && l.contains(kind)),
            "{kind}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_budget_file_that_is_a_fifo_falls_back_with_one_warning_and_a_rejection_file_blocks_calls() {
    let sim = sim();
    let state = tempdir().join("state");
    let first = state_run(&sim, "one-query.yaml", &state);
    assert_eq!(buckets(&first), 1, "{}", stderr(&first));
    let budget = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("budget-") && name.ends_with(".json")
        })
        .expect("the first run keeps a budget file");
    let fifo = |p: &std::path::Path| {
        let _ = std::fs::remove_file(p);
        assert!(std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap()
            .success());
    };
    fifo(&budget);
    let out = state_run(&sim, "one-query.yaml", &state);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(buckets(&out), 1, "{err}");
    let name = budget.file_name().unwrap().to_string_lossy().into_owned();
    let warnings = err
        .lines()
        .filter(|l| l.starts_with("W! ") && l.contains(&name));
    assert_eq!(warnings.count(), 1, "{name}: {err}");

    // The credential gate's records are never read as empty: what they held is lost, so no
    // signed call is made until the file is replaced (`state reset --auth` does).
    let auth = state.join("auth.json");
    fifo(&auth);
    sim.clear_log();
    let out = state_run(&sim, "one-query.yaml", &state);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_error_line(&err, &["auth.json", "maas-usage state reset --auth"]);
    assert!(sim.requests().is_empty(), "{err}");
    reset_auth(&state);
    assert!(std::fs::metadata(&auth).unwrap().is_file());
    let out = state_run(&sim, "one-query.yaml", &state);
    assert_eq!(buckets(&out), 1, "{}", stderr(&out));
}
