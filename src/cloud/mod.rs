//! Everything that knows about Huawei Cloud: signing, credentials, the HTTP client, the wire
//! format, the credential gate, and the setup of a connection (credentials, endpoints, project
//! id). It depends on the vocabulary and the utilities only; what it needs from elsewhere (a
//! project-id cache, a place to share credential rejections) it asks for through traits.

pub mod api;
pub mod auth;
pub mod client;
pub mod cloud_eye;
pub mod credentials;
pub mod metadata;
pub mod sign;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::budget::Budget;
use crate::domain::{self, ApiError, StatsAnswer};
use crate::endpoint::{Endpoint, EndpointError};
use crate::env::{self, Lookup};
use crate::log;
use crate::text::sanitize_remote;
use crate::tls::{self, TlsError, TlsFiles};
pub use api::ProjectInfo;
use auth::GateStore;
use client::{Client, ClientOptions, RetryPolicy};
use credentials::{Credentials, CredentialsError};

/// Where to connect and how, resolved from flags, spec, environment and defaults.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub region: String,
    /// An explicit project id (flag or spec); the environment and IAM come after it.
    pub project_id: Option<String>,
    pub endpoint: Option<String>,
    pub iam_endpoint: Option<String>,
    pub credentials_file: Option<PathBuf>,
    /// The metadata service, the chain's last resort (`None`: not asked).
    pub metadata_endpoint: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Cloud Eye's API; default `https://ces.{region}.myhuaweicloud.com`.
    pub ces_endpoint: Option<String>,
    /// The MaaS monitor's instances API; default the MaaS endpoint.
    pub maas_monitor_endpoint: Option<String>,
    /// Cloud Eye's own request budget per minute.
    pub ces_requests_per_minute: u32,
    pub call_timeout: Duration,
}

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
    #[error("the metadata service: {0}")]
    Metadata(metadata::MetadataError),
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
            ConnectError::Credentials(_)
            | ConnectError::Unsendable(_)
            | ConnectError::Endpoint(_)
            | ConnectError::Invalid { .. }
            | ConnectError::Tls(_) => true,
            ConnectError::Api(e) => e.is_local(),
            ConnectError::Discovery(_) | ConnectError::Metadata(_) => false,
        }
    }
}

