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

/// The tag naming a series' cloud: an entry of `clouds`. Only a spec with `clouds` sets it (on
/// every series and self-metric, with the other source tags), so the series of a `cloud` block
/// stay as they were; `output.tags` may use it then.
pub const CLOUD_TAG: &str = "cloud";

/// The line-protocol measurement of Cloud Eye (per-model) series.
pub const MODEL_MEASUREMENT: &str = "maas_model_usage";

/// The tags of a Cloud Eye series in line protocol (`api_key` and `api_key_id` only with the
/// API key breakdown, `key_group` only with a key group one, which has no model tags with
/// `breakdown: [key_group]`), plus `project_id` and `region`.
pub const MODEL_TAGS: [&str; 6] = [
    "query",
    "model",
    "model_id",
    "api_key",
    "api_key_id",
    "key_group",
];

/// The resource attributes the outputs set themselves (Prometheus carries them on
/// `target_info`; `project_id` and `region` are on every data point too).
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
    for t in COST.tags.iter().chain(BUDGET.tags) {
        out.extend([t.tag.to_string(), t.prometheus.to_string()]);
    }
    out.extend(RESOURCE_ATTRIBUTES.iter().map(|a| prometheus_label(a)));
    out.push(prometheus_label(OUTCOME_ATTRIBUTE));
    out.extend(COLLECTOR_LABELS.iter().map(|l| l.to_string()));
    out.sort();
    out.dedup();
    out
}

/// The OTLP data point attribute of a tag (`query` -> `maas.query`, `model_id` ->
/// `maas.model.id`; the source's `project_id` and `region` keep the resource's semantic names,
/// `huaweicloud.project.id` and `cloud.region`, so their Prometheus labels stay
/// `huaweicloud_project_id` and `cloud_region`).
pub fn otlp_attribute(tag: &str) -> String {
    match tag {
        "project_id" => "huaweicloud.project.id".into(),
        "region" => "cloud.region".into(),
        _ => match tag.strip_suffix("_id") {
            Some(base) => format!("maas.{base}.id"),
            None => format!("maas.{tag}"),
        },
    }
}

/// The series the collector's Prometheus exporter makes of a resource (the OpenTelemetry
/// compatibility spec's "target info"): a gauge of value 1 whose labels are the resource's
/// attributes, less those that make `job` and `instance` (`TARGET_ATTRIBUTES`).
pub const TARGET_INFO: &str = "target_info";

/// Its help text, as the exporter writes it.
pub const TARGET_INFO_HELP: &str = "Target metadata";

/// The resource attributes the collector turns into `job` (`service.namespace`/`service.name`)
/// and `instance` (`service.instance.id`) instead of `target_info` labels.
pub const TARGET_ATTRIBUTES: [&str; 3] =
    ["service.name", "service.namespace", "service.instance.id"];

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
/// The plugin.yaml names are held to it by a test.
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

// FIELDS, WINDOW_FIELD and PERIOD_FIELD (and below, COLLECTOR_FIELDS and EXPORT_REJECTED) are
// generated by build.rs from plugin.yaml's `metrics` and `collector_metrics`.
include!(concat!(env!("OUT_DIR"), "/names_tables.rs"));

pub const WINDOW_SECONDS: &str = WINDOW_FIELD.name;

/// A tag of a spend measurement (`spend_metrics`), in every output's spelling.
#[derive(Clone, Copy, Debug)]
pub struct SpendTag {
    pub tag: &'static str,
    pub otlp: &'static str,
    pub prometheus: &'static str,
}

/// A field of a spend measurement: the line-protocol field and JSON key, the OTLP Gauge and
/// its Prometheus name, and for the cost the period counters.
#[derive(Clone, Copy, Debug)]
pub struct SpendField {
    pub name: &'static str,
    pub unit: &'static str,
    /// An integer (`period_start`), else a double.
    pub int: bool,
    pub description: &'static str,
    pub otlp: &'static str,
    pub prometheus: &'static str,
    pub otlp_period: Option<&'static str>,
    pub prometheus_period: Option<&'static str>,
}

/// `maas_model_cost` or `maas_budget`, as plugin.yaml's `spend_metrics` declares it.
#[derive(Clone, Copy, Debug)]
pub struct SpendMeasurement {
    pub name: &'static str,
    pub description: &'static str,
    pub tags: &'static [SpendTag],
    pub fields: &'static [SpendField],
}

impl SpendMeasurement {
    /// The tag named `tag` (a name the manifest declares).
    pub fn tag(&self, tag: &str) -> Option<&'static SpendTag> {
        self.tags.iter().find(|t| t.tag == tag)
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&'static SpendField> {
        self.fields.iter().find(|f| f.name == name)
    }
}

// COST and BUDGET, generated by build.rs from plugin.yaml's `spend_metrics`.
include!(concat!(env!("OUT_DIR"), "/spend_tables.rs"));

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
        for m in crate::domain::cloud_eye::METRICS {
            assert_eq!(translate(m.otlp, m.unit, false), m.prometheus, "{}", m.ces);
            // Counts have period counters, latency none.
            assert_eq!(m.otlp_period.is_some(), m.is_count(), "{}", m.ces);
            if let (Some(o), Some(p)) = (m.otlp_period, m.prometheus_period) {
                assert_eq!(translate(o, m.unit, true), p, "{}", m.ces);
            }
        }
    }
}
