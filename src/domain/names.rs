//! The names of the values a series carries, in one place: line-protocol fields, JSON keys,
//! OTLP metric names (`maas.usage.` + name) and Prometheus names (`<measurement>_` + name) are
//! all derived from these tables, and `plugin.yaml` is checked against them.

/// The tags every series carries (line protocol tags, Prometheus labels); static tags from the
/// spec may not reuse them. The first four name the series (OTLP data point attributes as
/// `maas.<tag>`), the last two name the source (OTLP resource attributes).
pub const BUILTIN_TAGS: [&str; 6] = [
    "query",
    "service_type",
    "infer_type",
    "key_group",
    "project_id",
    "region",
];

/// The OTLP data point attribute of a key tag.
pub fn otlp_attribute(tag: &str) -> String {
    format!("maas.{tag}")
}

/// How a field's value is typed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An integer count over the window (tokens, requests...).
    Count,
    /// A float ratio; always a Gauge in OTLP.
    Ratio,
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Only batch inference reports it.
    pub batch_only: bool,
    /// UCUM unit, with curly annotations for counts.
    pub unit: &'static str,
    /// The label people read (the table's rows, the console's wording).
    pub title: &'static str,
    pub description: &'static str,
}

pub const FIELDS: &[Field] = &[
    Field {
        name: "total_tokens",
        kind: Kind::Count,
        batch_only: false,
        unit: "{token}", title: "Total Tokens",
        description: "Total tokens in the window, as the API reports it (need not equal prompt + completion).",
    },
    Field { name: "prompt_tokens", kind: Kind::Count, batch_only: false, unit: "{token}", title: "Prompt Tokens", description: "Input (prompt) tokens in the window." },
    Field {
        name: "completion_tokens",
        kind: Kind::Count,
        batch_only: false,
        unit: "{token}", title: "Completion Tokens",
        description: "Output (completion) tokens in the window.",
    },
    Field { name: "requests", kind: Kind::Count, batch_only: false, unit: "{request}", title: "Total Requests", description: "Inference requests in the window." },
    Field { name: "errors", kind: Kind::Count, batch_only: false, unit: "{error}", title: "Total Errors", description: "Failed inference requests in the window." },
    Field { name: "error_ratio", kind: Kind::Ratio, batch_only: false, unit: "1", title: "Error Rate", description: "errors / requests (0 without requests)." },
    Field {
        name: "completed_tasks",
        kind: Kind::Count,
        batch_only: true,
        unit: "{task}", title: "Completed Tasks",
        description: "Completed batch inference tasks in the window (batch only).",
    },
    Field { name: "infer_count", kind: Kind::Count, batch_only: true, unit: "{inference}", title: "Inference Count", description: "Batch inferences in the window (batch only)." },
];

/// Line protocol and Prometheus also carry the window's length (OTLP has start and end times).
pub const WINDOW_FIELD: Field = Field {
    name: "window_seconds",
    kind: Kind::Count,
    batch_only: false,
    unit: "s", title: "Window",
    description: "Length of the series' window in seconds (line protocol and Prometheus; OTLP carries it as start and end times).",
};
pub const WINDOW_SECONDS: &str = WINDOW_FIELD.name;

/// Period mode's buckets carry their length under this name instead (line protocol only:
/// OTLP has start and end times, and the Prometheus textfile takes no buckets).
pub const PERIOD_FIELD: Field = Field {
    name: "period_seconds",
    kind: Kind::Count,
    batch_only: false,
    unit: "s", title: "Period",
    description: "Length of a period-mode bucket in seconds (line protocol; the point's timestamp is the bucket's end).",
};

/// The run's self-metrics: name, unit, description.
pub const COLLECTOR_FIELDS: &[(&str, &str, &str)] = &[
    ("series_ok", "{series}", "Series collected in this run."),
    (
        "series_failed",
        "{series}",
        "Series that failed in this run (each is one stderr line).",
    ),
    (
        "api_calls",
        "{call}",
        "HTTP requests sent to the API, retries and IAM discovery included.",
    ),
    ("api_retries", "{call}", "Of those, retries."),
    ("throttled", "{call}", "Answers with HTTP 429."),
    ("duration_ms", "ms", "Wall time of the run."),
];

/// The OTLP metric name of a series field.
pub fn otlp_name(field: &str) -> String {
    format!("maas.usage.{field}")
}

/// The OTLP metric name of a collector field.
pub fn otlp_collector_name(field: &str) -> String {
    format!("maas.collector.{field}")
}

/// The Prometheus name of a field (after `<measurement>_`): the field name, except where
/// Prometheus conventions forbid it (`promtool check metrics`): no `_count` suffix outside
/// histograms, and base units (seconds) instead of abbreviations.
pub fn prometheus_name(field: &str) -> &str {
    match field {
        "infer_count" => "inferences",
        "duration_ms" => "duration_seconds",
        other => other,
    }
}
