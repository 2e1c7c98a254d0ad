//! Housekeeping: request-budget files, their locks and credential probe locks that nobody used
//! for a day are removed, so the state directory does not keep one of each for every key it
//! has seen (a key rotated away, temporary keys of old).

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, SystemTime};

use super::StateDir;
use crate::log;

/// How long a budget or probe-lock file may go unused before it is removed.
pub const UNUSED_FOR: Duration = Duration::from_secs(24 * 3600);

/// The stem of a file housekeeping may remove: `budget-*.json|lock`, `auth-probe-*.lock`.
fn removable(name: &str) -> Option<&str> {
    match name.rsplit_once('.') {
        Some((stem, "json")) if stem.starts_with("budget-") => Some(stem),
        Some((stem, "lock")) if stem.starts_with("budget-") || stem.starts_with("auth-probe-") => {
            Some(stem)
        }
        _ => None,
    }
}

impl StateDir {
    /// Removes the budget and probe-lock files of every key whose files were all left
    /// untouched for [`UNUSED_FOR`] (a budget file is rewritten at every call, a probe lock
    /// touched at every probe). A lock another process holds is left alone; the others go while
    /// this process holds them.
    pub fn remove_unused(&self) {
        let Ok(entries) = fs::read_dir(self.path()) else {
            return;
        };
        let now = SystemTime::now();
        // stem -> every file of it was left unused for a day
        let mut stems: BTreeMap<String, bool> = BTreeMap::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = removable(&name) else {
                continue;
            };
            let unused = e.metadata().ok().filter(|m| m.is_file()).is_some_and(|m| {
                m.modified()
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age > UNUSED_FOR)
            });
            *stems.entry(stem.to_string()).or_insert(true) &= unused;
        }
        let mut removed = 0;
        for (stem, _) in stems.into_iter().filter(|(_, unused)| *unused) {
            let lock_name = format!("{stem}.lock");
            // Held while the files go: a process using them now keeps them.
            let Ok(lock) = self.lock_file(&lock_name) else {
                continue;
            };
            if lock.try_lock().is_err() {
                continue;
            }
            for name in [format!("{stem}.json"), lock_name] {
                if fs::remove_file(self.path().join(&name)).is_ok() {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            log::debug!(
                "removed {removed} budget and lock file(s) of {} unused for a day",
                self.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_budget_files_and_probe_locks_are_removable() {
        assert_eq!(removable("budget-ab.json"), Some("budget-ab"));
        assert_eq!(removable("budget-ces-ab.lock"), Some("budget-ces-ab"));
        assert_eq!(removable("auth-probe-ab.lock"), Some("auth-probe-ab"));
        for kept in [
            "auth.json",
            "auth.lock",
            "auth-probe-ab.json",
            "checkpoints.json",
            "period.lock",
            // A destination's checkpoints and period lock, whatever its name.
            "checkpoints-otlp-1a2b3c4d5e6f.json",
            "period-otlp-1a2b3c4d5e6f.lock",
            "checkpoints-influx-budget-x.json",
            "period-influx-budget-x.lock",
            ".checkpoints-influx-stdout.json~a1B2c3.tmp",
            "projects.json",
            "budget-ab.json.tmp",
        ] {
            assert_eq!(removable(kept), None, "{kept}");
        }
    }
}
