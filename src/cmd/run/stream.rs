//! Output written as it is produced: line protocol (what Telegraf's exec and execd read), JSON
//! and an OTLP push take each round of a collection as it comes (a source's series, a run of
//! period buckets), so a month of buckets never sits in memory. Line protocol and JSON: each
//! round's period buckets are added to their running totals and their commit is prepared
//! (durably, not yet in force) before they are written, as for a whole collection; the
//! collector's own line (JSON: the failures, self-metrics and budgets) follows the last round
//! ([`Open::finish`]), and the commit is put in force only after it, by the caller. Stdout gets
//! each round as it comes; a file is replaced whole once finished. An OTLP push (and OTLP/JSON,
//! a line per request) sends the buckets in requests of whole buckets, each committed once
//! accepted ([`push`]), and the other series, budgets and self-metrics at the end.

use std::sync::Mutex;
use std::time::Instant;

use super::{deliver, period, push, Context};
use crate::cloud::Connection;
use crate::cmd::error::Error;
use crate::cmd::hooks;
use crate::collect::{self, Collection, RunStats};
use crate::deliver::sink::Stream;
use crate::emit::influx::{self, InfluxOptions};
use crate::emit::json::JsonStream;
use crate::emit::Report;
use crate::plan::Plan;
use crate::spec::Format;
use crate::state::store::PreparedCommit;
use crate::time::period::{move_forward, Checkpoints, Totals};

/// Whether this run's output goes out as it is produced: line protocol, OTLP/JSON lines or an
/// OTLP push (of every cloud, each round as it comes from whichever), or JSON of one cloud
/// (its document lists the series of every cloud before their models); not `serve`'s page nor
/// a collection shared with a coordination group (written whole, to be stored).
pub fn streams(ctx: &Context) -> bool {
    let format = match ctx.format {
        Format::Influx | Format::OtlpJson => true,
        Format::Json => ctx.clouds.len() == 1,
        Format::Otlp => ctx.export.is_some(),
        _ => false,
    };
    format && ctx.published.is_none() && ctx.sharing.is_none()
}

/// Where a streamed collection's lines come from: its cloud (the `cloud` tag with `clouds`),
/// its connection (region and project), and when its delivery must be done by.
pub struct Target<'a> {
    pub cloud: Option<&'a str>,
    pub conn: &'a Connection,
    pub deadline: Instant,
}

/// What the clouds of a streamed collection share, under one lock: the output (opened by the
/// first round), where the period series stand, the commit prepared, the period, and the first
/// write that failed (which ends every cloud's collection).
pub struct Shared<'p> {
    open: Option<Open>,
    progress: Progress,
    prepared: Option<Box<dyn PreparedCommit>>,
    period: &'p mut period::Period,
    failed: Option<Error>,
}

impl<'p> Shared<'p> {
    pub fn new(period: &'p mut period::Period) -> Shared<'p> {
        Shared {
            open: None,
            progress: Progress {
                advance: Checkpoints::new(),
                totals: period.stored.clone(),
                held: false,
                prepared_any: false,
            },
            prepared: None,
            period,
            failed: None,
        }
    }

    /// What is left once every cloud was collected: the output (to be finished), the commit of
    /// the buckets written, every period series' running totals; or the write that failed.
    #[allow(clippy::type_complexity)]
    pub fn end(self) -> Result<(Option<Open>, Option<Box<dyn PreparedCommit>>, Totals), Error> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok((self.open, self.prepared, self.progress.totals)),
        }
    }
}

/// An output written as it is produced, its series written, its end not yet.
pub struct Open(Written);

/// How the rounds are written, and where.
enum Written {
    /// Line protocol: each round's lines (its budgets with them).
    Influx(Stream),
    /// JSON: the document's elements, the failures, self-metrics and budgets at its end.
    Json(JsonStream, Stream),
    /// OTLP: each round's period buckets pushed (and committed) as they come, the other series
    /// and the budgets at the end, then the self-metrics with what the collector rejected.
    Otlp { rejected: i64, pushed: bool },
    /// OTLP/JSON lines: as an OTLP push, each request a line appended (and synced), the last
    /// with the self-metrics.
    OtlpJson,
}

