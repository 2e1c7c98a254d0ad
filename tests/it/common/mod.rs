//! Shared harness: an in-process simulator on 127.0.0.1 and the built binary pointed at it.
#![allow(dead_code)]

pub mod influx;
pub mod otlp;
pub mod prom;
pub mod prometheus;
pub mod proxy;
pub mod redis_server;
pub mod serving;
pub mod spec;
pub mod tls;
pub mod wait;

pub use spec::*;
pub use wait::{wait_exit, wait_for, wait_until};

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

/// Epoch milliseconds of an RFC 3339 instant.
pub fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

/// The RFC 3339 instant of epoch milliseconds (for `--now`).
pub fn rfc(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339()
}

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
    // The credential chain's last step must never leave loopback: a closed port here refuses
    // at once (tests of the metadata service point it at their simulator).
    c.env("MAAS_USAGE_METADATA_ENDPOINT", "http://127.0.0.1:9");
    // Where credential rejections go when the state directory cannot take them: a fresh one
    // per command, so no test sees another's (tests that share one across runs set it).
    c.env("XDG_RUNTIME_DIR", runtime_dir());
    c.stdin(Stdio::null());
    c
}

/// A fresh private directory (mode 0700, as `XDG_RUNTIME_DIR` must be).
pub fn runtime_dir() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = tempdir();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
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

/// A fresh directory for one test, inside this process's root (see `temp_root`).
pub fn tempdir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = temp_root().join(n.to_string());
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The name of the temporary root of process `pid` of the test binary `binary`.
pub fn temp_root_name(binary: &str, pid: u32) -> String {
    format!("mu-{binary}-{pid}")
}

/// This process's temporary root, `<CARGO_TARGET_TMPDIR>/mu-<test binary>-<pid>/` (target/tmp:
/// `cargo clean` removes it, nothing goes to /tmp). Made on the first use in the process, after
/// removing the roots that finished processes of the same test binary left behind, so repeated
/// runs keep at most the last one (handy after a failure).
pub fn temp_root() -> &'static std::path::Path {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let binary = env!("CARGO_CRATE_NAME");
        remove_stale_roots(base, binary);
        let root = base.join(temp_root_name(binary, std::process::id()));
        // An earlier process with the same pid.
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    })
}

