//! The Cloud Eye source: discovery (ListMetrics and names, [`discovery`]), the cardinality
//! guard, then batch-query-metric-data calls of at most 500 metric objects on the worker pool,
//! and the datapoints folded into each window: counts summed as exact integers, latency as the
//! window's highest period (each datapoint judged by [`datapoints`]).

mod datapoints;
mod discovery;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::{pool, Pooled};
use super::{Collection, Failure, Run, Source, SourceId};
use crate::domain::cloud_eye::{
    Aggregate, BatchAnswer, BatchRequest, CloudEyeKey, CloudEyeMetric, Dims, Discovered,
    MetricPage, Names, MAX_METRICS_PER_CALL,
};
use crate::domain::{ApiError, Shape, Window};
use crate::plan::cloud_eye::{Plan, QueryPlan};
use crate::time::period::{CloudEyeRunning, Totals};
use datapoints::{LeftOut, Point, Refused};
use discovery::Known;

/// What the collection needs from Cloud Eye; the cloud client in production, a fake in unit
/// tests.
pub trait Api: Send + Sync {
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
    fn load(&self, max_age: Duration) -> Option<Discovered>;
    fn store(&self, found: &Discovered);
}

/// What the Cloud Eye source calls and keeps, and its limits.
pub struct Setup<'a> {
    pub api: Arc<dyn Api>,
    pub cache: Option<&'a dyn DiscoveryCache>,
    /// The names the spec pins (they win over the monitor's).
    pub pinned: &'a Names,
    /// The most series a run may have (`limits.max_series`).
    pub max_series: usize,
    /// How old a cached discovery may be: an hour, less when a period query settles its
    /// buckets sooner (a new model's first bucket must not settle before it is known).
    pub discovery_max_age: Duration,
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
pub struct Series {
    pub key: CloudEyeKey,
    pub window: Window,
    /// In catalog order; a metric Cloud Eye has no figure for is absent (a count without
    /// datapoints is 0: no traffic).
    pub values: Vec<(&'static CloudEyeMetric, Figure)>,
    /// Period mode: the query's checkpoint id.
    pub checkpoint: Option<String>,
    /// For a delivered period bucket, its series' running totals as of this bucket.
    pub running: Option<CloudEyeRunning>,
}

impl Series {
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

    /// Adds this period bucket to its series' running totals: its counts summed, its latency
    /// as of the latest bucket.
    pub(super) fn accumulate(&mut self, totals: &mut Totals) {
        let Some(cp) = self.checkpoint.as_deref() else {
            return;
        };
        let id = self.key.total_id(cp);
        let counts = self.values.iter().filter_map(|(m, f)| match f {
            Figure::Count(c) => Some((m.ces.to_string(), *c)),
            Figure::Millis(_) => None,
        });
        let latest = self
            .values
            .iter()
            .filter_map(|(m, f)| match f {
                Figure::Millis(ms) => Some((m.ces.to_string(), *ms)),
                Figure::Count(_) => None,
            })
            .collect();
        let r = CloudEyeRunning::add(
            totals.cloud_eye.get(&id),
            &self.key,
            self.window.start_ms,
            self.window.end_ms,
            counts,
            latest,
        );
        totals.cloud_eye.insert(id, r.clone());
        self.running = Some(r);
    }
}

/// The Cloud Eye part of a run.
pub struct CloudEye<'a> {
    plan: &'a Plan,
    setup: &'a Setup<'a>,
    done: bool,
}

impl<'a> CloudEye<'a> {
    pub fn new(plan: &'a Plan, setup: &'a Setup<'a>) -> Self {
        CloudEye {
            plan,
            setup,
            done: false,
        }
    }
}

impl Source for CloudEye<'_> {
    fn id(&self) -> SourceId {
        SourceId::CloudEye
    }

    fn next_round(&mut self, run: &Run<'_>) -> Option<Collection> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        Some(collect(&self.plan.queries, self.setup, run))
    }
}

/// At most this many datapoints per answer: 500 objects over a long span would not fit the
/// answer size the client accepts.
const MAX_POINTS_PER_CALL: i64 = 100_000;

/// One batch call to make: which query, which span, which objects.
struct Job {
    query: usize,
    span: (i64, i64),
    req: BatchRequest,
}

/// Per query: its series (dims -> key) and, per window, per series, the figures so far, and
/// the series whose counts Cloud Eye answered wrong.
struct Acc {
    series: BTreeMap<Dims, CloudEyeKey>,
    figures: Vec<BTreeMap<Dims, BTreeMap<&'static str, Figure>>>,
    failed: Vec<bool>,
    refused: Vec<BTreeMap<Dims, Refused>>,
}

fn failure(q: &QueryPlan, what: String, error: ApiError) -> Failure {
    Failure::part(SourceId::CloudEye, &q.name, what, error)
}

