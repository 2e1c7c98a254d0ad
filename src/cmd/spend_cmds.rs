//! `rules`, `dashboard` and `report`: what the spec's spend and the plugin's metrics look like in
//! the tools around it (Prometheus, Grafana, a monthly HTML file).

use super::error::{Error, Outcome};
use super::run::load_spec;
use crate::cli::{DashboardArgs, RulesArgs};
use crate::deliver::sink::write_stdout;
use crate::generate::{self, rules};
use crate::log::{self, Style};
use crate::manifest;

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
