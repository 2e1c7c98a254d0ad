//! Executes a plan: each source (ShowStatistics, Cloud Eye) makes its calls on the worker pool
//! and folds their answers into one collection shape, [`Collection`]: series, failures named
//! the same way, warnings, the period checkpoints to advance, and whether the run was cut
//! short. Everything downstream (the exit code, the self-metrics, the emitters, the period
//! commit) reads that one shape.
//!
//! A source implements [`Source`] and lives in its own module here; nothing outside this module
//! knows its internals (`tests/it/architecture.rs`). Its series and API are re-exported below.

pub mod cloud_eye;
pub mod pool;
pub mod statistics;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

pub use cloud_eye::{
    Api as CloudEyeApi, DiscoveryCache, Figure, Series as CloudEyeSeries, Setup as CloudEyeSetup,
    Spent,
};
pub use statistics::{Api as StatisticsApi, Segment, Series as StatisticsSeries};

use crate::domain::{ApiError, Shape, Window};
use crate::plan::{Plan, SourcePlan};
use crate::time::period::{move_forward, Checkpoints, Totals};

/// Where a series or a failure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceId {
    /// MaaS ShowStatistics: totals per service type, inference type and key group.
    Statistics,
    /// Cloud Eye's `SYS.MaaS`: per model and API key.
    CloudEye,
}

impl SourceId {
    /// Its name in `source:`, failure lines and JSON.
    pub fn name(self) -> &'static str {
        match self {
            SourceId::Statistics => "statistics",
            SourceId::CloudEye => "cloud_eye",
        }
    }
}

/// A collected series, of whichever source.
#[derive(Clone, Debug)]
pub enum Series {
    Statistics(StatisticsSeries),
    CloudEye(CloudEyeSeries),
}

impl Series {
    pub fn source(&self) -> SourceId {
        match self {
            Series::Statistics(_) => SourceId::Statistics,
            Series::CloudEye(_) => SourceId::CloudEye,
        }
    }

    pub fn window(&self) -> &Window {
        match self {
            Series::Statistics(s) => &s.window,
            Series::CloudEye(s) => &s.window,
        }
    }

    /// A settled period bucket (emitted once, its checkpoint moves past it).
    pub fn is_bucket(&self) -> bool {
        self.window().shape == Shape::Bucket
    }

    /// A period bucket's checkpoint: the id its end is recorded under (a ShowStatistics
    /// series', a Cloud Eye query's).
    pub fn checkpoint(&self) -> Option<&str> {
        match self {
            Series::Statistics(s) => s.checkpoint.as_deref(),
            Series::CloudEye(s) => s.checkpoint.as_deref(),
        }
    }

    /// About how many figures it carries (data points of an output).
    pub fn figures(&self) -> usize {
        match self {
            // Tokens (total, input, output), requests, errors, and for batch two more.
            Series::Statistics(_) => 6,
            Series::CloudEye(s) => s.values.len() + usize::from(s.cost.is_some()) * 3,
        }
    }

    /// Sets its series' running total in `totals` to the one as of this bucket (kept with it
    /// by [`Collection::accumulate`]).
    pub fn record_running(&self, totals: &mut Totals) {
        match self {
            Series::Statistics(s) => {
                if let (Some(id), Some(r)) = (&s.checkpoint, &s.running) {
                    totals.series.insert(id.clone(), r.clone());
                }
            }
            Series::CloudEye(s) => {
                if let (Some(cp), Some(r)) = (&s.checkpoint, &s.running) {
                    totals.cloud_eye.insert(s.key.total_id(cp), r.clone());
                }
            }
        }
    }

    /// Adds a period bucket to its series' running total in `totals`, and keeps the total as
    /// of this bucket with it (what a cumulative counter reports).
    fn accumulate(&mut self, totals: &mut Totals) {
        match self {
            Series::Statistics(s) => s.accumulate(totals),
            Series::CloudEye(s) => s.accumulate(totals),
        }
    }
}

/// A series, or a part of a query, that could not be collected, and why.
#[derive(Clone, Debug)]
pub struct Failure {
    pub source: SourceId,
    pub query: String,
    pub what: What,
    pub error: ApiError,
}

