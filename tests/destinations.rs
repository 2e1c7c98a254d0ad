//! Period checkpoints belong to a destination: `serve`, a line-protocol run and an OTLP run
//! sharing one spec and one state directory (as the packaged systemd units do) each get every
//! settled bucket once; `state show` lists the destinations (then the credential gate's
//! records, of the runtime directory too) and `state reset --destination` rewinds one; a
//! destination named by `output.destination` keeps its checkpoints when its target changes; a
//! checkpoint file of a version that did not record its destination holds the period series
//! back until it is adopted or reset, never sending a bucket twice or skipping one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::otlp::HttpReceiver;
use common::serving::Serve;
use common::*;
use maas_usage::sim::Simulator;

const H: i64 = 3_600_000;

fn spec(sim: &Simulator, rx: &HttpReceiver) -> PathBuf {
    fixture(
        "destinations/hourly.yaml",
        &[
            ("url", &sim.url()),
            ("project", PROJECT),
            ("otlp_endpoint", &rx.url),
        ],
    )
}

/// `run` of `spec` on `state` at `now`, with `args` (`--format otlp`).
fn run_at(spec: &Path, state: &Path, now: i64, args: &[&str]) -> Output {
    authed()
        .arg("run")
        .arg("--spec")
        .arg(spec)
        .arg("--state-dir")
        .arg(state)
        .args(["--now", &rfc(now)])
        .args(args)
        .output()
        .unwrap()
}

/// Period buckets in a line-protocol output.
fn buckets(o: &Output) -> usize {
    parse_lp(&stdout(o))
        .iter()
        .filter(|l| l.measurement == "maas_usage" && l.int("period_seconds").is_some())
        .count()
}

/// Points of the period Sum `maas.usage.period.total_tokens` the receiver has: one per bucket
/// of each series.
fn otlp_buckets(rx: &HttpReceiver) -> usize {
    rx.requests()
        .iter()
        .flat_map(|r| &r.request.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == "maas.usage.period.total_tokens")
        .map(|m| match &m.data {
            Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) => {
                s.data_points.len()
            }
            other => panic!("a period metric is a Sum: {other:?}"),
        })
        .sum()
}

fn state_cmd(state: &Path, args: &[&str]) -> Output {
    bin()
        .arg("state")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

/// The destination ids `state show` lists (`destination <id>: ...` lines).
fn destinations(state: &Path) -> Vec<String> {
    let shown = state_cmd(state, &["show"]);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    stdout(&shown)
        .lines()
        .filter_map(|l| l.strip_prefix("destination "))
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect()
}

/// `serve` on `spec` and `state` until its first collection is published (`/healthz` answers
/// 200), then SIGTERM; its exit status.
fn serve_once(spec: &Path, state: &Path) -> Option<i32> {
    let serve = Serve::start(spec, state, "1h");
    serve.wait_for("/healthz", 200);
    serve.stop().0
}

#[test]
fn serve_and_runs_sharing_a_spec_and_a_state_directory_each_get_every_bucket_once() {
    let sim = sim();
    let rx = HttpReceiver::start();
    let spec = spec(&sim, &rx);
    let t0 = ms(NOW);
    // What a line-protocol run gets on a state directory of its own.
    let fresh = run_at(&spec, &tempdir().join("alone"), t0, &[]);
    let all = buckets(&fresh);
    assert!(all > 0, "{}", stderr(&fresh));

    // The packaged units: `serve` and the timer's run on one spec and one state directory.
    let state = tempdir().join("state");
    assert_eq!(serve_once(&spec, &state), Some(0));
    let influx = run_at(&spec, &state, t0, &[]);
    assert_eq!(influx.status.code(), Some(0), "{}", stderr(&influx));
    assert_eq!(
        buckets(&influx),
        all,
        "serve took the buckets of the line-protocol destination: {}",
        stderr(&influx)
    );
    assert_eq!(buckets(&run_at(&spec, &state, t0, &[])), 0, "then once");
    let otlp = run_at(&spec, &state, t0, &["--format", "otlp"]);
    assert_eq!(otlp.status.code(), Some(0), "{}", stderr(&otlp));
    assert_eq!(otlp_buckets(&rx), all, "{}", stderr(&otlp));
    run_at(&spec, &state, t0, &["--format", "otlp"]);
    assert_eq!(otlp_buckets(&rx), all, "each bucket once to OTLP");

    // Three destinations, each with its checkpoints.
    let ids = destinations(&state);
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&"influx-stdout".to_string()), "{ids:?}");
    assert!(ids.iter().any(|d| d.starts_with("serve-")), "{ids:?}");
    let otlp_id = ids.iter().find(|d| d.starts_with("otlp-")).unwrap().clone();
    let shown = stdout(&state_cmd(&state, &["show"]));
    assert!(
        shown.contains(&format!("{}/v1/metrics", rx.url)),
        "a destination is shown by its target: {shown}"
    );

    // Rewinding one destination leaves the others where they are.
    let reset = state_cmd(&state, &["reset", "--destination", "influx-stdout"]);
    assert_eq!(reset.status.code(), Some(0), "{}", stderr(&reset));
    assert_eq!(buckets(&run_at(&spec, &state, t0, &[])), all);
    run_at(&spec, &state, t0, &["--format", "otlp"]);
    assert_eq!(
        otlp_buckets(&rx),
        all,
        "the OTLP destination was not rewound"
    );
    let unknown = state_cmd(&state, &["reset", "--destination", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains(&otlp_id) && stderr(&unknown).contains("influx-stdout"),
        "names the destinations there are: {}",
        stderr(&unknown)
    );
    let help = stdout(&bin().args(["state", "reset", "--help"]).output().unwrap());
    assert!(help.contains("--destination"), "{help}");
    assert!(help.contains("state show"), "{help}");

    // The next bucket settles: each destination gets it.
    let later = run_at(&spec, &state, t0 + H, &[]);
    assert_eq!(
        buckets(&later) * 3,
        all,
        "one bucket of each series: {}",
        stderr(&later)
    );
}

