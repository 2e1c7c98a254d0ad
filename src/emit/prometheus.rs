//! Prometheus text exposition, for node_exporter's textfile collector and `serve`'s
//! `/metrics`: the names and labels the OpenTelemetry Collector's Prometheus exporter gives the
//! OTLP metrics with its default settings, less the labels it adds itself (`job`, `instance`,
//! `otel_scope_*`), so one dashboard reads all three paths. The data series carry their own
//! labels only (the point attributes: query, service type, key group, model, project, region,
//! the spec's tags); the resource is one `target_info` gauge of value 1, as the
//! OpenTelemetry/Prometheus compatibility spec has it, so an upgrade or another host changes
//! no series' identity. No timestamps (the textfile collector refuses them).
//!
//! Window totals are gauges (a rolling window moves, a calendar period starts over). Period
//! series are counters: their running total since the series' first bucket, which only grows.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::fields::{self, Field, Value, COLLECTOR_FIELDS};
use super::{Report, ResourceEnv};
use crate::collect::Figure;
use crate::domain::cloud_eye::{CloudEyeKey, METRICS};
use crate::domain::{InferType, SeriesKey, Shape};

pub struct PromOptions<'a> {
    /// Static tags from the spec, as labels.
    pub tags: &'a BTreeMap<String, String>,
    pub resource: &'a ResourceEnv,
    /// OpenMetrics text (`serve`, when the scraper asks for it) instead of the classic format.
    pub openmetrics: bool,
}

/// Label values: backslash, double quote and line feed are escaped.
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `{k="v",...}`, or nothing for a series without labels (as client_golang writes it).
fn labels(pairs: &BTreeMap<String, String>) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect::<Vec<_>>()
        .join(",");
    format!("{{{inner}}}")
}

fn fmt_value(v: Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f}"),
    }
}

/// A family: HELP and TYPE, then its samples (nothing when it has none).
struct Family {
    name: String,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(BTreeMap<String, String>, String)>,
}

