//! Which series each query reads, and the calls that read them, planned against what Cloud
//! Eye's budget still allows before the deadline, before the first call: a call that cannot
//! produce output is never made. A window query reads as many of its series as the budget
//! affords (those the last run left out first in line) and the others fail by name; a period
//! query reads its oldest buckets the budget affords, the rest waiting for the next run. The
//! calls are cut into spans for the fewest calls for the series there are (500 metric objects
//! a call where the 3,000-datapoint cap permits, the coarsest period that keeps each window
//! exact: [`crate::plan::cloud_eye::spans`]), and period buckets come in rounds small enough
//! that a month of them never sits in memory at once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use super::discovery::{self, Known};
use super::{failure, subject, DiscoveryCache, Setup};
use crate::collect::{Collection, Failure, SourceId};
use crate::domain::cloud_eye::{
    Aggregate, BatchRequest, CloudEyeKey, CloudEyeMetric, Dims, MAX_METRICS_PER_CALL,
};
use crate::domain::{ApiError, Shape};
use crate::plan::cloud_eye::spans::{self, Load};
use crate::plan::cloud_eye::{QueryPlan, Span, WindowIndex};

/// The most figures (series x metrics x buckets) one round of period buckets holds.
const ROUND_FIGURES: usize = 1 << 18;

/// One query at run time.
pub(super) struct Query<'a> {
    pub plan: &'a QueryPlan,
    /// Its series in the order they are served: those the last run left out first.
    pub dims: Arc<Vec<Dims>>,
    pub keys: Vec<CloudEyeKey>,
    /// Which of its windows holds a datapoint.
    pub index: WindowIndex,
    /// Window mode: how many of its series, first in line, this run reads.
    pub served: usize,
    /// Period mode: it met a bucket that failed, so its later buckets wait for the next run.
    pub stopped: bool,
    /// The series the last run left out (to know whether to store them again).
    pub owed_before: Vec<Dims>,
    /// A metric without any datapoint was said.
    pub warned_unreported: bool,
}

impl Query<'_> {
    pub fn metrics(&self) -> &[&'static CloudEyeMetric] {
        &self.plan.query.metrics
    }

    pub fn is_period(&self) -> bool {
        self.plan.windows.iter().any(|w| w.shape == Shape::Bucket)
    }

    /// The metric objects of one series, per filter.
    pub fn each(&self) -> Load {
        let sum = self.metrics().iter().filter(|m| m.is_count()).count();
        Load {
            sum,
            max: self.metrics().len() - sum,
        }
    }
}

/// One batch call to make.
pub(super) struct Job {
    /// Its query, an index into the run's queries.
    pub query: usize,
    /// Its part of the round.
    pub part: usize,
    pub span: Span,
    pub aggregate: Aggregate,
    /// Each metric object: (series, metric), indices into the query's series and metrics.
    pub objects: Vec<(u32, u16)>,
    /// The round's flags it is for: it is not made once they are all down (what it would
    /// read can no longer produce output).
    pub needs: Vec<u32>,
    /// The flags its failure puts down: its own, and in period mode those of the later spans
    /// (their buckets wait behind the failed one).
    pub dooms: Range<u32>,
}

impl Job {
    /// The request, made when the call is (the job itself holds indices only).
    pub fn request(&self, dims: &[Dims], metrics: &[&'static CloudEyeMetric]) -> BatchRequest {
        BatchRequest {
            metrics: self
                .objects
                .iter()
                .map(|&(s, m)| (metrics[m as usize], dims[s as usize].clone()))
                .collect(),
            from_ms: self.span.from,
            to_ms: self.span.to,
            period_s: self.span.period_s,
            aggregate: self.aggregate,
        }
    }
}

/// What a round settles of one query: these of its windows (window mode: its one window).
pub(super) struct Part {
    pub query: usize,
    pub windows: Range<usize>,
    /// Where its flags start among the round's: one per series (window mode) or per span
    /// (period mode).
    pub flags: u32,
    /// Period mode: the start of each span of the round, oldest first.
    pub spans: Vec<i64>,
}

/// Calls made together on the pool, and what they settle.
pub(super) struct Round {
    pub jobs: Vec<Job>,
    pub parts: Vec<Part>,
    pub flags: usize,
}

/// Each query's series (queries past the cardinality guard fail whole), with a warning for
/// each filter that matches nothing; those the last run left out first in line.
pub(super) fn select<'a>(
    active: &[&'a QueryPlan],
    known: &Known,
    setup: &Setup<'_>,
    out: &mut Collection,
) -> Vec<Query<'a>> {
    let names = &known.names;
    let mut emitted = 0usize;
    let mut queries = Vec::new();
    for q in active {
        let picks = |filter: &Option<Vec<String>>, id: &str, table: &BTreeMap<String, String>| {
            filter.as_ref().is_none_or(|f| {
                f.iter()
                    .any(|x| x == id || table.get(id).is_some_and(|n| n == x))
            })
        };
        let series: BTreeMap<&Dims, CloudEyeKey> = known
            .series
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
                    key_group: None,
                };
                (d, key)
            })
            .collect();
        unmatched_filters(q, &series, &mut out.warnings);
        // A budget's own series are summed and dropped, never emitted: they take no part of
        // limits.max_series (else a large breakdown would skip every key-group budget).
        if q.budgets.is_none() {
            if emitted + series.len() > setup.max_series {
                out.failures
                    .push(guard(q, series.len(), emitted, setup.max_series));
                continue;
            }
            emitted += series.len();
        }
        queries.push(in_line(q, series, setup.cache));
    }
    queries
}

