//! Bad specs: every error located as file:line:column with its path, exit 2, no network call.
//! Also the multi-file (GitOps) rules, the example specs, and the harness's temporary
//! directories.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

const HEAD: &str = "apiVersion: maas-usage/v1\n";

/// Runs `validate` and `run` on `text`; both must exit 2 without calling the simulator.
/// Returns validate's stderr.
fn refused(text: &str) -> String {
    let sim = sim();
    // Appended, so the line numbers of `text` stay as written.
    let with_endpoint = format!(
        "{text}\ncloud:\n  endpoint: {}\n  iam_endpoint: {}\n",
        sim.url(),
        sim.url()
    );
    let spec_text = if text.contains("\ncloud:") || text.contains("\nclouds:") {
        text.to_string()
    } else {
        with_endpoint
    };
    let path = spec_file(&spec_text);
    let v = bin().arg("validate").arg(&path).output().unwrap();
    assert_eq!(v.status.code(), Some(2), "validate: {}", stderr(&v));
    let r = run(&path, &[]);
    assert_eq!(r.status.code(), Some(2), "run: {}", stderr(&r));
    assert!(stdout(&r).is_empty(), "no metrics from a bad spec");
    assert!(sim.requests().is_empty(), "no network call for a bad spec");
    assert_no_secret(&r);
    let err = stderr(&v);
    let name = path.display().to_string();
    for line in err.lines() {
        assert!(
            line.starts_with(&format!("error: {name}:")),
            "located: {line}"
        );
    }
    err.replace(&name, "spec.yaml")
}

#[test]
fn malformed_yaml() {
    let e = refused(&format!("{HEAD}queries:\n  - name: a: b\n"));
    assert!(e.starts_with("error: spec.yaml:3:"), "{e}");
    assert!(
        e.contains("invalid YAML: mapping values are not allowed"),
        "{e}"
    );
}

#[test]
fn schema_violation_and_unknown_key() {
    let e = refused(&format!(
        "{HEAD}queries:\n  - name: q\n    rnage: last_7d\nlimits:\n  concurrency: many\n"
    ));
    assert!(e.contains("spec.yaml:4:5: queries[0].rnage: unknown key `rnage`; allowed here: name, clouds, range, service_types"), "{e}");
    assert!(
        e.contains("spec.yaml:6:16: limits.concurrency: expected an integer, found a string"),
        "{e}"
    );
}

#[test]
fn inline_secret_points_at_the_environment() {
    let e = refused(&format!("{HEAD}cloud:\n  region: cn-southwest-2\n  ak: AKCANARY7Q2W3E4R5T6Y\n  secret_key: SKCANARYzx9cv8bn7m6l5k4j3h2g1f0d9s8a7p6o\nqueries:\n  - name: q\n"));
    assert!(
        e.contains("spec.yaml:4:3: cloud.ak: `ak`: secrets do not belong in the spec"),
        "{e}"
    );
    assert!(e.contains("spec.yaml:5:3: cloud.secret_key:"), "{e}");
    assert!(
        e.contains("HW_ACCESS_KEY") && e.contains("credentials_file"),
        "{e}"
    );
    assert!(
        !e.contains("CANARY"),
        "the secret itself is never echoed: {e}"
    );
}

#[test]
fn service_type_three() {
    let e = refused(&format!(
        "{HEAD}queries:\n  - name: q\n    service_types: [preset, 3]\n"
    ));
    assert!(
        e.contains(
            ": queries[0].service_types[1]: 3 is not a service type; use 4 for Custom Endpoint"
        ),
        "{e}"
    );
}

#[test]
fn unknown_key_group_and_duplicate_names() {
    let e = refused(&format!(
        "{HEAD}key_groups:\n  a: [k]\nqueries:\n  - name: q\n    key_groups: [b]\n  - name: q\n"
    ));
    assert!(
        e.contains(": queries[0].key_groups[0]: unknown key group `b`; defined: a"),
        "{e}"
    );
    assert!(
        e.contains(": queries[1].name: query name `q` is already used at"),
        "{e}"
    );
}

