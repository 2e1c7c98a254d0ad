//! `maas-usage state show|reset`: period-mode checkpoints and credential rejections, for
//! people.

use chrono::{TimeZone, Utc};

use super::error::{Error, Outcome};
use super::wiring;
use crate::cli::{StateAction, StateArgs};
use crate::deliver::sink::write_stdout;
use crate::env;
use crate::state::{self, StateDir};

fn dir(flag: &StateArgs) -> Result<StateDir, Error> {
    let path = flag
        .state_dir
        .clone()
        .or_else(|| state::default_dir(&env::process))
        .ok_or_else(|| Error::Usage("no state directory: pass --state-dir (or set HOME)".into()))?;
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a state directory (nothing was run with it yet?)",
            path.display()
        )));
    }
    Ok(StateDir::open(&path)?)
}

fn io(d: &StateDir) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::System(format!("cannot update {}: {e}", d.path().display()))
}

fn when(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| ms.to_string())
}

pub fn state(a: StateAction) -> Result<Outcome, Error> {
    match a {
        StateAction::Show { state } => {
            let d = dir(&state)?;
            let mut out = format!("state directory {}\n", d.path().display());
            // A checkpoint file a run cannot use holds the period series back: say so.
            let cps = d.checkpoint_state().map(|(c, _)| c).unwrap_or_else(|e| {
                out.push_str(&format!(
                    "{e}\nperiod series emit nothing until it is fixed or replaced; `maas-usage state reset` starts over (the whole backfill is sent again)\n"
                ));
                Default::default()
            });
            if cps.is_empty() {
                out.push_str("no period-mode checkpoints\n");
            } else {
                let now = Utc::now().timestamp_millis();
                let w = cps.keys().map(String::len).max().unwrap_or(0);
                out.push_str(&format!("{:<w$}  delivered up to\n", "series"));
                for (id, end) in &cps {
                    let mark = if *end > now {
                        "  (later than now: cannot be right; the next run starts this series again from its backfill)"
                    } else {
                        ""
                    };
                    out.push_str(&format!("{id:<w$}  {}{mark}\n", when(*end)));
                }
            }
            // With the runtime directory's records: those made while this one could not.
            match wiring::gate_store_files(&d).rejections() {
                Ok(rejected) => {
                    for (key, r) in rejected {
                        out.push_str(&format!(
                            "credentials {key} rejected (HTTP {}) at {}; no call with them until {} (maas-usage state reset --auth)\n",
                            r.status,
                            when(r.at_ms as i64),
                            when(r.until_ms() as i64)
                        ));
                    }
                }
                Err(e) => out.push_str(&format!(
                    "{e}\nno signed call is made with any credentials until it is fixed or reset (maas-usage state reset --auth)\n"
                )),
            }
            write_stdout(&out)?;
            Ok(Outcome::Done)
        }
        StateAction::Reset {
            auth: true, state, ..
        } => {
            let d = dir(&state)?;
            let n = wiring::gate_store_files(&d).reset().map_err(io(&d))?;
            write_stdout(&format!(
                "forgot {n} credential rejection(s); the next run tries its credentials again\n"
            ))?;
            Ok(Outcome::Done)
        }
        StateAction::Reset {
            series,
            auth: false,
            state,
        } => {
            let d = dir(&state)?;
            let removed = d.reset_checkpoints(series.as_deref()).map_err(io(&d))?;
            if removed.is_empty() && series.is_some() {
                return Err(Error::Usage(format!(
                    "no checkpoint matches `{}`; see `maas-usage state show`",
                    series.unwrap_or_default()
                )));
            }
            let mut out = String::new();
            for id in &removed {
                out.push_str(&format!("reset {id}\n"));
            }
            // A full reset also forgets Cloud Eye's cached discovery (models and keys).
            if series.is_none() {
                d.reset_discovery().map_err(io(&d))?;
                out.push_str("reset the Cloud Eye discovery cache\n");
            }
            write_stdout(&out)?;
            Ok(Outcome::Done)
        }
    }
}
