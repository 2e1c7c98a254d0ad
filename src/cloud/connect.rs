//! Setting up a connection to one cloud from its resolved settings: the credentials checked
//! that they can be sent, the client with its budgets and TLS, and the project id.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{self, Client, ClientOptions, RetryPolicy};
use super::credentials::{CredentialChain, Credentials};
use super::{auth, ConnectError, Connection, ProjectInfo, Shared};
use crate::budget::Budget;
use crate::domain::{self, ApiError};
use crate::endpoint::Endpoint;
use crate::log;
use crate::text::sanitize_remote;
use crate::tls::{self, TlsFiles};

/// One cloud, resolved from flags, the spec, the environment and defaults (by the commands'
/// settings, the only place that merges them): what [`connect`] sets up. The values are
/// checked there, before anything is signed.
#[derive(Debug)]
pub struct CloudSettings {
    /// With `clouds`, the entry's name: the `cloud` tag of its series; `None` for `cloud:`.
    pub name: Option<String>,
    pub region: String,
    /// An explicit project id and where it was set; `None`: a cached one, else IAM discovery.
    pub project_id: Option<ProjectSetting>,
    pub endpoints: Endpoints,
    /// A private CA's PEM bundle to trust for the endpoints.
    pub ca_file: Option<PathBuf>,
    /// Where the credentials come from, in order of precedence.
    pub credentials: CredentialChain,
    pub limits: CloudLimits,
}

/// A project id and where it was set, for the message when it is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectSetting {
    /// `--project-id (or cloud.project_id)`, `HW_PROJECT_ID` or `HUAWEICLOUD_SDK_PROJECT_ID`.
    pub from: &'static str,
    pub id: String,
}

/// A cloud's endpoints (base URLs), defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// MaaS (ShowStatistics).
    pub maas: String,
    /// IAM (project discovery).
    pub iam: String,
    /// Cloud Eye.
    pub ces: String,
    /// The MaaS monitor's instances API (the names of model and key ids).
    pub monitor: String,
    /// STS (an agency's temporary credentials).
    pub sts: String,
}

impl Endpoints {
    /// Those given (`[maas, iam, ces, monitor, sts]`), and the region's defaults for the
    /// others: MaaS `https://modelarts.{region}.myhuaweicloud.com`, IAM
    /// `https://iam.{region}.myhuaweicloud.com`, Cloud Eye `https://ces.{region}.myhuaweicloud.com`,
    /// the monitor at the MaaS endpoint, STS `https://sts.{region}.myhuaweicloud.com`.
    pub fn of_region(
        region: &str,
        [maas, iam, ces, monitor, sts]: [Option<String>; 5],
    ) -> Endpoints {
        let maas = maas.unwrap_or_else(|| client::default_maas_endpoint(region));
        Endpoints {
            iam: iam.unwrap_or_else(|| client::default_iam_endpoint(region)),
            ces: ces.unwrap_or_else(|| client::default_ces_endpoint(region)),
            monitor: monitor.unwrap_or_else(|| maas.clone()),
            sts: sts.unwrap_or_else(|| client::default_sts_endpoint(region)),
            maas,
        }
    }

    /// Every endpoint at `url` (a simulator).
    pub fn all(url: &str) -> Endpoints {
        Endpoints {
            maas: url.to_string(),
            iam: url.to_string(),
            ces: url.to_string(),
            monitor: url.to_string(),
            sts: url.to_string(),
        }
    }
}

/// How much one cloud may be asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloudLimits {
    /// MaaS and IAM calls per minute, per IAM user or agency.
    pub requests_per_minute: u32,
    /// Cloud Eye's own budget per minute.
    pub ces_requests_per_minute: u32,
    /// MaaS and IAM calls per minute for the whole account; `None`: not limited.
    pub account_requests_per_minute: Option<u32>,
    /// The longest a single HTTP exchange may take; the run's deadline shortens it further.
    pub call_timeout: Duration,
}

