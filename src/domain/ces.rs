//! Cloud Eye's `SYS.MaaS` vocabulary: the metrics the plugin knows (how each is asked for,
//! combined over a window and named in every output), the dimensions of a per-model or per-key
//! series, and the shapes of the CES calls and their answers.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const NAMESPACE: &str = "SYS.MaaS";
/// Level 0: one model service.
pub const DIM_MODEL: &str = "maas_api_id";
/// Level 1: one API key under that service.
pub const DIM_KEY: &str = "maas_key_id";
/// Metric objects one batch-query-metric-data call may carry.
pub const MAX_METRICS_PER_CALL: usize = 500;
/// Entries one ListMetrics page may carry.
pub const LIST_LIMIT: usize = 1000;

/// How a metric is asked for (`filter`) and combined over the periods of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Aggregate {
    /// Counts and tokens: `filter: sum`, added up exactly (integers).
    Sum,
    /// Percentiles and averages: `filter: max` (each period's highest minute), and the window's
    /// highest period: the highest minute of the window; never summed.
    Max,
}

impl Aggregate {
    pub fn filter(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Max => "max",
        }
    }
}

/// One metric of `SYS.MaaS` the plugin can emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CesMetric {
    /// Its name in Cloud Eye (and in the spec's `metrics:`).
    pub ces: &'static str,
    /// The line-protocol field (latency in milliseconds, `_ms`).
    pub field: &'static str,
    /// The OTLP name after `maas.model.` (and `maas.model.period.` for period counts).
    pub otlp: &'static str,
    /// OTLP unit: counts `{token}`/`{request}`/`{error}`, latency `s` (converted from ms).
    pub unit: &'static str,
    pub aggregate: Aggregate,
    pub title: &'static str,
    pub description: &'static str,
}

impl CesMetric {
    pub fn is_count(&self) -> bool {
        self.aggregate == Aggregate::Sum
    }

    /// The OTLP Gauge of a window's figure.
    pub fn otlp_name(&self) -> String {
        format!("maas.model.{}", self.otlp)
    }

    /// The OTLP monotonic Sum of period buckets (counts only).
    pub fn otlp_period_name(&self) -> Option<String> {
        self.is_count()
            .then(|| format!("maas.model.period.{}", self.otlp))
    }

    /// What the collector's Prometheus exporter makes of `otlp_name` (a gauge).
    pub fn prometheus_name(&self) -> String {
        super::names::translate(&self.otlp_name(), self.unit, false)
    }

    /// What it makes of `otlp_period_name` (a counter).
    pub fn prometheus_period_name(&self) -> Option<String> {
        self.otlp_period_name()
            .map(|n| super::names::translate(&n, self.unit, true))
    }
}

const fn count(
    ces: &'static str,
    field: &'static str,
    otlp: &'static str,
    unit: &'static str,
    title: &'static str,
    description: &'static str,
) -> CesMetric {
    CesMetric {
        ces,
        field,
        otlp,
        unit,
        aggregate: Aggregate::Sum,
        title,
        description,
    }
}

const fn latency(
    ces: &'static str,
    field: &'static str,
    title: &'static str,
    description: &'static str,
) -> CesMetric {
    CesMetric {
        ces,
        field,
        otlp: ces,
        unit: "s",
        aggregate: Aggregate::Max,
        title,
        description,
    }
}