/// Rewrites the destination file the runs made into the one file an earlier version kept for
/// every destination (`checkpoints.json`: the series and their totals, no destination).
fn make_old_file(state: &Path) {
    let own = state.join("checkpoints-influx-stdout.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&own).unwrap()).unwrap();
    let old = serde_json::json!({"series": v["series"], "totals": v["totals"]});
    std::fs::write(state.join("checkpoints.json"), old.to_string()).unwrap();
    std::fs::remove_file(own).unwrap();
}

#[test]
fn an_old_checkpoint_file_holds_the_period_series_back_until_adopted_or_reset() {
    let sim = sim();
    let rx = HttpReceiver::start();
    let spec = spec(&sim, &rx);
    let state = tempdir().join("state");
    let t0 = ms(NOW);
    let first = run_at(&spec, &state, t0, &[]);
    let all = buckets(&first);
    assert!(all > 0, "{}", stderr(&first));
    make_old_file(&state);

    // Whose it was cannot be known: the period series wait, saying how to go on.
    let held = run_at(&spec, &state, t0 + H, &[]);
    let err = stderr(&held);
    assert_eq!(buckets(&held), 0, "{err}");
    assert_eq!(held.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("E! ") && l.contains("checkpoints.json"))
        .unwrap_or_else(|| panic!("one E! line names the old file: {err}"));
    let state_flag = format!("--state-dir {}", state.display());
    for how in [
        format!("maas-usage state adopt --destination influx-stdout {state_flag}"),
        format!("maas-usage state reset --destination influx-stdout {state_flag}"),
    ] {
        assert!(line.contains(&how), "says `{how}`: {line}");
    }
    assert!(
        stdout(&state_cmd(&state, &["show"])).contains("checkpoints.json"),
        "state show lists the old file"
    );

    // Adopted: the destination goes on from the old checkpoints, nothing twice, no gap.
    let adopt = state_cmd(&state, &["adopt", "--destination", "influx-stdout"]);
    assert_eq!(adopt.status.code(), Some(0), "{}", stderr(&adopt));
    let next = run_at(&spec, &state, t0 + H, &[]);
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    assert_eq!(buckets(&next) * 3, all, "only the bucket settled since");

    // Another destination of the same directory has not decided: it waits too, until reset
    // starts it from its backfill.
    let otlp = run_at(&spec, &state, t0, &["--format", "otlp"]);
    assert_eq!(otlp.status.code(), Some(1), "{}", stderr(&otlp));
    assert_eq!(otlp_buckets(&rx), 0);
    let otlp_id = stderr(&otlp)
        .split("state reset --destination ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("{}", stderr(&otlp)))
        .to_string();
    let reset = state_cmd(&state, &["reset", "--destination", &otlp_id]);
    assert_eq!(reset.status.code(), Some(0), "{}", stderr(&reset));
    let otlp = run_at(&spec, &state, t0, &["--format", "otlp"]);
    assert_eq!(otlp.status.code(), Some(0), "{}", stderr(&otlp));
    assert_eq!(otlp_buckets(&rx), all, "from its backfill");

    // A destination that has not decided, on a spec whose series the old file never had, is
    // not held back.
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("name: hourly", "name: other");
    let file = tempdir().join("other.lp");
    let out = ["--output", file.to_str().unwrap()];
    let other = run_at(&spec_file(&text), &state, t0, &out);
    assert_eq!(other.status.code(), Some(0), "{}", stderr(&other));
    let lines = parse_lp(&std::fs::read_to_string(&file).unwrap());
    let other_buckets = lines
        .iter()
        .filter(|l| l.tag("query") == Some("other"))
        .count();
    assert_eq!(other_buckets, all, "{}", stderr(&other));
}

#[test]
fn a_named_destination_keeps_its_checkpoints_when_its_target_changes() {
    let sim = sim();
    let rx = HttpReceiver::start();
    let text = std::fs::read_to_string(spec(&sim, &rx)).unwrap().replace(
        "  format: influx\n",
        "  format: influx\n  destination: tsdb\n",
    );
    let spec = spec_file(&text);
    let state = tempdir().join("state");
    let t0 = ms(NOW);
    let written = |name: &str| {
        let file = tempdir().join(name);
        let out = run_at(&spec, &state, t0, &["--output", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        parse_lp(&std::fs::read_to_string(&file).unwrap())
            .iter()
            .filter(|l| l.int("period_seconds").is_some())
            .count()
    };
    assert!(written("a.lp") > 0);
    assert_eq!(written("b.lp"), 0, "another file, the same destination");
    assert_eq!(destinations(&state), vec!["influx-tsdb".to_string()]);
    // A name that cannot name a file is refused where it is written.
    let bad = spec_file(&text.replace("destination: tsdb", "destination: ../x"));
    let out = bin().arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(":12:16: output.destination: `../x` is not a destination name"),
        "{}",
        stderr(&out)
    );
}

/// `state show` lists each destination with its checkpoints and then the credential gate's
/// records of both places: a rejection the state directory could not take is in the runtime
/// directory (and shown only with it), and records that cannot be read are said to block every
/// signed call, the destinations still listed.
#[test]
fn state_show_lists_the_destinations_and_the_gate_s_records_of_both_places() {
    let sim = sim();
    let rx = HttpReceiver::start();
    let spec = spec(&sim, &rx);
    let state = tempdir().join("state");
    let first = run_at(&spec, &state, ms(NOW), &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    // The rejections' lock a directory: the state directory cannot record a rejection.
    std::fs::remove_file(state.join("auth.lock")).unwrap();
    std::fs::create_dir(state.join("auth.lock")).unwrap();
    let runtime = runtime_dir();
    let wrong = bin()
        .env("HW_ACCESS_KEY", AK)
        .env("HW_SECRET_KEY", "SKWRONG-show")
        .env("XDG_RUNTIME_DIR", &runtime)
        .arg("run")
        .arg("--spec")
        .arg(&spec)
        .arg("--state-dir")
        .arg(&state)
        .args(["--now", &rfc(ms(NOW) + H)])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr(&wrong));
    let show = |runtime: &Path| {
        let out = bin()
            .env("XDG_RUNTIME_DIR", runtime)
            .args(["state", "show", "--state-dir"])
            .arg(&state)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let listed = |shown: &str| {
        shown.contains("destination influx-stdout: influx stdout")
            && shown.contains("/hourly/preset/real_time/all")
    };
    let shown = show(&runtime);
    assert!(listed(&shown), "{shown}");
    assert!(shown.contains("rejected (HTTP 401)"), "{shown}");
    let elsewhere = show(&runtime_dir());
    assert!(
        listed(&elsewhere) && !elsewhere.contains("rejected"),
        "{elsewhere}"
    );
    // Records that cannot be read (cut) block every credential; show says so.
    std::fs::write(state.join("auth.json"), r#"{"rejections":{"#).unwrap();
    let shown = show(&runtime);
    assert!(listed(&shown), "{shown}");
    assert!(
        shown.contains("auth.json")
            && shown
                .contains("no signed call is made with any credentials until it is fixed or reset"),
        "{shown}"
    );
    // `state reset --auth` forgets the gate's records only: with a destination or a series it
    // is refused (exit 2), and the checkpoints stay.
    for with in [["--destination", "influx-stdout"], ["--series", "hourly"]] {
        let mut args = vec!["reset", "--auth"];
        args.extend(with);
        let refused = state_cmd(&state, &args);
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("cannot be used with"),
            "{}",
            stderr(&refused)
        );
    }
    assert!(listed(&show(&runtime)));
}

/// `plan` plans with the checkpoints of the destination that a run with the same `--format`
/// and `--output` writes to (the packaged timer runs `--format otlp`), or of `--destination`,
/// and names the destination it read.
#[test]
fn plan_reads_and_names_the_destination_of_the_run_it_plans_for() {
    let sim = start(sim_config());
    let rx = HttpReceiver::start();
    let spec = spec(&sim, &rx);
    let state = tempdir().join("state");
    let out = run_at(&spec, &state, ms(NOW), &["--format", "otlp"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(otlp_buckets(&rx), 3);
    let plan = |args: &[&str]| {
        let out = bin()
            .args(["plan", "--now", NOW, "--state-dir"])
            .arg(&state)
            .arg("--spec")
            .arg(&spec)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let pending = |n: usize| format!("/hourly/preset/real_time/all: {n} settled buckets pending");
    let otlp = destinations(&state)
        .into_iter()
        .find(|d| d.starts_with("otlp-"))
        .unwrap();
    for args in [&["--format", "otlp"][..], &["--destination", &otlp]] {
        let text = plan(args);
        assert!(text.contains(&pending(0)), "{args:?}: {text}");
        assert!(
            text.contains(&format!(
                "Period checkpoints: destination {otlp} (otlp {}",
                rx.url
            )),
            "{args:?}: {text}"
        );
    }
    // The spec's own output (line protocol to stdout) has had nothing yet.
    let text = plan(&[]);
    assert!(text.contains(&pending(3)), "{text}");
    assert!(
        text.contains("Period checkpoints: destination influx-stdout"),
        "{text}"
    );
}
