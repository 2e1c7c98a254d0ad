//! `plugin.yaml`, the plugin's manifest, embedded: docs/metrics.md is generated from
//! it (`maas-usage describe --markdown`) and the tests hold the code and its outputs to it.

use serde::Deserialize;

pub const PLUGIN_YAML: &str = include_str!("../plugin.yaml");

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
    pub metrics: Vec<Metric>,
    pub collector_metrics: Vec<CollectorMetric>,
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
    pub otlp: Option<String>,
    pub otlp_resource: Option<String>,
    pub description: String,
}

#[derive(Debug, Deserialize)]
pub struct Metric {
    pub field: String,
    pub otlp: Option<String>,
    pub prometheus: Option<String>,
    pub unit: String,
    pub title: String,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub batch_only: bool,
    pub description: String,
}

#[derive(Debug, Deserialize)]
pub struct CollectorMetric {
    pub field: String,
    pub otlp: String,
    pub prometheus: String,
    pub unit: String,
    pub description: String,
}

/// The embedded manifest cannot be read (a build defect the tests catch).
#[derive(Debug, thiserror::Error)]
#[error("plugin.yaml: {0}")]
pub struct ManifestError(String);

/// The embedded manifest.
pub fn load() -> Result<Manifest, ManifestError> {
    serde_saphyr::from_str(PLUGIN_YAML).map_err(|e| ManifestError(e.to_string()))
}

fn code(s: &str) -> String {
    format!("`{s}`")
}

/// The Markdown tables of docs/metrics.md.
pub fn markdown(m: &Manifest) -> String {
    let mut out = String::new();
    out.push_str("| line protocol field | OTLP metric | Prometheus | unit | value | OTLP type | description |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for x in &m.metrics {
        let kind = match x.kind.as_str() {
            "gauge" => "Gauge",
            _ => "Sum (cumulative) when the window ends now, else Gauge; delta Sum in period mode",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {kind} | {} |\n",
            code(&x.field),
            x.otlp
                .as_deref()
                .map(code)
                .unwrap_or_else(|| "(start and end times)".into()),
            x.prometheus
                .as_deref()
                .map(code)
                .unwrap_or_else(|| "(not in the textfile)".into()),
            code(&x.unit),
            x.value,
            x.description
        ));
    }
    out.push_str("\nSelf-metrics, one set per run (`maas_usage_collector` in line protocol, tags `project_id` and `region`; Gauges in OTLP):\n\n");
    out.push_str("| line protocol field | OTLP metric | Prometheus | unit | description |\n");
    out.push_str("|---|---|---|---|---|\n");
    for x in &m.collector_metrics {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            code(&x.field),
            code(&x.otlp),
            code(&x.prometheus),
            code(&x.unit),
            x.description
        ));
    }
    out.push_str("\nTags (line protocol), labels (Prometheus) and attributes (OTLP), plus the spec's `output.tags` on every series:\n\n");
    out.push_str("| tag / label | OTLP | description |\n");
    out.push_str("|---|---|---|\n");
    for a in &m.attributes {
        let otlp = match (&a.otlp, &a.otlp_resource) {
            (Some(o), _) => format!("{} (data point)", code(o)),
            (None, Some(r)) => format!("{} (resource)", code(r)),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "| {} | {otlp} | {} |\n",
            code(&a.tag),
            a.description
        ));
    }
    out
}
