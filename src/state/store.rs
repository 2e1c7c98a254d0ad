//! The state interface: what processes sharing a key, a destination or a cache agree on, behind
//! one value ([`StateStore`]) a command opens from its settings. Collection and the cloud see
//! only these traits (and the cloud's own, [`GateStore`] and [`ProjectCache`], which a store
//! implements); the state directory ([`DirectoryStore`]) is the first implementation, and a
//! coordination engine for a fleet can be a second without touching collection or cloud code.
//!
//! The contract every implementation keeps (the tests at the end hold the directory to it):
//! - **budgets never fail open**: a budget is shared by every process using the store, and when
//!   the store fails, the process keeps a budget of its own of the same size (with a warning);
//! - **the credential gate fails closed** ([`GateStore`]): records that cannot be read are an
//!   error, which the gate takes as a rejection now, and are never overwritten; before a probe
//!   the store proves it can record the outcome, or no call goes out;
//! - **checkpoints fail closed** ([`CheckpointStore`]): checkpoints that cannot be read or
//!   understood are an error, never "none" (which would send every delivered bucket again); a
//!   destination's lock is held from reading its checkpoints to committing them; the next
//!   checkpoints are prepared (durably, not yet in force) before anything goes out, put in force
//!   only by `commit` after the delivery, and a prepared commit dropped is not committed;
//! - **caches are only caches** (project ids, Cloud Eye's discovery): one that cannot be read or
//!   written makes runs dearer, never impossible.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoints::{CheckpointFile, PreparedCheckpoints};
use super::{GateFiles, RuntimeDir, SharedBudget, StateDir, StateFileError};
use crate::budget::{Budget, Limiter};
pub use crate::cloud::auth::GateStore;
use crate::cloud::{ProjectCache, ProjectInfo};
use crate::domain::cloud_eye::{Dims, Discovered};

/// Where the processes that share credentials and destinations keep what they agree on.
pub trait StateStore: Send + Sync {
    /// Where it is kept, as messages name it (the state directory's path); `None` when nothing
    /// is kept beyond this process.
    fn location(&self) -> Option<String>;
    /// The request budget `name` (an identity the API limits, `cloud::auth::principal_id`, or
    /// Cloud Eye's `ces-<id>`): at most `limit` calls in any `window`, across every process
    /// using this store. Never none: when the store fails, the process keeps its own.
    fn budget(&self, name: &str, limit: u32, window: Duration) -> Arc<dyn Budget>;
    /// A budget counted in several windows at once, each `(name, limit)` as [`Self::budget`]
    /// has it (an identity's, its account's): a call takes a slot in every one. This default
    /// takes them one after another (a slot taken in one is spent even when another is full);
    /// a store that can take them at once does.
    fn budget_of(&self, windows: &[(&str, u32)], window: Duration) -> Arc<dyn Budget> {
        match windows {
            [(name, limit)] => self.budget(name, *limit, window),
            _ => Arc::new(crate::budget::AllOf(
                windows
                    .iter()
                    .map(|(n, l)| self.budget(n, *l, window))
                    .collect(),
            )),
        }
    }
    /// The credential gate's records, shared with other processes; `None`: this process's
    /// gate keeps them itself.
    fn gate(&self) -> Option<Arc<dyn GateStore>>;
    /// Discovered project ids per identity and region; `None`: not kept.
    fn projects(&self) -> Option<&dyn ProjectCache>;
    /// Cloud Eye's discovery per region and project; `None`: not kept.
    fn discovery(&self) -> Option<&dyn DiscoveryStore>;
    /// Period-mode checkpoints per destination; `None`: they cannot be kept (the period series
    /// then emit nothing, since every run would send them again).
    fn checkpoints(&self) -> Option<&dyn CheckpointStore>;
    /// The stored collection of a group of processes (issue 20's fleet); `None` for a store
    /// on one host, where each process collects for itself.
    fn collections(&self) -> Option<&dyn CollectionStore> {
        None
    }
    /// Forgets what nobody used for a long time (budgets of keys rotated away); asked once per
    /// connection.
    fn tidy(&self) {}
}

