//! TLS on loopback with certificates made in the test: a trusted private CA works, an unknown
//! one fails once (no retry) as an input error naming the CA option; credentials that cannot be
//! sent are refused before any call.

use crate::common;

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
    let spec = fixture_at(&https(&sim), "tls/two-queries.yaml", &[]);
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
    // MaaS and the monitor share that URL: one host, one warning.
    assert_eq!(
        stderr(&out).matches("is plain http").count(),
        1,
        "{}",
        stderr(&out)
    );
    // Two hosts, two warnings.
    let out = authed()
        .args([
            "query",
            "--endpoint",
            "http://192.0.2.1:9",
            "--iam-endpoint",
            "http://192.0.2.2:9",
            "--project-id",
            PROJECT,
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(err.matches("is plain http").count(), 2, "{err}");
    assert!(
        err.contains("http://192.0.2.1:9 is plain http")
            && err.contains("http://192.0.2.2:9 is plain http"),
        "{err}"
    );
    let sim = sim();
    let out = query(&sim, &["--project-id", PROJECT]);
    assert!(!stderr(&out).contains("plain http"), "loopback is fine");
}

#[test]
fn run_trusts_the_spec_s_ca_file() {
    let pki = Pki::new();
    let sim = tls_sim(&pki);
    let url = https(&sim);
    let spec = spec_at(&url)
        .cloud(&format!("ca_file: {}", pki.ca_pem.display()))
        .write();
    let out = run(&spec, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(parse_lp(&stdout(&out)).len(), 2);
    // --ca-file on run wins over the spec.
    let out = run(&spec, &["--ca-file", pki.other_ca_pem.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn otlp_run(spec: &std::path::Path, env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut c = authed();
    for (k, v) in env {
        c.env(k, v);
    }
    c.arg("run")
        .arg("--spec")
        .arg(spec)
        .args(["--now", NOW])
        .output()
        .unwrap()
}

#[test]
fn otlp_over_https_with_a_private_ca_and_mutual_tls() {
    use common::otlp::HttpReceiver;
    let pki = Pki::new();
    let sim = sim();
    let otlp_to = |collector: &HttpReceiver| {
        spec_for(&sim)
            .output(&format!(
                "format: otlp, otlp: {{endpoint: {}}}",
                collector.url
            ))
            .limits("timeout: 10s")
            .write()
    };
    // Trusted CA from the standard variable.
    let collector = HttpReceiver::start_tls(pki.server());
    let spec = otlp_to(&collector);
    let out = otlp_run(&spec, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.ca_pem)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        collector.requests().len(),
        2,
        "the data and the self-metrics"
    );

    // An unknown CA: one connection, no retry, exit 2, and the message names the option.
    let collector = HttpReceiver::start_tls(pki.server());
    let spec = otlp_to(&collector);
    let out = otlp_run(
        &spec,
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.other_ca_pem)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not trusted")
            && stderr(&out).contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "{}",
        stderr(&out)
    );
    assert_eq!(*collector.connections.lock().unwrap(), 1, "not retried");

    // Mutual TLS: refused without a client certificate, accepted with one.
    let collector = HttpReceiver::start_tls(pki.mutual_server());
    let spec = otlp_to(&collector);
    let out = otlp_run(&spec, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.ca_pem)]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(collector.requests().is_empty());
    let out = otlp_run(
        &spec,
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.ca_pem),
            (
                "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
                &pki.client_cert_pem,
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", &pki.client_key_pem),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        collector.requests().len(),
        2,
        "the data and the self-metrics"
    );
}

#[cfg(feature = "grpc")]
#[test]
fn otlp_grpc_over_tls_and_mutual_tls_from_the_spec() {
    use common::otlp::grpc::GrpcReceiver;
    let pki = Pki::new();
    let sim = sim();
    let collector = GrpcReceiver::start_tls(&pki, true);
    // The otlp block with `endpoint` first (`endpoint: URL, `), or none.
    let spec_with = |endpoint: &str| {
        spec_for(&sim)
            .output(&format!(
                "format: otlp, otlp: {{{endpoint}protocol: grpc, certificate: {}, client_certificate: {}, client_key: {}}}",
                pki.ca_pem.display(),
                pki.client_cert_pem.display(),
                pki.client_key_pem.display()
            ))
            .limits("timeout: 10s")
            .write()
    };
    let out = run(&spec_with(&format!("endpoint: {}, ", collector.url)), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        collector.received.lock().unwrap().len(),
        2,
        "the data and the self-metrics"
    );
    // gRPC without a scheme means TLS (unless insecure): the same collector, host:port only.
    let bare = collector.url.trim_start_matches("https://").to_string();
    let out = authed()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &bare)
        .arg("run")
        .arg("--spec")
        .arg(spec_with(""))
        .args(["--now", NOW])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(collector.received.lock().unwrap().len(), 4);
}

#[test]
fn https_proxy_and_no_proxy_are_honoured() {
    use common::proxy::ConnectProxy;
    let pki = Pki::new();
    let sim = tls_sim(&pki);
    let proxy = ConnectProxy::start(sim.addr());
    let port = sim.addr().port();
    // maas.test resolves nowhere: only the proxy can reach it.
    let endpoint = format!("https://maas.test:{port}");
    let query_via = |extra: &[(&str, &str)]| {
        let mut c = authed();
        c.env("HTTPS_PROXY", &proxy.url);
        for (k, v) in extra {
            c.env(k, v);
        }
        c.args(["query", "--endpoint", &endpoint, "--project-id", PROJECT])
            .args(["--now", NOW, "--timezone", ZONE, "--timeout", "10s"])
            .args(["--ca-file", pki.ca_pem.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = query_via(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        proxy.tunnels.lock().unwrap().as_slice(),
        [format!("maas.test:{port}")]
    );
    // NO_PROXY sends it direct, where the name does not resolve.
    let out = query_via(&[("NO_PROXY", "maas.test")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        proxy.tunnels.lock().unwrap().len(),
        1,
        "not through the proxy"
    );
}
