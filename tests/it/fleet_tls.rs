//! The fleet's Redis over TLS (`rediss://`, a real redis-server with `--tls-port` and certificates
//! made by the test): a private CA in `coordination.ca_file` carries a run, with the ACL user
//! docs/operations.md gives and its password from the environment; a client certificate for a
//! Redis that asks for one (mutual TLS). A server certificate no given CA vouches for (no
//! `ca_file`, or another CA's) stops the run before any signed call, with an `E!` that says so
//! and names the URL without the password. A CA file that cannot be read is the input's error,
//! located in the spec, whatever `on_unavailable` says.

use crate::common;
use crate::fleet::{outputs, six_series};

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use common::redis_server::RedisServer;
use common::tls::Pki;
use common::*;
use maas_usage::sim::Simulator;

const PASSWORD: &str = "PWCANARY-tls-5e6f7a";

/// The six-series fleet spec at `url`, with `lines` added to its `coordination:` block.
fn tls_spec(sim: &Simulator, url: &str, on_unavailable: &str, lines: &[String]) -> PathBuf {
    let text = std::fs::read_to_string(six_series(sim, url, on_unavailable)).unwrap();
    let at = format!("  on_unavailable: {on_unavailable}\n");
    let extra: String = lines.iter().map(|l| format!("  {l}\n")).collect();
    spec_file(&text.replacen(&at, &format!("{at}{extra}"), 1))
}

fn ca(path: &Path) -> String {
    format!("ca_file: {}", path.display())
}

/// A run on a host of its own, with the Redis password in the environment.
fn run(spec: &Path) -> Child {
    let mut c = authed();
    c.env("MAAS_USAGE_REDIS_PASSWORD", PASSWORD);
    run_in_state(c, spec, &tempdir().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn no_password(out: &Output) {
    assert!(!stderr(out).contains(PASSWORD) && !stdout(out).contains(PASSWORD));
    assert_no_secret(out);
}

/// Refused before any call: exit 1, nothing emitted, an `E!` with the URL and `why`.
fn refused(sim: &Simulator, out: &Output, url: &str, why: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let mut parts = vec![
        "E! the coordination engine redis at",
        url,
        "cannot be reached",
    ];
    parts.extend(why);
    assert_error_line(&stderr(out), &parts);
    assert!(stdout(out).is_empty(), "nothing emitted: {}", stdout(out));
    assert!(sim.requests().is_empty(), "no signed call");
    no_password(out);
}

#[test]
fn a_private_ca_and_the_documented_acl_user_carry_a_run_over_tls() {
    let pki = Pki::new();
    let Some(redis) = RedisServer::start_tls(&pki, false) else {
        return;
    };
    redis.documented_acl_user(PASSWORD);
    let url = redis.url.replace("rediss://", "rediss://maas@");

    // Without the CA: the server's certificate is not trusted, and nothing is called.
    let sim = sim();
    let out = run(&tls_spec(&sim, &url, "stop", &[]))
        .wait_with_output()
        .unwrap();
    refused(
        &sim,
        &out,
        &url,
        &["not trusted", "point coordination.ca_file at that CA"],
    );

    // With it: two hosts at once, one budget and one gate for both, over TLS.
    let spec = tls_spec(&sim, &url, "stop", &[ca(&pki.ca_pem)]);
    for out in outputs(vec![run(&spec), run(&spec)]) {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(parse_lp(&stdout(&out)).len(), 7);
        no_password(&out);
    }
    let keys: Vec<String> = redis.cmd(&["KEYS", "*"]);
    assert!(
        keys.iter().any(|k| k.starts_with("maas-usage:budget:")),
        "{keys:?}"
    );
    let denied: Vec<redis::Value> = redis.cmd(&["ACL", "LOG"]);
    assert!(denied.is_empty(), "nothing denied to the user: {denied:?}");
}

#[test]
fn another_ca_is_refused_and_mutual_tls_needs_the_client_certificate() {
    let pki = Pki::new();
    let Some(redis) = RedisServer::start_tls(&pki, true) else {
        return;
    };
    let _: () = redis.cmd(&["CONFIG", "SET", "requirepass", PASSWORD]);
    let url = redis.url.clone();
    let sim = sim();
    let other = tls_spec(&sim, &url, "stop", &[ca(&pki.other_ca_pem)]);
    let out = run(&other).wait_with_output().unwrap();
    refused(
        &sim,
        &out,
        &url,
        &["not trusted by the CA of coordination.ca_file"],
    );

    // The right CA, but no client certificate: the server ends the handshake.
    let without = tls_spec(&sim, &url, "stop", &[ca(&pki.ca_pem)]);
    let out = run(&without).wait_with_output().unwrap();
    refused(
        &sim,
        &out,
        &url,
        &["asks for a client certificate", "coordination.client_key"],
    );

    let with = tls_spec(
        &sim,
        &url,
        "stop",
        &[
            ca(&pki.ca_pem),
            format!("client_certificate: {}", pki.client_cert_pem.display()),
            format!("client_key: {}", pki.client_key_pem.display()),
        ],
    );
    let out = run(&with).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(parse_lp(&stdout(&out)).len(), 7);
}

#[test]
fn a_ca_file_that_cannot_be_read_is_a_located_error_before_any_call() {
    let sim = sim();
    let missing = tempdir().join("no-such-ca.pem");
    let not_pem = spec_file("not a certificate");
    for on_unavailable in ["stop", "local"] {
        for (file, why) in [
            (&missing, "no such file"),
            (&not_pem, "no PEM certificate found"),
        ] {
            let spec = tls_spec(&sim, "rediss://127.0.0.1:9/0", on_unavailable, &[ca(file)]);
            // `validate` does not read it (it may run where the file is not).
            let valid = bin().arg("validate").arg(&spec).output().unwrap();
            assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));
            let out = run(&spec).wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            let line = std::fs::read_to_string(&spec)
                .unwrap()
                .lines()
                .position(|l| l.starts_with("  ca_file: "))
                .unwrap()
                + 1;
            let at = format!("E! {}:{line}:12: coordination.ca_file ", spec.display());
            assert_error_line(&stderr(&out), &[&at, &file.display().to_string(), why]);
            assert!(stdout(&out).is_empty());
            assert!(sim.requests().is_empty(), "no signed call");
        }
    }
}
