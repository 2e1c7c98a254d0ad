//! Several clouds in one spec (`clouds:`): each cloud's series exact and tagged with its name,
//! one of them through an agency assumed with STS (the base secret sent to STS only, the
//! agency's credentials renewed before they expire); plan, validate, the table and JSON naming
//! the clouds; one cloud's failure failing its series only, at the cost of one rejected
//! signature; five clouds each within its own request budget; no secret in any output, log or
//! state file; and a `cloud:` block's series as they were (no new tag: the snapshots of
//! run_influx.rs and run_otlp.rs pin their bytes).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use maas_usage::domain::Usage;
use maas_usage::sim::{SimAgency, SimConfig, SimCredential, Simulator};

const AGENCY: &str = "iam::0a1b2c3d4e5f60718293a4b5c6d7e8f9:agency:maas-readonly";
const PROJECT_B: &str = "fedcba9876543210fedcba9876543210";
const STS: &str = "/v5/agencies/assume";

/// The intl account: its MaaS and Cloud Eye know its own key only; its STS knows the canary
/// key too (cn-prod's, the environment's), and lets it assume AGENCY. Its traffic is its own.
fn intl(adjust: impl FnOnce(&mut SimConfig)) -> Simulator {
    let mut cfg = sim_config();
    cfg.credentials = vec![SimCredential {
        ak: "INTLOWNACCESSKEY0001".into(),
        sk: "the-intl-account-s-own-secret".into(),
        token: None,
    }];
    cfg.projects = vec![("ap-southeast-1".into(), PROJECT_B.into())];
    cfg.dataset.seed = 97;
    cfg.sts.agencies = vec![SimAgency::new(AGENCY)];
    cfg.sts.callers = vec![SimCredential {
        ak: AK.into(),
        sk: SK.into(),
        token: None,
    }];
    adjust(&mut cfg);
    start(cfg)
}

/// The two-cloud fixture pointed at `a` (cn-prod) and `b` (intl): its path and text.
fn two_clouds(a: &Simulator, b: &Simulator) -> (PathBuf, String) {
    let (url_a, url_b) = (a.url(), b.url());
    let text = fixture_text(
        "clouds/two-clouds.yaml",
        &[
            ("url", &url_a),
            ("project", PROJECT),
            ("url_b", &url_b),
            ("agency", AGENCY),
        ],
    );
    (spec_file(&text), text)
}

type Key = (String, String, String, String, String);

/// The exact values of every ShowStatistics series of `text` at NOW, by cloud (its simulator
/// in `sims`), query, service type, inference type and key group.
fn expected(text: &str, sims: &[(&str, &Simulator)]) -> BTreeMap<Key, Usage> {
    let spec = maas_usage::spec::load::load_str("spec.yaml", text).unwrap();
    let zone = maas_usage::time::zone::resolve(spec.timezone.as_deref(), &Default::default())
        .unwrap()
        .0;
    let mut out = BTreeMap::new();
    for (name, s) in spec.per_cloud() {
        let name = name.unwrap();
        let sim = sims.iter().find(|(n, _)| *n == name).unwrap().1;
        let built = maas_usage::plan::build(&s, now(), &zone).unwrap();
        let plan = built.statistics();
        for series in &plan.series {
            let total = expected_usage(sim, plan, series);
            let k = &series.key;
            let key = (
                name.to_string(),
                k.query.clone(),
                k.service_type.name().to_string(),
                k.infer_type.name().to_string(),
                k.key_group.clone(),
            );
            out.insert(key, total);
        }
    }
    out
}

/// The ShowStatistics series of line protocol, by the same key, with their values.
fn collected(lines: &[Line]) -> BTreeMap<Key, Usage> {
    lines
        .iter()
        .filter(|l| l.measurement == "maas_usage")
        .map(|l| {
            let t = |k: &str| l.tag(k).unwrap_or_default().to_string();
            let n = |k: &str| l.int(k).map_or(0, |v| v as u64);
            let key = (
                t("cloud"),
                t("query"),
                t("service_type"),
                t("infer_type"),
                t("key_group"),
            );
            let usage = Usage {
                total_tokens: n("total_tokens"),
                prompt_tokens: n("prompt_tokens"),
                completion_tokens: n("completion_tokens"),
                requests: n("requests"),
                errors: n("errors"),
                ..Usage::default()
            };
            (key, usage)
        })
        .collect()
}

