//! A cloud's settings: the flags, then the spec's `cloud` block, then the environment
//! (`HW_PROJECT_ID`, `HUAWEICLOUD_SDK_PROJECT_ID`, `HUAWEICLOUD_SDK_IAM_ENDPOINT`,
//! `MAAS_USAGE_METADATA_ENDPOINT`, the key pairs of the credential chain), then defaults.

use crate::cli::CloudArgs;
use crate::cloud::credentials::{CredentialChain, Credentials};
use crate::cloud::{metadata, CloudLimits, CloudSettings, ConnectError, Endpoints, ProjectSetting};
use crate::env::{self, Lookup};
use crate::spec::{Spec, DEFAULT_REGION};

use super::CALL_TIMEOUT;

/// The one cloud of today: `cloud:` of the spec and the flags (`--simulator`: the simulator's).
pub(super) fn resolve(spec: &Spec, flags: Option<&CloudArgs>, env: Lookup<'_>) -> CloudSettings {
    let none = CloudArgs::default();
    let f = flags.unwrap_or(&none);
    let s = &spec.cloud;
    let region = f
        .region
        .clone()
        .or_else(|| s.region.clone())
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let (project_id, endpoints, credentials) = match &f.simulator {
        // The spec's project is a real account's: the flag's is the only one.
        Some(url) => simulated(url, f.project_id.clone()),
        None => (
            [
                (
                    PROJECT_FLAG,
                    f.project_id.clone().or_else(|| s.project_id.clone()),
                ),
                ("HW_PROJECT_ID", env::get(env, "HW_PROJECT_ID")),
                (
                    "HUAWEICLOUD_SDK_PROJECT_ID",
                    env::get(env, "HUAWEICLOUD_SDK_PROJECT_ID"),
                ),
            ]
            .into_iter()
            .find_map(|(from, id)| id.map(|id| ProjectSetting { from, id })),
            Endpoints::of_region(
                &region,
                f.endpoint.clone().or_else(|| s.endpoint.clone()),
                f.iam_endpoint
                    .clone()
                    .or_else(|| s.iam_endpoint.clone())
                    .or_else(|| env::get(env, "HUAWEICLOUD_SDK_IAM_ENDPOINT")),
                s.ces_endpoint.clone(),
                s.maas_monitor_endpoint.clone(),
            ),
            CredentialChain::standard(
                |name| env::get(env, name),
                f.credentials_file
                    .clone()
                    .or_else(|| s.credentials_file.clone()),
                Some(
                    s.metadata_endpoint
                        .clone()
                        .or_else(|| env::get(env, "MAAS_USAGE_METADATA_ENDPOINT"))
                        .unwrap_or_else(|| metadata::DEFAULT_ENDPOINT.to_string()),
                ),
            ),
        ),
    };
    CloudSettings {
        region,
        project_id,
        endpoints,
        ca_file: f.ca_file.clone().or_else(|| s.ca_file.clone()),
        credentials,
        limits: CloudLimits {
            requests_per_minute: spec.limits.requests_per_minute,
            ces_requests_per_minute: spec.limits.ces_requests_per_minute,
            account_requests_per_minute: spec.limits.account_requests_per_minute,
            call_timeout: CALL_TIMEOUT,
        },
    }
}

/// Where an explicit project id was set.
const PROJECT_FLAG: &str = "--project-id (or cloud.project_id)";

/// A cloud that is the simulator at `url`: every endpoint, the metadata service included, so
/// that the only credentials sent to it are those it issued (none of the environment's or a
/// file's); the project `project_id`, else discovered.
pub(super) fn simulated(
    url: &str,
    project_id: Option<String>,
) -> (Option<ProjectSetting>, Endpoints, CredentialChain) {
    (
        project_id.map(|id| ProjectSetting {
            from: PROJECT_FLAG,
            id,
        }),
        Endpoints::all(url),
        CredentialChain::standard(|_| None, None, Some(url.to_string())),
    )
}

/// The credentials `maas-usage simulator` accepts: when a key variable is set (even blank) or
/// a file is given, those the chain finds there (the metadata service is not asked), with its
/// warnings; `None`: the built-in demo pair.
pub fn simulator_credentials(
    file: Option<std::path::PathBuf>,
) -> Result<Option<(Credentials, Vec<String>)>, ConnectError> {
    let env: Lookup<'_> = &env::process;
    if env("HW_ACCESS_KEY").is_none() && env("HUAWEICLOUD_SDK_AK").is_none() && file.is_none() {
        return Ok(None);
    }
    let chain = CredentialChain::standard(|name| env::get(env, name), file, None);
    Ok(Some(chain.load()?))
}