/// Cloud Eye's discovery (which metric and series pairs exist, and the names of their ids),
/// kept per key (a region and project) so that a run every minute does not list them again.
pub trait DiscoveryStore: Send + Sync {
    /// The discovery kept under `key`, while it is younger than `max_age`.
    fn cached_discovery(&self, key: &str, max_age: Duration) -> Option<Discovered>;
    /// Keeps `found` under `key`; what is added to a discovery still standing keeps its age.
    fn store_discovery(&self, key: &str, found: &Discovered);
    /// The series of `key` (a region, project and query) that the last run left out, in
    /// line: the next run reads them first.
    fn owed(&self, key: &str) -> Vec<Dims>;
    /// Keeps them (none: forgets them).
    fn store_owed(&self, key: &str, owed: &[Dims]);
}

/// Period-mode checkpoints and running totals per destination (see the module's contract:
/// they fail closed).
pub trait CheckpointStore: Send + Sync {
    /// Where they are, as messages name it, and as `--state-dir` takes it.
    fn location(&self) -> String;
    /// The destination's lock, held (while the value lives) from reading its checkpoints to
    /// committing them, so that overlapping runs never send a bucket twice to it. `Ok(None)`:
    /// another run holds it past `deadline`, or `stop` said to give up; an error: it cannot be
    /// taken at all (only the operator can mend that, and the period series wait for it).
    fn lock(
        &self,
        destination: &str,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> std::io::Result<Option<Box<dyn Send>>>;
    /// The destination's checkpoints; an error when they cannot be read or understood.
    fn read(&self, destination: &str) -> Result<Option<CheckpointFile>, StateFileError>;
    /// The checkpoints of versions that kept one set for every output, if there are any.
    fn read_old(&self) -> Result<Option<CheckpointFile>, StateFileError>;
    /// Writes `next`, the destination's next checkpoints, durably but not in force; an error
    /// means the commit could not be recorded, and nothing should go out.
    fn prepare(
        &self,
        destination: &str,
        next: &CheckpointFile,
    ) -> std::io::Result<Box<dyn PreparedCommit>>;
}

/// Checkpoints prepared before a delivery: in force once committed after it; dropped, never.
pub trait PreparedCommit: Send {
    fn commit(self: Box<Self>) -> std::io::Result<()>;
}

/// The collection a group of processes made for one interval, stored so that the others emit
/// it instead of calling again (issue 20's fleet).
pub trait CollectionStore: Send + Sync {
    /// The collection of `interval` (a name of the interval and the output): stored already
    /// (another process made it), or this process's to make (it holds the interval's lease),
    /// waiting until `deadline` (or `stop`) while another process holds the lease; an error
    /// when the engine cannot answer.
    fn claim(
        &self,
        interval: &str,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<Claim, String>;
    /// Stores `collection` (serialised, without a secret) as the one of `lead`'s interval for
    /// `ttl`, if `lead` still holds its lease; an error otherwise.
    fn store(&self, lead: &Lead, collection: &str, ttl: Duration) -> Result<(), String>;
    /// How long the engine's last exchange took.
    fn round_trip(&self) -> Duration;
}

/// What [`CollectionStore::claim`] found.
pub enum Claim {
    /// This process makes the interval's collection.
    Lead(Lead),
    /// Another process made it: here it is.
    Stored(String),
    /// Another process held the lease until the deadline, and stored nothing.
    Waited,
}

/// The lease of one interval's collection; dropped without storing (the collection failed or
/// was cut short), it lets the lease go: each process of the group then tries for itself,
/// through the budget and the credential gate.
pub struct Lead {
    pub interval: String,
    pub token: String,
    /// The lease was another's, which stored nothing before it ended (that process died).
    pub took_over: bool,
    /// Lets the lease go when dropped, if it is still this process's.
    pub held: Box<dyn Send>,
}

/// The state directory, when there is one that can be used, with the per-user runtime
/// directory behind it for the credential gate's records.
pub struct DirectoryStore {
    dir: Option<StateDir>,
    gate: Option<Arc<GateFiles>>,
    /// The budgets handed out, one per name: clouds of one process that share an identity
    /// share its budget, with a state directory or without.
    budgets: std::sync::Mutex<std::collections::HashMap<String, Arc<dyn Budget>>>,
}

impl DirectoryStore {
    /// `dir` (`None`: there is none, or it cannot be used: budgets are then per process and no
    /// cache or checkpoint is kept), with the gate's records in `gate_dir` (`dir`, or a state
    /// directory that could not be opened because it cannot take a write: it is still read, so
    /// the rejections it holds count) and in the runtime directory `runtime` (`None`: they stay
    /// in the process, as the demo's and a simulated run's do).
    pub fn new(
        dir: Option<StateDir>,
        gate_dir: Option<StateDir>,
        runtime: Option<RuntimeDir>,
    ) -> DirectoryStore {
        DirectoryStore {
            gate: runtime.map(|r| Arc::new(GateFiles::new(gate_dir, r))),
            dir,
            budgets: Default::default(),
        }
    }
}

impl StateStore for DirectoryStore {
    fn location(&self) -> Option<String> {
        self.dir.as_ref().map(|d| d.path().display().to_string())
    }
    fn budget(&self, name: &str, limit: u32, window: Duration) -> Arc<dyn Budget> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let made = || -> Arc<dyn Budget> {
            match &self.dir {
                Some(dir) => Arc::new(SharedBudget::new(dir.clone(), name, limit, window)),
                None => Arc::new(Limiter::new(limit, window)),
            }
        };
        budgets.entry(name.to_string()).or_insert_with(made).clone()
    }
    fn gate(&self) -> Option<Arc<dyn GateStore>> {
        self.gate.clone().map(|g| g as Arc<dyn GateStore>)
    }
    fn projects(&self) -> Option<&dyn ProjectCache> {
        self.dir.as_ref().map(|d| d as &dyn ProjectCache)
    }
    fn discovery(&self) -> Option<&dyn DiscoveryStore> {
        self.dir.as_ref().map(|d| d as &dyn DiscoveryStore)
    }
    fn checkpoints(&self) -> Option<&dyn CheckpointStore> {
        self.dir.as_ref().map(|d| d as &dyn CheckpointStore)
    }
    fn tidy(&self) {
        if let Some(dir) = &self.dir {
            dir.remove_unused();
        }
    }
}

impl ProjectCache for StateDir {
    fn cached_project(&self, principal: &str, region: &str) -> Option<ProjectInfo> {
        StateDir::cached_project(self, principal, region)
            .map(|(id, domain_id)| ProjectInfo { id, domain_id })
    }
    fn store_project(&self, principal: &str, region: &str, p: &ProjectInfo) {
        StateDir::store_project(self, principal, region, &p.id, p.domain_id.as_deref())
    }
}

impl DiscoveryStore for StateDir {
    fn cached_discovery(&self, key: &str, max_age: Duration) -> Option<Discovered> {
        StateDir::cached_discovery(self, key, max_age)
    }
    fn store_discovery(&self, key: &str, found: &Discovered) {
        StateDir::store_discovery(self, key, found)
    }
    fn owed(&self, key: &str) -> Vec<Dims> {
        StateDir::owed(self, key)
    }
    fn store_owed(&self, key: &str, owed: &[Dims]) {
        StateDir::store_owed(self, key, owed)
    }
}

impl CheckpointStore for StateDir {
    fn location(&self) -> String {
        self.path().display().to_string()
    }
    fn lock(
        &self,
        destination: &str,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> std::io::Result<Option<Box<dyn Send>>> {
        Ok(self
            .period_lock(destination, deadline, stop)?
            .map(|f| Box::new(f) as Box<dyn Send>))
    }
    fn read(&self, destination: &str) -> Result<Option<CheckpointFile>, StateFileError> {
        self.checkpoints_of(destination)
    }
    fn read_old(&self) -> Result<Option<CheckpointFile>, StateFileError> {
        self.old_checkpoints()
    }
    fn prepare(
        &self,
        destination: &str,
        next: &CheckpointFile,
    ) -> std::io::Result<Box<dyn PreparedCommit>> {
        Ok(Box::new(self.prepare_checkpoints(destination, next)?))
    }
}

impl PreparedCommit for PreparedCheckpoints {
    fn commit(self: Box<Self>) -> std::io::Result<()> {
        PreparedCheckpoints::commit(*self)
    }
}

/// Where `location` keeps the file `name` (for messages).
pub fn file_in(location: &str, name: &str) -> String {
    Path::new(location).join(name).display().to_string()
}

/// The contract of a state store as checks any implementation can run: each takes the store
/// (and, where it matters, a way to break what the store keeps, as a full disk or a hand edit
/// would). `tests` below holds the state directory to them.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;
    use crate::domain::failure::Rejection;
    use crate::time::period::{Checkpoints, Totals};

