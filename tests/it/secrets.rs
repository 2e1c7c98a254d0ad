//! Canary credentials through every subcommand and failure path: none may appear in stdout,
//! stderr, the state directory or the committed snapshots.

use crate::common;

use std::io::{BufRead, Read};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use maas_usage::sim::SimCredential;

fn canary_free(label: &str, text: &str) {
    for secret in [AK, SK, TOKEN] {
        assert!(!text.contains(secret), "{label} leaked a secret:\n{text}");
    }
}

fn check(label: &str, o: &Output) {
    canary_free(&format!("{label} stdout"), &stdout(o));
    canary_free(&format!("{label} stderr"), &stderr(o));
}

fn with_token(mut c: Command) -> Command {
    c.env("HW_SECURITY_TOKEN", TOKEN);
    c
}

#[test]
fn no_canary_anywhere() {
    let mut cfg = sim_config();
    cfg.credentials = vec![SimCredential {
        ak: AK.into(),
        sk: SK.into(),
        token: Some(TOKEN.into()),
    }];
    let sim = start(cfg);
    let url = sim.url();
    let state = tempdir().join("state");
    let st = state.to_str().unwrap();

    // query: success in both formats, raw segments, verbose logging.
    for args in [
        vec!["-v", "--raw"],
        vec!["--format", "json", "-v"],
        vec!["--range", "last_45d", "--raw"],
    ] {
        let o = with_token(authed())
            .args([
                "query",
                "--endpoint",
                &url,
                "--iam-endpoint",
                &url,
                "--now",
                NOW,
                "--state-dir",
                st,
            ])
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        check(&format!("query {args:?}"), &o);
    }

    // A wrong SK: the gateway's 401 echoes its canonical request, token included.
    let o = with_token(bin())
        .env("HW_ACCESS_KEY", AK)
        .env("HW_SECRET_KEY", format!("{SK}-wrong"))
        .args([
            "query",
            "-v",
            "--raw",
            "--endpoint",
            &url,
            "--project-id",
            PROJECT,
            "--now",
            NOW,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("x-security-token:***"),
        "the echo is there, scrubbed: {}",
        stderr(&o)
    );
    check("query with a wrong SK", &o);

    // run in every format, verbose, with the state directory.
    let spec = spec_file(&example_spec_for(&sim));
    for format in ["influx", "json", "table", "otlp-json", "prometheus"] {
        let o = with_token(authed())
            .args([
                "run",
                "-v",
                "--format",
                format,
                "--now",
                NOW,
                "--state-dir",
                st,
                "--spec",
            ])
            .arg(&spec)
            .output()
            .unwrap();
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        check(&format!("run --format {format}"), &o);
    }
    let o = with_token(authed())
        .args(["run", "--execd", "--spec"])
        .arg(&spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"\n")?;
            c.wait_with_output()
        })
        .unwrap();
    check("run --execd", &o);

    // A run that fails every call, verbosely.
    let o = with_token(bin())
        .env("HW_ACCESS_KEY", AK)
        .env("HW_SECRET_KEY", "SKCANARY-wrong")
        .args(["run", "-v", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    check("run with a wrong SK", &o);

    // Inline secrets in a spec are refused without being echoed.
    let bad = fixture(
        "secrets/invalid/inline-secrets.yaml",
        &[("ak", AK), ("sk", SK), ("token", TOKEN)],
    );
    for cmd in [
        vec!["validate"],
        vec!["plan", "--spec"],
        vec!["run", "--spec"],
    ] {
        let o = authed().args(&cmd).arg(&bad).output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        check(&format!("{cmd:?} with an inline secret"), &o);
    }
    let o = authed()
        .args(["validate", "--format", "json"])
        .arg(&bad)
        .output()
        .unwrap();
    check("validate --format json", &o);

    // Credentials files: good, and malformed with the secret on the bad line.
    let dir = tempdir();
    let good = dir.join("good");
    std::fs::write(
        &good,
        format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY={SK}\nHW_SECURITY_TOKEN={TOKEN}\n"),
    )
    .unwrap();
    let o = bin()
        .args([
            "query",
            "-v",
            "--endpoint",
            &url,
            "--iam-endpoint",
            &url,
            "--credentials-file",
        ])
        .arg(&good)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    check("query with a credentials file", &o);
    let bad_file = dir.join("bad");
    std::fs::write(&bad_file, format!("{AK}\n{SK}\n{TOKEN}\n")).unwrap();
    let o = bin()
        .args(["query", "--endpoint", &url, "--credentials-file"])
        .arg(&bad_file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    check("query with a malformed credentials file", &o);

    // Commands that need no credentials, with canaries in the environment anyway.
    for args in [
        vec!["plan", "--spec", spec.to_str().unwrap()],
        vec!["schema"],
        vec!["demo"],
        vec!["--help"],
        vec!["run", "--help"],
    ] {
        let o = with_token(authed()).args(&args).output().unwrap();
        check(&format!("{args:?}"), &o);
    }

    // The simulator, started with the canaries as its accepted credentials, is stopped once it
    // has printed where it listens on stdout and on stderr, however slowly it starts.
    let mut child = with_token(authed())
        .args(["simulator", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let streams: [(&str, Box<dyn Read + Send>); 2] = [
        ("stdout", Box::new(child.stdout.take().unwrap())),
        ("stderr", Box::new(child.stderr.take().unwrap())),
    ];
    let readers: Vec<_> = streams
        .into_iter()
        .map(|(name, stream)| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = tx.send((name, line));
                }
            })
        })
        .collect();
    drop(tx);
    let mut lines: Vec<(&str, String)> = Vec::new();
    let url_on = |lines: &[(&str, String)], stream: &str| {
        lines
            .iter()
            .any(|(s, l)| *s == stream && l.contains("http://127.0.0.1:"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(url_on(&lines, "stdout") && url_on(&lines, "stderr")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    for r in readers {
        r.join().unwrap();
    }
    lines.extend(rx.try_iter());
    let text: String = lines.iter().map(|(s, l)| format!("{s}: {l}\n")).collect();
    assert!(
        url_on(&lines, "stdout") && url_on(&lines, "stderr"),
        "{text}"
    );
    canary_free("simulator", &text);

    // What was written to disk.
    for e in std::fs::read_dir(&state).unwrap().flatten() {
        let body = std::fs::read(e.path()).unwrap_or_default();
        canary_free(
            &format!("state file {:?}", e.file_name()),
            &String::from_utf8_lossy(&body),
        );
    }
    let snapshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots");
    for e in std::fs::read_dir(snapshots).unwrap().flatten() {
        canary_free(
            &format!("snapshot {:?}", e.file_name()),
            &std::fs::read_to_string(e.path()).unwrap(),
        );
    }
}

/// A password in an endpoint URL (user information) is refused, and the refusal shows the URL
/// with `***` in its place: from a spec (`validate`, `run`), a flag or the environment.
#[test]
fn a_password_in_an_endpoint_url_is_never_shown() {
    const PASSWORD: &str = "pw2secret";
    let url = format!("http://al:{PASSWORD}@host.example");
    let no_password = |label: &str, o: &Output| {
        for text in [stdout(o), stderr(o)] {
            assert!(!text.contains(PASSWORD), "{label}: {text}");
        }
    };
    for (section, key) in [
        ("cloud", "endpoint"),
        ("cloud", "iam_endpoint"),
        ("cloud", "metadata_endpoint"),
        ("cloud", "ces_endpoint"),
        ("cloud", "maas_monitor_endpoint"),
        ("output", "otlp"),
    ] {
        let body = match key {
            "otlp" => format!("  otlp:\n    endpoint: \"{url}\"\n"),
            _ => format!("  {key}: \"{url}\"\n"),
        };
        let spec = spec_file(&format!(
            "apiVersion: maas-usage/v1\n{section}:\n{body}queries:\n  - name: a\n"
        ));
        for cmd in [vec!["validate"], vec!["run", "--spec"]] {
            let o = authed().args(&cmd).arg(&spec).output().unwrap();
            assert_eq!(o.status.code(), Some(2), "{key} {cmd:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("http://***@host.example"),
                "{key} {cmd:?}: {}",
                stderr(&o)
            );
            no_password(&format!("{key} {cmd:?}"), &o);
        }
    }
    let sim = sim();
    let spec = spec_file(&format!(
        "apiVersion: maas-usage/v1\ncloud:\n  project_id: {PROJECT}\nqueries:\n  - name: a\n"
    ));
    for flag in ["--endpoint", "--iam-endpoint"] {
        let bad = format!("http://bob:{PASSWORD}@127.0.0.1:1");
        let o = authed()
            .args(["run", flag, &bad, "--spec"])
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("http://***@127.0.0.1:1"),
            "{flag}: {}",
            stderr(&o)
        );
        no_password(flag, &o);
    }
    // The metadata service's address from the environment, when nothing else has credentials.
    let o = bin()
        .env(
            "MAAS_USAGE_METADATA_ENDPOINT",
            format!("http://bob:{PASSWORD}@127.0.0.1:9"),
        )
        .args(["query", "--endpoint", &sim.url(), "--project-id", PROJECT])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("http://***@127.0.0.1:9"),
        "{}",
        stderr(&o)
    );
    no_password("the metadata endpoint", &o);
    assert!(sim.requests().is_empty());
}

#[test]
fn otlp_secrets_never_come_back_in_the_collectors_words() {
    use common::otlp::{Answer, HttpReceiver};
    const HEADER: &str = "OTLPSECRETCANARY";
    const PASSWORD: &str = "OTLPPASSCANARY";
    let sim = sim();
    let spec = fixture_for(&sim, "secrets/otlp-env.yaml", &[]);
    let cases = [
        (
            Answer::Status(401, "invalid token: Bearer OTLPSECRETCANARY"),
            false,
        ),
        (
            Answer::Status(403, "token OTLPSECRETCANARY is not allowed"),
            false,
        ),
        (
            Answer::Status(401, "user u with password OTLPPASSCANARY refused"),
            false,
        ),
        (
            Answer::Partial(1, "dropped for tenant OTLPSECRETCANARY"),
            true,
        ),
    ];
    for (answer, delivered) in cases {
        let rx = HttpReceiver::start();
        rx.push(answer.clone());
        let endpoint = rx.url.replace("http://", &format!("http://u:{PASSWORD}@"));
        let o = authed()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("Authorization=Bearer {HEADER}"),
            )
            .args(["run", "-v", "--now", NOW, "--spec"])
            .arg(&spec)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(if delivered { 0 } else { 1 }),
            "{err}"
        );
        assert!(
            err.contains("***"),
            "{answer:?}: the text is there, scrubbed: {err}"
        );
        for secret in [HEADER, PASSWORD] {
            assert!(!err.contains(secret), "{answer:?}: leaked:\n{err}");
            assert!(!stdout(&o).contains(secret));
        }
    }
}

