//! `maas-usage run`: a spec kept in git drives one collection (or, under `--execd`, one per
//! line on stdin) that feeds Telegraf.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{
    connect_options, log_failures, open, parse_now, resolve_zone, run_stats, write_stdout,
    CALL_TIMEOUT,
};
use crate::cli::{CloudArgs, RunArgs};
use crate::cloud::client::{ApiError, CallCounts};
use crate::cloud::credentials::{Credentials, FileWatch};
use crate::cloud::Connection;
use crate::collect::{self, Collected};
use crate::emit::influx::InfluxOptions;
use crate::emit::otlp::{OtlpOptions, ResourceEnv};
use crate::emit::prometheus::PromOptions;
use crate::emit::{self, Report};
use crate::error::Error;
use crate::files::{self, Access, Durability};
use crate::log::{self, Style};
use crate::otlp::{self, ExportConfig};
use crate::period;
use crate::plan;
use crate::range::RangeExpr;
use crate::spec::{self, Format, Spec};
use crate::state::StateDir;
use crate::zone::Zone;

/// The stop signal received (its number), 0 while none: the collection ends early and writes
/// what it has.
pub static STOP: LazyLock<Arc<AtomicUsize>> = LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

/// Where the metrics go: stdout, or a file replaced atomically so a reader never sees half.
pub struct Sink {
    path: Option<PathBuf>,
}

impl Sink {
    pub fn new(path: Option<PathBuf>) -> Self {
        Sink {
            path: path.filter(|p| p.as_os_str() != "-"),
        }
    }

    pub fn write(&self, text: &str) -> Result<(), Error> {
        match &self.path {
            None => write_stdout(text),
            Some(p) => {
                files::write_atomically(p, text.as_bytes(), Durability::Synced, Access::Shared)
                    .map_err(|e| Error::Runtime(format!("cannot write {}: {e}", p.display())))
            }
        }
    }

    /// Appends whole lines (files read line by line, like the collector's otlpjsonfile).
    pub fn append(&self, text: &str) -> Result<(), Error> {
        use std::io::Write;
        match &self.path {
            None => write_stdout(text),
            Some(p) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|mut f| {
                    f.write_all(text.as_bytes())?;
                    f.sync_data()
                })
                .map_err(|e| Error::Runtime(format!("cannot append to {}: {e}", p.display()))),
        }
    }
}

pub fn load_spec(paths: &[PathBuf]) -> Result<Spec, Error> {
    spec::load::load(paths).map_err(|e| Error::Spec(e.to_string()))
}

/// Everything a collection needs that does not change between collections.
struct Context {
    spec: Spec,
    zone: Zone,
    conn: Arc<Connection>,
    format: Format,
    sink: Sink,
    fixed_now: Option<DateTime<Utc>>,
    /// Set for format otlp.
    export: Option<ExportConfig>,
    resource: ResourceEnv,
    /// Required by period mode (checkpoints).
    state: Option<StateDir>,
    /// Call counters at the end of the previous collection (execd reports each on its own).
    calls_before: std::sync::Mutex<CallCounts>,
    /// The credentials file, re-read before a collection when it changed (execd).
    credentials_file: Option<std::sync::Mutex<FileWatch>>,
}

pub fn run(a: RunArgs) -> Result<i32, Error> {
    log::set_style(Style::Telegraf);
    install_stop_handler();
    let spec = load_spec(&a.spec)?;
    let state = super::open_state(a.state_dir.as_deref());
    let opts = RunOptions {
        format: a.format,
        output: a.output,
        now: a.now,
        execd: a.execd,
        creds: None,
        state,
    };
    run_spec(spec, opts)
}

/// How to run a loaded spec, beyond the spec itself.
pub struct RunOptions {
    pub format: Option<Format>,
    pub output: Option<PathBuf>,
    pub now: Option<String>,
    pub execd: bool,
    /// Overrides the environment (the demo's simulator pair).
    pub creds: Option<Credentials>,
    pub state: Option<StateDir>,
}

