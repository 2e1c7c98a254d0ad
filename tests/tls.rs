//! TLS on loopback with certificates made in the test: a trusted private CA works, an unknown
//! one fails once (no retry) as an input error naming the CA option; credentials that cannot be
//! sent are refused before any call.

mod common;

use common::tls::Pki;
use common::*;
use maas_usage::sim::Simulator;

fn tls_sim(pki: &Pki) -> Simulator {
    Simulator::start_tls("127.0.0.1:0", sim_config(), pki.server()).unwrap()
}

fn https(sim: &Simulator) -> String {
    format!("https://127.0.0.1:{}", sim.addr().port())
}

fn query_tls(sim: &Simulator, extra: &[&str]) -> std::process::Output {
    let url = https(sim);
    authed()
        .args(["query", "--endpoint", &url, "--project-id", PROJECT])
        .args(["--now", NOW, "--timezone", ZONE])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_trusted_private_ca_works() {
    let pki = Pki::new();
    let sim = tls_sim(&pki);
    let out = query_tls(&sim, &["--ca-file", pki.ca_pem.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Total Tokens"));
    assert!(!stderr(&out).contains("plain http"), "{}", stderr(&out));
}

#[test]
fn an_unknown_ca_fails_once_as_an_input_error() {
    let pki = Pki::new();
    for ca in [None, Some(&pki.other_ca_pem)] {
        let sim = tls_sim(&pki);
        let mut args = vec!["--service-type", "preset,my_service"];
        let ca_path;
        if let Some(p) = ca {
            ca_path = p.to_str().unwrap().to_string();
            args.extend(["--ca-file", &ca_path]);
        }
        let out = query_tls(&sim, &args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("not trusted") && err.contains("--ca-file"),
            "names the option: {err}"
        );
        assert_eq!(
            sim.connections(),
            1,
            "not retried, and the second series does not try again: {err}"
        );
    }
}

#[test]
fn run_with_an_untrusted_endpoint_exits_2() {
    let pki = Pki::new();
    let sim = tls_sim(&pki);
    let spec = fixture(
        "tls/two-queries.yaml",
        &[("url", &https(&sim)), ("project", PROJECT)],
    );
    let out = run(&spec, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .lines()
            .next()
            .unwrap_or("")
            .contains("not trusted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sim.connections(), 1);
}

#[test]
fn credentials_that_cannot_be_sent_are_refused_before_any_call() {
    let sim = sim();
    for (var, value) in [
        ("HW_ACCESS_KEY", format!("\u{feff}{AK}")),
        ("HW_SECRET_KEY", format!("{SK}\r\nX")),
        ("HW_SECURITY_TOKEN", format!("{TOKEN}\nX-Injected: 1")),
        ("HW_SECURITY_TOKEN", "t".repeat(100_000)),
    ] {
        let out = authed()
            .env(var, &value)
            .args(["query", "--endpoint", &sim.url(), "--project-id", PROJECT])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot be sent") || stderr(&out).contains("bytes long"),
            "{}",
            stderr(&out)
        );
        assert_no_secret(&out);
    }
    assert_eq!(sim.connections(), 0);
}

#[test]
fn signed_calls_over_plain_http_to_another_host_get_a_warning() {
    // Nothing listens there: the warning comes before the (failing) call.
    let out = authed()
        .args([
            "query",
            "--endpoint",
            "http://192.0.2.1:9",
            "--project-id",
            PROJECT,
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("is plain http: signed requests travel unencrypted"),
        "{}",
        stderr(&out)
    );
    let sim = sim();
    let out = query(&sim, &["--project-id", PROJECT]);
    assert!(!stderr(&out).contains("plain http"), "loopback is fine");
}