/// What failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// A series, by its tags after the query (`service_type=preset infer_type=real_time
    /// key_group=all`, `model=DeepSeek-V3 api_key=team-a`).
    Series(Vec<(&'static str, String)>),
    /// A part of a query: its discovery, a call span, a bucket, the cardinality guard...
    Part(String),
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            What::Series(tags) => {
                for (i, (k, v)) in tags.iter().enumerate() {
                    write!(f, "{}{k}={v}", if i > 0 { " " } else { "" })?;
                }
                Ok(())
            }
            What::Part(p) => f.write_str(p),
        }
    }
}

impl Failure {
    pub fn series(
        source: SourceId,
        query: &str,
        tags: Vec<(&'static str, String)>,
        error: ApiError,
    ) -> Failure {
        Failure {
            source,
            query: query.to_string(),
            what: What::Series(tags),
            error,
        }
    }

    pub fn part(source: SourceId, query: &str, what: String, error: ApiError) -> Failure {
        Failure {
            source,
            query: query.to_string(),
            what: What::Part(what),
            error,
        }
    }
}

/// The start of a failure line: `query=q service_type=.. infer_type=.. key_group=..` for
/// ShowStatistics (its form since the first release), `query=q source=cloud_eye (what)` for
/// the others.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            SourceId::Statistics => write!(f, "query={} {}", self.query, self.what),
            other => write!(
                f,
                "query={} source={} ({})",
                self.query,
                other.name(),
                self.what
            ),
        }
    }
}

/// What a collection (or one round of it) produced, of every source.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    pub series: Vec<Series>,
    pub failures: Vec<Failure>,
    /// Said once each on stderr.
    pub warnings: Vec<String>,
    /// Period series: per checkpoint id, the end of the last bucket delivered in order.
    pub advance: Checkpoints,
    /// True when the run stopped early (deadline or signal) with calls outstanding.
    pub cut_short: bool,
    /// The signal that stopped the run early, if one did.
    pub stopped_by: Option<&'static str>,
    /// Series already delivered as they came (output written as it is produced) and no
    /// longer held here.
    pub delivered: usize,
    /// Period buckets let go of once added to their running totals, which are all an output
    /// of totals (a Prometheus page) shows of them; counted until their checkpoints are
    /// dropped.
    pub folded: usize,
    /// Where the spec's budgets stand (`maas_budget`), from the plan's own Cloud Eye queries.
    pub budgets: Vec<crate::spend::budget::Point>,
}

impl Collection {
    /// Adds `other` (another source's, or a later round's) to this one.
    pub fn absorb(&mut self, other: Collection) {
        self.series.extend(other.series);
        self.failures.extend(other.failures);
        self.warnings.extend(other.warnings);
        for (id, end) in &other.advance {
            move_forward(&mut self.advance, id, *end);
        }
        self.cut_short |= other.cut_short;
        self.stopped_by = self.stopped_by.or(other.stopped_by);
        self.delivered += other.delivered;
        self.folded += other.folded;
        self.budgets.extend(other.budgets);
    }

    /// Its series, collected, already delivered or folded into their running totals.
    pub fn series_ok(&self) -> usize {
        self.series.len() + self.delivered + self.folded
    }

    /// Not one series collected, of any source: what "nothing collected" (exit 1), the
    /// stderr line that says why, and a stale `serve` page are about.
    pub fn nothing_collected(&self) -> bool {
        self.series_ok() == 0
    }

    /// The ShowStatistics series, in collection order.
    pub fn statistics(&self) -> impl Iterator<Item = &StatisticsSeries> + '_ {
        self.series.iter().filter_map(|s| match s {
            Series::Statistics(s) => Some(s),
            _ => None,
        })
    }

    /// The Cloud Eye series, in collection order.
    pub fn cloud_eye(&self) -> impl Iterator<Item = &CloudEyeSeries> + '_ {
        self.series.iter().filter_map(|s| match s {
            Series::CloudEye(s) => Some(s),
            _ => None,
        })
    }

    /// Drops every period bucket: their checkpoints cannot be recorded, and sent, they would be
    /// sent again at every run.
    pub fn drop_buckets(&mut self) {
        self.series.retain(|s| !s.is_bucket());
        self.advance.clear();
        self.folded = 0;
    }

    /// Lets go of the period buckets, already added to their running totals
    /// ([`Collection::accumulate_into`]): an output of totals needs no more of them, and a
    /// month of buckets need not sit in memory. They still count as collected.
    pub fn fold_buckets(&mut self) {
        let before = self.series.len();
        self.series.retain(|s| !s.is_bucket());
        self.folded += before - self.series.len();
    }

    /// Adds each delivered bucket, in time order, to its series' running total (`stored`, from
    /// the state directory), keeps the total as of the bucket with it, and returns every total
    /// after this collection.
    pub fn accumulate(&mut self, stored: &Totals) -> Totals {
        let mut totals = stored.clone();
        self.accumulate_into(&mut totals);
        totals
    }

    /// [`Collection::accumulate`] in place: the running totals `totals` go on with this
    /// collection's buckets (a collection's rounds, one after the other, come to the same).
    pub fn accumulate_into(&mut self, totals: &mut Totals) {
        for s in self.series.iter_mut().filter(|s| s.is_bucket()) {
            s.accumulate(totals);
        }
    }
}