impl Open {
    fn new(ctx: &Context, first: &Report<'_>) -> Result<Open, Error> {
        Ok(Open(match ctx.format {
            Format::Otlp => Written::Otlp {
                rejected: 0,
                pushed: false,
            },
            Format::OtlpJson => Written::OtlpJson,
            Format::Json => {
                let (json, head) = JsonStream::begin(first);
                let mut stream = ctx.sink.stream()?;
                stream.write(&head)?;
                Written::Json(json, stream)
            }
            _ => Written::Influx(ctx.sink.stream()?),
        }))
    }

    /// Writes (or pushes) the series of `r`.
    fn send(&mut self, ctx: &Context, r: &Report<'_>, deadline: Instant) -> Result<(), Error> {
        match &mut self.0 {
            Written::Influx(stream) => {
                stream.write(&influx::render_series(r, &influx_options(ctx)))?
            }
            Written::Json(json, stream) => stream.write(&json.round(r))?,
            Written::OtlpJson => {
                if !r.collection.series.is_empty() {
                    deliver::append_otlp_json(ctx, std::slice::from_ref(r), false)?;
                }
            }
            Written::Otlp { rejected, pushed } => {
                if !r.collection.series.is_empty() {
                    *rejected += deliver::export_data(ctx, std::slice::from_ref(r), deadline)?;
                    *pushed = true;
                }
            }
        }
        Ok(())
    }