/// Every query of `plan` with something to report: discovery, the series of each, the calls,
/// and the figures of each window.
fn collect(plan: &[QueryPlan], setup: &Setup<'_>, run: &Run<'_>) -> Collection {
    let mut out = Collection::default();
    let active: Vec<&QueryPlan> = plan.iter().filter(|q| !q.windows.is_empty()).collect();
    if active.is_empty() {
        return out;
    }
    let asked: BTreeSet<&'static str> = active
        .iter()
        .flat_map(|q| q.query.metrics.iter().map(|m| m.ces))
        .collect();
    let known = match discovery::known(setup, &asked, run.deadline, &mut out.warnings) {
        Ok(k) => k,
        Err(error) => {
            for q in &active {
                out.failures.push(failure(
                    q,
                    "discovery with ListMetrics".into(),
                    error.clone(),
                ));
            }
            return out;
        }
    };
    let mut accs = select(&active, &known, setup.max_series, &mut out);
    let jobs = Arc::new(jobs(&active, &accs, &known));
    let api = setup.api.clone();
    let Pooled {
        results,
        cut_short,
        stopped_by,
    } = pool(
        jobs.clone(),
        Arc::new(move |j: &Job, deadline| api.batch(&j.req, deadline)),
        run.concurrency,
        run.deadline,
        run.stop,
    );
    out.cut_short = cut_short;
    out.stopped_by = stopped_by;
    let mut left_out = LeftOut::default();
    for (job, result) in jobs.iter().zip(results) {
        let q = active[job.query];
        let Some(acc) = accs[job.query].as_mut() else {
            continue;
        };
        let error = match result {
            Some(Ok(answer)) => {
                fold(q, acc, &job.req, answer, &mut left_out);
                continue;
            }
            Some(Err(e)) => e,
            None => run.unfinished(stopped_by),
        };
        let touched = |w: &Window| w.start_ms < job.span.1 && job.span.0 < w.end_ms;
        for (wi, w) in q.windows.iter().enumerate() {
            if touched(w) {
                acc.failed[wi] = true;
            }
        }
        let what = format!("span [{}, {})", job.span.0, job.span.1);
        out.failures.push(failure(q, what, error));
    }
    out.warnings.extend(left_out.warnings());
    for (q, acc) in active.iter().zip(&accs) {
        if let Some(acc) = acc {
            settle(q, acc, &known.available, &mut out);
        }
    }
    out
}

/// Each query's series (`None` for a query past the cardinality guard, with its failure), and a
/// warning for each filter that matches nothing.
fn select(
    active: &[&QueryPlan],
    known: &Known,
    max_series: usize,
    out: &mut Collection,
) -> Vec<Option<Acc>> {
    let all: BTreeSet<&Dims> = known.available.values().flatten().collect();
    let names = &known.names;
    let mut emitted = 0usize;
    let mut accs = Vec::new();
    for q in active {
        let picks = |filter: &Option<Vec<String>>, id: &str, table: &BTreeMap<String, String>| {
            filter.as_ref().is_none_or(|f| {
                f.iter()
                    .any(|x| x == id || table.get(id).is_some_and(|n| n == x))
            })
        };
        let series: BTreeMap<Dims, CloudEyeKey> = all
            .iter()
            .filter(|d| d.key_id.is_some() == q.query.by_key)
            .filter(|d| picks(&q.query.models, &d.model_id, &names.models))
            .filter(|d| {
                d.key_id
                    .as_ref()
                    .is_none_or(|k| picks(&q.query.api_keys, k, &names.keys))
            })
            .map(|d| {
                let key = CloudEyeKey {
                    query: q.name.clone(),
                    model: discovery::named(&d.model_id, &names.models),
                    api_key: d.key_id.as_ref().map(|k| discovery::named(k, &names.keys)),
                };
                ((*d).clone(), key)
            })
            .collect();
        unmatched_filters(q, &series, &mut out.warnings);
        if emitted + series.len() > max_series {
            let breakdown = if q.query.by_key {
                "[model, api_key]"
            } else {
                "[model]"
            };
            out.failures.push(failure(
                q,
                "cardinality guard".into(),
                ApiError::Local(format!(
                    "breakdown {breakdown} gives {} series, and with the {emitted} before it that is more than limits.max_series ({max_series}); filter it with models: or api_keys:, or raise the limit",
                    series.len(),
                )),
            ));
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
    accs
}

/// A warning for each `models:` or `api_keys:` entry of `q` that matches none of its series.
fn unmatched_filters(
    q: &QueryPlan,
    series: &BTreeMap<Dims, CloudEyeKey>,
    warnings: &mut Vec<String>,
) {
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
                warnings.push(format!(
                    "query {}: {what} `{f}` matches nothing Cloud Eye reports",
                    q.name
                ));
            }
        }
    }
}

