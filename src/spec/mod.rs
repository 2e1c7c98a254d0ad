//! The declarative spec: typed form. Loading, schema validation and located errors live in
//! the submodules; everything downstream sees only these types.

use std::collections::BTreeMap;
pub mod convert;
pub mod errors;
pub mod load;
pub mod merge;
pub mod schema;
pub mod yaml;

use std::path::PathBuf;
use std::time::Duration;

use crate::domain::RangeExpr;
use crate::domain::{InferType, ServiceType};

pub const DEFAULT_REGION: &str = "cn-southwest-2";

#[derive(Clone, Debug, Default, PartialEq)]
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
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuerySpec {
    pub name: String,
    pub range: RangeExpr,
    pub service_types: Vec<ServiceType>,
    pub infer_type: InferType,
    /// `None`: all keys, one series with key group `all`.
    pub key_groups: Option<Vec<String>>,
    pub ips: Option<Vec<String>>,
}

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

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "influx" => Some(Format::Influx),
            "otlp" => Some(Format::Otlp),
            "otlp-json" => Some(Format::OtlpJson),
            "prometheus" => Some(Format::Prometheus),
            "table" => Some(Format::Table),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutputSpec {
    pub format: Format,
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub otlp: OtlpSettings,
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            format: Format::Influx,
            measurement: "maas_usage".into(),
            tags: BTreeMap::new(),
            otlp: OtlpSettings::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// The whole run; it ends by then with what it has.
    pub timeout: Duration,
    pub requests_per_minute: u32,
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(25),
            requests_per_minute: 200,
            concurrency: 4,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spec {
    pub cloud: CloudSpec,
    pub timezone: Option<String>,
    pub key_groups: BTreeMap<String, Vec<String>>,
    pub queries: Vec<QuerySpec>,
    pub output: OutputSpec,
    pub limits: Limits,
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