/// SIGTERM is what Telegraf's exec timeout sends before SIGKILL (5 s later): the collection
/// stops, what was collected is written, and the process exits 0, which Telegraf counts as a
/// success. A watchdog makes sure the process is gone within a second even when the main
/// thread is stuck in a call (project discovery); it takes the stdout lock first, so a batch
/// being written is finished, never cut.
pub fn install_stop_handler() {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if signal_hook::flag::register_usize(sig, STOP.clone(), sig as usize).is_err() {
            log::debug("cannot install the SIGTERM handler");
        }
    }
    let _ = std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(|| {
            while stop_signal().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(900));
            let _out = std::io::stdout().lock();
            log::warn(&format!(
                "stopped by {} before the run could finish writing; exiting",
                stop_signal().unwrap_or("a signal")
            ));
            std::process::exit(0);
        });
}

/// The stop signal received, by name.
pub fn stop_signal() -> Option<&'static str> {
    match STOP.load(Ordering::Relaxed) {
        0 => None,
        n if n == signal_hook::consts::SIGINT as usize => Some("SIGINT"),
        _ => Some("SIGTERM"),
    }
}

fn has_period(spec: &Spec) -> bool {
    spec.queries
        .iter()
        .any(|q| matches!(q.range, RangeExpr::Period(_)))
}

