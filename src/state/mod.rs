//! The state directory: what several processes sharing one access key must agree on, and
//! the state interface it implements first (`store`: [`StateStore`], which collection, the
//! cloud and the runs see instead of the directory).
//!
//! - the request budget per IAM user or agency (keyed by a one-way id: `cloud::auth::
//!   principal_id`, never the AK), a sliding window of call times kept under a file lock so N
//!   concurrent runs together stay under `requests_per_minute`; when the directory cannot be
//!   used the budget falls back to one per process of the same size, never to none; budget
//!   files nobody used for a day are removed (`housekeeping`);
//! - the credential gate's records (`gate`; `runtime` when the directory cannot take them);
//! - the discovered project id per (principal, region), reused for 24 hours;
//! - period-mode checkpoints per destination (`checkpoints`), and the lock a run holds from
//!   reading a destination's checkpoints to committing them.
//!
//! Writes are atomic (`files::write_atomically`). A corrupt file is ignored with a warning:
//! state makes runs cheaper and politer, never possible or impossible. Files are read bounded
//! (regular files only, size-capped: never a FIFO, never /dev/zero), and lock files are opened
//! without following a symlink. The checkpoints and the credential gate's records are the
//! exceptions to "ignored": when the checkpoints cannot be read, the period series wait rather
//! than send delivered buckets again; when the gate's records cannot, no signed call is made.

pub mod checkpoints;
mod discovery;
pub mod fleet;
mod gate;
mod housekeeping;
mod runtime;
pub mod store;

pub use gate::GateFiles;
pub use runtime::RuntimeDir;
pub use store::{DirectoryStore, StateStore};

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::budget::{wait_for_slot, Budget, BudgetExhausted, WindowLog};
use crate::files::{self, Access, Durability, ReadFileError};
use crate::log;

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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
#[error("the state directory {path} cannot be used ({source})")]
pub struct StateError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The most a state file may hold: far more than thousands of series' checkpoints and totals.
pub const STATE_FILE_MAX: u64 = 16 * 1024 * 1024;

/// A state file that cannot be read safely (not a regular file, too large, unreadable), or,
/// where it matters (the checkpoints), cannot be understood.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the state file {}: {source}", path.display())]
pub struct StateFileError {
    pub path: PathBuf,
    #[source]
    pub source: StateFileProblem,
}

#[derive(Debug, thiserror::Error)]
pub enum StateFileProblem {
    #[error(transparent)]
    Read(#[from] ReadFileError),
    #[error("it is not the JSON this program writes ({0})")]
    Corrupt(String),
    /// The coordination engine could not say (or lost what it held).
    #[error("{0}")]
    Engine(String),
}

#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
    /// The files already warned about in this process: one warning each, however often read.
    warned: Arc<Mutex<BTreeSet<String>>>,
}

