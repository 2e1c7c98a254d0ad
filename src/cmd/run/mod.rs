//! `maas-usage run` and `serve`: a spec kept in git drives one collection (or, under
//! `--execd`, one per line on stdin; under `serve`, one per interval) that feeds Telegraf, a
//! collector, a textfile or scrapers.
//!
//! A collection: take the period lock (period mode), read the checkpoints, plan at now, call,
//! settle the period buckets, report failures on stderr (most useful first), deliver, and only
//! then commit the checkpoints. Submodules: `signals` (SIGTERM/SIGINT), `execd` (the stdin
//! loop), `serve` (the schedule and the scrape endpoint), `deliver` (formats, sinks, the
//! checkpoint commit), `clouds` (each cloud of the run, collected side by side).

mod clouds;
mod deliver;
mod execd;
mod period;
mod push;
mod serve;
mod shared;
pub mod signals;
mod stream;

pub use period::{has_period, planned, spec_destination};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::error::{Error, Outcome};
use super::settings::{Flags, OutputFlags, Settings};
use super::wiring;
use crate::cli::{CloudArgs, NowArg, RunArgs, ServeArgs, StateArgs};
use crate::collect::Collection;
use crate::deliver::otlp::ExportConfig;
use crate::deliver::scrape::{Published, Server};
use crate::deliver::sink::Sink;
use crate::domain::{ApiError, RangeExpr};
use crate::emit::otlp::Temporality;
use crate::emit::table::TableStyle;
use crate::emit::Report;
use crate::emit::{Origin, ResourceEnv};
use crate::log::{self, Style};
use crate::plan;
use crate::spec::{self, Format, Spec};
use crate::state::checkpoints::Destination;
use crate::state::StateStore;

pub fn load_spec(paths: &[PathBuf]) -> Result<Spec, Error> {
    Ok(spec::load::load(paths)?)
}

/// Everything a collection needs that does not change between collections.
pub(crate) struct Context {
    spec: Spec,
    settings: Settings,
    /// The clouds collected, each with its connection and health: the one of `cloud:`, or
    /// each entry of `clouds`.
    clouds: Vec<clouds::CloudRun>,
    format: Format,
    sink: Sink,
    /// Set for format otlp.
    export: Option<ExportConfig>,
    /// How a table is drawn (format table).
    table: TableStyle,
    resource: ResourceEnv,
    /// How period buckets are summed in OTLP.
    temporality: Temporality,
    /// Who reports (resource attributes, Prometheus labels).
    origin: Origin,
    /// What is shared with other processes: budgets, the credential gate's records, caches,
    /// and the checkpoints period mode requires.
    store: Arc<dyn StateStore>,
    /// Where the period buckets go: whose checkpoints and running totals they are.
    destination: Destination,
    /// `serve`: where a successful collection is published for scrapes (instead of `format`).
    published: Option<Arc<Published>>,
    /// With a coordination engine: how this process shares its collections with its group.
    sharing: Option<shared::Sharing>,
}

/// What a process remembers of its collections, for the self-metrics: when the last
/// successful one started, and how many failed in a row since.
#[derive(Debug, Default)]
struct Health {
    last_success_ms: u64,
    consecutive_failures: u64,
}

impl Health {
    /// Records a collection that started at `started` and succeeded or not; returns (the last
    /// success in Unix ms, the failures in a row), this collection included.
    fn record(&mut self, ok: bool, started: Instant) -> (u64, u64) {
        if ok {
            let at = std::time::SystemTime::now()
                .checked_sub(started.elapsed())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            self.last_success_ms = at.map_or(0, |d| d.as_millis() as u64);
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
        }
        (self.last_success_ms, self.consecutive_failures)
    }
}

impl Context {
    /// Fresh credentials before a collection (execd, serve), for each cloud (see
    /// [`clouds::CloudRun::renew_credentials`]).
    fn renew_credentials(&self) {
        for c in &self.clouds {
            c.renew_credentials(&self.settings.clouds[c.index]);
        }
    }
}

