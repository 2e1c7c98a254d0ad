//! The period side of a collection: which destination the buckets go to, its lock, its
//! checkpoints and running totals as read, the commit written (and synced) before the output
//! goes out and put in place after it was delivered; and the reasons the period series are
//! held back, each said once with how to resolve it.

use std::path::Path;
use std::time::Instant;

use super::{signals, Context};
use crate::domain::RangeExpr;
use crate::log;
use crate::spec::{Format, Spec};
use crate::state::checkpoints::{CheckpointFile, Destination, OLD_FILE, STDOUT};
use crate::state::store::{file_in, CheckpointStore, PreparedCommit};
use crate::state::StateFileError;
use crate::time::period::{Checkpoints, Totals};

/// What a run writes to, as the checkpoints know it.
pub enum Output<'a> {
    /// `serve` listening on this address (as given: port 0 stays 0).
    Serve(std::net::SocketAddr),
    /// A run in `format`, to the file `path` (`None` or `-`: stdout), or for OTLP to `url`.
    Run {
        format: Format,
        path: Option<&'a Path>,
        url: Option<&'a str>,
    },
}

/// The destination of a run's period buckets: the spec's `output.destination`, else one made
/// of the format and the target (stdout, the file's absolute path, the OTLP URL without user
/// information, query or fragment). `serve` has its own (its output section is ignored but for
/// tags).
pub fn destination(output: Output<'_>, name: Option<&str>) -> Destination {
    match output {
        Output::Serve(listen) => Destination::new("serve", &listen.to_string(), None),
        Output::Run { format, path, url } => {
            let target = match (url, path.filter(|p| p.as_os_str() != "-")) {
                (Some(url), _) => bare_url(url),
                (None, Some(p)) => absolute(p),
                (None, None) => STDOUT.to_string(),
            };
            Destination::new(format.name(), &target, name)
        }
    }
}

/// `url` without user information, query or fragment: nothing secret, nothing that rotates.
fn bare_url(url: &str) -> String {
    let url = crate::endpoint::userinfo(url).map_or(url.to_string(), |info| {
        url.replacen(&format!("{info}@"), "", 1)
    });
    url.split(['?', '#']).next().unwrap_or_default().to_string()
}

/// `p` as an absolute path through its (existing) directory's real path, so that the same
/// file named another way is the same destination.
fn absolute(p: &Path) -> String {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let real_dir = abs.parent().and_then(|d| std::fs::canonicalize(d).ok());
    match (real_dir, abs.file_name()) {
        (Some(d), Some(f)) => d.join(f),
        _ => abs,
    }
    .display()
    .to_string()
}

/// The destination `plan` reads the checkpoints of: that of a run of `spec` in `format` (else
/// the spec's) to `path` (else stdout; format otlp: to `otlp_url`), as `run` would name it.
pub fn spec_destination(
    spec: &Spec,
    format: Option<Format>,
    path: Option<&Path>,
    otlp_url: Option<&str>,
) -> Destination {
    destination(
        Output::Run {
            format: format.unwrap_or(spec.output.format),
            path,
            url: otlp_url,
        },
        spec.output.destination.as_deref(),
    )
}

pub fn has_period(spec: &Spec) -> bool {
    spec.queries
        .iter()
        .any(|q| matches!(q.range, RangeExpr::Period(_)))
}

/// Which series ids of a shared state directory are this spec's: its period queries in each
/// of its clouds (`<scope>/<query>/...` and `<scope>/cloud_eye/<query>/...`, the scope being
/// the region with `cloud:`, the cloud's name and region with `clouds`).
struct Ours {
    /// Per cloud: its scope, its ShowStatistics and its Cloud Eye period queries.
    clouds: Vec<(String, Vec<String>, Vec<String>)>,
}

impl Ours {
    fn new(spec: &Spec) -> Self {
        let clouds = spec
            .per_cloud()
            .into_iter()
            .map(|(_, s)| {
                let period = |cloud_eye: bool| -> Vec<String> {
                    s.queries
                        .iter()
                        .filter(|q| matches!(q.range, RangeExpr::Period(_)))
                        .filter(|q| q.cloud_eye().is_some() == cloud_eye)
                        .map(|q| q.name.clone())
                        .collect()
                };
                (s.checkpoint_scope(), period(false), period(true))
            })
            .collect();
        Ours { clouds }
    }

    fn statistics(&self, id: &str) -> bool {
        let mut parts = id.split('/');
        let (scope, query) = (parts.next(), parts.next());
        self.clouds.iter().any(|(s, queries, _)| {
            scope == Some(s.as_str()) && query.is_some_and(|q| queries.iter().any(|x| x == q))
        })
    }