impl StateDir {
    /// Creates the directory (mode 0700) if needed and proves it writable. Warns when another
    /// user owns it or others may write to it (they could then forge checkpoints or budgets).
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        let fail = |source| StateError {
            path: path.to_path_buf(),
            source,
        };
        let existed = path.exists();
        fs::create_dir_all(path).map_err(fail)?;
        if !fs::metadata(path).map_err(fail)?.is_dir() {
            return Err(fail(std::io::Error::other("not a directory")));
        }
        // Proves the directory writable, and tells who this process is on disk.
        let probe = tempfile::Builder::new()
            .prefix(".maas-usage-probe-")
            .tempfile_in(path)
            .map_err(fail)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            if !existed {
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
            }
            if let (Ok(me), Ok(dir)) = (probe.as_file().metadata(), fs::metadata(path)) {
                if dir.uid() != me.uid() {
                    log::warn!(
                        "the state directory {} belongs to another user (uid {}); it should belong to the user maas-usage runs as",
                        path.display(),
                        dir.uid()
                    );
                } else if dir.permissions().mode() & 0o022 != 0 {
                    log::warn!(
                        "the state directory {} can be written by group or others (mode {:o}); run chmod 700 {}",
                        path.display(),
                        dir.permissions().mode() & 0o777,
                        path.display()
                    );
                }
            }
        }
        drop(probe);
        Ok(StateDir::at(path))
    }

    fn at(path: &Path) -> StateDir {
        StateDir {
            path: path.to_path_buf(),
            warned: Arc::default(),
        }
    }

    /// An existing directory, for reading only (`plan`): nothing is created or written.
    pub fn existing(path: &Path) -> Option<StateDir> {
        path.is_dir().then(|| StateDir::at(path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads a JSON state file, bounded (a regular file of at most [`STATE_FILE_MAX`] bytes);
    /// missing is `Ok(None)`; one that cannot be read safely, or is not JSON of `T`, is an
    /// error.
    fn read_json_strict<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateFileError> {
        let path = self.path.join(name);
        let problem = match files::read_regular(&path, STATE_FILE_MAX) {
            Err(ReadFileError::NotFound) => return Ok(None),
            Err(e) => StateFileProblem::Read(e),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(v) => return Ok(Some(v)),
                Err(e) => StateFileProblem::Corrupt(e.to_string()),
            },
        };
        Err(StateFileError {
            path,
            source: problem,
        })
    }

    /// As [`StateDir::read_json_strict`], but corrupt is `Ok(None)` with a warning (it will be
    /// rewritten).
    pub fn read_json_checked<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateFileError> {
        match self.read_json_strict(name) {
            Err(StateFileError {
                path,
                source: StateFileProblem::Corrupt(e),
            }) => {
                log::warn!(
                    "ignoring corrupt state file {} ({e}); it will be rewritten",
                    path.display()
                );
                Ok(None)
            }
            other => other,
        }
    }

    /// As [`StateDir::read_json_checked`], with a file that cannot be read `None` and a warning
    /// (once per file and process).
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.read_json_checked(name).unwrap_or_else(|e| {
            let first = self
                .warned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string());
            if first {
                log::warn!("{e}; it is ignored");
            }
            None
        })
    }

    /// Writes a JSON state file atomically, readable by the owner only.
    pub fn write_json<T: Serialize>(
        &self,
        name: &str,
        value: &T,
        durability: Durability,
    ) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        let path = self.path.join(name);
        // `write_atomically` writes into a device or FIFO in place: never a state file's.
        if fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file; it is not replaced",
                path.display()
            )));
        }
        files::write_atomically(&path, &bytes, durability, Access::Private)
    }

    /// Opens (creating) the lock file `name`: never through a symlink someone planted (which
    /// would create or lock a file elsewhere), never waiting on a FIFO, only a regular file.
    fn lock_file(&self, name: &str) -> std::io::Result<File> {
        let path = self.path.join(name);
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        }
        let refuse = |why: &str| std::io::Error::other(format!("{}: {why}", path.display()));
        let file = options.open(&path).map_err(|e| {
            let link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            if link {
                refuse("a symbolic link, which is not followed")
            } else {
                std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
            }
        })?;
        if !file.metadata()?.is_file() {
            return Err(refuse("not a regular file"));
        }
        Ok(file)
    }

    /// An exclusive lock held while the returned file lives.
    pub fn lock(&self, name: &str) -> std::io::Result<File> {
        let f = self.lock_file(name)?;
        f.lock()?;
        Ok(f)
    }

    /// An exclusive lock, waited for until `deadline` or until `stop` says so: `Ok(None)` when
    /// another process still holds it then.
    pub fn lock_until(
        &self,
        name: &str,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> std::io::Result<Option<File>> {
        let f = self.lock_file(name)?;
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(Some(f)),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline || stop() {
                return Ok(None);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(25)));
        }
    }

    /// A project id (and its account's domain id) discovered less than 24 hours ago for this
    /// principal (IAM user or agency) and region.
    pub fn cached_project(
        &self,
        principal: &str,
        region: &str,
    ) -> Option<(String, Option<String>)> {
        let projects: BTreeMap<String, CachedProject> = self.read_json(PROJECTS_FILE)?;
        let p = projects.get(&format!("{principal}/{region}"))?;
        let age = now_ms().saturating_sub(p.discovered_at_ms);
        (age < PROJECT_TTL.as_millis() as u64 && !p.id.is_empty())
            .then(|| (p.id.clone(), p.domain_id.clone()))
    }

    pub fn store_project(&self, principal: &str, region: &str, id: &str, domain_id: Option<&str>) {
        let _guard = self.lock(PROJECTS_LOCK);
        let mut projects: BTreeMap<String, CachedProject> =
            self.read_json(PROJECTS_FILE).unwrap_or_default();
        // Expired ids go, so the file does not keep one per key ever seen.
        let now = now_ms();
        projects
            .retain(|_, p| now.saturating_sub(p.discovered_at_ms) < PROJECT_TTL.as_millis() as u64);
        projects.insert(
            format!("{principal}/{region}"),
            CachedProject {
                id: id.to_string(),
                domain_id: domain_id.map(str::to_string),
                discovered_at_ms: now_ms(),
            },
        );
        if let Err(e) = self.write_json(PROJECTS_FILE, &projects, Durability::Cheap) {
            log::warn!("cannot cache the project id in the state directory: {e}");
        }
    }
}

