//! One JSON document with every series, its window, exact values and per-segment raw answers,
//! for scripts: rendered whole ([`render_all`]) or written as it is produced ([`JsonStream`]),
//! to the same bytes.

use serde_json::{json, Map, Value};

use super::fields::{self, Value as FieldValue};
use super::Report;
use crate::collect::{
    CloudEyeSeries, Failure, Figure, SourceId, Spent, StatisticsSeries as Series, What,
};
use crate::domain::{InferType, Window};
use crate::time::fmt_rfc3339;

fn usage_object(s: &Series) -> Value {
    let mut m = Map::new();
    for (f, v) in fields::values(&s.usage, s.key.infer_type == InferType::Batch) {
        let v = match v {
            FieldValue::Int(i) => json!(i),
            FieldValue::Float(x) => json!(x),
        };
        m.insert(f.name.to_string(), v);
    }
    Value::Object(m)
}

fn window(w: &Window, tz: &chrono_tz::Tz) -> Value {
    json!({
        "start": fmt_rfc3339(w.start_ms, tz),
        "end": fmt_rfc3339(w.end_ms, tz),
        "start_ms": w.start_ms,
        "end_ms": w.end_ms,
        "seconds": w.len_ms() / 1000,
        "shape": w.shape,
    })
}

fn series(s: &Series, report: &Report<'_>) -> Value {
    let tz = &report.zone.tz;
    let segments: Vec<Value> = s
        .segments
        .iter()
        .map(|seg| {
            json!({
                "start": fmt_rfc3339(seg.start_ms, tz),
                "end": fmt_rfc3339(seg.end_ms, tz),
                "start_ms": seg.start_ms,
                "end_ms": seg.end_ms,
                "request_id": seg.request_id,
                // The answer as the API sent it, parsed when it parses (it did, to be here).
                "raw": serde_json::from_str::<Value>(&seg.raw).unwrap_or_else(|_| json!(seg.raw)),
            })
        })
        .collect();
    json!({
        "query": s.key.query,
        "service_type": s.key.service_type.name(),
        "service_type_code": s.key.service_type.code(),
        "infer_type": s.key.infer_type.name(),
        "key_group": s.key.key_group,
        "window": window(&s.window, tz),
        "values": usage_object(s),
        "segments": segments,
    })
}

fn cloud_eye_series(s: &CloudEyeSeries, report: &Report<'_>) -> Value {
    let tz = &report.zone.tz;
    let mut values = Map::new();
    for (m, f) in &s.values {
        values.insert(
            m.field.to_string(),
            match f {
                Figure::Count(c) => json!(c),
                Figure::Millis(ms) => json!(ms),
            },
        );
    }
    let mut out = json!({
        "query": s.key.query,
        "model": s.key.model.name,
        "model_id": s.key.model.id,
        "api_key": s.key.api_key.as_ref().map(|k| &k.name),
        "api_key_id": s.key.api_key.as_ref().map(|k| &k.id),
        "window": window(&s.window, tz),
        "values": values,
    });
    if let Some(m) = out.as_object_mut() {
        if let Some(g) = &s.key.key_group {
            m.insert("key_group".into(), json!(g));
        }
        if let Some(c) = &s.cost {
            m.insert("cost".into(), cost_object(c));
        }
    }
    out
}

/// `maas_budget`: its tags, then its fields (doubles as numbers, `period_start` an integer).
fn budget(p: &crate::spend::budget::Point) -> Value {
    let mut m = Map::new();
    for (k, v) in p.tags() {
        m.insert(k.into(), json!(v));
    }
    for (f, v) in fields::budget_values(p) {
        let n = match f.int {
            true => v.parse::<i64>().ok().map(|i| json!(i)),
            false => v.parse::<f64>().ok().map(|x| json!(x)),
        };
        m.insert(f.name.into(), n.unwrap_or_else(|| json!(v)));
    }
    Value::Object(m)
}

/// `maas_model_cost` of a priced series: `currency`, `cost`, `input_cost`, `output_cost`.
fn cost_object(c: &Spent) -> Value {
    let mut m = Map::new();
    m.insert(fields::CURRENCY_TAG.into(), json!(c.currency.to_string()));
    for (f, v) in fields::cost_values(c) {
        m.insert(f.name.into(), json!(v.to_f64()));
    }
    Value::Object(m)
}