/// Every metric the plugin knows, in output order. ListMetrics says at run time which of them
/// the account really has.
#[rustfmt::skip]
pub const CES_METRICS: &[CesMetric] = &[
    count("total_tokens", "total_tokens", "total_tokens", "{token}", "Total Tokens", "Total tokens, as Cloud Eye counts them."),
    count("prompt_tokens", "prompt_tokens", "input_tokens", "{token}", "Prompt Tokens", "Input (prompt) tokens."),
    count("completion_tokens", "completion_tokens", "output_tokens", "{token}", "Completion Tokens", "Output (completion) tokens."),
    count("req_count", "requests", "requests", "{request}", "Requests", "Requests."),
    count("req_count_error", "errors", "errors", "{error}", "Errors", "Failed requests."),
    count("req_count_2xx", "requests_2xx", "requests_2xx", "{request}", "2xx", "Requests answered 2xx."),
    count("req_count_4xx", "requests_4xx", "requests_4xx", "{request}", "4xx", "Requests answered 4xx."),
    count("req_count_5xx", "requests_5xx", "requests_5xx", "{request}", "5xx", "Requests answered 5xx."),
    count("req_count_400", "requests_400", "requests_400", "{request}", "400", "Requests answered 400."),
    count("req_count_401", "requests_401", "requests_401", "{request}", "401", "Requests answered 401."),
    count("req_count_403", "requests_403", "requests_403", "{request}", "403", "Requests answered 403."),
    count("req_count_404", "requests_404", "requests_404", "{request}", "404", "Requests answered 404."),
    count("req_count_413", "requests_413", "requests_413", "{request}", "413", "Requests answered 413."),
    count("req_count_429", "requests_429", "requests_429", "{request}", "429", "Requests answered 429 (throttled)."),
    count("req_count_500", "requests_500", "requests_500", "{request}", "500", "Requests answered 500."),
    count("req_count_503", "requests_503", "requests_503", "{request}", "503", "Requests answered 503."),
    count("req_count_504", "requests_504", "requests_504", "{request}", "504", "Requests answered 504."),
    latency("ttft", "ttft_ms", "TTFT", "Time to first token (streaming), average: the highest minute of the window."),
    latency("ttft_p50", "ttft_p50_ms", "TTFT p50", "Time to first token, p50: the highest minute of the window."),
    latency("ttft_p80", "ttft_p80_ms", "TTFT p80", "Time to first token, p80: the highest minute of the window."),
    latency("ttft_p90", "ttft_p90_ms", "TTFT p90", "Time to first token, p90: the highest minute of the window."),
    latency("ttft_p99", "ttft_p99_ms", "TTFT p99", "Time to first token, p99: the highest minute of the window."),
    latency("ttft_max", "ttft_max_ms", "TTFT max", "Time to first token, maximum of the window."),
    latency("tpot", "tpot_ms", "TPOT", "Time per output token (streaming), average: the highest minute of the window."),
    latency("tpot_p50", "tpot_p50_ms", "TPOT p50", "Time per output token, p50: the highest minute of the window."),
    latency("tpot_p80", "tpot_p80_ms", "TPOT p80", "Time per output token, p80: the highest minute of the window."),
    latency("tpot_p90", "tpot_p90_ms", "TPOT p90", "Time per output token, p90: the highest minute of the window."),
    latency("tpot_p99", "tpot_p99_ms", "TPOT p99", "Time per output token, p99: the highest minute of the window."),
    latency("tpot_max", "tpot_max_ms", "TPOT max", "Time per output token, maximum of the window."),
    latency("latency_avg", "latency_avg_ms", "Latency avg", "Request latency, average: the highest minute of the window."),
];

/// Asked for when a query names no `metrics:`: tokens, requests and their error classes, and
/// the latency percentiles people chart.
pub const DEFAULT_METRICS: &[&str] = &[
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "req_count",
    "req_count_error",
    "req_count_4xx",
    "req_count_5xx",
    "req_count_429",
    "ttft_p50",
    "ttft_p99",
    "tpot_p50",
    "tpot_p99",
    "latency_avg",
];

/// The metric named `ces` in Cloud Eye, if the plugin knows it.
pub fn metric(ces: &str) -> Option<&'static CesMetric> {
    CES_METRICS.iter().find(|m| m.ces == ces)
}

/// The dimensions of one CES series: a model service, or one API key under it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dims {
    pub model_id: String,
    pub key_id: Option<String>,
}

impl Dims {
    /// As the API writes them: `[{"name":"maas_api_id","value":..}, ...]`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = vec![serde_json::json!({"name": DIM_MODEL, "value": self.model_id})];
        if let Some(k) = &self.key_id {
            v.push(serde_json::json!({"name": DIM_KEY, "value": k}));
        }
        serde_json::Value::Array(v)
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DIM_MODEL}={}", self.model_id)?;
        if let Some(k) = &self.key_id {
            write!(f, ",{DIM_KEY}={k}")?;
        }
        Ok(())
    }
}

/// A model, or an API key under it: the id Cloud Eye knows and the name people do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Named {
    pub id: String,
    pub name: String,
}

/// The identity of a Cloud Eye series: what its tags are made of.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModelKey {
    pub query: String,
    pub model: Named,
    pub api_key: Option<Named>,
}

impl ModelKey {
    /// The id its running totals are kept under (period mode).
    pub fn total_id(&self, checkpoint: &str) -> String {
        match &self.api_key {
            Some(k) => format!("{checkpoint}/{}/{}", self.model.id, k.id),
            None => format!("{checkpoint}/{}", self.model.id),
        }
    }
}

impl std::fmt::Display for ModelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query={} model={}", self.query, self.model.name)?;
        if let Some(k) = &self.api_key {
            write!(f, " api_key={}", k.name)?;
        }
        Ok(())
    }
}

/// One page of ListMetrics: which (metric, series) pairs exist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricPage {
    pub entries: Vec<(String, Dims)>,
    /// Where the next page starts (`start=`); empty at the end.
    pub marker: String,
    /// Entries matching the query in all pages, when the server says.
    pub total: Option<usize>,
}

