//! Period-mode checkpoints (series id -> end of the last bucket delivered) and the running
//! totals they account for, in the state directory, with the lock a period-mode run holds
//! from reading them to committing them.
//!
//! The checkpoints are the exception to "a corrupt state file is ignored": when they cannot be
//! read, the period series wait rather than send delivered buckets again.

use std::fs::File;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{StateDir, StateFileError};
use crate::files::Durability;
use crate::time::period::{Checkpoints, Totals};

impl StateDir {
    /// The period-mode checkpoints and the running totals they account for, or why the file
    /// cannot be read (then emitting period buckets would send delivered ones again).
    ///
    /// A checkpoint file that is there but not understood is an error too, unlike other state
    /// files: read as empty, it would send every delivered bucket of the backfill again.
    pub fn checkpoint_state(&self) -> Result<(Checkpoints, Totals), StateFileError> {
        Ok(self
            .read_checkpoints()?
            .map(|f| (f.series, f.totals))
            .unwrap_or_default())
    }

    fn read_checkpoints(&self) -> Result<Option<CheckpointFile>, StateFileError> {
        self.read_json_strict(CHECKPOINT_FILE)
    }

    /// Period-mode checkpoints (series id -> end of the last delivered bucket).
    pub fn checkpoints(&self) -> Checkpoints {
        self.read_json::<CheckpointFile>(CHECKPOINT_FILE)
            .map(|f| f.series)
            .unwrap_or_default()
    }

    /// Period series' running totals (the counters' values), kept with the checkpoints.
    pub fn totals(&self) -> Totals {
        self.read_json::<CheckpointFile>(CHECKPOINT_FILE)
            .map(|f| f.totals)
            .unwrap_or_default()
    }

    /// The lock a period-mode run holds from reading the checkpoints to committing them, so
    /// that overlapping runs never emit the same bucket twice. `Ok(None)`: another run holds
    /// it past `deadline`, or `stop` said to give up.
    pub fn period_lock(
        &self,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> std::io::Result<Option<File>> {
        self.lock_until(PERIOD_LOCK, deadline, stop)
    }

    /// Moves checkpoints forward, never back (another process may have gone further, or the
    /// clock went back: a bucket delivered is never delivered, nor counted, again), under the
    /// lock, atomically and synced.
    /// With the checkpoints, the running totals they account for are replaced in the same
    /// write: a counter never counts a bucket its checkpoint does not.
    pub fn advance_checkpoints(
        &self,
        updates: &Checkpoints,
        totals: &Totals,
    ) -> std::io::Result<()> {
        let _guard = self.lock(CHECKPOINT_LOCK)?;
        // A file that cannot be read (or understood) is not replaced: it may hold others'
        // checkpoints.
        let mut file: CheckpointFile = self
            .read_checkpoints()
            .map_err(std::io::Error::other)?
            .unwrap_or_default();
        for (id, end) in updates {
            let e = file.series.entry(id.clone()).or_insert(*end);
            *e = (*e).max(*end);
        }
        for (id, t) in &totals.series {
            if updates.contains_key(id) {
                file.totals.series.insert(id.clone(), t.clone());
            }
        }
        // A Cloud Eye series' totals live under its query's checkpoint (`<checkpoint>/<ids>`).
        let moved = |id: &str| {
            updates.keys().any(|cp| {
                id.strip_prefix(cp.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            })
        };
        for (id, t) in &totals.models {
            if moved(id) {
                file.totals.models.insert(id.clone(), t.clone());
            }
        }
        self.write_json(CHECKPOINT_FILE, &file, Durability::Synced)
    }

    /// Removes the checkpoints whose id is `name` or whose query is `name` (all with `None`);
    /// returns the ids removed.
    pub fn reset_checkpoints(&self, name: Option<&str>) -> std::io::Result<Vec<String>> {
        let _guard = self.lock(CHECKPOINT_LOCK)?;
        let mut file: CheckpointFile = self
            .read_json_checked(CHECKPOINT_FILE)
            .map_err(std::io::Error::other)?
            .unwrap_or_default();
        // `<region>/<query>/...` for ShowStatistics series, `<region>/cloud_eye/<query>` for
        // Cloud Eye queries (whose totals are under `<region>/cloud_eye/<query>/<ids>`).
        let matches = |id: &str| {
            let parts: Vec<&str> = id.split('/').collect();
            let query = match parts.get(1) {
                Some(&"cloud_eye") => parts.get(2),
                other => other,
            };
            match name {
                None => true,
                Some(n) => id == n || query == Some(&n),
            }
        };
        let removed: Vec<String> = file
            .series
            .keys()
            .filter(|id| matches(id))
            .cloned()
            .collect();
        file.series.retain(|id, _| !matches(id));
        // A rewound series counts from its new first bucket: its counter resets.
        file.totals.series.retain(|id, _| !matches(id));
        file.totals.models.retain(|id, _| {
            !removed.iter().any(|r| id.starts_with(&format!("{r}/"))) && !matches(id)
        });
        self.write_json(CHECKPOINT_FILE, &file, Durability::Synced)?;
        Ok(removed)
    }
}

/// The checkpoint file's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CheckpointFile {
    series: Checkpoints,
    #[serde(default)]
    totals: Totals,
}

const CHECKPOINT_FILE: &str = "checkpoints.json";
const CHECKPOINT_LOCK: &str = "checkpoints.lock";
pub(super) const PERIOD_LOCK: &str = "period.lock";

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;
    use std::time::Duration;

