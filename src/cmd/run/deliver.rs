//! The end of a collection: the report rendered in the run's format and written or pushed, then
//! (only then) the period checkpoints committed.

use std::time::Instant;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use super::Context;
use crate::cmd::error::Error;
use crate::cmd::hooks;
use crate::deliver::otlp;
use crate::deliver::scrape::Page;
use crate::emit::influx::InfluxOptions;
use crate::emit::otlp::OtlpOptions;
use crate::emit::prometheus::PromOptions;
use crate::emit::{self, Report};
use crate::log;
use crate::spec::Format;
use crate::state::store::PreparedCommit;

/// Writes or pushes the report in the run's format; under `serve`, publishes it for scrapes
/// when the collection succeeded (`ok`), else only its self-metrics, after the last good data.
/// With a coordination group sharing its collections, the data part written (self-metrics
/// after it), for the group's other processes.
pub fn deliver(
    ctx: &Context,
    reports: &[Report<'_>],
    ok: bool,
    deadline: Instant,
) -> Result<Option<Page>, Error> {
    let out = &ctx.spec.output;
    if ctx.sharing.is_some() && ctx.published.is_none() && ctx.format != Format::Otlp {
        let data = Page {
            text: match ctx.format {
                Format::Influx => emit::influx::render_all_series(reports, &influx_opts(ctx)),
                _ => emit::prometheus::render_parts_all(reports, &prom_opts(ctx, false)).data,
            },
            openmetrics: String::new(),
        };
        deliver_stored(ctx, data.clone(), reports, deadline)?;
        return Ok(Some(data));
    }
    if let Some(published) = &ctx.published {
        let render = |openmetrics| {
            emit::prometheus::render_parts_all(
                reports,
                &PromOptions {
                    tags: &out.tags,
                    resource: &ctx.resource,
                    openmetrics,
                },
            )
        };
        let (text, openmetrics) = (render(false), render(true));
        let own = Page {
            text: text.own,
            openmetrics: openmetrics.own,
        };
        let data = Page {
            text: text.data,
            openmetrics: openmetrics.data,
        };
        match ok {
            true => published.publish(data.clone(), own),
            false => published.refresh(own),
        }
        return Ok(Some(data));
    }
    match ctx.format {
        Format::Influx => ctx.sink.write(&emit::influx::render_all(
            reports,
            &InfluxOptions {
                measurement: &out.measurement,
                tags: &out.tags,
            },
        ))?,
        Format::Prometheus => ctx.sink.write(&emit::prometheus::render_all(
            reports,
            &PromOptions {
                tags: &out.tags,
                resource: &ctx.resource,
                openmetrics: false,
            },
        ))?,
        Format::Table => ctx
            .sink
            .write(&emit::table::render_all(reports, false, ctx.table))?,
        Format::Json => ctx.sink.write(&emit::json::render_all(reports))?,
        Format::OtlpJson => append_otlp_json(ctx, reports, true)?,
        Format::Otlp => {
            // The data first; then the self-metrics, with what the collector said of the data.
            let rejected = export_data(ctx, reports, deadline)?;
            export_own_after(ctx, reports, rejected, deadline);
            // Shared with a coordination group: what the followers need is that it went out.
            if ctx.sharing.is_some() {
                return Ok(Some(Page {
                    text: String::new(),
                    openmetrics: String::new(),
                }));
            }
        }
    }
    Ok(None)
}

/// The data of `reports` (not their self-metrics) as one OTLP request.
fn data_request(ctx: &Context, reports: &[Report<'_>]) -> ExportMetricsServiceRequest {
    let opts = otlp_opts(ctx);
    let data = emit::otlp::merge(reports.iter().map(|r| emit::otlp::data_metrics(r, &opts)));
    emit::otlp::request_all(reports, &opts, data)
}

/// Pushes the data of `reports` to the OTLP destination; what the collector rejected of them.
pub fn export_data(ctx: &Context, reports: &[Report<'_>], deadline: Instant) -> Result<i64, Error> {
    let Some(cfg) = &ctx.export else {
        return Err(Error::System("OTLP export not configured".into()));
    };
    Ok(otlp::export(cfg, &data_request(ctx, reports), deadline)?.rejected)
}

/// Appends `reports` as one OTLP/JSON line: their data, and with `own` their self-metrics.
pub fn append_otlp_json(ctx: &Context, reports: &[Report<'_>], own: bool) -> Result<(), Error> {
    let request = match own {
        true => emit::otlp::build_all(reports, &otlp_opts(ctx)),
        false => data_request(ctx, reports),
    };
    Ok(ctx.sink.append(&emit::otlp::to_json_line(&request))?)
}

/// The self-metrics pushed after the data, with what the collector rejected of them: the data
/// are delivered, so a failure here costs the self-metrics only.
pub fn export_own_after(ctx: &Context, reports: &[Report<'_>], rejected: i64, deadline: Instant) {
    if let Err(e) = export_own(ctx, reports, Some(rejected), deadline) {
        log::warn!("the self-metrics were not delivered: {e}");
    }
}

fn influx_opts(ctx: &Context) -> InfluxOptions<'_> {
    InfluxOptions {
        measurement: &ctx.spec.output.measurement,
        tags: &ctx.spec.output.tags,
    }
}

fn prom_opts(ctx: &Context, openmetrics: bool) -> PromOptions<'_> {
    PromOptions {
        tags: &ctx.spec.output.tags,
        resource: &ctx.resource,
        openmetrics,
    }
}

/// Writes `data` (a coordination group's collection: line protocol, or a Prometheus page's
/// data part) followed by the self-metrics of `reports`; under `serve`, publishes them. Under
/// OTLP the group's leader exported the data: only the self-metrics go.
pub fn deliver_stored(
    ctx: &Context,
    data: Page,
    reports: &[Report<'_>],
    deadline: Instant,
) -> Result<(), Error> {
    if let Some(published) = &ctx.published {
        let own = |openmetrics| {
            emit::prometheus::render_parts_all(reports, &prom_opts(ctx, openmetrics)).own
        };
        published.publish(
            data,
            Page {
                text: own(false),
                openmetrics: own(true),
            },
        );
        return Ok(());
    }
    if ctx.format == Format::Otlp {
        return export_own(ctx, reports, None, deadline);
    }
    let own = match ctx.format {
        Format::Influx => emit::influx::render_collectors(reports, &influx_opts(ctx)),
        _ => emit::prometheus::render_parts_all(reports, &prom_opts(ctx, false)).own,
    };
    ctx.sink.write(&format!("{}{own}", data.text))?;
    Ok(())
}

/// Puts the period checkpoints prepared before the delivery in place, after it: a run that
/// failed to deliver never gets here, so the next run sends the same buckets again.
pub fn commit(ctx: &Context, prepared: Option<Box<dyn PreparedCommit>>) {
    let Some(prepared) = prepared else {
        return;
    };
    hooks::crash_before_checkpoint();
    if let Err(e) = prepared.commit() {
        // Delivered but not recorded: the next run sends these buckets again.
        log::error!(
            "the output was delivered but the checkpoints could not be recorded in {} ({e}); the next run sends the same buckets again",
            ctx.store.location().unwrap_or_default()
        );
    }
}

/// The self-metrics of `reports` pushed to the OTLP destination, with what the collector said
/// of the data (`rejected`; `None` for a follower, whose group's leader exported them).
fn export_own(
    ctx: &Context,
    reports: &[Report<'_>],
    rejected: Option<i64>,
    deadline: Instant,
) -> Result<(), Error> {
    let Some(cfg) = &ctx.export else {
        return Err(Error::System("OTLP export not configured".into()));
    };
    let opts = otlp_opts(ctx);
    let own = emit::otlp::merge(
        reports
            .iter()
            .map(|r| emit::otlp::collector_metrics(r, &opts, rejected)),
    );
    let own = emit::otlp::request_all(reports, &opts, own);
    otlp::export(cfg, &own, deadline)?;
    Ok(())
}

fn otlp_opts(ctx: &Context) -> OtlpOptions<'_> {
    OtlpOptions {
        tags: &ctx.spec.output.tags,
        resource: &ctx.resource,
        temporality: ctx.temporality,
    }
}
