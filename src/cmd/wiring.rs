//! Wiring the layers together: the cloud's needs (a request budget, a project-id cache, a place
//! to share the credential gate's records) met by the state directory, the cloud connection as the
//! collector's executor, and the self-metrics of a collection.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::Error;
use super::settings::Settings;
use crate::budget::{Budget, Limiter};
use crate::cloud::auth::{principal_id, GateStore, Rejection};
use crate::cloud::client::CallCounts;
use crate::cloud::{self, Connection, ProjectCache, ProjectInfo, Renewal, Shared};
use crate::collect::{CloudEyeApi, Collection, DiscoveryCache, RunStats, StatisticsApi};
use crate::domain::cloud_eye::{BatchAnswer, BatchRequest, Discovered, MetricPage, Names};
use crate::domain::{ApiError, StatsAnswer};
use crate::emit::Origin;
use crate::env::{self, Lookup};
use crate::log;
use crate::state::{GateFiles, SharedBudget, StateDir};
use sha2::Digest;

impl StatisticsApi for Connection {
    fn execute(&self, body: &[u8], deadline: Instant) -> Result<StatsAnswer, ApiError> {
        self.statistics(body, deadline)
    }
}

impl CloudEyeApi for Connection {
    fn list_metrics(
        &self,
        metric: &str,
        marker: &str,
        deadline: Instant,
    ) -> Result<MetricPage, ApiError> {
        self.client
            .list_metrics(&self.project_id, metric, marker, deadline)
    }
    fn batch(&self, req: &BatchRequest, deadline: Instant) -> Result<BatchAnswer, ApiError> {
        self.client
            .batch_metric_data(&self.project_id, req, deadline)
    }
    fn instances(
        &self,
        start: usize,
        into: &mut Names,
        deadline: Instant,
    ) -> Result<usize, ApiError> {
        self.client
            .monitor_instances(&self.project_id, start, into, deadline)
    }
}

/// Cloud Eye's discovery for one region and project, kept in the state directory.
pub struct Discoveries {
    state: StateDir,
    key: String,
}

pub fn discovery_cache(state: &StateDir, conn: &Connection) -> Discoveries {
    Discoveries {
        state: state.clone(),
        key: format!("{}/{}", conn.region, conn.project_id),
    }
}