#[test]
fn two_clouds_one_through_an_agency_give_exact_series_per_cloud() {
    let a = sim();
    let b = intl(|_| {});
    let (spec, text) = two_clouds(&a, &b);
    let out = run(&spec, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_no_secret(&out);
    let lines = parse_lp(&stdout(&out));
    let want = expected(&text, &[("cn-prod", &a), ("intl", &b)]);
    assert_eq!(want.len(), 5, "cn-prod: week x2; intl: week x2, today");
    assert_eq!(collected(&lines), want);
    for l in &lines {
        let (region, project) = match l.tag("cloud") {
            Some("cn-prod") => ("cn-southwest-2", PROJECT),
            Some("intl") => ("ap-southeast-1", PROJECT_B),
            other => panic!("a line of cloud {other:?}: {l:?}"),
        };
        assert_eq!(
            (l.tag("region"), l.tag("project_id")),
            (Some(region), Some(project))
        );
    }
    let models: Vec<&Line> = lines
        .iter()
        .filter(|l| l.measurement == "maas_model_usage")
        .collect();
    assert!(!models.is_empty() && models.iter().all(|l| l.tag("cloud") == Some("cn-prod")));
    let collectors: Vec<(Option<&str>, Option<i64>)> = lines
        .iter()
        .filter(|l| l.measurement == "maas_usage_collector")
        .map(|l| (l.tag("cloud"), l.int("series_failed")))
        .collect();
    assert_eq!(
        collectors,
        [(Some("cn-prod"), Some(0)), (Some("intl"), Some(0))]
    );
    // intl: one assumption, first; every other call signed with the agency's credentials (its
    // services refuse the base key: one call with it would be a 401).
    let calls = b.requests();
    assert_eq!(calls[0].path, STS, "{calls:?}");
    assert_eq!(calls.iter().filter(|r| r.path == STS).count(), 1);
    assert!(calls.iter().all(|r| r.status == 200), "{calls:?}");
    assert_eq!(b.agencies_assumed(), 1);
    assert!(
        calls.iter().any(|r| r.path == "/v3/projects"),
        "discovered with the agency's"
    );
    // cn-prod: none of intl's calls, no assumption.
    assert!(a
        .requests()
        .iter()
        .all(|r| r.status == 200 && r.path != STS));
}

#[test]
fn plan_validate_the_table_json_and_prometheus_name_the_clouds() {
    let a = sim();
    let b = intl(|_| {});
    let (spec, _) = two_clouds(&a, &b);
    let v = bin().arg("validate").arg(&spec).output().unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    assert!(
        stdout(&v).starts_with("ok: 1 file(s), 2 clouds (cn-prod, intl), 3 queries, 5 series, "),
        "{}",
        stdout(&v)
    );
    let p = bin()
        .arg("plan")
        .arg("--spec")
        .arg(&spec)
        .args(["--now", NOW])
        .output()
        .unwrap();
    let plan = stdout(&p);
    assert!(
        plan.starts_with("Cloud cn-prod (region cn-southwest-2):\nPlan at "),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "\nCloud intl (region ap-southeast-1, through the agency {AGENCY}):\nPlan at "
        )),
        "{plan}"
    );
    let table = stdout(&run(&spec, &["--format", "table"]));
    assert!(
        table.contains("- Region: cn-southwest-2, cloud cn-prod\n"),
        "{table}"
    );
    assert!(
        table.contains("- Region: ap-southeast-1, cloud intl\n"),
        "{table}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&run(&spec, &["--format", "json"]))).unwrap();
    let names: Vec<&str> = j["clouds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cn-prod", "intl"]);
    for part in ["series", "models", "collector"] {
        for s in j[part].as_array().unwrap() {
            assert!(
                ["cn-prod", "intl"].contains(&s["cloud"].as_str().unwrap()),
                "{s}"
            );
        }
    }
    let prom = stdout(&run(&spec, &["--format", "prometheus"]));
    promtool_check(&prom);
    let parsed = common::prom::parse(&prom);
    for s in parsed
        .samples
        .iter()
        .filter(|s| s.name.starts_with("maas_"))
    {
        assert!(s.labels.contains_key("maas_cloud"), "{s:?}");
    }
    let info: Vec<_> = parsed
        .samples
        .iter()
        .filter(|s| s.name == "target_info")
        .collect();
    assert_eq!(info.len(), 1);
    assert!(
        !info[0].labels.contains_key("cloud_region"),
        "each cloud's region is on its series"
    );
    let otlp = stdout(&run(&spec, &["--format", "otlp-json"]));
    assert!(
        otlp.contains(r#""key":"maas.cloud","value":{"stringValue":"intl"}"#),
        "{otlp}"
    );
}

