//! `maas-usage state show|reset|adopt`: period-mode checkpoints per destination and credential
//! rejections, for people.

use chrono::{TimeZone, Utc};

use super::error::{Error, Outcome};
use super::settings::StateSettings;
use crate::cli::{StateAction, StateArgs};
use crate::deliver::sink::write_stdout;
use crate::state::checkpoints::{CheckpointError, OLD_FILE};
use crate::state::fleet;
use crate::state::{GateFiles, RuntimeDir, StateDir};
use crate::time::period::Checkpoints;
use std::path::Path;

/// The state directory.
fn dir(flag: &StateArgs) -> Result<StateDir, Error> {
    let settings = StateSettings::from_process(flag);
    let path = settings
        .dir
        .ok_or_else(|| Error::Usage("no state directory: pass --state-dir (or set HOME)".into()))?;
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a state directory (nothing was run with it yet?)",
            path.display()
        )));
    }
    Ok(StateDir::open(&path)?)
}

/// The credential gate's records that `state show|reset --auth` read: those of the state
/// directory (none needed when `--runtime-dir` alone is given and the default one does not
/// exist) and of the runtime directory (`--runtime-dir`, which must exist, else the
/// environment's).
fn gate_files(state: &StateArgs, runtime: Option<&Path>) -> Result<GateFiles, Error> {
    if let Some(r) = runtime.filter(|r| !r.is_dir()) {
        return Err(Error::Usage(format!(
            "--runtime-dir {}: not a directory",
            r.display()
        )));
    }
    let d = match dir(state) {
        Ok(d) => Some(d),
        Err(_) if runtime.is_some() && state.state_dir.is_none() => None,
        Err(e) => return Err(e),
    };
    let runtime = match runtime {
        Some(r) => RuntimeDir::at(r),
        None => StateSettings::from_process(state).runtime,
    };
    Ok(GateFiles::new(d, runtime))
}

