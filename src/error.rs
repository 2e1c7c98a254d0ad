//! The crate's top-level error and the one place that maps errors to exit codes.
//!
//! 0: success (in `run`, at least one series collected); 1: the cloud or the run failed;
//! 2: the input is wrong (flags, spec, credentials) and no call was made.

use crate::cloud::client::ApiError;
use crate::cloud::credentials::CredentialsError;
use crate::plan::PlanError;
use crate::range::RangeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Already formatted, one located error per line.
    #[error("{0}")]
    Spec(String),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    Runtime(String),
    /// stdout was closed before everything was written: nothing counts as delivered.
    #[error("stdout was closed before the output was written; nothing was delivered")]
    StdoutClosed,
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Credentials(_)
            | Error::Usage(_)
            | Error::Range(_)
            | Error::Plan(_)
            | Error::Spec(_) => 2,
            // A failure on this side (an untrusted certificate, a request that cannot be built)
            // is the user's input, not the cloud's.
            Error::Api(ApiError::Local(_)) => 2,
            Error::Api(_) | Error::Runtime(_) | Error::StdoutClosed => 1,
        }
    }
}