/// A failure: a ShowStatistics series by its tags, any other by its source and what failed.
fn failure(f: &Failure) -> Value {
    let mut m = Map::new();
    m.insert("query".into(), json!(f.query));
    match (f.source, &f.what) {
        (SourceId::Statistics, What::Series(tags)) => {
            for (k, v) in tags {
                m.insert(k.to_string(), json!(v));
            }
        }
        (source, what) => {
            m.insert("source".into(), json!(source.name()));
            m.insert("what".into(), json!(what.to_string()));
        }
    }
    m.insert("status".into(), json!(f.error.status()));
    m.insert("code".into(), json!(f.error.code()));
    m.insert("request_id".into(), json!(f.error.request_id()));
    m.insert("error".into(), json!(f.error.to_string()));
    Value::Object(m)
}

/// The failures of a report, each with what failed and why.
fn failures(report: &Report<'_>) -> Vec<Value> {
    report.collection.failures.iter().map(failure).collect()
}

fn pretty(doc: &Value) -> String {
    let mut s = serde_json::to_string_pretty(doc).unwrap_or_default();
    s.push('\n');
    s
}

pub fn render(report: &Report<'_>) -> String {
    let c = report.collection;
    let doc = json!({
        "region": report.region,
        "project_id": report.project_id,
        "timezone": report.zone.name,
        "generated_at": fmt_rfc3339(report.now.timestamp_millis(), &report.zone.tz),
        "series": c.statistics().map(|s| series(s, report)).collect::<Vec<_>>(),
        "models": c.cloud_eye().map(|s| cloud_eye_series(s, report)).collect::<Vec<_>>(),
        "failures": failures(report),
        "collector": report.stats,
    });
    let mut doc = doc;
    if let (false, Some(m)) = (c.budgets.is_empty(), doc.as_object_mut()) {
        m.insert("budgets".into(), c.budgets.iter().map(budget).collect());
    }
    pretty(&doc)
}