/// How many collections, on what trigger.
pub enum Mode {
    /// One collection, now.
    Once,
    /// One per line on stdin (Telegraf's execd).
    Execd,
    /// At start, then every interval; published to scrapes on `listen`.
    Serve {
        listen: std::net::SocketAddr,
        interval: std::time::Duration,
    },
}

pub fn run(a: RunArgs) -> Result<Outcome, Error> {
    let output = OutputFlags { format: a.format };
    let (spec, settings, store) = begin(&a.spec, &a.cloud, &a.state, &a.now, output)?;
    let opts = RunOptions {
        output: a.output,
        identity: identity(&a.spec),
        mode: if a.execd { Mode::Execd } else { Mode::Once },
        ascii: a.ascii,
        store,
    };
    run_spec(spec, settings, opts)
}

/// `maas-usage serve`: a `run` on a schedule, published to scrapes.
pub fn serve(a: ServeArgs) -> Result<Outcome, Error> {
    let output = OutputFlags {
        format: Some(Format::Prometheus),
    };
    let (spec, settings, store) = begin(&a.spec, &a.cloud, &a.state, &a.now, output)?;
    let opts = RunOptions {
        output: None,
        identity: identity(&a.spec),
        mode: Mode::Serve {
            listen: a.listen,
            interval: a.interval,
        },
        ascii: false,
        store,
    };
    run_spec(spec, settings, opts)
}

/// What `run` and `serve` do first: Telegraf's log prefixes, the stop signals, the spec, its
/// settings and the state store they chose.
fn begin(
    paths: &[PathBuf],
    cloud: &CloudArgs,
    state: &StateArgs,
    now: &NowArg,
    output: OutputFlags,
) -> Result<(Spec, Settings, Arc<dyn StateStore>), Error> {
    log::set_style(Style::Telegraf);
    signals::install();
    let spec = load_spec(paths)?;
    let flags = Flags {
        cloud: Some(cloud),
        state: Some(state),
        now: Some(now),
        timezone: None,
        output: Some(output),
        plan_format: None,
    };
    let settings = Settings::from_process(&spec, flags)?;
    wiring::say_simulator(&settings);
    let store = wiring::open_store(&settings.state)?;
    Ok((spec, settings, store))
}

