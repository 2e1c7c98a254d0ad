//! The end of a collection: the report rendered in the run's format and written or pushed, then
//! (only then) the period checkpoints committed.

use std::time::Instant;

use super::Context;
use crate::cmd::error::Error;
use crate::cmd::hooks;
use crate::deliver::otlp;
use crate::emit::influx::InfluxOptions;
use crate::emit::otlp::OtlpOptions;
use crate::emit::prometheus::PromOptions;
use crate::emit::{self, Report};
use crate::log;
use crate::spec::Format;
use crate::time::period::Checkpoints;

/// Writes or pushes the report in the run's format.
pub fn deliver(ctx: &Context, report: &Report<'_>, deadline: Instant) -> Result<(), Error> {
    let out = &ctx.spec.output;
    let otlp_opts = || OtlpOptions {
        tags: &out.tags,
        resource: &ctx.resource,
    };
    match ctx.format {
        Format::Influx => ctx.sink.write(&emit::influx::render(
            report,
            &InfluxOptions {
                measurement: &out.measurement,
                tags: &out.tags,
            },
        ))?,
        Format::Prometheus => ctx.sink.write(&emit::prometheus::render(
            report,
            &PromOptions {
                measurement: &out.measurement,
                tags: &out.tags,
            },
        ))?,
        Format::Table => ctx
            .sink
            .write(&emit::table::render(report, false, ctx.table))?,
        Format::Json => ctx.sink.write(&emit::json::render(report))?,
        Format::OtlpJson => ctx
            .sink
            .append(&emit::otlp::to_json_line(&emit::otlp::build(
                report,
                &otlp_opts(),
            )))?,
        Format::Otlp => {
            let Some(cfg) = &ctx.export else {
                return Err(Error::System("OTLP export not configured".into()));
            };
            let req = emit::otlp::build(report, &otlp_opts());
            otlp::export(cfg, &req, deadline)?;
        }
    }
    Ok(())
}

/// Moves the period checkpoints after a delivery: a run that failed to deliver never gets here,
/// so the next run sends the same buckets again.
pub fn commit(ctx: &Context, advance: &Checkpoints, now_ms: i64) {
    if advance.is_empty() {
        return;
    }
    hooks::crash_before_checkpoint();
    let Some(state) = &ctx.state else {
        return;
    };
    if let Err(e) = state.advance_checkpoints(advance, now_ms) {
        // Delivered but not recorded: the next run sends these buckets again.
        log::error(&format!(
            "the output was delivered but the checkpoints could not be recorded in {} ({e}); the next run sends the same buckets again",
            state.path().display()
        ));
    }
}
