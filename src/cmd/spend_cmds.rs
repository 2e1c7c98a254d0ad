//! `rules`, `dashboard` and `report`: what the spec's spend and the plugin's metrics look like in
//! the tools around it (Prometheus, Grafana, a monthly HTML file).

use super::error::{Error, Outcome};
use super::run::load_spec;
use crate::cli::{DashboardArgs, RulesArgs};
use crate::deliver::sink::write_stdout;
use crate::generate::{self, rules};
use crate::log::{self, Style};
use crate::manifest;
use crate::spec::Spec;

fn manifest() -> Result<manifest::Manifest, Error> {
    manifest::load().map_err(|e| Error::System(e.to_string()))
}

pub fn rules(a: RulesArgs) -> Result<Outcome, Error> {
    log::set_style(Style::Telegraf);
    let spec = load_spec(&a.spec)?;
    let groups =
        rules::groups(&spec, &manifest()?, a.interval).map_err(|e| Error::System(e.to_string()))?;
    write_stdout(&rules::render(&groups))?;
    Ok(Outcome::Done)
}

pub fn dashboard(a: DashboardArgs) -> Result<Outcome, Error> {
    log::set_style(Style::Telegraf);
    let spec = load_spec(&a.spec)?;
    let names = generate::names(&manifest()?).map_err(|e| Error::System(e.to_string()))?;
    write_stdout(&generate::dashboard::render(&spec, &names))?;
    Ok(Outcome::Done)
}

/// Cloud Eye queries with a key group breakdown: the spec accepts them, the collection does not
/// sum keys into key groups yet, so `run` and `serve` refuse them rather than emit per-key series
/// under a breakdown that promised teams.
pub fn refuse_grouped(spec: &Spec) -> Result<(), Error> {
    match spec.grouped.keys().next() {
        Some(name) => Err(Error::Usage(format!(
            "query {name}: breakdown [model, key_group] and [key_group] are not collected yet (the Cloud Eye collection does not sum keys into key groups); use [model, api_key] for now, or `maas-usage report`, which sums keys into teams"
        ))),
        None => Ok(()),
    }
}
