//! `maas-usage serve` end to end against the simulator: the page is the textfile (same names,
//! labels and exact values), a scrape never calls the cloud, promtool accepts it, OpenMetrics on
//! request, /healthz follows the last successful collection, a taken port costs no call, SIGTERM
//! ends it with exit 0, and no client (idle, slow, oversized, never reading) holds the endpoint.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::prom;
use common::serving::{http, Serve, PATIENCE};
use common::*;

#[test]
fn serve_publishes_the_textfile_scrapes_make_no_call_and_sigterm_ends_it() {
    let sim = sim();
    let spec = fixture(
        "names/mixed.yaml",
        &[("url", &sim.url()), ("project", PROJECT)],
    );
    let textfile = stdout(&run(
        &spec,
        &[
            "--format",
            "prometheus",
            "--state-dir",
            tempdir().join("other").to_str().unwrap(),
        ],
    ));
    let before = sim.requests().len();
    let serve = Serve::start(&spec, &tempdir().join("state"), "1h");
    let metrics = serve.wait_for("/metrics", 200);
    assert_eq!(
        metrics.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        metrics.header("Content-Length"),
        Some(metrics.body.len().to_string().as_str()),
        "a length, not chunks"
    );
    let calls = sim.requests().len();
    assert!(calls > before, "serve collected at start");

    // A second scrape: the same page, and no call.
    let again = serve.get("/metrics", None);
    assert_eq!(again.body, metrics.body);
    assert_eq!(
        sim.requests().len(),
        calls,
        "a scrape never calls the cloud"
    );

    // The page is the textfile: same names, types, labels and exact values (the textfile's own
    // values are checked against the simulator in tests/run_otlp.rs and tests/names.rs).
    let page = prom::parse(&metrics.body);
    let file = prom::parse(&textfile);
    assert_eq!(page.types, file.types);
    let without_duration = |e: &prom::Exposition| -> Vec<prom::Sample> {
        let mut v: Vec<prom::Sample> = e
            .samples
            .iter()
            .filter(|s| {
                s.name != "maas_collector_duration_seconds"
                    && s.name != "maas_collector_last_success_timestamp_seconds"
            })
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            format!("{}{:?}", a.name, a.labels).cmp(&format!("{}{:?}", b.name, b.labels))
        });
        v
    };
    assert_eq!(without_duration(&page), without_duration(&file));
    assert!(page.types.contains_key("maas_usage_period_tokens_total"));
    promtool_check(&metrics.body);

    // OpenMetrics when asked: its content type, counter families without _total, # EOF.
    let om = serve.get(
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    );
    assert_eq!(om.status, 200);
    assert_eq!(
        om.header("Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(om
        .body
        .contains("# TYPE maas_usage_period_tokens counter\n"));
    assert!(om.body.contains("\nmaas_usage_period_tokens_total{"));

    let health = serve.get("/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(serve.get("/nope", None).status, 404);
    // 405 names what is allowed (RFC 9110 15.5.6), on every path.
    for path in ["/metrics", "/nope"] {
        let refused = http(&serve.addr, "POST", path, None);
        assert_eq!(refused.status, 405, "{refused:?}");
        assert_eq!(refused.header("Allow"), Some("GET, HEAD"), "{refused:?}");
    }
    // HEAD: the GET's headers, no body.
    let head = http(&serve.addr, "HEAD", "/metrics", None);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Length"),
        Some(metrics.body.len().to_string().as_str())
    );
    assert!(head.body.is_empty(), "{head:?}");
    assert_eq!(sim.requests().len(), calls, "still no call");

    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("I! stopped by SIGTERM"), "{err}");
    assert!(!err.contains("E! "), "{err}");
}

/// The data of a page: its samples but the self-metrics.
fn data_of(page: &str) -> Vec<prom::Sample> {
    prom::parse(page)
        .samples
        .into_iter()
        .filter(|s| !s.name.starts_with("maas_collector_"))
        .collect()
}

