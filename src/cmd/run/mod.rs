//! `maas-usage run` and `serve`: a spec kept in git drives one collection (or, under
//! `--execd`, one per line on stdin; under `serve`, one per interval) that feeds Telegraf, a
//! collector, a textfile or scrapers.
//!
//! A collection: take the period lock (period mode), read the checkpoints, plan at now, call,
//! settle the period buckets, report failures on stderr (most useful first), deliver, and only
//! then commit the checkpoints. Submodules: `signals` (SIGTERM/SIGINT), `execd` (the stdin
//! loop), `serve` (the schedule and the scrape endpoint), `deliver` (formats, sinks, the
//! checkpoint commit).

mod deliver;
mod execd;
mod period;
mod serve;
pub mod signals;
mod stream;

pub use period::{has_period, planned, spec_destination};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::error::{Error, Outcome};
use super::settings::{Flags, OutputFlags, Settings};
use super::{log_failures, outcome_of, wiring};
use crate::cli::{CloudArgs, NowArg, RunArgs, ServeArgs, StateArgs};
use crate::cloud::client::CallCounts;
use crate::cloud::Connection;
use crate::collect::{self, Collection};
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
use crate::state::store::PreparedCommit;
use crate::state::StateStore;
use crate::time::period::Totals;

pub fn load_spec(paths: &[PathBuf]) -> Result<Spec, Error> {
    Ok(spec::load::load(paths)?)
}

