//! What a command ends with, and the one place that turns it into an exit code.
//!
//! 0: done (`run`: at least one series delivered, failures reported on stderr); 1: nothing
//! collected, the cloud or the delivery failed; 2: the input is wrong (flags, spec, credentials,
//! a CA that does not match) and, where it can be known first, no call was made.

use std::process::ExitCode;

use crate::cloud::ConnectError;
use crate::deliver::otlp::{ConfigError, ExportError};
use crate::deliver::scrape::BindError;
use crate::deliver::sink::WriteError;
use crate::domain::RangeError;
use crate::emit::LabelError;
use crate::plan::PlanError;
use crate::spec::load::SpecErrors;
use crate::state::fleet::EngineError;
use crate::state::StateError;

/// How a command that ran to its end went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// What was asked was done (`run`: something was delivered, or nothing was due).
    Done,
    /// Nothing was collected: the cloud or the run failed.
    NothingCollected,
    /// Nothing was collected, and every failure was on this side (an untrusted certificate,
    /// credentials that cannot be sent): the configuration is wrong.
    Misconfigured,
    /// The period series were held back for a reason only the operator can resolve (their
    /// checkpoints cannot be recorded or read, or need adopting); an `E!` line said which.
    PeriodHeld,
    /// The input was checked and found wrong, and said so in the form asked for (`validate
    /// --format github|json` on stdout).
    Invalid,
}

/// Why a command could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or value the user gave.
    #[error("{0}")]
    Usage(String),
    /// Spec files: every error located (file, line, column, path) until printed.
    #[error(transparent)]
    Spec(#[from] SpecErrors),
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    ExportConfig(#[from] ConfigError),
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Includes a closed stdout (`WriteError::StdoutClosed`).
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    State(#[from] StateError),
    /// The coordination engine cannot be reached (`on_unavailable: stop`).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `serve` cannot listen (the port is taken, or not ours to take).
    #[error(transparent)]
    Bind(#[from] BindError),
    /// `OTEL_RESOURCE_ATTRIBUTES` the Prometheus outputs cannot carry.
    #[error(transparent)]
    Labels(#[from] LabelError),
    /// Something of this machine failed (a port, a file the command writes).
    #[error("{0}")]
    System(String),
    /// The command line could not be parsed (clap has printed why and how to get help).
    #[error("invalid command line")]
    Flags,
    /// A bug: a panic reached the top (the panic hook has said where).
    #[error("internal error")]
    Panicked,
}

impl Error {
    /// Its stderr lines: one per spec error, else one.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Error::Spec(errors) => errors.0.iter().map(ToString::to_string).collect(),
            e => vec![e.to_string()],
        }
    }

    fn code(&self) -> u8 {
        match self {
            Error::Usage(_)
            | Error::Spec(_)
            | Error::Range(_)
            | Error::Plan(_)
            | Error::ExportConfig(_)
            | Error::Labels(_)
            | Error::Flags => 2,
            Error::Connect(e) if e.is_input() => 2,
            Error::Export(e) if e.local => 2,
            Error::Engine(e) if e.is_input() => 2,
            Error::Connect(_)
            | Error::Export(_)
            | Error::Write(_)
            | Error::State(_)
            | Error::Engine(_)
            | Error::Bind(_)
            | Error::System(_)
            | Error::Panicked => 1,
        }
    }

    /// The input is wrong (exit 2): trying again will not help.
    pub fn is_input(&self) -> bool {
        self.code() == 2
    }

    /// Worth a line on stderr: a closed stdout under an interactive command (`| head`) is not.
    pub fn worth_saying(&self, telegraf_style: bool) -> bool {
        match self {
            // Already said, by clap or by the panic hook.
            Error::Flags | Error::Panicked => false,
            Error::Write(WriteError::StdoutClosed) => telegraf_style,
            _ => true,
        }
    }
}

/// Runs a command so that a panic (a bug) ends as [`Error::Panicked`], exit 1 through
/// [`exit_code`], instead of the runtime's 101 that no agent documents.
pub fn guarded(command: impl FnOnce() -> Result<Outcome, Error>) -> Result<Outcome, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)).unwrap_or(Err(Error::Panicked))
}

/// The exit status of a command's result: the only place that picks one.
pub fn status(result: &Result<Outcome, Error>) -> u8 {
    match result {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::NothingCollected | Outcome::PeriodHeld) => 1,
        Ok(Outcome::Misconfigured | Outcome::Invalid) => 2,
        Err(e) => e.code(),
    }
}

/// The exit code of a command's result ([`status`]).
pub fn exit_code(result: &Result<Outcome, Error>) -> ExitCode {
    ExitCode::from(status(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Outcome, Error>) -> ExitCode {
        exit_code(&r)
    }

    #[test]
    fn a_panic_is_exit_1_and_a_bad_command_line_exit_2() {
        let panicked = guarded(|| panic!("a bug"));
        assert!(matches!(panicked, Err(Error::Panicked)));
        assert_eq!(exit_code(&panicked), ExitCode::from(1));
        assert_eq!(guarded(|| Ok(Outcome::Done)).ok(), Some(Outcome::Done));
        assert_eq!(code(Err(Error::Flags)), ExitCode::from(2));
        assert!(!Error::Flags.worth_saying(true) && !Error::Panicked.worth_saying(true));
    }

    #[test]
    fn outcomes_and_errors_map_to_0_1_2() {
        assert_eq!(code(Ok(Outcome::Done)), ExitCode::from(0));
        assert_eq!(code(Ok(Outcome::NothingCollected)), ExitCode::from(1));
        assert_eq!(code(Ok(Outcome::PeriodHeld)), ExitCode::from(1));
        assert_eq!(code(Ok(Outcome::Misconfigured)), ExitCode::from(2));
        assert_eq!(code(Ok(Outcome::Invalid)), ExitCode::from(2));
        assert_eq!(code(Err(Error::Usage("x".into()))), ExitCode::from(2));
        assert_eq!(
            code(Err(Error::Spec(SpecErrors(Vec::new())))),
            ExitCode::from(2)
        );
        assert_eq!(
            code(Err(Error::Write(WriteError::StdoutClosed))),
            ExitCode::from(1)
        );
        assert_eq!(
            code(Err(Error::Write(WriteError::Stdout(
                std::io::Error::other("full")
            )))),
            ExitCode::from(1)
        );
        assert_eq!(
            code(Err(Error::Connect(ConnectError::Unsendable("x".into())))),
            ExitCode::from(2),
            "credentials that cannot be sent are input"
        );
        assert_eq!(
            code(Err(Error::Connect(ConnectError::Discovery("x".into())))),
            ExitCode::from(1),
            "a failed discovery is the cloud's"
        );
        assert_eq!(
            code(Err(Error::Connect(ConnectError::Api(
                crate::domain::ApiError::Local("untrusted".into())
            )))),
            ExitCode::from(2)
        );
    }

    #[test]
    fn a_closed_stdout_is_quiet_only_outside_telegraf() {
        let e = Error::Write(WriteError::StdoutClosed);
        assert!(!e.worth_saying(false));
        assert!(e.worth_saying(true));
        assert!(Error::Usage("x".into()).worth_saying(false));
    }
}