/// `clouds:` mistakes, each located: a name used twice, a key no cloud has, an entry without
/// its region, an agency's duration STS does not grant, a query naming a cloud that is not
/// there, a cloud no query runs in, and the cloud tag taken by a static tag.
#[test]
fn clouds_mistakes_are_located() {
    let sim = sim();
    let url = sim.url();
    let e = refused(&format!(
        "{HEAD}clouds:\n  - name: a\n    region: cn-southwest-2\n    endpoint: {url}\n  - name: a\n    region: ap-southeast-1\n    endpoint: {url}\n    assume_agency:\n      agency_urn: \"iam::1:agency:x\"\n      duration: 13h\n  - name: idle\n    region: cn-north-4\n    endpoint: {url}\nqueries:\n  - name: q\n    clouds: [a, b]\noutput:\n  tags: {{cloud: x}}\n"
    ));
    for (at, message) in [
        (
            "spec.yaml:6:11: clouds[1].name",
            "cloud name `a` is already used by clouds[0]",
        ),
        (
            "spec.yaml:11:17: clouds[1].assume_agency.duration",
            "`13h` is outside what STS grants: from 15m to 12h",
        ),
        (
            "spec.yaml:12:11: clouds[2].name",
            "no query runs in cloud `idle`",
        ),
        (
            "spec.yaml:17:17: queries[0].clouds[1]",
            "unknown cloud `b`; defined: a, a, idle",
        ),
        (
            "spec.yaml:19:10: output.tags.cloud",
            "`cloud` is the tag (or label, `maas_cloud`) every series of a spec with `clouds` carries",
        ),
    ] {
        assert!(e.contains(&format!("error: {at}: {message}")), "{at}: {e}");
    }
    // What the schema refuses comes first (the checks above wait for it).
    let e = refused(&format!(
        "{HEAD}clouds:\n  - name: a\n    endpoint: {url}\n    regoin: cn-north-4\nqueries:\n  - name: q\n"
    ));
    for (at, message) in [
        ("spec.yaml:3:5: clouds[0]", "missing required key `region`"),
        (
            "spec.yaml:5:5: clouds[0].regoin",
            "unknown key `regoin`; allowed here: name, region, project_id, ",
        ),
    ] {
        assert!(e.contains(&format!("error: {at}: {message}")), "{at}: {e}");
    }
    let e = refused(&format!(
        "{HEAD}cloud:\n  endpoint: {url}\nclouds:\n  - name: a\n    region: cn-north-4\n    endpoint: {url}\nqueries:\n  - name: q\n    clouds: [a]\n"
    ));
    assert!(
        e.contains("error: spec.yaml:4:1: clouds: `clouds` and `cloud` are both set (cloud at "),
        "{e}"
    );
    let e = refused(&format!(
        "{HEAD}cloud:\n  endpoint: {url}\nqueries:\n  - name: q\n    clouds: [a]\n"
    ));
    assert!(
        e.contains("error: spec.yaml:6:5: queries[0].clouds: `clouds` names entries of the top-level `clouds` list, and this spec has none"),
        "{e}"
    );
}

/// The flags that set one cloud's settings are refused with `clouds` (exit 2, no call); the
/// static tag `cloud` stays allowed with a `cloud:` block, whose series have no such tag.
#[test]
fn one_cloud_flags_are_refused_with_clouds() {
    let sim = sim();
    let url = sim.url();
    let spec = spec_file(&format!(
        "{HEAD}clouds:\n  - name: a\n    region: cn-southwest-2\n    endpoint: {url}\n    project_id: {PROJECT}\nqueries:\n  - name: q\noutput:\n  tags: {{env: prod}}\n"
    ));
    for flag in [["--region", "cn-north-4"], ["--project-id", PROJECT]] {
        let out = run(&spec, &flag);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "{} sets one cloud's setting, and this spec has several (`clouds`)",
                flag[0]
            )),
            "{}",
            stderr(&out)
        );
    }
    assert!(sim.requests().is_empty());
    let single = spec_file(&format!(
        "{HEAD}cloud:\n  endpoint: {url}\n  project_id: {PROJECT}\nqueries:\n  - name: q\noutput:\n  tags: {{cloud: huawei}}\n"
    ));
    let out = run(&single, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(",cloud=huawei,"), "{}", stdout(&out));
}

#[test]
fn bad_ranges_and_zone() {
    let e = refused(&format!(
        "{HEAD}timezone: CST\nqueries:\n  - name: q\n    range: {{from: 2026-05-32}}\n"
    ));
    assert!(
        e.contains(": timezone: `CST` is not an IANA time zone name"),
        "{e}"
    );
    assert!(
        e.contains(": queries[0].range.from: `2026-05-32` is not a date"),
        "{e}"
    );
}

