//! A new user's first steps, without a cloud account: `demo --serve` shows the pull endpoint,
//! `simulator --print-spec` prints a spec for itself that runs as it is, and `--simulator URL`
//! points `run`, `serve` and `query` at a simulator with nothing of a real account: no
//! credentials from the environment or a file (only those the simulator's metadata service
//! hands out), no pinned project, no real endpoint, not the default state directory, and not
//! the runtime directory where a real run's credential gate may keep its records.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::proxy::Recorder;
use common::serving::Serve;
use common::*;
use maas_usage::sim::{SimConfig, Simulator};

/// The credentials file of the production spec: canaries too.
const FILE_AK: &str = "AKFILECANARY00000001";
const FILE_SK: &str = "SKFILECANARYq1w2e3r4t5y6u7i8o9p0";
/// The production spec's project, and the one the environment pins.
const SPEC_PROJECT: &str = "fedcba9876543210fedcba9876543210";
const ENV_PROJECT: &str = "00112233445566778899aabbccddeeff";

/// A simulator that would accept the canary credentials too (sending them would not fail and
/// so go unnoticed), with a metadata service, behind a relay that keeps every byte sent to it.
fn simulated() -> (Simulator, Recorder) {
    let sim = start(SimConfig {
        metadata: Some(Duration::from_secs(3600)),
        ..sim_config()
    });
    let recorder = Recorder::start(sim.addr());
    (sim, recorder)
}

/// The production spec: its own project, endpoints that do not resolve, a credentials file.
fn production_spec() -> (PathBuf, String) {
    let creds = tempdir().join("aksk");
    std::fs::write(&creds, format!("{FILE_AK}\n{FILE_SK}\n")).unwrap();
    let vars = [("credentials_file", creds.to_str().unwrap())];
    let text = fixture_text("first_run/production.yaml", &vars);
    (fixture("first_run/production.yaml", &vars), text)
}

/// The binary in a production environment: the canary credentials, a security token and a
/// pinned project, a HOME whose default state directory a real run would use, and a runtime
/// directory (`<home>/run`) where a real run's credential gate keeps its records when the state
/// directory cannot.
fn production(home: &Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let runtime = home.join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut c = authed();
    c.env("HW_SECURITY_TOKEN", TOKEN)
        .env("HW_PROJECT_ID", ENV_PROJECT)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", runtime);
    c
}

/// The simulator was asked with its own credentials only, and nothing real reached it or the
/// default state directory.
fn assert_nothing_real(recorder: &Recorder, home: &Path) {
    let sent = recorder.sent();
    assert!(
        sent.contains("GET /openstack/latest/securitykey"),
        "credentials from its metadata service"
    );
    assert!(sent.contains("TEMPAK"), "signed with the simulator's own");
    for real in [AK, SK, TOKEN, FILE_AK, FILE_SK, SPEC_PROJECT, ENV_PROJECT] {
        assert!(!sent.contains(real), "{real} was sent to the simulator");
    }
    assert!(
        !home.join(".local").exists(),
        "the default state directory is left alone"
    );
    // The real runs' credential rejections can be there: the simulator's gate stays in the
    // process, neither reading nor writing them.
    assert!(
        !home.join("run/maas-usage").exists(),
        "the runtime directory is left alone"
    );
}