/// For a spec of ShowStatistics queries and for one of Cloud Eye queries alone: nothing is
/// published before a collection succeeds, a failed one never replaces the last good page's
/// data (only its self-metrics).
fn no_page_until_success_and_the_last_good_one_stays(queries: &str, published: &str) {
    let sim = sim();
    sim.configure(|c| c.faults.fail_ratio = 1.0);
    let url = sim.url();
    let spec = spec_file(&format!(
        "apiVersion: maas-usage/v1\ncloud:\n  endpoint: {url}\n  ces_endpoint: {url}\n  project_id: {PROJECT}\nqueries:\n{queries}limits:\n  timeout: 5s\n"
    ));
    let mut serve = Serve::start(&spec, &tempdir().join("state"), "1s");
    serve.wait_for_line("W! this collection delivered nothing");
    let m = serve.get("/metrics", None);
    assert_eq!(m.status, 503, "{m:?}");
    assert!(m.body.contains("no collection has succeeded yet"));
    assert_eq!(serve.get("/healthz", None).status, 503);

    // The cloud is back: the next collection is published.
    sim.configure(|c| c.faults.fail_ratio = 0.0);
    serve.wait_for("/healthz", 200);
    let m = serve.get("/metrics", None);
    assert_eq!(m.status, 200);
    assert!(m.body.contains(published), "{}", m.body);

    // Down again: scrapes keep the last page, and /healthz turns 503 once it is two intervals
    // old.
    sim.configure(|c| c.faults.fail_ratio = 1.0);
    let stale = serve.wait_for("/healthz", 503);
    assert!(stale.body.contains("old (stale after 2 s)"), "{stale:?}");
    assert_eq!(data_of(&serve.get("/metrics", None).body), data_of(&m.body));
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn until_a_collection_succeeds_metrics_and_healthz_say_503_then_recover() {
    no_page_until_success_and_the_last_good_one_stays("  - name: a\n", "maas_usage_total_tokens{");
}

#[test]
fn a_failed_cloud_eye_collection_never_replaces_the_last_good_page() {
    no_page_until_success_and_the_last_good_one_stays(
        "  - name: m\n    source: cloud_eye\n    range: yesterday\n    metrics: [total_tokens]\n",
        "maas_model_total_tokens{",
    );
}

#[test]
fn a_taken_port_is_exit_1_before_any_call() {
    let sim = sim();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let spec = spec_file(&format!(
        "apiVersion: maas-usage/v1\ncloud:\n  endpoint: {}\n  project_id: {PROJECT}\nqueries:\n  - name: a\n",
        sim.url()
    ));
    let out = authed()
        .args(["serve", "--listen", &addr, "--spec"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(tempdir().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("E! cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
    assert!(sim.requests().is_empty());
    // A malformed address or an interval under 1s or over 1d is a usage error.
    for args in [
        ["--listen", "localhost"],
        ["--interval", "10ms"],
        ["--interval", "2d"],
    ] {
        let out = authed()
            .arg("serve")
            .args(args)
            .arg("--spec")
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn serve_picks_up_a_rotated_credentials_file_without_a_second_rejection() {
    let sim = sim();
    let creds = tempdir().join("aksk");
    std::fs::write(
        &creds,
        format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY=SKWRONG-rotation\n"),
    )
    .unwrap();
    let spec = fixture(
        "auth/rotated-credentials.yaml",
        &[
            ("url", &sim.url()),
            ("project", PROJECT),
            ("credentials_file", &creds.display().to_string()),
        ],
    );
    let mut serve = Serve::start_with(&spec, &tempdir().join("state"), "1s", |c| {
        c.env_remove("HW_ACCESS_KEY").env_remove("HW_SECRET_KEY");
    });
    serve.wait_for_line("E! ");
    assert_eq!(serve.get("/healthz", None).status, 503);
    // The key is rotated: the next collection signs with the new one and is published.
    std::fs::write(&creds, format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY={SK}\n")).unwrap();
    serve.wait_for("/healthz", 200);
    serve.wait_for_line("I! new credentials from");
    let rejected = sim.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(
        rejected, 1,
        "the wrong key was tried once, whatever the collections in between"
    );
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// A first collection that fails on this side (an untrusted certificate) is a configuration
/// that will never work: `serve` exits 2, as `run` does, instead of serving 503 forever.
#[test]
fn an_untrusted_endpoint_on_the_first_collection_is_exit_2() {
    let pki = common::tls::Pki::new();
    let sim =
        maas_usage::sim::Simulator::start_tls("127.0.0.1:0", sim_config(), pki.server()).unwrap();
    let spec = fixture(
        "tls/two-queries.yaml",
        &[
            ("url", &format!("https://127.0.0.1:{}", sim.addr().port())),
            ("project", PROJECT),
        ],
    );
    let mut child = authed()
        .args(["serve", "--listen", "127.0.0.1:0", "--interval", "1s"])
        .arg("--spec")
        .arg(&spec)
        .arg("--state-dir")
        .arg(tempdir().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Generous: the process must end by itself; a hung serve fails here, not by a margin.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running with an untrusted endpoint");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("not trusted"), "{err}");
    assert_eq!(sim.connections(), 1, "one handshake, not one per interval");
}

/// A line of the serve process's /proc status (`Threads`, `VmHWM`), as a number.
fn proc_status(serve: &Serve, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in\n{status}"))
}

/// A spec of one ShowStatistics query: a small page, served soon.
fn small_spec(sim: &maas_usage::sim::Simulator) -> std::path::PathBuf {
    spec_file(&format!(
        "apiVersion: maas-usage/v1\ncloud:\n  endpoint: {}\n  project_id: {PROJECT}\nqueries:\n  - name: a\n",
        sim.url()
    ))
}

#[test]
fn a_client_that_pipelines_and_never_reads_blocks_no_other_scrape() {
    let sim = sim();
    let spec = fixture(
        "names/mixed.yaml",
        &[("url", &sim.url()), ("project", PROJECT)],
    );
    let serve = Serve::start(&spec, &tempdir().join("state"), "1h");
    let page = serve.wait_for("/metrics", 200);
    // Many requests for a page this size are more than the socket buffers hold.
    assert!(page.body.len() > 50_000, "{}", page.body.len());
    let mut hog = TcpStream::connect(&serve.addr).unwrap();
    let one = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", serve.addr);
    hog.write_all(one.repeat(200).as_bytes()).unwrap();
    // Let the server take up the hog (a pause to set the scene, not a margin asserted).
    std::thread::sleep(Duration::from_secs(1));

    // While it holds its connection and reads nothing, other clients are answered (a hang
    // would fail `http` after PATIENCE).
    let health = serve.get("/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let again = serve.get("/metrics", None);
    assert_eq!(again.status, 200);
    assert_eq!(again.body, page.body);
    drop(hog);
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn an_oversized_request_head_is_refused_with_bounded_memory() {
    let sim = sim();
    let serve = Serve::start(&small_spec(&sim), &tempdir().join("state"), "1h");
    serve.wait_for("/healthz", 200);
    let mut c = TcpStream::connect(&serve.addr).unwrap();
    c.set_write_timeout(Some(PATIENCE)).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nX-Big: ").unwrap();
    const OFFERED: usize = 64 << 20;
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    let refused = loop {
        if sent >= OFFERED {
            break None;
        }
        match c.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => break Some(e),
        }
    };
    // The server stopped reading and closed: the write failed on the closed connection (not
    // on our own timeout), long before the whole header was taken.
    let e = refused.unwrap_or_else(|| panic!("the server took a {} MiB header", sent >> 20));
    assert!(
        !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "the server neither read nor closed: {e}"
    );
    // The answer, when the reset did not eat it, is 431.
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    if !answer.is_empty() {
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }
    let peak_kib = proc_status(&serve, "VmHWM");
    assert!(
        peak_kib < 48 * 1024,
        "serve's peak memory grew to {peak_kib} KiB"
    );
    assert_eq!(serve.get("/healthz", None).status, 200);
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn idle_and_slow_connections_time_out_and_connections_are_bounded() {
    let sim = sim();
    let serve = Serve::start(&small_spec(&sim), &tempdir().join("state"), "1h");
    serve.wait_for("/healthz", 200);
    let idle = TcpStream::connect(&serve.addr).unwrap();
    let mut slow = TcpStream::connect(&serve.addr).unwrap();
    slow.write_all(b"GET /metr").unwrap();
    // A flood of connections that send nothing: refused or queued, never a thread each.
    let flood: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&serve.addr).unwrap())
        .collect();
    // One more request after the flood: once it is answered or reset (a refused connection
    // may be), the flood has been accepted.
    let mut last = TcpStream::connect(&serve.addr).unwrap();
    last.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = last.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
    let _ = last.read_to_end(&mut Vec::new());
    let threads = proc_status(&serve, "Threads");
    // 32 workers and a few more (main, signals, collection); never one per connection.
    assert!(threads < 48, "{threads} threads for 302 connections");

    // The idle connection is closed without an answer, the slow one with 408, both after
    // the head timeout (a hang fails the read after PATIENCE).
    for (mut c, expect) in [(idle, ""), (slow, "HTTP/1.1 408 ")] {
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        match c.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("still open: {e}"),
        }
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with(expect), "{got}");
        if expect.is_empty() {
            assert!(got.is_empty(), "{got}");
        }
    }
    drop(flood);
    serve.wait_for("/healthz", 200);
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn slow_heads_from_many_clients_delay_no_scrape_past_a_few_seconds() {
    let sim = sim();
    let serve = Serve::start(&small_spec(&sim), &tempdir().join("state"), "1h");
    serve.wait_for("/healthz", 200);
    let start = Instant::now();
    // More clients than there are workers (but not more than workers and queue together),
    // each sending a partial head and holding on.
    let held: Vec<TcpStream> = (0..36)
        .map(|_| {
            let mut c = TcpStream::connect(&serve.addr).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            c
        })
        .collect();
    // And one trickling a byte every 200 ms: the bytes must not extend its deadline.
    let mut trickler = TcpStream::connect(&serve.addr).unwrap();
    trickler.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = trickler.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for b in b"GET /metrics HTTP/1.1\r\nX-Slow: "
            .iter()
            .cycle()
            .take(300)
        {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let addr = serve.addr.clone();
    let metrics = std::thread::spawn(move || {
        let a = http(&addr, "GET", "/metrics", None);
        (a.status, start.elapsed())
    });
    let health = serve.get("/healthz", None);
    let health_after = start.elapsed();
    let (metrics_status, metrics_after) = metrics.join().unwrap();
    // Generous: the old responder took over 10 s (8 workers held for a 10 s head timeout).
    let bound = Duration::from_secs(5);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert!(
        health_after < bound,
        "/healthz answered after {health_after:?}"
    );
    assert_eq!(metrics_status, 200);
    assert!(
        metrics_after < bound,
        "/metrics answered after {metrics_after:?}"
    );
    // The trickler is refused by the same deadline however often it sends a byte.
    let mut got = Vec::new();
    let _ = trickler.read_to_end(&mut got);
    let trickled_for = start.elapsed();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        trickled_for < bound,
        "the trickler was held {trickled_for:?}"
    );
    drop(held);
    drop(trickler);
    let _ = trickle.join();
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// `request` sent as is on its own connection; the whole answer.
fn raw(addr: &str, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(request).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn requests_are_read_as_rfc_9112_and_9110_say() {
    let sim = sim();
    let serve = Serve::start(&small_spec(&sim), &tempdir().join("state"), "1h");
    serve.wait_for("/metrics", 200);
    let addr = &serve.addr;
    // The absolute form of a target (RFC 9112 3.2.2), as a proxy sends it.
    let absolute = raw(
        addr,
        format!("GET http://{addr}/metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert!(absolute.starts_with("HTTP/1.1 200 "), "{absolute}");
    assert!(absolute.contains("version=0.0.4"), "{absolute}");
    // HTTP/1.1 without Host (RFC 9112 3.2).
    let hostless = raw(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(hostless.starts_with("HTTP/1.1 400 "), "{hostless}");
    // A request line too long is 414; a header too long stays 431.
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
        "a".repeat(12 << 10)
    );
    let long = raw(addr, long.as_bytes());
    assert!(long.starts_with("HTTP/1.1 414 "), "{long}");
    // Media types are case-insensitive, and q=0 means "not this one" (RFC 9110 12.5.1).
    let om = serve.get("/metrics", Some("Application/OpenMetrics-Text"));
    assert!(
        om.header("Content-Type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{om:?}"
    );
    let text = serve.get(
        "/metrics",
        Some("application/openmetrics-text;q=0, text/plain"),
    );
    assert!(
        text.header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{text:?}"
    );
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}

/// The value of the one sample `name{labels ⊇ with}` of a page, if it has one.
fn sample(page: &prom::Exposition, name: &str, with: &[(&str, &str)]) -> Option<f64> {
    page.samples
        .iter()
        .find(|s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A page kept from an earlier collection says so on the page itself: its self-metrics follow
/// every collection (a failed one's failed series, the failed collections in a row), and
/// `maas_collector_last_success_timestamp_seconds` stays at the last success, so
/// `time() - maas_collector_last_success_timestamp_seconds` alerts on a stale page.
#[test]
fn a_stale_page_says_when_its_last_success_was_and_counts_the_failures_since() {
    let sim = sim();
    let started = unix_now();
    let mut serve = Serve::start(&small_spec(&sim), &tempdir().join("state"), "1s");
    let good = prom::parse(&serve.wait_for("/metrics", 200).body);
    let last = "maas_collector_last_success_timestamp_seconds";
    let failures = "maas_collector_consecutive_failures";
    let success = sample(&good, last, &[]).expect("the page carries its success time");
    assert!(
        (started.floor()..=unix_now().ceil()).contains(&success),
        "{success} is when it ran"
    );
    assert_eq!(sample(&good, failures, &[]), Some(0.0));
    let tokens = |p: &prom::Exposition| sample(p, "maas_usage_total_tokens", &[]);
    assert!(tokens(&good).is_some());

    // The cloud dies: the data stay, the self-metrics say the collections fail.
    sim.configure(|c| c.faults.fail_ratio = 1.0);
    serve.wait_for_line("W! this collection delivered nothing");
    let until = Instant::now() + PATIENCE;
    let stale = loop {
        let p = prom::parse(&serve.get("/metrics", None).body);
        if sample(&p, failures, &[]).is_some_and(|n| n >= 2.0) {
            break p;
        }
        assert!(Instant::now() < until, "the page never counted a failure");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        sample(&stale, last, &[]),
        Some(success),
        "still the last success"
    );
    assert!(
        sample(
            &stale,
            "maas_collector_series",
            &[("maas_outcome", "failed")]
        ) >= Some(1.0),
        "the failed collection's failed series"
    );
    assert_eq!(
        tokens(&stale),
        tokens(&good),
        "the data are the last good ones"
    );
    serve.wait_for("/healthz", 503);
    promtool_check(&serve.get("/metrics", None).body);

    // Back: a new success time, no failure in a row.
    sim.configure(|c| c.faults.fail_ratio = 0.0);
    let until = Instant::now() + PATIENCE;
    loop {
        let p = prom::parse(&serve.get("/metrics", None).body);
        if sample(&p, failures, &[]) == Some(0.0) {
            assert!(sample(&p, last, &[]) > Some(success));
            break;
        }
        assert!(Instant::now() < until, "the page never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
}
