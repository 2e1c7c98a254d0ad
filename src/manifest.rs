//! `plugin.yaml`, the plugin's manifest, embedded: docs/metrics.md is generated from
//! it (`maas-usage describe --markdown`) and the tests hold the code and its outputs to it.

pub const PLUGIN_YAML: &str = include_str!("../plugin.yaml");

mod model;
pub use model::*;

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

/// One Markdown table: its introduction, its header, its rows.
fn table(out: &mut String, intro: &str, header: &[&str], rows: Vec<Vec<String>>) {
    out.push_str(intro);
    out.push_str("\n\n| ");
    out.push_str(&header.join(" | "));
    out.push_str(" |\n|");
    out.push_str(&"---|".repeat(header.len()));
    out.push('\n');
    for r in rows {
        out.push_str("| ");
        out.push_str(&r.join(" | "));
        out.push_str(" |\n");
    }
}

/// The Markdown tables of docs/metrics.md.
pub fn markdown(m: &Manifest) -> String {
    let or = |x: &Option<String>, none: &str| x.as_deref().map(code).unwrap_or_else(|| none.into());
    let mut out = String::new();
    table(
        &mut out,
        "Per series. Window totals (rolling, calendar and explicit windows) are OTLP Gauges and Prometheus gauges; period-mode buckets are OTLP monotonic Sums (cumulative unless `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` says delta) and Prometheus counters (running totals since the series' first bucket):",
        &["line protocol field", "title", "unit", "value", "OTLP Gauge", "Prometheus gauge", "OTLP Sum (period)", "Prometheus counter (period)", "description"],
        m.metrics
            .iter()
            .map(|x| {
                vec![
                    code(&x.field),
                    x.title.clone(),
                    code(&x.unit),
                    x.value.clone(),
                    or(&x.otlp, "(start and end times)"),
                    or(&x.prometheus, "-"),
                    or(&x.otlp_period, "-"),
                    or(&x.prometheus_period, "-"),
                    x.description.clone(),
                ]
            })
            .collect(),
    );
    table(
        &mut out,
        "\nPer model and per API key (`source: cloud_eye`; line protocol `maas_model_usage`). Counts are summed exactly over the window (`filter: sum`); latency is the window's highest minute (`filter: max`), never summed, in ms in line protocol and seconds in OTLP and Prometheus; a period series' latency in Prometheus is its latest bucket's:",
        &["Cloud Eye metric", "line protocol field", "unit", "value", "OTLP Gauge", "Prometheus gauge", "OTLP Sum (period)", "Prometheus counter (period)", "description"],
        m.model_metrics
            .iter()
            .map(|x| {
                let mut row = vec![code(&x.ces), code(&x.field), code(&x.unit), x.value.clone()];
                row.extend(output_names(
                    &x.otlp,
                    &x.prometheus,
                    &x.otlp_period,
                    &x.prometheus_period,
                ));
                row.push(x.description.clone());
                row
            })
            .collect(),
    );
    table(
        &mut out,
        "\nTags of `maas_model_usage` (the API key's only with `breakdown: [model, api_key]`), plus `project_id`, `region` and `output.tags`:",
        &["tag", "OTLP (data point)", "Prometheus label", "description"],
        m.model_attributes
            .iter()
            .map(|a| tag_row(&a.tag, &a.otlp, &a.prometheus, &a.description))
            .collect(),
    );
    table(
        &mut out,
        "\nSelf-metrics, one set per collection (`maas_usage_collector` in line protocol, tags `project_id` and `region`; Gauges in OTLP, sent after the data; gauges in Prometheus):",
        &["line protocol field", "unit", "OTLP Gauge", "OTLP unit", "`maas.outcome`", "Prometheus", "description"],
        m.collector_metrics
            .iter()
            .map(|x| {
                vec![
                    if x.otlp_only {
                        "(OTLP only)".to_string()
                    } else {
                        code(&x.field)
                    },
                    code(&x.unit),
                    code(&x.otlp),
                    code(&x.otlp_unit),
                    x.outcome.clone().unwrap_or_else(|| "-".into()),
                    or(&x.prometheus, "-"),
                    x.description.clone(),
                ]
            })
            .collect(),
    );
    spend_tables(m, &mut out);
    label_tables(m, &mut out);
    out
}

