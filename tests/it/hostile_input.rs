//! Hostile or absurd input in flags and specs: never a panic, never an absurd plan. Each case
//! is an error with its location (exit 2, no call) or a plan the API can actually answer.

use crate::common;

use common::*;

const HEAD: &str = "apiVersion: maas-usage/v1\n";

/// No panic message, no backtrace.
fn assert_no_panic(o: &std::process::Output) {
    let err = stderr(o);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert_ne!(o.status.code(), Some(101), "{err}");
}

#[test]
fn a_multibyte_range_unit_is_a_located_error_not_a_panic() {
    let sim = sim();
    let text = format!(
        "{HEAD}cloud:\n  endpoint: {url}\n  iam_endpoint: {url}\n  project_id: {PROJECT}\nqueries:\n  - name: q\n    range: \"last_7é\"\n",
        url = sim.url()
    );
    let path = spec_file(&text);
    let name = path.display().to_string();
    let v = bin().arg("validate").arg(&path).output().unwrap();
    assert_no_panic(&v);
    assert_eq!(v.status.code(), Some(2), "{}", stderr(&v));
    assert!(
        stderr(&v).contains(&format!(
            "{name}:8:12: queries[0].range: `last_7é` is not a range"
        )),
        "{}",
        stderr(&v)
    );
    let p = bin().args(["plan", "--spec"]).arg(&path).output().unwrap();
    assert_no_panic(&p);
    assert_eq!(p.status.code(), Some(2), "{}", stderr(&p));
    let r = run(&path, &[]);
    assert_no_panic(&r);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    for range in ["last_7é", "last_é", "last_🦀", "last_7日"] {
        let q = query(&sim, &["--range", range]);
        assert_no_panic(&q);
        assert_eq!(q.status.code(), Some(2), "{range}: {}", stderr(&q));
        assert!(stderr(&q).contains("is not a range"), "{}", stderr(&q));
    }
    assert!(sim.requests().is_empty(), "no call for bad input");
}

const CLAMPED: &str = "the first 739726.4 days of this window are older than the 30-day retention and read as zero; it is queried from 2026-04-21 10:00:00";
const BEYOND: &str = maas_usage::plan::BEYOND_RETENTION;

#[test]
fn a_window_from_year_one_is_one_call_from_the_retention_horizon() {
    let sim = sim();
    let text = fixture_text_for(&sim, "hostile_input/from-year-one.yaml", &[]);
    let path = spec_file(&text);

    let p = bin()
        .args(["plan", "--now", NOW, "--spec"])
        .arg(&path)
        .output()
        .unwrap();
    assert_no_panic(&p);
    assert_eq!(p.status.code(), Some(0), "{}", stderr(&p));
    let plan = stdout(&p);
    assert!(plan.contains("1 series, 1 calls"), "{plan}");
    assert!(
        plan.contains(&format!("warning: query ancient: {CLAMPED}")),
        "{plan}"
    );

    let r = run(&path, &[]);
    assert_no_panic(&r);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert!(
        stderr(&r).contains(&format!("W! query ancient: {CLAMPED}")),
        "{}",
        stderr(&r)
    );
    let calls = stats_calls(&sim);
    assert_eq!(calls.len(), 1, "not 24,665 calls");
    let horizon = now().timestamp_millis() - maas_usage::domain::range::RETENTION_MS;
    assert_eq!(body_of(&calls[0])["start_time"], horizon);
    let lines = parse_lp(&stdout(&r));
    let expected = expected_series(&sim, &text);
    assert_eq!(expected.len(), 1);
    let u = &expected[0].1;
    assert!(
        u.requests > 0,
        "the simulator has traffic in the last 30 days"
    );
    assert_eq!(lines[0].int("requests"), Some(u.requests as i64));
    assert_eq!(lines[0].int("total_tokens"), Some(u.total_tokens as i64));
    assert_eq!(lines[0].int("window_seconds"), Some(30 * 86_400));
}

#[test]
fn a_window_entirely_beyond_the_retention_emits_nothing_and_makes_no_call() {
    let sim = sim();
    let text = fixture_text_for(&sim, "hostile_input/january.yaml", &[]);
    let path = spec_file(&text);
    let r = run(&path, &[]);
    assert_no_panic(&r);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert!(
        stderr(&r).contains(&format!("W! query january: {BEYOND}")),
        "{}",
        stderr(&r)
    );
    assert!(
        stats_calls(&sim).is_empty(),
        "no call for data that is gone"
    );
    // No zero point: stamped with the window's end, it would overwrite the totals an earlier
    // run stored for the same window.
    let lines = parse_lp(&stdout(&r));
    assert!(
        lines.iter().all(|l| l.measurement != "maas_usage"),
        "{}",
        stdout(&r)
    );
    let collector = lines
        .iter()
        .find(|l| l.measurement == "maas_usage_collector")
        .unwrap();
    assert_eq!(collector.int("series_ok"), Some(0));
    assert_eq!(collector.int("api_calls"), Some(0));
}

