//! The state directory: what several processes sharing one access key must agree on.
//!
//! - the request budget per access key (keyed by a hash of the AK, never the AK), a sliding
//!   window of call times kept under a file lock so N concurrent runs together stay under
//!   `requests_per_minute`;
//! - the discovered project id per (AK hash, region), reused for 24 hours;
//! - period-mode checkpoints.
//!
//! Writes are atomic (temporary file + rename). A corrupt or unreadable file is ignored with a
//! warning: state makes runs cheaper and politer, never possible or impossible.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::budget::{wait_for_slot, Budget, BudgetExhausted, WindowLog};
use crate::cloud::sign::sha256_hex;
use crate::log;
use crate::period::{CheckpointFile, Checkpoints, CHECKPOINT_FILE, CHECKPOINT_LOCK};

/// How long a discovered project id is trusted.
pub const PROJECT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The default location: `$XDG_STATE_HOME/maas-usage`, else `~/.local/state/maas-usage`.
pub fn default_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let Some(x) = nonempty("XDG_STATE_HOME") {
        return Some(PathBuf::from(x).join("maas-usage"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".local/state/maas-usage"))
}

/// A short, stable, one-way key for an access key.
pub fn ak_key(ak: &str) -> String {
    sha256_hex(ak.as_bytes())[..16].to_string()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Creates the directory (mode 0700) if needed.
    pub fn open(path: &Path) -> Result<StateDir, String> {
        fs::create_dir_all(path)
            .map_err(|e| format!("cannot create the state directory {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        }
        Ok(StateDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads a JSON state file; missing is `None`, corrupt is `None` with a warning.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let p = self.path.join(name);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn(&format!("ignoring state file {}: {e}", p.display()));
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                log::warn(&format!(
                    "ignoring corrupt state file {} ({e}); it will be rewritten",
                    p.display()
                ));
                None
            }
        }
    }
}

/// How hard a state write tries to survive a power cut (a crash of the process is survived
/// either way: the rename is atomic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Before every API call: a lost budget file only means a slower next minute.
    Cheap,
    /// Checkpoints: losing one would re-send buckets, so the data reach the disk first.
    Synced,
}

impl StateDir {
    /// Writes a JSON state file atomically; failures are warnings.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T, durability: Durability) -> bool {
        let p = self.path.join(name);
        let tmp = self
            .path
            .join(format!(".{name}.{}.tmp", std::process::id()));
        let result = serde_json::to_vec(value)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let mut f = File::create(&tmp)?;
                f.write_all(&bytes)?;
                if durability == Durability::Synced {
                    f.sync_all()?;
                }
                Ok(())
            })
            .and_then(|_| fs::rename(&tmp, &p));
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            log::warn(&format!("cannot write state file {}: {e}", p.display()));
            return false;
        }
        true
    }

    /// An exclusive lock held while the returned file lives.
    pub fn lock(&self, name: &str) -> std::io::Result<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.join(name))?;
        f.lock()?;
        Ok(f)
    }

    /// A project id discovered less than 24 hours ago for this AK and region.
    pub fn cached_project(&self, ak_key: &str, region: &str) -> Option<String> {
        let projects: BTreeMap<String, CachedProject> = self.read_json(PROJECTS_FILE)?;
        let p = projects.get(&format!("{ak_key}/{region}"))?;
        let age = now_ms().saturating_sub(p.discovered_at_ms);
        (age < PROJECT_TTL.as_millis() as u64 && !p.id.is_empty()).then(|| p.id.clone())
    }

    pub fn store_project(&self, ak_key: &str, region: &str, id: &str) {
        let _guard = self.lock(PROJECTS_LOCK);
        let mut projects: BTreeMap<String, CachedProject> =
            self.read_json(PROJECTS_FILE).unwrap_or_default();
        projects.insert(
            format!("{ak_key}/{region}"),
            CachedProject {
                id: id.to_string(),
                discovered_at_ms: now_ms(),
            },
        );
        self.write_json(PROJECTS_FILE, &projects, Durability::Cheap);
    }
}

impl StateDir {
    /// Period-mode checkpoints (series id -> end of the last delivered bucket).
    pub fn checkpoints(&self) -> Checkpoints {
        self.read_json::<CheckpointFile>(CHECKPOINT_FILE)
            .map(|f| f.series)
            .unwrap_or_default()
    }

    /// Moves checkpoints forward (never back: another process may have gone further), under
    /// the lock, atomically.
    pub fn advance_checkpoints(&self, updates: &Checkpoints) -> bool {
        let _guard = self.lock(CHECKPOINT_LOCK);
        let mut file: CheckpointFile = self.read_json(CHECKPOINT_FILE).unwrap_or_default();
        for (id, end) in updates {
            let e = file.series.entry(id.clone()).or_insert(*end);
            *e = (*e).max(*end);
        }
        self.write_json(CHECKPOINT_FILE, &file, Durability::Synced)
    }

    /// Removes the checkpoints whose id is `name` or whose query is `name` (all with `None`);
    /// returns the ids removed.
    pub fn reset_checkpoints(&self, name: Option<&str>) -> Vec<String> {
        let _guard = self.lock(CHECKPOINT_LOCK);
        let mut file: CheckpointFile = self.read_json(CHECKPOINT_FILE).unwrap_or_default();
        let matches = |id: &str| match name {
            None => true,
            Some(n) => id == n || id.split('/').nth(1) == Some(n),
        };
        let removed: Vec<String> = file
            .series
            .keys()
            .filter(|id| matches(id))
            .cloned()
            .collect();
        file.series.retain(|id, _| !matches(id));
        self.write_json(CHECKPOINT_FILE, &file, Durability::Synced);
        removed
    }
}