    fn never() -> bool {
        false
    }

    fn ms_now() -> u64 {
        crate::cloud::auth::now_ms()
    }

    /// Two processes on one store share a budget per identity; another identity has its own.
    pub fn budgets_are_shared(a: &dyn StateStore, b: &dyn StateStore) {
        let soon = Instant::now() + Duration::from_millis(200);
        let minute = Duration::from_secs(60);
        let (x, y) = (a.budget("k", 2, minute), b.budget("k", 2, minute));
        assert!(x.acquire(soon).is_ok() && y.acquire(soon).is_ok());
        assert!(x.acquire(soon).is_err(), "the limit holds across processes");
        assert!(a.budget("other", 1, minute).acquire(soon).is_ok());
    }

    /// The credential gate's records are shared, and fail closed once `break_records` made
    /// them unreadable: an error for every credential, never "no rejection", and not
    /// overwritten by an acceptance.
    pub fn the_gate_fails_closed(a: &dyn StateStore, b: &dyn StateStore, break_records: &dyn Fn()) {
        let (gate, other) = (
            a.gate().expect("a gate store"),
            b.gate().expect("a gate store"),
        );
        let r = Rejection {
            at_ms: ms_now(),
            status: 401,
            code: Some("APIGW.0301".into()),
        };
        gate.record_rejection("k", &r).unwrap();
        assert_eq!(other.rejection("k").unwrap(), Some(r), "shared");
        assert_eq!(other.rejection("fixed").unwrap(), None, "per credential");
        gate.writable().unwrap();
        break_records();
        assert!(gate.rejection("k").is_err() && gate.rejection("fixed").is_err());
        gate.record_acceptance("fixed", "h", ms_now());
        assert_eq!(gate.accepted("fixed", "h"), None);
        assert!(other.rejection("fixed").is_err(), "never overwritten");
    }

