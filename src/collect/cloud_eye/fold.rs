//! One round of Cloud Eye calls on the worker pool, each answer folded into its windows the
//! moment it arrives (and dropped): a datapoint's window found by [`WindowIndex`], counts summed
//! exactly, latency as the highest period. Then the round settles: a window query emits every
//! series whose calls all came back (the others fail by name, and are first in line next run);
//! a period query emits its buckets in order up to the first that failed (that one and the
//! later ones wait for the next run, and their calls in this round are not made).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::calls::{remember_owed, Job, Part, Query, Round};
use super::datapoints::{self, LeftOut, Point, Refused};
use super::{budgets, failure, groups, subject, Figure, Series, Setup, Spent};
use crate::collect::pool::{guarded, pool};
use crate::collect::{Collection, Failure, Run, SourceId, What};
use crate::domain::cloud_eye::CloudEyeKey;
use crate::domain::cloud_eye::{Aggregate, BatchAnswer, CloudEyeMetric, Dims};
use crate::domain::cloud_eye::{COMPLETION_TOKENS, PROMPT_TOKENS};
use crate::domain::ApiError;
use crate::plan::cloud_eye::WindowIndex;
use crate::spend::prices::{self, PriceError, Priced};

/// One token datapoint to price: its period and count.
#[derive(Clone, Copy)]
struct TokenPoint {
    start_ms: i64,
    end_ms: i64,
    n: u64,
}

/// Per series of `q`, whether it is priced: the table prices its model (by name or id) and the
/// query reads both token counts.
fn priced(q: &Query<'_>) -> Vec<bool> {
    let reads = |ces| q.metrics().iter().any(|m| m.ces == ces);
    match &q.plan.schedule {
        Some(s) if reads(PROMPT_TOKENS) && reads(COMPLETION_TOKENS) => q
            .keys
            .iter()
            .map(|k| s.prices(&[&k.model.name, &k.model.id]))
            .collect(),
        _ => vec![false; q.keys.len()],
    }
}

/// What a round has of one part so far.
struct Acc {
    /// Per window of the part, series and metric: `[(w * series + s) * metrics + m]`.
    figures: Vec<Option<Figure>>,
    series: usize,
    metrics: usize,
    /// Window mode: why a series failed (its first failed call).
    failed_series: Vec<Option<ApiError>>,
    /// Period mode: why a bucket failed (the first failed call over it).
    failed_windows: Vec<Option<ApiError>>,
    /// The series whose counts Cloud Eye answered wrong, per (window, series).
    refused: BTreeMap<(usize, usize), Refused>,
    /// Per metric, whether any datapoint of it came.
    seen: Vec<bool>,
    /// Per (window, series) of a priced model, its cost so far (the first datapoint that
    /// could not be priced exactly, once one could not).
    costs: Vec<Option<Result<Priced, PriceError>>>,
    /// Per series, whether its model is priced (and the query reads both token counts).
    priced: Vec<bool>,
}

impl Acc {
    fn new(q: &Query<'_>, part: &Part) -> Acc {
        let (windows, series) = (part.windows.len(), q.dims.len());
        let metrics = q.metrics().len();
        Acc {
            figures: vec![None; windows * series * metrics],
            series,
            metrics,
            failed_series: vec![None; if q.is_period() { 0 } else { series }],
            failed_windows: vec![None; windows],
            refused: BTreeMap::new(),
            seen: vec![false; metrics],
            costs: vec![None; windows * series],
            priced: priced(q),
        }
    }

    /// Adds the cost of one token datapoint `[start_ms, end_ms)` of series `s` in window `w`:
    /// at the price in force then, refused when a price change falls inside it.
    fn price(&mut self, q: &Query<'_>, (w, s): (usize, usize), point: TokenPoint, ces: &str) {
        let (Some(schedule), true) = (&q.plan.schedule, self.priced[s]) else {
            return;
        };
        let (input, output) = match ces {
            PROMPT_TOKENS => (point.n, 0),
            COMPLETION_TOKENS => (0, point.n),
            _ => return,
        };
        let slot = &mut self.costs[w * self.series + s];
        if let Some(Err(_)) = slot {
            return;
        }
        let key = &q.keys[s];
        let one = prices::Point {
            start_ms: point.start_ms,
            end_ms: point.end_ms,
            input,
            output,
        };
        let cost = schedule
            .cost(&[&key.model.name, &key.model.id], &[one])
            .map(Option::unwrap_or_default);
        let sum = match (slot.take(), cost) {
            (Some(Ok(before)), Ok(c)) => before.checked_add(c).map_err(PriceError::from),
            (_, c) => c,
        };
        *slot = Some(sum);
    }

