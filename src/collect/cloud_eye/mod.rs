//! The Cloud Eye source: discovery (one listing and the names, [`discovery`]), the cardinality
//! guard and the calls planned against Cloud Eye's budget before the first one ([`calls`]),
//! then batch-query-metric-data calls on the worker pool, each answer folded into its windows as
//! it arrives ([`fold`]): counts summed as exact integers, latency as the window's highest
//! period (each datapoint judged by [`datapoints`]). Period buckets come in rounds, oldest
//! first, so a month of them never sits in memory at once.

mod budgets;
mod calls;
mod datapoints;
mod discovery;
mod fold;
mod groups;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Collection, Failure, Run, Source, SourceId};
use crate::domain::cloud_eye::{
    BatchRequest, CloudEyeKey, CloudEyeMetric, Dims, Discovered, InstancePage, MetricPage, Names,
    Unread,
};
use crate::domain::{ApiError, Window};
use crate::plan::cloud_eye::{Plan, QueryPlan};
use crate::spend::prices::Priced;
use crate::spend::Currency;
use crate::time::period::{CloudEyeRunning, Totals};

/// What the collection needs from Cloud Eye; the cloud client in production, a fake in unit
/// tests.
pub trait Api: Send + Sync {
    fn list_metrics(
        &self,
        metric: &str,
        marker: &str,
        deadline: Instant,
    ) -> Result<MetricPage, ApiError>;
    /// One batch call; its answer is read by whoever folds it (not on the call's thread).
    fn batch(&self, req: &BatchRequest, deadline: Instant) -> Result<Unread, ApiError>;
    /// One page of the monitor's instances from `start`: the models, or with `keys` the API
    /// keys under them, with their names.
    fn instances(
        &self,
        start: usize,
        keys: bool,
        deadline: Instant,
    ) -> Result<InstancePage, ApiError>;
    /// The Cloud Eye calls its budget still allows within `within`.
    fn affordable(&self, within: Duration) -> usize;
}

/// What Cloud Eye's runs keep between them (the state store): the discovery, and the series a
/// run left out, first in line next run. Only a cache: without it every run discovers, and the
/// series are served in their own order.
pub trait DiscoveryCache: Send + Sync {
    /// A discovery younger than `max_age`.
    fn load(&self, max_age: Duration) -> Option<Discovered>;
    fn store(&self, found: &Discovered);
    /// The series of query `query` that the last run left out, in line.
    fn owed(&self, query: &str) -> Vec<Dims>;
    /// Keeps them (none: forgets them).
    fn store_owed(&self, query: &str, owed: &[Dims]);
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
    /// A priced model's cost over the window: its datapoints priced one by one, exact.
    /// (Boxed: most series have none, and every collected series is as large as this.)
    pub cost: Option<Box<Spent>>,
}

/// The estimated cost of a series, in the price table's currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spent {
    pub currency: Currency,
    pub priced: Priced,
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
            self.cost.as_deref().map(|c| {
                (
                    c.currency.to_string(),
                    [c.priced.input.femto, c.priced.output.femto],
                )
            }),
        );
        totals.cloud_eye.insert(id, r.clone());
        self.running = Some(r);
    }
}

/// The Cloud Eye part of a run: discovery and the plan of its calls at the first round, then
/// one round of calls at a time.
pub struct CloudEye<'a> {
    plan: &'a Plan,
    setup: &'a Setup<'a>,
    state: State<'a>,
}

enum State<'a> {
    Start,
    Rounds {
        queries: Vec<calls::Query<'a>>,
        rounds: VecDeque<calls::Round>,
    },
    Done,
}

impl<'a> CloudEye<'a> {
    pub fn new(plan: &'a Plan, setup: &'a Setup<'a>) -> Self {
        CloudEye {
            plan,
            setup,
            state: State::Start,
        }
    }
}

