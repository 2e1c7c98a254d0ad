//! The clouds of a run, side by side. Each has its own spec (its block as `cloud`, the queries
//! that run in it), connection (its credentials, request budgets, credential gate, project and
//! discovery caches), period series (their ids scoped by the cloud) and health, and is collected
//! on its own thread under the run's one deadline. One cloud's failure (credentials refused, a
//! region down) fails its series only; with `clouds`, a cloud that could not connect tries
//! again at the next collection.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::{period, signals, stream, Context, Health};
use crate::cloud::client::CallCounts;
use crate::cloud::{CloudSettings, Connection};
use crate::cmd::error::{Error, Outcome};
use crate::cmd::{hooks, wiring};
use crate::collect::{self, Collection};
use crate::domain::RangeExpr;
use crate::log;
use crate::plan::{self, Plan};
use crate::spec::{Format, Spec};
use crate::time::period::{Checkpoints, Totals};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One cloud of a run.
pub(crate) struct CloudRun {
    /// With `clouds`, the entry's name (the `cloud` tag of its series); `None` for `cloud:`.
    pub name: Option<String>,
    /// The run's spec with this cloud's block as `cloud` and the queries that run in it.
    pub spec: Spec,
    /// Its settings: `Settings::clouds[index]`.
    pub index: usize,
    conn: Mutex<Option<Arc<Connection>>>,
    /// Call counters at the end of the previous collection (execd reports each on its own).
    pub calls_before: Mutex<CallCounts>,
    /// The last success and the failures since, across this process's collections.
    pub health: Mutex<Health>,
}

impl CloudRun {
    pub fn new(
        name: Option<&str>,
        spec: Spec,
        index: usize,
        conn: Option<Arc<Connection>>,
    ) -> Self {
        CloudRun {
            name: name.map(str::to_string),
            spec,
            index,
            conn: Mutex::new(conn),
            calls_before: Mutex::new(CallCounts::default()),
            health: Mutex::new(Health::default()),
        }
    }

    /// Its connection, if it has one.
    pub fn conn(&self) -> Option<Arc<Connection>> {
        lock(&self.conn).clone()
    }

    /// Its connection, made now (within `deadline`) when it has none yet.
    fn connect(
        &self,
        settings: &CloudSettings,
        deadline: Instant,
        ctx: &Context,
    ) -> Result<Arc<Connection>, Error> {
        let mut slot = lock(&self.conn);
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(wiring::connect(settings, deadline, &ctx.store)?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Where its stderr lines start: `cloud=NAME: ` with `clouds`, nothing with `cloud:`.
    pub fn prefix(&self) -> String {
        self.name
            .as_deref()
            .map(|n| format!("cloud={n}: "))
            .unwrap_or_default()
    }

    /// Fresh credentials before a collection (execd, serve): a rotated credentials file is
    /// re-read, temporary credentials (an instance's agency, an agency assumed through STS)
    /// are had again before they expire. New credentials are tried at once, even if the old
    /// ones were rejected. A cloud not connected yet loads its credentials when it connects.
    pub fn renew_credentials(&self, settings: &CloudSettings) {
        let Some(conn) = self.conn() else {
            return;
        };
        match settings.credentials.renew() {
            Ok(Some(creds)) => {
                let source = creds.source.clone();
                if conn.client.set_credentials(creds) {
                    log::info!("{}new credentials from {source}", self.prefix());
                }
            }
            Ok(None) => {}
            Err(e) => log::error!(
                "{}{e}; the credentials in use stay until fresh ones can be had (once expired, they sign nothing)",
                self.prefix()
            ),
        }
    }
}

/// What one cloud's collection came to.
pub(crate) struct Round {
    pub conn: Option<Arc<Connection>>,
    /// Why it has no connection: its series are not collected.
    pub failed: Option<Error>,
    /// The series it planned (none without a connection).
    pub plan: Option<Plan>,
    pub collection: Collection,
    /// The counters of its client when the collection began.
    pub baseline: CallCounts,
    /// Running totals of its period series, after this collection.
    pub totals: Totals,
}

impl Round {
    fn failed(e: Error) -> Round {
        Round {
            conn: None,
            failed: Some(e),
            plan: None,
            collection: Collection::default(),
            baseline: CallCounts::default(),
            totals: Totals::default(),
        }
    }

    /// Nothing collected, of any source.
    pub fn nothing(&self) -> bool {
        self.collection.nothing_collected()
    }

    /// Series it planned (of Cloud Eye, its queries).
    pub fn planned(&self) -> usize {
        self.plan.as_ref().map_or(0, Plan::planned)
    }
}

/// Collects every cloud, each on its own thread (one cloud: on this one), under `deadline`.
/// A plan that cannot be made is the run's error.
pub(crate) fn collect_all(
    ctx: &Context,
    period: &period::Period,
    deadline: Instant,
) -> Result<Vec<Round>, Error> {
    let now = ctx.settings.now();
    let (ok, checkpoints) = (period.ok, &period.checkpoints);
    let kept = Rounds::Kept {
        stored: &period.stored,
    };
    each_cloud(ctx, |c| {
        collect_cloud(ctx, c, (now, ok, checkpoints), deadline, &kept)
    })
}

/// `collect` of each cloud, each on its own thread (one cloud: on this one); the first error
/// (a thread that panicked: [`Error::Panicked`]) is the run's.
fn each_cloud(
    ctx: &Context,
    collect: impl Fn(&CloudRun) -> Result<Round, Error> + Sync,
) -> Result<Vec<Round>, Error> {
    if let [one] = ctx.clouds.as_slice() {
        return Ok(vec![collect(one)?]);
    }
    std::thread::scope(|s| {
        let collect = &collect;
        let running: Vec<_> = ctx
            .clouds
            .iter()
            .map(|c| s.spawn(move || collect(c)))
            .collect();
        running
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(Error::Panicked)))
            .collect()
    })
}