/// plugin.yaml's tag of `clouds` is the one each format emits: the line-protocol tag, the OTLP
/// attribute and the Prometheus label it declares, on the data and on the self-metrics.
#[test]
fn the_declared_cloud_tag_is_on_every_series_in_every_format() {
    let m = maas_usage::manifest::load().unwrap();
    let declared = m.attributes.iter().find(|a| a.clouds_only).unwrap();
    let a = sim();
    let b = intl(|_| {});
    let (spec, _) = two_clouds(&a, &b);
    for l in parse_lp(&stdout(&run(&spec, &[]))) {
        assert!(l.tag(&declared.tag).is_some(), "{l:?}");
    }
    let prom = common::prom::parse(&stdout(&run(&spec, &["--format", "prometheus"])));
    for s in prom.samples.iter().filter(|s| s.name != "target_info") {
        assert!(s.labels.contains_key(&declared.prometheus), "{s:?}");
    }
    let otlp: serde_json::Value =
        serde_json::from_str(stdout(&run(&spec, &["--format", "otlp-json"])).trim()).unwrap();
    for metric in otlp["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .unwrap()
    {
        let data = metric.get("gauge").or_else(|| metric.get("sum")).unwrap();
        for p in data["dataPoints"].as_array().unwrap() {
            let keys: Vec<&str> = p["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["key"].as_str().unwrap())
                .collect();
            assert!(keys.contains(&declared.otlp.as_str()), "{metric}");
        }
    }
}

/// A credentials file (mode 600) with `ak` and `sk` on two lines.
fn key_file(ak: &str, sk: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = tempdir().join("aksk");
    std::fs::write(&path, format!("{ak}\n{sk}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn a_cloud_whose_key_is_refused_fails_its_series_only_at_the_cost_of_one_rejected_signature() {
    // Four clouds: one collects; one's key is refused; one's region is down (nothing listens);
    // one has no credentials (its file is missing).
    let good = sim();
    let bad = intl(|_| {});
    let text = format!(
        "apiVersion: maas-usage/v1\nclouds:\n  - name: good\n    region: cn-southwest-2\n    endpoint: {}\n    project_id: {PROJECT}\n    credentials_file: {}\n  - name: bad\n    region: ap-southeast-1\n    endpoint: {}\n    project_id: {PROJECT_B}\n    credentials_file: {}\n  - name: down\n    region: cn-north-4\n    endpoint: http://127.0.0.1:9\n    project_id: {PROJECT}\n    credentials_file: {}\n  - name: keyless\n    region: cn-north-4\n    endpoint: {}\n    project_id: {PROJECT}\n    credentials_file: /nonexistent/aksk\ntimezone: Asia/Shanghai\nqueries:\n  - name: a\n  - name: b\n    range: today\n  - name: c\n    range: yesterday\nlimits:\n  timeout: 6s\n",
        good.url(),
        key_file(AK, SK).display(),
        bad.url(),
        key_file("INTLOWNACCESSKEY0001", "not-the-secret-of-this-key").display(),
        key_file(AK, SK).display(),
        good.url(),
    );
    let spec = spec_file(&text);
    let state = tempdir().join("state");
    for round in 0..2 {
        let out = run_in_state(bin(), &spec, &state).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "partial: {err}");
        let lines = parse_lp(&stdout(&out));
        let clouds: Vec<&str> = lines
            .iter()
            .filter(|l| l.measurement == "maas_usage")
            .map(|l| l.tag("cloud").unwrap())
            .collect();
        assert_eq!(clouds, ["good"; 3], "round {round}: {err}");
        assert_error_line(&err, &["cloud=bad: "]);
        assert_error_line(&err, &["cloud=down: "]);
        assert_error_line(&err, &["cloud=keyless: ", "/nonexistent/aksk"]);
        let failed: BTreeMap<&str, i64> = lines
            .iter()
            .filter(|l| l.measurement == "maas_usage_collector")
            .map(|l| (l.tag("cloud").unwrap(), l.int("series_failed").unwrap()))
            .collect();
        assert_eq!(
            failed,
            BTreeMap::from([("bad", 3), ("down", 3), ("good", 0), ("keyless", 3)])
        );
    }
    // Two runs with three series each: one rejected signature, and nothing else sent.
    let sent = bad.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].status, 401);
    assert!(good.requests().iter().all(|r| r.status == 200));
}

/// STS refusing the agency (a wrong URN, a trust policy that does not name the caller) is
/// asked once per lockout, as a rejected signature is; the refusal is of the pair (the base
/// key and the agency), so the base key's other cloud keeps collecting.
#[test]
fn a_refused_assumption_is_held_back_like_a_rejected_signature_and_fails_its_cloud_only() {
    let a = sim();
    let b = intl(|c| c.sts.agencies.clear());
    let (spec, _) = two_clouds(&a, &b);
    let state = tempdir().join("state");
    for _ in 0..2 {
        let out = run_in_state(authed(), &spec, &state).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "cn-prod still collects: {err}");
        assert_error_line(&err, &["cloud=intl: ", "STS5.1106", "sts:agencies:assume"]);
        let data: Vec<Line> = parse_lp(&stdout(&out))
            .into_iter()
            .filter(|l| l.measurement != "maas_usage_collector")
            .collect();
        assert!(!data.is_empty() && data.iter().all(|l| l.tag("cloud") == Some("cn-prod")));
    }
    let sent = b.requests();
    assert_eq!(
        sent.len(),
        1,
        "the second run is held back by the gate: {sent:?}"
    );
    assert_eq!((sent[0].path.as_str(), sent[0].status), (STS, 403));
}

