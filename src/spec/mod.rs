//! The declarative spec: typed form. Loading, schema validation and located errors live in
//! the submodules; everything downstream sees only these types.

use std::collections::BTreeMap;
pub mod clouds;
pub mod convert;
pub mod errors;
pub mod load;
pub mod merge;
pub mod schema;
mod spend;
pub mod yaml;

use std::path::PathBuf;
use std::time::Duration;

use crate::domain::cloud_eye::{CloudEyeMetric, Names};
use crate::domain::RangeExpr;
use crate::domain::{InferType, ServiceType};
use crate::spend::{Budget, PriceTable};

pub const DEFAULT_REGION: &str = "cn-southwest-2";

/// The spec's `cloud` block, as written (read straight from the file once the schema passed):
/// the flags and the environment complete it into the `cloud` layer's settings.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct CloudSpec {
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub endpoint: Option<String>,
    pub iam_endpoint: Option<String>,
    pub credentials_file: Option<PathBuf>,
    /// The metadata service's base URL (agency credentials), when not the default.
    pub metadata_endpoint: Option<String>,
    /// A private CA's PEM bundle to trust for the cloud's endpoints.
    pub ca_file: Option<PathBuf>,
    /// Cloud Eye's API (`source: cloud_eye`), when not the region's default.
    pub ces_endpoint: Option<String>,
    /// The host of the MaaS monitor's instances API (names of ids), when not the MaaS endpoint.
    pub maas_monitor_endpoint: Option<String>,
    /// STS (for `assume_agency`), when not the region's default.
    pub sts_endpoint: Option<String>,
    /// Collect with an agency's temporary credentials, assumed through STS.
    pub assume_agency: Option<AgencySpec>,
}

/// `assume_agency:` of a cloud: the agency (usually of another account) whose temporary
/// credentials STS AssumeAgency hands out to the cloud's base credentials.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct AgencySpec {
    pub agency_urn: String,
    pub session_name: Option<String>,
    /// `15m` to `12h`, checked when the file is read ([`AgencySpec::duration`]).
    pub duration: Option<String>,
    pub external_id: Option<String>,
}

impl AgencySpec {
    /// The session's name when the spec gives none.
    pub const DEFAULT_SESSION: &'static str = "maas-usage";
    /// The credentials' life when the spec gives none (STS's own default).
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(3600);
    /// The shortest and longest life STS grants.
    pub const DURATIONS: [Duration; 2] = [Duration::from_secs(900), Duration::from_secs(43200)];

    pub fn session_name(&self) -> &str {
        self.session_name
            .as_deref()
            .unwrap_or(Self::DEFAULT_SESSION)
    }

    /// How long the assumed credentials last; `Err` (why) when it is not a duration STS grants.
    pub fn duration(&self) -> Result<Duration, String> {
        let Some(text) = &self.duration else {
            return Ok(Self::DEFAULT_DURATION);
        };
        let d = crate::domain::range::parse_duration(text).map_err(|e| e.to_string())?;
        let [min, max] = Self::DURATIONS;
        if d < min || d > max {
            return Err(format!(
                "`{text}` is outside what STS grants: from 15m to 12h (and at most the agency's maximum session duration)"
            ));
        }
        Ok(d)
    }
}

/// An entry of `clouds:`: a cloud and the name its series carry as the `cloud` tag.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct NamedCloud {
    pub name: String,
    #[serde(flatten)]
    pub cloud: CloudSpec,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuerySpec {
    pub name: String,
    /// With `clouds:`, the names of those it runs in; `None`: every cloud.
    pub clouds: Option<Vec<String>>,
    pub range: RangeExpr,
    pub service_types: Vec<ServiceType>,
    pub infer_type: InferType,
    /// `None`: all keys, one series with key group `all`.
    pub key_groups: Option<Vec<String>>,
    pub ips: Option<Vec<String>>,
    /// ShowStatistics (the fields above) or Cloud Eye.
    pub source: Source,
}

/// Where a query's figures come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Source {
    /// ShowStatistics: exact totals per service type, inference type and key group.
    #[default]
    Statistics,
    /// Cloud Eye's `SYS.MaaS`: per model, or per model and API key.
    CloudEye(CloudEyeQuery),
}

/// A `source: cloud_eye` query's choices.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudEyeQuery {
    /// `breakdown: [model, api_key]`: one series per key under each model.
    pub by_key: bool,
    /// Models by name or id; `None`: all.
    pub models: Option<Vec<String>>,
    /// API keys by name or id (with `by_key`); `None`: all.
    pub api_keys: Option<Vec<String>>,
    pub metrics: Vec<&'static CloudEyeMetric>,
}

impl QuerySpec {
    pub fn cloud_eye(&self) -> Option<&CloudEyeQuery> {
        match &self.source {
            Source::CloudEye(c) => Some(c),
            Source::Statistics => None,
        }
    }
}