/// How a cloud's rounds are taken as they come.
enum Rounds<'a, 's> {
    /// Kept for the end, their buckets added to the running totals (from those `stored`) and,
    /// for an output that shows buckets only through their totals (a Prometheus page,
    /// `serve`'s included), let go of.
    Kept { stored: &'a Totals },
    /// Written to the output every cloud shares ([`stream`]), pushes due by `delivered_by`.
    Written {
        shared: &'a Mutex<stream::Shared<'s>>,
        delivered_by: Instant,
    },
}

/// One cloud's collection: connected (when it was not), planned at `now` with the period's
/// checkpoints (when the period series take part), called, its rounds taken as `rounds` says.
/// With several clouds, one that cannot connect fails its own series only.
fn collect_cloud(
    ctx: &Context,
    cloud: &CloudRun,
    (now, period_ok, checkpoints): (chrono::DateTime<chrono::Utc>, bool, &Checkpoints),
    deadline: Instant,
    rounds: &Rounds<'_, '_>,
) -> Result<Round, Error> {
    let mut totals = match rounds {
        Rounds::Kept { stored } => totals_of(cloud, stored),
        Rounds::Written { .. } => Totals::default(),
    };
    let conn = match cloud.connect(&ctx.settings.clouds[cloud.index], deadline, ctx) {
        Ok(c) => c,
        Err(e) if ctx.clouds.len() > 1 => {
            return Ok(Round {
                totals,
                ..Round::failed(e)
            })
        }
        Err(e) => return Err(e),
    };
    let (plan, baseline) = begin_cloud(ctx, cloud, &conn, now, (period_ok, checkpoints), deadline)?;
    let cache = wiring::discovery_cache(&ctx.store, &conn, cloud.name.as_deref());
    let cache = cache.as_ref().map(|c| c as &dyn collect::DiscoveryCache);
    let (setup, run) = (super::setup(&conn, &ctx.spec, cache), run(ctx, deadline));
    let collection = match rounds {
        Rounds::Kept { .. } => {
            let fold = ctx.published.is_some() || ctx.format == Format::Prometheus;
            let mut collection = Collection::default();
            collect::collect_each(&plan, &setup, &run, &mut |mut round| {
                round.accumulate_into(&mut totals);
                if fold {
                    round.fold_buckets();
                }
                collection.absorb(round);
                true
            });
            collection
        }
        Rounds::Written {
            shared,
            delivered_by,
        } => {
            let target = stream::Target {
                cloud: cloud.name.as_deref(),
                conn: &conn,
                deadline: *delivered_by,
            };
            stream::collect(ctx, &plan, (&setup, &run), target, shared)
        }
    };
    for w in &collection.warnings {
        log::warn!("{}{w}", cloud.prefix());
    }
    Ok(Round {
        conn: Some(conn),
        failed: None,
        plan: Some(plan),
        collection,
        baseline,
        totals,
    })
}

/// One cloud's plan at `now`, and its client's counters as the collection begins.
fn begin_cloud(
    ctx: &Context,
    cloud: &CloudRun,
    conn: &Connection,
    now: chrono::DateTime<chrono::Utc>,
    (period_ok, checkpoints): (bool, &Checkpoints),
    deadline: Instant,
) -> Result<(Plan, CallCounts), Error> {
    // What the hosts said in the last collection proves nothing now: the key may have been
    // disabled since, and four calls in flight would be four rejected signatures.
    conn.client.begin_collection();
    let baseline = *lock(&cloud.calls_before);
    let affordable = conn
        .client
        .available_calls(deadline.saturating_duration_since(Instant::now()));
    let without_period;
    let spec = if period_ok {
        &cloud.spec
    } else {
        let mut s = cloud.spec.clone();
        s.queries
            .retain(|q| !matches!(q.range, RangeExpr::Period(_)));
        without_period = s;
        &without_period
    };
    let plan = plan::build_with(spec, now, &ctx.settings.zone, checkpoints, affordable)?;
    Ok((plan, baseline))
}

/// How a cloud's collection goes: the spec's concurrency, the run's deadline, the signals.
fn run(ctx: &Context, deadline: Instant) -> collect::Run<'static> {
    collect::Run {
        concurrency: ctx.spec.limits.concurrency,
        deadline,
        stop: &signals::received,
    }
}

