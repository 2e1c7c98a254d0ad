//! Cloud Eye queries, executed: discovery (ListMetrics, paged, once per metric asked for),
//! names (pinned in the spec, else the MaaS monitor, else the ids), the cardinality guard, then
//! batch-query-metric-data calls of at most 500 metric objects on the worker pool, and the
//! datapoints folded into each window: counts summed as exact integers, latency as the
//! window's highest period (each datapoint judged by [`datapoints`]).

mod datapoints;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use super::{pool, Pooled, StopCheck};
use crate::domain::ces::{
    Aggregate, BatchAnswer, BatchRequest, CesMetric, Dims, Discovered, MetricPage, ModelKey, Named,
    Names, MAX_METRICS_PER_CALL,
};
use crate::domain::failure::DecodeError;
use crate::domain::{ApiError, Shape, Window};
use crate::plan::ModelQuery;
use crate::time::period::Checkpoints;
use datapoints::{LeftOut, Point, Refused};

/// What the collection needs from Cloud Eye; the cloud client in production, a fake in unit
/// tests.
pub trait CloudEye: Send + Sync {
    fn list_metrics(
        &self,
        metric: &str,
        marker: &str,
        deadline: Instant,
    ) -> Result<MetricPage, ApiError>;
    fn batch(&self, req: &BatchRequest, deadline: Instant) -> Result<BatchAnswer, ApiError>;
    /// One page of names from `start`; how many instances it held.
    fn instances(
        &self,
        start: usize,
        into: &mut Names,
        deadline: Instant,
    ) -> Result<usize, ApiError>;
}

/// Where a discovery is kept between runs (the state directory); `None`: every run discovers.
pub trait DiscoveryCache: Send + Sync {
    /// A discovery younger than `max_age`.
    fn load(&self, max_age: std::time::Duration) -> Option<Discovered>;
    fn store(&self, found: &Discovered);
}

/// A value of one metric over a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Figure {
    /// Counts and tokens, summed exactly.
    Count(u64),
    /// Latency in milliseconds: the window's highest period.
    Millis(f64),
}

/// A collected Cloud Eye series over one window (or period bucket).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSeries {
    pub key: ModelKey,
    pub window: Window,
    /// In catalog order; a metric Cloud Eye has no figure for is absent (a count without
    /// datapoints is 0: no traffic).
    pub values: Vec<(&'static CesMetric, Figure)>,
    /// Period mode: the query's checkpoint id.
    pub checkpoint: Option<String>,
}

impl ModelSeries {
    /// Its figure for the Cloud Eye metric `ces`, if it has one.
    pub fn figure(&self, ces: &str) -> Option<Figure> {
        self.values
            .iter()
            .find(|(m, _)| m.ces == ces)
            .map(|(_, f)| *f)
    }

    pub fn count(&self, ces: &str) -> Option<u64> {
        self.values.iter().find_map(|(m, f)| match f {
            Figure::Count(c) if m.ces == ces => Some(*c),
            _ => None,
        })
    }
}

/// A Cloud Eye query (or part of it) that could not be collected.
#[derive(Clone, Debug)]
pub struct ModelFailure {
    pub query: String,
    /// What failed: discovery, the cardinality guard, or a call span.
    pub what: String,
    pub error: ApiError,
}

impl std::fmt::Display for ModelFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query={} source=cloud_eye ({})", self.query, self.what)
    }
}

/// Everything the Cloud Eye part of a collection produced.
#[derive(Clone, Debug, Default)]
pub struct ModelCollected {
    pub series: Vec<ModelSeries>,
    pub failures: Vec<ModelFailure>,
    pub warnings: Vec<String>,
    /// Period-mode queries: the end of the last bucket delivered in order.
    pub advance: Checkpoints,
    pub cut_short: bool,
    pub stopped_by: Option<&'static str>,
}

/// Settings of the Cloud Eye collection.
pub struct Limits {
    pub max_series: usize,
    pub concurrency: usize,
    /// How old a cached discovery may be: an hour, less when a period query settles its
    /// buckets sooner (a new model's first bucket must not settle before it is known).
    pub discovery_max_age: std::time::Duration,
}

