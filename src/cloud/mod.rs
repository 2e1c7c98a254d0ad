//! Everything that knows about Huawei Cloud: signing, credentials, the HTTP client, the wire
//! format, and the setup of a connection (credentials, endpoints, project id).

pub mod api;
pub mod auth;
pub mod client;
pub mod credentials;
pub mod sign;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::budget::Budget;
use crate::collect::Executor;
use crate::error::Error;
use crate::log;
use crate::state::{self, StateDir};
use client::{ApiError, Client, ClientOptions, Endpoint, RetryPolicy, StatsAnswer};
use credentials::Credentials;

/// Where to connect and how, after flags, spec and environment were merged by the caller.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub region: String,
    /// An explicit project id (flag or spec); the environment and IAM come after it.
    pub project_id: Option<String>,
    pub endpoint: Option<String>,
    pub iam_endpoint: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub call_timeout: Duration,
}

/// A client bound to a project.
pub struct Connection {
    pub client: Arc<Client>,
    pub project_id: String,
    pub region: String,
}

/// Reads credentials (environment first, then the file) and logs file warnings.
pub fn load_credentials(
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Credentials, Error> {
    let (creds, warnings) = credentials::load(env, file)?;
    for w in warnings {
        log::warn(&w);
    }
    check_sendable(&creds)?;
    log::debug(&format!("credentials from {}", creds.source));
    Ok(creds)
}

/// Credentials travel in headers (the AK in `Authorization`, the token in `X-Security-Token`)
/// and the SK keys the signature: a line break, a byte-order mark or any other character
/// outside printable ASCII is a copy-and-paste accident that would fail every call (or be
/// refused by the gateway as a bad signature), so it is refused before any.
fn check_sendable(creds: &Credentials) -> Result<(), Error> {
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
            return Err(Error::Usage(format!(
                "{what} from {} has a character that cannot be sent (position {}: a line break, a space, a byte-order mark or another non-printable character); copy it again without it",
                creds.source,
                pos + 1
            )));
        }
        if v.len() > max {
            return Err(Error::Usage(format!(
                "{what} from {} is {} bytes long, more than any real one ({max}); check what was pasted",
                creds.source,
                v.len()
            )));
        }
    }
    Ok(())
}

fn env_nonempty(env: &dyn Fn(&str) -> Option<String>, k: &str) -> Option<String> {
    env(k)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Builds the client and settles the project id: explicit, then `HW_PROJECT_ID`, then
/// `HUAWEICLOUD_SDK_PROJECT_ID`, then IAM discovery (which costs one call).
///
/// With a state directory, a project id discovered in the last 24 hours for this access key and
/// region is reused, and a fresh discovery is stored.
pub fn connect(
    opts: &ConnectOptions,
    creds: Credentials,
    budget: Arc<dyn Budget>,
    env: &dyn Fn(&str) -> Option<String>,
    deadline: Instant,
    state: Option<&StateDir>,
) -> Result<Connection, Error> {
    let ak_key = state::ak_key(creds.ak.expose());
    let maas_url = opts
        .endpoint
        .clone()
        .unwrap_or_else(|| client::default_maas_endpoint(&opts.region));
    let iam_url = opts
        .iam_endpoint
        .clone()
        .or_else(|| env_nonempty(env, "HUAWEICLOUD_SDK_IAM_ENDPOINT"))
        .unwrap_or_else(|| client::default_iam_endpoint(&opts.region));
    let maas = Endpoint::parse(&maas_url).map_err(Error::Usage)?;
    let iam = Endpoint::parse(&iam_url).map_err(Error::Usage)?;
    let options = ClientOptions {
        maas,
        iam,
        call_timeout: opts.call_timeout,
        retry: RetryPolicy::default(),
    };
    for ep in [&options.maas, &options.iam] {
        warn_if_plain_http(ep, creds.token.is_some());
    }
    // A bad --ca-file is an input error (exit 2), like a bad credentials file.
    let mut client = Client::new(creds, options, opts.ca_file.as_deref())
        .map_err(|e| match e {
            ApiError::CaFile { .. } => Error::Usage(e.to_string()),
            other => Error::Api(other),
        })?
        .with_budget(budget);
    if let Some(s) = state {
        client = client.with_rejection_store(std::sync::Arc::new(s.clone()));
    }
    let project_id = match opts
        .project_id
        .clone()
        .or_else(|| env_nonempty(env, "HW_PROJECT_ID"))
        .or_else(|| env_nonempty(env, "HUAWEICLOUD_SDK_PROJECT_ID"))
    {
        Some(id) => id,
        None => match state.and_then(|s| s.cached_project(&ak_key, &opts.region)) {
            Some(id) => {
                log::debug(&format!(
                    "project id of {} from the state directory",
                    opts.region
                ));
                id
            }
            None => {
                log::debug(&format!(
                    "discovering the project id of {} through IAM",
                    opts.region
                ));
                let id = client.discover_project(&opts.region, deadline).map_err(|e| match e {
                ApiError::Setup(msg) => Error::Api(ApiError::Setup(format!("project discovery: {msg}"))),
                e @ (ApiError::AuthBlocked(_) | ApiError::Local(_)) => Error::Api(e),
                other => Error::Api(ApiError::Setup(format!(
                    "project discovery failed: {other}; set the project id (--project-id, HW_PROJECT_ID or cloud.project_id) to skip discovery"
                ))),
            })?;
                if let Some(s) = state {
                    s.store_project(&ak_key, &opts.region, &id);
                }
                id
            }
        },
    };
    if !(project_id.len() == 32
        && project_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    {
        log::warn(&format!("project id `{project_id}` is not 32 lowercase letters and digits; the API will probably refuse it"));
    }
    Ok(Connection {
        client: Arc::new(client),
        project_id,
        region: opts.region.clone(),
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

impl Executor for Connection {
    fn execute(&self, body: &[u8], deadline: Instant) -> Result<StatsAnswer, ApiError> {
        self.client
            .show_statistics(&self.project_id, body, deadline)
    }
}