/// Every cloud's collection with its output written as it is produced ([`stream`]), each
/// cloud on its own thread (one cloud: on this one), their rounds written one at a time: the
/// rounds, and the output to finish and the commit of the period buckets written. A write
/// that fails is the run's error; so is a cloud that cannot connect when it is the only one.
pub(crate) fn collect_streamed(
    ctx: &Context,
    period: &mut period::Period,
    (deadline, delivered_by): (Instant, Instant),
) -> Result<(Vec<Round>, Streamed), Error> {
    let now = ctx.settings.now();
    let (ok, checkpoints) = (period.ok, period.checkpoints.clone());
    let shared = Mutex::new(stream::Shared::new(period));
    let written = Rounds::Written {
        shared: &shared,
        delivered_by,
    };
    let rounds = each_cloud(ctx, |c| {
        collect_cloud(ctx, c, (now, ok, &checkpoints), deadline, &written)
    });
    let (open, prepared, totals) = shared
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .end()?;
    let mut rounds = rounds?;
    for (cloud, r) in ctx.clouds.iter().zip(rounds.iter_mut()) {
        r.totals = totals_of(cloud, &totals);
    }
    Ok((rounds, Streamed { prepared, open }))
}

/// What a streamed collection leaves besides its rounds: the output (opened by the first round
/// written, if any), to be finished after the last, and the commit of the buckets written.
pub(crate) struct Streamed {
    pub prepared: Option<Box<dyn crate::state::store::PreparedCommit>>,
    pub open: Option<stream::Open>,
}

/// The running totals of `cloud`'s period series, out of every cloud's.
fn totals_of(cloud: &CloudRun, all: &Totals) -> Totals {
    let scope = format!("{}/", cloud.spec.checkpoint_scope());
    let mut t = all.clone();
    t.series.retain(|id, _| id.starts_with(&scope));
    t.cloud_eye.retain(|id, _| id.starts_with(&scope));
    t
}

/// Settles every cloud's period buckets (already in their running totals) and writes their
/// commit before anything goes out; when it cannot be written, the buckets are held back
/// (dropped: sent, they would be sent again at every run) and the running totals stay as
/// recorded.
pub(crate) fn settle(
    ctx: &Context,
    rounds: &mut [Round],
    period: &mut period::Period,
) -> Option<Box<dyn crate::state::store::PreparedCommit>> {
    let mut advance = Checkpoints::new();
    let mut totals = Totals::default();
    for r in rounds.iter() {
        advance.extend(r.collection.advance.clone());
        totals.series.extend(r.totals.series.clone());
        totals.cloud_eye.extend(r.totals.cloud_eye.clone());
    }
    hooks::stop_before_prepare();
    match period.prepare(ctx, &advance, &totals) {
        Ok(prepared) => prepared,
        Err(()) => {
            for (cloud, r) in ctx.clouds.iter().zip(rounds.iter_mut()) {
                r.collection.drop_buckets();
                r.totals = totals_of(cloud, &period.stored);
            }
            None
        }
    }
}

/// How the collection went, over every cloud: something collected (or nothing due, and
/// nothing failed) is done; nothing, with every failure on this side, is a configuration
/// error; else nothing collected.
pub(crate) fn outcome_of(rounds: &[Round]) -> Outcome {
    let collected_any = rounds.iter().any(|r| !r.nothing());
    let failed: Vec<bool> = rounds
        .iter()
        .flat_map(|r| {
            let api = r.collection.failures.iter().map(|f| f.error.is_local());
            r.failed.iter().map(Error::is_input).chain(api)
        })
        .collect();
    if collected_any || failed.is_empty() {
        Outcome::Done
    } else if failed.iter().all(|local| *local) {
        Outcome::Misconfigured
    } else {
        Outcome::NothingCollected
    }
}
