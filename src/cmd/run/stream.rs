//! Output written as it is produced: line protocol (what Telegraf's exec and execd read) and
//! JSON take each round of a collection as it comes (a source's series, a run of period
//! buckets), so a month of buckets never sits in memory. Each round's period buckets are added
//! to their running totals and their commit is prepared (durably, not yet in force) before
//! they are written, as for a whole collection; the collector's own line (JSON: the failures,
//! self-metrics and budgets) follows the last round ([`Open::finish`]), and the commit is put
//! in force only after it, by the caller. Stdout gets each round as it comes; a file is
//! replaced whole once finished.

use std::time::Instant;

use super::{deliver, period, signals, Context};
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
use crate::time::period::{Checkpoints, Totals};

/// Whether this run's output goes out as it is produced: line protocol, JSON or an OTLP push of
/// one cloud (several are collected side by side), not `serve`'s page nor a collection shared
/// with a coordination group (written whole, to be stored).
pub fn streams(ctx: &Context) -> bool {
    let format = match ctx.format {
        Format::Influx | Format::Json => true,
        Format::Otlp => ctx.export.is_some(),
        _ => false,
    };
    format && ctx.published.is_none() && ctx.clouds.len() == 1 && ctx.sharing.is_none()
}

/// Where a streamed collection's lines come from: its cloud (the `cloud` tag with `clouds`),
/// its connection (region and project), its period series' running totals as recorded, and
/// when its delivery must be done by.
pub struct Target<'a> {
    pub cloud: Option<&'a str>,
    pub conn: &'a Connection,
    pub stored: Totals,
    pub deadline: Instant,
}

/// What a streamed collection leaves: its failures, warnings and how it ended (its series
/// were written and are counted in `delivered`), the running totals after it, the commit
/// of the buckets written, and the output, to be finished.
pub struct Streamed {
    pub collection: Collection,
    pub totals: Totals,
    pub prepared: Option<Box<dyn PreparedCommit>>,
    pub open: Open,
}

/// An output written as it is produced, its series written, its end not yet.
pub struct Open {
    stream: Stream,
    format: Written,
}

/// How the rounds are written.
enum Written {
    /// Line protocol: each round's lines (its budgets with them).
    Influx,
    /// JSON: the document's elements, the failures, self-metrics and budgets at its end.
    Json(JsonStream),
    /// OTLP: each round's period buckets pushed (and committed) as they come, the other series
    /// and the budgets at the end, then the self-metrics with what the collector rejected.
    Otlp { rejected: i64, pushed: bool },
}

impl Open {
    fn new(ctx: &Context, first: &Report<'_>) -> Result<Open, Error> {
        let mut stream = ctx.sink.stream()?;
        let format = match ctx.format {
            Format::Json => {
                let (json, head) = JsonStream::begin(first);
                stream.write(&head)?;
                Written::Json(json)
            }
            Format::Otlp => Written::Otlp {
                rejected: 0,
                pushed: false,
            },
            _ => Written::Influx,
        };
        Ok(Open { stream, format })
    }

    /// Moves out of `round` what goes out now: every series (line protocol: its budgets
    /// too); OTLP: its period buckets.
    fn now(&self, round: &mut Collection) -> Collection {
        let series = match self.format {
            Written::Otlp { .. } => {
                let (buckets, rest) = std::mem::take(&mut round.series)
                    .into_iter()
                    .partition(collect::Series::is_bucket);
                round.series = rest;
                buckets
            }
            _ => std::mem::take(&mut round.series),
        };
        let budgets = match self.format {
            // Written with the round's series: not again with the collector's line.
            Written::Influx => std::mem::take(&mut round.budgets),
            _ => Vec::new(),
        };
        Collection {
            series,
            budgets,
            ..Collection::default()
        }
    }

    /// Writes (or pushes) the series of `r`.
    fn send(&mut self, ctx: &Context, r: &Report<'_>, deadline: Instant) -> Result<(), Error> {
        match &mut self.format {
            Written::Influx => self
                .stream
                .write(&influx::render_series(r, &influx_options(ctx)))?,
            Written::Json(json) => {
                let text = json.round(r);
                self.stream.write(&text)?;
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
    /// OTLP: the series and budgets not pushed yet, then the self-metrics) of `report`, and
    /// puts the output in place.
    pub fn finish(
        mut self,
        ctx: &Context,
        report: &Report<'_>,
        deadline: Instant,
    ) -> Result<(), Error> {
        let tail = match self.format {
            Written::Influx => influx::render(report, &influx_options(ctx)),
            Written::Json(json) => json.end(report),
            Written::Otlp { rejected, pushed } => {
                let c = report.collection;
                // A run with nothing to push still asks the collector (as a whole one does).
                let rest = match pushed && c.series.is_empty() && c.budgets.is_empty() {
                    true => 0,
                    false => deliver::export_data(ctx, std::slice::from_ref(report), deadline)?,
                };
                deliver::export_own_after(
                    ctx,
                    std::slice::from_ref(report),
                    rejected + rest,
                    deadline,
                );
                return Ok(());
            }
        };
        self.stream.write(&tail)?;
        Ok(self.stream.finish()?)
    }
}

/// Collects `plan`, writing each round's series as it comes. A write that fails ends the
/// collection there (no more calls) and is the error: nothing is committed (OTLP: but the
/// rounds the collector accepted before it).
pub fn collect(
    ctx: &Context,
    plan: &Plan,
    (setup, run): (&collect::Setup<'_>, &collect::Run<'_>),
    target: Target<'_>,
    period: &mut period::Period,
) -> Result<Streamed, Error> {
    let none = Collection::default();
    let open = Open::new(ctx, &report(ctx, plan, &target, &none, &target.stored))?;
    let mut out = Streamed {
        collection: Collection::default(),
        totals: target.stored.clone(),
        prepared: None,
        open,
    };
    let mut advance = Checkpoints::new();
    let mut buckets_held = false;
    let mut failed = None;
    collect::collect_each(plan, setup, run, &mut |mut round| {
        if buckets_held {
            round.drop_buckets();
        }
        let totals = round.accumulate(&out.totals);
        let mut next = advance.clone();
        for (id, end) in &round.advance {
            let e = next.entry(id.clone()).or_insert(*end);
            *e = (*e).max(*end);
        }
        if !round.advance.is_empty() {
            if advance.is_empty() {
                hooks::stop_before_prepare();
            }
            match period.prepare(ctx, &next, &totals) {
                Ok(prepared) => {
                    out.prepared = prepared.or(out.prepared.take());
                    (advance, out.totals) = (next, totals);
                }
                // Said once by `prepare`: these buckets and the later ones are held back.
                Err(()) => {
                    buckets_held = true;
                    round.drop_buckets();
                }
            }
        } else {
            out.totals = totals;
        }
        let now = out.open.now(&mut round);
        let r = report(ctx, plan, &target, &now, &out.totals);
        let pushing = matches!(out.open.format, Written::Otlp { .. });
        // A push and its commit are let finish by a stop signal (see `signals`).
        let _delivering = pushing.then(|| signals::delivering(target.deadline));
        if let Err(e) = out.open.send(ctx, &r, target.deadline) {
            failed = Some(e);
            return false;
        }
        round.delivered += now.series.len();
        if pushing {
            // Accepted by the collector: in force now, so a later round that fails does not
            // send these buckets again.
            deliver::commit(ctx, out.prepared.take());
        }
        round.advance.clear();
        out.collection.absorb(round);
        true
    });
    out.collection.advance = advance;
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
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