/// The calls: per query, span and filter, objects in chunks an answer can carry.
fn jobs(active: &[&QueryPlan], accs: &[Option<Acc>], known: &Known) -> Vec<Job> {
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
                let objects: Vec<(&'static CloudEyeMetric, Dims)> = acc
                    .series
                    .keys()
                    .flat_map(|d| {
                        q.query
                            .metrics
                            .iter()
                            .filter(|m| m.aggregate == aggregate)
                            .filter(|m| known.available.get(m.ces).is_some_and(|s| s.contains(d)))
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
    jobs
}

/// The series of every window of `q` whose calls all came back, less those with a count Cloud
/// Eye cannot have; in period mode, only up to the first failed bucket (later ones come again
/// next time, after it).
fn settle(
    q: &QueryPlan,
    acc: &Acc,
    available: &BTreeMap<&'static str, BTreeSet<Dims>>,
    out: &mut Collection,
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
                out.failures.push(Failure::series(
                    SourceId::CloudEye,
                    &q.name,
                    subject(key),
                    r.error(r.reason()),
                ));
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
            out.series.push(super::Series::CloudEye(Series {
                key: key.clone(),
                window: *w,
                values,
                checkpoint: q.checkpoint.clone(),
                running: None,
            }));
        }
        if let Some(cp) = &q.checkpoint {
            out.advance.insert(cp.clone(), w.end_ms);
        }
    }
}

/// `model=...` and, with the key breakdown, `api_key=...`: a series in a failure line.
fn subject(key: &CloudEyeKey) -> Vec<(&'static str, String)> {
    let mut tags = vec![("model", key.model.name.clone())];
    if let Some(k) = &key.api_key {
        tags.push(("api_key", k.name.clone()));
    }
    tags
}

/// A bucket in which some series' counts were refused: it fails whole, as a failed call
/// would (its other series cannot be sent without moving the query's checkpoint past it).
fn bucket_refused(
    q: &QueryPlan,
    series: &BTreeMap<Dims, CloudEyeKey>,
    refused: &BTreeMap<Dims, Refused>,
    w: &Window,
) -> Failure {
    let utc = |ms| crate::time::fmt_rfc3339(ms, &chrono_tz::UTC);
    let (dims, first) = refused.iter().next().expect("called with a refused series");
    let name = series
        .get(dims)
        .map(|k| super::What::Series(subject(k)).to_string())
        .unwrap_or_else(|| dims.to_string());
    let reason = match refused.len() {
        1 => format!("{name}: {}", first.reason()),
        n => format!("{n} series, the first {name}: {}", first.reason()),
    };
    let what = format!(
        "bucket {} to {}; it and the later ones wait for Cloud Eye to answer right",
        utc(w.start_ms),
        utc(w.end_ms)
    );
    failure(q, what, first.error(reason))
}

/// Adds one answer's datapoints to the windows they fall in: only those of the call's own
/// span (a server that includes the bucket at `to` must not count it twice) and once each.
/// A count Cloud Eye cannot have fails its series in that window (never rounded or clamped);
/// a latency that is not one is left out (and said once per query, metric and cause).
fn fold(
    q: &QueryPlan,
    acc: &mut Acc,
    req: &BatchRequest,
    answer: BatchAnswer,
    left_out: &mut LeftOut,
) {
    let asked: BTreeMap<(&str, &Dims), &'static CloudEyeMetric> =
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
                value: v,
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
                Aggregate::Max => match datapoints::latency(v) {
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
    use crate::domain::cloud_eye::metric;
    use crate::plan::cloud_eye::Span;
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

    impl Api for Loose {
        fn list_metrics(&self, metric: &str, _: &str, _: Instant) -> Result<MetricPage, ApiError> {
            Ok(MetricPage {
                entries: vec![(metric.to_string(), dims())],
                total: Some(1),
                ..MetricPage::default()
            })
        }
        fn batch(&self, req: &BatchRequest, _: Instant) -> Result<BatchAnswer, ApiError> {
            let p = i64::from(req.period_s) * 1000;
            let points: Vec<(i64, f64)> = (req.from_ms / p..=req.to_ms / p)
                .map(|b| (b * p, self.value))
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

    fn buckets_query() -> QueryPlan {
        QueryPlan {
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

    fn collect_with(ce: Loose) -> Collection {
        let pinned = Names::default();
        let setup = Setup {
            api: Arc::new(ce),
            cache: None,
            pinned: &pinned,
            max_series: 10,
            discovery_max_age: Duration::from_secs(3600),
        };
        let run = Run {
            concurrency: 1,
            deadline: Instant::now() + Duration::from_secs(10),
            stop: &crate::collect::never_stop,
        };
        collect(&[buckets_query()], &setup, &run)
    }

    fn count(s: &crate::collect::Series, ces: &str) -> u64 {
        match s {
            crate::collect::Series::CloudEye(s) => s.count(ces).unwrap(),
            other => panic!("not a Cloud Eye series: {other:?}"),
        }
    }

    #[test]
    fn a_bucket_on_a_span_boundary_is_counted_once() {
        let out = collect_with(Loose { value: 1.0 });
        let counts: Vec<u64> = out
            .series
            .iter()
            .map(|s| count(s, "total_tokens"))
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
                .to_string()
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
}
