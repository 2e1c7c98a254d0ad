//! Files generated for the tools around the plugin, from a spec and the manifest: a Prometheus
//! rule file (`rules`), a Grafana dashboard (`dashboard`) and the monthly HTML spend report
//! (`report`). The metric and label names come from plugin.yaml alone ([`Names`]).

pub mod dashboard;
pub mod report;
pub mod rules;

use crate::domain::names::{prometheus_label, OUTCOME_ATTRIBUTE};
use crate::manifest::Manifest;

/// plugin.yaml lacks a metric these files need (a build defect the tests catch).
#[derive(Debug, thiserror::Error)]
#[error("plugin.yaml declares no {0}")]
pub struct GenerateError(String);

/// The Prometheus names the generated files use, each looked up in the manifest.
#[derive(Clone, Debug)]
pub struct Names {
    pub last_success: String,
    pub consecutive_failures: String,
    /// The series counts, told apart by `outcome_label`.
    pub series: String,
    pub outcome_label: String,
    pub failed: String,
    pub ok: String,
    pub throttled: String,
    pub calls: String,
    pub duration: String,
    pub model_requests: String,
    pub model_errors: String,
    pub model_input_tokens: String,
    pub model_output_tokens: String,
    pub model_ttft_p99: Option<String>,
    pub query_label: String,
    pub model_label: String,
    pub api_key_label: String,
    pub key_group_label: String,
    pub cost: String,
    pub currency_label: String,
    pub limit: String,
    pub used: String,
    pub used_ratio: String,
    pub forecast: String,
    pub budget_label: String,
    pub period_label: String,
}

/// The names of `m`.
pub fn names(m: &Manifest) -> Result<Names, GenerateError> {
    let missing = |what: &str| GenerateError(what.to_string());
    let collector = |field: &str| {
        m.collector_metrics
            .iter()
            .find(|c| c.field == field)
            .and_then(|c| c.prometheus.clone())
            .ok_or_else(|| missing(&format!("collector metric {field}")))
    };
    let series_failed = m
        .collector_metrics
        .iter()
        .find(|c| c.field == "series_failed")
        .ok_or_else(|| missing("collector metric series_failed"))?;
    let series_ok = m
        .collector_metrics
        .iter()
        .find(|c| c.field == "series_ok")
        .ok_or_else(|| missing("collector metric series_ok"))?;
    let model = |ces: &str| {
        m.model_metrics
            .iter()
            .find(|x| x.ces == ces)
            .map(|x| x.prometheus.clone())
    };
    let model_req = |ces: &str| model(ces).ok_or_else(|| missing(&format!("model metric {ces}")));
    let model_tag = |tag: &str| {
        m.model_attributes
            .iter()
            .find(|a| a.tag == tag)
            .map(|a| a.prometheus.clone())
            .ok_or_else(|| missing(&format!("model attribute {tag}")))
    };
    let spend = |measurement: &str, field: &str| {
        m.spend_field(measurement, field)
            .map(|f| f.prometheus.clone())
            .ok_or_else(|| missing(&format!("{measurement} field {field}")))
    };
    let spend_tag = |measurement: &str, tag: &str| {
        m.spend_metrics
            .iter()
            .find(|s| s.measurement == measurement)
            .and_then(|s| s.attributes.iter().find(|a| a.tag == tag))
            .map(|a| a.prometheus.clone())
            .ok_or_else(|| missing(&format!("{measurement} tag {tag}")))
    };
    Ok(Names {
        last_success: collector("last_success_ms")?,
        consecutive_failures: collector("consecutive_failures")?,
        series: series_failed
            .prometheus
            .clone()
            .ok_or_else(|| missing("a Prometheus name of series_failed"))?,
        outcome_label: prometheus_label(OUTCOME_ATTRIBUTE),
        failed: series_failed.outcome.clone().unwrap_or_default(),
        ok: series_ok.outcome.clone().unwrap_or_default(),
        throttled: collector("throttled")?,
        calls: collector("api_calls")?,
        duration: collector("duration_ms")?,
        model_requests: model_req("req_count")?,
        model_errors: model_req("req_count_error")?,
        model_input_tokens: model_req("prompt_tokens")?,
        model_output_tokens: model_req("completion_tokens")?,
        model_ttft_p99: model("ttft_p99"),
        query_label: model_tag("query")?,
        model_label: model_tag("model")?,
        api_key_label: model_tag("api_key")?,
        key_group_label: spend_tag("maas_budget", "key_group")?,
        cost: spend("maas_model_cost", "cost")?,
        currency_label: spend_tag("maas_model_cost", "currency")?,
        limit: spend("maas_budget", "limit")?,
        used: spend("maas_budget", "used")?,
        used_ratio: spend("maas_budget", "used_ratio")?,
        forecast: spend("maas_budget", "forecast")?,
        budget_label: spend_tag("maas_budget", "budget")?,
        period_label: spend_tag("maas_budget", "period")?,
    })
}