/// An agency assumed through STS with temporary base credentials (the canary triple, an agency
/// chain): neither the base secrets nor those STS hands out reach stdout, stderr or the state
/// directory, whether STS grants the agency, refuses it or rejects the signature. A `cloud:`
/// block takes `assume_agency` too, and its series get no cloud tag.
#[test]
fn an_agency_s_base_and_temporary_secrets_never_appear() {
    const AGENCY: &str = "iam::0a1b2c3d4e5f60718293a4b5c6d7e8f9:agency:maas-readonly";
    let mut cfg = sim_config();
    cfg.credentials.clear();
    cfg.sts.callers = vec![SimCredential {
        ak: AK.into(),
        sk: SK.into(),
        token: Some(TOKEN.into()),
    }];
    cfg.sts.agencies = vec![maas_usage::sim::SimAgency::new(AGENCY)];
    let sim = start(cfg);
    let url = sim.url();
    let state = tempdir().join("state");
    let spec = |urn: &str| {
        spec_file(&format!(
            "apiVersion: maas-usage/v1\ncloud:\n  endpoint: {url}\n  iam_endpoint: {url}\n  sts_endpoint: {url}\n  assume_agency:\n    agency_urn: \"{urn}\"\n    duration: 2h\nqueries:\n  - name: a\n"
        ))
    };
    let temporary = ["STSAK", "temporary-secret-", "temporary-security-token-"];
    let mut texts = Vec::new();
    for (urn, code) in [(AGENCY, 0), ("iam::0a1b:agency:nope", 1)] {
        let o = run_in_state(with_token(authed()), &spec(urn), &state)
            .arg("-v")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(code), "{urn}: {}", stderr(&o));
        check(urn, &o);
        texts.push(stdout(&o) + &stderr(&o));
    }
    assert!(
        texts[0].contains("W! ") && texts[0].contains("at most 1h"),
        "an agency chain asks for an hour at most: {}",
        texts[0]
    );
    assert!(!texts[0].contains("cloud="), "no cloud tag: {}", texts[0]);
    // A signature STS rejects (the token left out).
    let o = run_in_state(authed(), &spec(AGENCY), &tempdir().join("state"))
        .arg("-v")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    check("rejected", &o);
    texts.push(stdout(&o) + &stderr(&o));
    for e in std::fs::read_dir(&state).unwrap().flatten() {
        if e.path().is_file() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    for text in &texts {
        canary_free("agency", text);
        for secret in temporary {
            assert!(!text.contains(secret), "{secret}:\n{text}");
        }
    }
}