/// The spec is named by its files: the instance id stays while they do.
fn identity(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| {
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How to run a loaded spec, beyond the spec and its settings.
pub struct RunOptions {
    pub output: Option<PathBuf>,
    /// What names this spec for `service.instance.id` (its files, or the command).
    pub identity: String,
    pub mode: Mode,
    /// `--ascii`: no box-drawing in a table.
    pub ascii: bool,
    /// The state store the settings chose (`wiring::open_store`).
    pub store: Arc<dyn StateStore>,
}

/// Runs a loaded spec once, once per stdin line under `--execd`, or on `serve`'s schedule.
pub fn run_spec(spec: Spec, mut settings: Settings, o: RunOptions) -> Result<Outcome, Error> {
    let started = Instant::now();
    // Plan once before connecting: a range that cannot be resolved is the user's error (exit 2)
    // and must not cost a call.
    for (_, s) in spec.per_cloud() {
        plan::build(&s, settings.now(), &settings.zone)?;
    }
    let Some(output) = settings.output.take() else {
        return Err(Error::System(
            "internal error: the output settings were not resolved".into(),
        ));
    };
    let (format, export) = (output.format, output.export);
    // Listen before any call: a taken port must not cost the account anything.
    let server = match &o.mode {
        Mode::Serve { listen, .. } => Some(Server::bind(*listen)?),
        _ => None,
    };
    let store = o.store;
    if period::has_period(&spec) && store.checkpoints().is_none() && settings.state.dir.is_none() {
        return Err(Error::Usage(match settings.simulator {
            // The default one holds the real runs' checkpoints.
            Some(_) => "period mode keeps its checkpoints in the state directory: with --simulator, name one with --state-dir".into(),
            None => "period mode keeps its checkpoints in the state directory, and there is none: set --state-dir (or HOME)".into(),
        }));
    }
    let clouds = cloud_runs(&spec, &settings, started, &store)?;
    let account = clouds[0].conn().and_then(|c| c.account_id.clone());
    let origin = wiring::origin(&settings.host_name, &o.identity, account);
    let table = TableStyle {
        unicode: o.output.as_ref().is_none_or(|p| p.as_os_str() == "-")
            && settings.utf8_terminal
            && !o.ascii,
        name_query: true,
    };
    let destination = period::destination(
        match &o.mode {
            Mode::Serve { listen, .. } => period::Output::Serve(*listen),
            _ => period::Output::Run {
                format,
                path: o.output.as_deref(),
                url: export.as_ref().map(|e| e.url.as_str()),
            },
        },
        spec.output.destination.as_deref(),
    );
    let sharing = shared::Sharing::of(
        store.collections().is_some(),
        period::has_period(&spec),
        format,
        match &o.mode {
            Mode::Serve { interval, .. } => Some(*interval),
            _ => None,
        },
        matches!(o.mode, Mode::Execd),
    );
    let ctx = Context {
        sharing,
        destination,
        table,
        export,
        format,
        spec,
        settings,
        clouds,
        sink: Sink::new(o.output),
        resource: output.resource,
        temporality: output.temporality,
        origin,
        store,
        published: server.as_ref().map(|_| Arc::new(Published::default())),
    };
    match (o.mode, server) {
        (Mode::Execd, _) => return execd::serve(&ctx),
        (Mode::Serve { interval, .. }, Some(server)) => {
            return serve::serve(&ctx, &server, interval)
        }
        _ => {}
    }
    let outcome = collect_once(&ctx, started)?;
    // Stopped by Telegraf's timeout: what was collected was written, and Telegraf keeps stdout
    // only after a zero exit.
    Ok(match signals::received() {
        Some(_) => Outcome::Done,
        None => outcome,
    })
}

/// The first stderr line when nothing was collected: the most useful one. That is what the
/// server answered, when it answered: with calls in flight, the probe that met a rejection need
/// not be the first series, and the others only say the gate closed.
fn log_nothing_collected(prefix: &str, planned: usize, collection: &Collection) {
    let failures = collection
        .failures
        .iter()
        .map(|f| (f.to_string(), &f.error));
    let first = failures
        .clone()
        .find(|(_, e)| !about_the_credentials(e))
        .or_else(|| failures.clone().next());
    let Some((what, error)) = first else {
        return;
    };
    match error {
        // Said once, as it is: it is about the credentials, not the series.
        e if about_the_credentials(e) => log::error!("{prefix}{e}"),
        e => log::error!("{prefix}no series collected (0 of {planned}): {what}: {e}"),
    }
}

/// A call not sent because of the credentials (rejected, expired) or their gate.
fn about_the_credentials(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::AuthBlocked(_) | ApiError::Unguarded(_) | ApiError::Expired(_)
    )
}

/// An hour, or less when a Cloud Eye period query settles its buckets sooner: a new model's
/// first bucket must not settle before discovery has seen the model.
fn discovery_max_age(spec: &Spec) -> std::time::Duration {
    spec.queries
        .iter()
        .filter(|q| q.cloud_eye().is_some())
        .filter_map(|q| match &q.range {
            RangeExpr::Period(p) => u64::try_from(p.delay_ms).ok(),
            _ => None,
        })
        .map(std::time::Duration::from_millis)
        .fold(
            std::time::Duration::from_secs(3600),
            std::time::Duration::min,
        )
}

/// What the sources call (the connection) and keep between runs (Cloud Eye's discovery, in
/// `cache`), with the spec's names and limits.
pub(crate) fn setup<'a>(
    conn: &Arc<crate::cloud::Connection>,
    spec: &'a Spec,
    cache: Option<&'a dyn crate::collect::DiscoveryCache>,
) -> crate::collect::Setup<'a> {
    crate::collect::Setup {
        statistics: conn.clone(),
        cloud_eye: crate::collect::CloudEyeSetup {
            api: conn.clone(),
            cache,
            pinned: &spec.names,
            max_series: spec.limits.max_series,
            discovery_max_age: discovery_max_age(spec),
        },
    }
}