/// Credentials from the chain (its warnings, such as a file readable by others or a file the
/// environment overrides, are logged), checked that they can be sent.
pub fn load_credentials(chain: &CredentialChain) -> Result<Credentials, ConnectError> {
    let (creds, warnings) = chain.load()?;
    for w in warnings {
        log::warn!("{}", w);
    }
    check_sendable(&creds)?;
    log::debug!("credentials from {}", creds.source);
    Ok(creds)
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

/// Builds the client (with the MaaS and the Cloud Eye budgets) and settles the project id: the
/// explicit one (the settings chose it: flag or spec, then `HW_PROJECT_ID`, then
/// `HUAWEICLOUD_SDK_PROJECT_ID`), then a cached one, then IAM discovery (which costs one call).
pub fn connect(
    cloud: &CloudSettings,
    creds: Credentials,
    [budget, ces_budget]: [Arc<dyn Budget>; 2],
    deadline: Instant,
    shared: Shared<'_>,
) -> Result<Connection, ConnectError> {
    check_explicit(cloud)?;
    let principal = auth::principal_id(&creds);
    let options = client_options(cloud, creds.token.is_some())?;
    let tls = TlsFiles {
        ca: cloud
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
    let project = project(cloud, &client, &principal, deadline, shared)?;
    Ok(Connection {
        client: Arc::new(client),
        project_id: project.id,
        region: cloud.region.clone(),
        account_id: project.domain_id,
    })
}

/// The region and an explicit project id, checked before anything is signed: the spec checks
/// its own, these may come from a flag or the environment, and would go into signed URLs.
fn check_explicit(cloud: &CloudSettings) -> Result<(), ConnectError> {
    let invalid = |from, value: &str, expected| ConnectError::Invalid {
        from,
        value: sanitize_remote(value, 100),
        expected,
    };
    if !domain::is_region(&cloud.region) {
        return Err(invalid(
            "--region (or cloud.region)",
            &cloud.region,
            "a region name like cn-southwest-2",
        ));
    }
    match &cloud.project_id {
        Some(p) if !domain::is_project_id(&p.id) => Err(invalid(
            p.from,
            &p.id,
            "a project id; it is 32 lowercase letters and digits",
        )),
        _ => Ok(()),
    }
}

/// The endpoints parsed, with one warning per host reached over plain http (MaaS and the
/// monitor share one URL by default).
fn client_options(cloud: &CloudSettings, token: bool) -> Result<ClientOptions, ConnectError> {
    let e = &cloud.endpoints;
    let options = ClientOptions {
        maas: Endpoint::parse(&e.maas)?,
        iam: Endpoint::parse(&e.iam)?,
        ces: Endpoint::parse(&e.ces)?,
        monitor: Endpoint::parse(&e.monitor)?,
        sts: Endpoint::parse(&e.sts)?,
        call_timeout: cloud.limits.call_timeout,
        retry: RetryPolicy::default(),
    };
    let mut warned: Vec<&str> = Vec::new();
    for ep in [&options.maas, &options.iam, &options.ces, &options.monitor] {
        if ep.scheme == "http" && !warned.iter().any(|h| h.eq_ignore_ascii_case(&ep.host)) {
            warned.push(&ep.host);
            warn_if_plain_http(ep, token);
        }
    }
    Ok(options)
}

/// The project: explicit, else cached (a cached id that is not one, a hand-edited state file,
/// is not used), else discovered through IAM and cached.
fn project(
    cloud: &CloudSettings,
    client: &Client,
    principal: &str,
    deadline: Instant,
    shared: Shared<'_>,
) -> Result<ProjectInfo, ConnectError> {
    let explicit = cloud.project_id.as_ref().map(|p| ProjectInfo {
        id: p.id.clone(),
        domain_id: None,
    });
    let cached = || {
        shared
            .projects
            .and_then(|c| c.cached_project(principal, &cloud.region))
            .filter(|p| domain::is_project_id(&p.id))
    };
    if let Some(p) = explicit.or_else(cached) {
        return Ok(p);
    }
    log::debug!("discovering the project id of {} through IAM", cloud.region);
    let p = client
        .discover_project(&cloud.region, deadline)
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
        c.store_project(principal, &cloud.region, &p);
    }
    Ok(p)
}

/// Signed requests over plain `http://` can be read (and a security token reused) by anyone on
/// the path: one warning, except on loopback (the simulator, a local proxy).
pub(super) fn warn_if_plain_http(ep: &Endpoint, token: bool) {
    if ep.scheme != "http" {
        return;
    }
    let host = ep.host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        log::warn!(
            "{ep} is plain http: signed requests{} travel unencrypted; use https",
            if token { " and the security token" } else { "" }
        );
    }
}
