//! Shared harness: an in-process simulator on 127.0.0.1 and the built binary pointed at it.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Utc};
use maas_usage::sim::{SimConfig, SimCredential, Simulator, DEMO_PROJECT_ID};

/// Canary credentials: any appearance of these in an output is a leak.
pub const AK: &str = "AKCANARY7Q2W3E4R5T6Y";
pub const SK: &str = "SKCANARYzx9cv8bn7m6l5k4j3h2g1f0d9s8a7p6o";
pub const TOKEN: &str = "TOKENCANARY-ab12cd34ef56";
pub const PROJECT: &str = DEMO_PROJECT_ID;
/// The pinned "now" of most tests: 2026-05-21 10:00 in Shanghai.
pub const NOW: &str = "2026-05-21T10:00:00+08:00";
pub const ZONE: &str = "Asia/Shanghai";

pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

pub fn sim_config() -> SimConfig {
    SimConfig {
        credentials: vec![SimCredential {
            ak: AK.into(),
            sk: SK.into(),
            token: None,
        }],
        now: Some(now()),
        ..SimConfig::default()
    }
}

pub fn start(cfg: SimConfig) -> Simulator {
    Simulator::start("127.0.0.1:0", cfg).expect("simulator starts")
}

pub fn sim() -> Simulator {
    start(sim_config())
}

/// The binary with a clean environment (no credentials or zone leaking in from the host).
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_maas-usage"));
    c.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        c.env("PATH", path);
    }
    c.env("TZ", "UTC");
    c.stdin(Stdio::null());
    c
}

/// The binary with the canary credentials in the environment.
pub fn authed() -> Command {
    let mut c = bin();
    c.env("HW_ACCESS_KEY", AK).env("HW_SECRET_KEY", SK);
    c
}

/// `query` against `sim` with `args`, and the pinned now and zone unless `args` set them.
pub fn query(sim: &Simulator, args: &[&str]) -> Output {
    let url = sim.url();
    let mut c = authed();
    c.args(["query", "--endpoint", &url, "--iam-endpoint", &url]);
    for (flag, default) in [("--now", NOW), ("--timezone", ZONE)] {
        if !args.contains(&flag) {
            c.args([flag, default]);
        }
    }
    c.args(args).output().expect("binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails if any canary secret appears in the output.
pub fn assert_no_secret(o: &Output) {
    for text in [stdout(o), stderr(o)] {
        for secret in [AK, SK, TOKEN] {
            assert!(!text.contains(secret), "secret leaked:\n{text}");
        }
    }
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n{}", stdout(o), stderr(o)))
}

/// The statistics calls the simulator received.
pub fn stats_calls(sim: &Simulator) -> Vec<maas_usage::sim::Logged> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("show-statistics"))
        .collect()
}

pub fn body_of(call: &maas_usage::sim::Logged) -> serde_json::Value {
    serde_json::from_str(&call.body).unwrap()
}

/// A fresh directory under the system temp dir.
pub fn tempdir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("maas-usage-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