/// One batch-query-metric-data call.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchRequest {
    pub metrics: Vec<(&'static CesMetric, Dims)>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Seconds: 60, 300, 1200, 3600, 14400 or 86400.
    pub period_s: u32,
    pub aggregate: Aggregate,
}

impl BatchRequest {
    /// The JSON body, signed and sent as is.
    pub fn to_bytes(&self) -> Vec<u8> {
        let metrics: Vec<serde_json::Value> = self
            .metrics
            .iter()
            .map(|(m, d)| {
                serde_json::json!({"namespace": NAMESPACE, "metric_name": m.ces, "dimensions": d.to_json()})
            })
            .collect();
        serde_json::json!({
            "metrics": metrics,
            "from": self.from_ms,
            "to": self.to_ms,
            "period": self.period_s.to_string(),
            "filter": self.aggregate.filter(),
        })
        .to_string()
        .into_bytes()
    }
}

/// The datapoints of one metric object: `(bucket start ms, value)`.
pub type Datapoints = Vec<(i64, f64)>;

/// A batch answer: for each metric object of the request, in order, its datapoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchAnswer {
    pub series: Vec<((String, Dims), Datapoints)>,
    pub request_id: Option<String>,
}

/// The human names of ids (the MaaS monitor's instances API), best effort.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub models: std::collections::BTreeMap<String, String>,
    pub keys: std::collections::BTreeMap<String, String>,
}

/// What discovery found: for each metric asked for, the series Cloud Eye has, and the names of
/// their ids. Cached in the state directory for an hour (new models and keys show up within it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    pub metrics: std::collections::BTreeMap<String, std::collections::BTreeSet<Dims>>,
    pub names: Names,
    /// Whether the MaaS monitor answered (else names are asked again next time).
    #[serde(default)]
    pub named: bool,
}

/// The CES periods, longest first, and how long a window each may cover before the server
/// silently moves `from` (the documented limits; 60 s has none documented, so the shortest
/// known one is assumed).
pub const PERIODS: &[(u32, i64)] = &[
    (86_400, 180 * 86_400_000),
    (14_400, 30 * 86_400_000),
    (3_600, 10 * 86_400_000),
    (1_200, 3 * 86_400_000),
    (300, 86_400_000),
    (60, 4 * 3_600_000),
];

/// The longest window one call of period `period_s` may cover.
pub fn span_limit_ms(period_s: u32) -> i64 {
    PERIODS
        .iter()
        .find(|(p, _)| *p == period_s)
        .map(|(_, l)| *l)
        .unwrap_or(4 * 3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_collectors_rule() {
        let total = metric("total_tokens").unwrap();
        assert_eq!(total.otlp_name(), "maas.model.total_tokens");
        assert_eq!(total.prometheus_name(), "maas_model_total_tokens");
        assert_eq!(
            total.prometheus_period_name().as_deref(),
            Some("maas_model_period_tokens_total")
        );
        let ttft = metric("ttft_p99").unwrap();
        assert_eq!(ttft.prometheus_name(), "maas_model_ttft_p99_seconds");
        assert_eq!(ttft.otlp_period_name(), None);
        let r429 = metric("req_count_429").unwrap();
        assert_eq!(
            r429.prometheus_period_name().as_deref(),
            Some("maas_model_period_requests_429_total")
        );
    }

    #[test]
    fn the_catalog_is_consistent() {
        let mut fields: Vec<&str> = CES_METRICS.iter().map(|m| m.field).collect();
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields.len(), CES_METRICS.len(), "fields are unique");
        for d in DEFAULT_METRICS {
            assert!(metric(d).is_some(), "{d}");
        }
        for m in CES_METRICS {
            assert_eq!(m.field.ends_with("_ms"), !m.is_count(), "{}", m.ces);
        }
    }

    #[test]
    fn a_batch_body_is_what_the_api_documents() {
        let r = BatchRequest {
            metrics: vec![(
                metric("total_tokens").unwrap(),
                Dims {
                    model_id: "m1".into(),
                    key_id: Some("k1".into()),
                },
            )],
            from_ms: 1,
            to_ms: 2,
            period_s: 3600,
            aggregate: Aggregate::Sum,
        };
        let v: serde_json::Value = serde_json::from_slice(&r.to_bytes()).unwrap();
        assert_eq!(v["period"], "3600");
        assert_eq!(v["filter"], "sum");
        assert_eq!(v["metrics"][0]["namespace"], "SYS.MaaS");
        assert_eq!(v["metrics"][0]["dimensions"][1]["name"], "maas_key_id");
    }
}
