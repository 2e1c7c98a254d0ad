//! The names of what the outputs carry, in one place: line-protocol fields and JSON keys, OTLP
//! metric and attribute names, Prometheus names and labels. `plugin.yaml` declares the same
//! and the tests hold each to the other.
//!
//! One identity per OTLP metric name: window totals (rolling, calendar and explicit windows)
//! are Gauges under `maas.usage.*`; period-mode buckets are monotonic Sums under
//! `maas.usage.period.*`, never mixed. Units are in `unit`, not in names. The Prometheus names
//! are what the OpenTelemetry Collector's Prometheus exporter makes of the OTLP ones (dots to
//! underscores, the unit's suffix, `_total` for monotonic sums, `_ratio` for unit `1`), so a
//! dashboard reads the same names from the textfile, `serve` and OTLP through the collector.

/// The tags every series carries in line protocol; static tags from the spec may not reuse
/// them. The first four name the series, the last two name the source.
pub const BUILTIN_TAGS: [&str; 6] = [
    "query",
    "service_type",
    "infer_type",
    "key_group",
    "project_id",
    "region",
];

/// The line-protocol measurement of Cloud Eye (per-model) series.
pub const MODEL_MEASUREMENT: &str = "maas_model_usage";

/// The tags of a Cloud Eye series in line protocol (the last two only with the API key
/// breakdown), plus `project_id` and `region`.
pub const MODEL_TAGS: [&str; 5] = ["query", "model", "model_id", "api_key", "api_key_id"];

/// The resource attributes the outputs set themselves (Prometheus carries them as labels).
pub const RESOURCE_ATTRIBUTES: [&str; 8] = [
    "service.name",
    "service.version",
    "service.instance.id",
    "host.name",
    "cloud.provider",
    "cloud.region",
    "huaweicloud.project.id",
    "cloud.account.id",
];

/// Every tag or label name an output sets itself, or the collector's Prometheus exporter does: a
/// static tag reusing one would hide or duplicate it (in line protocol, OTLP or Prometheus).
pub fn reserved_names() -> Vec<String> {
    let mut out: Vec<String> = BUILTIN_TAGS
        .iter()
        .chain(MODEL_TAGS.iter())
        .map(|t| t.to_string())
        .collect();
    out.extend(
        BUILTIN_TAGS[..4]
            .iter()
            .chain(MODEL_TAGS.iter())
            .map(|t| prometheus_label(&otlp_attribute(t))),
    );
    out.extend(RESOURCE_ATTRIBUTES.iter().map(|a| prometheus_label(a)));
    out.push(prometheus_label(OUTCOME_ATTRIBUTE));
    out.extend(COLLECTOR_LABELS.iter().map(|l| l.to_string()));
    out.sort();
    out.dedup();
    out
}

/// The OTLP data point attribute of a key tag (`query` -> `maas.query`, `model_id` ->
/// `maas.model.id`).
pub fn otlp_attribute(tag: &str) -> String {
    match tag.strip_suffix("_id") {
        Some(base) if tag != "project_id" => format!("maas.{base}.id"),
        _ => format!("maas.{tag}"),
    }
}

/// The OTLP resource attribute of a source tag.
pub fn otlp_resource_attribute(tag: &str) -> &'static str {
    match tag {
        "project_id" => "huaweicloud.project.id",
        _ => "cloud.region",
    }
}

/// The labels the collector's Prometheus exporter adds to every series itself: the
/// instrumentation scope, and `job` and `instance` (from `service.name` and
/// `service.instance.id`). An attribute with one of these labels would be refused as a duplicate.
pub const COLLECTOR_LABELS: [&str; 5] = [
    "job",
    "instance",
    "otel_scope_name",
    "otel_scope_version",
    "otel_scope_schema_url",
];

