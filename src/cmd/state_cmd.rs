//! `maas-usage state show|reset`: period-mode checkpoints, for people.

use chrono::{TimeZone, Utc};

use super::write_stdout;
use crate::cli::StateAction;
use crate::error::Error;
use crate::state::{self, StateDir};

fn dir(flag: Option<&std::path::Path>) -> Result<StateDir, Error> {
    let path = flag
        .map(std::path::Path::to_path_buf)
        .or_else(|| state::default_dir(&super::env))
        .ok_or_else(|| Error::Usage("no state directory: pass --state-dir (or set HOME)".into()))?;
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a state directory (nothing was run with it yet?)",
            path.display()
        )));
    }
    StateDir::open(&path).map_err(Error::Runtime)
}

fn when(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| ms.to_string())
}

pub fn state(a: StateAction) -> Result<i32, Error> {
    match a {
        StateAction::Show { state_dir } => {
            let d = dir(state_dir.as_deref())?;
            let cps = d.checkpoints();
            let mut out = format!("state directory {}\n", d.path().display());
            if cps.is_empty() {
                out.push_str("no period-mode checkpoints\n");
            } else {
                let w = cps.keys().map(String::len).max().unwrap_or(0);
                out.push_str(&format!("{:<w$}  delivered up to\n", "series"));
                for (id, end) in &cps {
                    out.push_str(&format!("{id:<w$}  {}\n", when(*end)));
                }
            }
            write_stdout(&out)?;
            Ok(0)
        }
        StateAction::Reset { series, state_dir } => {
            let d = dir(state_dir.as_deref())?;
            let removed = d.reset_checkpoints(series.as_deref());
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
            write_stdout(&out)?;
            Ok(0)
        }
    }
}