/// The output formats, in the order of [`Format::NAMES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Influx,
    Otlp,
    OtlpJson,
    Prometheus,
    Table,
    Json,
}

impl Format {
    /// Every format by its name in the spec and on the command line.
    pub const NAMES: [&'static str; 6] =
        ["influx", "otlp", "otlp-json", "prometheus", "table", "json"];

    const ALL: [Format; 6] = [
        Format::Influx,
        Format::Otlp,
        Format::OtlpJson,
        Format::Prometheus,
        Format::Table,
        Format::Json,
    ];

    /// Its name in the spec and on the command line.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Option<Format> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutputSpec {
    pub format: Format,
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub otlp: OtlpSettings,
    /// `output.destination`: the name of where the period buckets go (their checkpoints').
    pub destination: Option<String>,
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            format: Format::Influx,
            measurement: "maas_usage".into(),
            tags: BTreeMap::new(),
            otlp: OtlpSettings::default(),
            destination: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// The whole run; it ends by then with what it has.
    pub timeout: Duration,
    pub requests_per_minute: u32,
    pub concurrency: usize,
    /// Cloud Eye series one run may emit (the cardinality guard).
    pub max_series: usize,
    /// Cloud Eye's own budget per 60 s.
    pub ces_requests_per_minute: u32,
    /// MaaS calls per 60 s for the whole account, every user of it; `None`: no such budget.
    pub account_requests_per_minute: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(25),
            requests_per_minute: 200,
            concurrency: 4,
            max_series: 2000,
            ces_requests_per_minute: 60,
            account_requests_per_minute: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spec {
    /// `cloud:` (series without a cloud tag); with `clouds:` of one entry (see
    /// [`Spec::per_cloud`]), that entry's block.
    pub cloud: CloudSpec,
    /// `clouds:`: several clouds, each named; empty with `cloud:`.
    pub clouds: Vec<NamedCloud>,
    pub timezone: Option<String>,
    pub key_groups: BTreeMap<String, Vec<String>>,
    /// Names pinned for Cloud Eye's model and key ids.
    pub names: Names,
    pub queries: Vec<QuerySpec>,
    pub output: OutputSpec,
    pub limits: Limits,
    /// `prices`: what Cloud Eye's tokens cost (the cost series and money budgets need it).
    pub prices: Option<PriceTable>,
    pub budgets: Vec<Budget>,
    pub alerts: Alerts,
    /// The Cloud Eye queries with a key group breakdown, by name: their per-key series are
    /// summed into `key_groups` (`spend::groups`). Kept beside the queries until the Cloud Eye
    /// collection carries it in `CloudEyeQuery`.
    pub grouped: BTreeMap<String, Grouped>,
    pub coordination: Coordination,
}

/// `breakdown: [model, key_group]` (`per_model`) or `[key_group]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grouped {
    pub per_model: bool,
}

/// `alerts`: the thresholds of the rules `maas-usage rules` prints.
#[derive(Clone, Debug, PartialEq)]
pub struct Alerts {
    /// A model's errors over its requests above this.
    pub error_ratio: f64,
    /// A model's TTFT p99 above this.
    pub ttft_p99: Duration,
    /// A budget's used ratio at or above this warns (1 is critical).
    pub budget_warning: f64,
    /// How long a condition holds before its alert fires.
    pub hold: Duration,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            error_ratio: 0.05,
            ttft_p99: Duration::from_secs(10),
            budget_warning: 0.8,
            hold: Duration::from_secs(600),
        }
    }
}

/// Where processes sharing a key or a destination agree (`coordination:`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Coordination {
    /// `None`: the state directory (engine `state`).
    pub redis: Option<RedisSpec>,
}

/// `coordination:` with `engine: redis`.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisSpec {
    /// `redis://` or `rediss://`, without a password.
    pub url: String,
    pub group: Option<String>,
    /// `None`: twice `limits.timeout`.
    pub lease: Option<Duration>,
    /// Fall back to the state directory when Redis cannot be reached (else: stop).
    pub local_fallback: bool,
    /// `rediss://` only: a private CA's PEM bundle to trust (else the Mozilla roots).
    pub ca_file: Option<SpecPath>,
    /// `rediss://` only: this side's certificate and key (mutual TLS), both or neither.
    pub client_certificate: Option<SpecPath>,
    pub client_key: Option<SpecPath>,
}

/// A file the spec names, read when it is used (not by `validate`, which runs where the file
/// may not be), with where the spec names it for the errors of that read: `at` is
/// `spec.yaml:9:12: coordination.ca_file`. Equal when the paths are.
#[derive(Clone, Debug)]
pub struct SpecPath {
    pub path: PathBuf,
    pub at: String,
}

impl PartialEq for SpecPath {
    fn eq(&self, other: &SpecPath) -> bool {
        self.path == other.path
    }
}