/// A Prometheus label name for an OTLP attribute key, as the OpenTelemetry Collector's
/// Prometheus exporter makes it by default (otlptranslator's `LabelNamer`, UTF-8 off, the
/// `pkg.translator.prometheus.PermissiveLabelSanitization` gate off): every character outside
/// `[A-Za-z0-9]` becomes `_` and a run of them one `_` (a key wrapped in `__` keeps the
/// wrapper); then a leading digit gets `key_` and a leading single `_` gets `key`. See
/// `label_refused` for the results the collector cannot use.
pub fn prometheus_label(attribute: &str) -> String {
    let reserved = attribute.len() >= 4 && attribute.starts_with("__") && attribute.ends_with("__");
    let inner = if reserved {
        attribute.get(2..attribute.len() - 2).unwrap_or("")
    } else {
        attribute
    };
    let mut out = String::with_capacity(attribute.len() + 4);
    if reserved {
        out.push_str("__");
    }
    let mut after_underscore = false;
    for c in inner.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            after_underscore = false;
        } else if !after_underscore {
            out.push('_');
            after_underscore = true;
        }
    }
    if reserved {
        out.push_str("__");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

/// A label the collector refuses, dropping the whole metric: empty or underscores only
/// (otlptranslator's error), or with the `__` prefix Prometheus reserves (client_golang's).
pub fn label_refused(label: &str) -> bool {
    label.chars().all(|c| c == '_') || label.starts_with("__")
}

/// The OpenTelemetry Collector's Prometheus name for an OTLP metric (its exporter's default
/// translation): the name split on every character that is not a letter or a digit, the unit's
/// word appended unless present (annotations in braces and `1` add none), `total` moved to the
/// end of a monotonic Sum, `ratio` to the end of a Gauge of unit `1`.
pub fn translate(otlp: &str, unit: &str, monotonic_sum: bool) -> String {
    let mut tokens: Vec<&str> = otlp
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    let word = match unit {
        "s" => Some("seconds"),
        "ms" => Some("milliseconds"),
        "By" => Some("bytes"),
        "%" => Some("percent"),
        _ => None,
    };
    if let Some(w) = word {
        if !tokens.contains(&w) {
            tokens.push(w);
        }
    }
    if monotonic_sum {
        tokens.retain(|t| *t != "total");
        tokens.push("total");
    } else if unit == "1" {
        tokens.retain(|t| *t != "ratio");
        tokens.push("ratio");
    }
    tokens.join("_")
}

/// How a field's value is typed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An integer count over the window (tokens, requests...).
    Count,
    /// A float ratio: a Gauge, and no period counter (it is derived from two).
    Ratio,
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The line-protocol field and JSON key.
    pub name: &'static str,
    pub kind: Kind,
    /// Only batch inference reports it.
    pub batch_only: bool,
    /// UCUM unit, with curly annotations for counts.
    pub unit: &'static str,
    /// The label people read (the table's rows, the console's wording).
    pub title: &'static str,
    pub description: &'static str,
    /// The OTLP Gauge of a window total.
    pub otlp: &'static str,
    /// Its Prometheus name.
    pub prometheus: &'static str,
    /// The OTLP monotonic Sum of period buckets (`None`: not a counter).
    pub otlp_period: Option<&'static str>,
    /// Its Prometheus name (a counter).
    pub prometheus_period: Option<&'static str>,
}

