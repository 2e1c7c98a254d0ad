//! Hostile or absurd input in flags and specs: never a panic, never an absurd plan. Each case
//! is an error with its location (exit 2, no call) or a plan the API can actually answer.

mod common;

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