#[test]
fn the_agency_s_credentials_are_renewed_before_they_expire_under_execd() {
    // The agency grants 4 s (less than the 15 minutes asked): renewed with a second left.
    let b = intl(|c| c.sts.agencies[0].lifetime = Some(Duration::from_secs(4)));
    let url = b.url();
    let text = format!(
        "apiVersion: maas-usage/v1\nclouds:\n  - name: intl\n    region: ap-southeast-1\n    endpoint: {url}\n    iam_endpoint: {url}\n    sts_endpoint: {url}\n    project_id: {PROJECT_B}\n    assume_agency:\n      agency_urn: \"{AGENCY}\"\n      duration: 15m\ntimezone: Asia/Shanghai\nqueries:\n  - name: a\n  - name: b\n    range: today\n"
    );
    let spec = spec_file(&text);
    let mut execd = Execd::start(&spec);
    let until = Instant::now() + Duration::from_secs(40);
    let mut batches = 0;
    // Until a renewed credential has signed a batch.
    while b.agencies_assumed() < 2 || batches < 2 {
        assert!(Instant::now() < until, "no renewal in 40 s");
        let batch = execd.collect();
        assert_eq!(batch.last().unwrap().int("series_ok"), Some(2), "{batch:?}");
        batches += 1;
        if b.agencies_assumed() < 2 {
            // sleep allowed: Telegraf's interval, the client simulated. The next batch comes when
            // Telegraf asks: here, a quarter of a second later.
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    assert_eq!(execd.finish(), Some(0));
    let calls = b.requests();
    assert!(
        calls.iter().all(|r| r.status == 200),
        "no call signed with expired credentials: {calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|r| r.path == STS).count() as u64,
        b.agencies_assumed()
    );
}

/// Every file under `dir`, as text.
fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push((
                p.clone(),
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
            ));
        }
    }
    out
}

#[test]
fn no_secret_of_either_cloud_in_any_output_log_or_state_file() {
    let a = sim();
    let b = intl(|_| {});
    let (spec, _) = two_clouds(&a, &b);
    let state = tempdir().join("state");
    let mut texts = Vec::new();
    for format in ["influx", "json", "prometheus", "otlp-json", "table"] {
        let out = run_in_state(authed(), &spec, &state)
            .args(["--verbose", "--format", format])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        texts.push((format!("{format} stdout"), stdout(&out)));
        texts.push((format!("{format} stderr"), stderr(&out)));
    }
    assert!(
        texts.iter().any(|(_, t)| t.contains("/v5/agencies/assume")),
        "the log says it"
    );
    for (p, t) in files_under(&state) {
        texts.push((p.display().to_string(), t));
    }
    // The base key, and what STS handed out (the simulator's forms).
    for (what, text) in &texts {
        for secret in [
            AK,
            SK,
            "STSAK",
            "temporary-secret-",
            "temporary-security-token-",
        ] {
            assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
        }
    }
}

