//! Period-mode checkpoints, per destination: for each output the period buckets go to (a
//! collector's endpoint, a file, stdout, `serve`'s page), the end of the last bucket delivered
//! per series and the running totals they account for, in `checkpoints-<destination>.json`;
//! and the lock a run holds from reading a destination's checkpoints to committing them.
//!
//! The checkpoints are the exception to "a corrupt state file is ignored": when they cannot be
//! read, the period series wait rather than send delivered buckets again. `checkpoints.json`,
//! the one file of versions that kept a single set of checkpoints for every output, is read
//! (never advanced) until each destination has adopted or reset it.

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{StateDir, StateFileError};
use crate::files::Durability;
use crate::time::period::{move_forward, Checkpoints, Totals};

/// The target of a destination that writes to standard output.
pub const STDOUT: &str = "stdout";

/// Where a run's period buckets go. Each destination has checkpoints and running totals of its
/// own, so any number of them sharing a spec and a state directory each get every settled
/// bucket once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Names its files: `<kind>-<name>`, `<kind>-stdout`, or `<kind>-` and 12 hex digits of a
    /// hash of the kind and the target.
    pub id: String,
    /// For people: the kind and the target (`otlp http://collector:4318/v1/metrics`); empty
    /// for one that `state reset` or `state adopt` named before it ran.
    #[serde(default)]
    pub describe: String,
}

impl Destination {
    /// The destination of `kind` (the format, or `serve`) writing to `target` ([`STDOUT`], a
    /// file's absolute path, a URL without user information, query or fragment, a listen
    /// address), or the one the spec names `name`. Nothing secret goes in: a header value
    /// never, and the target only through a hash in the id.
    pub fn new(kind: &str, target: &str, name: Option<&str>) -> Destination {
        let id = match name {
            Some(n) => format!("{kind}-{n}"),
            None if target == STDOUT => format!("{kind}-{STDOUT}"),
            None => {
                let digest = sha2::Sha256::digest(format!("{kind}\n{target}").as_bytes());
                format!("{kind}-{}", &crate::text::hex(&digest)[..12])
            }
        };
        Destination {
            id,
            describe: format!("{kind} {target}"),
        }
    }

    /// Whether `id` can name a destination, and so a file of the state directory.
    pub fn valid_id(id: &str) -> bool {
        id.len() <= 100
            && id.starts_with(|c: char| c.is_ascii_alphabetic())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    }
}

/// A destination's checkpoint file; without `destination`, the one file of earlier versions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// `checkpoints.json` was adopted or reset for this destination: it is not read for it
    /// again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub old_file_settled: bool,
    /// Series id -> end (ms) of the last bucket delivered.
    pub series: Checkpoints,
    #[serde(default)]
    pub totals: Totals,
}

