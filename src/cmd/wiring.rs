//! Wiring the layers together: the cloud's needs (a request budget, a project-id cache, a place
//! to share credential rejections) met by the state directory, the cloud connection as the
//! collector's executor, and the self-metrics of a collection.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::Error;
use super::settings::Settings;
use crate::budget::{Budget, Limiter};
use crate::cloud::auth::{access_key_id, Rejection, RejectionStore};
use crate::cloud::client::CallCounts;
use crate::cloud::{self, Connection, ProjectCache, ProjectInfo, Renewal, Shared};
use crate::collect::models::{CloudEye, DiscoveryCache};
use crate::collect::{Collected, Executor, RunStats};
use crate::domain::ces::{BatchAnswer, BatchRequest, Discovered, MetricPage, Names};
use crate::domain::{ApiError, StatsAnswer};
use crate::emit::Origin;
use crate::env::{self, Lookup};
use crate::log;
use crate::state::{SharedBudget, StateDir};
use sha2::Digest;

impl Executor for Connection {
    fn execute(&self, body: &[u8], deadline: Instant) -> Result<StatsAnswer, ApiError> {
        self.statistics(body, deadline)
    }
}

impl CloudEye for Connection {
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
    fn cached_project(&self, key_id: &str, region: &str) -> Option<ProjectInfo> {
        StateDir::cached_project(self, key_id, region)
            .map(|(id, domain_id)| ProjectInfo { id, domain_id })
    }
    fn store_project(&self, key_id: &str, region: &str, p: &ProjectInfo) {
        StateDir::store_project(self, key_id, region, &p.id, p.domain_id.as_deref())
    }
}

impl RejectionStore for StateDir {
    fn rejection(&self, fingerprint: &str) -> Option<Rejection> {
        StateDir::rejection(self, fingerprint)
    }
    fn record_rejection(&self, fingerprint: &str, rejection: &Rejection) {
        StateDir::record_rejection(self, fingerprint, rejection)
    }
    fn clear_rejection(&self, fingerprint: &str) {
        StateDir::clear_rejection(self, fingerprint)
    }
    fn probe_lock(&self, fingerprint: &str, deadline: Instant) -> Option<Box<dyn Send>> {
        StateDir::probe_lock(self, fingerprint, deadline).map(|f| Box::new(f) as Box<dyn Send>)
    }
}

/// The state directory, created if needed; `None` (with a note) when there is none or it
/// cannot be used, and the budget and credential rejections are then per process.
pub fn open_state(dir: Option<&Path>) -> Option<StateDir> {
    let Some(p) = dir else {
        log::debug("no state directory (neither --state-dir, XDG_STATE_HOME nor HOME): the request budget is per process");
        return None;
    };
    match StateDir::open(p) {
        Ok(d) => Some(d),
        Err(e) => {
            log::warn(&format!(
                "{e}; the request budget is per process this time, and credential rejections are remembered by this process only"
            ));
            None
        }
    }
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
/// deadline, reading the environment through `env`; `state` shares the request budget, the
/// project id and credential rejections with other processes. Also returns how fresh
/// credentials are had later (a long-running process asks before each collection).
pub fn connect(
    settings: &Settings,
    requests_per_minute: u32,
    deadline: Instant,
    env: Lookup<'_>,
    state: Option<&StateDir>,
) -> Result<(Connection, Renewal), Error> {
    let (creds, renewal) = cloud::load_credentials(env, &settings.connect)?;
    let ak = access_key_id(creds.ak.expose());
    // Cloud Eye has its own limits: its calls take from a budget of their own, shared the same
    // way under another name.
    let budget_of = |name: String, limit: u32| -> Arc<dyn Budget> {
        match state {
            Some(dir) => Arc::new(SharedBudget::new(dir.clone(), &name, limit, rate_window())),
            None => Arc::new(Limiter::new(limit, rate_window())),
        }
    };
    let budget = budget_of(ak.clone(), requests_per_minute);
    let ces_budget = budget_of(
        format!("ces-{ak}"),
        settings.connect.ces_requests_per_minute,
    );
    let rejections: Option<Arc<dyn RejectionStore>> =
        state.map(|s| Arc::new(s.clone()) as Arc<dyn RejectionStore>);
    let shared = Shared {
        projects: state.map(|s| s as &dyn ProjectCache),
        rejections: rejections.as_ref(),
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
    collected: &Collected,
    conn: &Connection,
    baseline: CallCounts,
    started: Instant,
) -> RunStats {
    let calls = conn.client.counters.snapshot().since(baseline);
    RunStats {
        series_ok: (collected.series.len() + collected.models.series.len()) as u64,
        series_failed: (collected.failures.len() + collected.models.failures.len()) as u64,
        api_calls: calls.calls,
        api_retries: calls.retries,
        throttled: calls.throttled,
        duration_ms: started.elapsed().as_millis() as u64,
        // The process's memory of its collections fills these in.
        last_success_ms: 0,
        consecutive_failures: 0,
    }
}