/// What the plugin reports about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunStats {
    pub series_ok: u64,
    pub series_failed: u64,
    pub api_calls: u64,
    pub api_retries: u64,
    pub throttled: u64,
    pub duration_ms: u64,
    /// When the process's last successful collection started (Unix ms; 0: none yet).
    pub last_success_ms: u64,
    /// Failed collections in a row, this one included (0 when it succeeded).
    pub consecutive_failures: u64,
    /// 1: this process made the calls; 0: it emitted its coordination group's stored
    /// collection.
    pub leader: u64,
    /// The coordination engine's last round trip, in microseconds (0 without one).
    pub engine_round_trip_us: u64,
    /// Collections made after a leader died without storing its own (the process's count).
    pub failovers: u64,
}

/// Tells whether (and by which signal) the run was asked to stop.
pub type StopCheck<'a> = &'a dyn Fn() -> Option<&'static str>;

/// A stop check that never stops.
pub fn never_stop() -> Option<&'static str> {
    None
}

/// How a run goes: the pool's width, the deadline, the stop check.
pub struct Run<'a> {
    pub concurrency: usize,
    pub deadline: Instant,
    pub stop: StopCheck<'a>,
}

impl Run<'_> {
    /// Why a call that did not come back failed: the signal that stopped the run, else the
    /// deadline.
    pub fn unfinished(&self, stopped_by: Option<&'static str>) -> ApiError {
        match stopped_by {
            Some(signal) => ApiError::Stopped { signal },
            None => ApiError::Deadline { last: None },
        }
    }
}

/// One source of series. It plans the calls its part of the plan needs (against its API's
/// budget), makes them on the pool, folds the answers as they arrive and names its failures;
/// a round is what it can deliver next (period buckets come in rounds, oldest first).
pub trait Source {
    fn id(&self) -> SourceId;
    /// Collects the next round; `None` once there is nothing left.
    fn next_round(&mut self, run: &Run<'_>) -> Option<Collection>;
}

/// What the sources call and keep between runs: the cloud connection for each API, and Cloud
/// Eye's discovery cache, pinned names and limits.
pub struct Setup<'a> {
    pub statistics: Arc<dyn StatisticsApi>,
    pub cloud_eye: CloudEyeSetup<'a>,
}

/// The sources of `plan`, in collection order.
fn sources<'a>(plan: &'a Plan, setup: &'a Setup<'a>) -> Vec<Box<dyn Source + 'a>> {
    plan.sources
        .iter()
        .map(|p| -> Box<dyn Source + 'a> {
            match p {
                SourcePlan::Statistics(p) => {
                    Box::new(statistics::Statistics::new(p, setup.statistics.clone()))
                }
                SourcePlan::CloudEye(p) => Box::new(cloud_eye::CloudEye::new(p, &setup.cloud_eye)),
            }
        })
        .collect()
}

/// Runs every source of `plan` to the end and returns everything they collected.
pub fn collect(plan: &Plan, setup: &Setup<'_>, run: &Run<'_>) -> Collection {
    let mut out = Collection::default();
    collect_each(plan, setup, run, &mut |round| {
        out.absorb(round);
        true
    });
    out
}

/// Runs every source of `plan`, handing each round to `each` as it comes (a source's series, a
/// run of period buckets, oldest first), so that nothing need be kept longer than it takes to
/// write it; `each` returns false to end the collection there (no more calls are made).
pub fn collect_each(
    plan: &Plan,
    setup: &Setup<'_>,
    run: &Run<'_>,
    each: &mut dyn FnMut(Collection) -> bool,
) {
    for mut source in sources(plan, setup) {
        while let Some(round) = source.next_round(run) {
            if !each(round) {
                return;
            }
        }
    }
}