pub const FIELDS: &[Field] = &[
    Field {
        name: "total_tokens",
        kind: Kind::Count,
        batch_only: false,
        unit: "{token}",
        title: "Total Tokens",
        description: "Total tokens, as the API reports it (need not equal input + output).",
        otlp: "maas.usage.total_tokens",
        prometheus: "maas_usage_total_tokens",
        otlp_period: Some("maas.usage.period.total_tokens"),
        prometheus_period: Some("maas_usage_period_tokens_total"),
    },
    Field {
        name: "prompt_tokens",
        kind: Kind::Count,
        batch_only: false,
        unit: "{token}",
        title: "Prompt Tokens",
        description: "Input (prompt) tokens.",
        otlp: "maas.usage.input_tokens",
        prometheus: "maas_usage_input_tokens",
        otlp_period: Some("maas.usage.period.input_tokens"),
        prometheus_period: Some("maas_usage_period_input_tokens_total"),
    },
    Field {
        name: "completion_tokens",
        kind: Kind::Count,
        batch_only: false,
        unit: "{token}",
        title: "Completion Tokens",
        description: "Output (completion) tokens.",
        otlp: "maas.usage.output_tokens",
        prometheus: "maas_usage_output_tokens",
        otlp_period: Some("maas.usage.period.output_tokens"),
        prometheus_period: Some("maas_usage_period_output_tokens_total"),
    },
    Field {
        name: "requests",
        kind: Kind::Count,
        batch_only: false,
        unit: "{request}",
        title: "Total Requests",
        description: "Inference requests.",
        otlp: "maas.usage.requests",
        prometheus: "maas_usage_requests",
        otlp_period: Some("maas.usage.period.requests"),
        prometheus_period: Some("maas_usage_period_requests_total"),
    },
    Field {
        name: "errors",
        kind: Kind::Count,
        batch_only: false,
        unit: "{error}",
        title: "Total Errors",
        description: "Failed inference requests.",
        otlp: "maas.usage.errors",
        prometheus: "maas_usage_errors",
        otlp_period: Some("maas.usage.period.errors"),
        prometheus_period: Some("maas_usage_period_errors_total"),
    },
    Field {
        name: "error_ratio",
        kind: Kind::Ratio,
        batch_only: false,
        unit: "1",
        title: "Error Rate",
        description: "errors / requests (0 without requests).",
        otlp: "maas.usage.error_ratio",
        prometheus: "maas_usage_error_ratio",
        otlp_period: None,
        prometheus_period: None,
    },
    Field {
        name: "completed_tasks",
        kind: Kind::Count,
        batch_only: true,
        unit: "{task}",
        title: "Completed Tasks",
        description: "Completed batch inference tasks (batch only).",
        otlp: "maas.usage.completed_tasks",
        prometheus: "maas_usage_completed_tasks",
        otlp_period: Some("maas.usage.period.completed_tasks"),
        prometheus_period: Some("maas_usage_period_completed_tasks_total"),
    },
    Field {
        name: "infer_count",
        kind: Kind::Count,
        batch_only: true,
        unit: "{inference}",
        title: "Inference Count",
        description: "Batch inferences (batch only).",
        otlp: "maas.usage.inferences",
        prometheus: "maas_usage_inferences",
        otlp_period: Some("maas.usage.period.inferences"),
        prometheus_period: Some("maas_usage_period_inferences_total"),
    },
];

/// The window's length: a field in line protocol, a Gauge in OTLP and Prometheus (where a
/// point has no start time to show it).
pub const WINDOW_FIELD: Field = Field {
    name: "window_seconds",
    kind: Kind::Count,
    batch_only: false,
    unit: "s",
    title: "Window",
    description: "Length of the series' window.",
    otlp: "maas.usage.window",
    prometheus: "maas_usage_window_seconds",
    otlp_period: None,
    prometheus_period: None,
};
pub const WINDOW_SECONDS: &str = WINDOW_FIELD.name;

/// Period mode's buckets carry their length under this name in line protocol only (OTLP has
/// start and end times; Prometheus counters have no buckets).
pub const PERIOD_FIELD: Field = Field {
    name: "period_seconds",
    kind: Kind::Count,
    batch_only: false,
    unit: "s",
    title: "Period",
    description:
        "Length of a period-mode bucket (line protocol; the point's timestamp is the bucket's end).",
    otlp: "",
    prometheus: "",
    otlp_period: None,
    prometheus_period: None,
};

/// The attribute that tells the two series counts apart in OTLP and Prometheus.
pub const OUTCOME_ATTRIBUTE: &str = "maas.outcome";