/// Whether the Cloud Eye running total `total_id` (`<checkpoint>/<ids>`) lives under the
/// checkpoint `checkpoint`.
fn under(total_id: &str, checkpoint: &str) -> bool {
    total_id
        .strip_prefix(checkpoint)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether the series id `id` is `name`, or a series of the query `name`: ids are
/// `<region>/<query>/...` for ShowStatistics series and `<region>/cloud_eye/<query>` for Cloud
/// Eye queries.
pub fn series_matches(id: &str, name: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    let query = match parts.get(1) {
        Some(&"cloud_eye") => parts.get(2),
        other => other,
    };
    id == name || query == Some(&name)
}

impl CheckpointFile {
    /// This file with `updates` recorded, and with them the running totals they account for
    /// (replaced in the same write: a counter never counts a bucket its checkpoint does not).
    /// A checkpoint never moves back: a bucket delivered is never delivered, nor counted, again.
    pub fn advanced(&self, updates: &Checkpoints, totals: &Totals) -> CheckpointFile {
        let mut file = self.clone();
        for (id, end) in updates {
            move_forward(&mut file.series, id, *end);
        }
        for (id, t) in &totals.series {
            if updates.contains_key(id) {
                file.totals.series.insert(id.clone(), t.clone());
            }
        }
        for (id, t) in &totals.cloud_eye {
            if updates.keys().any(|cp| under(id, cp)) {
                file.totals.cloud_eye.insert(id.clone(), t.clone());
            }
        }
        file
    }

    /// Removes the series `matches` selects, and their running totals (a rewound series counts
    /// from its new first bucket: its counter resets); returns their ids.
    pub fn remove(&mut self, matches: impl Fn(&str) -> bool) -> Vec<String> {
        let removed: Vec<String> = self
            .series
            .keys()
            .filter(|id| matches(id))
            .cloned()
            .collect();
        self.series.retain(|id, _| !matches(id));
        self.totals.series.retain(|id, _| !matches(id));
        self.totals
            .cloud_eye
            .retain(|id, _| !removed.iter().any(|r| under(id, r)) && !matches(id));
        removed
    }

    /// Takes the series of `old` this file lacks, with their running totals, and settles the
    /// old file for this destination; returns how many were taken.
    pub fn adopt(&mut self, old: &CheckpointFile) -> usize {
        let taken: Vec<(&String, &i64)> = old
            .series
            .iter()
            .filter(|(id, _)| !self.series.contains_key(*id))
            .collect();
        for (id, end) in &taken {
            self.series.insert((*id).clone(), **end);
            if let Some(t) = old.totals.series.get(*id) {
                self.totals.series.insert((*id).clone(), t.clone());
            }
            for (m, t) in old.totals.cloud_eye.iter().filter(|(m, _)| under(m, id)) {
                self.totals.cloud_eye.insert(m.clone(), t.clone());
            }
        }
        self.old_file_settled = true;
        taken.len()
    }
}

/// A destination's new checkpoint file, written and synced under a temporary name before the
/// output goes out, so that a full or read-only state directory is known before any bucket
/// is sent: [`PreparedCheckpoints::commit`] renames it into place once the output was
/// delivered; dropped, it is removed.
pub struct PreparedCheckpoints {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl PreparedCheckpoints {
    pub fn commit(self) -> std::io::Result<()> {
        let dir = self.path.parent().map(PathBuf::from);
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        // The rename reaches the disk with its directory.
        if let Some(dir) = dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Why `state reset` or `state adopt` could not change the checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "another run holds the period-mode lock of destination {0}; try again once it has finished"
    )]
    Busy(String),
    #[error("no destination `{id}` in this state directory (there are: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownDestination { id: String, known: Vec<String> },
    #[error("no checkpoint matches `{0}`; see `maas-usage state show`")]
    NoMatch(String),
    #[error("there is no {OLD_FILE} to adopt in this state directory")]
    NoOldFile,
    #[error(transparent)]
    File(#[from] StateFileError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl CheckpointError {
    /// The user named something that is not there (exit 2), rather than the directory failing.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            CheckpointError::UnknownDestination { .. }
                | CheckpointError::NoMatch(_)
                | CheckpointError::NoOldFile
        )
    }
}

fn file_of(id: &str) -> String {
    format!("checkpoints-{id}.json")
}

impl StateDir {
    /// A destination's checkpoints, or why they cannot be read. A file that is there but not
    /// understood is an error too, unlike other state files: read as empty, it would send every
    /// delivered bucket of the backfill again.
    pub fn checkpoints_of(&self, id: &str) -> Result<Option<CheckpointFile>, StateFileError> {
        self.read_json_strict(&file_of(id))
    }

    /// `checkpoints.json`, the file of versions that kept one set of checkpoints for every
    /// output, if it is there.
    pub fn old_checkpoints(&self) -> Result<Option<CheckpointFile>, StateFileError> {
        self.read_json_strict(OLD_FILE)
    }