    /// Checkpoints `break_checkpoints` made unreadable are an error, never none.
    pub fn checkpoints_fail_closed(store: &dyn StateStore, break_checkpoints: &dyn Fn(&str)) {
        let cps = store.checkpoints().expect("a checkpoint store");
        assert_eq!(cps.read("broken").unwrap(), None);
        break_checkpoints("broken");
        assert!(cps.read("broken").is_err());
    }

    /// Prepared checkpoints are in force once committed, and never when dropped (under the
    /// destination's lock, as runs take it).
    pub fn a_prepared_commit_is_in_force_only_once_committed(store: &dyn StateStore) {
        let cps = store.checkpoints().expect("a checkpoint store");
        let _held = cps
            .lock("d", Instant::now(), &never)
            .unwrap()
            .expect("free");
        let next = CheckpointFile::default()
            .advanced(&Checkpoints::from([("s".into(), 1)]), &Totals::default());
        drop(cps.prepare("d", &next).unwrap());
        assert_eq!(cps.read("d").unwrap(), None, "dropped, never in force");
        let prepared = cps.prepare("d", &next).unwrap();
        assert_eq!(cps.read("d").unwrap(), None, "prepared, not yet in force");
        prepared.commit().unwrap();
        assert_eq!(cps.read("d").unwrap(), Some(next));
    }

    /// A destination's lock is held by one run at a time, waited for until the deadline or a
    /// stop; another destination's is its own.
    pub fn a_destination_lock_is_exclusive(store: &dyn StateStore) {
        let cps = store.checkpoints().expect("a checkpoint store");
        let held = cps.lock("x", Instant::now(), &never).unwrap();
        assert!(held.is_some());
        let soon = Instant::now() + Duration::from_millis(100);
        assert!(cps.lock("x", soon, &never).unwrap().is_none(), "held");
        assert!(cps.lock("y", Instant::now(), &never).unwrap().is_some());
        let far = Instant::now() + Duration::from_secs(600);
        assert!(
            cps.lock("x", far, &|| true).unwrap().is_none(),
            "a stop gives up"
        );
        drop(held);
        assert!(cps.lock("x", Instant::now(), &never).unwrap().is_some());
    }