/// Which runtime directory the records were read from, for `state show`.
fn runtime_line(gate: &GateFiles) -> String {
    match gate.runtime_path() {
        Ok(p) => format!(
            "runtime directory {} (credential rejections recorded while the state directory could not take them)\n",
            p.display()
        ),
        Err(e) => format!("no usable runtime directory ({e})\n"),
    }
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

/// One destination's checkpoints (or the old file's), for `state show`.
fn show_checkpoints(out: &mut String, cps: &Checkpoints, now: i64) {
    let w = cps
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("series".len());
    out.push_str(&format!("  {:<w$}  delivered up to\n", "series"));
    for (id, end) in cps {
        let mark = if *end > now {
            "  (later than now: the clock went back, or a run used a later --now; the series emits nothing until the clock passes it, or `maas-usage state reset --series` starts it over)"
        } else {
            ""
        };
        out.push_str(&format!("  {id:<w$}  {}{mark}\n", when(*end)));
    }
}

/// `state show`: every destination with its checkpoints, the old file, the rejections.
fn show(d: &StateDir) -> String {
    let mut out = format!("state directory {}\n", d.path().display());
    let now = Utc::now().timestamp_millis();
    let destinations = d.destinations();
    for (id, file) in &destinations {
        match file {
            Ok(file) => {
                let file = file.clone().unwrap_or_default();
                let describe = file
                    .destination
                    .as_ref()
                    .map(|d| d.describe.as_str())
                    .filter(|s| !s.is_empty())
                    .unwrap_or("(no run since it was reset or adopted)");
                out.push_str(&format!("destination {id}: {describe}\n"));
                if file.series.is_empty() {
                    out.push_str("  no checkpoints: its next run starts from the backfill\n");
                } else {
                    show_checkpoints(&mut out, &file.series, now);
                }
            }
            // A checkpoint file a run cannot use holds the period series back: say so.
            Err(e) => out.push_str(&format!(
                "destination {id}: {e}\n  its period series emit nothing until it is fixed or replaced; `maas-usage state reset --destination {id}` starts it over (its whole backfill is sent again)\n"
            )),
        }
    }
    match d.old_checkpoints() {
        Ok(None) => {}
        Ok(Some(old)) => {
            out.push_str(&format!(
                "{OLD_FILE}: checkpoints of an earlier version, for no destination in particular; a destination that has not adopted or reset them holds back the period series they name (see `maas-usage state adopt --help`)\n"
            ));
            show_checkpoints(&mut out, &old.series, now);
        }
        Err(e) => out.push_str(&format!(
            "{e}\n  a destination that has not adopted or reset it holds its period series back\n"
        )),
    }
    if destinations.is_empty() && !out.contains(OLD_FILE) {
        out.push_str("no period-mode checkpoints\n");
    }
    out
}

fn checkpoint_error(d: &StateDir, e: CheckpointError) -> Error {
    if e.is_input() {
        Error::Usage(e.to_string())
    } else {
        Error::System(format!("cannot update {}: {e}", d.path().display()))
    }
}

pub fn state(a: StateAction) -> Result<Outcome, Error> {
    match a {
        StateAction::Show { state, runtime_dir } => {
            let d = dir(&state)?;
            let mut out = show(&d);
            // With the runtime directory's records: those made while this one could not.
            let gate = gate_files(&state, runtime_dir.as_deref())?;
            out.push_str(&runtime_line(&gate));
            let reset = gate.reset_command();
            match gate.rejections() {
                Ok(rejected) => {
                    for (key, r) in rejected {
                        out.push_str(&format!(
                            "credentials {key} rejected (HTTP {}) at {}; no call with them until {} (recorded in {}; {reset})\n",
                            r.status,
                            when(r.at_ms as i64),
                            when(r.until_ms() as i64),
                            gate.recorded_in(&key).unwrap_or_default(),
                        ));
                    }
                }
                Err(e) => out.push_str(&format!(
                    "{e}\nno signed call is made with any credentials until it is fixed or reset ({reset})\n"
                )),
            }
            write_stdout(&out)?;
            Ok(Outcome::Done)
        }
        StateAction::Reset {
            engine,
            auth,
            spec,
            state,
            ..
        } if engine || (auth && !spec.is_empty()) => reset_engine(&spec, &state, engine),
        StateAction::Reset {
            auth: true,
            state,
            runtime_dir,
            ..
        } => {
            let gate = gate_files(&state, runtime_dir.as_deref())?;
            let n = gate.reset().map_err(|e| {
                Error::System(format!("cannot forget the credential rejections in {e}"))
            })?;
            let places: Vec<String> = [gate.state_path(), gate.runtime_path().ok()]
                .into_iter()
                .flatten()
                .map(|p| p.display().to_string())
                .collect();
            write_stdout(&format!(
                "forgot {n} credential rejection(s) in {}; the next run tries its credentials again\n",
                places.join(" and ")
            ))?;
            Ok(Outcome::Done)
        }
        StateAction::Reset {
            destination,
            series,
            auth: false,
            state,
            ..
        } => {
            let d = dir(&state)?;
            let done = d
                .reset_checkpoints(destination.as_deref(), series.as_deref())
                .map_err(|e| checkpoint_error(&d, e))?;
            let mut out = String::new();
            for line in &done {
                out.push_str(&format!("{line}\n"));
            }
            // A full reset also forgets Cloud Eye's cached discovery (models and keys).
            if series.is_none() && destination.is_none() {
                d.reset_discovery().map_err(io(&d))?;
                out.push_str("reset the Cloud Eye discovery cache\n");
            }
            write_stdout(&out)?;
            Ok(Outcome::Done)
        }
        StateAction::Adopt { destination, state } => {
            let d = dir(&state)?;
            let n = d
                .adopt_old_checkpoints(&destination)
                .map_err(|e| checkpoint_error(&d, e))?;
            write_stdout(&format!(
                "destination {destination} goes on from {n} checkpoint(s) of {OLD_FILE}; other destinations that used this directory decide for themselves (adopt or reset), and the file can be deleted once all have\n"
            ))?;
            Ok(Outcome::Done)
        }
    }
}

/// `state reset --engine|--auth --spec FILE`: in the Redis the spec names, a new generation
/// every host accepts (remembered in this host's state directory), or the fleet's credential
/// rejections forgotten.
fn reset_engine(
    spec: &[std::path::PathBuf],
    state: &StateArgs,
    generation: bool,
) -> Result<Outcome, Error> {
    let spec = super::run::load_spec(spec)?;
    let flags = super::settings::Flags {
        state: Some(state),
        ..Default::default()
    };
    let settings = super::settings::Settings::from_process(&spec, flags)?;
    let Some(redis) = &settings.state.redis else {
        return Err(Error::Usage(
            "the spec sets no `coordination: {engine: redis}`: there is no engine to reset".into(),
        ));
    };
    let target = super::wiring::redis_target(redis)?;
    let out = if generation {
        let marker = fleet::reset_generation(&target)?;
        if let Some(d) = settings
            .state
            .dir
            .as_deref()
            .and_then(|p| StateDir::open(p).ok())
        {
            fleet::remember_generation(&d, &redis.url, &marker);
        }
        format!(
            "redis {}: a new generation ({marker}); period series go on from what it holds (buckets it forgot are sent again from the backfill)\n",
            redis.url
        )
    } else {
        let n = fleet::forget_rejections(&target)?;
        format!(
            "forgot the records of {n} credential(s) in redis {}; the next run tries its credentials again\n",
            redis.url
        )
    };
    write_stdout(&out)?;
    Ok(Outcome::Done)
}
