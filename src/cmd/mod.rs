//! The commands: glue from parsed flags to the pipeline spec -> plan -> collect -> emit ->
//! deliver. Each command returns an [`error::Outcome`] or an [`error::Error`]; `main` turns it
//! into the exit code through [`error::exit_code`], the only place that picks one.

pub mod demo;
pub mod error;
pub mod hooks;
pub mod packaging;
pub mod query;
pub mod report;
pub mod run;
pub mod settings;
pub mod simulator;
pub mod spec_cmds;
pub mod spend_cmds;
pub mod state_cmd;
pub mod wiring;

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::collect::{Collection, SourceId, What};
use crate::log;
use error::{exit_code, Error, Outcome};

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // --help and --version are answers, not failures.
            return exit_code(&if e.use_stderr() {
                Err(Error::Flags)
            } else {
                Ok(Outcome::Done)
            });
        }
    };
    log::set_verbose(cli.verbose);
    std::panic::set_hook(Box::new(|info| {
        log::error!("internal error ({info}); please report it with the command that caused it")
    }));
    let result = error::guarded(|| dispatch(cli.command));
    if let Err(e) = &result {
        if e.worth_saying(log::style() == log::Style::Telegraf) {
            log::lines(log::Level::Error, e.lines().iter().map(String::as_str));
        }
    }
    exit_code(&result)
}

fn dispatch(command: Command) -> Result<Outcome, Error> {
    match command {
        Command::Query(a) => query::query(a),
        Command::Run(a) => run::run(a),
        Command::Serve(a) => run::serve(a),
        Command::Validate(a) => spec_cmds::validate(a),
        Command::Plan(a) => spec_cmds::plan(a),
        Command::Schema => spec_cmds::schema(),
        Command::State(a) => state_cmd::state(a),
        Command::Rules(a) => spend_cmds::rules(a),
        Command::Dashboard(a) => spend_cmds::dashboard(a),
        Command::Report(a) => report::report(a),
        Command::Describe(a) => packaging::describe(a),
        Command::Completions(a) => packaging::completions(a),
        Command::Man(a) => packaging::man(a),
        Command::Demo(a) => demo::demo(a),
        Command::Simulator(a) => simulator::simulator(a),
    }
}

/// `--now`, or the clock. An instant no metric timestamp can carry is refused.
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

/// `what status=.. code=.. request_id=..: error`, the contract's failure line.
fn failure_line(what: String, e: &crate::domain::ApiError) -> String {
    let mut line = what;
    if let Some(s) = e.status() {
        line.push_str(&format!(" status={s}"));
    }
    if let Some(c) = e.code() {
        line.push_str(&format!(" code={c}"));
    }
    if let Some(r) = e.request_id() {
        line.push_str(&format!(" request_id={r}"));
    }
    line.push_str(&format!(": {e}"));
    line
}

/// One stderr line per failure (a series, or a part of a query), in the order the contract
/// gives; a run of more than three Cloud Eye series of one query failing for the same reason
/// (a budget that reads 700 of 2,000) is its first line and one for the others.
pub fn log_failures(collection: &Collection) {
    log_failures_of("", collection)
}

/// [`log_failures`], each line after `prefix` (`cloud=NAME: ` with `clouds`).
pub fn log_failures_of(prefix: &str, collection: &Collection) {
    let failures = &collection.failures;
    let mut i = 0;
    while i < failures.len() {
        let f = &failures[i];
        log::error!("{prefix}{}", failure_line(f.to_string(), &f.error));
        let same = failures[i + 1..]
            .iter()
            .take_while(|g| {
                f.source == SourceId::CloudEye
                    && matches!(f.what, What::Series(_))
                    && (g.source, &g.query) == (f.source, &f.query)
                    && matches!(g.what, What::Series(_))
                    && g.error.to_string() == f.error.to_string()
            })
            .count();
        if same > 2 {
            let more = format!(
                "query={} source={} ({same} more series, the last {})",
                f.query,
                f.source.name(),
                failures[i + same].what
            );
            log::error!("{prefix}{}", failure_line(more, &f.error));
            i += same;
        }
        i += 1;
    }
}

/// How a collection ended, from what it collected: nothing out of a plan is a failure, and one
/// whose every failure was on this side is a configuration error.
pub fn outcome_of(collection: &Collection) -> Outcome {
    let mut errors = collection.failures.iter().map(|f| &f.error);
    if !collection.nothing_collected() || collection.failures.is_empty() {
        Outcome::Done
    } else if errors.all(|e| e.is_local()) {
        Outcome::Misconfigured
    } else {
        Outcome::NothingCollected
    }
}
