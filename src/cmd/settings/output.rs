//! The output's settings, for the commands that deliver a collection (`run`, `serve`, `demo`):
//! the format (flag, else the spec's), the OTLP exporter (`output.otlp`, then the `OTEL_*`
//! variables by the exporter conventions, through `deliver::otlp`'s functions), the resource
//! attributes (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`) and the temporality preference.

use super::Error;
use crate::deliver::otlp::{self, ExportConfig};
use crate::emit::otlp::Temporality;
use crate::emit::ResourceEnv;
use crate::env::Lookup;
use crate::log;
use crate::spec::{Format, Spec};

/// What a command that delivers says of its output.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutputFlags {
    /// `--format` (`serve`: prometheus); `None`: the spec's.
    pub format: Option<Format>,
}

/// How a collection is delivered.
#[derive(Clone, Debug)]
pub struct OutputSettings {
    pub format: Format,
    /// Format otlp: where and how to export.
    pub export: Option<ExportConfig>,
    pub resource: ResourceEnv,
    /// How period buckets are summed in OTLP.
    pub temporality: Temporality,
}

pub(super) fn resolve(
    spec: &Spec,
    flags: OutputFlags,
    env: Lookup<'_>,
) -> Result<OutputSettings, Error> {
    let format = flags.format.unwrap_or(spec.output.format);
    let resource = ResourceEnv::from_env(env);
    if format == Format::Prometheus {
        for m in resource.check_labels()? {
            log::warn!(
                "OTEL_RESOURCE_ATTRIBUTES: {} make one target_info label `{}`: its value is theirs joined with `;`, as the collector's prometheus exporter does; rename one",
                m.keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and "),
                m.label
            );
        }
    }
    let export = match format {
        Format::Otlp => Some(otlp::resolve(&spec.output.otlp, env)?),
        _ => None,
    };
    Ok(OutputSettings {
        format,
        export,
        resource,
        temporality: otlp::temporality(env),
    })
}