/// [`render`] for the reports of several clouds (`clouds`): the clouds listed, and every
/// series, failure and self-metric with its cloud, region and project. One report of `cloud:`
/// is [`render`]'s document.
pub fn render_all(reports: &[Report<'_>]) -> String {
    let Some(first) = reports.first() else {
        return String::new();
    };
    if let [one] = reports {
        if one.cloud.is_none() {
            return render(one);
        }
    }
    let mut all: [Vec<Value>; 4] = Default::default();
    for r in reports {
        let source = json!({"cloud": r.cloud, "region": r.region, "project_id": r.project_id});
        let with = |mut v: Value| {
            if let (Value::Object(m), Value::Object(src)) = (&mut v, &source) {
                for (k, x) in src {
                    m.insert(k.clone(), x.clone());
                }
            }
            v
        };
        all[0].extend(r.collection.statistics().map(|s| with(series(s, r))));
        all[1].extend(
            r.collection
                .cloud_eye()
                .map(|s| with(cloud_eye_series(s, r))),
        );
        all[2].extend(failures(r).into_iter().map(with));
        all[3].push(with(json!(r.stats)));
    }
    let [series, models, failures, collector] = all;
    let clouds: Vec<Value> = reports
        .iter()
        .map(|r| json!({"name": r.cloud, "region": r.region, "project_id": r.project_id}))
        .collect();
    pretty(&json!({
        "clouds": clouds,
        "timezone": first.zone.name,
        "generated_at": fmt_rfc3339(first.now.timestamp_millis(), &first.zone.tz),
        "series": series,
        "models": models,
        "failures": failures,
        "collector": collector,
    }))
}

/// The document of [`render_all`] written as it is produced: its head, each round's series as it
/// comes (a source's, a run of period buckets), then the rest. The ShowStatistics series all come
/// before the Cloud Eye ones (the sources run in that order); the bytes are those of
/// [`render_all`] of the whole collection.
pub struct JsonStream {
    /// With `clouds`: what each element carries of its cloud (its name, region and project).
    source: Option<Value>,
    /// The array being written (`series`, then `models`) and its elements so far.
    array: Array,
    written: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Array {
    Series,
    Models,
}

/// `v` pretty-printed as the value of a key (or an element) `depth` levels deep: its lines after
/// the first indented (a JSON string holds no raw newline).
fn nested(v: &Value, depth: usize) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.replace('\n', &format!("\n{}", "  ".repeat(depth)))
}

impl JsonStream {
    /// The stream of `report`'s document (one cloud's; with `clouds`, a document of that one
    /// cloud, as [`render_all`] writes it), and its head.
    pub fn begin(report: &Report<'_>) -> (JsonStream, String) {
        let tz = &report.zone.tz;
        let generated_at = fmt_rfc3339(report.now.timestamp_millis(), tz);
        let (head, source) = match report.cloud {
            None => (
                json!({
                    "region": report.region,
                    "project_id": report.project_id,
                    "timezone": report.zone.name,
                    "generated_at": generated_at,
                }),
                None,
            ),
            Some(cloud) => (
                json!({
                    "clouds": [{"name": cloud, "region": report.region, "project_id": report.project_id}],
                    "timezone": report.zone.name,
                    "generated_at": generated_at,
                }),
                Some(
                    json!({"cloud": cloud, "region": report.region, "project_id": report.project_id}),
                ),
            ),
        };
        let head = nested(&head, 0);
        let head = head.strip_suffix("\n}").unwrap_or(&head);
        let stream = JsonStream {
            source,
            array: Array::Series,
            written: 0,
        };
        (stream, format!("{head},\n  \"series\": ["))
    }

    /// `v` with its cloud's keys (with `clouds`).
    fn with_source(&self, mut v: Value) -> Value {
        if let (Value::Object(m), Some(Value::Object(src))) = (&mut v, &self.source) {
            for (k, x) in src {
                m.insert(k.clone(), x.clone());
            }
        }
        v
    }

    /// Closes the array being written.
    fn close(&mut self, out: &mut String) {
        out.push_str(if self.written == 0 { "]" } else { "\n  ]" });
        self.written = 0;
    }

    fn element(&mut self, v: Value, out: &mut String) {
        out.push_str(if self.written == 0 {
            "\n    "
        } else {
            ",\n    "
        });
        out.push_str(&nested(&self.with_source(v), 2));
        self.written += 1;
    }

    /// The series of `round` (of the document's cloud), as the next elements.
    pub fn round(&mut self, round: &Report<'_>) -> String {
        let mut out = String::new();
        for s in round.collection.statistics() {
            // A ShowStatistics series after a Cloud Eye one cannot be placed: the sources run
            // ShowStatistics first (`plan::build_with`).
            debug_assert!(
                self.array == Array::Series,
                "ShowStatistics after Cloud Eye"
            );
            if self.array == Array::Series {
                self.element(series(s, round), &mut out);
            }
        }
        for s in round.collection.cloud_eye() {
            if self.array == Array::Series {
                self.close(&mut out);
                out.push_str(",\n  \"models\": [");
                self.array = Array::Models;
            }
            self.element(cloud_eye_series(s, round), &mut out);
        }
        out
    }

    /// The rest of the document: its arrays closed, then `report`'s failures, self-metrics
    /// and budgets (its series were written).
    pub fn end(mut self, report: &Report<'_>) -> String {
        let mut out = String::new();
        if self.array == Array::Series {
            self.close(&mut out);
            out.push_str(",\n  \"models\": [");
        }
        self.close(&mut out);
        let failures: Vec<Value> = failures(report)
            .into_iter()
            .map(|f| self.with_source(f))
            .collect();
        let collector = match self.source {
            None => json!(report.stats),
            Some(_) => json!([self.with_source(json!(report.stats))]),
        };
        out.push_str(&format!(
            ",\n  \"failures\": {}",
            nested(&json!(failures), 1)
        ));
        out.push_str(&format!(",\n  \"collector\": {}", nested(&collector, 1)));
        let budgets = &report.collection.budgets;
        if self.source.is_none() && !budgets.is_empty() {
            let budgets: Vec<Value> = budgets.iter().map(budget).collect();
            out.push_str(&format!(",\n  \"budgets\": {}", nested(&json!(budgets), 1)));
        }
        out.push_str("\n}\n");
        out
    }
}