impl Source for CloudEye<'_> {
    fn id(&self) -> SourceId {
        SourceId::CloudEye
    }

    fn next_round(&mut self, run: &Run<'_>) -> Option<Collection> {
        let mut out = self.round(run)?;
        budgets::failures_to_warnings(self.plan, &mut out);
        Some(out)
    }
}

impl CloudEye<'_> {
    fn round(&mut self, run: &Run<'_>) -> Option<Collection> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => None,
            State::Start => {
                let mut out = Collection::default();
                if let Some((queries, rounds)) = begin(self.plan, self.setup, run, &mut out) {
                    self.state = State::Rounds { queries, rounds };
                    if let Some(more) = self.round(run) {
                        out.absorb(more);
                    }
                }
                Some(out)
            }
            State::Rounds {
                mut queries,
                mut rounds,
            } => {
                let round = rounds.pop_front()?;
                let out = fold::run_round(&mut queries, round, self.setup, run);
                if out.cut_short {
                    // The deadline or a signal: later rounds would only be cut short too.
                    let mut out = out;
                    calls::left_for_next_run(&queries, &rounds, &mut out.warnings);
                    return Some(out);
                }
                if !rounds.is_empty() {
                    self.state = State::Rounds { queries, rounds };
                }
                Some(out)
            }
        }
    }
}

/// Discovery, the series of every query with something to report, and the rounds of calls
/// planned against Cloud Eye's budget; `None` when no call is to be made (what that means is
/// in `out`).
fn begin<'a>(
    plan: &'a Plan,
    setup: &Setup<'_>,
    run: &Run<'_>,
    out: &mut Collection,
) -> Option<(Vec<calls::Query<'a>>, VecDeque<calls::Round>)> {
    let active: Vec<&QueryPlan> = plan
        .queries
        .iter()
        .filter(|q| !q.windows.is_empty())
        .collect();
    if active.is_empty() {
        return None;
    }
    let keys = active.iter().any(|q| q.query.by_key);
    let known = match discovery::known(setup, keys, run.deadline, &mut out.warnings) {
        Ok(k) => k,
        Err(error) => {
            for q in &active {
                out.failures.push(failure(
                    q,
                    "discovery with ListMetrics".into(),
                    error.clone(),
                ));
            }
            return None;
        }
    };
    let mut queries = calls::select(&active, &known, setup, out);
    out.warnings.extend(unpriced(&queries));
    let budget = setup
        .api
        .affordable(run.deadline.saturating_duration_since(Instant::now()));
    let rounds = calls::plan(&mut queries, budget, setup.cache, out);
    Some((queries, rounds))
}

/// One warning naming the models of this run the price table does not price (they get no
/// cost, never a guessed one).
fn unpriced(queries: &[calls::Query<'_>]) -> Option<String> {
    let mut names: Vec<&str> = queries
        .iter()
        .filter_map(|q| q.plan.schedule.as_ref().map(|s| (q, s)))
        .flat_map(|(q, s)| {
            q.keys
                .iter()
                .filter(|k| !s.prices(&[&k.model.name, &k.model.id]))
                .map(|k| k.model.name.as_str())
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    (!names.is_empty()).then(|| {
        format!(
            "no price for {} model(s): {}; they get no cost (add them to `prices.models` with your contract's prices)",
            names.len(),
            names.join(", ")
        )
    })
}

fn failure(q: &QueryPlan, what: String, error: ApiError) -> Failure {
    Failure::part(SourceId::CloudEye, &q.name, what, error)
}

/// `model=...` and, with the key breakdown, `api_key=...`: a series in a failure line.
fn subject(key: &CloudEyeKey) -> Vec<(&'static str, String)> {
    let mut tags = Vec::new();
    if key.has_model() {
        tags.push(("model", key.model.name.clone()));
    }
    if let Some(k) = &key.api_key {
        tags.push(("api_key", k.name.clone()));
    }
    if let Some(g) = &key.key_group {
        tags.push(("key_group", g.clone()));
    }
    tags
}