const PROJECTS_FILE: &str = "projects.json";
const PROJECTS_LOCK: &str = "projects.lock";

#[derive(Serialize, Deserialize, Debug, Clone)]
struct CachedProject {
    id: String,
    discovered_at_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct BudgetFile {
    /// Wall-clock ms of the calls in the current window.
    stamps: Vec<u64>,
}

/// The request budget of one access key, shared by every process using the state directory.
pub struct SharedBudget {
    dir: StateDir,
    file: String,
    lock_file: String,
    limit: u32,
    window: Duration,
    /// Threads of this process queue here before taking the file lock.
    local: Mutex<()>,
}

impl SharedBudget {
    pub fn new(dir: StateDir, ak_key: &str, limit: u32, window: Duration) -> Self {
        SharedBudget {
            dir,
            file: format!("budget-{ak_key}.json"),
            lock_file: format!("budget-{ak_key}.lock"),
            limit,
            window,
            local: Mutex::new(()),
        }
    }

    /// One attempt under the lock: Ok, or how long to wait.
    fn try_take(&self) -> Result<(), u64> {
        let _local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let _lock = match self.dir.lock(&self.lock_file) {
            Ok(f) => f,
            Err(e) => {
                // Without the lock there is no sharing; do not block the run over it.
                log::debug(&format!(
                    "state lock unavailable ({e}); the budget is not shared this time"
                ));
                return Ok(());
            }
        };
        let now = now_ms();
        let window_ms = self.window.as_millis() as u64;
        let file: BudgetFile = self.dir.read_json(&self.file).unwrap_or_default();
        // Stamps from the future (a clock that went back) would block forever: drop them.
        let mut log = WindowLog::from_stamps(file.stamps.into_iter().filter(|&s| s <= now + 1000));
        let r = log.try_take(now, self.limit, window_ms);
        if r.is_ok() {
            let stamps: Vec<u64> = log.stamps().filter(|&s| s + window_ms > now).collect();
            self.dir
                .write_json(&self.file, &BudgetFile { stamps }, Durability::Cheap);
        }
        r
    }
}

impl Budget for SharedBudget {
    fn available(&self, within: Duration) -> usize {
        let file: BudgetFile = self.dir.read_json(&self.file).unwrap_or_default();
        let log = WindowLog::from_stamps(file.stamps);
        log.free_by(
            now_ms() + within.as_millis() as u64,
            self.limit,
            self.window.as_millis() as u64,
        )
    }

    fn acquire(&self, deadline: Instant) -> Result<(), BudgetExhausted> {
        wait_for_slot(deadline, self.limit, self.window, || self.try_take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "maas-usage-state-{}-{}",
            std::process::id(),
            now_ms()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn default_dir_follows_xdg_then_home() {
        let env = |k: &str| match k {
            "XDG_STATE_HOME" => Some("/x".to_string()),
            "HOME" => Some("/h".to_string()),
            _ => None,
        };
        assert_eq!(default_dir(&env), Some(PathBuf::from("/x/maas-usage")));
        let env = |k: &str| (k == "HOME").then(|| "/h".to_string());
        assert_eq!(
            default_dir(&env),
            Some(PathBuf::from("/h/.local/state/maas-usage"))
        );
        assert_eq!(default_dir(&|_| None), None);
    }

    #[test]
    fn ak_key_is_one_way_and_stable() {
        let k = ak_key("AKCANARY");
        assert_eq!(k.len(), 16);
        assert_eq!(k, ak_key("AKCANARY"));
        assert!(!k.contains("CANARY"));
    }

    #[test]
    fn directory_is_private_and_projects_are_cached() {
        use std::os::unix::fs::PermissionsExt;
        let p = tmp();
        let d = StateDir::open(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(d.cached_project("k", "r"), None);
        d.store_project("k", "r", "0123");
        assert_eq!(d.cached_project("k", "r").as_deref(), Some("0123"));
        assert_eq!(d.cached_project("k", "other"), None);
        fs::write(p.join(PROJECTS_FILE), "{not json").unwrap();
        assert_eq!(d.cached_project("k", "r"), None, "corrupt is ignored");
        d.store_project("k", "r", "0456");
        assert_eq!(
            d.cached_project("k", "r").as_deref(),
            Some("0456"),
            "and rewritten"
        );
    }

    #[test]
    fn shared_budget_counts_across_instances() {
        let p = tmp();
        let a = SharedBudget::new(StateDir::open(&p).unwrap(), "k", 3, Duration::from_secs(60));
        let b = SharedBudget::new(StateDir::open(&p).unwrap(), "k", 3, Duration::from_secs(60));
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(a.acquire(soon).is_ok());
        assert!(b.acquire(soon).is_ok());
        assert!(a.acquire(soon).is_ok());
        assert!(
            b.acquire(soon).is_err(),
            "the fourth call in the window must wait past the deadline"
        );
        fs::write(p.join("budget-k.json"), "garbage").unwrap();
        assert!(a.acquire(soon).is_ok(), "a corrupt budget file is ignored");
    }
}