/// Removes every `mu-<binary>-<pid>` directory in `base` whose process is gone (no
/// `/proc/<pid>`). Roots of other test binaries and of live processes are left alone; without
/// /proc nothing is removed.
pub fn remove_stale_roots(base: &std::path::Path, binary: &str) {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!("mu-{binary}-");
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if pid != std::process::id().to_string()
            && !std::path::Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// `run --spec path --now NOW` plus `args`, with the canary credentials.
pub fn run(path: &std::path::Path, args: &[&str]) -> Output {
    authed()
        .arg("run")
        .arg("--spec")
        .arg(path)
        .args(["--now", NOW])
        .args(args)
        .output()
        .expect("binary runs")
}

/// `c` made to run `run --spec spec --state-dir state --now NOW`.
pub fn run_in_state(mut c: Command, spec: &std::path::Path, state: &std::path::Path) -> Command {
    c.arg("run")
        .arg("--spec")
        .arg(spec)
        .arg("--state-dir")
        .arg(state)
        .args(["--now", NOW]);
    c
}

/// `maas-usage state reset --auth` on `state`, which must succeed.
pub fn reset_auth(state: &std::path::Path) {
    let reset = bin()
        .args(["state", "reset", "--auth", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    assert_eq!(reset.status.code(), Some(0), "{}", stderr(&reset));
}

/// Fails unless some `E! ` line of `err` holds every one of `parts`.
pub fn assert_error_line(err: &str, parts: &[&str]) {
    assert!(
        err.lines()
            .any(|l| l.starts_with("E! ") && parts.iter().all(|p| l.contains(p))),
        "no E! line with {parts:?}:\n{err}"
    );
}

/// The exact values the simulator holds for every series of `spec_text` at NOW.
pub fn expected_series(
    sim: &Simulator,
    spec_text: &str,
) -> Vec<(maas_usage::domain::SeriesKey, maas_usage::domain::Usage)> {
    let spec = maas_usage::spec::load::load_str("spec.yaml", spec_text).unwrap();
    let zone = maas_usage::time::zone::resolve(spec.timezone.as_deref(), &Default::default())
        .unwrap()
        .0;
    let built = maas_usage::plan::build(&spec, now(), &zone).unwrap();
    let plan = built.statistics();
    plan.series
        .iter()
        .map(|s| (s.key.clone(), expected_usage(sim, plan, s)))
        .collect()
}

/// The exact values the simulator holds for the planned series `s` of `plan`.
pub fn expected_usage(
    sim: &Simulator,
    plan: &maas_usage::plan::statistics::Plan,
    s: &maas_usage::plan::statistics::PlannedSeries,
) -> maas_usage::domain::Usage {
    use maas_usage::sim::model::Selection;
    let mut total = maas_usage::domain::Usage::default();
    for &c in &s.calls {
        let req = &plan.calls[c].request;
        total += sim.expected(&Selection {
            service_type: req.service_type,
            batch: req.infer_type == "batch",
            start_ms: req.start_time,
            end_ms: req.end_time,
            api_keys: req.api_keys.as_deref(),
            ips: req.ips.as_deref(),
        });
    }
    total
}

/// A parsed line-protocol line, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub measurement: String,
    pub tags: std::collections::BTreeMap<String, String>,
    pub ints: std::collections::BTreeMap<String, i64>,
    pub floats: std::collections::BTreeMap<String, f64>,
    pub timestamp: Option<i64>,
}

impl Line {
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
    pub fn int(&self, k: &str) -> Option<i64> {
        self.ints.get(k).copied()
    }
}

/// Parses line protocol with a real parser (influxdb-line-protocol); panics on any line it
/// refuses or any field of an unexpected type.
pub fn parse_lp(text: &str) -> Vec<Line> {
    use influxdb_line_protocol::FieldValue;
    influxdb_line_protocol::parse_lines(text)
        .map(|l| {
            let l = l.unwrap_or_else(|e| panic!("invalid line protocol ({e}):\n{text}"));
            let mut line = Line {
                measurement: l.series.measurement.to_string(),
                tags: Default::default(),
                ints: Default::default(),
                floats: Default::default(),
                timestamp: l.timestamp,
            };
            for (k, v) in l.series.tag_set.iter().flatten() {
                line.tags.insert(k.to_string(), v.to_string());
            }
            for (k, v) in &l.field_set {
                match v {
                    FieldValue::I64(i) => {
                        line.ints.insert(k.to_string(), *i);
                    }
                    FieldValue::F64(f) => {
                        line.floats.insert(k.to_string(), *f);
                    }
                    other => panic!("unexpected field type {other:?} in {text}"),
                }
            }
            line
        })
        .collect()
}

/// A `run --execd` process driven like Telegraf's `signal = "STDIN"`.
pub struct Execd {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    reader: std::io::BufReader<std::process::ChildStdout>,
}

impl Execd {
    /// `run --execd --spec path --now NOW` with the canary credentials.
    pub fn start(path: &std::path::Path) -> Execd {
        Self::start_with(path, |_| {})
    }

    /// As `start`, with `adjust` applied to the command first (environment, flags).
    pub fn start_with(path: &std::path::Path, adjust: impl FnOnce(&mut Command)) -> Execd {
        let mut c = authed();
        c.args(["run", "--execd", "--spec"])
            .arg(path)
            .args(["--now", NOW]);
        adjust(&mut c);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let stdin = child.stdin.take();
        let reader = std::io::BufReader::new(child.stdout.take().expect("stdout piped"));
        Execd {
            child,
            stdin,
            reader,
        }
    }

    /// Writes one line and reads one batch up to its collector line; every line must be whole.
    pub fn collect(&mut self) -> Vec<Line> {
        use std::io::{BufRead, Write};
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let mut batch = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "output ended inside a batch:\n{batch}"
            );
            assert!(line.ends_with('\n'), "a cut line: {line:?}");
            batch.push_str(&line);
            if line.starts_with("maas_usage_collector") {
                return parse_lp(&batch);
            }
        }
    }

    /// Closes stdin (end of input) and returns the exit code.
    pub fn finish(mut self) -> Option<i32> {
        drop(self.stdin.take());
        self.child.wait().unwrap().code()
    }

    /// As `finish`, with what the process wrote on stderr.
    pub fn finish_with_stderr(mut self) -> (Option<i32>, String) {
        use std::io::Read;
        drop(self.stdin.take());
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        (self.child.wait().unwrap().code(), err)
    }
}

