//! The commands: glue from parsed flags to the pipeline spec -> plan -> collect -> emit, and the
//! one place errors become exit codes.

pub mod demo;
pub mod packaging;
pub mod query;
pub mod run;
pub mod simulator;
pub mod spec_cmds;
pub mod state_cmd;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;

use crate::budget::{Budget, Limiter};
use crate::cli::{Cli, CloudArgs, Command};
use crate::cloud::client::CallCounts;
use crate::cloud::credentials::Credentials;
use crate::cloud::{self, ConnectOptions, Connection};
use crate::collect::{Collected, RunStats};
use crate::error::Error;
use crate::log;
use crate::spec::{self, CloudSpec, Limits};
use crate::state::{self, SharedBudget, StateDir};
use crate::zone::{self, OsZoneHints, Zone};

/// Runs the command line and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    log::set_verbose(cli.verbose);
    std::panic::set_hook(Box::new(|info| {
        log::error(&format!(
            "internal error ({info}); please report it with the command that caused it"
        ))
    }));
    let result = match cli.command {
        Command::Query(a) => query::query(a, None),
        Command::Run(a) => run::run(a),
        Command::Validate(a) => spec_cmds::validate(a),
        Command::Plan(a) => spec_cmds::plan(a),
        Command::Schema => spec_cmds::schema(),
        Command::State(a) => state_cmd::state(a),
        Command::Describe(a) => packaging::describe(a),
        Command::Completions(a) => packaging::completions(a),
        Command::Man => packaging::man(),
        Command::Demo(a) => demo::demo(a),
        Command::Simulator(a) => simulator::simulator(a),
    };
    match result {
        Ok(code) => code,
        // `maas-usage ... | head` is not worth a message outside Telegraf, but never a success
        // there: what was not written was not delivered.
        Err(Error::StdoutClosed) if log::style() == log::Style::Plain => {
            Error::StdoutClosed.exit_code()
        }
        Err(e) => {
            log::error(&e.to_string());
            e.exit_code()
        }
    }
}

pub fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

pub fn parse_now(now: Option<&str>) -> Result<DateTime<Utc>, Error> {
    let Some(s) = now else {
        return Ok(Utc::now());
    };
    let t = DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Error::Usage(format!(
                "--now `{s}` is not an RFC 3339 instant (e.g. 2026-05-21T10:00:00+08:00)"
            ))
        })?;
    // Points carry nanoseconds since 1970 in an i64: 1970 to 2262 is what they can say.
    if t.timestamp() < 0 || t.timestamp_nanos_opt().is_none() {
        return Err(Error::Usage(format!(
            "--now `{s}` is outside 1970-01-01 to 2262-04-11, which metric timestamps can carry"
        )));
    }
    Ok(t)
}

pub fn resolve_zone(explicit: Option<&str>) -> Result<Zone, Error> {
    let (zone, warnings) = zone::resolve(explicit, &OsZoneHints::read())?;
    for w in warnings {
        log::warn(&w);
    }
    Ok(zone)
}

/// Writes to stdout. A closed reader or a full disk is an error: nothing counts as delivered
/// that was not written.
pub fn write_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Error::StdoutClosed),
        Err(e) => Err(Error::Runtime(format!(
            "cannot write the output to stdout: {e}"
        ))),
    }
}

/// Flags over spec over defaults.
pub fn connect_options(
    cloud: &CloudSpec,
    flags: &CloudArgs,
    call_timeout: Duration,
) -> ConnectOptions {
    ConnectOptions {
        region: flags
            .region
            .clone()
            .or_else(|| cloud.region.clone())
            .unwrap_or_else(|| spec::DEFAULT_REGION.to_string()),
        project_id: flags
            .project_id
            .clone()
            .or_else(|| cloud.project_id.clone()),
        endpoint: flags.endpoint.clone().or_else(|| cloud.endpoint.clone()),
        iam_endpoint: flags
            .iam_endpoint
            .clone()
            .or_else(|| cloud.iam_endpoint.clone()),
        credentials_file: flags
            .credentials_file
            .clone()
            .or_else(|| cloud.credentials_file.clone()),
        ca_file: flags.ca_file.clone(),
        call_timeout,
    }
}