    /// Writes what follows the series (the collector's line; JSON: the rest of the document;
    /// OTLP: the series and budgets not pushed yet, then the self-metrics) of `reports`, and
    /// puts the output in place.
    pub fn finish(
        self,
        ctx: &Context,
        reports: &[Report<'_>],
        deadline: Instant,
    ) -> Result<(), Error> {
        let (mut stream, tail) = match self.0 {
            Written::Influx(stream) => (stream, influx::render_all(reports, &influx_options(ctx))),
            Written::Json(json, stream) => match reports {
                [report] => (stream, json.end(report)),
                _ => {
                    return Err(Error::System(
                        "internal error: JSON of several clouds streamed".into(),
                    ))
                }
            },
            Written::OtlpJson => {
                // The rest of the data with the self-metrics, one line (all of a run's when it
                // had no buckets).
                return deliver::append_otlp_json(ctx, reports, true);
            }
            Written::Otlp { rejected, pushed } => {
                let rest = reports
                    .iter()
                    .any(|r| !r.collection.series.is_empty() || !r.collection.budgets.is_empty());
                // A run with nothing to push still asks the collector (as a whole one does).
                let more = match pushed && !rest {
                    true => 0,
                    false => deliver::export_data(ctx, reports, deadline)?,
                };
                deliver::export_own_after(ctx, reports, rejected + more, deadline);
                return Ok(());
            }
        };
        stream.write(&tail)?;
        Ok(stream.finish()?)
    }
}

/// Finishes a streamed output (`open`: opened by its first round; none came: opened now) with
/// what follows the series of `reports`.
pub fn finish(
    ctx: &Context,
    open: Option<Open>,
    reports: &[Report<'_>],
    deadline: Instant,
) -> Result<(), Error> {
    let open = match (open, reports.first()) {
        (Some(open), _) => open,
        (None, Some(first)) => Open::new(ctx, first)?,
        (None, None) => return Ok(()),
    };
    open.finish(ctx, reports, deadline)
}

/// Where the period series of a streamed collection stand: the checkpoints and running totals
/// prepared (for a push, in force), and whether their buckets are held back.
pub struct Progress {
    pub advance: Checkpoints,
    pub totals: Totals,
    pub held: bool,
    /// Whether a commit was prepared yet (the test hook stops before the first).
    pub prepared_any: bool,
}

impl Progress {
    /// The checkpoints with `more`'s ends: a checkpoint only moves forward.
    pub fn ahead(&self, more: &Checkpoints) -> Checkpoints {
        let mut next = self.advance.clone();
        for (id, end) in more {
            move_forward(&mut next, id, *end);
        }
        next
    }

    /// The commit of `advance` and `totals`, prepared (`Some(None)`: nothing to record); `None`
    /// when it cannot be: the buckets are held back from now on (said once by `prepare`).
    pub fn prepare(
        &mut self,
        ctx: &Context,
        period: &mut period::Period,
        advance: &Checkpoints,
        totals: &Totals,
    ) -> Option<Option<Box<dyn PreparedCommit>>> {
        if !std::mem::replace(&mut self.prepared_any, true) {
            hooks::stop_before_prepare();
        }
        let prepared = period.prepare(ctx, advance, totals).ok();
        self.held |= prepared.is_none();
        prepared
    }
}

/// Collects `plan` (of one cloud: `target`), writing each round's series as it comes, under
/// `shared`'s lock; returns what the cloud's collection leaves (its failures, warnings and how
/// it ended; its series were written and are counted in `delivered`). A write that fails ends
/// every cloud's collection (no more calls) and is the run's error: nothing is committed (OTLP:
/// but the requests the collector accepted before it).
pub fn collect(
    ctx: &Context,
    plan: &Plan,
    (setup, run): (&collect::Setup<'_>, &collect::Run<'_>),
    target: Target<'_>,
    shared: &Mutex<Shared<'_>>,
) -> Collection {
    let mut out = Collection::default();
    collect::collect_each(plan, setup, run, &mut |mut round| {
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut *guard;
        if s.failed.is_some() {
            return false;
        }
        match send_round(ctx, plan, &target, s, &mut round) {
            Ok(()) => {
                round.advance.clear();
                out.absorb(round);
                true
            }
            Err(e) => {
                s.failed = Some(e);
                false
            }
        }
    });
    out
}

/// Writes (or pushes) `round` of the cloud `target` to the shared output, opened now if this is
/// the first round of any cloud.
fn send_round(
    ctx: &Context,
    plan: &Plan,
    target: &Target<'_>,
    s: &mut Shared<'_>,
    round: &mut Collection,
) -> Result<(), Error> {
    let open = match &mut s.open {
        Some(open) => open,
        None => {
            let none = Collection::default();
            let first = report(ctx, plan, target, &none, &s.progress.totals);
            s.open.insert(Open::new(ctx, &first)?)
        }
    };
    let mut send = |c: &Collection, totals: &Totals| {
        open.send(ctx, &report(ctx, plan, target, c, totals), target.deadline)
    };
    match ctx.format {
        Format::Otlp | Format::OtlpJson => push::round(
            ctx,
            s.period,
            &mut s.progress,
            (round, target.deadline),
            &mut send,
        ),
        _ => {
            let now = write_round(ctx, s.period, &mut s.progress, round, &mut s.prepared)?;
            send(&now, &s.progress.totals)?;
            round.delivered += now.series.len();
            Ok(())
        }
    }
}

/// A round written whole: its buckets added to the running totals and their commit prepared
/// (held back when it cannot be), then what goes out now taken out of it: every series, and
/// for line protocol its budgets.
fn write_round(
    ctx: &Context,
    period: &mut period::Period,
    progress: &mut Progress,
    round: &mut Collection,
    prepared: &mut Option<Box<dyn PreparedCommit>>,
) -> Result<Collection, Error> {
    if progress.held {
        round.drop_buckets();
    }
    let totals = round.accumulate(&progress.totals);
    if round.advance.is_empty() {
        progress.totals = totals;
    } else {
        let next = progress.ahead(&round.advance);
        match progress.prepare(ctx, period, &next, &totals) {
            Some(p) => {
                *prepared = p.or(prepared.take());
                (progress.advance, progress.totals) = (next, totals);
            }
            None => round.drop_buckets(),
        }
    }
    let budgets = match ctx.format {
        // Written with the round's series: not again with the collector's line.
        Format::Influx => std::mem::take(&mut round.budgets),
        _ => Vec::new(),
    };
    Ok(Collection {
        series: std::mem::take(&mut round.series),
        budgets,
        ..Collection::default()
    })
}

/// The report of a round (or, at the start, of nothing yet) of a streamed collection.
fn report<'a>(
    ctx: &'a Context,
    plan: &Plan,
    target: &Target<'a>,
    round: &'a Collection,
    totals: &'a Totals,
) -> Report<'a> {
    Report {
        collection: round,
        stats: RunStats::default(),
        cloud: target.cloud,
        region: &target.conn.region,
        project_id: &target.conn.project_id,
        zone: &ctx.settings.zone,
        now: plan.now,
        origin: &ctx.origin,
        totals,
    }
}

fn influx_options(ctx: &Context) -> InfluxOptions<'_> {
    let out = &ctx.spec.output;
    InfluxOptions {
        measurement: &out.measurement,
        tags: &out.tags,
    }
}