impl DiscoveryCache for Discoveries {
    fn load(&self, max_age: std::time::Duration) -> Option<Discovered> {
        self.state.cached_discovery(&self.key, max_age)
    }
    fn store(&self, found: &Discovered) {
        self.state.store_discovery(&self.key, found)
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

impl GateStore for GateFiles {
    fn rejection(&self, key: &str) -> Result<Option<Rejection>, String> {
        GateFiles::rejection(self, key)
    }
    fn accepted(&self, key: &str, host: &str) -> Option<u64> {
        GateFiles::accepted(self, key, host)
    }
    fn record_rejection(&self, key: &str, rejection: &Rejection) -> Result<(), String> {
        GateFiles::record_rejection(self, key, rejection)
    }
    fn record_acceptance(&self, key: &str, host: &str, sent_ms: u64) {
        GateFiles::record_acceptance(self, key, host, sent_ms)
    }
    fn writable(&self) -> Result<(), String> {
        GateFiles::writable(self)
    }
    fn probe_lock(&self, key: &str, deadline: Instant) -> Option<Box<dyn Send>> {
        GateFiles::probe_lock(self, key, deadline).map(|f| Box::new(f) as Box<dyn Send>)
    }
}

/// The state directory, created if needed; `None` (with a note) when there is none or it
/// cannot be used: the budget is then per process, and credential rejections go to the
/// per-user runtime directory.
pub fn open_state(dir: Option<&Path>) -> Option<StateDir> {
    let Some(p) = dir else {
        log::debug("no state directory (neither --state-dir, XDG_STATE_HOME nor HOME): the request budget is per process");
        return None;
    };
    match StateDir::open(p) {
        Ok(d) => Some(d),
        Err(e) => {
            log::warn(&format!(
                "{e}; the request budget is per process this time, and credential rejections are recorded in the per-user runtime directory"
            ));
            None
        }
    }
}

/// Says where `--simulator` sends the calls, and that nothing of a real account goes there.
pub fn say_simulator(settings: &Settings) {
    if let Some(url) = &settings.simulator {
        log::info(&format!(
            "--simulator: every call goes to {url} (MaaS, IAM, Cloud Eye, the MaaS monitor, metadata), signed with the credentials its metadata service hands out; no credentials are read from the environment or a file, the credential gate's records stay in this process{state}",
            state = match &settings.state_dir {
                Some(d) => format!(", and the state directory is {}", d.display()),
                None => ", and no state directory is used".into(),
            },
            url = crate::endpoint::redact_url(url),
        ));
    }
}

/// Where the credential gate keeps its records for other processes: `state`, with the per-user
/// runtime directory (`XDG_RUNTIME_DIR`, else the temporary directory) behind it.
pub fn gate_store(state: Option<&StateDir>) -> Arc<dyn GateStore> {
    Arc::new(GateFiles::new(state.cloned(), &env::process))
}

/// The credential gate's records of `state` and of the runtime directory (`state show|reset`).
pub fn gate_store_files(state: &StateDir) -> GateFiles {
    GateFiles::new(Some(state.clone()), &env::process)
}

/// The request budget's window: the API's minute, with a small margin so that jitter between
/// our clock and the gateway's never lets N+1 calls land in its window.
pub fn rate_window() -> Duration {
    let base = super::hooks::rate_window().unwrap_or(Duration::from_secs(60));
    // 2 % plus a quarter second: more than loopback or scheduling jitter between taking a slot
    // and the request reaching the gateway.
    base + base / 50 + Duration::from_millis(250)
}

/// Connects (credentials from the chain, client, project id) within the run's budget and
/// deadline, reading the environment through `env`; `state` shares the request budget and the
/// project id with other processes, `gate` the credential gate's records (`None`: this process
/// only). Also returns how fresh credentials are had later (a long-running process asks before
/// each collection).
pub fn connect(
    settings: &Settings,
    requests_per_minute: u32,
    deadline: Instant,
    env: Lookup<'_>,
    state: Option<&StateDir>,
    gate: Option<Arc<dyn GateStore>>,
) -> Result<(Connection, Renewal), Error> {
    let (creds, renewal) = cloud::load_credentials(env, &settings.connect)?;
    if let Some(dir) = state {
        dir.remove_unused();
    }
    // Keyed by who the API counts: an agency's budget stays one whatever temporary key it
    // hands out.
    let principal = principal_id(&creds);
    // Cloud Eye has its own limits: its calls take from a budget of their own, shared the same
    // way under another name.
    let budget_of = |name: String, limit: u32| -> Arc<dyn Budget> {
        match state {
            Some(dir) => Arc::new(SharedBudget::new(dir.clone(), &name, limit, rate_window())),
            None => Arc::new(Limiter::new(limit, rate_window())),
        }
    };
    let budget = budget_of(principal.clone(), requests_per_minute);
    let ces_budget = budget_of(
        format!("ces-{principal}"),
        settings.connect.ces_requests_per_minute,
    );
    let shared = Shared {
        projects: state.map(|s| s as &dyn ProjectCache),
        gate: gate.as_ref(),
    };
    let conn = cloud::connect(
        &settings.connect,
        creds,
        [budget, ces_budget],
        env,
        deadline,
        shared,
    )?;
    Ok((conn, renewal))
}

/// This host's name (`host.name`): the kernel's, else `/etc/hostname`, else `HOSTNAME`.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            crate::files::read_regular(std::path::Path::new(p), 256)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| env::get(&env::process, "HOSTNAME"))
        .unwrap_or_default()
}

/// Who reports: the host, an instance id stable per host and spec (`identity` names the
/// spec: its files, or the command), the account when discovery told it.
pub fn origin(identity: &str, account_id: Option<String>) -> Origin {
    let host_name = host_name();
    let digest = crate::text::hex(&sha2::Sha256::digest(
        format!("{host_name}\n{identity}").as_bytes(),
    ));
    Origin {
        instance_id: digest[..32].to_string(),
        host_name,
        account_id,
    }
}

/// The self-metrics of a collection: its series (as delivered) and the calls made since
/// `baseline` (the start of the process for the first collection, so IAM discovery counts; the
/// end of the previous one under `--execd`).
pub fn run_stats(
    collection: &Collection,
    conn: &Connection,
    baseline: CallCounts,
    started: Instant,
) -> RunStats {
    let calls = conn.client.counters.snapshot().since(baseline);
    RunStats {
        series_ok: collection.series.len() as u64,
        series_failed: collection.failures.len() as u64,
        api_calls: calls.calls,
        api_retries: calls.retries,
        throttled: calls.throttled,
        duration_ms: started.elapsed().as_millis() as u64,
        // The process's memory of its collections fills these in.
        last_success_ms: 0,
        consecutive_failures: 0,
    }
}