/// The clouds of a run. With `cloud:`, its connection is made now: what fails there fails the
/// run (exit 2 for the input, 1 for the cloud). With `clouds`, each connects in its first
/// collection, and one that cannot fails its own series only (and tries again at the next).
fn cloud_runs(
    spec: &Spec,
    settings: &Settings,
    started: Instant,
    store: &Arc<dyn StateStore>,
) -> Result<Vec<clouds::CloudRun>, Error> {
    let mut runs = Vec::new();
    for (i, (name, s)) in spec.per_cloud().into_iter().enumerate() {
        let conn = match name {
            None => Some(Arc::new(wiring::connect(
                &settings.clouds[i],
                started + spec.limits.timeout,
                store,
            )?)),
            Some(_) => None,
        };
        runs.push(clouds::CloudRun::new(name, s, i, conn));
    }
    Ok(runs)
}

/// One collection: plan at now, call, write, and tell stderr what failed (most useful first).
fn collect_once(ctx: &Context, started: Instant) -> Result<Outcome, Error> {
    let lead = match shared::claim(ctx, started)? {
        shared::Role::Alone => None,
        shared::Role::Lead(lead) => Some(lead),
        shared::Role::Follow(stored) => return shared::follow(ctx, *stored, started),
    };
    let mut period = period::begin(ctx, started);
    // A push needs time after the collection: it gets the last quarter of the run.
    let timeout = ctx.spec.limits.timeout;
    let deadline = started
        + if ctx.format == Format::Otlp {
            timeout * 3 / 4
        } else {
            timeout
        };
    // Line protocol, JSON and OTLP go out as they are produced, each round settled on its own
    // (stream::streams); otherwise every cloud is collected, then settled.
    let streamed = match stream::streams(ctx) {
        true => Some(clouds::collect_streamed(
            ctx,
            &mut period,
            (deadline, started + timeout),
        )),
        false => None,
    };
    let rounds = match streamed.is_none() {
        true => clouds::collect_all(ctx, &period, deadline),
        false => Ok(Vec::new()),
    };
    // From here the run only settles, writes or pushes, and commits: a stop signal lets that
    // finish (until the delivery's deadline), so what the collector has is what is recorded.
    let _delivering = signals::delivering(started + ctx.spec.limits.timeout);
    let (rounds, prepared, open) = match streamed {
        Some(s) => {
            let (rounds, s) = s?;
            (rounds, s.prepared, Some(s.open))
        }
        None => {
            let mut rounds = rounds?;
            let prepared = clouds::settle(ctx, &mut rounds, &mut period);
            (rounds, prepared, None)
        }
    };
    log_collection(ctx, &rounds);
    let outcome = held(clouds::outcome_of(&rounds), &period, &rounds);
    let mut reports_stats = Vec::new();
    for (cloud, r) in ctx.clouds.iter().zip(&rounds) {
        // For the page and the self-metrics, a cloud's collection succeeded when it delivered
        // fresh data (period series held back while the others came count: their E! says why).
        let own = held(
            clouds::outcome_of(std::slice::from_ref(r)),
            &period,
            std::slice::from_ref(r),
        );
        let ok = own == Outcome::Done || (own == Outcome::PeriodHeld && !r.nothing());
        let mut stats = wiring::run_stats(&r.collection, r.conn.as_deref(), r.baseline, started);
        stats.series_failed +=
            u64::try_from(r.failed.as_ref().map_or(0, |_| cloud_planned(ctx, cloud))).unwrap_or(0);
        (stats.last_success_ms, stats.consecutive_failures) =
            lock(&cloud.health).record(ok, started);
        shared::fill(ctx, &mut stats, true);
        if let Some(conn) = &r.conn {
            *lock(&cloud.calls_before) = conn.client.counters.snapshot();
        }
        reports_stats.push((ok, stats));
    }
    let zone = &ctx.settings.zone;
    let now = rounds
        .iter()
        .find_map(|r| r.plan.as_ref().map(|p| p.now))
        .unwrap_or_else(|| ctx.settings.now());
    let reports: Vec<Report<'_>> = ctx
        .clouds
        .iter()
        .zip(&rounds)
        .zip(&reports_stats)
        .map(|((cloud, r), (_, stats))| Report {
            collection: &r.collection,
            stats: *stats,
            cloud: cloud.name.as_deref(),
            region: r
                .conn
                .as_ref()
                .map_or(&ctx.settings.clouds[cloud.index].region, |c| &c.region),
            project_id: r.conn.as_ref().map_or("", |c| c.project_id.as_str()),
            zone,
            now,
            origin: &ctx.origin,
            totals: &r.totals,
        })
        .collect();
    let ok = reports_stats.iter().any(|(ok, _)| *ok);
    let delivered_by = started + ctx.spec.limits.timeout;
    let data = match open {
        Some(open) => {
            stream::finish(ctx, open, &reports, delivered_by)?;
            None
        }
        None => deliver::deliver(ctx, &reports, ok, delivered_by)?,
    };
    if let Some(lead) = lead {
        shared::store(ctx, lead, data, &reports_stats);
    }
    deliver::commit(ctx, prepared);
    Ok(outcome)
}