/// The cardinality guard's failure of a query.
fn guard(q: &QueryPlan, series: usize, emitted: usize, max_series: usize) -> Failure {
    let breakdown = if q.query.by_key {
        "[model, api_key]"
    } else {
        "[model]"
    };
    failure(
        q,
        "cardinality guard".into(),
        ApiError::Local(format!(
            "breakdown {breakdown} gives {series} series, and with the {emitted} before it that is more than limits.max_series ({max_series}); filter it with models: or api_keys:, or raise the limit",
        )),
    )
}

/// A query's series in the order they are served: those the last run left out (in its
/// order) first, then the others.
fn in_line<'a>(
    q: &'a QueryPlan,
    mut series: BTreeMap<&Dims, CloudEyeKey>,
    cache: Option<&dyn DiscoveryCache>,
) -> Query<'a> {
    let owed_before = match (cache, q.checkpoint.is_some()) {
        (Some(c), false) => c.owed(&q.name),
        _ => Vec::new(),
    };
    let mut dims = Vec::with_capacity(series.len());
    let mut keys = Vec::with_capacity(series.len());
    for d in &owed_before {
        if let Some(k) = series.remove(d) {
            dims.push(d.clone());
            keys.push(k);
        }
    }
    for (d, k) in series {
        dims.push(d.clone());
        keys.push(k);
    }
    Query {
        plan: q,
        dims: Arc::new(dims),
        keys,
        index: WindowIndex::new(&q.windows),
        served: 0,
        stopped: false,
        owed_before,
        warned_unreported: false,
    }
}

