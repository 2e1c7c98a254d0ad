//! Faults from the simulator's switches. For each: no panic, the run ends by limits.timeout (give
//! or take what starting a process costs on a busy machine), the exit code follows the `run`
//! contract, stdout holds only whole lines, and the first stderr line says what to do next.

use crate::common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use maas_usage::sim::{Scripted, Simulator};

const TIMEOUT_S: u64 = 3;

/// What starting and ending the process may add to a run's own timeout on a loaded 2-core
/// machine. Not a measure of the deadline: a run that ignored it would last the 6 s latency
/// spike, the 60 s Retry-After or the minutes of a one-byte-a-second answer, and its exit code
/// and stderr (which the tests check) would not say it stopped at the deadline.
const START_AND_EXIT: Duration = Duration::from_secs(4);

/// Telegraf sends SIGKILL 5 s after SIGTERM: a run must be gone well before that.
const SIGKILL_AFTER_SIGTERM: Duration = Duration::from_secs(5);

/// Two series (two calls), pinned project id, a 3 s run.
fn small_spec(sim: &Simulator, concurrency: u32) -> std::path::PathBuf {
    two_series(sim, concurrency, TIMEOUT_S)
}

/// Two series (two calls), pinned project id, a `timeout_s` run.
fn two_series(sim: &Simulator, concurrency: u32, timeout_s: u64) -> std::path::PathBuf {
    fixture_for(
        sim,
        "faults/two-series.yaml",
        &[
            ("timeout", &format!("{timeout_s}s")),
            ("concurrency", &concurrency.to_string()),
        ],
    )
}

struct Run {
    out: Output,
    took: Duration,
}

/// A run of a spec whose timeout is TIMEOUT_S.
fn timed(path: &std::path::Path) -> Run {
    timed_within(path, TIMEOUT_S)
}

fn timed_within(path: &std::path::Path, timeout_s: u64) -> Run {
    let started = Instant::now();
    let out = run(path, &[]);
    let r = Run {
        took: started.elapsed(),
        out,
    };
    assert!(
        r.took < Duration::from_secs(timeout_s) + START_AND_EXIT,
        "the run took {:?} with a {timeout_s} s timeout",
        r.took
    );
    assert!(!stderr(&r.out).contains("panicked"), "{}", stderr(&r.out));
    let text = stdout(&r.out);
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "only whole lines: {text:?}"
    );
    parse_lp(&text);
    r
}

fn first_err(r: &Run) -> String {
    stderr(&r.out).lines().next().unwrap_or("").to_string()
}

fn series_lines(r: &Run) -> usize {
    parse_lp(&stdout(&r.out))
        .iter()
        .filter(|l| l.measurement == "maas_usage")
        .count()
}

#[test]
fn latency_spike_ends_the_run_at_its_timeout() {
    let mut cfg = sim_config();
    cfg.faults.latency = Duration::from_secs(6);
    let sim = start(cfg);
    let r = timed(&small_spec(&sim, 2));
    assert_eq!(r.out.status.code(), Some(1));
    let first = first_err(&r);
    assert!(
        first.starts_with("E! no series collected (0 of 2)"),
        "{first}"
    );
    assert!(first.contains("raise limits.timeout"), "{first}");
    assert!(
        stderr(&r.out).contains("W! the run reached limits.timeout"),
        "{}",
        stderr(&r.out)
    );
}

#[test]
fn a_burst_of_5xx_is_absorbed_by_retries() {
    let sim = sim();
    for _ in 0..3 {
        sim.push_script(Scripted::Status {
            status: 502,
            body: "{}".into(),
            retry_after: None,
        });
    }
    let r = timed(&small_spec(&sim, 2));
    assert_eq!(r.out.status.code(), Some(0), "{}", stderr(&r.out));
    assert_eq!(series_lines(&r), 2);
    let c = parse_lp(&stdout(&r.out)).pop().unwrap();
    assert_eq!(c.int("api_retries"), Some(3));
}