/// The lock for a mutex whose holder may have panicked (what it guards stays usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `outcome`, with what the period said: series held back until the operator acts (said in an
/// E! line) are exit 1; a period lock another run kept, when nothing else was delivered, is
/// nothing delivered.
fn held(outcome: Outcome, period: &period::Period, rounds: &[clouds::Round]) -> Outcome {
    let nothing = rounds.iter().all(clouds::Round::nothing);
    match outcome {
        Outcome::Done if period.held => Outcome::PeriodHeld,
        Outcome::Done if nothing && !period.ok => Outcome::NothingCollected,
        other => other,
    }
}

/// The series a cloud that could not connect would have collected (of Cloud Eye, its
/// queries), for its self-metrics.
fn cloud_planned(ctx: &Context, cloud: &clouds::CloudRun) -> usize {
    plan::build(&cloud.spec, ctx.settings.now(), &ctx.settings.zone).map_or(0, |p| p.planned())
}

/// What stderr says of a collection: for each cloud, why nothing was collected (the most
/// useful line first) and each failure; calls cut short; the plans' warnings.
fn log_collection(ctx: &Context, rounds: &[clouds::Round]) {
    let mut cut = (false, None);
    for (cloud, r) in ctx.clouds.iter().zip(rounds) {
        let prefix = cloud.prefix();
        if let Some(e) = &r.failed {
            for line in e.lines() {
                log::error!("{prefix}{line}; this cloud's series are not collected");
            }
            continue;
        }
        if r.nothing() {
            log_nothing_collected(&prefix, r.planned(), &r.collection);
        }
        super::log_failures_of(&prefix, &r.collection);
        cut.0 |= r.collection.cut_short;
        cut.1 = cut.1.or(r.collection.stopped_by);
    }
    match cut {
        (true, Some(signal)) => log::warn!(
            "stopped by {signal} with calls outstanding; what was collected is written"
        ),
        (true, None) => log::warn!(
            "the run reached limits.timeout ({} s) with calls outstanding; raise it (and the agent's timeout) or lower the number of series",
            ctx.spec.limits.timeout.as_secs()
        ),
        _ => {}
    }
    for (cloud, r) in ctx.clouds.iter().zip(rounds) {
        for w in r.plan.iter().flat_map(|p| &p.warnings) {
            log::warn!("{}{w}", cloud.prefix());
        }
    }
}