/// One self-metric of a collection.
#[derive(Clone, Copy, Debug)]
pub struct CollectorField {
    /// The field of the line-protocol collector line.
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    /// The OTLP Gauge (the two series counts share one, told apart by `outcome`).
    pub otlp: &'static str,
    pub otlp_unit: &'static str,
    /// `maas.outcome` of the point, for the series counts.
    pub outcome: Option<&'static str>,
    pub prometheus: &'static str,
}

pub const COLLECTOR_FIELDS: &[CollectorField] = &[
    CollectorField {
        name: "series_ok",
        unit: "{series}",
        description: "Series collected in this collection.",
        otlp: "maas.collector.series",
        otlp_unit: "{series}",
        outcome: Some("ok"),
        prometheus: "maas_collector_series",
    },
    CollectorField {
        name: "series_failed",
        unit: "{series}",
        description: "Series that failed in this collection (each is one stderr line).",
        otlp: "maas.collector.series",
        otlp_unit: "{series}",
        outcome: Some("failed"),
        prometheus: "maas_collector_series",
    },
    CollectorField {
        name: "api_calls",
        unit: "{call}",
        description: "HTTP requests sent to the API, retries and IAM discovery included.",
        otlp: "maas.collector.calls",
        otlp_unit: "{call}",
        outcome: None,
        prometheus: "maas_collector_calls",
    },
    CollectorField {
        name: "api_retries",
        unit: "{call}",
        description: "Of those, retries.",
        otlp: "maas.collector.retries",
        otlp_unit: "{call}",
        outcome: None,
        prometheus: "maas_collector_retries",
    },
    CollectorField {
        name: "throttled",
        unit: "{call}",
        description: "Answers with HTTP 429.",
        otlp: "maas.collector.throttled",
        otlp_unit: "{call}",
        outcome: None,
        prometheus: "maas_collector_throttled",
    },
    CollectorField {
        name: "duration_ms",
        unit: "ms",
        description: "Wall time of the collection.",
        otlp: "maas.collector.duration",
        otlp_unit: "s",
        outcome: None,
        prometheus: "maas_collector_duration_seconds",
    },
];

/// Sent after an OTLP export only: how many points of it the collector rejected (a partial
/// success). No other output has a receiver that could reject points.
pub const EXPORT_REJECTED: CollectorField = CollectorField {
    name: "points_rejected",
    unit: "{point}",
    description:
        "Data points of this collection's export the collector rejected (partial success).",
    otlp: "maas.collector.export.rejected",
    otlp_unit: "{point}",
    outcome: None,
    prometheus: "maas_collector_export_rejected",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_collectors() {
        for (key, label) in [
            ("cloud.region", "cloud_region"),
            ("9lives", "key_9lives"),
            ("x.__y", "x_y"),
            ("a__b", "a_b"),
            ("_foo", "key_foo"),
            ("__name__", "__name__"),
            ("...", "key_"),
        ] {
            assert_eq!(prometheus_label(key), label, "{key}");
        }
        for refused in ["", "____", "__name__"] {
            assert!(label_refused(&prometheus_label(refused)), "{refused:?}");
        }
        assert!(!label_refused("key_"));
    }

    #[test]
    fn every_prometheus_name_is_the_translation_of_its_otlp_name() {
        for f in FIELDS.iter().chain([&WINDOW_FIELD]) {
            assert_eq!(translate(f.otlp, f.unit, false), f.prometheus, "{}", f.name);
            if let (Some(o), Some(p)) = (f.otlp_period, f.prometheus_period) {
                assert_eq!(translate(o, f.unit, true), p, "{}", f.name);
            }
        }
        for c in COLLECTOR_FIELDS {
            assert_eq!(
                translate(c.otlp, c.otlp_unit, false),
                c.prometheus,
                "{}",
                c.name
            );
        }
    }
}
