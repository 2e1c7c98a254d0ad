//! The credential chain as Huawei Cloud users have it: the environment, then a credentials file
//! (three hand-written forms or the console's credentials.csv), then the metadata service of an
//! ECS/CCE instance's agency, whose temporary credentials are never printed or stored and are
//! fetched again before they expire.

use crate::common;

use std::time::Duration;

use common::*;
use maas_usage::sim::{SimConfig, Simulator};

/// A simulator whose metadata service hands out credentials valid for `life`.
fn agency(life: Duration) -> Simulator {
    start(SimConfig {
        metadata: Some(life),
        ..sim_config()
    })
}

/// Returns once the last credentials `sim`'s metadata service handed out have expired (the
/// time the test needs to pass, judged by the service that hands them out).
fn wait_until_expired(sim: &Simulator) {
    let expiry = sim
        .credentials_expire_at()
        .expect("credentials were handed out");
    wait_until("the temporary credentials to expire", || {
        chrono::Utc::now() >= expiry
    });
}

/// What the simulator's agency handed out: any of it in an output is a leak.
fn assert_no_temporary_secret(o: &std::process::Output) {
    for text in [stdout(o), stderr(o)] {
        for secret in ["TEMPAK", "temporary-secret-", "temporary-security-token-"] {
            assert!(
                !text.contains(secret),
                "a temporary credential leaked:\n{text}"
            );
        }
    }
}