/// A tag's row: its line-protocol, OTLP and Prometheus names, and what it is.
fn tag_row(tag: &str, otlp: &str, prometheus: &str, description: &str) -> Vec<String> {
    vec![
        code(tag),
        code(otlp),
        code(prometheus),
        description.to_string(),
    ]
}

/// The OTLP Gauge, Prometheus gauge, OTLP Sum and Prometheus counter cells of a metric.
fn output_names(
    otlp: &str,
    prometheus: &str,
    otlp_period: &Option<String>,
    prometheus_period: &Option<String>,
) -> [String; 4] {
    let or = |x: &Option<String>| x.as_deref().map(code).unwrap_or_else(|| "-".into());
    [
        code(otlp),
        code(prometheus),
        or(otlp_period),
        or(prometheus_period),
    ]
}

/// The spend measurements (`maas_model_cost`, `maas_budget`): fields, then tags.
fn spend_tables(m: &Manifest, out: &mut String) {
    for s in &m.spend_metrics {
        table(
            out,
            &format!(
                "\n`{}` (with `prices`/`budgets` in the spec): {}",
                s.measurement, s.description
            ),
            &[
                "line protocol field",
                "title",
                "unit",
                "value",
                "OTLP Gauge",
                "Prometheus gauge",
                "OTLP Sum (period)",
                "Prometheus counter (period)",
                "description",
            ],
            s.fields
                .iter()
                .map(|x| {
                    let mut row = vec![
                        code(&x.field),
                        x.title.clone(),
                        code(&x.unit),
                        x.value.clone(),
                    ];
                    row.extend(output_names(
                        &x.otlp,
                        &x.prometheus,
                        &x.otlp_period,
                        &x.prometheus_period,
                    ));
                    row.push(x.description.clone());
                    row
                })
                .collect(),
        );
        table(
            out,
            &format!("\nTags of `{}`:", s.measurement),
            &[
                "tag",
                "OTLP (data point)",
                "Prometheus label",
                "description",
            ],
            s.attributes
                .iter()
                .map(|a| tag_row(&a.tag, &a.otlp, &a.prometheus, &a.description))
                .collect(),
        );
    }
}

impl Manifest {
    /// The field `field` of the spend measurement `measurement`.
    pub fn spend_field(&self, measurement: &str, field: &str) -> Option<&SpendField> {
        self.spend_metrics
            .iter()
            .find(|s| s.measurement == measurement)?
            .fields
            .iter()
            .find(|f| f.field == field)
    }
}

/// The tags, attributes and labels of docs/metrics.md: the data points', then the resource's.
fn label_tables(m: &Manifest, out: &mut String) {
    table(
        out,
        "\nTags (line protocol), data point attributes (OTLP) and labels (Prometheus), plus the spec's `output.tags` on every series:",
        &["tag", "OTLP", "Prometheus label", "description"],
        m.attributes
            .iter()
            .map(|a| {
                tag_row(&a.tag, &a.otlp, &a.prometheus, &a.description)
            })
            .collect(),
    );
    table(
        out,
        "\nResource attributes (OTLP). Prometheus carries them on one `target_info` series (gauge, value 1), never on the data series, as the collector's Prometheus exporter does by default; it makes `job` and `instance` of two of them (a scrape of the textfile or `serve` gets those from its target). Join them in PromQL: `maas_usage_total_tokens * on(job, instance) group_left(host_name) target_info`.",
        &["OTLP resource attribute", "Prometheus label", "description"],
        m.resource
            .iter()
            .map(|r| {
                let label = match r.prometheus.as_str() {
                    own @ ("job" | "instance") => format!("`{own}` (not on `target_info`)"),
                    l => format!("`{l}` on `target_info`"),
                };
                vec![code(&r.otlp), label, r.description.clone()]
            })
            .collect(),
    );
}
