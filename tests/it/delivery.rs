//! Delivery is only what was really delivered: a closed stdout, a full disk, a redirecting or
//! refusing collector is a failed run (exit 1) that moves no checkpoint, so the next run sends
//! the same period buckets again.

use crate::common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::otlp::{Answer, HttpReceiver};
use common::*;

fn cmd(spec: &Path, state: &Path, args: &[&str]) -> std::process::Command {
    let mut c = authed();
    c.arg("run")
        .arg("--spec")
        .arg(spec)
        .arg("--state-dir")
        .arg(state)
        .args(["--now", NOW])
        .args(args);
    c
}

fn buckets(o: &Output) -> usize {
    parse_lp(&stdout(o))
        .iter()
        .filter(|l| l.measurement == "maas_usage")
        .count()
}

/// After a failed delivery the checkpoint has not moved: a normal run sends all three.
fn assert_nothing_recorded(spec: &Path, state: &Path) {
    let next = cmd(spec, state, &["--format", "influx"]).output().unwrap();
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    assert_eq!(buckets(&next), 3, "the same buckets come again");
}

#[test]
fn a_closed_stdout_is_not_a_delivery() {
    let sim = sim();
    let spec = fixture_for(&sim, "delivery/hourly.yaml", &[]);
    let state = tempdir().join("state");
    let mut child = cmd(&spec, &state, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is written (Telegraf stopped, `| head -0`).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("E! stdout was closed before the output was written"),
        "{}",
        stderr(&out)
    );
    assert_nothing_recorded(&spec, &state);
}

#[test]
fn a_full_disk_is_not_a_delivery() {
    let sim = sim();
    let spec = fixture_for(&sim, "delivery/hourly.yaml", &[]);
    let state = tempdir().join("state");
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let out = cmd(&spec, &state, &[])
        .stdout(Stdio::from(full()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    let out = cmd(&spec, &state, &["--output", "/dev/full"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write the output to /dev/full"),
        "{}",
        stderr(&out)
    );
    assert!(Path::new("/dev/full").exists(), "the device is still there");
    assert_nothing_recorded(&spec, &state);
}

#[test]
fn an_otlp_redirect_is_a_failed_export_and_is_not_followed() {
    let sim = sim();
    let elsewhere = HttpReceiver::start();
    let collector = HttpReceiver::start();
    collector.push(Answer::Redirect(format!("{}/v1/metrics", elsewhere.url)));
    let spec = fixture_otlp(&sim, &collector.url, "delivery/hourly-otlp-http.yaml");
    let state = tempdir().join("state");
    let out = cmd(&spec, &state, &[])
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer collector-secret",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("HTTP 302") && stderr(&out).contains("not followed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        *elsewhere.hits.lock().unwrap(),
        0,
        "the headers never went to the redirect's target"
    );
    assert_eq!(
        *collector.hits.lock().unwrap(),
        1,
        "a redirect is not worth a retry"
    );
    assert_nothing_recorded(&spec, &state);
}

#[cfg(feature = "grpc")]
#[test]
fn only_an_ok_grpc_status_is_a_delivery() {
    use common::otlp::grpc::GrpcReceiver;
    let sim = sim();
    let collector = GrpcReceiver::start();
    collector
        .unavailable_first
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let spec = fixture_otlp(&sim, &collector.url, "delivery/hourly-otlp-grpc.yaml");
    let state = tempdir().join("state");
    let out = cmd(&spec, &state, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("Unavailable"), "{}", stderr(&out));
    assert!(collector.received.lock().unwrap().is_empty());
    assert_nothing_recorded(&spec, &state);
}

#[test]
fn the_checkpoint_moves_after_a_delivery_that_worked() {
    // The counterpart of the tests above, so that they cannot pass by never recording.
    let sim = sim();
    let spec = fixture_for(&sim, "delivery/hourly.yaml", &[]);
    let state = tempdir().join("state");
    let first = cmd(&spec, &state, &[]).output().unwrap();
    assert_eq!(buckets(&first), 3);
    let second = cmd(&spec, &state, &[]).output().unwrap();
    assert_eq!(buckets(&second), 0, "{}", stderr(&second));
}

#[test]
fn an_otlp_header_or_endpoint_that_cannot_be_sent_is_an_input_error_before_any_call() {
    let sim = sim();
    let collector = HttpReceiver::start();
    let spec = fixture_for(&sim, "delivery/hourly-otlp-env.yaml", &[]);
    let state = tempdir().join("state");
    const CANARY: &str = "HEADERVALUECANARY";
    let newline = format!("x-a=b\n{CANARY}");
    let control = format!("x-a={CANARY}\u{1}");
    let spaced = format!("x a={CANARY}");
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str());
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![endpoint, ("OTEL_EXPORTER_OTLP_HEADERS", &newline)],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            vec![endpoint, ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", &control)],
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        ),
        (
            vec![endpoint, ("OTEL_EXPORTER_OTLP_HEADERS", &spaced)],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            vec![
                endpoint,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_HEADERS", &newline),
            ],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:99999")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://[::1")],
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:99999"),
            ],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ];
    for (env, named) in cases {
        let out = cmd(&spec, &state, &[]).envs(env.clone()).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(named), "{env:?}: {err}");
        assert!(!err.contains(CANARY), "never a header's value: {err}");
        assert!(!err.contains("attempt"), "no export was tried: {err}");
        assert!(sim.requests().is_empty(), "{env:?}: a call was made");
    }
    assert_eq!(*collector.hits.lock().unwrap(), 0);
}

#[test]
fn execd_stops_at_the_first_stdout_it_cannot_write() {
    use std::io::Write;
    let sim = sim();
    let spec = fixture_for(&sim, "delivery/hourly.yaml", &[]);
    let state = tempdir().join("state");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = cmd(&spec, &state, &["--execd"])
        .stdin(Stdio::piped())
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two intervals, then end of input: the first write already shows nobody gets the output.
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"\n\n");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("E!") && l.contains("No space left on device"))
            .count(),
        1,
        "{err}"
    );
    assert_nothing_recorded(&spec, &state);
}
