//! Hostile files where the plugin reads one: a credentials file, a CA bundle, a spec. Nothing
//! of their contents is ever echoed, and anything that is not a regular file is refused
//! quickly (exit 2) instead of being read forever.

mod common;

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