    fn cloud_eye(&self, id: &str) -> bool {
        let mut parts = id.split('/');
        let (scope, ce, query) = (parts.next(), parts.next(), parts.next());
        ce == Some("cloud_eye")
            && self.clouds.iter().any(|(s, _, queries)| {
                scope == Some(s.as_str()) && query.is_some_and(|q| queries.iter().any(|x| x == q))
            })
    }

    /// The running totals of this spec out of all those `totals` holds.
    fn totals(&self, mut totals: Totals) -> Totals {
        totals.series.retain(|id, _| self.statistics(id));
        totals.cloud_eye.retain(|id, _| self.cloud_eye(id));
        totals
    }
}

/// Why a destination's checkpoints cannot be used: each would send delivered buckets again or
/// skip some if the period series went on.
pub enum Held {
    /// Its own file cannot be read or understood.
    Unreadable(StateFileError),
    /// `checkpoints.json` of an earlier version cannot be read, and it may hold this
    /// destination's checkpoints.
    OldUnreadable(StateFileError),
    /// `checkpoints.json` holds checkpoints of this spec's series, and which output they were
    /// for was never recorded.
    Old,
}

impl Held {
    /// The `E!` line: what is held back, why, and exactly how to go on.
    pub fn message(&self, state: &dyn CheckpointStore, d: &Destination) -> String {
        let flag = format!("--destination {} --state-dir {}", d.id, state.location());
        match self {
            Held::Unreadable(e) => format!(
                "{e}: the period series emit nothing rather than send delivered buckets again; fix or replace the file, or start this destination over with `maas-usage state reset {flag}` (which sends its whole backfill again)"
            ),
            Held::OldUnreadable(e) => format!(
                "{e}: it is the checkpoint file of an earlier version, and may hold this destination's ({}); the period series emit nothing until it is fixed, or `maas-usage state reset {flag}` starts this destination from its backfill",
                d.describe
            ),
            Held::Old => format!(
                "{} holds period checkpoints from an earlier version, which did not record the output they were for, and this destination ({}) has not taken them over: its period series emit nothing rather than send a bucket twice or skip one. If that version sent its buckets here, `maas-usage state adopt {flag}` goes on from them; to start from the backfill instead (sending those buckets again), `maas-usage state reset {flag}`",
                file_in(&state.location(), OLD_FILE),
                d.describe
            ),
        }
    }
}

/// The destination's checkpoint file as a run may use it: its own, and `checkpoints.json` of
/// an earlier version only once adopted or reset, unless it holds none of this spec's series
/// that the destination lacks.
fn usable(
    state: &dyn CheckpointStore,
    d: &Destination,
    ours: &Ours,
) -> Result<CheckpointFile, Held> {
    let own = state.read(&d.id).map_err(Held::Unreadable)?;
    let own = own.unwrap_or_default();
    if own.old_file_settled {
        return Ok(own);
    }
    match state.read_old() {
        Err(e) => Err(Held::OldUnreadable(e)),
        Ok(Some(old))
            if old.series.keys().any(|id| {
                (ours.statistics(id) || ours.cloud_eye(id)) && !own.series.contains_key(id)
            }) =>
        {
            Err(Held::Old)
        }
        Ok(_) => Ok(own),
    }
}

/// The checkpoints `plan` plans with: the destination's as a run would read them, or none
/// (with a warning saying why a run would hold them back).
pub fn planned(state: &dyn CheckpointStore, spec: &Spec, d: &Destination) -> Checkpoints {
    match usable(state, d, &Ours::new(spec)) {
        Ok(file) => file.series,
        Err(held) => {
            log::warn!("{}", held.message(state, d));
            Checkpoints::default()
        }
    }
}

/// The period side of one collection.
pub struct Period {
    /// The destination's lock, from reading its checkpoints to committing them.
    _lock: Option<Box<dyn Send>>,
    /// The period series take part in this collection.
    pub ok: bool,
    /// They were held back for a reason only the operator can resolve (an `E!` line said
    /// which): the run exits 1.
    pub held: bool,
    pub checkpoints: Checkpoints,
    /// This spec's running totals, as recorded.
    pub stored: Totals,
    /// The destination's file as read: what the commit advances.
    base: CheckpointFile,
}