const PROJECTS_FILE: &str = "projects.json";
const PROJECTS_LOCK: &str = "projects.lock";

#[derive(Serialize, Deserialize, Debug, Clone)]
struct CachedProject {
    id: String,
    #[serde(default)]
    domain_id: Option<String>,
    discovered_at_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct BudgetFile {
    /// Wall-clock ms of the calls in the current window.
    stamps: Vec<u64>,
}

/// The request budget of one principal (IAM user or agency), shared by every process using
/// the state directory.
///
/// Every slot is also recorded in this process's own window, which takes over (with one
/// warning) as soon as the directory fails: missing, read-only, full or unlockable, the budget
/// is then per process but never gone.
pub struct SharedBudget {
    dir: StateDir,
    file: String,
    lock_file: String,
    limit: u32,
    window: Duration,
    /// This process's slots; threads of this process queue on it before the file lock.
    local: Mutex<WindowLog>,
    /// The directory failed once: the local window is the budget from then on.
    degraded: AtomicBool,
}

impl SharedBudget {
    pub fn new(dir: StateDir, principal: &str, limit: u32, window: Duration) -> Self {
        SharedBudget {
            dir,
            file: format!("budget-{principal}.json"),
            lock_file: format!("budget-{principal}.lock"),
            limit,
            window,
            local: Mutex::new(WindowLog::default()),
            degraded: AtomicBool::new(false),
        }
    }

    /// One attempt on the shared file under its lock: Ok(granted or how long to wait), or the
    /// reason the directory cannot be used.
    fn try_take_shared(&self, now: u64) -> std::io::Result<Result<(), u64>> {
        let _lock = self.dir.lock(&self.lock_file)?;
        let window_ms = self.window.as_millis() as u64;
        let file: BudgetFile = self
            .dir
            .read_json_checked(&self.file)
            .map_err(std::io::Error::other)?
            .unwrap_or_default();
        // Stamps from the future (a clock that went back) would block forever: drop them.
        let mut log = WindowLog::from_stamps(file.stamps.into_iter().filter(|&s| s <= now + 1000));
        let r = log.try_take(now, self.limit, window_ms);
        if r.is_ok() {
            let stamps: Vec<u64> = log.stamps().filter(|&s| s + window_ms > now).collect();
            self.dir
                .write_json(&self.file, &BudgetFile { stamps }, Durability::Cheap)?;
        }
        Ok(r)
    }

