//! Wiring the layers together: the state store the settings chose (budgets, the credential
//! gate's records, caches) handed to the cloud and the collector, the cloud connection as the
//! collector's executor, and the self-metrics of a collection.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::Error;
use super::settings::coordination::RedisSettings;
use super::settings::{Settings, StateSettings};
use crate::budget::Budget;
use crate::cloud::auth::principal_id;
use crate::cloud::client::CallCounts;
use crate::cloud::credentials::{Budgets, Services};
use crate::cloud::{CloudSettings, Connection, Shared};
use crate::collect::{CloudEyeApi, Collection, DiscoveryCache, RunStats, StatisticsApi};
use crate::domain::cloud_eye::{BatchRequest, Dims, Discovered, InstancePage, MetricPage, Unread};
use crate::domain::{ApiError, StatsAnswer};
use crate::emit::Origin;
use crate::log;
use crate::state::fleet::{self, EngineError, RedisStore, RedisTarget};
use crate::state::{DirectoryStore, StateDir, StateStore};
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
    fn batch(&self, req: &BatchRequest, deadline: Instant) -> Result<Unread, ApiError> {
        self.client
            .batch_metric_data(&self.project_id, req, deadline)
    }
    fn instances(
        &self,
        start: usize,
        keys: bool,
        deadline: Instant,
    ) -> Result<InstancePage, ApiError> {
        self.client
            .monitor_instances(&self.project_id, start, keys, deadline)
    }
    fn affordable(&self, within: Duration) -> usize {
        self.client.available_ces_calls(within)
    }
}

/// Cloud Eye's discovery for one region and project, kept in the state store.
pub struct Discoveries {
    store: Arc<dyn StateStore>,
    key: String,
}

/// The discovery cache of `conn`'s region and project (with `clouds`, of the cloud `cloud`
/// too), when the store keeps one.
pub fn discovery_cache(
    store: &Arc<dyn StateStore>,
    conn: &Connection,
    cloud: Option<&str>,
) -> Option<Discoveries> {
    store.discovery()?;
    let mut key = format!("{}/{}", conn.region, conn.project_id);
    if let Some(name) = cloud {
        key.push('@');
        key.push_str(name);
    }
    Some(Discoveries {
        store: store.clone(),
        key,
    })
}

impl DiscoveryCache for Discoveries {
    fn load(&self, max_age: std::time::Duration) -> Option<Discovered> {
        self.store.discovery()?.cached_discovery(&self.key, max_age)
    }
    fn store(&self, found: &Discovered) {
        if let Some(d) = self.store.discovery() {
            d.store_discovery(&self.key, found)
        }
    }
    fn owed(&self, query: &str) -> Vec<Dims> {
        self.store
            .discovery()
            .map(|d| d.owed(&format!("{}/{query}", self.key)))
            .unwrap_or_default()
    }
    fn store_owed(&self, query: &str, owed: &[Dims]) {
        if let Some(d) = self.store.discovery() {
            d.store_owed(&format!("{}/{query}", self.key), owed)
        }
    }
}