#[test]
fn a_5xx_storm_fails_inside_the_timeout() {
    let mut cfg = sim_config();
    cfg.faults.fail_ratio = 1.0;
    let sim = start(cfg);
    let r = timed(&small_spec(&sim, 2));
    assert_eq!(r.out.status.code(), Some(1));
    assert!(first_err(&r).contains("HTTP 503"), "{}", first_err(&r));
}

#[test]
fn connection_refused_says_where_to_look() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = fixture_at(
        &format!("http://127.0.0.1:{port}"),
        "faults/nothing-listens.yaml",
        &[("timeout", &format!("{TIMEOUT_S}s"))],
    );
    let r = timed(&path);
    assert_eq!(r.out.status.code(), Some(1));
    let first = first_err(&r);
    assert!(
        first.contains("cannot reach http://127.0.0.1:") && first.contains("check the endpoint"),
        "{first}"
    );
}

#[test]
fn reset_and_cut_bodies_are_retried() {
    let sim = sim();
    sim.push_script(Scripted::Reset);
    sim.push_script(Scripted::CutBody);
    let r = timed(&small_spec(&sim, 1));
    assert_eq!(r.out.status.code(), Some(0), "{}", stderr(&r.out));
    assert_eq!(series_lines(&r), 2);
    assert!(
        stderr(&r.out).is_empty(),
        "recovered silently: {}",
        stderr(&r.out)
    );
}

#[test]
fn non_json_and_huge_answers_fail_their_series_only() {
    let sim = sim();
    sim.push_script(Scripted::NotJson);
    sim.push_script(Scripted::Huge);
    let r = timed(&small_spec(&sim, 1));
    assert_eq!(
        r.out.status.code(),
        Some(1),
        "both calls got a bad answer: {}",
        stderr(&r.out)
    );
    let err = stderr(&r.out);
    assert!(err.contains("not JSON"), "{err}");
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    assert!(err.contains("report the request id"), "{err}");

    let sim2 = common::sim();
    sim2.push_script(Scripted::NotJson);
    let r = timed(&small_spec(&sim2, 1));
    assert_eq!(r.out.status.code(), Some(0), "one series left: exit 0");
    assert_eq!(series_lines(&r), 1);
}

#[test]
fn one_byte_a_second_is_cut_by_the_timeout() {
    let sim = sim();
    // The first call proves the credentials (calls wait for it); the second one is slow.
    sim.push_script(Scripted::Body(
        r#"{"total_request_count":1,"total_error_count":0,"total_token":1,"total_prompt_token":1,"total_completion_token":0}"#.into(),
    ));
    sim.push_script(Scripted::Slow);
    let r = timed(&small_spec(&sim, 2));
    assert_eq!(
        r.out.status.code(),
        Some(0),
        "the other series arrives: {}",
        stderr(&r.out)
    );
    assert_eq!(series_lines(&r), 1);
    assert!(
        first_err(&r).starts_with("E! query=a") || first_err(&r).starts_with("E! query=b"),
        "{}",
        first_err(&r)
    );
}

#[test]
fn throttling_with_and_without_retry_after() {
    let sim = sim();
    sim.push_script(Scripted::Status {
        status: 429,
        body: r#"{"error_code":"APIGW.0308","error_msg":"throttled"}"#.into(),
        retry_after: Some("1".into()),
    });
    sim.push_script(Scripted::Status {
        status: 429,
        body: r#"{"error_code":"APIGW.0308","error_msg":"throttled"}"#.into(),
        retry_after: None,
    });
    let path = fixture_for(&sim, "faults/throttled.yaml", &[]);
    // Retry-After (1 s) is honoured; without it, a backoff of a fraction of a second.
    let started = Instant::now();
    let out = authed()
        .arg("run")
        .arg("--spec")
        .arg(&path)
        .args(["--now", NOW])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        took >= Duration::from_secs(1),
        "Retry-After (1 s) is honoured: {took:?}"
    );
    let c = parse_lp(&stdout(&out)).pop().unwrap();
    assert_eq!(c.int("throttled"), Some(2));
    assert_eq!(c.int("api_retries"), Some(2));
    assert_eq!(c.int("series_ok"), Some(2));
}