/// The longest a single HTTP exchange may take; the run's deadline shortens it further.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects (credentials, client, project id) within the run's budget and deadline.
/// `creds` overrides the environment and file (the demo uses the simulator's pair); `state`
/// shares the request budget and the project id with other processes.
pub fn open(
    opts: &ConnectOptions,
    limits: &Limits,
    deadline: Instant,
    creds: Option<Credentials>,
    state: Option<&StateDir>,
) -> Result<Connection, Error> {
    let creds = match creds {
        Some(c) => c,
        None => cloud::load_credentials(&env, opts.credentials_file.as_deref())?,
    };
    let budget: Arc<dyn Budget> = match state {
        Some(dir) => Arc::new(SharedBudget::new(
            dir.clone(),
            &state::ak_key(creds.ak.expose()),
            limits.requests_per_minute,
            rate_window(),
        )),
        None => Arc::new(Limiter::new(limits.requests_per_minute, rate_window())),
    };
    cloud::connect(opts, creds, budget, &env, deadline, state)
}

/// The state directory from the flag or the default location; `None` (with a note) when there
/// is none or it cannot be created, and the budget is then per process.
pub fn open_state(flag: Option<&std::path::Path>) -> Option<StateDir> {
    match flag
        .map(std::path::Path::to_path_buf)
        .or_else(|| state::default_dir(&env))
    {
        None => {
            log::debug("no state directory (neither --state-dir, XDG_STATE_HOME nor HOME): the request budget is per process");
            None
        }
        Some(p) => match StateDir::open(&p) {
            Ok(d) => Some(d),
            Err(e) => {
                log::warn(&format!(
                    "{e}; the request budget is per process this time, and credential rejections are remembered by this process only"
                ));
                None
            }
        },
    }
}

/// The request budget's window: the API's minute, with a small margin so that jitter between
/// our clock and the gateway's never lets N+1 calls land in its window. Tests shrink it with
/// `MAAS_USAGE_RATE_WINDOW_MS`, as they shrink the simulator's.
pub fn rate_window() -> Duration {
    let base = env("MAAS_USAGE_RATE_WINDOW_MS")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(60));
    // 2 % plus a quarter second: more than loopback or scheduling jitter between taking a slot
    // and the request reaching the gateway.
    base + base / 50 + Duration::from_millis(250)
}

/// The self-metrics of a collection: its series (as delivered) and the calls made since
/// `baseline` (the start of the process for the first collection, so IAM discovery counts; the
/// end of the previous one under `--execd`).
pub fn run_stats(
    collected: &Collected,
    conn: &Connection,
    baseline: CallCounts,
    started: Instant,
) -> RunStats {
    let calls = conn.client.counters.snapshot().since(baseline);
    RunStats {
        series_ok: collected.series.len() as u64,
        series_failed: collected.failures.len() as u64,
        api_calls: calls.calls,
        api_retries: calls.retries,
        throttled: calls.throttled,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

/// One stderr line per failed series: what failed and why, in the order the contract gives.
pub fn log_failures(collected: &Collected) {
    for f in &collected.failures {
        let mut line = format!(
            "query={} service_type={} infer_type={} key_group={}",
            f.key.query, f.key.service_type, f.key.infer_type, f.key.key_group
        );
        if let Some(s) = f.error.status() {
            line.push_str(&format!(" status={s}"));
        }
        if let Some(c) = f.error.code() {
            line.push_str(&format!(" code={c}"));
        }
        if let Some(r) = f.error.request_id() {
            line.push_str(&format!(" request_id={r}"));
        }
        line.push_str(&format!(": {}", f.error));
        log::error(&line);
    }
}
