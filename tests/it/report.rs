//! `maas-usage report --month` writes one self-contained HTML file with the month's spend from
//! Cloud Eye, exact against the simulator (a price change inside the month included), its
//! totals reconciled with ShowStatistics, and it renders in a real browser (headless Chromium,
//! network off) without a console error.

use crate::common;

use std::path::Path;

use common::*;
use maas_usage::emit::thousands;
use maas_usage::sim::model::DEFAULT_MODELS;

/// The report of May 2026 written into `dir`: the command's output and the page.
fn may_report(spec: &Path, dir: &Path) -> (std::process::Output, std::path::PathBuf) {
    let html_path = dir.join("report.html");
    let out = report(
        spec,
        &[
            "--month",
            "2026-05",
            "--output",
            html_path.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    (out, html_path)
}

fn report(spec: &Path, extra: &[&str]) -> std::process::Output {
    authed()
        .arg("report")
        .arg("--spec")
        .arg(spec)
        .args(["--now", NOW])
        .args(extra)
        .output()
        .unwrap()
}

/// The local midnights of 2026-05-01 .. 2026-05-21 in Shanghai, and NOW.
fn days() -> Vec<(i64, i64)> {
    let first = ms("2026-05-01T00:00:00+08:00");
    let now = ms(NOW);
    (0..21)
        .map(|d| {
            (
                first + d * 86_400_000,
                (first + (d + 1) * 86_400_000).min(now),
            )
        })
        .collect()
}

/// `femto` rounded half up to cents, as the page shows it.
fn cents(femto: u128) -> String {
    let c = (femto + 5_000_000_000_000) / 10_000_000_000_000;
    format!("{}.{:02}", c / 100, c % 100)
}

#[test]
fn the_month_is_exact_against_the_simulator_and_reconciled() {
    let sim = sim();
    let spec = fixture_for(&sim, "report/spec.yaml", &[]);
    let (out, html_path) = may_report(&spec, &tempdir());
    assert!(stdout(&out).is_empty(), "the page went to the file");
    assert_no_secret(&out);
    let html = std::fs::read_to_string(&html_path).unwrap();
    // Every model's tokens, each day priced at its day's price: DeepSeek-V3 at 2/8 until
    // May 9th and 1/4 from May 10th, Qwen3-32B at 0.5/2, my-glm-4-9b unpriced.
    let (mut input, mut cost) = (0u64, 0u128);
    let change = ms("2026-05-10T00:00:00+08:00");
    for (id, name, _) in DEFAULT_MODELS {
        for (s, e) in days() {
            let u = sim.model_usage(id, None, s, e);
            input += u.prompt_tokens;
            let (i, o) = match *name {
                "DeepSeek-V3" if s < change => (2_000_000_000u128, 8_000_000_000u128),
                "DeepSeek-V3" => (1_000_000_000, 4_000_000_000),
                "Qwen3-32B" => (500_000_000, 2_000_000_000),
                _ => (0, 0),
            };
            cost += u128::from(u.prompt_tokens) * i + u128::from(u.completion_tokens) * o;
        }
    }
    assert!(cost > 0 && input > 0);
    assert!(
        html.contains(&format!("<b id=\"total-cost\">CNY {}</b>", cents(cost))),
        "CNY {} expected in the total card",
        cents(cost)
    );
    assert!(html.contains(&format!("input tokens<b>{}</b>", thousands(input))));
    assert!(html.contains("equal ShowStatistics'"), "reconciled: {html}");
    assert!(html.contains("No price in the spec for my-glm-4-9b"));
    assert!(html.contains("team-a-monthly") && html.contains("ungrouped"));
    assert!(
        stderr(&out).contains("W! no price for my-glm-4-9b"),
        "{}",
        stderr(&out)
    );
    // Self-contained: no script, no reference to anything outside the file.
    for outside in [
        "<script", "src=", "href=", "url(", "@import", "http://", "https://",
    ] {
        let allowed = outside == "http://"
            && html.matches(outside).count() == html.matches("http://www.w3.org/2000/svg").count();
        assert!(!html.contains(outside) || allowed, "{outside} in the page");
    }
    // A handful of calls for the month: daily buckets read by the hour, not a call per day.
    let ces_calls = sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("batch-query-metric-data"))
        .count();
    assert!(ces_calls <= 12, "{ces_calls} Cloud Eye calls");
    insta::assert_snapshot!("report", html.split("<footer>").next().unwrap());
}

/// Headless Chromium on the file with the network closed: it renders (a screenshot of some
/// size), the DOM has the figures, and no console error is logged. Skipped without chromium
/// unless MAAS_USAGE_REQUIRE_CHROMIUM is set.
#[test]
fn the_report_renders_in_headless_chromium() {
    let sim = sim();
    let spec = fixture_for(&sim, "report/spec.yaml", &[]);
    let dir = tempdir();
    let (_, html_path) = may_report(&spec, &dir);
    let shot = dir.join("shot.png");
    let url = format!("file://{}", html_path.display());
    let chromium = |extra: &[&str]| {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--proxy-server=127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--window-size=1200,2000",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .args(extra)
            .arg(&url)
            .output()
    };
    let shot_arg = format!("--screenshot={}", shot.display());
    let Ok(o) = chromium(&[&shot_arg]) else {
        assert!(
            std::env::var("MAAS_USAGE_REQUIRE_CHROMIUM").is_err(),
            "chromium is required but not on PATH"
        );
        eprintln!("skipped: chromium not on PATH");
        return;
    };
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("ERR_"))
        .collect();
    assert!(console.is_empty(), "{console:#?}");
    let dom = chromium(&["--dump-dom"]).unwrap();
    let dom = stdout(&dom);
    assert!(
        dom.contains("MaaS spend, 2026-05") && dom.contains("<svg"),
        "{dom}"
    );
}

#[test]
fn bad_months_and_specs_are_input_errors() {
    let sim = sim();
    let spec = fixture_for(&sim, "report/spec.yaml", &[]);
    for (month, why) in [
        ("2026-13", "is not a month"),
        ("May", "is not a month"),
        ("2026-06", "has not started yet"),
    ] {
        let out = report(&spec, &["--month", month]);
        assert_eq!(out.status.code(), Some(2), "{month}");
        assert_error_line(&stderr(&out), &[why]);
        assert!(stdout(&out).is_empty());
    }
}