    /// The cost of series `s` in window `w`, when its model is priced: zero without traffic.
    fn cost(&self, q: &Query<'_>, w: usize, s: usize) -> Option<Result<Spent, PriceError>> {
        let schedule = q.plan.schedule.as_ref().filter(|_| self.priced[s])?;
        let priced = match &self.costs[w * self.series + s] {
            None => Priced::default(),
            Some(Ok(p)) => *p,
            Some(Err(e)) => return Some(Err(e.clone())),
        };
        Some(Ok(Spent {
            currency: schedule.currency,
            priced,
        }))
    }

    fn slot(&mut self, w: usize, s: usize, m: usize) -> &mut Option<Figure> {
        &mut self.figures[(w * self.series + s) * self.metrics + m]
    }
}

/// What a worker needs to make a job's request: its query's series and metrics.
type Table = (Arc<Vec<Dims>>, Vec<&'static CloudEyeMetric>);

/// Makes the calls of `round` and settles what they read.
pub(super) fn run_round(
    queries: &mut [Query<'_>],
    round: Round,
    setup: &Setup<'_>,
    run: &Run<'_>,
) -> Collection {
    let mut out = Collection::default();
    let mut accs: Vec<Acc> = round
        .parts
        .iter()
        .map(|p| Acc::new(&queries[p.query], p))
        .collect();
    let down: Arc<Vec<AtomicBool>> =
        Arc::new((0..round.flags).map(|_| AtomicBool::new(false)).collect());
    // A query stopped at a failed bucket in an earlier round makes no more calls.
    for p in &round.parts {
        if queries[p.query].stopped {
            for f in p.flags as usize..p.flags as usize + p.spans.len() {
                down[f].store(true, Ordering::Relaxed);
            }
        }
    }
    let tables: Arc<Vec<Table>> = Arc::new(
        queries
            .iter()
            .map(|q| (q.dims.clone(), q.metrics().to_vec()))
            .collect(),
    );
    let jobs = Arc::new(round.jobs);
    let api = setup.api.clone();
    let flags = down.clone();
    let mut left_out = LeftOut::default();
    let pooled = pool(
        jobs.clone(),
        Arc::new(move |j: &Job, deadline| {
            if j.needs
                .iter()
                .all(|&f| flags[f as usize].load(Ordering::Relaxed))
            {
                return Ok(None);
            }
            let (dims, metrics) = &tables[j.query];
            let answer = api.batch(&j.request(dims, metrics), deadline);
            if answer.is_err() {
                // At once, so the next job on this thread already knows.
                for f in j.needs.iter().copied().chain(j.dooms.clone()) {
                    flags[f as usize].store(true, Ordering::Relaxed);
                }
            }
            answer.map(Some)
        }),
        run.concurrency,
        run.deadline,
        run.stop,
        &mut |i, result| {
            let job = &jobs[i];
            let (q, acc, part) = (
                &queries[job.query],
                &mut accs[job.part],
                &round.parts[job.part],
            );
            // Read here, not on the call's thread, which is on to its next call.
            match result.and_then(|r| r.map(|u| guarded(|| u.read())).transpose()) {
                Ok(Some(answer)) => fold(q, part, acc, job, answer, &mut left_out),
                Ok(None) => {}
                Err(e) => failed(q, part, acc, job, e, &down),
            }
        },
    );
    out.cut_short = pooled.cut_short;
    out.stopped_by = pooled.stopped_by;
    for (i, answered) in pooled.answered.iter().enumerate() {
        if !answered {
            let job = &jobs[i];
            let (q, part) = (&queries[job.query], &round.parts[job.part]);
            failed(
                q,
                part,
                &mut accs[job.part],
                job,
                run.unfinished(pooled.stopped_by),
                &down,
            );
        }
    }
    out.warnings.extend(left_out.warnings());
    for (part, acc) in round.parts.iter().zip(accs) {
        let q = &mut queries[part.query];
        unreported(q, &acc, &mut out.warnings);
        if q.is_period() {
            settle_buckets(q, part, acc, &mut out);
        } else {
            settle_window(q, acc, setup, &mut out);
        }
    }
    out
}

/// A call that failed (or did not come back): its series fail (window mode), or the buckets
/// it covers and every later one (period mode); the calls that were only for them are not
/// made.
fn failed(
    q: &Query<'_>,
    part: &Part,
    acc: &mut Acc,
    job: &Job,
    error: ApiError,
    down: &[AtomicBool],
) {
    if q.is_period() {
        for (w, window) in q.plan.windows[part.windows.clone()].iter().enumerate() {
            let touched = window.start_ms < job.span.to && job.span.from < window.end_ms;
            if touched && acc.failed_windows[w].is_none() {
                acc.failed_windows[w] = Some(error.clone());
            }
        }
        let at = part
            .spans
            .iter()
            .position(|&s| s == job.span.from)
            .unwrap_or(0);
        for f in at..part.spans.len() {
            down[part.flags as usize + f].store(true, Ordering::Relaxed);
        }
        return;
    }
    for &(s, _) in &job.objects {
        let s = s as usize;
        if acc.failed_series[s].is_none() {
            acc.failed_series[s] = Some(error.clone());
        }
        down[part.flags as usize + s].store(true, Ordering::Relaxed);
    }
}

/// Adds one answer's datapoints to the windows they fall in: only those of the call's own
/// span (a server that includes the bucket at `to` must not count it twice) and once each.
/// A count Cloud Eye cannot have fails its series in that window (never rounded or clamped);
/// a latency that is not one is left out (and said once per query, metric and cause).
fn fold(
    q: &Query<'_>,
    part: &Part,
    acc: &mut Acc,
    job: &Job,
    answer: BatchAnswer,
    left_out: &mut LeftOut,
) {
    let metrics = q.metrics();
    let asked: HashMap<(&str, &Dims), (u32, u16)> = job
        .objects
        .iter()
        .map(|&(s, m)| ((metrics[m as usize].ces, &q.dims[s as usize]), (s, m)))
        .collect();
    let BatchAnswer {
        series,
        request_id,
        endpoint,
    } = answer;
    let mut seen: HashSet<(u32, u16, i64)> = HashSet::new();
    for ((name, dims), points) in series {
        let Some(&(s, m)) = asked.get(&(name.as_str(), &dims)) else {
            continue;
        };
        let metric = metrics[m as usize];
        for (ts, v) in points {
            if ts < job.span.from || ts >= job.span.to || !seen.insert((s, m, ts)) {
                continue;
            }
            // Whole buckets come back; each belongs to the window it starts in.
            let Some(w) = window_of(&q.index, part, ts) else {
                continue;
            };
            acc.seen[m as usize] = true;
            let point = |why| Point {
                metric: metric.ces,
                at_ms: ts,
                value: v.value,
                why,
            };
            let (s, m) = (s as usize, m as usize);
            match metric.aggregate {
                Aggregate::Sum => {
                    let slot = acc.slot(w, s, m);
                    let sum = match *slot {
                        Some(Figure::Count(c)) => c,
                        _ => 0,
                    };
                    let counted =
                        datapoints::count(v).and_then(|n| Ok((n, datapoints::add(sum, n)?)));
                    match counted {
                        Ok((n, sum)) => {
                            *slot = Some(Figure::Count(sum));
                            let point = TokenPoint {
                                start_ms: ts,
                                end_ms: ts + i64::from(job.span.period_s) * 1000,
                                n,
                            };
                            acc.price(q, (w, s), point, metric.ces);
                        }
                        Err(why) => {
                            acc.refused
                                .entry((w, s))
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
                        let slot = acc.slot(w, s, m);
                        let high = match *slot {
                            Some(Figure::Millis(h)) => h.max(v),
                            _ => v,
                        };
                        *slot = Some(Figure::Millis(high));
                    }
                    Err(why) => left_out.add(&q.plan.name, &dims, point(why)),
                },
            }
        }
    }
}

/// A warning (once per query and run) for each latency metric of which no datapoint came for
/// any series: Cloud Eye does not publish it here (a count without datapoints is 0, no traffic).
fn unreported(q: &mut Query<'_>, acc: &Acc, warnings: &mut Vec<String>) {
    if q.warned_unreported || acc.figures.is_empty() {
        return;
    }
    let plan = q.plan;
    for (m, metric) in plan.query.metrics.iter().enumerate() {
        if !metric.is_count() && !acc.seen[m] {
            q.warned_unreported = true;
            warnings.push(format!(
                "query {}: Cloud Eye reports no `{}` datapoint for any of its {} series in SYS.MaaS; it is left out (drop it from `metrics:` if this project never has it)",
                plan.name,
                metric.ces,
                q.dims.len()
            ));
        }
    }
}

/// The part's window (counted from its first) that holds the instant `ts`.
fn window_of(index: &WindowIndex, part: &Part, ts: i64) -> Option<usize> {
    let w = index.find(ts)?;
    part.windows.contains(&w).then(|| w - part.windows.start)
}

/// A series' values in one window: in the query's order, a count without datapoints 0 (no
/// traffic), a latency without any absent.
fn values(q: &Query<'_>, acc: &Acc, w: usize, s: usize) -> Vec<(&'static CloudEyeMetric, Figure)> {
    let base = (w * acc.series + s) * acc.metrics;
    q.metrics()
        .iter()
        .enumerate()
        .filter_map(|(m, metric)| match acc.figures[base + m] {
            Some(f) => Some((*metric, f)),
            None if metric.is_count() => Some((*metric, Figure::Count(0))),
            None => None,
        })
        .collect()
}

/// A window query's series: every one whose calls all came back, less those with a count
/// Cloud Eye cannot have; the others fail by name. Those not emitted are first in line next
/// run.
fn settle_window(q: &Query<'_>, acc: Acc, setup: &Setup<'_>, out: &mut Collection) {
    let window = q.plan.windows[0];
    let mut emitted = vec![false; q.dims.len()];
    let (first, failures) = (out.series.len(), out.failures.len());
    // Grouped: the keys a group would miss (not collected). A key whose cost is not exact
    // only leaves its group's cost out (its tokens count); a budget is skipped for it.
    let mut missing: Vec<(CloudEyeKey, ApiError)> = Vec::new();
    let mut costless: Vec<(CloudEyeKey, ApiError)> = Vec::new();
    for (s, key) in q.keys.iter().enumerate().take(q.served) {
        let error = match (&acc.failed_series[s], acc.refused.get(&(0, s))) {
            (Some(e), _) => e.clone(),
            (None, Some(r)) => r.error(r.reason()),
            (None, None) => {
                let failed = out.failures.len();
                let cost = cost_of(q, &acc, (0, s), out);
                if let Some(f) = out.failures.get(failed) {
                    costless.push((key.clone(), f.error.clone()));
                }
                out.series.push(crate::collect::Series::CloudEye(Series {
                    key: key.clone(),
                    window,
                    values: values(q, &acc, 0, s),
                    checkpoint: None,
                    running: None,
                    cost,
                }));
                emitted[s] = true;
                continue;
            }
        };
        missing.push((key.clone(), error.clone()));
        out.failures.push(Failure::series(
            SourceId::CloudEye,
            &q.plan.name,
            subject(key),
            error,
        ));
    }
    remember_owed(q, setup.cache, |s| emitted[s]);
    if let Some(b) = &q.plan.budgets {
        for key in q.keys.iter().skip(q.served) {
            let later = "not read this collection (the Cloud Eye budget)";
            missing.push((key.clone(), ApiError::Deferred(later.into())));
        }
        missing.extend(costless);
        budgets::settle(q.plan, b, out, (first, failures), &missing);
        return;
    }
    if q.plan.grouping.is_some() {
        for key in q.keys.iter().skip(q.served) {
            let later = "not read this run (the Cloud Eye budget); first in line next run";
            missing.push((key.clone(), ApiError::Deferred(later.into())));
        }
        regroup(q, out, first, &missing);
    }
}

/// Grouped queries: the per-key series settled since `first` summed into their groups, a
/// group that misses a key (`missing`) failed instead.
fn regroup(q: &Query<'_>, out: &mut Collection, first: usize, missing: &[(CloudEyeKey, ApiError)]) {
    let Some(g) = &q.plan.grouping else {
        return;
    };
    let per_key: Vec<Series> = out
        .series
        .drain(first..)
        .filter_map(|s| match s {
            crate::collect::Series::CloudEye(s) => Some(s),
            crate::collect::Series::Statistics(_) => None,
        })
        .collect();
    let (series, failures) = groups::sum(q.plan, g, per_key, missing);
    out.series
        .extend(series.into_iter().map(crate::collect::Series::CloudEye));
    out.failures.extend(failures);
}

/// The cost of series `s` in window `w`; one that cannot be exact is left out, with a failure
/// line (never an averaged price).
fn cost_of(
    q: &Query<'_>,
    acc: &Acc,
    (w, s): (usize, usize),
    out: &mut Collection,
) -> Option<Box<Spent>> {
    match acc.cost(q, w, s)? {
        Ok(c) => Some(Box::new(c)),
        Err(e) => {
            out.failures.push(Failure::series(
                SourceId::CloudEye,
                &q.plan.name,
                subject(&q.keys[s]),
                ApiError::Local(match e {
                    crate::spend::prices::PriceError::Straddles { .. } => format!(
                        "its cost is left out (the usage is emitted): {e}; a price's `since` must fall on a boundary of the query's Cloud Eye period"
                    ),
                    _ => format!("its cost is left out (the usage is emitted): {e}"),
                }),
            ));
            None
        }
    }
}

/// A period query's buckets of the round, in order, up to the first that failed or holds a
/// count Cloud Eye cannot have: that one fails (and stops the query for this run: the later
/// ones cannot be sent without moving its checkpoint past it).
fn settle_buckets(q: &mut Query<'_>, part: &Part, acc: Acc, out: &mut Collection) {
    if q.stopped {
        return;
    }
    let utc = |ms| crate::time::fmt_rfc3339(ms, &chrono_tz::UTC);
    for (w, window) in q.plan.windows[part.windows.clone()].iter().enumerate() {
        let bucket = || format!("bucket {} to {}", utc(window.start_ms), utc(window.end_ms));
        if let Some(e) = &acc.failed_windows[w] {
            out.failures.push(failure(
                q.plan,
                format!("{}; it and the later ones wait for the next run", bucket()),
                e.clone(),
            ));
            q.stopped = true;
            return;
        }
        let refused: BTreeMap<usize, &Refused> = acc
            .refused
            .range((w, 0)..(w + 1, 0))
            .map(|((_, s), r)| (*s, r))
            .collect();
        if !refused.is_empty() {
            out.failures.push(bucket_refused(q, &refused, bucket()));
            q.stopped = true;
            return;
        }
        let first = out.series.len();
        for (s, key) in q.keys.iter().enumerate() {
            // A cost that cannot be exact is left out (a failure line says so), its group's
            // with it; the tokens count and the bucket settles.
            let cost = cost_of(q, &acc, (w, s), out);
            out.series.push(crate::collect::Series::CloudEye(Series {
                key: key.clone(),
                window: *window,
                values: values(q, &acc, w, s),
                checkpoint: q.plan.checkpoint.clone(),
                running: None,
                cost,
            }));
        }
        regroup(q, out, first, &[]);
        if let Some(cp) = &q.plan.checkpoint {
            out.advance.insert(cp.clone(), window.end_ms);
        }
    }
}

/// A bucket in which some series' counts were refused: it fails whole, as a failed call
/// would (its other series cannot be sent without moving the query's checkpoint past it).
fn bucket_refused(q: &Query<'_>, refused: &BTreeMap<usize, &Refused>, bucket: String) -> Failure {
    let Some((&s, first)) = refused.iter().next() else {
        return failure(
            q.plan,
            bucket,
            ApiError::Internal("no refused series".into()),
        );
    };
    let name = What::Series(subject(&q.keys[s])).to_string();
    let reason = match refused.len() {
        1 => format!("{name}: {}", first.reason()),
        n => format!("{n} series, the first {name}: {}", first.reason()),
    };
    let what = format!("{bucket}; it and the later ones wait for Cloud Eye to answer right");
    failure(q.plan, what, first.error(reason))
}

#[cfg(test)]
mod tests;