/// A period mapping the schema refuses says which key is wrong and what it allows.
#[test]
fn period_ranges_name_the_key_at_fault() {
    for (range, message) in [
        (
            "{every: 0s}",
            "range: every: `0s` must be between 5m and 1d",
        ),
        (
            "{every: 300s}",
            "range: `every` and `backfill` take minutes, hours or days",
        ),
        (
            "{every: 1h, delay: 3}",
            "range: delay: expected a duration like 1h, found a number",
        ),
        (
            "{every: 1h, foo: 1}",
            "range: a period range takes `every`, `delay` and `backfill` (durations like 1h), not `foo`",
        ),
    ] {
        let e = refused(&format!(
            "{HEAD}queries:\n  - name: q\n    range: {range}\n"
        ));
        assert!(
            e.contains(&format!("spec.yaml:4:12: queries[0].{message}")),
            "{range}: {e}"
        );
    }
}

#[test]
fn yaml_bomb_is_refused_fast() {
    let mut y = format!("{HEAD}a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        y.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 9].join(", ")
        ));
    }
    let started = Instant::now();
    let e = refused(&y);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.contains("YAML bomb"), "{e}");
}

#[test]
fn fifty_megabytes_are_refused_before_parsing() {
    let path = tempdir().join("big.yaml");
    let mut text = String::from(HEAD);
    text.push_str("queries:\n");
    let line = "  - name: q\n";
    while text.len() < 50 * 1024 * 1024 {
        text.push_str(&line.repeat(4096));
    }
    std::fs::write(&path, &text).unwrap();
    let started = Instant::now();
    let out = bin().arg("validate").arg(&path).output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("larger than 1024 KiB"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn all_errors_are_listed_not_just_the_first() {
    let e = refused(&format!("{HEAD}queries:\n  - name: A\n  - name: b\n    infer_type: x\n  - name: c\n    service_types: [3]\n"));
    assert_eq!(e.lines().count(), 3, "{e}");
}

#[test]
fn a_directory_is_one_spec_per_team() {
    let dir = tempdir();
    std::fs::write(
        dir.join("00-shared.yaml"),
        format!("{HEAD}cloud:\n  region: cn-southwest-2\noutput:\n  tags: {{env: prod}}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("team-a.yaml"), format!("{HEAD}key_groups:\n  team-a: [key-a1]\nqueries:\n  - name: team-a-7d\n    key_groups: [team-a]\n")).unwrap();
    std::fs::write(
        dir.join("team-b.yml"),
        format!("{HEAD}queries:\n  - name: team-b-7d\n    key_groups: [team-a]\n"),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a spec").unwrap();
    let out = bin().arg("validate").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "ok: 3 file(s), 2 queries, 2 series, 1 call per run\n",
        "both queries make the same call"
    );

    std::fs::write(
        dir.join("team-c.yaml"),
        format!("{HEAD}cloud:\n  region: ap-southeast-1\nqueries:\n  - name: team-a-7d\n"),
    )
    .unwrap();
    let out = bin().arg("validate").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("team-c.yaml:2:1: cloud: cloud is also set in"),
        "{e}"
    );
    assert!(e.contains("00-shared.yaml:2:1 with other values"), "{e}");
    assert!(
        e.contains("team-c.yaml:5:11: queries[0].name: query name `team-a-7d` is already used at"),
        "{e}"
    );
}

#[test]
fn github_and_json_formats_for_ci() {
    let path = spec_file(&format!(
        "{HEAD}queries:\n  - name: q\n    service_types: [3]\n"
    ));
    let out = bin()
        .args(["validate", "--format", "github"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let line = stdout(&out);
    assert!(line.starts_with(&format!("::error file={},line=4,col=21,title=maas-usage spec::queries[0].service_types[0]: 3 is not a service type", path.display())), "{line}");
    let out = bin()
        .args(["validate", "--format", "json"])
        .arg(&path)
        .output()
        .unwrap();
    let doc = json(&out);
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"][0]["line"], 4);
    assert_eq!(doc["errors"][0]["path"], "queries[0].service_types[0]");
}

#[test]
fn every_example_spec_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut specs = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
                && std::fs::read_to_string(&p)
                    .unwrap()
                    .contains("apiVersion: maas-usage/v1")
            {
                specs.push(p);
            }
        }
    }
    assert!(!specs.is_empty());
    // A directory named `specs` is one multi-file spec (the GitOps layout); others stand alone.
    let mut targets: Vec<std::path::PathBuf> = specs
        .into_iter()
        .map(|p| match p.parent() {
            Some(d) if d.file_name().is_some_and(|n| n == "specs") => d.to_path_buf(),
            _ => p,
        })
        .collect();
    targets.sort();
    targets.dedup();
    for p in targets {
        let out = bin().arg("validate").arg(&p).output().unwrap();
        assert!(out.status.success(), "{}: {}", p.display(), stderr(&out));
    }
}

/// Every spec fixture in tests/testdata, its placeholders filled with sample values, passes
/// `validate`, except those under a directory named `invalid/`, which must fail it.
#[test]
fn every_test_fixture_is_valid_unless_meant_to_be_invalid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let creds = tempdir().join("aksk");
    std::fs::write(&creds, format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY={SK}\n")).unwrap();
    let creds = creds.display().to_string();
    let samples: &[(&str, &str)] = &[
        ("url", "http://127.0.0.1:9"),
        ("redis", "redis://127.0.0.1:9/0"),
        ("on_unavailable", "stop"),
        ("project", PROJECT),
        ("timeout", "3s"),
        ("concurrency", "2"),
        ("rpm", "8"),
        ("infer_type", "batch"),
        ("otlp_endpoint", "http://127.0.0.1:4318"),
        ("credentials_file", &creds),
        ("ak", AK),
        ("sk", SK),
        ("token", TOKEN),
        ("metrics", "total_tokens, ttft_p99"),
        ("url_b", "http://127.0.0.1:9"),
        ("agency", "iam::0a1b2c3d:agency:maas-readonly"),
    ];
    let mut fixtures = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                fixtures.push(p);
            }
        }
    }
    fixtures.sort();
    let (mut valid, mut invalid) = (0, 0);
    for p in fixtures {
        let name = p
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.ends_with(".yaml"),
            "{name}: tests/testdata holds spec fixtures (*.yaml)"
        );
        let raw = std::fs::read_to_string(&p).unwrap();
        assert!(
            raw.starts_with("# ") && raw.lines().nth(1).is_some_and(|l| !l.starts_with('#')),
            "{name}: starts with a one-line comment saying what it is for"
        );
        let vars: Vec<(&str, &str)> = samples
            .iter()
            .copied()
            .filter(|(k, _)| raw.contains(&format!("{{{{{k}}}}}")))
            .collect();
        let path = spec_file(&fixture_text(&name, &vars));
        let out = bin().arg("validate").arg(&path).output().unwrap();
        if p.components().any(|c| c.as_os_str() == "invalid") {
            assert_eq!(
                out.status.code(),
                Some(2),
                "{name} is meant to be invalid: {}",
                stderr(&out)
            );
            assert_no_secret(&out);
            invalid += 1;
        } else {
            assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
            valid += 1;
        }
    }
    assert!(
        valid > 10 && invalid > 0,
        "{valid} valid, {invalid} invalid"
    );
}