/// A warning for each `models:` or `api_keys:` entry of `q` that matches none of its series.
fn unmatched_filters(
    q: &QueryPlan,
    series: &BTreeMap<&Dims, CloudEyeKey>,
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

/// What a query reads this run: the spans of its calls, for how many of its series, and what
/// that costs.
#[derive(Clone, Debug, Default)]
struct Take {
    spans: Vec<Span>,
    series: usize,
    calls: usize,
    /// What reading everything would cost.
    need: usize,
}

/// What `q` reads within `share` calls.
fn take(q: &Query<'_>, share: usize) -> Take {
    let (each, n) = (q.each(), q.dims.len());
    let all = q.plan.spans(each.times(n));
    let need = spans::total(&all, each.times(n));
    if need <= share {
        return Take {
            spans: all,
            series: n,
            calls: need,
            need,
        };
    }
    if q.is_period() {
        let c = spans::spans_within(&all, each.times(n), share);
        let spans = all[..c].to_vec();
        let calls = spans::total(&spans, each.times(n));
        return Take {
            spans,
            series: n,
            calls,
            need,
        };
    }
    // The most series whose own cheapest cut fits (fewer series may be cut differently: one
    // span of hours where many take three); what that cut costs only grows with the series.
    let cost = |k: usize| {
        let spans = q.plan.spans(each.times(k));
        (spans::total(&spans, each.times(k)), spans)
    };
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if cost(mid).0 <= share {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let (calls, spans) = cost(lo);
    Take {
        spans,
        series: lo,
        calls,
        need,
    }
}

/// `budget` shared by the queries: each gets what it needs up to an equal share of what is
/// left, the shares of those that need less going to the others; what the granularity of
/// calls leaves over goes to the queries in spec order.
fn shares(queries: &[Query<'_>], budget: usize) -> Vec<Take> {
    let mut takes: Vec<Take> = queries.iter().map(|q| take(q, usize::MAX)).collect();
    let mut left = budget;
    let mut open: BTreeSet<usize> = (0..queries.len()).collect();
    let mut share = vec![0usize; queries.len()];
    // Water-filling: the queries that need less than an equal share are served whole.
    loop {
        let even = left / open.len().max(1);
        let whole: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| takes[i].need <= even)
            .collect();
        if whole.is_empty() {
            for &i in &open {
                share[i] = even;
            }
            break;
        }
        for i in whole {
            share[i] = takes[i].need;
            left -= takes[i].need;
            open.remove(&i);
        }
        if open.is_empty() {
            break;
        }
    }
    let mut spent = 0;
    for &i in &open {
        takes[i] = take(&queries[i], share[i]);
    }
    for (i, t) in takes.iter().enumerate() {
        spent += if open.contains(&i) { t.calls } else { t.need };
    }
    for &i in &open {
        let more = budget.saturating_sub(spent);
        let t = take(&queries[i], takes[i].calls + more);
        spent = spent - takes[i].calls + t.calls;
        takes[i] = t;
    }
    takes
}

/// The rounds of calls of every query within `budget`; the series left out fail by name, the
/// buckets left out are said to wait.
pub(super) fn plan(
    queries: &mut [Query<'_>],
    budget: usize,
    cache: Option<&dyn DiscoveryCache>,
    out: &mut Collection,
) -> VecDeque<Round> {
    let takes = shares(queries, budget);
    let mut rounds = VecDeque::new();
    let mut window = Round {
        jobs: Vec::new(),
        parts: Vec::new(),
        flags: 0,
    };
    for (qi, (q, t)) in queries.iter_mut().zip(&takes).enumerate() {
        if q.is_period() {
            deferred_buckets(q, t, out);
            rounds.extend(period_rounds(qi, q, &t.spans));
            continue;
        }
        q.served = t.series;
        deferred_series(q, t, out);
        if q.served == 0 {
            remember_owed(q, cache, |_| false);
            continue;
        }
        window_jobs(qi, q, &t.spans, &mut window);
    }
    if !window.parts.is_empty() {
        // Each series' calls together, first in line first: cut short, the run has whole
        // series.
        window.jobs.sort_by_key(|j| {
            let last = j.objects.iter().map(|o| o.0).max().unwrap_or(0);
            (last, j.span.from, j.aggregate)
        });
        rounds.push_front(window);
    }
    rounds
}

/// The series a window query leaves out this run, each a failure that says why.
fn deferred_series(q: &Query<'_>, t: &Take, out: &mut Collection) {
    let left = q.dims.len() - t.series;
    if left == 0 {
        return;
    }
    let why = format!(
        "not asked this run: Cloud Eye's request budget (limits.ces_requests_per_minute, shared by every process with these credentials) affords {} of the {} calls the query's {} series need before the deadline, which read {} of them; this one is first in line next run",
        t.calls,
        t.need,
        q.dims.len(),
        t.series
    );
    for key in &q.keys[t.series..] {
        out.failures.push(Failure::series(
            SourceId::CloudEye,
            &q.plan.name,
            subject(key),
            ApiError::Deferred(why.clone()),
        ));
    }
}

/// The buckets a period query leaves for the next run: a warning, or when it reads none, a
/// failure (nothing of it is delivered).
fn deferred_buckets(q: &Query<'_>, t: &Take, out: &mut Collection) {
    let read = t.spans.last().map_or(0, |s| s.to);
    let waiting = q.plan.windows.iter().filter(|w| w.start_ms >= read).count();
    if waiting == 0 {
        return;
    }
    let why = format!(
        "Cloud Eye's request budget (limits.ces_requests_per_minute) affords {} of the {} calls its {} settled buckets need before the deadline",
        t.calls,
        t.need,
        q.plan.windows.len()
    );
    if t.spans.is_empty() {
        out.failures.push(failure(
            q.plan,
            format!("{waiting} settled buckets"),
            ApiError::Deferred(format!(
                "not asked this run: {why}; they are read, oldest first, in the next runs"
            )),
        ));
    } else {
        out.warnings.push(format!(
            "query {}: {why}: this run reads the oldest {}, and the {waiting} others follow in the next runs",
            q.plan.name,
            q.plan.windows.len() - waiting
        ));
    }
}

/// Keeps, for the next run, the series of `q` that `emitted` says were not (in line order).
pub(super) fn remember_owed(
    q: &Query<'_>,
    cache: Option<&dyn DiscoveryCache>,
    emitted: impl Fn(usize) -> bool,
) {
    let Some(cache) = cache else {
        return;
    };
    let owed: Vec<Dims> = (0..q.dims.len())
        .filter(|&s| !emitted(s))
        .map(|s| q.dims[s].clone())
        .collect();
    if owed != q.owed_before {
        cache.store_owed(&q.plan.name, &owed);
    }
}

/// The calls that read `q`'s first `q.served` series over `spans`: per span and filter, their
/// objects in chunks one answer carries whole.
fn window_jobs(qi: usize, q: &Query<'_>, spans: &[Span], round: &mut Round) {
    let part = round.parts.len();
    let flags = round.flags as u32;
    round.parts.push(Part {
        query: qi,
        windows: 0..q.plan.windows.len(),
        flags,
        spans: Vec::new(),
    });
    round.flags += q.served;
    let all = objects(q, q.served);
    for &span in spans {
        // A job is for its series: once they have all failed, it is not made.
        let needs = |chunk: &[(u32, u16)]| {
            let mut needs: Vec<u32> = chunk.iter().map(|o| flags + o.0).collect();
            needs.dedup();
            (needs, 0..0)
        };
        span_jobs((qi, part), span, &all, &needs, &mut round.jobs);
    }
}

/// A job's flags from its objects: those it is for, and those its failure puts down.
type FlagsOf<'a> = dyn Fn(&[(u32, u16)]) -> (Vec<u32>, Range<u32>) + 'a;

/// The calls of one span: per filter, `objects` in chunks one answer carries whole, each with
/// the flags it is for and those its failure puts down (`flags`).
fn span_jobs(
    (query, part): (usize, usize),
    span: Span,
    objects: &[(Aggregate, Vec<(u32, u16)>)],
    flags: &FlagsOf<'_>,
    jobs: &mut Vec<Job>,
) {
    let per_call = spans::per_call(span.points()).clamp(1, MAX_METRICS_PER_CALL);
    for (aggregate, objects) in objects {
        for chunk in objects.chunks(per_call) {
            let (needs, dooms) = flags(chunk);
            jobs.push(Job {
                query,
                part,
                span,
                aggregate: *aggregate,
                objects: chunk.to_vec(),
                needs,
                dooms,
            });
        }
    }
}

/// The metric objects of the first `series` series of `q`, per filter, series by series.
fn objects(q: &Query<'_>, series: usize) -> Vec<(Aggregate, Vec<(u32, u16)>)> {
    [Aggregate::Sum, Aggregate::Max]
        .into_iter()
        .map(|aggregate| {
            let metrics: Vec<u16> = (0..q.metrics().len())
                .filter(|&m| q.metrics()[m].aggregate == aggregate)
                .map(|m| m as u16)
                .collect();
            let objects = (0..series as u32)
                .flat_map(|s| metrics.iter().map(move |&m| (s, m)))
                .collect();
            (aggregate, objects)
        })
        .filter(|(_, o): &(Aggregate, Vec<(u32, u16)>)| !o.is_empty())
        .collect()
}

/// A period query's spans in rounds, oldest first, each within [`ROUND_FIGURES`].
fn period_rounds(qi: usize, q: &Query<'_>, spans: &[Span]) -> Vec<Round> {
    let per_bucket = (q.dims.len() * q.metrics().len()).max(1);
    let figures = |s: &Span| buckets(q, s.from, s.to).len() * per_bucket;
    let mut rounds = Vec::new();
    let mut at = 0;
    while at < spans.len() {
        let (mut end, mut held) = (at + 1, figures(&spans[at]));
        while end < spans.len() && held + figures(&spans[end]) <= ROUND_FIGURES {
            held += figures(&spans[end]);
            end += 1;
        }
        rounds.push(period_round(qi, q, &spans[at..end]));
        at = end;
    }
    rounds
}

/// The buckets of `q` within `[from, to)` (spans hold whole buckets), by their index.
fn buckets(q: &Query<'_>, from: i64, to: i64) -> Range<usize> {
    match (q.index.find(from), q.index.find(to - 1)) {
        (Some(first), Some(last)) if first <= last => first..last + 1,
        _ => 0..0,
    }
}

/// One round of a period query: the calls of `spans` and the buckets they hold.
fn period_round(qi: usize, q: &Query<'_>, spans: &[Span]) -> Round {
    let (from, to) = (spans[0].from, spans[spans.len() - 1].to);
    let mut round = Round {
        jobs: Vec::new(),
        parts: vec![Part {
            query: qi,
            windows: buckets(q, from, to),
            flags: 0,
            spans: spans.iter().map(|s| s.from).collect(),
        }],
        flags: spans.len(),
    };
    let all = objects(q, q.dims.len());
    for (i, &span) in spans.iter().enumerate() {
        // A job is for its span's buckets; its failure holds them and the later ones back.
        let flags = |_: &[(u32, u16)]| (vec![i as u32], i as u32..spans.len() as u32);
        span_jobs((qi, 0), span, &all, &flags, &mut round.jobs);
    }
    round
}

/// When a run is cut short: the period buckets of the rounds it did not get to wait for the
/// next run (said once per query).
pub(super) fn left_for_next_run(
    queries: &[Query<'_>],
    rounds: &VecDeque<Round>,
    warnings: &mut Vec<String>,
) {
    let mut said = BTreeSet::new();
    for part in rounds.iter().flat_map(|r| &r.parts) {
        let q = &queries[part.query];
        if q.stopped || !said.insert(part.query) {
            continue;
        }
        let waiting = q.plan.windows.len() - part.windows.start;
        warnings.push(format!(
            "query {}: the run was cut short; its {waiting} later settled buckets are read in the next runs",
            q.plan.name
        ));
    }
}