impl Family {
    fn new(name: impl Into<String>, kind: &'static str, help: &'static str) -> Self {
        Family {
            name: name.into(),
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn write(&self, out: &mut String, openmetrics: bool) {
        if self.samples.is_empty() {
            return;
        }
        // OpenMetrics names a counter family without its _total; the samples keep it.
        let family = match (openmetrics, self.kind) {
            (true, "counter") => self.name.trim_end_matches("_total"),
            _ => self.name.as_str(),
        };
        let _ = writeln!(out, "# HELP {family} {}", escape_help(self.help));
        let _ = writeln!(out, "# TYPE {family} {}", self.kind);
        for (l, v) in &self.samples {
            let _ = writeln!(out, "{}{} {v}", self.name, labels(l));
        }
    }
}

/// The spec's static tags as labels (the collector's names for them). (Two different keys that
/// make one label are refused with the spec: the collector would drop the metric.)
fn with_tags(
    mut point: BTreeMap<String, String>,
    tags: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for (k, v) in tags {
        point
            .entry(fields::prometheus_label(k))
            .or_insert_with(|| v.clone());
    }
    point
}

/// The labels of a series: its key and source as the collector names the OTLP attributes, and
/// the spec's static tags.
fn series_labels(
    key: &SeriesKey,
    tags: &BTreeMap<String, String>,
    source: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = source.clone();
    for (tag, v) in [
        ("query", key.query.as_str()),
        ("service_type", key.service_type.name()),
        ("infer_type", key.infer_type.name()),
        ("key_group", key.key_group.as_str()),
    ] {
        l.insert(
            fields::prometheus_label(&fields::otlp_attribute(tag)),
            v.into(),
        );
    }
    with_tags(l, tags)
}

/// `target_info`'s labels, as the collector's exporter makes them of the resource: every
/// attribute but those that make `job` and `instance`, by the label rule, the values of keys
/// that share a label joined with `;` in key order. `None` where the collector makes no
/// `target_info` (no `service.name` or `service.instance.id`: no target to name) or refuses a
/// label (then it drops the series; `ResourceEnv::check_labels` refuses such a run first).
fn target_info(resource: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    let present = |k: &str| resource.get(k).is_some_and(|v| !v.is_empty());
    if !present("service.name") || !present("service.instance.id") {
        return None;
    }
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in resource {
        if fields::TARGET_ATTRIBUTES.contains(&k.as_str()) {
            continue;
        }
        let label = fields::prometheus_label(k);
        if fields::label_refused(&label) {
            return None;
        }
        labels
            .entry(label)
            .and_modify(|before| {
                before.push(';');
                before.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    // The collector sets these from service.name and service.instance.id; a scrape of the
    // textfile or `serve`, from its target.
    for own in &fields::COLLECTOR_LABELS[..2] {
        labels.remove(*own);
    }
    Some(labels)
}

fn carries(key: &SeriesKey, f: &Field) -> bool {
    !f.batch_only || key.infer_type == InferType::Batch
}

/// The labels of a Cloud Eye series: its model (and key) as `maas_*`, its source, static tags.
fn cloud_eye_labels(
    key: &CloudEyeKey,
    tags: &BTreeMap<String, String>,
    source: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = source.clone();
    let mut put = |tag: &str, v: &str| {
        l.insert(
            fields::prometheus_label(&fields::otlp_attribute(tag)),
            v.to_string(),
        );
    };
    for (tag, v) in fields::cloud_eye_key_tags(key) {
        put(tag, v);
    }
    with_tags(l, tags)
}

/// Cloud Eye series: every figure of a window as a gauge (latency in seconds); a period
/// series' counts as counters of running totals, and its latency as of its latest bucket.
fn cloud_eye_families(
    r: &Report<'_>,
    opts: &PromOptions<'_>,
    source: &BTreeMap<String, String>,
) -> Vec<Family> {
    let mut out = Vec::new();
    for m in METRICS {
        // Keyed by labels: a later bucket's latency replaces an earlier one's.
        let mut gauge: BTreeMap<BTreeMap<String, String>, String> = BTreeMap::new();
        for s in r.collection.cloud_eye() {
            let Some(f) = s.figure(m.ces) else {
                continue;
            };
            let v = match f {
                Figure::Millis(_) | Figure::Count(_) if s.window.shape == Shape::Bucket => continue,
                Figure::Millis(ms) => format!("{}", ms / 1000.0),
                Figure::Count(c) => c.to_string(),
            };
            gauge.insert(cloud_eye_labels(&s.key, opts.tags, source), v);
        }
        // Period series: the latency of their latest bucket, kept with the totals.
        for t in r.totals.cloud_eye.values() {
            if let Some(ms) = t.latest.get(m.ces) {
                gauge.insert(
                    cloud_eye_labels(&t.key, opts.tags, source),
                    format!("{}", ms / 1000.0),
                );
            }
        }
        let mut g = Family::new(m.prometheus_name(), "gauge", m.description);
        g.samples = gauge.into_iter().collect();
        out.push(g);
        if let Some(name) = m.prometheus_period_name() {
            let mut c = Family::new(name, "counter", m.description);
            for t in r.totals.cloud_eye.values() {
                if let Some(v) = t.counts.get(m.ces) {
                    c.samples
                        .push((cloud_eye_labels(&t.key, opts.tags, source), v.to_string()));
                }
            }
            out.push(c);
        }
    }
    out.extend(cost_families(r, opts, source));
    out.extend(budget_families(r, opts, source));
    out
}

/// `maas_budget` as gauges, labelled by the budget's tags (`maas_budget`, `maas_period`...).
fn budget_families(
    r: &Report<'_>,
    opts: &PromOptions<'_>,
    source: &BTreeMap<String, String>,
) -> Vec<Family> {
    fields::BUDGET
        .fields
        .iter()
        .map(|f| {
            let mut g = Family::new(f.prometheus, "gauge", f.description);
            for p in &r.collection.budgets {
                let mut l = source.clone();
                for (k, v) in p.tags() {
                    l.insert(fields::prometheus_label(&fields::otlp_attribute(k)), v);
                }
                if let Some((_, v)) = fields::budget_values(p).find(|(x, _)| x.name == f.name) {
                    g.samples.push((with_tags(l, opts.tags), v));
                }
            }
            g
        })
        .collect()
}

/// `maas_model_cost` of the priced series: a window's as gauges, a period series' running
/// cost as counters, each with `maas_currency`.
fn cost_families(
    r: &Report<'_>,
    opts: &PromOptions<'_>,
    source: &BTreeMap<String, String>,
) -> Vec<Family> {
    let currency_label = fields::COST
        .tag(fields::CURRENCY_TAG)
        .map_or("maas_currency", |t| t.prometheus);
    let labels = |key: &CloudEyeKey, currency: String| {
        let mut l = cloud_eye_labels(key, opts.tags, source);
        l.insert(currency_label.to_string(), currency);
        l
    };
    let mut out = Vec::new();
    for (i, f) in fields::COST.fields.iter().enumerate() {
        let mut g = Family::new(f.prometheus, "gauge", f.description);
        for s in r.collection.cloud_eye() {
            let Some(c) = s.cost.as_ref().filter(|_| s.window.shape != Shape::Bucket) else {
                continue;
            };
            if let Some((_, v)) = fields::cost_values(c).nth(i) {
                g.samples.push((
                    labels(&s.key, c.currency.to_string()),
                    v.to_decimal_string(),
                ));
            }
        }
        out.push(g);
        let Some(name) = f.prometheus_period else {
            continue;
        };
        let mut c = Family::new(name, "counter", f.description);
        for t in r.totals.cloud_eye.values() {
            let Some((currency, parts)) = t.cost.clone() else {
                continue;
            };
            let v = fields::cost_field(f, parts).to_decimal_string();
            c.samples.push((labels(&t.key, currency), v));
        }
        out.push(c);
    }
    out
}

/// A page in its two parts: the data (series, running totals) and the collection's
/// self-metrics, which end the page (with `# EOF` in OpenMetrics). A page is the one followed
/// by the other; `serve` keeps the data of the last successful collection and refreshes the
/// self-metrics after every collection.
pub struct Parts {
    pub data: String,
    pub own: String,
}

pub fn render(r: &Report<'_>, opts: &PromOptions<'_>) -> String {
    let Parts { mut data, own } = render_parts(r, opts);
    data.push_str(&own);
    data
}

pub fn render_parts(r: &Report<'_>, opts: &PromOptions<'_>) -> Parts {
    render_parts_all(std::slice::from_ref(r), opts)
}

/// [`render`] for the reports of several clouds: one page, each family once.
pub fn render_all(reports: &[Report<'_>], opts: &PromOptions<'_>) -> String {
    let Parts { mut data, own } = render_parts_all(reports, opts);
    data.push_str(&own);
    data
}

/// [`render_parts`] for the reports of several clouds: each family once, with the samples of
/// every cloud (a sample every report has, `target_info`'s, once).
pub fn render_parts_all(reports: &[Report<'_>], opts: &PromOptions<'_>) -> Parts {
    let (mut data, mut own): (Vec<Family>, Vec<Family>) = (Vec::new(), Vec::new());
    for r in reports {
        let (d, o) = families(r, opts);
        merge(&mut data, d);
        merge(&mut own, o);
    }
    let write = |families: &[Family]| {
        let mut out = String::new();
        for g in families {
            g.write(&mut out, opts.openmetrics);
        }
        out
    };
    let mut own = write(&own);
    if opts.openmetrics {
        own.push_str("# EOF\n");
    }
    Parts {
        data: write(&data),
        own,
    }
}

/// Adds `more` to `into`: a family already there takes the samples it lacks.
fn merge(into: &mut Vec<Family>, more: Vec<Family>) {
    for f in more {
        match into.iter_mut().find(|g| g.name == f.name) {
            Some(g) => {
                for s in f.samples {
                    if !g.samples.iter().any(|(l, _)| *l == s.0) {
                        g.samples.push(s);
                    }
                }
            }
            None => into.push(f),
        }
    }
}

/// One report's families: the data (`target_info` first), and the self-metrics.
fn families(r: &Report<'_>, opts: &PromOptions<'_>) -> (Vec<Family>, Vec<Family>) {
    // The source's labels on every data series: the point attributes `cloud.region` and
    // `huaweicloud.project.id` (and with `clouds`, `maas.cloud`).
    let source: BTreeMap<String, String> = r
        .source_tags()
        .into_iter()
        .map(|(tag, v)| {
            (
                fields::prometheus_label(&fields::otlp_attribute(tag)),
                v.to_string(),
            )
        })
        .collect();
    let mut target = Family::new(fields::TARGET_INFO, "gauge", fields::TARGET_INFO_HELP);
    target
        .samples
        .extend(target_info(&r.resource(opts.resource)).map(|labels| (labels, "1".to_string())));
    let mut families = vec![target];
    for f in fields::FIELDS.iter().chain([&fields::WINDOW_FIELD]) {
        let mut g = Family::new(f.prometheus, "gauge", f.description);
        for s in r.collection.statistics() {
            if s.window.shape == Shape::Bucket || !carries(&s.key, f) {
                continue;
            }
            let v = if f.name == fields::WINDOW_SECONDS {
                Value::Int(u64::try_from(s.window.len_ms() / 1000).unwrap_or(0))
            } else {
                fields::value(&s.usage, f)
            };
            g.samples
                .push((series_labels(&s.key, opts.tags, &source), fmt_value(v)));
        }
        families.push(g);
        if let Some(name) = f.prometheus_period {
            let mut c = Family::new(name, "counter", f.description);
            for total in r.totals.series.values() {
                if carries(&total.key, f) {
                    c.samples.push((
                        series_labels(&total.key, opts.tags, &source),
                        fmt_value(fields::value(&total.usage, f)),
                    ));
                }
            }
            families.push(c);
        }
    }
    families.extend(cloud_eye_families(r, opts, &source));
    (families, collector_families(r, opts))
}

/// The collection's self-metrics, as gauges (milliseconds become seconds).
fn collector_families(r: &Report<'_>, opts: &PromOptions<'_>) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    for (f, v) in COLLECTOR_FIELDS
        .iter()
        .zip(fields::collector_values(&r.stats))
    {
        let mut l = BTreeMap::new();
        if let Some(c) = r.cloud {
            l.insert(
                fields::prometheus_label(&fields::otlp_attribute(fields::CLOUD_TAG)),
                c.to_string(),
            );
        }
        if let Some(outcome) = f.outcome {
            l.insert(
                fields::prometheus_label(fields::OUTCOME_ATTRIBUTE),
                outcome.into(),
            );
        }
        let l = with_tags(l, opts.tags);
        // Base units: milliseconds become seconds.
        let value = match fields::in_seconds(f, v) {
            Some(s) => format!("{s}"),
            None => v.to_string(),
        };
        match families.iter_mut().find(|g| g.name == f.prometheus) {
            Some(g) => g.samples.push((l, value)),
            None => {
                let mut g = Family::new(f.prometheus, "gauge", f.description);
                g.samples.push((l, value));
                families.push(g);
            }
        }
    }
    families
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn label_escaping() {
        assert_eq!(super::escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn target_info_is_the_resource_less_job_and_instance() {
        let resource = map(&[
            ("service.name", "maas-usage"),
            ("service.namespace", "finops"),
            ("service.instance.id", "abc"),
            ("host.name", "h"),
            ("c.d", "1"),
            ("c_d", "2"),
            ("job", "x"),
        ]);
        assert_eq!(
            super::target_info(&resource),
            Some(map(&[("host_name", "h"), ("c_d", "1;2")]))
        );
        // No target to name, or a label the collector refuses: no target_info at all.
        let mut anonymous = resource.clone();
        anonymous.insert("service.instance.id".into(), String::new());
        assert_eq!(super::target_info(&anonymous), None);
        let mut refused = resource.clone();
        refused.insert("____".into(), "x".into());
        assert_eq!(super::target_info(&refused), None);
    }
}