impl Spec {
    /// The spec of each cloud, with the name its series carry: the spec itself with `cloud:`
    /// (no name); with `clouds:`, one spec per entry, its `cloud` that entry's block and its
    /// queries those that run in it.
    pub fn per_cloud(&self) -> Vec<(Option<&str>, Spec)> {
        if self.clouds.is_empty() {
            return vec![(None, self.clone())];
        }
        self.clouds
            .iter()
            .map(|c| {
                let mut s = self.clone();
                s.cloud = c.cloud.clone();
                s.clouds = vec![c.clone()];
                s.queries.retain(|q| {
                    q.clouds
                        .as_ref()
                        .is_none_or(|names| names.contains(&c.name))
                });
                (Some(c.name.as_str()), s)
            })
            .collect()
    }

    /// The first segment of the ids of this spec's period series (their checkpoints and
    /// running totals): the region with `cloud:`, as ever; with `clouds:`, the cloud's name
    /// and region (`cn-prod@cn-southwest-2`), so that two clouds of one region keep their
    /// own. A spec of several clouds plans one at a time ([`Spec::per_cloud`]): its first's.
    pub fn checkpoint_scope(&self) -> String {
        let region = self.cloud.region.as_deref().unwrap_or(DEFAULT_REGION);
        match self.clouds.first() {
            Some(c) => format!("{}@{region}", c.name),
            None => region.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.trim() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            "http/json" => Some(Protocol::HttpJson),
            _ => None,
        }
    }
}

/// `output.otlp` of the spec; every field optional, the environment fills the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtlpSettings {
    /// Base endpoint (`/v1/metrics` is appended for HTTP).
    pub endpoint: Option<String>,
    pub protocol: Option<Protocol>,
    pub headers: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub gzip: Option<bool>,
    /// CA bundle, client certificate and key (paths).
    pub certificate: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// gRPC without a scheme: no TLS.
    pub insecure: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_is_read_back_from_its_name() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.name()), Some(f));
        }
        for n in Format::NAMES {
            assert_eq!(Format::parse(n).map(Format::name), Some(n));
        }
        assert_eq!(Format::parse("nope"), None);
    }

    fn query(name: &str, clouds: Option<&[&str]>) -> QuerySpec {
        QuerySpec {
            name: name.into(),
            clouds: clouds.map(|c| c.iter().map(|s| s.to_string()).collect()),
            range: RangeExpr::LastDays(7),
            service_types: vec![ServiceType::Preset],
            infer_type: InferType::RealTime,
            key_groups: None,
            ips: None,
            source: Source::Statistics,
        }
    }

    fn named(name: &str, region: &str) -> NamedCloud {
        NamedCloud {
            name: name.into(),
            cloud: CloudSpec {
                region: Some(region.into()),
                ..CloudSpec::default()
            },
        }
    }

    #[test]
    fn each_cloud_gets_its_block_its_queries_and_a_scope_of_its_own() {
        let single = Spec {
            queries: vec![query("a", None)],
            ..Spec::default()
        };
        let per = single.per_cloud();
        assert_eq!(per.len(), 1);
        assert_eq!(
            (per[0].0, per[0].1.checkpoint_scope()),
            (None, DEFAULT_REGION.to_string())
        );
        let spec = Spec {
            clouds: vec![
                named("cn", "cn-southwest-2"),
                named("intl", "cn-southwest-2"),
            ],
            queries: vec![query("a", None), query("b", Some(&["intl"]))],
            ..Spec::default()
        };
        // Each cloud: its name, its queries, its scope, its region, as one line.
        let per: Vec<String> = spec
            .per_cloud()
            .into_iter()
            .map(|(n, s)| {
                let names: Vec<&str> = s.queries.iter().map(|q| q.name.as_str()).collect();
                let region = s.cloud.region.as_deref().unwrap_or("-");
                format!("{n:?} {names:?} {} {region}", s.checkpoint_scope())
            })
            .collect();
        assert_eq!(
            per,
            [
                r#"Some("cn") ["a"] cn@cn-southwest-2 cn-southwest-2"#,
                r#"Some("intl") ["a", "b"] intl@cn-southwest-2 cn-southwest-2"#,
            ],
            "two clouds of one region keep their checkpoints apart"
        );
    }

    #[test]
    fn an_agency_s_duration_is_what_sts_grants() {
        let a = |d: Option<&str>| AgencySpec {
            agency_urn: "iam::1:agency:x".into(),
            session_name: None,
            duration: d.map(String::from),
            external_id: None,
        };
        assert_eq!(a(None).duration(), Ok(Duration::from_secs(3600)));
        assert_eq!(a(Some("15m")).duration(), Ok(Duration::from_secs(900)));
        assert_eq!(a(Some("12h")).duration(), Ok(Duration::from_secs(43200)));
        for bad in ["14m", "899s", "13h", "1d", "soon"] {
            assert!(a(Some(bad)).duration().is_err(), "{bad}");
        }
        assert_eq!(a(None).session_name(), "maas-usage");
    }
}