/// The state store the settings chose: the state directory (created if needed), with the
/// runtime directory behind it for the credential gate's records (unless the gate keeps them
/// in the process); without one (there is none, or it cannot be used: said in a note) the
/// budget is per process. With `coordination: {engine: redis}`, Redis (the state directory
/// keeps the caches and remembers Redis's generation); when Redis cannot be reached, an error
/// (`on_unavailable: stop`: no signed call) or the state directory with one `W!` (`local`).
pub fn open_store(settings: &StateSettings) -> Result<Arc<dyn StateStore>, Error> {
    let dir = open_state(settings.dir.as_deref());
    // A state directory that cannot take a write is still read: the rejections it holds count,
    // and records there that cannot be read let no call out.
    let gate_dir = dir
        .clone()
        .or_else(|| settings.dir.as_deref().and_then(StateDir::existing));
    let local = DirectoryStore::new(
        dir.clone(),
        gate_dir,
        settings.share_gate.then(|| settings.runtime.clone()),
    );
    let Some(redis) = &settings.redis else {
        return Ok(Arc::new(local));
    };
    let target = redis_target(redis)?;
    let seen = dir
        .as_ref()
        .and_then(|d| fleet::seen_generation(d, &redis.url));
    let local_again = || {
        DirectoryStore::new(
            dir.clone(),
            dir.clone(),
            settings.share_gate.then(|| settings.runtime.clone()),
        )
    };
    match RedisStore::open(target, local, seen) {
        Ok((store, generation)) => {
            if let Some(lost) = store.lost() {
                log::error!("{}", lost);
            }
            if let (Some(d), Some(g)) = (&dir, generation) {
                fleet::remember_generation(d, &redis.url, &g);
            }
            Ok(Arc::new(store))
        }
        Err(e) if redis.local_fallback => {
            log::warn!(
                "{e}; on_unavailable: local, so this host's state directory keeps the budgets, the credential gate's records and the checkpoints this time (shared with no other host)"
            );
            Ok(Arc::new(local_again()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Where the engine is, as the state store takes it, with its TLS files read (an error, the
/// input's, when one cannot be used: no fallback to the state directory then).
pub fn redis_target(redis: &RedisSettings) -> Result<RedisTarget, EngineError> {
    let tls = redis.tls.load().map_err(|tls| EngineError::Tls {
        url: redis.url.clone(),
        tls,
    })?;
    Ok(RedisTarget {
        url: redis.url.clone(),
        password: redis.password.clone(),
        group: redis.group.clone(),
        lease: redis.lease,
        tls,
    })
}

/// The state directory, created if needed; `None` (with a note) when there is none or it
/// cannot be used.
fn open_state(dir: Option<&Path>) -> Option<StateDir> {
    let Some(p) = dir else {
        log::debug!("no state directory (neither --state-dir, XDG_STATE_HOME nor HOME): the request budget is per process");
        return None;
    };
    match StateDir::open(p) {
        Ok(d) => Some(d),
        Err(e) => {
            log::warn!(
                "{e}; the request budget is per process this time, and credential rejections are recorded in the per-user runtime directory (those it holds still count)"
            );
            None
        }
    }
}

/// Says where `--simulator` sends the calls, and that nothing of a real account goes there.
pub fn say_simulator(settings: &Settings) {
    if let Some(url) = &settings.simulator {
        log::info!(
            "--simulator: every call goes to {url} (MaaS, IAM, Cloud Eye, the MaaS monitor, metadata), signed with the credentials its metadata service hands out; no credentials are read from the environment or a file, the credential gate's records stay in this process{state}",
            state = match &settings.state.dir {
                Some(d) => format!(", and the state directory is {}", d.display()),
                None => ", and no state directory is used".into(),
            },
            url = crate::endpoint::redact_url(url),
        );
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

/// Connects to `cloud` (credentials from its chain, client, project id) within its budget and
/// the run's deadline; `store` shares the request budgets, the project id and the credential
/// gate's records with other processes.
pub fn connect(
    cloud: &CloudSettings,
    deadline: Instant,
    store: &Arc<dyn StateStore>,
) -> Result<Connection, Error> {
    // A provider that calls a service itself (STS) takes from the same budgets and gate.
    cloud.credentials.share(&Services {
        budgets: Arc::new(StoreBudgets {
            store: store.clone(),
            limit: cloud.limits.requests_per_minute,
        }),
        gate: store.gate(),
    });
    let creds = crate::cloud::load_credentials(&cloud.credentials)?;
    store.tidy();
    // Keyed by who the API counts: an agency's budget stays one whatever temporary key it
    // hands out. Cloud Eye has its own limits: its calls take from a budget of their own,
    // shared the same way under another name.
    let principal = principal_id(&creds);
    let account = account_window(cloud, &**store, &principal);
    let mut windows = vec![(principal.as_str(), cloud.limits.requests_per_minute)];
    if let Some((name, limit)) = &account {
        windows.push((name.as_str(), *limit));
    }
    let budget = store.budget_of(&windows, rate_window());
    let ces_budget = store.budget(
        &format!("ces-{principal}"),
        cloud.limits.ces_requests_per_minute,
        rate_window(),
    );
    let gate = store.gate();
    let shared = Shared {
        projects: store.projects(),
        gate: gate.as_ref(),
    };
    Ok(crate::cloud::connect(
        cloud,
        creds,
        [budget, ces_budget],
        deadline,
        shared,
    )?)
}

/// The request budgets of the store, for the identities a credential provider signs for.
struct StoreBudgets {
    store: Arc<dyn StateStore>,
    limit: u32,
}

impl Budgets for StoreBudgets {
    fn budget(&self, principal: &str) -> Arc<dyn Budget> {
        self.store.budget(principal, self.limit, rate_window())
    }
}

/// The account's window, when `limits.account_requests_per_minute` asks for one: the account
/// IAM discovery told (cached per identity and region), else the pinned project standing for
/// it; `None` (said at debug) while neither is known, before the first discovery.
fn account_window(
    cloud: &CloudSettings,
    store: &dyn StateStore,
    principal: &str,
) -> Option<(String, u32)> {
    let limit = cloud.limits.account_requests_per_minute?;
    let discovered = store
        .projects()
        .and_then(|p| p.cached_project(principal, &cloud.region))
        .and_then(|p| p.domain_id);
    let account = match (discovered, &cloud.project_id) {
        (Some(domain), _) => format!("account-{domain}"),
        (None, Some(p)) => format!("account-project-{}", p.id),
        (None, None) => {
            log::debug!("the account is not known before IAM discovery: this run keeps to the identity's budget only");
            return None;
        }
    };
    Some((account, limit))
}

/// Who reports: the host `host_name`, an instance id stable per host and spec (`identity`
/// names the spec: its files, or the command), the account when discovery told it.
pub fn origin(host_name: &str, identity: &str, account_id: Option<String>) -> Origin {
    let digest = crate::text::hex(&sha2::Sha256::digest(
        format!("{host_name}\n{identity}").as_bytes(),
    ));
    Origin {
        instance_id: digest[..32].to_string(),
        host_name: host_name.to_string(),
        account_id,
    }
}

/// The self-metrics of a collection: its series (as delivered) and the calls made since
/// `baseline` (the start of the process for the first collection, so IAM discovery counts; the
/// end of the previous one under `--execd`).
pub fn run_stats(
    collection: &Collection,
    conn: Option<&Connection>,
    baseline: CallCounts,
    started: Instant,
) -> RunStats {
    let calls = conn
        .map_or(baseline, |c| c.client.counters.snapshot())
        .since(baseline);
    RunStats {
        series_ok: collection.series_ok() as u64,
        series_failed: collection.failures.len() as u64,
        api_calls: calls.calls,
        api_retries: calls.retries,
        throttled: calls.throttled,
        duration_ms: started.elapsed().as_millis() as u64,
        // The process's memory of its collections fills these in.
        last_success_ms: 0,
        consecutive_failures: 0,
        // The coordination group's role and engine (`run::shared`) fill these in.
        leader: 1,
        engine_round_trip_us: 0,
        failovers: 0,
    }
}