/// Runs a loaded spec once, or once per stdin line under `--execd`.
pub fn run_spec(spec: Spec, o: RunOptions) -> Result<i32, Error> {
    let started = Instant::now();
    let fixed_now = o.now.as_deref().map(|n| parse_now(Some(n))).transpose()?;
    let zone = resolve_zone(spec.timezone.as_deref())?;
    // Plan once before connecting: a range that cannot be resolved is the user's error (exit 2)
    // and must not cost a call.
    plan::build(&spec, fixed_now.unwrap_or_else(Utc::now), &zone)?;
    let format = o.format.unwrap_or(spec.output.format);
    let export = match format {
        Format::Otlp => Some(otlp::resolve(&spec.output.otlp, &super::env).map_err(Error::Usage)?),
        _ => None,
    };
    if has_period(&spec) {
        if o.state.is_none() {
            return Err(Error::Usage(
                "period mode keeps its checkpoints in the state directory, and there is none: set --state-dir (or HOME)".into(),
            ));
        }
        if format == Format::Prometheus {
            return Err(Error::Usage(
                "period mode emits timestamped buckets, which the Prometheus textfile cannot carry; use influx or otlp".into(),
            ));
        }
    }
    let opts = connect_options(&spec.cloud, &CloudArgs::default(), CALL_TIMEOUT);
    // Under execd only the environment and the file can change; only the file can be re-read.
    let credentials_file = match (&o.creds, o.execd, &opts.credentials_file) {
        (None, true, Some(path)) => Some(std::sync::Mutex::new(FileWatch::new(path))),
        _ => None,
    };
    let conn = Arc::new(open(
        &opts,
        &spec.limits,
        started + spec.limits.timeout,
        o.creds,
        o.state.as_ref(),
    )?);
    let ctx = Context {
        export,
        format,
        spec,
        zone,
        conn,
        sink: Sink::new(o.output),
        fixed_now,
        resource: ResourceEnv::from_env(&super::env),
        state: o.state,
        calls_before: std::sync::Mutex::new(CallCounts::default()),
        credentials_file,
    };
    if !o.execd {
        let code = collect_once(&ctx, started)?;
        return Ok(if stop_signal().is_some() { 0 } else { code });
    }
    // Telegraf writes a line at every interval; end of input means it is done with us. Lines are
    // read on their own thread so a stop signal is noticed while waiting for the next one.
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let _ = std::thread::Builder::new()
        .name("execd-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                // Each batch's time (its deadline, its duration_ms) starts when its line
                // arrives, not when the process started or the previous batch ended.
                if line.is_err() || tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
    while stop_signal().is_none() {
        let arrived = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(t) => t,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        ctx.refresh_credentials();
        if let Err(e) = collect_once(&ctx, arrived) {
            if matches!(e, Error::StdoutClosed) {
                // Nobody is listening any more.
                return Err(e);
            }
            log::error(&e.to_string());
        }
    }
    Ok(0)
}

impl Context {
    /// Re-reads a rotated credentials file (execd): the next calls sign with the new keys,
    /// which are tried at once even if the old ones were rejected.
    fn refresh_credentials(&self) {
        let Some(watch) = &self.credentials_file else {
            return;
        };
        let mut watch = watch.lock().unwrap_or_else(|p| p.into_inner());
        match watch.reload_if_changed(&super::env) {
            Ok(Some(creds)) => {
                log::info(&format!("re-read {} after it changed", creds.source));
                self.conn.client.set_credentials(creds);
            }
            Ok(None) => {}
            Err(e) => log::error(&format!(
                "{e}; the previous credentials stay in use until the file is fixed"
            )),
        }
    }
}

/// Writes or pushes the report in the run's format.
fn deliver(ctx: &Context, report: &Report<'_>, deadline: Instant) -> Result<(), Error> {
    let out = &ctx.spec.output;
    let otlp_opts = || OtlpOptions {
        tags: &out.tags,
        resource: &ctx.resource,
    };
    match ctx.format {
        Format::Influx => ctx.sink.write(&emit::influx::render(
            report,
            &InfluxOptions {
                measurement: &out.measurement,
                tags: &out.tags,
            },
        )),
        Format::Prometheus => ctx.sink.write(&emit::prometheus::render(
            report,
            &PromOptions {
                measurement: &out.measurement,
                tags: &out.tags,
            },
        )),
        Format::Table => ctx.sink.write(&emit::table::render(report, false)),
        Format::Json => ctx.sink.write(&emit::json::render(report)),
        Format::OtlpJson => ctx
            .sink
            .append(&emit::otlp::to_json_line(&emit::otlp::build(
                report,
                &otlp_opts(),
            ))),
        Format::Otlp => {
            let Some(cfg) = &ctx.export else {
                return Err(Error::Runtime(
                    "internal: OTLP export not configured".into(),
                ));
            };
            let req = emit::otlp::build(report, &otlp_opts());
            otlp::export(cfg, &req, deadline)
                .map(|_| ())
                .map_err(|e| Error::Runtime(e.to_string()))
        }
    }
}

/// The period-mode lock of a collection: taken before the checkpoints are read, released after
/// they are committed. `None` when there is nothing to lock or it could not be had (then the
/// period series sit this collection out, and another run emits their buckets).
fn period_lock(ctx: &Context, started: Instant) -> (Option<std::fs::File>, bool) {
    let Some(state) = ctx.state.as_ref().filter(|_| has_period(&ctx.spec)) else {
        return (None, true);
    };
    // Half the run at most: the other series still need their time.
    let wait_until = started + ctx.spec.limits.timeout / 2;
    match state.period_lock(wait_until) {
        Ok(Some(lock)) => (Some(lock), true),
        Ok(None) => {
            log::warn(&format!(
                "another run holds the period-mode lock of {} (a slow or overlapping run): the period series emit nothing this time, and their buckets follow in a later run",
                state.path().display()
            ));
            (None, false)
        }
        Err(e) => {
            log::warn(&format!(
                "cannot take the period-mode lock in {} ({e}): the period series emit nothing this time",
                state.path().display()
            ));
            (None, false)
        }
    }
}

/// The first stderr line when nothing was collected: the most useful one.
fn log_nothing_collected(planned: usize, collected: &Collected) {
    let Some(first) = collected.failures.first() else {
        return;
    };
    match &first.error {
        // Said once, as it is: it is about the credentials, not the series.
        e @ ApiError::AuthBlocked(_) => log::error(&e.to_string()),
        e => log::error(&format!(
            "no series collected (0 of {planned}): {}: {e}",
            first.key
        )),
    }
}

/// One collection: plan at now, call, write, and tell stderr what failed (most useful first).
fn collect_once(ctx: &Context, started: Instant) -> Result<i32, Error> {
    let baseline = *ctx.calls_before.lock().unwrap_or_else(|p| p.into_inner());
    let now = ctx.fixed_now.unwrap_or_else(Utc::now);
    let (lock, period_ok) = period_lock(ctx, started);
    let checkpoints = match (&ctx.state, &lock) {
        (Some(state), Some(_)) => state.checkpoints(),
        _ => Default::default(),
    };
    // A push needs time after the collection: it gets the last quarter of the run.
    let timeout = ctx.spec.limits.timeout;
    let deadline = started
        + if ctx.format == Format::Otlp {
            timeout * 3 / 4
        } else {
            timeout
        };
    let affordable = ctx
        .conn
        .client
        .available_calls(deadline.saturating_duration_since(Instant::now()));
    let spec_now;
    let spec = if period_ok {
        &ctx.spec
    } else {
        let mut s = ctx.spec.clone();
        s.queries
            .retain(|q| !matches!(q.range, RangeExpr::Period(_)));
        spec_now = s;
        &spec_now
    };
    let plan = plan::build_with(spec, now, &ctx.zone, &checkpoints, affordable)?;
    let mut collected = collect::collect(
        &plan,
        ctx.conn.clone(),
        ctx.spec.limits.concurrency,
        deadline,
        &stop_signal,
    );
    let advance = period::settle(&plan, &mut collected);
    let collected = &collected;
    if collected.series.is_empty() {
        log_nothing_collected(plan.series.len(), collected);
    }
    log_failures(collected);
    match (collected.cut_short, collected.stopped_by) {
        (true, Some(signal)) => log::warn(&format!(
            "stopped by {signal} with calls outstanding; what was collected is written"
        )),
        (true, None) => log::warn(&format!(
            "the run reached limits.timeout ({} s) with calls outstanding; raise it (and the agent's timeout) or lower the number of series",
            ctx.spec.limits.timeout.as_secs()
        )),
        _ => {}
    }
    for w in &plan.warnings {
        log::warn(w);
    }
    let report = Report {
        collected,
        stats: run_stats(collected, &ctx.conn, baseline, started),
        region: &ctx.conn.region,
        project_id: &ctx.conn.project_id,
        zone: &ctx.zone,
        now: plan.now,
    };
    *ctx.calls_before.lock().unwrap_or_else(|p| p.into_inner()) =
        ctx.conn.client.counters.snapshot();
    deliver(ctx, &report, started + ctx.spec.limits.timeout)?;
    // Checkpoints move only after the output was written or accepted: a run that fails to
    // deliver records nothing, and the next run sends the same buckets again.
    if !advance.is_empty() {
        if super::env("MAAS_USAGE_TEST_CRASH_BEFORE_CHECKPOINT").is_some() {
            // Test hook: die between delivery and checkpoint, as a SIGKILL would.
            std::process::abort();
        }
        if let Some(state) = &ctx.state {
            if let Err(e) = state.advance_checkpoints(&advance, plan.now.timestamp_millis()) {
                // Delivered but not recorded: the next run sends these buckets again.
                log::error(&format!(
                    "the output was delivered but the checkpoints could not be recorded in {} ({e}); the next run sends the same buckets again",
                    state.path().display()
                ));
            }
        }
    }
    drop(lock);
    // Nothing pending in period mode is not a failure; nothing collected out of a plan is, and
    // so is a period lock another run kept when nothing else was delivered.
    let nothing = collected.series.is_empty() && (!collected.failures.is_empty() || !period_ok);
    // Failures on this side (an untrusted certificate, credentials that cannot be sent) are
    // the configuration's: exit 2 like any other input error.
    let local = !collected.failures.is_empty()
        && collected
            .failures
            .iter()
            .all(|f| matches!(f.error, ApiError::Local(_)));
    Ok(match (nothing, local) {
        (true, true) => 2,
        (true, false) => 1,
        _ => 0,
    })
}