    fn try_take(&self) -> Result<(), u64> {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let window_ms = self.window.as_millis() as u64;
        if !self.degraded.load(Ordering::Relaxed) {
            match self.try_take_shared(now) {
                Ok(Ok(())) => {
                    // Within the shared grant, this process's share always fits.
                    let _ = local.try_take(now, self.limit, window_ms);
                    return Ok(());
                }
                Ok(Err(wait)) => return Err(wait),
                Err(e) => {
                    self.degraded.store(true, Ordering::Relaxed);
                    log::warn!(
                        "the state directory {} cannot hold the request budget ({e}); this process keeps its own budget of {} calls per {} s",
                        self.dir.path().display(),
                        self.limit,
                        self.window.as_secs()
                    );
                }
            }
        }
        local.try_take(now, self.limit, window_ms)
    }

    fn window_log(&self) -> WindowLog {
        if !self.degraded.load(Ordering::Relaxed) {
            if let Ok(Some(file)) = self.dir.read_json_checked::<BudgetFile>(&self.file) {
                return WindowLog::from_stamps(file.stamps);
            }
        }
        self.local.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Budget for SharedBudget {
    fn available(&self, within: Duration) -> usize {
        self.window_log().free_by(
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

    /// A fresh, not yet existing directory inside a temporary one that is removed on drop.
    pub(super) fn tmp() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state");
        (t, p)
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
    fn directory_is_private_and_projects_are_cached() {
        use std::os::unix::fs::PermissionsExt;
        let (_t, p) = tmp();
        let d = StateDir::open(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(d.cached_project("k", "r"), None);
        d.store_project("k", "r", "0123", Some("dom"));
        assert_eq!(
            d.cached_project("k", "r"),
            Some(("0123".to_string(), Some("dom".to_string())))
        );
        assert_eq!(d.cached_project("k", "other"), None);
        fs::write(p.join(PROJECTS_FILE), "{not json").unwrap();
        assert_eq!(d.cached_project("k", "r"), None, "corrupt is ignored");
        d.store_project("k", "r", "0456", None);
        assert_eq!(
            d.cached_project("k", "r").map(|p| p.0).as_deref(),
            Some("0456"),
            "and rewritten"
        );
    }

    #[test]
    fn shared_budget_counts_across_instances() {
        let (_t, p) = tmp();
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

    #[test]
    fn the_budget_outlives_a_broken_state_directory() {
        let (_t, p) = tmp();
        let dir = StateDir::open(&p).unwrap();
        // A directory where the budget file should be: no write can replace it (not even
        // root's), so the shared budget fails and the process's own takes over.
        fs::create_dir(p.join("budget-k.json")).unwrap();
        let b = SharedBudget::new(dir, "k", 3, Duration::from_secs(60));
        let soon = Instant::now() + Duration::from_millis(200);
        for _ in 0..3 {
            assert!(b.acquire(soon).is_ok());
        }
        assert!(
            b.acquire(soon).is_err(),
            "the fourth call in the window is refused by the per-process budget"
        );
        assert_eq!(b.available(Duration::ZERO), 0);
    }

    #[test]
    fn lock_files_are_never_opened_through_a_symlink_or_as_a_fifo() {
        let (_t, p) = tmp();
        let d = StateDir::open(&p).unwrap();
        let victim = p.join("elsewhere");
        std::os::unix::fs::symlink(&victim, p.join("period-x.lock")).unwrap();
        let e = d.lock("period-x.lock").unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains("period-x.lock"),
            "{e}"
        );
        assert!(!victim.exists());
        let fifo = p.join(gate::AUTH_LOCK);
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert!(d.lock(gate::AUTH_LOCK).is_err());
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_refused() {
        let (_t, p) = tmp();
        fs::write(&p, "a file, not a directory").unwrap();
        assert!(StateDir::open(&p).is_err());
    }
}