/// A server that throttles over a window of its own (here 1 call per 3 s) and sends no
/// `Retry-After`: the client backs off (capped exponential, jittered) and tries again within the
/// run's deadline, instead of waiting for its own 60 s budget window, which no run has.
#[test]
fn a_429_without_retry_after_backs_off_and_retries_within_the_deadline() {
    let mut cfg = sim_config();
    cfg.faults.rate_limit = Some(1);
    cfg.faults.rate_window = Duration::from_secs(3);
    let sim = start(cfg);
    let r = timed_within(&two_series(&sim, 2, 20), 20);
    let err = stderr(&r.out);
    assert_eq!(r.out.status.code(), Some(0), "{err}");
    assert!(!err.contains("E! ") && !err.contains("time limit"), "{err}");
    let c = parse_lp(&stdout(&r.out)).pop().unwrap();
    assert_eq!(c.int("series_ok"), Some(2), "{err}");
    assert!(c.int("throttled") >= Some(1), "{c:?}");
    assert_eq!(c.int("api_retries"), c.int("throttled"), "{c:?}");
}

/// Throttled to the end: the run ends by its deadline, says it was the time limit and what the
/// server last said, and its backoff kept the attempts few.
#[test]
fn throttled_until_the_deadline_backs_off_and_says_it_was_the_time_limit() {
    let mut cfg = sim_config();
    cfg.faults.rate_limit = Some(0);
    let sim = start(cfg);
    let r = timed(&small_spec(&sim, 2));
    assert_eq!(r.out.status.code(), Some(1), "{}", stderr(&r.out));
    let first = first_err(&r);
    assert!(
        first.contains("time limit") && first.contains("HTTP 429"),
        "{first}"
    );
    // 125 ms doubling (with jitter, at least half of it): at most 5 attempts per series in 3 s.
    let calls = stats_calls(&sim).len();
    assert!((4..=10).contains(&calls), "{calls} calls");
}

#[test]
fn retry_after_beyond_the_deadline_fails_fast() {
    let sim = sim();
    for _ in 0..2 {
        sim.push_script(Scripted::Status {
            status: 429,
            body: "{}".into(),
            retry_after: Some("60".into()),
        });
    }
    // A 20 s run: one that waited for its deadline would take 20 s, far from any delay a busy
    // machine adds to one that fails at once.
    let r = timed_within(&two_series(&sim, 2, 20), 20);
    assert!(
        r.took < Duration::from_secs(10),
        "no point waiting 60 s in a 20 s run: {:?}",
        r.took
    );
    assert_eq!(r.out.status.code(), Some(1));
    let first = first_err(&r);
    assert!(
        first.contains("HTTP 429") && first.contains("200 calls a minute"),
        "{first}"
    );
    // It was not the time limit: the server asked for more time than the run had.
    assert!(
        !first.contains("time limit was reached") && first.contains("Retry-After: 60 s"),
        "{first}"
    );
}

#[test]
fn a_clock_20_minutes_off_says_check_the_clock() {
    let mut cfg = sim_config();
    cfg.faults.clock_skew = chrono::Duration::minutes(20);
    let sim = start(cfg);
    let r = timed(&small_spec(&sim, 2));
    assert_eq!(r.out.status.code(), Some(1));
    let first = first_err(&r);
    assert!(
        first.contains("APIGW.0303") && first.contains("check the system clock"),
        "{first}"
    );
    assert_eq!(
        stats_calls(&sim).len(),
        1,
        "401 is never retried, and no other call goes out with the same credentials"
    );
    assert!(
        stderr(&r.out)
            .lines()
            .filter(|l| l.starts_with("E! query="))
            .all(|l| l.contains("check the system clock")),
        "every series says what to check: {}",
        stderr(&r.out)
    );
}