/// At most this many datapoints per answer: 500 objects over a long span would not fit the
/// answer size the client accepts.
const MAX_POINTS_PER_CALL: i64 = 100_000;
/// A ListMetrics paging that never ends (fresh markers, fresh entries forever) stops here.
const MAX_PAGES: usize = 1000;
/// The most the names of a run may take.
const NAMES_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// What discovery did: whether it learnt anything, and which metrics' paging broke off (their
/// series are partial: used for this run, never cached).
#[derive(Default)]
struct Discovery {
    changed: bool,
    partial: BTreeSet<&'static str>,
}

/// Which (metric, series) pairs exist, for each metric asked for and not already `known`.
/// Paging stops at the end (an empty page or marker, the total reached, the marker sent coming
/// back) and also when it loops: a page that brings nothing new, or a marker seen before (A, B,
/// A...). A loop is one warning, and the metric's series are what was found (a failure when
/// that is nothing): never the whole Cloud Eye budget spent on the same pages.
fn discover(
    ce: &dyn CloudEye,
    metrics: &BTreeSet<&'static str>,
    known: &mut Discovered,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> Result<Discovery, ApiError> {
    let mut out = Discovery::default();
    for &metric in metrics {
        if known.metrics.contains_key(metric) {
            continue;
        }
        let mut found = BTreeSet::new();
        let mut marker = String::new();
        let mut sent = BTreeSet::new();
        for _ in 0..MAX_PAGES {
            let page = ce.list_metrics(metric, &marker, deadline)?;
            let (n, before) = (page.entries.len(), found.len());
            found.extend(
                page.entries
                    .into_iter()
                    .filter(|(m, _)| m == metric)
                    .map(|(_, d)| d),
            );
            let done = n == 0
                || page.marker.is_empty()
                || page.total.is_some_and(|t| found.len() >= t)
                || (page.marker == marker && found.len() > before);
            if done {
                break;
            }
            if found.len() == before || !sent.insert(page.marker.clone()) {
                let why = if found.len() == before {
                    "a page with nothing new"
                } else {
                    "a marker it had given before"
                };
                if found.is_empty() {
                    return Err(ApiError::Decode {
                        endpoint: page.endpoint,
                        error: DecodeError::Shape(format!(
                            "ListMetrics for `{metric}` answered {why} before any series: its paging loops"
                        )),
                        request_id: page.request_id,
                    });
                }
                let of = page
                    .total
                    .map(|t| format!(" of the {t} it counts"))
                    .unwrap_or_default();
                warnings.push(format!(
                    "ListMetrics for `{metric}` answered {why} (its paging loops): discovery stops at {} series{of}, so models or keys may be missing from this run; it is not cached, the next run asks again",
                    found.len()
                ));
                out.partial.insert(metric);
                break;
            }
            marker = page.marker;
        }
        known.metrics.insert(metric.to_string(), found);
        out.changed = true;
    }
    Ok(out)
}

/// Names from the monitor, unless `known` has them already; a failure is one warning. Returns
/// whether it asked (and learnt something worth keeping).
fn names(
    ce: &dyn CloudEye,
    pinned: &Names,
    known: &mut Discovered,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> bool {
    let ids: BTreeSet<&Dims> = known.metrics.values().flatten().collect();
    let unnamed = ids.iter().any(|d| {
        !pinned.models.contains_key(&d.model_id)
            || d.key_id
                .as_ref()
                .is_some_and(|k| !pinned.keys.contains_key(k))
    });
    if !unnamed || known.named {
        return false;
    }
    // Names are a nicety: they get a few seconds, never the data's time.
    let deadline = deadline.min(Instant::now() + NAMES_TIME);
    let mut found = Names::default();
    let mut start = 0;
    for _ in 0..MAX_PAGES {
        let before = found.models.len() + found.keys.len();
        match ce.instances(start, &mut found, deadline) {
            Ok(n) if n > 0 && found.models.len() + found.keys.len() > before => start += n,
            // The end (or a server that keeps answering the same page).
            Ok(_) => break,
            Err(e) => {
                warnings.push(format!(
                    "cannot read model and API key names from the MaaS monitor ({e}); ids stand in for the names the spec's `names:` does not pin, for the next hour"
                ));
                found = Names::default();
                break;
            }
        }
    }
    // Kept either way: a monitor that cannot answer is not asked again until the cache expires.
    known.names = found;
    known.named = true;
    true
}

fn named(id: &str, names: &std::collections::BTreeMap<String, String>) -> Named {
    Named {
        id: id.to_string(),
        name: names.get(id).cloned().unwrap_or_else(|| id.to_string()),
    }
}

/// One batch call to make: which query, which span, which objects.
struct Job {
    query: usize,
    span: (i64, i64),
    req: BatchRequest,
}

/// Per query: its series (dims -> key) and, per window, per series, the figures so far, and
/// the series whose counts Cloud Eye answered wrong.
struct Acc {
    series: BTreeMap<Dims, ModelKey>,
    figures: Vec<BTreeMap<Dims, BTreeMap<&'static str, Figure>>>,
    failed: Vec<bool>,
    refused: Vec<BTreeMap<Dims, Refused>>,
}

pub fn collect_models(
    plan: &[ModelQuery],
    ce: Arc<dyn CloudEye>,
    pinned: &Names,
    cache: Option<&dyn DiscoveryCache>,
    limits: &Limits,
    deadline: Instant,
    stop: StopCheck<'_>,
) -> ModelCollected {
    let mut out = ModelCollected::default();
    let active: Vec<&ModelQuery> = plan.iter().filter(|q| !q.windows.is_empty()).collect();
    if active.is_empty() {
        return out;
    }
    let asked: BTreeSet<&'static str> = active
        .iter()
        .flat_map(|q| q.query.metrics.iter().map(|m| m.ces))
        .collect();
    let mut known = cache
        .and_then(|c| c.load(limits.discovery_max_age))
        .unwrap_or_default();
    let discovered = match discover(&*ce, &asked, &mut known, deadline, &mut out.warnings) {
        Ok(d) => d,
        Err(error) => {
            for q in &active {
                out.failures.push(ModelFailure {
                    query: q.name.clone(),
                    what: "discovery with ListMetrics".into(),
                    error: error.clone(),
                });
            }
            return out;
        }
    };
    let learnt_names = names(&*ce, pinned, &mut known, deadline, &mut out.warnings);
    if let (Some(c), true) = (cache, discovered.changed || learnt_names) {
        let mut whole = known.clone();
        whole
            .metrics
            .retain(|m, _| !discovered.partial.contains(m.as_str()));
        c.store(&whole);
    }
    let available: BTreeMap<&'static str, &BTreeSet<Dims>> = asked
        .iter()
        .filter_map(|m| known.metrics.get(*m).map(|s| (*m, s)))
        .collect();
    for (m, found) in &available {
        if found.is_empty() {
            out.warnings.push(format!(
                "Cloud Eye reports no `{m}` in SYS.MaaS for this project; it is left out"
            ));
        }
    }
    let all: BTreeSet<Dims> = available.values().copied().flatten().cloned().collect();
    // The spec's names win over the monitor's.
    let mut names = known.names.clone();
    names.models.extend(pinned.models.clone());
    names.keys.extend(pinned.keys.clone());

    // Each query's series, within the cardinality guard.
    let mut emitted = 0usize;
    let mut accs: Vec<Option<Acc>> = Vec::new();
    for q in &active {
        let picks = |filter: &Option<Vec<String>>, id: &str, table: &BTreeMap<String, String>| {
            filter.as_ref().is_none_or(|f| {
                f.iter()
                    .any(|x| x == id || table.get(id).is_some_and(|n| n == x))
            })
        };
        let series: BTreeMap<Dims, ModelKey> = all
            .iter()
            .filter(|d| d.key_id.is_some() == q.query.by_key)
            .filter(|d| picks(&q.query.models, &d.model_id, &names.models))
            .filter(|d| {
                d.key_id
                    .as_ref()
                    .is_none_or(|k| picks(&q.query.api_keys, k, &names.keys))
            })
            .map(|d| {
                let key = ModelKey {
                    query: q.name.clone(),
                    model: named(&d.model_id, &names.models),
                    api_key: d.key_id.as_ref().map(|k| named(k, &names.keys)),
                };
                (d.clone(), key)
            })
            .collect();
        for (what, filter) in [("models", &q.query.models), ("api_keys", &q.query.api_keys)] {
            for f in filter.iter().flatten() {
                let matched = series.values().any(|k| match what {
                    "models" => k.model.id == *f || k.model.name == *f,
                    _ => k
                        .api_key
                        .as_ref()
                        .is_some_and(|a| a.id == *f || a.name == *f),
                });
                if !matched {
                    out.warnings.push(format!(
                        "query {}: {what} `{f}` matches nothing Cloud Eye reports",
                        q.name
                    ));
                }
            }
        }
        if emitted + series.len() > limits.max_series {
            let breakdown = if q.query.by_key {
                "[model, api_key]"
            } else {
                "[model]"
            };
            out.failures.push(ModelFailure {
                query: q.name.clone(),
                what: "cardinality guard".into(),
                error: ApiError::Local(format!(
                    "breakdown {breakdown} gives {} series, and with the {emitted} before it that is more than limits.max_series ({}); filter it with models: or api_keys:, or raise the limit",
                    series.len(),
                    limits.max_series
                )),
            });
            accs.push(None);
            continue;
        }
        emitted += series.len();
        accs.push(Some(Acc {
            series,
            figures: vec![BTreeMap::new(); q.windows.len()],
            failed: vec![false; q.windows.len()],
            refused: vec![BTreeMap::new(); q.windows.len()],
        }));
    }

    // The calls: per query, span and filter, objects in chunks an answer can carry.
    let mut jobs = Vec::new();
    for (qi, q) in active.iter().enumerate() {
        let Some(acc) = &accs[qi] else {
            continue;
        };
        for sp in &q.spans {
            let (from, to) = (sp.from, sp.to);
            let periods = ((to - from) / (i64::from(sp.period_s) * 1000)).max(1);
            let per_call = (MAX_POINTS_PER_CALL / periods).clamp(1, MAX_METRICS_PER_CALL as i64);
            for aggregate in [Aggregate::Sum, Aggregate::Max] {
                let objects: Vec<(&'static CesMetric, Dims)> = acc
                    .series
                    .keys()
                    .flat_map(|d| {
                        q.query
                            .metrics
                            .iter()
                            .filter(|m| m.aggregate == aggregate)
                            .filter(|m| available.get(m.ces).is_some_and(|s| s.contains(d)))
                            .map(move |m| (*m, d.clone()))
                    })
                    .collect();
                for chunk in objects.chunks(per_call as usize) {
                    jobs.push(Job {
                        query: qi,
                        span: (from, to),
                        req: BatchRequest {
                            metrics: chunk.to_vec(),
                            from_ms: from,
                            to_ms: to,
                            period_s: sp.period_s,
                            aggregate,
                        },
                    });
                }
            }
        }
    }
    let jobs = Arc::new(jobs);
    let Pooled {
        results,
        cut_short,
        stopped_by,
    } = pool(
        jobs.clone(),
        Arc::new(move |j: &Job, deadline| ce.batch(&j.req, deadline)),
        limits.concurrency,
        deadline,
        stop,
    );
    out.cut_short = cut_short;
    out.stopped_by = stopped_by;

    let mut left_out = LeftOut::default();
    for (job, result) in jobs.iter().zip(results) {
        let q = active[job.query];
        let Some(acc) = accs[job.query].as_mut() else {
            continue;
        };
        let touched = |w: &Window| w.start_ms < job.span.1 && job.span.0 < w.end_ms;
        let failure = match result {
            Some(Ok(answer)) => {
                fold(q, acc, &job.req, answer, &mut left_out);
                None
            }
            Some(Err(e)) => Some(e),
            None => Some(match stopped_by {
                Some(signal) => ApiError::Stopped { signal },
                None => ApiError::Deadline { last: None },
            }),
        };
        if let Some(error) = failure {
            for (wi, w) in q.windows.iter().enumerate() {
                if touched(w) {
                    acc.failed[wi] = true;
                }
            }
            out.failures.push(ModelFailure {
                query: q.name.clone(),
                what: format!("span [{}, {})", job.span.0, job.span.1),
                error,
            });
        }
    }

    out.warnings.extend(left_out.warnings());

    for (q, acc) in active.iter().zip(&accs) {
        if let Some(acc) = acc {
            settle(q, acc, &available, &mut out);
        }
    }
    out
}

/// The series of every window of `q` whose calls all came back, less those with a count Cloud
/// Eye cannot have; in period mode, only up to the first failed bucket (later ones come again
/// next time, after it).
fn settle(
    q: &ModelQuery,
    acc: &Acc,
    available: &BTreeMap<&'static str, &BTreeSet<Dims>>,
    out: &mut ModelCollected,
) {
    for (wi, w) in q.windows.iter().enumerate() {
        if acc.failed[wi] {
            if w.shape == Shape::Bucket {
                break;
            }
            continue;
        }
        let refused = &acc.refused[wi];
        if w.shape == Shape::Bucket && !refused.is_empty() {
            out.failures
                .push(bucket_refused(q, &acc.series, refused, w));
            break;
        }
        for (d, key) in &acc.series {
            if let Some(r) = refused.get(d) {
                out.failures.push(ModelFailure {
                    query: q.name.clone(),
                    what: series_name(key),
                    error: r.error(r.reason()),
                });
                continue;
            }
            let got = acc.figures[wi].get(d);
            let values = q
                .query
                .metrics
                .iter()
                .filter(|m| available.get(m.ces).is_some_and(|s| s.contains(d)))
                .filter_map(|m| match got.and_then(|g| g.get(m.ces)) {
                    Some(f) => Some((*m, *f)),
                    None if m.is_count() => Some((*m, Figure::Count(0))),
                    None => None,
                })
                .collect();
            out.series.push(ModelSeries {
                key: key.clone(),
                window: *w,
                values,
                checkpoint: q.checkpoint.clone(),
            });
        }
        if let Some(cp) = &q.checkpoint {
            out.advance.insert(cp.clone(), w.end_ms);
        }
    }
}

/// `model=...` and, with the key breakdown, `api_key=...`: a series in a failure line.
fn series_name(key: &ModelKey) -> String {
    match &key.api_key {
        Some(k) => format!("model={} api_key={}", key.model.name, k.name),
        None => format!("model={}", key.model.name),
    }
}

/// A bucket in which some series' counts were refused: it fails whole, as a failed call
/// would (its other series cannot be sent without moving the query's checkpoint past it).
fn bucket_refused(
    q: &ModelQuery,
    series: &BTreeMap<Dims, ModelKey>,
    refused: &BTreeMap<Dims, Refused>,
    w: &Window,
) -> ModelFailure {
    let utc = |ms| crate::time::fmt_rfc3339(ms, &chrono_tz::UTC);
    let (dims, first) = refused.iter().next().expect("called with a refused series");
    let name = series
        .get(dims)
        .map(series_name)
        .unwrap_or_else(|| dims.to_string());
    let reason = match refused.len() {
        1 => format!("{name}: {}", first.reason()),
        n => format!("{n} series, the first {name}: {}", first.reason()),
    };
    ModelFailure {
        query: q.name.clone(),
        what: format!(
            "bucket {} to {}; it and the later ones wait for Cloud Eye to answer right",
            utc(w.start_ms),
            utc(w.end_ms)
        ),
        error: first.error(reason),
    }
}

/// Adds one answer's datapoints to the windows they fall in: only those of the call's own
/// span (a server that includes the bucket at `to` must not count it twice) and once each.
/// A count Cloud Eye cannot have fails its series in that window (never rounded or clamped);
/// a latency that is not one is left out (and said once per query, metric and cause).
fn fold(
    q: &ModelQuery,
    acc: &mut Acc,
    req: &BatchRequest,
    answer: BatchAnswer,
    left_out: &mut LeftOut,
) {
    let asked: BTreeMap<(&str, &Dims), &'static CesMetric> =
        req.metrics.iter().map(|(m, d)| ((m.ces, d), *m)).collect();
    let BatchAnswer {
        series,
        request_id,
        endpoint,
    } = answer;
    let mut seen: BTreeSet<(&'static str, Dims, i64)> = BTreeSet::new();
    for ((name, dims), points) in series {
        let Some(metric) = asked.get(&(name.as_str(), &dims)).copied() else {
            continue;
        };
        for (ts, v) in points {
            if ts < req.from_ms || ts >= req.to_ms || !seen.insert((metric.ces, dims.clone(), ts)) {
                continue;
            }
            // Whole buckets come back; each belongs to the window it starts in.
            let Some(wi) = q
                .windows
                .iter()
                .position(|w| w.start_ms <= ts && ts < w.end_ms)
            else {
                continue;
            };
            let point = |why| Point {
                metric: metric.ces,
                at_ms: ts,
                value: v.value,
                why,
            };
            let slot = acc.figures[wi]
                .entry(dims.clone())
                .or_default()
                .entry(metric.ces);
            match metric.aggregate {
                Aggregate::Sum => {
                    let f = slot.or_insert(Figure::Count(0));
                    let Figure::Count(c) = f else { continue };
                    match datapoints::count(v).and_then(|n| datapoints::add(*c, n)) {
                        Ok(sum) => *c = sum,
                        Err(why) => {
                            acc.refused[wi]
                                .entry(dims.clone())
                                .or_insert_with(|| Refused {
                                    first: point(why),
                                    points: 0,
                                    endpoint: endpoint.clone(),
                                    request_id: request_id.clone(),
                                })
                                .points += 1;
                        }
                    }
                }
                Aggregate::Max => match datapoints::latency(v.value) {
                    Ok(v) => {
                        let f = slot.or_insert(Figure::Millis(v));
                        if let Figure::Millis(m) = f {
                            *m = m.max(v);
                        }
                    }
                    Err(why) => left_out.add(&q.name, &dims, point(why)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ces::{metric, MetricPage, Reading};
    use crate::plan::models::Span;
    use crate::spec::CloudEyeQuery;

    const H: i64 = 3_600_000;

    /// Cloud Eye as a careless server could be: every bucket of `[from, to]`, `to` included,
    /// each worth `value`.
    struct Loose {
        value: f64,
    }

    fn dims() -> Dims {
        Dims {
            model_id: "m1".into(),
            key_id: None,
        }
    }

    impl CloudEye for Loose {
        fn list_metrics(&self, metric: &str, _: &str, _: Instant) -> Result<MetricPage, ApiError> {
            Ok(MetricPage {
                entries: vec![(metric.to_string(), dims())],
                total: Some(1),
                ..MetricPage::default()
            })
        }
        fn batch(&self, req: &BatchRequest, _: Instant) -> Result<BatchAnswer, ApiError> {
            let p = i64::from(req.period_s) * 1000;
            let points: Vec<(i64, Reading)> = (req.from_ms / p..=req.to_ms / p)
                .map(|b| (b * p, Reading::exact(self.value)))
                .collect();
            Ok(BatchAnswer {
                series: req
                    .metrics
                    .iter()
                    .map(|(m, d)| ((m.ces.to_string(), d.clone()), points.clone()))
                    .collect(),
                request_id: None,
                endpoint: "https://ces.test".into(),
            })
        }
        fn instances(&self, _: usize, _: &mut Names, _: Instant) -> Result<usize, ApiError> {
            Ok(0)
        }
    }

    fn buckets_query() -> ModelQuery {
        ModelQuery {
            index: 0,
            name: "q".into(),
            query: CloudEyeQuery {
                by_key: false,
                models: None,
                api_keys: None,
                metrics: vec![metric("total_tokens").unwrap()],
            },
            period_s: 3600,
            windows: (0..3)
                .map(|i| Window {
                    start_ms: i * H,
                    end_ms: (i + 1) * H,
                    shape: Shape::Bucket,
                })
                .collect(),
            requested: None,
            spans: vec![
                Span {
                    from: 0,
                    to: H,
                    period_s: 3600,
                },
                Span {
                    from: H,
                    to: 3 * H,
                    period_s: 3600,
                },
            ],
            checkpoint: Some("r/cloud_eye/q".into()),
            warnings: Vec::new(),
        }
    }

    fn collect_with(ce: Loose) -> ModelCollected {
        collect_models(
            &[buckets_query()],
            Arc::new(ce),
            &Names::default(),
            None,
            &Limits {
                max_series: 10,
                concurrency: 1,
                discovery_max_age: std::time::Duration::from_secs(3600),
            },
            Instant::now() + std::time::Duration::from_secs(10),
            &crate::collect::never_stop,
        )
    }

    #[test]
    fn a_bucket_on_a_span_boundary_is_counted_once() {
        let out = collect_with(Loose { value: 1.0 });
        let counts: Vec<u64> = out
            .series
            .iter()
            .map(|s| s.count("total_tokens").unwrap())
            .collect();
        assert_eq!(counts, vec![1, 1, 1]);
        assert_eq!(out.advance.get("r/cloud_eye/q"), Some(&(3 * H)));
    }

    #[test]
    fn a_count_cloud_eye_cannot_have_holds_its_bucket_back_and_is_never_rounded() {
        for (value, why) in [
            (2.5, "is 2.5, not a whole number"),
            (-5.0, "is -5, negative"),
            (f64::NAN, "is not a number"),
            (u64::MAX as f64, "over 10^15"),
        ] {
            let out = collect_with(Loose { value });
            assert!(out.series.is_empty(), "{value}: nothing rounded or clamped");
            assert_eq!(out.advance.get("r/cloud_eye/q"), None, "{value}: held back");
            assert_eq!(out.failures.len(), 1, "{value}: {:?}", out.failures);
            let f = &out.failures[0];
            assert!(f
                .what
                .starts_with("bucket 1970-01-01T00:00:00Z to 1970-01-01T01:00:00Z"));
            let e = f.error.to_string();
            assert!(
                e.contains("unusable answer from https://ces.test")
                    && e.contains("model=m1: total_tokens at 1970-01-01T00:00:00Z")
                    && e.contains(why),
                "{e}"
            );
        }
    }

    /// ListMetrics as a looping server answers it: page `i` after the marker `markers[i - 1]`,
    /// with the entries `entries(i)` and the marker `markers[i]`.
    struct Looping {
        markers: Vec<&'static str>,
        entries: fn(usize) -> Vec<(String, Dims)>,
        calls: std::sync::Mutex<usize>,
    }

    impl CloudEye for Looping {
        fn list_metrics(&self, _: &str, marker: &str, _: Instant) -> Result<MetricPage, ApiError> {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            let i = *calls - 1;
            assert!(i < 10, "the loop was not stopped (sent {marker:?})");
            Ok(MetricPage {
                entries: (self.entries)(i),
                marker: self.markers[i % self.markers.len()].to_string(),
                total: None,
                ..MetricPage::default()
            })
        }
        fn batch(&self, _: &BatchRequest, _: Instant) -> Result<BatchAnswer, ApiError> {
            unreachable!()
        }
        fn instances(&self, _: usize, _: &mut Names, _: Instant) -> Result<usize, ApiError> {
            Ok(0)
        }
    }

    fn discovered(l: &Looping) -> (Result<Discovery, ApiError>, Vec<String>, Discovered) {
        let (mut known, mut warnings) = (Discovered::default(), Vec::new());
        let asked = BTreeSet::from(["total_tokens"]);
        let d = discover(l, &asked, &mut known, Instant::now(), &mut warnings);
        (d, warnings, known)
    }

    #[test]
    fn discovery_stops_at_a_marker_given_before_or_a_page_with_nothing_new() {
        let fresh = |i: usize| {
            vec![(
                "total_tokens".to_string(),
                Dims {
                    model_id: format!("m{i}"),
                    key_id: None,
                },
            )]
        };
        // Fresh entries on every page, markers A, B, A: stopped when A comes back.
        let l = Looping {
            markers: vec!["A", "B"],
            entries: fresh,
            calls: Default::default(),
        };
        let (d, warnings, known) = discovered(&l);
        assert_eq!(*l.calls.lock().unwrap(), 3);
        assert!(d.unwrap().partial.contains("total_tokens"));
        assert_eq!(
            known.metrics["total_tokens"].len(),
            3,
            "what was found is kept"
        );
        assert!(
            warnings[0].contains("a marker it had given before"),
            "{warnings:?}"
        );
        // Nothing of the metric asked, ever: a failure, not "Cloud Eye reports none".
        let l = Looping {
            markers: vec!["A", "B", "C"],
            entries: |_| {
                vec![(
                    "other".to_string(),
                    Dims {
                        model_id: "x".into(),
                        key_id: None,
                    },
                )]
            },
            calls: Default::default(),
        };
        let (d, _, _) = discovered(&l);
        assert_eq!(*l.calls.lock().unwrap(), 1);
        assert!(d.is_err_and(|e| e.to_string().contains("its paging loops")));
    }
}