#[test]
fn an_agency_s_temporary_credentials_are_used_when_nothing_else_is_set() {
    let sim = agency(Duration::from_secs(3600));
    let spec = fixture_for(&sim, "credentials/metadata.yaml", &[]);
    let out = bin()
        .arg("run")
        .arg("--spec")
        .arg(&spec)
        .args(["--now", NOW, "-v"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(parse_lp(&stdout(&out)).len(), 3);
    assert_eq!(sim.credentials_issued(), 1);
    assert!(
        stderr(&out).contains("credentials from the metadata service"),
        "{}",
        stderr(&out)
    );
    assert_no_temporary_secret(&out);
    // The security token is sent, and signed.
    assert!(stats_calls(&sim).iter().all(|c| c.status == 200));
}

#[test]
fn the_metadata_endpoint_comes_from_the_environment_too() {
    let sim = agency(Duration::from_secs(3600));
    let out = bin()
        .env("MAAS_USAGE_METADATA_ENDPOINT", sim.url())
        .args(["query", "--endpoint", &sim.url(), "--project-id", PROJECT])
        .args(["--now", NOW, "--timezone", ZONE])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Total Tokens"));
    assert_eq!(sim.credentials_issued(), 1);
    assert_no_temporary_secret(&out);
}

#[test]
fn the_environment_wins_over_the_metadata_service() {
    let sim = agency(Duration::from_secs(3600));
    let spec = fixture_for(&sim, "credentials/metadata.yaml", &[]);
    let out = run(&spec, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(sim.credentials_issued(), 0, "never asked");
}

#[test]
fn a_host_without_a_metadata_service_fails_fast_listing_what_was_tried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let out = bin()
        .env(
            "MAAS_USAGE_METADATA_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .args([
            "query",
            "--endpoint",
            "http://127.0.0.1:9",
            "--project-id",
            PROJECT,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for source in [
        "HW_ACCESS_KEY/HW_SECRET_KEY",
        "HUAWEICLOUD_SDK_AK",
        "credentials file",
        "the metadata service",
        &port.to_string(),
    ] {
        assert!(err.contains(source), "names {source}: {err}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails fast, not after a long timeout"
    );
}

#[test]
fn execd_fetches_fresh_credentials_before_they_expire() {
    // Credentials for 4 s: the second batch, once they have expired, needs new ones.
    let sim = agency(Duration::from_secs(4));
    let spec = fixture_for(&sim, "credentials/metadata.yaml", &[]);
    let mut execd = Execd::start_with(&spec, |c| {
        c.env_remove("HW_ACCESS_KEY").env_remove("HW_SECRET_KEY");
    });
    let first = execd.collect();
    assert_eq!(first.last().unwrap().int("series_ok"), Some(2));
    wait_until_expired(&sim);
    let second = execd.collect();
    assert_eq!(
        second.last().unwrap().int("series_ok"),
        Some(2),
        "the old token has expired: only fresh credentials work"
    );
    assert!(sim.credentials_issued() >= 2);
    assert_eq!(execd.finish(), Some(0));
    assert!(
        sim.requests().iter().all(|r| r.status != 401),
        "no call went out with expired credentials"
    );
}

#[test]
fn the_consoles_credentials_csv_is_read_as_it_is_downloaded() {
    let sim = sim();
    let path = tempdir().join("credentials.csv");
    std::fs::write(
        &path,
        format!("\u{feff}User Name,Access Key Id,Secret Access Key\r\nmaas-reader,{AK},{SK}\r\n"),
    )
    .unwrap();
    let out = bin()
        .args(["query", "--endpoint", &sim.url(), "--project-id", PROJECT])
        .args(["--now", NOW, "--timezone", ZONE, "--credentials-file"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_no_secret(&out);
    // Two rows is ambiguous: a located error that quotes nothing.
    std::fs::write(
        &path,
        format!("User Name,Access Key Id,Secret Access Key\nA,{AK},{SK}\nB,{AK},{SK}\n"),
    )
    .unwrap();
    let out = bin()
        .args([
            "query",
            "--endpoint",
            &sim.url(),
            "--project-id",
            PROJECT,
            "--credentials-file",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("credentials.csv:3:"),
        "{}",
        stderr(&out)
    );
    assert_no_secret(&out);
}

#[test]
fn a_credentials_file_the_environment_overrides_gets_one_warning() {
    let sim = sim();
    let file = tempdir().join("aksk");
    std::fs::write(&file, "AKFILE\nSKFILE\n").unwrap();
    let out = query(
        &sim,
        &[
            "--project-id",
            PROJECT,
            "--credentials-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("win over the credentials file"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    assert!(warnings[0].contains("HW_ACCESS_KEY/HW_SECRET_KEY"));
}

#[test]
fn validate_and_plan_never_touch_the_chain() {
    let sim = agency(Duration::from_secs(3600));
    let spec = fixture_for(&sim, "credentials/metadata.yaml", &[]);
    for args in [vec!["validate"], vec!["plan", "--spec"]] {
        let out = bin().args(&args).arg(&spec).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert_eq!(sim.credentials_issued(), 0);
    assert!(sim.requests().is_empty());
}

/// A credentials file whose form is ambiguous is a located error (the line, what was expected,
/// no text of the file) and exit 2 before any call: read the wrong way, it would sign with a
/// garbage key, and every rejected signature brings the key closer to being locked.
#[test]
fn an_ambiguous_credentials_file_is_a_located_error_before_any_call() {
    let sim = sim();
    let dir = tempdir();
    for (i, (text, line, expected)) in [
        // `AK,SK` then a KEY=VALUE line: not the two-line form with the AK `AK,SK`.
        (
            format!("{AK},{SK}\nHW_REGION=cn-southwest-2\n"),
            1,
            "expected KEY=VALUE",
        ),
        // A bare AK then HW_SECRET_KEY=: not the SK `HW_SECRET_KEY=...`.
        (
            format!("{AK}\nHW_SECRET_KEY={SK}\n"),
            1,
            "expected KEY=VALUE",
        ),
        // One key twice, by either of its names: neither silently wins.
        (
            format!(
                "HW_ACCESS_KEY={AK}\nHW_SECRET_KEY={SK}\n# rotated\nHUAWEICLOUD_SDK_AK={AK}2\n"
            ),
            4,
            "the access key (HW_ACCESS_KEY or HUAWEICLOUD_SDK_AK) is given twice, first on line 1",
        ),
        (
            format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY={SK}\nHW_SECRET_KEY={SK}2\n"),
            3,
            "the secret key (HW_SECRET_KEY or HUAWEICLOUD_SDK_SK) is given twice, first on line 2",
        ),
        // A credentials.csv saved with semicolons: its header is not an AK.
        (
            format!("User Name;Access Key Id;Secret Access Key\nalice;{AK};{SK}\n"),
            1,
            "separated by commas",
        ),
        // Two lines that are not one token each.
        (format!("{AK} {SK}\n{SK}\n"), 1, "the AK alone"),
        (format!("{AK}\n{SK};x\n"), 2, "the SK alone"),
        // Characters no key has: quotes kept, a colon for `=`, a doubled `=`, an unpaired quote,
        // a comment after the value, old Mac line ends (one line to `lines()`).
        (format!("\"{AK}\"\n\"{SK}\"\n"), 1, "the AK alone"),
        (format!("\"{AK}\",\"{SK}\"\n"), 1, "one line must be AK,SK"),
        (
            format!("HW_ACCESS_KEY:{AK}\nHW_SECRET_KEY:{SK}\n"),
            1,
            "the AK alone",
        ),
        (
            format!("HW_ACCESS_KEY=={AK}\nHW_SECRET_KEY={SK}\n"),
            1,
            "not a key",
        ),
        (
            format!("HW_ACCESS_KEY=\"{AK}\nHW_SECRET_KEY={SK}\n"),
            1,
            "not a key",
        ),
        (
            format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY={SK} # rotated\n"),
            2,
            "not a key",
        ),
        (
            format!("HW_ACCESS_KEY={AK}\rHW_SECRET_KEY={SK}\rHW_SECRET_KEY={SK}\r"),
            3,
            "given twice, first on line 2",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(format!("aksk{i}"));
        std::fs::write(&path, &text).unwrap();
        let out = bin()
            .args(["query", "--endpoint", &sim.url(), "--project-id", PROJECT])
            .args(["--now", NOW, "--timezone", ZONE, "--credentials-file"])
            .arg(&path)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "case {i}: {err}");
        assert!(
            err.contains(&format!("{}:{line}: ", path.display())) && err.contains(expected),
            "case {i}: {err}"
        );
        assert_no_secret(&out);
        assert!(
            !err.contains("alice") && !err.contains("User Name"),
            "case {i}: {err}"
        );
        assert!(sim.requests().is_empty(), "case {i}: no call");
    }
}

fn run_on_metadata(spec: &std::path::Path) -> std::process::Output {
    bin()
        .arg("run")
        .arg("--spec")
        .arg(spec)
        .args(["--now", NOW])
        .output()
        .unwrap()
}

/// A metadata service that is there but fails (a 500, an answer that never comes) is the
/// cloud's failure, exit 1 like any other; only a host without one (nothing listens) means no
/// credentials were configured, exit 2.
#[test]
fn a_failing_metadata_service_is_the_cloud_s_failure_not_the_input_s() {
    let sim = agency(Duration::from_secs(3600));
    sim.push_script(maas_usage::sim::Scripted::Status {
        status: 500,
        body: "internal error".into(),
        retry_after: None,
    });
    let out = run_on_metadata(&fixture_for(&sim, "credentials/metadata.yaml", &[]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("HTTP 500"), "{}", stderr(&out));

    // Connected, and no answer: the fetch times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || silent.accept().map(|(s, _)| s));
    let out = run_on_metadata(
        &spec_for(&sim)
            .cloud(&format!("metadata_endpoint: http://{addr}"))
            .limits("timeout: 20s")
            .write(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    drop(held.join());
    assert!(sim.requests().iter().all(|r| r.status != 401));
}

/// Temporary credentials past their `expires_at` would be a certain rejection: never signed
/// with, whether the service hands them out expired or a renewal fails after they expired.
#[test]
fn temporary_credentials_past_their_expiry_are_never_signed_with() {
    let sim = agency(Duration::ZERO);
    let out = run_on_metadata(&fixture_for(&sim, "credentials/metadata.yaml", &[]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("expired"), "{err}");
    assert_no_temporary_secret(&out);
    let signed = |sim: &Simulator| {
        sim.requests()
            .iter()
            .filter(|r| r.path != maas_usage::cloud::metadata::PATH)
            .count()
    };
    assert_eq!(signed(&sim), 0, "{err}");

    // In a long-running process: fresh credentials cannot be had once these expired.
    let life = Duration::from_secs(3);
    let sim = agency(life);
    let spec = fixture_for(&sim, "credentials/metadata.yaml", &[]);
    let mut execd = Execd::start_with(&spec, |c| {
        c.env_remove("HW_ACCESS_KEY").env_remove("HW_SECRET_KEY");
    });
    assert_eq!(execd.collect().last().unwrap().int("series_ok"), Some(2));
    let before = signed(&sim);
    wait_until_expired(&sim);
    sim.push_script(maas_usage::sim::Scripted::Status {
        status: 500,
        body: "internal error".into(),
        retry_after: None,
    });
    let second = execd.collect();
    assert_eq!(second.last().unwrap().int("series_failed"), Some(2));
    let (code, err) = execd.finish_with_stderr();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(signed(&sim), before, "nothing signed with them: {err}");
    assert!(sim.requests().iter().all(|r| r.status != 401), "{err}");
}

/// A renewal that brings the same credentials again (a metadata service that hands out the same
/// ones until they near their end, as ECS does) changes nothing and logs nothing.
#[test]
fn the_same_credentials_fetched_again_are_not_new_credentials() {
    let sim = start(SimConfig {
        metadata: Some(Duration::from_secs(4)),
        metadata_reuse: true,
        ..sim_config()
    });
    let spec = fixture_for(&sim, "credentials/metadata.yaml", &[]);
    let mut execd = Execd::start_with(&spec, |c| {
        c.env_remove("HW_ACCESS_KEY").env_remove("HW_SECRET_KEY");
    });
    // A batch each time the credentials in use are due for renewal (a quarter of their life
    // left), until a renewal brought the same credentials again (the simulator hands them out
    // again while an eighth of their life is left; a batch that comes later gets fresh ones).
    wait_until("a renewal that brings the same credentials again", || {
        let expiry = wait_for("credentials handed out", || sim.credentials_expire_at());
        wait_until("the credentials to be due for renewal", || {
            chrono::Utc::now() + chrono::Duration::seconds(1) >= expiry
        });
        let batch = execd.collect();
        assert_eq!(batch.last().unwrap().int("series_ok"), Some(2));
        sim.metadata_fetches() > sim.credentials_issued()
    });
    let (code, err) = execd.finish_with_stderr();
    assert_eq!(code, Some(0), "{err}");
    let announced = err
        .lines()
        .filter(|l| l.contains("new credentials"))
        .count() as u64;
    assert_eq!(announced, sim.credentials_issued() - 1, "{err}");
}