    /// Every destination with a checkpoint file, by id, with what it holds (or why it cannot
    /// be read).
    pub fn destinations(&self) -> Vec<(String, Result<Option<CheckpointFile>, StateFileError>)> {
        let mut ids: Vec<String> = fs::read_dir(self.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_prefix("checkpoints-")?.strip_suffix(".json")?;
                Destination::valid_id(id).then(|| id.to_string())
            })
            .collect();
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let file = self.checkpoints_of(&id);
                (id, file)
            })
            .collect()
    }

    /// The lock a period-mode run holds from reading a destination's checkpoints to committing
    /// them, so that overlapping runs never emit the same bucket twice to it. `Ok(None)`:
    /// another run holds it past `deadline`, or `stop` said to give up.
    pub fn period_lock(
        &self,
        id: &str,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> std::io::Result<Option<File>> {
        self.lock_until(&format!("period-{id}.lock"), deadline, stop)
    }

    /// Writes `file`, the destination `id`'s next checkpoints, under a temporary name, synced:
    /// an error here means the commit could not be written, and nothing should go out.
    /// Temporary files of this destination left by a run that died between delivery and
    /// commit are removed (the caller holds the destination's period lock: none is in use).
    pub fn prepare_checkpoints(
        &self,
        id: &str,
        file: &CheckpointFile,
    ) -> std::io::Result<PreparedCheckpoints> {
        // `~` is in no id: no other destination's temporary file has this prefix.
        let prefix = format!(".{}~", file_of(id));
        for e in fs::read_dir(self.path())?.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
        let path = self.path().join(file_of(id));
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return Err(std::io::Error::other(format!(
                "{} is a directory; it is not replaced",
                path.display()
            )));
        }
        let bytes = serde_json::to_vec(file).map_err(std::io::Error::other)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(self.path())?;
        tmp.write_all(&bytes)?;
        tmp.flush()?;
        tmp.as_file().sync_all()?;
        Ok(PreparedCheckpoints { tmp, path })
    }

    /// The destination `id`'s period lock for `state reset` and `state adopt`, waited for a
    /// minute at most.
    fn lock_destination(&self, id: &str) -> Result<File, CheckpointError> {
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        self.period_lock(id, deadline, &|| false)?
            .ok_or_else(|| CheckpointError::Busy(id.to_string()))
    }

    /// `state reset`: forgets the checkpoints (and running totals) of `series` (a query name
    /// or a full series id) in `destination`, or of every series (`None`) or every destination
    /// (`None`), so that their buckets are sent again from the backfill on. Resetting a whole
    /// destination also settles `checkpoints.json` for it (it starts from its backfill).
    /// Returns one line per change, for people.
    pub fn reset_checkpoints(
        &self,
        destination: Option<&str>,
        series: Option<&str>,
    ) -> Result<Vec<String>, CheckpointError> {
        let known: Vec<String> = self.destinations().into_iter().map(|d| d.0).collect();
        let old_exists = fs::symlink_metadata(self.path().join(OLD_FILE)).is_ok();
        let targets = match destination {
            // A destination an old file holds back may have no file yet: the run named it.
            Some(id)
                if known.iter().any(|k| k == id) || (old_exists && Destination::valid_id(id)) =>
            {
                vec![id.to_string()]
            }
            Some(id) => {
                return Err(CheckpointError::UnknownDestination {
                    id: id.to_string(),
                    known,
                })
            }
            None => known,
        };
        let mut done = Vec::new();
        for id in &targets {
            let _lock = self.lock_destination(id)?;
            match (destination, series) {
                (None, None) => {
                    fs::remove_file(self.path().join(file_of(id)))?;
                    done.push(format!("reset destination {id}"));
                }
                (Some(_), None) => {
                    // Whatever it held (even a file that cannot be read) is forgotten.
                    let mut file = self.checkpoints_of(id).ok().flatten().unwrap_or_default();
                    let n = file.remove(|_| true).len();
                    file.old_file_settled = true;
                    file.destination.get_or_insert_with(|| Destination {
                        id: id.clone(),
                        describe: String::new(),
                    });
                    self.write_json(&file_of(id), &file, Durability::Synced)?;
                    done.push(format!(
                        "reset destination {id} ({n} series): its next run starts from the backfill"
                    ));
                }
                (_, Some(name)) => {
                    let Some(mut file) = self.checkpoints_of(id)? else {
                        continue;
                    };
                    for s in file.remove(|s| series_matches(s, name)) {
                        done.push(format!("reset {s} ({id})"));
                    }
                    self.write_json(&file_of(id), &file, Durability::Synced)?;
                }
            }
        }
        if destination.is_none() && old_exists {
            let _lock = self.lock(OLD_LOCK)?;
            match series {
                None => {
                    fs::remove_file(self.path().join(OLD_FILE))?;
                    done.push(format!("reset {OLD_FILE}"));
                }
                Some(name) => {
                    if let Some(mut old) = self.old_checkpoints()? {
                        for s in old.remove(|s| series_matches(s, name)) {
                            done.push(format!("reset {s} ({OLD_FILE})"));
                        }
                        self.write_json(OLD_FILE, &old, Durability::Synced)?;
                    }
                }
            }
        }
        match series {
            Some(name) if done.is_empty() => Err(CheckpointError::NoMatch(name.to_string())),
            _ => Ok(done),
        }
    }

    /// `state adopt`: the destination `id` goes on from the checkpoints of `checkpoints.json`
    /// (those of series it has none of its own for); returns how many it took.
    pub fn adopt_old_checkpoints(&self, id: &str) -> Result<usize, CheckpointError> {
        if !Destination::valid_id(id) {
            return Err(CheckpointError::UnknownDestination {
                id: id.to_string(),
                known: self.destinations().into_iter().map(|d| d.0).collect(),
            });
        }
        let _lock = self.lock_destination(id)?;
        let old = self.old_checkpoints()?.ok_or(CheckpointError::NoOldFile)?;
        let mut file = self.checkpoints_of(id)?.unwrap_or_else(|| CheckpointFile {
            destination: Some(Destination {
                id: id.to_string(),
                describe: String::new(),
            }),
            ..CheckpointFile::default()
        });
        let n = file.adopt(&old);
        self.write_json(&file_of(id), &file, Durability::Synced)?;
        Ok(n)
    }
}