/// The example spec's `cloud:` block made a `clouds:` entry named `only`.
fn as_one_entry(single: &str) -> String {
    single
        .replace("\ncloud:\n", "\nclouds:\n  - name: only\n")
        .lines()
        .map(|l| {
            let indented = [
                "  region:",
                "  endpoint:",
                "  iam_endpoint:",
                "  ces_endpoint:",
                "  project_id:",
            ];
            if indented.iter().any(|p| l.starts_with(p)) {
                format!("  {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

#[test]
fn a_cloud_block_emits_no_cloud_tag_and_one_entry_of_clouds_only_adds_it() {
    let sim = sim();
    let single = example_spec_for(&sim);
    let named = as_one_entry(&single);
    assert!(
        named.contains("clouds:\n  - name: only\n    region:"),
        "{named}"
    );
    let (single, named) = (spec_file(&single), spec_file(&named));
    for format in ["influx", "prometheus", "otlp-json", "json"] {
        let text = stdout(&run(&single, &["--format", format]));
        for tag in ["cloud=", "maas_cloud", "maas.cloud", "\"cloud\""] {
            assert!(!text.contains(tag), "{format}: {tag} in\n{text}");
        }
    }
    let data = |path: &Path| -> Vec<String> {
        stdout(&run(path, &[]))
            .lines()
            .filter(|l| !l.starts_with("maas_usage_collector"))
            .map(str::to_string)
            .collect()
    };
    let tagged: Vec<String> = data(&named)
        .iter()
        .map(|l| l.replace(",cloud=only", ""))
        .collect();
    assert_eq!(data(&single), tagged, "the tag is the only difference");
    // JSON, written as it is produced: one entry of `clouds` is the document of several clouds
    // with that one, each element carrying its cloud.
    let json = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&stdout(&run(path, &["--format", "json"]))).unwrap()
    };
    let (plain, named) = (json(&single), json(&named));
    assert_eq!(named["clouds"][0]["name"], "only", "{named}");
    assert_eq!(named["collector"][0]["cloud"], "only", "{named}");
    for array in ["series", "models", "failures"] {
        let elements = named[array].as_array().unwrap();
        assert!(elements.iter().all(|e| e["cloud"] == "only"), "{named}");
        let stripped: Vec<serde_json::Value> = elements
            .iter()
            .map(|e| {
                let mut e = e.clone();
                // The segments' request ids are each run's own.
                for k in ["cloud", "region", "project_id", "segments"] {
                    e.as_object_mut().unwrap().remove(k);
                }
                e
            })
            .collect();
        let plain: Vec<serde_json::Value> = plain[array]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().unwrap().remove("segments");
                e
            })
            .collect();
        assert!(stripped == plain, "{array}: {stripped:?}\n{plain:?}");
    }
}

#[test]
fn five_clouds_each_stay_within_their_own_budget_and_the_run_s_time() {
    // Each account throttles at 4 calls per 2 s; each cloud needs 8 calls. Within each cloud's
    // own budget (4 per window), every cloud is collected in two windows, side by side, and no
    // account sees a 429; one budget for all would need ten windows, past the run's timeout.
    const N: u32 = 4;
    const WINDOW_MS: u64 = 2000;
    let sims: Vec<(Simulator, PathBuf)> = (0..5)
        .map(|i| {
            let (ak, sk) = (
                format!("FIVECLOUDSKEY{i:07}"),
                format!("secret-of-cloud-{i}"),
            );
            let mut cfg = sim_config();
            cfg.credentials = vec![SimCredential {
                ak: ak.clone(),
                sk: sk.clone(),
                token: None,
            }];
            cfg.faults.rate_limit = Some(N);
            cfg.faults.rate_window = Duration::from_millis(WINDOW_MS);
            (start(cfg), key_file(&ak, &sk))
        })
        .collect();
    let mut text = String::from("apiVersion: maas-usage/v1\nclouds:\n");
    for (i, (sim, file)) in sims.iter().enumerate() {
        text.push_str(&format!(
            "  - name: c{i}\n    region: cn-southwest-2\n    endpoint: {}\n    project_id: {PROJECT}\n    credentials_file: {}\n",
            sim.url(),
            file.display()
        ));
    }
    text.push_str("timezone: Asia/Shanghai\nqueries:\n");
    for (q, range) in ["last_1d", "last_2d", "last_3d", "last_4d"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!(
            "  - name: q{q}\n    range: {range}\n    service_types: [preset, my_service]\n"
        ));
    }
    text.push_str(&format!(
        "limits:\n  requests_per_minute: {N}\n  timeout: 12s\n"
    ));
    let spec = spec_file(&text);
    let state = tempdir().join("state");
    let out = run_in_state(bin(), &spec, &state)
        .env("MAAS_USAGE_RATE_WINDOW_MS", WINDOW_MS.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let collectors: Vec<Line> = parse_lp(&stdout(&out))
        .into_iter()
        .filter(|l| l.measurement == "maas_usage_collector")
        .collect();
    assert_eq!(collectors.len(), 5);
    for c in &collectors {
        assert_eq!(
            (
                c.int("series_ok"),
                c.int("series_failed"),
                c.int("throttled")
            ),
            (Some(8), Some(0), Some(0)),
            "{c:?}"
        );
    }
    for (sim, _) in &sims {
        let calls = stats_calls(sim);
        assert_eq!(calls.len(), 8);
        assert!(calls.iter().all(|r| r.status == 200), "{calls:?}");
    }
}

/// The period buckets of each cloud's series, in line protocol: cloud -> bucket ends.
fn buckets(out: &std::process::Output) -> BTreeMap<String, Vec<i64>> {
    let mut by_cloud: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for l in parse_lp(&stdout(out)) {
        if l.measurement == "maas_usage" && l.int("period_seconds").is_some() {
            by_cloud
                .entry(l.tag("cloud").unwrap().to_string())
                .or_default()
                .push(l.timestamp.unwrap());
        }
    }
    by_cloud
}

/// Two clouds of one region keep their own period checkpoints: a bucket one delivered does not
/// count as delivered for the other, whose series failed meanwhile.
#[test]
fn the_period_series_of_two_clouds_in_one_region_keep_their_own_checkpoints() {
    let a = sim();
    let b = start(sim_config());
    b.configure(|c| c.faults.fail_ratio = 1.0);
    let text = format!(
        "apiVersion: maas-usage/v1\nclouds:\n  - name: one\n    region: cn-southwest-2\n    endpoint: {}\n    project_id: {PROJECT}\n  - name: two\n    region: cn-southwest-2\n    endpoint: {}\n    project_id: {PROJECT}\ntimezone: Asia/Shanghai\nqueries:\n  - name: hourly\n    range: {{every: 1h, delay: 1h, backfill: 4h}}\nlimits:\n  timeout: 8s\n",
        a.url(),
        b.url()
    );
    let spec = spec_file(&text);
    let state = tempdir().join("state");
    let first = run_in_state(authed(), &spec, &state).output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let delivered = buckets(&first);
    assert_eq!(
        delivered.keys().collect::<Vec<_>>(),
        ["one"],
        "{delivered:?}"
    );
    assert!(!delivered["one"].is_empty());
    // Cloud two's account is back: its buckets all come, cloud one's none again.
    b.configure(|c| c.faults.fail_ratio = 0.0);
    let second = run_in_state(authed(), &spec, &state).output().unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(
        buckets(&second),
        BTreeMap::from([("two".to_string(), delivered["one"].clone())])
    );
    let show = bin()
        .args(["state", "show", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let show = stdout(&show);
    for id in ["one@cn-southwest-2/hourly/", "two@cn-southwest-2/hourly/"] {
        assert!(show.contains(id), "{id} in\n{show}");
    }
}

/// `report` reads one cloud: with `clouds`, the one `--cloud` names (through its agency here),
/// and none of the others.
#[test]
fn report_reads_the_one_cloud_it_is_told() {
    let a = sim();
    let b = intl(|_| {});
    let (spec, _) = two_clouds(&a, &b);
    let report = |extra: &[&str]| {
        authed()
            .args(["report", "--now", NOW, "--spec"])
            .arg(&spec)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = report(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("name the one to report on with --cloud (cn-prod, intl)"),
        "{}",
        stderr(&out)
    );
    let out = report(&["--cloud", "intl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(PROJECT_B),
        "the intl account's report"
    );
    assert!(a.requests().is_empty(), "nothing asked of cn-prod");
    assert_eq!(b.requests()[0].path, STS);
}