#[test]
fn run_and_query_with_simulator_use_nothing_of_a_real_account() {
    let (sim, recorder) = simulated();
    let (spec, text) = production_spec();
    let home = tempdir();
    let out = production(&home)
        .args(["run", "--spec"])
        .arg(&spec)
        .args(["--simulator", &recorder.url, "--now", NOW])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "I! --simulator: every call goes to {} (MaaS, IAM, Cloud Eye, the MaaS monitor, metadata)",
            recorder.url
        )),
        "{}",
        stderr(&out)
    );
    assert_no_secret(&out);
    // The simulator's exact figures, from its own project (discovered through its IAM).
    let lines = parse_lp(&stdout(&out));
    let usage: Vec<_> = lines
        .iter()
        .filter(|l| l.measurement == "maas_usage")
        .collect();
    let expected = expected_series(&sim, &text);
    assert_eq!(usage.len(), expected.len());
    for (line, (key, u)) in usage.iter().zip(&expected) {
        assert_eq!(line.tag("query"), Some(key.query.as_str()));
        assert_eq!(line.tag("key_group"), Some(key.key_group.as_str()));
        assert_eq!(line.tag("project_id"), Some(PROJECT));
        assert_eq!(line.int("total_tokens"), Some(u.total_tokens as i64));
        assert_eq!(line.int("requests"), Some(u.requests as i64));
    }
    assert!(
        lines
            .iter()
            .any(|l| l.measurement == "maas_model_usage" && l.tag("query") == Some("models-24h")),
        "Cloud Eye and the MaaS monitor answered too"
    );
    // `query` the same way: the simulator's preset totals for the last 7 days.
    let asked = production(&home)
        .args(["query", "--simulator", &recorder.url, "--now", NOW])
        .args(["--timezone", ZONE, "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(asked.status.code(), Some(0), "{}", stderr(&asked));
    let conventional = json(&query(&sim, &["--format", "json"]));
    for part in ["values", "window"] {
        assert_eq!(
            json(&asked)["series"][0][part],
            conventional["series"][0][part]
        );
    }
    assert_nothing_real(&recorder, &home);
}

#[test]
fn serve_with_simulator_publishes_and_period_mode_wants_an_explicit_state_directory() {
    let (_sim, recorder) = simulated();
    let (spec, _) = production_spec();
    let home = tempdir();
    let mut cmd = production(&home);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--interval", "1h"])
        .args(["--simulator", &recorder.url, "--now", NOW, "--spec"])
        .arg(&spec);
    let serve = Serve::spawn(cmd);
    let page = serve.wait_for("/metrics", 200).body;
    assert!(
        page.contains(r#"maas_usage_total_tokens{cloud_region="cn-southwest-2",env="prod""#),
        "{page}"
    );
    assert!(page.contains("maas_model_total_tokens{"), "{page}");
    let (code, _) = serve.stop();
    assert_eq!(code, Some(0));
    assert_nothing_real(&recorder, &home);
    // Period checkpoints in the default directory would be the real runs': only --state-dir.
    let period = spec_file(
        "apiVersion: maas-usage/v1\nqueries:\n  - name: hourly\n    range: {every: 1h, delay: 2h, backfill: 5h}\n",
    );
    let run = |extra: &[&std::ffi::OsStr]| {
        production(&home)
            .args(["run", "--simulator", &recorder.url, "--now", NOW, "--spec"])
            .arg(&period)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("with --simulator, name one with --state-dir"),
        "{}",
        stderr(&out)
    );
    let state = tempdir().join("state");
    let out = run(&["--state-dir".as_ref(), state.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        parse_lp(&stdout(&out))
            .iter()
            .filter(|l| l.measurement == "maas_usage")
            .count(),
        3,
        "the backfill's settled buckets"
    );
    assert!(state.exists());
    assert_nothing_real(&recorder, &home);
}

#[test]
fn simulator_flags_that_would_mix_in_a_real_account_are_refused() {
    for extra in [
        &["--endpoint", "https://modelarts.maas.invalid"][..],
        &["--iam-endpoint", "https://iam.maas.invalid"],
        &["--credentials-file", "/etc/maas-usage/aksk"],
    ] {
        let out = bin()
            .args(["query", "--simulator", "http://127.0.0.1:9"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{}",
            stderr(&out)
        );
    }
    // The help says what it is for.
    let help = stdout(&bin().args(["run", "--help"]).output().unwrap());
    assert!(help.contains("A testing aid"), "{help}");
}

/// The lines of the spec a `simulator --print-spec` child printed: up to the example's last.
fn printed_spec(sim: &mut Serve) -> String {
    // The example, then the demo's own prices and budget.
    let demo = maas_usage::cmd::demo::DEMO_SPEND;
    let last = demo.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    let mut text = String::new();
    let mut out = BufReader::new(sim.child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "cut short: {text}");
        text.push_str(&line);
        if line.trim_end() == last {
            return text;
        }
    }
}

#[test]
fn the_simulator_prints_a_spec_for_itself_that_gets_the_demos_figures() {
    // The simulator as a user starts it: no credentials in its environment.
    let mut cmd = bin();
    cmd.args(["simulator", "--print-spec", "--now", NOW]);
    let mut sim = Serve::launch(cmd);
    let text = printed_spec(&mut sim);
    sim.wait_for_line("run a command with --simulator http://127.0.0.1:");
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("  endpoint: "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    assert!(
        text.contains(&format!("maas-usage run --spec FILE --simulator {url}")),
        "{text}"
    );
    let spec = spec_file(&text);
    let valid = bin().arg("validate").arg(&spec).output().unwrap();
    assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));
    // Run as it says, in an environment with real credentials: the demo's figures.
    let home = tempdir();
    let out = production(&home)
        .args(["run", "--simulator", &url, "--now", NOW, "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let demo = bin().args(["demo", "--now", NOW]).output().unwrap();
    assert_eq!(demo.status.code(), Some(0), "{}", stderr(&demo));
    let data = |o: &std::process::Output| -> Vec<String> {
        stdout(o)
            .lines()
            .filter(|l| !l.starts_with("maas_usage_collector"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(data(&out), data(&demo));
    assert!(!data(&out).is_empty());
    assert!(!home.join(".local").exists());
}

#[test]
fn demo_serve_shows_the_pull_endpoint() {
    let mut cmd = bin();
    cmd.args(["demo", "--serve", "--now", NOW]);
    let mut serve = Serve::spawn(cmd);
    serve.wait_for_line("demo: serving its collections on the pull endpoint");
    let page = serve.wait_for("/metrics", 200).body;
    promtool_check(&page);
    // The demo's figures: the textfile `demo --format prometheus` writes (the self-metrics,
    // which time the collection, aside).
    let textfile = stdout(
        &bin()
            .args(["demo", "--format", "prometheus", "--now", NOW])
            .output()
            .unwrap(),
    );
    let data = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.contains("maas_collector_"))
            .map(str::to_string)
            .collect()
    };
    assert!(data(&page).len() > 10, "{page}");
    assert_eq!(data(&page), data(&textfile));
    assert_eq!(serve.wait_for("/healthz", 200).status, 200);
    let (code, _) = serve.stop();
    assert_eq!(code, Some(0));
    // --serve is its own format, and --listen goes with it.
    for args in [
        &["demo", "--serve", "--format", "json"][..],
        &["demo", "--listen", "127.0.0.1:0"],
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
