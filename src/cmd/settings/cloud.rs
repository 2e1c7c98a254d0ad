//! Each cloud's settings: the flags, then the spec's `cloud` block (or each entry of
//! `clouds`), then the environment (`HW_PROJECT_ID`, `HUAWEICLOUD_SDK_PROJECT_ID`,
//! `HUAWEICLOUD_SDK_IAM_ENDPOINT`, `MAAS_USAGE_METADATA_ENDPOINT`, the key pairs of the
//! credential chain), then defaults; an `assume_agency` wraps the chain in STS.

use crate::cli::CloudArgs;
use crate::cloud::credentials::{CredentialChain, CredentialProvider, Credentials};
use crate::cloud::sts::{Agency, AgencyProvider, StsSettings};
use crate::cloud::{metadata, CloudLimits, CloudSettings, ConnectError, Endpoints, ProjectSetting};
use crate::env::{self, Lookup};
use crate::spec::{AgencySpec, CloudSpec, Spec, DEFAULT_REGION};

use super::CALL_TIMEOUT;

/// The clouds of `spec`: its `cloud` block and the flags, or each entry of `clouds` (whose
/// settings the flags of one cloud cannot override: `Err`, the flag that was given).
pub(super) fn resolve_all(
    spec: &Spec,
    flags: Option<&CloudArgs>,
    env: Lookup<'_>,
) -> Result<Vec<CloudSettings>, &'static str> {
    if spec.clouds.is_empty() {
        return Ok(vec![resolve(spec, &spec.cloud, None, flags, env)]);
    }
    let none = CloudArgs::default();
    let f = flags.unwrap_or(&none);
    let one_cloud = [
        ("--region", f.region.is_some()),
        ("--project-id", f.project_id.is_some()),
        ("--endpoint", f.endpoint.is_some()),
        ("--iam-endpoint", f.iam_endpoint.is_some()),
        ("--credentials-file", f.credentials_file.is_some()),
    ];
    if let Some((flag, _)) = one_cloud.iter().find(|(_, given)| *given) {
        return Err(flag);
    }
    Ok(spec
        .clouds
        .iter()
        .map(|c| resolve(spec, &c.cloud, Some(&c.name), flags, env))
        .collect())
}

/// One cloud: `s` (the spec's `cloud` block, or an entry of `clouds` named `name`), the flags
/// (`--simulator`: the simulator's) and the environment.
fn resolve(
    spec: &Spec,
    s: &CloudSpec,
    name: Option<&str>,
    flags: Option<&CloudArgs>,
    env: Lookup<'_>,
) -> CloudSettings {
    let none = CloudArgs::default();
    let f = flags.unwrap_or(&none);
    let region = f
        .region
        .clone()
        .or_else(|| s.region.clone())
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let ca_file = f.ca_file.clone().or_else(|| s.ca_file.clone());
    let (project_id, endpoints, credentials) = match &f.simulator {
        // The spec's project is a real account's: the flag's is the only one.
        Some(url) => simulated(url, f.project_id.clone()),
        None => (
            project_of(f, s, name.is_none(), env),
            Endpoints::of_region(
                &region,
                [
                    f.endpoint.clone().or_else(|| s.endpoint.clone()),
                    f.iam_endpoint
                        .clone()
                        .or_else(|| s.iam_endpoint.clone())
                        .or_else(|| env::get(env, "HUAWEICLOUD_SDK_IAM_ENDPOINT")),
                    s.ces_endpoint.clone(),
                    s.maas_monitor_endpoint.clone(),
                    s.sts_endpoint.clone(),
                ],
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
    let credentials = match &s.assume_agency {
        Some(a) => through_agency(credentials, a, &endpoints.sts, ca_file.clone()),
        None => credentials,
    };
    CloudSettings {
        name: name.map(str::to_string),
        region,
        project_id,
        endpoints,
        ca_file,
        credentials,
        limits: CloudLimits {
            requests_per_minute: spec.limits.requests_per_minute,
            ces_requests_per_minute: spec.limits.ces_requests_per_minute,
            account_requests_per_minute: spec.limits.account_requests_per_minute,
            call_timeout: CALL_TIMEOUT,
        },
    }
}

/// The project: the flag, then the block's, then (for the one cloud of `cloud:` only: with
/// `clouds`, each is its own account's) the environment's.
fn project_of(
    f: &CloudArgs,
    s: &CloudSpec,
    from_env: bool,
    env: Lookup<'_>,
) -> Option<ProjectSetting> {
    let env_of = |name| from_env.then(|| env::get(env, name)).flatten();
    [
        (
            PROJECT_FLAG,
            f.project_id.clone().or_else(|| s.project_id.clone()),
        ),
        ("HW_PROJECT_ID", env_of("HW_PROJECT_ID")),
        (
            "HUAWEICLOUD_SDK_PROJECT_ID",
            env_of("HUAWEICLOUD_SDK_PROJECT_ID"),
        ),
    ]
    .into_iter()
    .find_map(|(from, id)| id.map(|id| ProjectSetting { from, id }))
}

/// `base` wrapped in STS AssumeAgency of `a` at `sts`: the chain's credentials sign the STS
/// call only.
fn through_agency(
    base: CredentialChain,
    a: &AgencySpec,
    sts: &str,
    ca_file: Option<std::path::PathBuf>,
) -> CredentialChain {
    let agency = Agency {
        urn: a.agency_urn.clone(),
        session_name: a.session_name().to_string(),
        // Checked when the spec was read.
        duration: a.duration().unwrap_or(AgencySpec::DEFAULT_DURATION),
        external_id: a.external_id.clone(),
    };
    let settings = StsSettings {
        endpoint: sts.to_string(),
        ca_file,
        call_timeout: CALL_TIMEOUT,
    };
    let provider: Box<dyn CredentialProvider> =
        Box::new(AgencyProvider::new(base, agency, settings));
    CredentialChain::new(vec![provider])
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
