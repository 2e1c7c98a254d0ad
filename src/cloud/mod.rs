//! Everything that knows about Huawei Cloud: signing, credentials, the HTTP client, the wire
//! format, the credential gate, and the setup of a connection (credentials, endpoints, project
//! id) from a cloud's resolved settings ([`CloudSettings`]). It depends on the vocabulary and
//! the utilities only, and reads no environment: what it needs from elsewhere (a project-id
//! cache, a place to share credential rejections) it asks for through traits.

pub mod api;
pub mod auth;
pub mod client;
pub mod cloud_eye;
mod connect;
pub mod credentials;
mod loose;
pub mod metadata;
pub mod sign;
pub mod sts;

use std::sync::Arc;
use std::time::Instant;

use crate::domain::{ApiError, StatsAnswer};
use crate::endpoint::EndpointError;
use crate::tls::TlsError;
pub use api::ProjectInfo;
use auth::GateStore;
use client::Client;
pub use connect::{
    connect, load_credentials, CloudLimits, CloudSettings, Endpoints, ProjectSetting,
};
use credentials::CredentialsError;

/// A client bound to a project.
pub struct Connection {
    pub client: Arc<Client>,
    pub project_id: String,
    pub region: String,
    /// The account's domain id, when project discovery (or its cache) told it.
    pub account_id: Option<String>,
}

impl Connection {
    /// ShowStatistics for one pre-serialised body.
    pub fn statistics(&self, body: &[u8], deadline: Instant) -> Result<StatsAnswer, ApiError> {
        self.client
            .show_statistics(&self.project_id, body, deadline)
    }
}

/// A project id remembered across runs, per IAM user or agency (as `auth::principal_id`) and
/// region.
pub trait ProjectCache {
    fn cached_project(&self, principal_id: &str, region: &str) -> Option<ProjectInfo>;
    fn store_project(&self, principal_id: &str, region: &str, project: &ProjectInfo);
}

/// What a connection may share with other processes.
#[derive(Default, Clone, Copy)]
pub struct Shared<'a> {
    pub projects: Option<&'a dyn ProjectCache>,
    /// The credential gate's records.
    pub gate: Option<&'a Arc<dyn GateStore>>,
}

/// Why no connection could be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// A credential with characters no header can carry.
    #[error("{0}")]
    Unsendable(String),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A project id or region from a flag or the environment that the spec would refuse: it
    /// would go into signed URLs, and the server would read another path than was signed.
    #[error("{from}: `{value}` is not {expected}")]
    Invalid {
        from: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("project discovery: {0}")]
    Discovery(String),
    /// The discovery call failed (the cloud, the network, or the credential gate).
    #[error("{0}")]
    Api(ApiError),
}

impl ConnectError {
    /// The user's input is wrong (exit 2), as opposed to the cloud failing (exit 1).
    pub fn is_input(&self) -> bool {
        match self {
            ConnectError::Credentials(e) => e.is_input(),
            ConnectError::Unsendable(_)
            | ConnectError::Endpoint(_)
            | ConnectError::Invalid { .. }
            | ConnectError::Tls(_) => true,
            ConnectError::Api(e) => e.is_local(),
            ConnectError::Discovery(_) => false,
        }
    }
}