/// The harness's temporary directories live under target/tmp, one root per process, and the
/// roots of finished processes of the same test binary are removed by the next process's first
/// use. The check runs in a child process (this test binary, this test alone), so no other test
/// thread of this process can do the removal first.
#[test]
fn temporary_roots_of_finished_runs_are_removed() {
    const CHILD: &str = "MAAS_USAGE_TEST_TEMPDIR_CHILD";
    let mine = tempdir();
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let binary = env!("CARGO_CRATE_NAME");
    assert!(
        mine.starts_with(base.join(temp_root_name(binary, std::process::id()))),
        "{}",
        mine.display()
    );
    // No pid reaches 4194304 (the kernel's PID_MAX_LIMIT): these processes are gone.
    let stale = base.join(temp_root_name(binary, 4_194_305));
    let not_ours = base.join(temp_root_name("another_test_binary", 4_194_305));
    let not_a_pid = base.join(format!("mu-{binary}-4194305x"));
    for d in [&stale, &not_ours, &not_a_pid] {
        std::fs::create_dir_all(d.join("0")).unwrap();
        std::fs::write(d.join("0/spec.yaml"), "left over").unwrap();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "spec_errors::temporary_roots_of_finished_runs_are_removed",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("1 passed"),
        "the child ran the test: {}",
        stdout(&out)
    );
    let stale_left = stale.exists();
    let kept = (not_ours.exists(), not_a_pid.exists(), mine.exists());
    for d in [&stale, &not_ours, &not_a_pid] {
        let _ = std::fs::remove_dir_all(d);
    }
    assert!(!stale_left, "the root of a finished process is removed");
    assert_eq!(
        kept,
        (true, true, true),
        "another binary's root, a name that is not a root, a live process's root: kept"
    );
}

#[test]
fn schema_command_prints_the_embedded_schema() {
    let out = bin().arg("schema").output().unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/maas-usage.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(printed, file);
    assert_eq!(
        printed["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}