#[test]
fn execd_batches_stay_whole_under_faults() {
    let mut cfg = sim_config();
    cfg.faults.latency = Duration::from_millis(200);
    let sim = start(cfg);
    sim.push_script(Scripted::Status {
        status: 503,
        body: "{}".into(),
        retry_after: None,
    });
    sim.push_script(Scripted::NotJson);
    let mut execd = Execd::start(&small_spec(&sim, 2));
    for _ in 0..3 {
        let lines = execd.collect();
        let c = lines.last().unwrap();
        assert_eq!(
            c.int("series_ok").unwrap() + c.int("series_failed").unwrap(),
            2
        );
    }
    assert_eq!(execd.finish(), Some(0));
}

fn sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn sigterm_writes_what_was_collected_and_exits_0_without_waiting_for_the_calls() {
    let mut cfg = sim_config();
    cfg.faults.latency = Duration::from_millis(1200);
    let sim = start(cfg);
    let path = fixture_for(&sim, "faults/sigterm-mid-run.yaml", &[]);
    let child = authed()
        .arg("run")
        .arg("--spec")
        .arg(&path)
        .args(["--now", NOW])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Act once the first call is answered and the second is in flight, however slow the start
    // (one call at a time: a second arrival means the first was answered; a request is logged
    // before its answer goes).
    wait_until("the first call answered and the second in flight", || {
        !sim.requests().is_empty() && sim.arrivals() >= 2
    });
    let sent = Instant::now();
    sigterm(child.id());
    let out = child.wait_with_output().unwrap();
    // Well before SIGKILL and the run's 20 s timeout. That the outstanding calls were not waited
    // for shows in the output: one series, the other two stopped by the signal.
    assert!(
        sent.elapsed() < SIGKILL_AFTER_SIGTERM,
        "exited {:?} after SIGTERM",
        sent.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = parse_lp(&stdout(&out));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.measurement == "maas_usage")
            .count(),
        1,
        "the first series made it"
    );
    let c = lines.last().unwrap();
    assert_eq!(c.measurement, "maas_usage_collector");
    assert_eq!(c.int("series_failed"), Some(2));
    // A signal is not a timeout: the run and every cut series say which signal it was.
    let err = stderr(&out);
    assert!(
        err.contains("W! stopped by SIGTERM with calls outstanding"),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("E! query=") && l.contains("stopped by SIGTERM"))
            .count(),
        2,
        "{err}"
    );
    assert!(!err.contains("limits.timeout"), "{err}");
}

#[test]
fn sigterm_while_stuck_in_discovery_still_exits_at_once() {
    let mut cfg = sim_config();
    cfg.faults.latency = Duration::from_secs(10);
    let sim = start(cfg);
    let path = fixture_for(&sim, "faults/sigterm-in-discovery.yaml", &[]);
    let child = authed()
        .arg("run")
        .arg("--spec")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Act once the discovery call has arrived (the handler is installed by then).
    wait_until("the discovery call to arrive", || sim.arrivals() >= 1);
    let sent = Instant::now();
    sigterm(child.id());
    let out = child.wait_with_output().unwrap();
    // The discovery answer takes 10 s: a run that waited for it would still be there at SIGKILL.
    assert!(
        sent.elapsed() < SIGKILL_AFTER_SIGTERM,
        "exited {:?} after SIGTERM",
        sent.elapsed()
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).is_empty(),
        "nothing was collected, nothing half-written"
    );
}

/// Whether process `pid` has `file` open (Linux: its /proc/<pid>/fd links).
fn has_open(pid: u32, file: &std::path::Path) -> bool {
    let Ok(file) = std::fs::canonicalize(file) else {
        return false;
    };
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == file))
        })
        .unwrap_or(false)
}