/// The one checkpoint file of earlier versions, and its lock.
pub const OLD_FILE: &str = "checkpoints.json";
const OLD_LOCK: &str = "checkpoints.lock";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::tmp;
    use std::time::Duration;

    #[test]
    fn a_locked_period_lock_is_waited_for_until_the_deadline() {
        let (_t, p) = tmp();
        let d = StateDir::open(&p).unwrap();
        let never = || false;
        let held = d.period_lock("x", Instant::now(), &never).unwrap();
        assert!(held.is_some());
        // flock is per open file: a second open in the same process conflicts like another
        // process would.
        let other = d
            .period_lock("x", Instant::now() + Duration::from_millis(100), &never)
            .unwrap();
        assert!(other.is_none());
        assert!(
            d.period_lock("y", Instant::now(), &never)
                .unwrap()
                .is_some(),
            "another destination's lock is its own"
        );
        // A stop gives up the wait at once, however far the deadline.
        let waited = Instant::now();
        let stopped = d
            .period_lock("x", Instant::now() + Duration::from_secs(600), &|| true)
            .unwrap();
        assert!(stopped.is_none() && waited.elapsed() < Duration::from_secs(60));
        drop(held);
        assert!(d
            .period_lock("x", Instant::now(), &never)
            .unwrap()
            .is_some());
    }

    #[test]
    fn checkpoints_never_move_back() {
        let f = CheckpointFile::default()
            .advanced(&Checkpoints::from([("a".into(), 500)]), &Totals::default());
        let f = f.advanced(&Checkpoints::from([("a".into(), 400)]), &Totals::default());
        assert_eq!(f.series["a"], 500, "never back");
        // Not from the future either: a bucket delivered stays delivered.
        let f = f.advanced(
            &Checkpoints::from([("a".into(), 3_000)]),
            &Totals::default(),
        );
        let f = f.advanced(&Checkpoints::from([("a".into(), 900)]), &Totals::default());
        assert_eq!(f.series["a"], 3_000);
    }

    #[test]
    fn destinations_are_named_without_their_secrets() {
        let d = Destination::new("otlp", "http://collector:4318/v1/metrics", None);
        assert!(d.id.starts_with("otlp-") && d.id.len() == "otlp-".len() + 12);
        assert_eq!(d.describe, "otlp http://collector:4318/v1/metrics");
        assert_ne!(
            d.id,
            Destination::new("otlp", "http://other:4318/v1/metrics", None).id
        );
        assert_ne!(
            d.id,
            Destination::new("otlp-json", "http://collector:4318/v1/metrics", None).id
        );
        assert_eq!(Destination::new("influx", STDOUT, None).id, "influx-stdout");
        assert_eq!(
            Destination::new("otlp", "http://x", Some("finops")).id,
            "otlp-finops"
        );
        assert!(Destination::valid_id(&d.id));
        for bad in ["", "../x", "a/b", "-x", "x y"] {
            assert!(!Destination::valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_prepared_commit_is_in_place_only_once_committed() {
        let (_t, p) = tmp();
        let d = StateDir::open(&p).unwrap();
        let file = CheckpointFile::default()
            .advanced(&Checkpoints::from([("a".into(), 1)]), &Totals::default());
        let prepared = d.prepare_checkpoints("x", &file).unwrap();
        assert_eq!(d.checkpoints_of("x").unwrap(), None);
        drop(prepared);
        assert_eq!(
            d.checkpoints_of("x").unwrap(),
            None,
            "dropped, not committed"
        );
        assert_eq!(fs::read_dir(&p).unwrap().count(), 0, "and removed");
        // What a run killed between delivery and commit left behind goes with the next
        // prepare of its destination, and only of its destination.
        fs::write(p.join(".checkpoints-x.json~left.tmp"), "{}").unwrap();
        fs::write(p.join(".checkpoints-x.json-y.json~busy.tmp"), "{}").unwrap();
        d.prepare_checkpoints("x", &file).unwrap().commit().unwrap();
        assert_eq!(d.checkpoints_of("x").unwrap(), Some(file));
        assert!(!p.join(".checkpoints-x.json~left.tmp").exists());
        assert!(p.join(".checkpoints-x.json-y.json~busy.tmp").exists());
    }

    #[test]
    fn unreadable_checkpoints_are_an_error_and_are_never_overwritten() {
        let (_t, p) = tmp();
        let d = StateDir::open(&p).unwrap();
        fs::create_dir(p.join(file_of("x"))).unwrap();
        let e = d.checkpoints_of("x").unwrap_err().to_string();
        assert!(
            e.contains(&file_of("x")) && e.contains("a directory"),
            "{e}"
        );
        assert!(d
            .prepare_checkpoints("x", &CheckpointFile::default())
            .is_err());
        assert!(p.join(file_of("x")).is_dir());
    }

    #[test]
    fn adoption_takes_what_the_destination_lacks_with_its_totals() {
        let mut old = CheckpointFile::default();
        old.series.insert("r/q/a".into(), 10);
        old.series.insert("r/cloud_eye/m".into(), 20);
        old.totals.cloud_eye.insert(
            "r/cloud_eye/m/x".into(),
            crate::time::period::CloudEyeRunning {
                key: crate::domain::cloud_eye::CloudEyeKey {
                    query: "m".into(),
                    model: crate::domain::cloud_eye::Named {
                        id: "x".into(),
                        name: "x".into(),
                    },
                    api_key: None,
                    key_group: None,
                },
                start_ms: 0,
                through_ms: 20,
                counts: Default::default(),
                latest: Default::default(),
                cost: None,
            },
        );
        let mut own = CheckpointFile::default();
        own.series.insert("r/q/a".into(), 30);
        assert_eq!(own.adopt(&old), 1);
        assert_eq!(own.series["r/q/a"], 30, "its own stays");
        assert_eq!(own.series["r/cloud_eye/m"], 20);
        assert!(own.totals.cloud_eye.contains_key("r/cloud_eye/m/x"));
        assert!(own.old_file_settled);
        assert_eq!(
            own.remove(|id| series_matches(id, "m")),
            vec!["r/cloud_eye/m"]
        );
        assert!(own.totals.cloud_eye.is_empty());
    }
}
