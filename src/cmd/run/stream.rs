//! Output written as it is produced: line protocol on stdout (what Telegraf's exec and execd
//! read) takes each round of a collection as it comes (a source's series, a run of period
//! buckets), so a month of buckets never sits in memory. Each round's period buckets are added
//! to their running totals and their commit is prepared (durably, not yet in force) before
//! they are written, as for a whole collection; the collector's own line follows the last
//! round, and the commit is put in force only after it, by the caller.

use super::{period, Context};
use crate::cloud::Connection;
use crate::cmd::error::Error;
use crate::collect::{self, Collection, RunStats};
use crate::deliver::sink::write_stdout;
use crate::emit::influx::{self, InfluxOptions};
use crate::emit::Report;
use crate::plan::Plan;
use crate::spec::Format;
use crate::state::store::PreparedCommit;
use crate::time::period::{Checkpoints, Totals};

/// Whether this run's output goes out as it is produced: line protocol on stdout of one cloud
/// (several are collected side by side), not `serve`'s page.
pub fn streams(ctx: &Context) -> bool {
    ctx.format == Format::Influx
        && ctx.sink.to_stdout()
        && ctx.published.is_none()
        && ctx.clouds.len() == 1
        // A collection shared with a coordination group is written whole, to be stored.
        && ctx.sharing.is_none()
}

/// Where a streamed collection's lines come from: its cloud (the `cloud` tag with `clouds`),
/// its connection (region and project), and its period series' running totals as recorded.
pub struct Target<'a> {
    pub cloud: Option<&'a str>,
    pub conn: &'a Connection,
    pub stored: Totals,
}

/// What a streamed collection leaves: its failures, warnings and how it ended (its series
/// were written and are counted in `delivered`), the running totals after it, and the commit
/// of the buckets written.
pub struct Streamed {
    pub collection: Collection,
    pub totals: Totals,
    pub prepared: Option<Box<dyn PreparedCommit>>,
}

/// Collects `plan`, writing each round's series to stdout as it comes. A write that fails
/// ends the collection there (no more calls) and is the error: nothing is committed.
pub fn collect(
    ctx: &Context,
    plan: &Plan,
    (setup, run): (&collect::Setup<'_>, &collect::Run<'_>),
    target: Target<'_>,
    period: &mut period::Period,
) -> Result<Streamed, Error> {
    let mut out = Streamed {
        collection: Collection::default(),
        totals: target.stored.clone(),
        prepared: None,
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
        if let Err(e) = write_stdout(&render(ctx, plan, &target, &round, &out.totals)) {
            failed = Some(e);
            return false;
        }
        round.delivered += std::mem::take(&mut round.series).len();
        // Written with the round's series: not again with the collector's line.
        round.budgets.clear();
        round.advance.clear();
        out.collection.absorb(round);
        true
    });
    out.collection.advance = advance;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// The lines of a round's series.
fn render(
    ctx: &Context,
    plan: &Plan,
    target: &Target<'_>,
    round: &Collection,
    totals: &Totals,
) -> String {
    let report = Report {
        collection: round,
        stats: RunStats::default(),
        cloud: target.cloud,
        region: &target.conn.region,
        project_id: &target.conn.project_id,
        zone: &ctx.settings.zone,
        now: plan.now,
        origin: &ctx.origin,
        totals,
    };
    let out = &ctx.spec.output;
    influx::render_series(
        &report,
        &InfluxOptions {
            measurement: &out.measurement,
            tags: &out.tags,
        },
    )
}
