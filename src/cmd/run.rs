//! `maas-usage run`: a spec kept in git drives one collection (or, under `--execd`, one per
//! line on stdin) that feeds Telegraf.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{
    connect_options, execute, log_failures, open, parse_now, resolve_zone, run_stats, write_stdout,
    CALL_TIMEOUT,
};
use crate::cli::{CloudArgs, RunArgs};
use crate::cloud::client::CallCounts;
use crate::cloud::credentials::Credentials;
use crate::cloud::Connection;
use crate::emit::influx::InfluxOptions;
use crate::emit::otlp::{OtlpOptions, ResourceEnv};
use crate::emit::prometheus::PromOptions;
use crate::emit::{self, Report};
use crate::error::Error;
use crate::log::{self, Style};
use crate::otlp::{self, ExportConfig};
use crate::period;
use crate::plan;
use crate::range::RangeExpr;
use crate::spec::{self, Format, Spec};
use crate::state::StateDir;
use crate::zone::Zone;

/// Set by a stop signal: the collection ends early and writes what it has.
pub static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

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
            Some(p) => write_atomically(p, text.as_bytes()),
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
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| Error::Runtime(format!("cannot append to {}: {e}", p.display()))),
        }
    }
}

/// Writes a temporary file beside `path` and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::Runtime(format!("cannot write {}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
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
        if signal_hook::flag::register(sig, STOP.clone()).is_err() {
            log::debug("cannot install the SIGTERM handler");
        }
    }
    let _ = std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(|| {
            while !stopping() {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(900));
            let _out = std::io::stdout().lock();
            log::warn("stopped by a signal before the run could finish writing; exiting");
            std::process::exit(0);
        });
}

pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
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
    if spec
        .queries
        .iter()
        .any(|q| matches!(q.range, RangeExpr::Period(_)))
    {
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
    };
    if !o.execd {
        let code = collect_once(&ctx, started)?;
        return Ok(if stopping() { 0 } else { code });
    }
    // Telegraf writes a line at every interval; end of input means it is done with us. Lines are
    // read on their own thread so a stop signal is noticed while waiting for the next one.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let _ = std::thread::Builder::new()
        .name("execd-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if line.is_err() || tx.send(()).is_err() {
                    break;
                }
            }
        });
    let mut first = Some(started);
    while !stopping() {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let started = first.take().unwrap_or_else(Instant::now);
        if let Err(e) = collect_once(&ctx, started) {
            if matches!(e, Error::Runtime(_)) && ctx.sink.path.is_none() {
                // stdout is gone: nobody is listening any more.
                return Err(e);
            }
            log::error(&e.to_string());
        }
    }
    Ok(0)
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

/// One collection: plan at now, call, write, and tell stderr what failed (most useful first).
fn collect_once(ctx: &Context, started: Instant) -> Result<i32, Error> {
    let baseline = *ctx.calls_before.lock().unwrap_or_else(|p| p.into_inner());
    let now = ctx.fixed_now.unwrap_or_else(Utc::now);
    let checkpoints = ctx
        .state
        .as_ref()
        .map(StateDir::checkpoints)
        .unwrap_or_default();
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
    let plan = plan::build_with(&ctx.spec, now, &ctx.zone, &checkpoints, affordable)?;
    let mut collected = execute(&plan, &ctx.conn, &ctx.spec.limits, deadline, &STOP);
    let advance = period::settle(&plan, &mut collected);
    let collected = &collected;
    if collected.series.is_empty() {
        if let Some(first) = collected.failures.first() {
            log::error(&format!(
                "no series collected (0 of {}): {}: {}",
                plan.series.len(),
                first.key,
                first.error
            ));
        }
    }
    log_failures(collected);
    if collected.cut_short {
        log::warn(&format!(
            "the run reached limits.timeout ({} s) with calls outstanding; raise it (and the agent's timeout) or lower the number of series",
            ctx.spec.limits.timeout.as_secs()
        ));
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
            state.advance_checkpoints(&advance);
        }
    }
    // Nothing pending in period mode is not a failure; nothing collected out of a plan is.
    Ok(
        if collected.series.is_empty() && !collected.failures.is_empty() {
            1
        } else {
            0
        },
    )
}