/// Everything a collection needs that does not change between collections.
pub(crate) struct Context {
    spec: Spec,
    settings: Settings,
    conn: Arc<Connection>,
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
    /// Call counters at the end of the previous collection (execd reports each on its own).
    calls_before: Mutex<CallCounts>,
    /// `serve`: where a successful collection is published for scrapes (instead of `format`).
    published: Option<Arc<Published>>,
    /// The last success and the failures since, across this process's collections.
    health: Mutex<Health>,
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
    /// Fresh credentials before a collection (execd, serve): a rotated credentials file is
    /// re-read, an agency's temporary credentials are fetched again before they expire. New
    /// credentials are tried at once, even if the old ones were rejected.
    fn renew_credentials(&self) {
        match self.settings.cloud().credentials.renew() {
            Ok(Some(creds)) => {
                let source = creds.source.clone();
                if self.conn.client.set_credentials(creds) {
                    log::info(&format!("new credentials from {source}"));
                }
            }
            Ok(None) => {}
            Err(e) => log::error(&format!(
                "{e}; the credentials in use stay until fresh ones can be had (once expired, they sign nothing)"
            )),
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
    super::spend_cmds::refuse_grouped(&spec)?;
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
    plan::build(&spec, settings.now(), &settings.zone)?;
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
    let conn = wiring::connect(settings.cloud(), started + spec.limits.timeout, &*store)?;
    let origin = wiring::origin(&settings.host_name, &o.identity, conn.account_id.clone());
    let conn = Arc::new(conn);
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
    let ctx = Context {
        destination,
        table,
        export,
        format,
        spec,
        settings,
        conn,
        sink: Sink::new(o.output),
        resource: output.resource,
        temporality: output.temporality,
        origin,
        store,
        calls_before: Mutex::new(CallCounts::default()),
        published: server.as_ref().map(|_| Arc::new(Published::default())),
        health: Mutex::new(Health::default()),
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
fn log_nothing_collected(planned: usize, collection: &Collection) {
    let failures = &collection.failures;
    let Some(first) = failures
        .iter()
        .find(|f| !about_the_credentials(&f.error))
        .or_else(|| failures.first())
    else {
        return;
    };
    match &first.error {
        // Said once, as it is: it is about the credentials, not the series.
        e if about_the_credentials(e) => log::error(&e.to_string()),
        e => log::error(&format!(
            "no series collected (0 of {planned}): {first}: {e}"
        )),
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
    conn: &Arc<Connection>,
    spec: &'a Spec,
    cache: Option<&'a dyn collect::DiscoveryCache>,
) -> collect::Setup<'a> {
    collect::Setup {
        statistics: conn.clone(),
        cloud_eye: collect::CloudEyeSetup {
            api: conn.clone(),
            cache,
            pinned: &spec.names,
            max_series: spec.limits.max_series,
            discovery_max_age: discovery_max_age(spec),
        },
    }
}

/// The plan at `now`: without the period queries when their lock or checkpoints cannot be
/// had, ShowStatistics' period buckets within what its budget still allows by `deadline`.
fn plan_now(
    ctx: &Context,
    now: chrono::DateTime<chrono::Utc>,
    deadline: Instant,
    period: &period::Period,
) -> Result<plan::Plan, Error> {
    let affordable = ctx
        .conn
        .client
        .available_calls(deadline.saturating_duration_since(Instant::now()));
    let without_period;
    let spec = if period.ok {
        &ctx.spec
    } else {
        let mut s = ctx.spec.clone();
        s.queries
            .retain(|q| !matches!(q.range, RangeExpr::Period(_)));
        without_period = s;
        &without_period
    };
    Ok(plan::build_with(
        spec,
        now,
        &ctx.settings.zone,
        &period.checkpoints,
        affordable,
    )?)
}

/// One collection: plan at now, call, write, and tell stderr what failed (most useful first).
fn collect_once(ctx: &Context, started: Instant) -> Result<Outcome, Error> {
    // What the hosts said in the last collection proves nothing now: the key may have been
    // disabled since, and four calls in flight would be four rejected signatures.
    ctx.conn.client.begin_collection();
    let baseline = *ctx.calls_before.lock().unwrap_or_else(|p| p.into_inner());
    let now = ctx.settings.now();
    let mut period = period::begin(ctx, started);
    // A push needs time after the collection: it gets the last quarter of the run.
    let timeout = ctx.spec.limits.timeout;
    let deadline = started
        + if ctx.format == Format::Otlp {
            timeout * 3 / 4
        } else {
            timeout
        };
    let plan = plan_now(ctx, now, deadline, &period)?;
    let cache = wiring::discovery_cache(&ctx.store, &ctx.conn);
    let setup = setup(
        &ctx.conn,
        &ctx.spec,
        cache.as_ref().map(|c| c as &dyn collect::DiscoveryCache),
    );
    let run = collect::Run {
        concurrency: ctx.spec.limits.concurrency,
        deadline,
        stop: &signals::received,
    };
    // Line protocol on stdout goes out as it is produced, each round settled on its own.
    let (mut streamed, mut collection) = (None, Collection::default());
    match stream::streams(ctx) {
        true => streamed = Some(stream::collect(ctx, &plan, &setup, &run, &mut period)?),
        false => collection = collect::collect(&plan, &setup, &run),
    }
    // From here the run only settles, writes or pushes, and commits: a stop signal lets that
    // finish (until the delivery's deadline), so what the collector has is what is recorded.
    let _delivering = signals::delivering(started + ctx.spec.limits.timeout);
    let (collection, totals, prepared) = match streamed {
        Some(s) => (s.collection, s.totals, s.prepared),
        None => {
            let (totals, prepared) = settle(ctx, &mut collection, &mut period);
            (collection, totals, prepared)
        }
    };
    for w in &collection.warnings {
        log::warn(w);
    }
    let collection = &collection;
    log_collection(ctx, &plan, collection);
    let nothing = collection.nothing_collected();
    let outcome = match outcome_of(collection) {
        // Period series held back until the operator acts: said in an E! line, and exit 1.
        Outcome::Done if period.held => Outcome::PeriodHeld,
        // A period lock another run kept, when nothing else was delivered, is nothing
        // delivered.
        Outcome::Done if nothing && !period.ok => Outcome::NothingCollected,
        other => other,
    };
    // For the page and the self-metrics, a collection succeeded when it delivered fresh data
    // (period series held back while the others came count: their E! says why).
    let ok = outcome == Outcome::Done || (outcome == Outcome::PeriodHeld && !nothing);
    let mut stats = wiring::run_stats(collection, &ctx.conn, baseline, started);
    (stats.last_success_ms, stats.consecutive_failures) = ctx
        .health
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record(ok, started);
    let report = Report {
        collection,
        stats,
        region: &ctx.conn.region,
        project_id: &ctx.conn.project_id,
        zone: &ctx.settings.zone,
        now: plan.now,
        origin: &ctx.origin,
        totals: &totals,
    };
    *ctx.calls_before.lock().unwrap_or_else(|p| p.into_inner()) =
        ctx.conn.client.counters.snapshot();
    deliver::deliver(ctx, &report, ok, started + ctx.spec.limits.timeout)?;
    deliver::commit(ctx, prepared);
    Ok(outcome)
}

/// What stderr says of a collection: why nothing was collected (the most useful line first),
/// each failure, calls cut short, the plan's warnings.
fn log_collection(ctx: &Context, plan: &plan::Plan, collection: &Collection) {
    if collection.nothing_collected() {
        log_nothing_collected(plan.planned(), collection);
    }
    log_failures(collection);
    match (collection.cut_short, collection.stopped_by) {
        (true, Some(signal)) => log::warn(&format!(
            "stopped by {signal} with calls outstanding; what was collected is written"
        )),
        (true, None) => log::warn(&format!(
            "the run reached limits.timeout ({} s) with calls outstanding; raise it (and the agent's timeout) or lower the number of series",
            ctx.spec.limits.timeout.as_secs()
        )),
        _ => {}
    }
    for w in &plan.warnings {
        log::warn(w);
    }
}

/// Adds the period buckets to their running totals and writes their commit before anything
/// goes out; when it cannot be written, the buckets are held back (dropped from `collection`:
/// sent, they would be sent again at every run) and the running totals stay as recorded.
fn settle(
    ctx: &Context,
    collection: &mut Collection,
    period: &mut period::Period,
) -> (Totals, Option<Box<dyn PreparedCommit>>) {
    let totals = collection.accumulate(&period.stored);
    match period.prepare(ctx, &collection.advance, &totals) {
        Ok(prepared) => (totals, prepared),
        Err(()) => {
            collection.drop_buckets();
            (collection.accumulate(&period.stored), None)
        }
    }
}