#[test]
fn validate_prints_the_retention_warnings_and_exits_0() {
    let sim = sim();
    // Both windows are beyond (or reach beyond) the retention whatever the real now is.
    let path = spec_file(&fixture_text_for(
        &sim,
        "hostile_input/year-one-and-january.yaml",
        &[],
    ));
    let v = bin().arg("validate").arg(&path).output().unwrap();
    assert_no_panic(&v);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    let err = stderr(&v);
    assert!(
        err.contains("warning: query ancient: the first ")
            && err.contains("days of this window are older than the 30-day retention and read as zero; it is queried from "),
        "{err}"
    );
    assert!(
        err.contains(&format!("warning: query january: {BEYOND}")),
        "{err}"
    );
    assert!(
        stdout(&v).starts_with("ok: 1 file(s), 2 queries, 1 series, 1 call per run"),
        "{}",
        stdout(&v)
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn query_from_year_one_is_one_call() {
    let sim = sim();
    let out = query(&sim, &["--from", "0001-01-01", "--format", "json"]);
    assert_no_panic(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("warning: query query: {CLAMPED}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(stats_calls(&sim).len(), 1);
}

#[test]
fn a_window_ending_before_1970_is_a_spec_error_not_a_broken_point() {
    let sim = sim();
    let path = spec_file(&fixture_text_for(
        &sim,
        "hostile_input/invalid/before-1970.yaml",
        &[],
    ));
    for out in [
        bin().arg("validate").arg(&path).output().unwrap(),
        run(&path, &[]),
    ] {
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("queries[0] (old): to (1600-01-02) is before 1970"),
            "{}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "no point stamped in 1600");
    }
    assert!(sim.requests().is_empty());
}

#[test]
fn a_now_that_no_timestamp_can_carry_is_refused() {
    let sim = maas_usage::sim::Simulator::start("127.0.0.1:0", sim_config()).unwrap();
    for now in [
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2300-01-01T00:00:00Z",
    ] {
        let out = query(&sim, &["--now", now, "--project-id", PROJECT]);
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{now}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("1970-01-01 to 2262-04-11"),
            "{}",
            stderr(&out)
        );
    }
    assert!(sim.requests().is_empty());
}

/// A project id or region from a flag or the environment goes into signed URLs: one the spec
/// would refuse is refused the same way (exit 2, no call), so that no signature is made for a
/// path the server would read differently (a 401, and the key refused for five minutes).
#[test]
fn a_project_id_or_region_that_is_not_one_is_refused_before_any_call() {
    let sim = sim();
    let state = tempdir();
    let spec = fixture_for(&sim, "auth/six-series-discovered.yaml", &[]);
    let run_with = |flags: &[&str], env: &[(&str, &str)]| {
        let mut c = authed();
        for (k, v) in env {
            c.env(k, v);
        }
        c.arg("run")
            .arg("--spec")
            .arg(&spec)
            .arg("--state-dir")
            .arg(&state)
            .args(["--now", NOW])
            .args(flags)
            .output()
            .unwrap()
    };
    let bad_id = format!("{PROJECT}?x");
    let id_flag = "--project-id (or cloud.project_id): `abc#def` is not a project id; it is 32 lowercase letters and digits";
    let id_flag2 = format!("--project-id (or cloud.project_id): `{bad_id}` is not a project id");
    let id_env = format!("HW_PROJECT_ID: `{bad_id}` is not a project id");
    let id_sdk = "HUAWEICLOUD_SDK_PROJECT_ID: `../../v3/projects` is not a project id";
    let region =
        "--region (or cloud.region): `evil.example#` is not a region name like cn-southwest-2";
    for (flags, env, needle) in [
        (vec!["--project-id", "abc#def"], vec![], id_flag),
        (vec!["--project-id", &bad_id], vec![], id_flag2.as_str()),
        (vec![], vec![("HW_PROJECT_ID", bad_id.as_str())], &id_env),
        (
            vec![],
            vec![("HUAWEICLOUD_SDK_PROJECT_ID", "../../v3/projects")],
            id_sdk,
        ),
        (
            vec!["--region", "cn-southwest-2/../x"],
            vec![],
            "is not a region name",
        ),
        (vec!["--region", "evil.example#"], vec![], region),
    ] {
        let out = run_with(&flags, &env);
        assert_no_panic(&out);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?} {env:?}: {err}");
        assert!(err.contains(needle), "{flags:?} {env:?}: {err}");
        assert!(sim.requests().is_empty(), "{flags:?} {env:?}: no call");
    }
    // Nothing was recorded against the key: the next correct run goes ahead.
    let out = run_with(&["--project-id", PROJECT], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(sim.requests().iter().all(|r| r.status == 200));
}