/// The lock and the checkpoints of a collection, read under the lock. Without the lock nothing
/// of them is used, the running totals included: the run holding it may commit newer ones
/// before this one writes, and a Prometheus counter must never go back. The period series
/// (buckets and counters) are then absent from this run's output; the next run that holds the
/// lock shows them again.
pub fn begin(ctx: &Context, started: Instant) -> Period {
    let mut p = Period {
        _lock: None,
        ok: true,
        held: false,
        checkpoints: Checkpoints::default(),
        stored: Totals::default(),
        base: CheckpointFile::default(),
    };
    if !has_period(&ctx.spec) {
        return p;
    }
    let Some(state) = ctx.store.checkpoints() else {
        // Only when the state directory given could not be opened (run_spec refuses a spec
        // with a period query and no state directory at all); the reason was said above.
        log::error!(
            "the state directory {} cannot be used (see above): the period series emit nothing, since their checkpoints could not be recorded and every run would send them again; make it writable by this user",
            ctx.settings
                .state
                .dir
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        p.ok = false;
        p.held = true;
        return p;
    };
    let d = &ctx.destination;
    match lock(state, d, started + ctx.spec.limits.timeout / 2) {
        Ok(Some(taken)) => p._lock = Some(taken),
        Ok(None) => p.ok = false,
        Err(()) => (p.ok, p.held) = (false, true),
    }
    if !p.ok {
        return p;
    }
    let ours = Ours::new(&ctx.spec);
    match usable(state, d, &ours) {
        Ok(file) => {
            p.stored = ours.totals(file.totals.clone());
            p.checkpoints = file.series.clone();
            p.base = file;
        }
        Err(held) => {
            log::error!("{}", held.message(state, d));
            (p.ok, p.held) = (false, true);
        }
    }
    p.base.destination = Some(d.clone());
    p
}

/// The destination's period lock, waited for until `wait_until` (half the run at most: the
/// other series still need their time) or a stop signal. `Ok(None)` (a `W!` line) when another
/// run holds it: the period series sit this collection out, and that run or a later one emits
/// their buckets. `Err` (an `E!` line) when it cannot be taken at all (a directory or a symlink
/// where the lock file should be): only the operator can fix that, and until then no run
/// emits the period series.
fn lock(
    state: &dyn CheckpointStore,
    d: &Destination,
    wait_until: Instant,
) -> Result<Option<Box<dyn Send>>, ()> {
    match state.lock(&d.id, wait_until, &signals::stopping) {
        Ok(Some(lock)) => Ok(Some(lock)),
        Ok(None) => {
            match signals::received() {
                Some(signal) => log::warn!(
                    "stopped by {signal} while waiting for the period-mode lock of {} in {}: the period series emit nothing this time",
                    d.id,
                    state.location()
                ),
                None => log::warn!(
                    "another run holds the period-mode lock of {} in {} (a slow or overlapping run): the period series emit nothing this time, and their buckets follow in a later run",
                    d.id,
                    state.location()
                ),
            }
            Ok(None)
        }
        Err(e) => {
            log::error!(
                "cannot take the period-mode lock of {} ({e}): the period series emit nothing until it can be taken; remove what is there (the next run makes it a regular file again)",
                d.id
            );
            Err(())
        }
    }
}

impl Period {
    /// Writes the commit of `advance` (and the totals it accounts for) under a temporary name
    /// and syncs it, before anything goes out. `Err(())` when it cannot be written (a full or
    /// read-only state directory), said in an `E!` line: the caller then holds the period
    /// series back, since every run would send them again.
    pub fn prepare(
        &mut self,
        ctx: &Context,
        advance: &Checkpoints,
        totals: &Totals,
    ) -> Result<Option<Box<dyn PreparedCommit>>, ()> {
        let Some(state) = ctx.store.checkpoints().filter(|_| !advance.is_empty()) else {
            return Ok(None);
        };
        let next = self.base.advanced(advance, totals);
        match state.prepare(&ctx.destination.id, &next) {
            Ok(prepared) => Ok(Some(prepared)),
            Err(e) => {
                log::error!(
                    "cannot record the period checkpoints in {} ({e}): the period series emit nothing, since every run would send their buckets again; free space in the state directory, or make it writable by this user",
                    state.location()
                );
                self.held = true;
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format: Format, path: Option<&str>, url: Option<&str>) -> Destination {
        destination(
            Output::Run {
                format,
                path: path.map(Path::new),
                url,
            },
            None,
        )
    }

    #[test]
    fn a_destination_is_its_format_and_target_without_secrets() {
        assert_eq!(run(Format::Influx, None, None).id, "influx-stdout");
        assert_eq!(run(Format::Influx, Some("-"), None).id, "influx-stdout");
        let otlp = run(Format::Otlp, None, Some("https://c:4318/v1/metrics"));
        assert_eq!(otlp.describe, "otlp https://c:4318/v1/metrics");
        let with_secrets = run(
            Format::Otlp,
            None,
            Some("https://user:pw@c:4318/v1/metrics?token=abc#x"),
        );
        assert_eq!(with_secrets, otlp, "no user information, query or fragment");
        let file = run(Format::Prometheus, Some("out.prom"), None);
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(
            file.describe,
            format!("prometheus {}", cwd.join("out.prom").display())
        );
        let listen = "127.0.0.1:9464".parse().unwrap();
        assert!(destination(Output::Serve(listen), Some("ignored"))
            .id
            .starts_with("serve-"));
        let named = destination(
            Output::Run {
                format: Format::Otlp,
                path: None,
                url: Some("http://a"),
            },
            Some("finops"),
        );
        assert_eq!(named.id, "otlp-finops");
    }
}