    /// The caches give back what they were given, while it is young enough.
    pub fn caches_keep_what_they_are_given(store: &dyn StateStore) {
        let projects = store.projects().expect("a project cache");
        let p = ProjectInfo {
            id: "0123456789abcdef0123456789abcdef".into(),
            domain_id: Some("account".into()),
        };
        projects.store_project("who", "region", &p);
        assert_eq!(projects.cached_project("who", "region"), Some(p));
        assert_eq!(projects.cached_project("who", "elsewhere"), None);
        let discovery = store.discovery().expect("a discovery cache");
        let found = Discovered::default();
        discovery.store_discovery("region/project", &found);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            discovery.cached_discovery("region/project", hour),
            Some(found)
        );
        assert_eq!(
            discovery.cached_discovery("region/project", Duration::ZERO),
            None
        );
        let owed = vec![Dims {
            model_id: "m".into(),
            key_id: Some("k".into()),
        }];
        discovery.store_owed("region/project/q", &owed);
        assert_eq!(discovery.owed("region/project/q"), owed);
        assert!(discovery.owed("region/project/other").is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A directory store in `<t>/state`, with `<t>/run` as the runtime directory.
    fn directory(t: &Path) -> DirectoryStore {
        let run = t.join("run");
        fs::create_dir_all(&run).unwrap();
        let env = move |k: &str| (k == "XDG_RUNTIME_DIR").then(|| run.display().to_string());
        let dir = StateDir::open(&t.join("state")).unwrap();
        DirectoryStore::new(
            Some(dir.clone()),
            Some(dir),
            Some(RuntimeDir::from_env(&env)),
        )
    }

    #[test]
    fn the_state_directory_keeps_the_contract() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (directory(t.path()), directory(t.path()));
        let state = t.path().join("state");
        assert_eq!(a.location(), Some(state.display().to_string()));
        contract::budgets_are_shared(&a, &b);
        contract::the_gate_fails_closed(&a, &b, &|| {
            fs::write(state.join("auth.json"), "{not json").unwrap()
        });
        contract::checkpoints_fail_closed(&a, &|d| {
            fs::write(state.join(format!("checkpoints-{d}.json")), "{not json").unwrap()
        });
        contract::a_prepared_commit_is_in_force_only_once_committed(&a);
        contract::a_destination_lock_is_exclusive(&a);
        contract::caches_keep_what_they_are_given(&a);
    }

    #[test]
    fn without_a_directory_only_the_gate_is_shared_and_the_demo_shares_nothing() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().to_path_buf();
        let env = move |k: &str| (k == "XDG_RUNTIME_DIR").then(|| run.display().to_string());
        let none = DirectoryStore::new(None, None, Some(RuntimeDir::from_env(&env)));
        let demo = DirectoryStore::new(None, None, None);
        for store in [&none as &dyn StateStore, &demo] {
            assert!(store.location().is_none() && store.projects().is_none());
            assert!(store.discovery().is_none() && store.checkpoints().is_none());
            assert!(store.collections().is_none());
            // A budget per process and name: the clouds of one process that share an identity
            // share its calls; another process (another store) has its own.
            let soon = Instant::now();
            let minute = Duration::from_secs(60);
            assert!(store.budget("k", 1, minute).acquire(soon).is_ok());
            assert!(store.budget("k", 1, minute).acquire(soon).is_err());
            assert!(store.budget("other", 1, minute).acquire(soon).is_ok());
        }
        let another = DirectoryStore::new(None, None, None);
        let soon = Instant::now();
        let minute = Duration::from_secs(60);
        assert!(another.budget("k", 1, minute).acquire(soon).is_ok());
        // The gate's records go to the runtime directory; the demo keeps them in the process.
        let gate = none.gate().expect("the runtime directory");
        gate.writable().unwrap();
        assert!(t.path().join("maas-usage").join("auth.json").is_file());
        assert!(demo.gate().is_none());
    }
}