/// Where the credentials in use came from, and how fresh ones are had when they change: a
/// credentials file is re-read when it changed, an agency's temporary credentials are fetched
/// again before they expire; the environment cannot change under a running process.
pub enum Renewal {
    Never,
    File(credentials::FileWatch),
    Metadata {
        endpoint: String,
        fetched_at: chrono::DateTime<chrono::Utc>,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
}

impl Renewal {
    /// Fresh credentials when the source has new ones (or the old ones are about to expire),
    /// `None` when the ones in use stay good.
    pub fn renew(&mut self, env: Lookup<'_>) -> Result<Option<Credentials>, ConnectError> {
        match self {
            Renewal::Never => Ok(None),
            Renewal::File(watch) => Ok(watch.reload_if_changed(env)?),
            Renewal::Metadata {
                endpoint,
                fetched_at,
                expires_at,
            } => {
                let now = chrono::Utc::now();
                if !metadata::due(*fetched_at, *expires_at, now) {
                    return Ok(None);
                }
                let creds = metadata::fetch(endpoint).map_err(ConnectError::Metadata)?;
                *fetched_at = now;
                *expires_at = creds.expires_at.unwrap_or(now);
                Ok(Some(creds))
            }
        }
    }
}

/// The credential chain: `HW_*` variables, then `HUAWEICLOUD_SDK_*`, then the credentials
/// file, then (when `opts` names one) the metadata service of the instance's agency. Warnings
/// (a file readable by others, a file the environment overrides) are logged.
pub fn load_credentials(
    env: Lookup<'_>,
    opts: &ConnectOptions,
) -> Result<(Credentials, Renewal), ConnectError> {
    let file = opts.credentials_file.as_deref();
    let (creds, renewal) = match credentials::load(env, file) {
        Ok((creds, warnings)) => {
            for w in warnings {
                log::warn(&w);
            }
            let renewal = match file {
                Some(path) if creds.source.starts_with("credentials file") => {
                    Renewal::File(credentials::FileWatch::new(path))
                }
                _ => Renewal::Never,
            };
            (creds, renewal)
        }
        Err(CredentialsError::Missing) => {
            let Some(endpoint) = opts.metadata_endpoint.as_deref() else {
                return Err(CredentialsError::Missing.into());
            };
            let fetched_at = chrono::Utc::now();
            match metadata::fetch(endpoint) {
                Ok(creds) => {
                    let expires_at = creds.expires_at.unwrap_or(fetched_at);
                    let renewal = Renewal::Metadata {
                        endpoint: endpoint.to_string(),
                        fetched_at,
                        expires_at,
                    };
                    (creds, renewal)
                }
                // A service that is there and failing is the cloud's failure (exit 1), not
                // credentials left unconfigured.
                Err(e) if e.is_outage() => return Err(ConnectError::Metadata(e)),
                Err(e) => {
                    return Err(CredentialsError::NoneFound {
                        tried: vec![
                            "HW_ACCESS_KEY/HW_SECRET_KEY (not set)".into(),
                            "HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK (not set)".into(),
                            "a credentials file (none given)".into(),
                            format!("the metadata service: {e}"),
                        ],
                    }
                    .into())
                }
            }
        }
        Err(e) => return Err(e.into()),
    };
    check_sendable(&creds)?;
    log::debug(&format!("credentials from {}", creds.source));
    Ok((creds, renewal))
}

/// Credentials travel in headers (the AK in `Authorization`, the token in `X-Security-Token`)
/// and the SK keys the signature: a line break, a byte-order mark or any other character
/// outside printable ASCII is a copy-and-paste accident that would fail every call (or be
/// refused by the gateway as a bad signature), so it is refused before any.
fn check_sendable(creds: &Credentials) -> Result<(), ConnectError> {
    const MAX_KEY: usize = 1024;
    const MAX_TOKEN: usize = 16 * 1024;
    let parts = [
        ("the access key (AK)", Some(&creds.ak), MAX_KEY),
        ("the secret key (SK)", Some(&creds.sk), MAX_KEY),
        ("the security token", creds.token.as_ref(), MAX_TOKEN),
    ];
    for (what, secret, max) in parts {
        let Some(v) = secret.map(|s| s.expose()) else {
            continue;
        };
        if let Some(pos) = v.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(ConnectError::Unsendable(format!(
                "{what} from {} has a character that cannot be sent (position {}: a line break, a space, a byte-order mark or another non-printable character); copy it again without it",
                creds.source,
                pos + 1
            )));
        }
        if v.len() > max {
            return Err(ConnectError::Unsendable(format!(
                "{what} from {} is {} bytes long, more than any real one ({max}); check what was pasted",
                creds.source,
                v.len()
            )));
        }
    }
    Ok(())
}