/// `program` (a real peer: influxd, redis-server) answers `version_arg`; else `false` and a
/// note, or a failure when `require` (`MAAS_USAGE_REQUIRE_*`) is set, as in CI.
pub fn peer_on_path(program: &str, version_arg: &str, require: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg(version_arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var(require).is_err(),
            "{program} is required ({require} is set) but not on PATH"
        );
        eprintln!("skipped: {program} is not on PATH");
    }
    found
}

/// The simulator answering 429 past `limit` calls in any `window_ms`.
pub fn throttling_sim(limit: u32, window_ms: u64) -> Simulator {
    let mut cfg = sim_config();
    cfg.faults.rate_limit = Some(limit);
    cfg.faults.rate_window = std::time::Duration::from_millis(window_ms);
    start(cfg)
}

/// `promtool check metrics` accepts `text` (skipped without promtool unless
/// MAAS_USAGE_REQUIRE_PROMTOOL is set, as in CI).
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(_) => {
            assert!(
                std::env::var("MAAS_USAGE_REQUIRE_PROMTOOL").is_err(),
                "promtool is required but not on PATH"
            );
            eprintln!("skipped promtool: not on PATH");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Snapshot filters for what differs between machines and runs: the host's name, the instance
/// id derived from it and the spec's path, and the collection's duration.
pub fn origin_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r#"host_name="[^"]*""#, r#"host_name="[host]""#),
        (
            r#"("key":"host.name","value":\{"stringValue":")[^"]*""#,
            r#"${1}[host]""#,
        ),
        (
            r#"("key":"service.instance.id","value":\{"stringValue":")[0-9a-f]+""#,
            r#"${1}[instance]""#,
        ),
        (
            r"(maas_collector_duration_seconds\{[^}]*\}) [0-9.e+-]+",
            "$1 [s]",
        ),
        (
            r#"("name":"maas.collector.duration".*?"asDouble":)[0-9.eE+-]+"#,
            "${1}[s]",
        ),
        (
            r"(maas_collector_last_success_timestamp_seconds\{[^}]*\}) [0-9.e+-]+",
            "$1 [unix s]",
        ),
        (
            r#"("name":"maas.collector.last_success_timestamp".*?"asDouble":)[0-9.eE+-]+"#,
            "${1}[unix s]",
        ),
    ]
}

/// The collection's start in line protocol and JSON: the wall clock, whatever `--now` says.
pub fn last_success_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"last_success_ms=\d+i", "last_success_ms=[unix ms]i"),
        (
            r#""last_success_ms": \d+"#,
            r#""last_success_ms": "[unix ms]""#,
        ),
    ]
}

/// What changes from run to run in every format's output: the host, the instance, the
/// duration and the last success.
pub fn run_filters() -> Vec<(&'static str, &'static str)> {
    origin_filters()
        .into_iter()
        .chain([
            (r"duration_ms=\d+i", "duration_ms=[ms]i"),
            (r#""duration_ms": \d+"#, r#""duration_ms": "[ms]""#),
        ])
        .chain(last_success_filters())
        .collect()
}

/// `run --spec path --now NOW --format format`'s stdout; the run must succeed.
pub fn render_ok(path: &std::path::Path, format: &str) -> String {
    let out = run(path, &["--format", format]);
    assert_eq!(out.status.code(), Some(0), "{format}: {}", stderr(&out));
    stdout(&out)
}

/// `maas-usage simulator` as a process, accepting the canary credentials; killed when dropped.
pub struct SimProcess {
    child: std::process::Child,
    pub url: String,
}

impl SimProcess {
    /// Starts it with `args` and waits for the URL it prints on stdout.
    pub fn start(args: &[&str]) -> SimProcess {
        use std::io::BufRead;
        let mut child = authed()
            .args(["simulator", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the simulator starts");
        let mut line = String::new();
        let read = std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line);
        let url = line.trim().to_string();
        let mut sim = SimProcess { child, url };
        if read.is_err() || !sim.url.starts_with("http://127.0.0.1:") {
            let status = sim.child.wait();
            panic!("the simulator printed {line:?} and ended: {status:?}");
        }
        sim
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