    /// A fresh, not yet existing directory inside a temporary one that is removed on drop.
    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state");
        (t, p)
    }

    #[test]
    fn a_locked_period_lock_is_waited_for_until_the_deadline() {
        let (_t, p) = tmp();
        let d = StateDir::open(&p).unwrap();
        let never = || false;
        let held = d.period_lock(Instant::now(), &never).unwrap();
        assert!(held.is_some());
        // flock is per open file: a second open in the same process conflicts like another
        // process would.
        let other = d
            .period_lock(Instant::now() + Duration::from_millis(100), &never)
            .unwrap();
        assert!(other.is_none());
        // A stop gives up the wait at once, however far the deadline.
        let waited = Instant::now();
        let stopped = d
            .period_lock(Instant::now() + Duration::from_secs(600), &|| true)
            .unwrap();
        assert!(stopped.is_none() && waited.elapsed() < Duration::from_secs(60));
        drop(held);
        assert!(d.period_lock(Instant::now(), &never).unwrap().is_some());
    }

    #[test]
    fn checkpoints_never_move_back() {
        let (_t, p) = tmp();
        let d = StateDir::open(&p).unwrap();
        let advance = |end: i64| {
            d.advance_checkpoints(&Checkpoints::from([("a".into(), end)]), &Totals::default())
                .unwrap()
        };
        advance(500);
        advance(400);
        assert_eq!(d.checkpoints()["a"], 500, "never back");
        // Not from a checkpoint later than now either (the clock went back): a bucket
        // delivered stays delivered.
        advance(3_000_000);
        advance(900_000);
        assert_eq!(d.checkpoints()["a"], 3_000_000);
    }

    #[test]
    fn unreadable_checkpoints_are_an_error_and_are_never_overwritten() {
        let (_t, p) = tmp();
        let d = StateDir::open(&p).unwrap();
        fs::create_dir(p.join(CHECKPOINT_FILE)).unwrap();
        let e = d.checkpoint_state().unwrap_err().to_string();
        assert!(
            e.contains(CHECKPOINT_FILE) && e.contains("a directory"),
            "{e}"
        );
        assert!(d
            .advance_checkpoints(&Checkpoints::from([("a".into(), 1)]), &Totals::default())
            .is_err());
        assert!(p.join(CHECKPOINT_FILE).is_dir());
    }
}
