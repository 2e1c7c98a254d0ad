//! The manifest's shape: shared by the crate (`describe`, the tests) and build.rs, which
//! generates the metric tables from it (`#[path]`-included there, so it uses nothing but serde).

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub license: String,
    pub homepage: String,
    pub spec: SpecInfo,
    pub agents: Vec<Agent>,
    pub requires: Requires,
    pub attributes: Vec<Attribute>,
    pub resource: Vec<ResourceAttribute>,
    pub metrics: Vec<Metric>,
    pub model_metrics: Vec<ModelMetric>,
    pub model_attributes: Vec<ModelAttribute>,
    pub collector_metrics: Vec<CollectorMetric>,
    pub spend_metrics: Vec<SpendMetric>,
}

/// A Cloud Eye metric (`model_metrics`).
#[derive(Debug, Deserialize)]
pub struct ModelMetric {
    pub ces: String,
    pub field: String,
    pub title: String,
    pub unit: String,
    pub value: String,
    pub aggregate: String,
    pub otlp: String,
    pub prometheus: String,
    pub otlp_period: Option<String>,
    pub prometheus_period: Option<String>,
    pub description: String,
}

/// A tag of a Cloud Eye series (`model_attributes`).
#[derive(Debug, Deserialize)]
pub struct ModelAttribute {
    pub tag: String,
    pub otlp: String,
    pub prometheus: String,
    pub description: String,
}

#[derive(Debug, Deserialize)]
pub struct SpecInfo {
    pub schema: String,
    pub api_version: String,
    pub examples: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Agent {
    pub name: String,
    pub description: String,
    pub command: Vec<String>,
    pub data_format: Option<String>,
    pub signal: Option<String>,
    pub timeout: Option<String>,
    pub notes: Option<String>,
    pub example: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Requires {
    pub environment: Vec<EnvVar>,
    pub iam_permissions: Vec<Permission>,
    pub endpoints: Vec<NetEndpoint>,
    pub api_limits: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub description: String,
    pub secret: bool,
}

#[derive(Debug, Deserialize)]
pub struct Permission {
    pub name: String,
    pub description: String,
    pub required: bool,
}

#[derive(Debug, Deserialize)]
pub struct NetEndpoint {
    pub url: String,
    pub description: String,
}

#[derive(Debug, Deserialize)]
pub struct Attribute {
    pub tag: String,
    pub otlp: String,
    pub prometheus: String,
    /// Only a spec with `clouds:` sets it.
    #[serde(default)]
    pub clouds_only: bool,
    pub description: String,
}

#[derive(Debug, Deserialize)]
pub struct ResourceAttribute {
    pub otlp: String,
    pub prometheus: String,
    pub description: String,
}

#[derive(Debug, Deserialize)]
pub struct Metric {
    pub field: String,
    pub title: String,
    pub unit: String,
    pub value: String,
    pub batch_only: bool,
    pub otlp: Option<String>,
    pub prometheus: Option<String>,
    pub otlp_period: Option<String>,
    pub prometheus_period: Option<String>,
    pub description: String,
}

#[derive(Debug, Deserialize)]
pub struct CollectorMetric {
    pub field: String,
    pub unit: String,
    pub description: String,
    pub otlp: String,
    pub otlp_unit: String,
    pub outcome: Option<String>,
    pub prometheus: Option<String>,
    #[serde(default)]
    pub otlp_only: bool,
}

/// A measurement of the spec's prices and budgets (`spend_metrics`).
#[derive(Debug, Deserialize)]
pub struct SpendMetric {
    pub measurement: String,
    pub description: String,
    pub attributes: Vec<ModelAttribute>,
    pub fields: Vec<SpendField>,
}

/// A field of a spend measurement.
#[derive(Debug, Deserialize)]
pub struct SpendField {
    pub field: String,
    pub title: String,
    pub unit: String,
    pub value: String,
    pub otlp: String,
    pub prometheus: String,
    pub otlp_period: Option<String>,
    pub prometheus_period: Option<String>,
    pub description: String,
}