/// Builds the client (with the MaaS and the Cloud Eye budgets) and settles the project id: explicit, then `HW_PROJECT_ID`, then
/// `HUAWEICLOUD_SDK_PROJECT_ID`, then a cached one, then IAM discovery (which costs one call).
pub fn connect(
    opts: &ConnectOptions,
    creds: Credentials,
    [budget, ces_budget]: [Arc<dyn Budget>; 2],
    env: Lookup<'_>,
    deadline: Instant,
    shared: Shared<'_>,
) -> Result<Connection, ConnectError> {
    let invalid = |from, value: &str, expected| ConnectError::Invalid {
        from,
        value: sanitize_remote(value, 100),
        expected,
    };
    if !domain::is_region(&opts.region) {
        return Err(invalid(
            "--region (or cloud.region)",
            &opts.region,
            "a region name like cn-southwest-2",
        ));
    }
    // Checked before anything is signed: the spec checks its own, these come from a flag or
    // the environment.
    let explicit = [
        (
            "--project-id (or cloud.project_id)",
            opts.project_id.clone(),
        ),
        ("HW_PROJECT_ID", env::get(env, "HW_PROJECT_ID")),
        (
            "HUAWEICLOUD_SDK_PROJECT_ID",
            env::get(env, "HUAWEICLOUD_SDK_PROJECT_ID"),
        ),
    ]
    .into_iter()
    .find_map(|(from, id)| id.map(|id| (from, id)));
    if let Some((from, id)) = &explicit {
        if !domain::is_project_id(id) {
            return Err(invalid(
                from,
                id,
                "a project id; it is 32 lowercase letters and digits",
            ));
        }
    }
    let principal = auth::principal_id(&creds);
    let maas_url = opts
        .endpoint
        .clone()
        .unwrap_or_else(|| client::default_maas_endpoint(&opts.region));
    let iam_url = opts
        .iam_endpoint
        .clone()
        .or_else(|| env::get(env, "HUAWEICLOUD_SDK_IAM_ENDPOINT"))
        .unwrap_or_else(|| client::default_iam_endpoint(&opts.region));
    let ces_url = opts
        .ces_endpoint
        .clone()
        .unwrap_or_else(|| client::default_ces_endpoint(&opts.region));
    let monitor_url = opts
        .maas_monitor_endpoint
        .clone()
        .unwrap_or_else(|| maas_url.clone());
    let options = ClientOptions {
        maas: Endpoint::parse(&maas_url)?,
        iam: Endpoint::parse(&iam_url)?,
        ces: Endpoint::parse(&ces_url)?,
        monitor: Endpoint::parse(&monitor_url)?,
        call_timeout: opts.call_timeout,
        retry: RetryPolicy::default(),
    };
    // Once per host: MaaS and the monitor share one URL by default.
    let mut warned: Vec<&str> = Vec::new();
    for ep in [&options.maas, &options.iam, &options.ces, &options.monitor] {
        if ep.scheme == "http" && !warned.iter().any(|h| h.eq_ignore_ascii_case(&ep.host)) {
            warned.push(&ep.host);
            warn_if_plain_http(ep, creds.token.is_some());
        }
    }
    let tls = TlsFiles {
        ca: opts
            .ca_file
            .as_deref()
            .map(|p| tls::named("--ca-file (or cloud.ca_file)", p)),
        ..TlsFiles::default()
    }
    .load()?;
    let mut client = Client::new(creds, options, tls)
        .with_budget(budget)
        .with_ces_budget(ces_budget);
    if let Some(store) = shared.gate {
        client = client.with_gate_store(store.clone());
    }
    let explicit = explicit.map(|(_, id)| ProjectInfo {
        id,
        domain_id: None,
    });
    // A cached id that is not one (a hand-edited state file) is not used: discovery replaces it.
    let cached = || {
        shared
            .projects
            .and_then(|c| c.cached_project(&principal, &opts.region))
            .filter(|p| domain::is_project_id(&p.id))
    };
    let project = match explicit.or_else(cached) {
        Some(p) => p,
        None => {
            log::debug(&format!(
                "discovering the project id of {} through IAM",
                opts.region
            ));
            let p = client
                .discover_project(&opts.region, deadline)
                .map_err(|e| match e {
                    ApiError::Setup(msg) => ConnectError::Discovery(msg),
                    e @ (ApiError::AuthBlocked(_) | ApiError::Local(_)) => ConnectError::Api(e),
                    other => ConnectError::Discovery(format!(
                        "{other}; set the project id (--project-id, HW_PROJECT_ID or cloud.project_id) to skip discovery"
                    )),
                })?;
            if !domain::is_project_id(&p.id) {
                return Err(ConnectError::Discovery(
                    "IAM answered a project id that is not 32 lowercase letters and digits; set the project id (--project-id, HW_PROJECT_ID or cloud.project_id)".into(),
                ));
            }
            if let Some(c) = shared.projects {
                c.store_project(&principal, &opts.region, &p);
            }
            p
        }
    };
    let project_id = project.id;
    Ok(Connection {
        client: Arc::new(client),
        project_id,
        region: opts.region.clone(),
        account_id: project.domain_id,
    })
}

/// Signed requests over plain `http://` can be read (and a security token reused) by anyone on
/// the path: one warning, except on loopback (the simulator, a local proxy).
fn warn_if_plain_http(ep: &Endpoint, token: bool) {
    if ep.scheme != "http" {
        return;
    }
    let host = ep.host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        log::warn(&format!(
            "{ep} is plain http: signed requests{} travel unencrypted; use https",
            if token { " and the security token" } else { "" }
        ));
    }
}