#[test]
fn sigterm_while_waiting_for_the_period_lock_gives_up_the_wait_and_writes_the_rest() {
    let sim = sim();
    let path = fixture_for(&sim, "faults/sigterm-in-lock-wait.yaml", &[]);
    let state = tempdir().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Another run holds the destination's period lock (flock is per open file, so this process
    // conflicts).
    let lock_path = state.join("period-influx-stdout.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    let child = authed()
        .args(["run", "--now", NOW, "--spec"])
        .arg(&path)
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Act once the run waits for the lock (it has the file open), however slow the start.
    wait_until("the run to open the lock", || {
        has_open(child.id(), &lock_path)
    });
    let sent = Instant::now();
    sigterm(child.id());
    let out = child.wait_with_output().unwrap();
    drop(lock);
    let err = stderr(&out);
    assert!(
        sent.elapsed() < SIGKILL_AFTER_SIGTERM,
        "exited {:?} after SIGTERM",
        sent.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("before the run could finish writing"),
        "{err}"
    );
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    let lines = parse_lp(&stdout(&out));
    assert_eq!(
        lines.last().map(|l| l.measurement.as_str()),
        Some("maas_usage_collector"),
        "the run wrote what it had: {err}"
    );
    assert!(
        !lines.iter().any(|l| l.tag("query") == Some("hourly")),
        "no period bucket without the lock"
    );
}

#[test]
fn sigterm_during_an_otlp_export_lets_the_export_and_its_checkpoint_finish() {
    use common::otlp::{Answer, HttpReceiver};
    let sim = sim();
    let collector = HttpReceiver::start();
    // The data export is received, then answered 3 s later: SIGTERM comes in between.
    collector.push(Answer::Slow(Duration::from_secs(3)));
    let path = fixture_otlp(&sim, &collector.url, "faults/sigterm-in-export.yaml");
    let state = tempdir().join("state");
    let start = |args: &[&str]| {
        let mut c = authed();
        c.args(["run", "--now", NOW, "--spec"])
            .arg(&path)
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let child = start(&[]).spawn().unwrap();
    wait_until("the export to arrive", || !collector.requests().is_empty());
    assert_eq!(collector.requests().len(), 1, "the export never arrived");
    sigterm(child.id());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("before the run could finish writing"),
        "{err}"
    );
    // The collector has the buckets pushed before the signal, each round's checkpoint moved
    // with it: the next run sends the rest, and none again. Each of the three buckets is had
    // as often as the others: once per series.
    let next = start(&[]).output().unwrap();
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    let mut per_end: std::collections::BTreeMap<i64, usize> = Default::default();
    for (end, _) in collector.points("maas.usage.period.total_tokens") {
        *per_end.entry(end).or_default() += 1;
    }
    assert_eq!(per_end.len(), 3, "{per_end:?}: {}", stderr(&next));
    let counts: std::collections::BTreeSet<usize> = per_end.values().copied().collect();
    assert_eq!(
        counts.len(),
        1,
        "buckets sent twice: {per_end:?}: {}",
        stderr(&next)
    );
}

#[test]
fn execd_batches_own_their_deadline_from_their_line() {
    // Telegraf's first newline comes at its first tick, up to an interval after the start: the
    // batch's time limit (3 s here) counts from that line, not from the process start.
    let sim = sim();
    let path = small_spec(&sim, 2);
    let mut execd = Execd::start(&path);
    // sleep allowed: the idle time before the first line is what this test is about, and it
    // must be longer than the run's 3 s timeout (no clock of the binary can be injected for a
    // deadline). The assertion is on the batch's own duration, not on this wait.
    std::thread::sleep(Duration::from_millis(4500));
    let batch = execd.collect();
    let c = batch.last().unwrap();
    assert_eq!(c.int("series_ok"), Some(2), "{batch:?}");
    assert_eq!(c.int("series_failed"), Some(0));
    assert!(
        c.int("duration_ms").unwrap() < 3000,
        "the idle wait is not the batch's duration: {c:?}"
    );
    assert_eq!(execd.finish(), Some(0));
}
