//! `validate`, `plan` and `schema`: everything about a spec that needs neither credentials nor
//! network, for people and for the CI of a GitOps repository.

use chrono::Utc;
use serde_json::json;

use super::error::{Error, Outcome};
use super::settings::{resolve_zone, Flags, Settings};
use crate::cli::{PlanArgs, ValidateArgs, ValidateFormat};
use crate::deliver::sink::write_stdout;
use crate::plan;
use crate::spec::load::{self, SpecError, SpecErrors};
use crate::state::checkpoints::Destination;
use crate::state::StateDir;
use std::path::Path;

pub fn schema() -> Result<Outcome, Error> {
    write_stdout(load::SCHEMA)?;
    Ok(Outcome::Done)
}

/// GitHub's workflow-command escaping of a message and of a property value.
fn gh_escape(s: &str, property: bool) -> String {
    let mut t = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        t = t.replace(':', "%3A").replace(',', "%2C");
    }
    t
}

fn github_line(e: &SpecError) -> String {
    let msg = if e.path.is_empty() {
        e.message.clone()
    } else {
        format!("{}: {}", e.path, e.message)
    };
    format!(
        "::error file={},line={},col={},title=maas-usage spec::{}\n",
        gh_escape(&e.file, true),
        e.line,
        e.column,
        gh_escape(&msg, false)
    )
}

pub fn validate(a: ValidateArgs) -> Result<Outcome, Error> {
    let files = load::expand(&a.paths).map(|f| f.len()).unwrap_or(0);
    let result = load::load(&a.paths).and_then(|spec| {
        let zone =
            resolve_zone(spec.timezone.as_deref()).map_err(|e| one_error(&a, e.to_string()))?;
        let mut plans = Vec::new();
        for (name, s) in spec.per_cloud() {
            let plan =
                plan::build(&s, Utc::now(), &zone).map_err(|e| one_error(&a, e.to_string()))?;
            plans.push((name.map(|n| format!("cloud={n}: ")), plan));
        }
        Ok((spec, plans))
    });
    // What a run now would be told (such as a window beyond the 30-day retention).
    for (prefix, plan) in result.iter().flat_map(|(_, plans)| plans) {
        for w in &plan.warnings {
            crate::log::warn!("{}{w}", prefix.as_deref().unwrap_or_default());
        }
    }
    match (result, a.format) {
        (Ok((spec, plans)), format) => {
            let series: usize = plans.iter().map(|(_, p)| p.statistics().series.len()).sum();
            let calls: usize = plans.iter().map(|(_, p)| p.statistics().calls.len()).sum();
            let clouds: Vec<&str> = spec.clouds.iter().map(|c| c.name.as_str()).collect();
            let text = match format {
                ValidateFormat::Json => {
                    let mut doc = json!({"valid": true, "files": files, "queries": spec.queries.len(), "series": series, "calls": calls, "errors": []});
                    if !clouds.is_empty() {
                        doc["clouds"] = json!(clouds);
                    }
                    format!("{doc}\n")
                }
                _ => {
                    let n = |count: usize, one: &str, many: &str| {
                        format!("{count} {}", if count == 1 { one } else { many })
                    };
                    let clouds = match clouds.as_slice() {
                        [] => String::new(),
                        names => format!(
                            "{} ({}), ",
                            n(names.len(), "cloud", "clouds"),
                            names.join(", ")
                        ),
                    };
                    format!(
                        "ok: {files} file(s), {clouds}{}, {}, {} per run\n",
                        n(spec.queries.len(), "query", "queries"),
                        n(series, "series", "series"),
                        n(calls, "call", "calls")
                    )
                }
            };
            write_stdout(&text)?;
            Ok(Outcome::Done)
        }
        (Err(errors), ValidateFormat::Text) => Err(Error::Spec(errors)),
        (Err(errors), ValidateFormat::Github) => {
            write_stdout(&errors.0.iter().map(github_line).collect::<String>())?;
            Ok(Outcome::Invalid)
        }
        (Err(errors), ValidateFormat::Json) => {
            write_stdout(&format!(
                "{}\n",
                json!({"valid": false, "errors": errors.0})
            ))?;
            Ok(Outcome::Invalid)
        }
    }
}

/// An error found after loading (zone, planning) has no position of its own.
fn one_error(a: &ValidateArgs, message: String) -> SpecErrors {
    let file = a
        .paths
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    SpecErrors(vec![SpecError {
        file,
        line: 1,
        column: 1,
        path: String::new(),
        message,
    }])
}

pub fn plan(a: PlanArgs) -> Result<Outcome, Error> {
    let spec = super::run::load_spec(&a.spec)?;
    let flags = Flags {
        state: Some(&a.state),
        now: Some(&a.now),
        plan_format: a.format,
        ..Flags::default()
    };
    let settings = Settings::from_process(&spec, flags)?;
    let destination = match &a.destination {
        Some(id) if !Destination::valid_id(id) => {
            return Err(Error::Usage(format!(
                "--destination {id}: not a destination id (see `maas-usage state show`)"
            )))
        }
        Some(id) => Destination {
            id: id.clone(),
            describe: String::new(),
        },
        None => super::run::spec_destination(
            &spec,
            a.format,
            a.output.as_deref(),
            settings.otlp_url.as_deref(),
        ),
    };
    // Read-only: a plan never creates the state directory.
    let state = settings.state.dir.as_deref().and_then(StateDir::existing);
    let checkpoints = match &state {
        Some(d) => super::run::planned(d, &spec, &destination),
        None => Default::default(),
    };
    let mut out = String::new();
    for ((name, s), cloud) in spec.per_cloud().into_iter().zip(&settings.clouds) {
        let plan = plan::build_with(
            &s,
            settings.now(),
            &settings.zone,
            &checkpoints,
            spec.limits.requests_per_minute as usize,
        )?;
        if let Some(name) = name {
            if !out.is_empty() {
                out.push('\n');
            }
            let through = s
                .cloud
                .assume_agency
                .as_ref()
                .map(|a| format!(", through the agency {}", a.agency_urn))
                .unwrap_or_default();
            out.push_str(&format!(
                "Cloud {name} (region {}{through}):\n",
                cloud.region
            ));
        }
        out.push_str(&plan.describe());
    }
    if super::run::has_period(&spec) {
        out.push_str(&read_from(&destination, state.as_ref(), &settings));
    }
    write_stdout(&out)?;
    Ok(Outcome::Done)
}

/// Which destination's checkpoints the plan read, and where.
fn read_from(d: &Destination, state: Option<&StateDir>, settings: &Settings) -> String {
    // Without a state directory the OTLP endpoint was not looked for: no id to name.
    let Some(state) = state else {
        let dir = settings.state.dir.as_deref().unwrap_or(Path::new("-"));
        return format!(
            "\nPeriod checkpoints: none (no state directory at {}): the period series would start from their backfill\n",
            dir.display()
        );
    };
    let describe = match state.checkpoints_of(&d.id) {
        Ok(Some(file)) => file.destination.map(|d| d.describe).unwrap_or_default(),
        _ => String::new(),
    };
    let describe = [describe.as_str(), d.describe.as_str()]
        .into_iter()
        .find(|s| !s.is_empty())
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    format!(
        "\nPeriod checkpoints: destination {}{describe} in {} (another output: --format, --output or --destination)\n",
        d.id,
        state.path().display()
    )
}
