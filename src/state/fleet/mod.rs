//! The state store of a fleet: a Redis server shared by processes on many hosts (issue 20).
//! Budgets are sliding windows in sorted sets, checked and taken in one Lua script on the
//! server's clock; the credential gate's records and probe lock are one per credential for the
//! fleet; period checkpoints move only through a fenced commit (a lease whose token only
//! grows). Caches stay in the state directory of each host, which also remembers the engine's
//! generation: a Redis that lost its data (restarted without persistence, `FLUSHALL`, a
//! failover to a lagging replica) is told apart from a new one, and period series are held
//! back until `state reset --engine`.
//!
//! Key names are made of hashes of identities (`maas-usage:budget:<hash>`), never of
//! credentials; the password comes from the settings (the environment), never the URL.

mod budget;
mod checkpoints;
mod collection;
mod gate;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{ConnectionLike, IntoConnectionInfo};

use super::store::{CheckpointStore, CollectionStore, DirectoryStore, DiscoveryStore, StateStore};
use crate::budget::Budget;
use crate::cloud::auth::GateStore;
use crate::cloud::credentials::Secret;
use crate::cloud::ProjectCache;
use crate::log;
use crate::tls::{TlsError, TlsMaterial};

pub use budget::RedisBudget;

/// How long one exchange with Redis may take (connecting, or a command's answer).
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(2);
/// The prefix of every key.
const PREFIX: &str = "maas-usage";
/// The generation marker's key.
const GENERATION_KEY: &str = "maas-usage:generation";

/// Where the engine is and how to reach it (the settings' choice, without their types).
#[derive(Clone)]
pub struct RedisTarget {
    /// As messages name it: the URL without a password.
    pub url: String,
    /// The password, when the environment gave one (a `Secret`: never printed, zeroed on drop).
    pub password: Option<Secret>,
    pub group: String,
    pub lease: Duration,
    /// `rediss://`: a private CA to trust (else the Mozilla roots) and a client identity.
    pub tls: TlsMaterial,
}

/// Why the engine cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the coordination engine redis at {url} cannot be reached: {why}")]
    Unreachable { url: String, why: String },
    #[error("the coordination engine redis at {url} lost its state (its generation marker is {found}, this host last saw {seen}): period series are held back until `maas-usage state reset --engine --spec SPEC` is run")]
    Lost {
        url: String,
        found: String,
        seen: String,
    },
    /// The spec's CA or client certificate cannot be used (the input's fault: exit 2).
    #[error("{tls}; the coordination engine redis at {url} is not used without it")]
    Tls { url: String, tls: TlsError },
}

impl EngineError {
    /// The configuration is wrong (trying again will not help).
    pub fn is_input(&self) -> bool {
        matches!(self, EngineError::Tls { .. })
    }
}

/// One blocking connection, made again after an error.
pub(crate) struct Engine {
    target: RedisTarget,
    client: redis::Client,
    /// The connection, with its id on the server (`CLIENT ID`), which names this process in
    /// the locks it holds.
    conn: Mutex<Option<(redis::Connection, i64)>>,
    /// How long the last exchange took, in microseconds (a self-metric).
    round_trip_us: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// A client for `target` (no connection yet); an error when its URL cannot be used.
    pub(crate) fn new(target: RedisTarget) -> Result<Engine, EngineError> {
        let unusable = |why: String| EngineError::Unreachable {
            url: target.url.clone(),
            why,
        };
        let mut info = target
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| unusable(e.to_string()))?;
        // No `CLIENT SETINFO` on connecting: an ACL user needs one command less (and Redis
        // before 7.2 has none).
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(p) = &target.password {
            settings = settings.set_password(p.expose());
        }
        info = info.set_redis_settings(settings);
        let tls = &target.tls;
        let client = if tls.ca_pem.is_some() || tls.identity.is_some() {
            let certs = redis::TlsCertificates {
                client_tls: tls.identity.as_ref().map(|i| redis::ClientTlsConfig {
                    client_cert: i.cert_pem.to_vec(),
                    client_key: i.key_pem.to_vec(),
                }),
                root_cert: tls.ca_pem.as_ref().map(|p| p.to_vec()),
            };
            redis::Client::build_with_tls(info, certs)
        } else {
            redis::Client::open(info)
        }
        .map_err(|e| unusable(e.to_string()))?;
        Ok(Engine {
            target,
            client,
            conn: Mutex::new(None),
            round_trip_us: Default::default(),
        })
    }

    /// How long the last exchange took.
    pub(crate) fn round_trip(&self) -> Duration {
        Duration::from_micros(
            self.round_trip_us
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub(crate) fn url(&self) -> &str {
        &self.target.url
    }

    fn connection(&self) -> redis::RedisResult<MutexGuard<'_, Option<(redis::Connection, i64)>>> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|(c, _)| !c.is_open()) {
            let mut c = self
                .client
                .get_connection_with_timeout(ROUND_TRIP_TIMEOUT)?;
            c.set_read_timeout(Some(ROUND_TRIP_TIMEOUT))?;
            c.set_write_timeout(Some(ROUND_TRIP_TIMEOUT))?;
            let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c)?;
            *guard = Some((c, id));
        }
        Ok(guard)
    }

    /// Runs `f` on the connection (with its client id); after an error the connection is
    /// dropped (the next use connects again) and the error returned.
    pub(crate) fn with_id<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection, i64) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let mut guard = self.connection().map_err(|e| self.why(&e))?;
        let Some((conn, id)) = guard.as_mut() else {
            return Err("not connected".into());
        };
        let began = Instant::now();
        let done = f(conn, *id);
        self.round_trip_us.store(
            began.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        match done {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    *guard = None;
                }
                Err(e.to_string())
            }
        }
    }

    /// Runs `f` on the connection; after an error the connection is dropped (the next use
    /// connects again) and the error returned.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        self.with_id(|c, _| f(c))
    }

    /// Answers a PING, or why not.
    pub(crate) fn ping(&self) -> Result<(), EngineError> {
        self.with(|c| {
            c.check_connection()
                .then_some(())
                .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no answer to PING")))
        })
        .map_err(|why| EngineError::Unreachable {
            url: self.target.url.clone(),
            why,
        })
    }

    /// Why a connection failed; a certificate the CA does not vouch for says what to do.
    fn why(&self, e: &redis::RedisError) -> String {
        match untrusted_certificate(e) {
            Some(why) if self.target.tls.ca_pem.is_some() => format!(
                "the server's TLS certificate is not trusted by the CA of coordination.ca_file ({why})"
            ),
            Some(why) => format!(
                "the server's TLS certificate is not trusted ({why}); if it is signed by a private CA, point coordination.ca_file at that CA's PEM bundle"
            ),
            None if asked_for_a_client_certificate(e) => format!(
                "{e}: the server asks for a client certificate; give it in coordination.client_certificate and coordination.client_key"
            ),
            None => e.to_string(),
        }
    }

    fn unreachable(&self, why: String) -> EngineError {
        EngineError::Unreachable {
            url: self.target.url.clone(),
            why,
        }
    }

    /// A key of the fleet: `maas-usage:<kind>:<hash of name>`.
    pub(crate) fn key(&self, kind: &str, name: &str) -> String {
        format!("{PREFIX}:{kind}:{}", hash(name))
    }

    /// A key of this group: `maas-usage:<group>:<kind>:<hash of name>`.
    pub(crate) fn group_key(&self, kind: &str, name: &str) -> String {
        format!("{PREFIX}:{}:{kind}:{}", self.target.group, hash(name))
    }
}

/// The certificate problem behind a failed connection, if that is what it was: the redis
/// crate keeps the I/O error (and the rustls error in it) behind an `Arc`.
fn untrusted_certificate(e: &redis::RedisError) -> Option<String> {
    use std::error::Error;
    let inner = e.source()?.downcast_ref::<Arc<dyn Error + Send + Sync>>()?;
    crate::tls::untrusted_certificate(&**inner)
}

/// The server ended the handshake for want of a client certificate (mutual TLS).
fn asked_for_a_client_certificate(e: &redis::RedisError) -> bool {
    use std::error::Error;
    let rustls = e
        .source()
        .and_then(|s| s.downcast_ref::<Arc<dyn Error + Send + Sync>>())
        .and_then(|inner| inner.downcast_ref::<std::io::Error>())
        .and_then(|io| io.get_ref())
        .and_then(|r| r.downcast_ref::<rustls::Error>());
    matches!(
        rustls,
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
        ))
    )
}

/// A short one-way name for an identity.
fn hash(name: &str) -> String {
    crate::cloud::sign::sha256_hex(name.as_bytes())[..16].to_string()
}

/// A token unique to this process and call: its id, a counter and the clock.
pub(crate) fn unique_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{n}-{nanos}", std::process::id())
}

/// The generation marker: set once on an empty engine, kept in the state directory of each host
/// that used it. `Ok(marker)` when the engine holds the generation this host saw last (or
/// this host saw none); an error when the engine forgot it (or holds another that no reset
/// made).
pub(crate) fn check_generation(
    engine: &Engine,
    seen: Option<String>,
) -> Result<String, EngineError> {
    let fresh = format!("gen-{}", unique_token());
    let found: String = engine
        .with(|c| {
            redis::cmd("SET")
                .arg(GENERATION_KEY)
                .arg(&fresh)
                .arg("NX")
                .arg("GET")
                .query::<Option<String>>(c)
                .map(|old| old.unwrap_or_else(|| fresh.clone()))
        })
        .map_err(|why| EngineError::Unreachable {
            url: engine.url().to_string(),
            why,
        })?;
    match seen {
        Some(seen) if seen != found && !found.starts_with("reset-") => Err(EngineError::Lost {
            url: engine.url().to_string(),
            found,
            seen,
        }),
        _ => Ok(found),
    }
}

/// `state reset --engine`: a new generation that every host accepts (its name says a reset
/// made it); what the engine still holds is kept.
pub fn reset_generation(target: &RedisTarget) -> Result<String, EngineError> {
    let engine = Engine::new(target.clone())?;
    let marker = format!("reset-{}", unique_token());
    engine
        .with(|c| {
            redis::cmd("SET")
                .arg(GENERATION_KEY)
                .arg(&marker)
                .query::<()>(c)
        })
        .map_err(|why| engine.unreachable(why))?;
    Ok(marker)
}

/// `state reset --auth --spec`: forgets the credential gate's records of every credential;
/// how many there were.
pub fn forget_rejections(target: &RedisTarget) -> Result<usize, EngineError> {
    let engine = Engine::new(target.clone())?;
    engine
        .with(|c| {
            let (mut cursor, mut n) = (0u64, 0);
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{PREFIX}:gate:*"))
                    .arg("COUNT")
                    .arg(500)
                    .query(c)?;
                for k in &keys {
                    n += redis::cmd("DEL").arg(k).query::<usize>(c)?;
                }
                if next == 0 {
                    return Ok(n);
                }
                cursor = next;
            }
        })
        .map_err(|why| engine.unreachable(why))
}

/// Redis for budgets, the gate and checkpoints; the state directory of this host for caches.
pub struct RedisStore {
    engine: Arc<Engine>,
    local: DirectoryStore,
    /// `None`: the generation check failed; the checkpoints are then an error (held back).
    lost: Option<String>,
    gate: Arc<gate::RedisGate>,
    checkpoints: checkpoints::RedisCheckpoints,
    collections: collection::RedisCollections,
}

impl RedisStore {
    /// Connects to `target` (a PING answered), and checks its generation against `seen` (what
    /// this host's state directory remembers). `Err` when it cannot be reached; a lost
    /// generation is no error here: the store then holds period series back.
    pub fn open(
        target: RedisTarget,
        local: DirectoryStore,
        seen: Option<String>,
    ) -> Result<(RedisStore, Option<String>), EngineError> {
        let lease = target.lease;
        let engine = Arc::new(Engine::new(target)?);
        engine.ping()?;
        let (generation, lost) = match check_generation(&engine, seen) {
            Ok(g) => (Some(g), None),
            Err(e @ EngineError::Lost { .. }) => (None, Some(e.to_string())),
            Err(e) => return Err(e),
        };
        Ok((
            RedisStore {
                gate: Arc::new(gate::RedisGate::new(engine.clone())),
                collections: collection::RedisCollections::new(engine.clone(), lease),
                checkpoints: checkpoints::RedisCheckpoints::new(
                    engine.clone(),
                    lease,
                    lost.clone(),
                ),
                engine,
                local,
                lost,
            },
            generation,
        ))
    }

    /// Why period series are held back, if they are.
    pub fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }

    /// A budget taken from several windows at once in one script: each `(name, limit)` is
    /// a window of its own (an identity's, its account's).
    pub fn windows(&self, windows: &[(&str, u32)], window: Duration) -> Arc<dyn Budget> {
        let keys = windows
            .iter()
            .map(|(n, l)| (self.engine.key("budget", n), *l))
            .collect();
        Arc::new(RedisBudget::new(self.engine.clone(), keys, window))
    }
}

impl StateStore for RedisStore {
    fn location(&self) -> Option<String> {
        Some(format!("redis {}", self.engine.url()))
    }
    fn budget(&self, name: &str, limit: u32, window: Duration) -> Arc<dyn Budget> {
        self.windows(&[(name, limit)], window)
    }
    fn budget_of(&self, windows: &[(&str, u32)], window: Duration) -> Arc<dyn Budget> {
        self.windows(windows, window)
    }
    fn gate(&self) -> Option<Arc<dyn GateStore>> {
        Some(self.gate.clone() as Arc<dyn GateStore>)
    }
    fn projects(&self) -> Option<&dyn ProjectCache> {
        self.local.projects()
    }
    fn discovery(&self) -> Option<&dyn DiscoveryStore> {
        self.local.discovery()
    }
    fn checkpoints(&self) -> Option<&dyn CheckpointStore> {
        Some(&self.checkpoints)
    }
    fn collections(&self) -> Option<&dyn CollectionStore> {
        Some(&self.collections)
    }
    fn tidy(&self) {
        self.local.tidy()
    }
}

/// Logs a failure of the engine once per process (an `E!`: the engine is what keeps the fleet
/// within its limits).
pub(crate) fn say_failed(url: &str, why: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        log::error!(
            "the coordination engine redis at {url} failed ({why}): no call is made without it"
        );
    }
}

/// Waits for `deadline` in short steps, as long as `stop` is false: `false` when it passed.
pub(crate) fn pause(deadline: Instant, stop: &dyn Fn() -> bool) -> bool {
    let now = Instant::now();
    if now >= deadline || stop() {
        return false;
    }
    std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    true
}

/// The generation of the engine at `url` this host saw last, as its state directory remembers.
pub fn seen_generation(dir: &crate::state::StateDir, url: &str) -> Option<String> {
    dir.read_json::<String>(&generation_file(url))
}

/// Remembers `generation` as the one this host saw last of the engine at `url`.
pub fn remember_generation(dir: &crate::state::StateDir, url: &str, generation: &str) {
    if let Err(e) = dir.write_json(
        &generation_file(url),
        &generation,
        crate::files::Durability::Synced,
    ) {
        log::warn!(
            "cannot remember the coordination engine's generation in the state directory ({e}): a loss of its state would go unnoticed on this host"
        );
    }
}

fn generation_file(url: &str) -> String {
    format!("engine-{}.json", hash(url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::checkpoints::CheckpointFile;
    use crate::state::store::contract;
    use crate::state::{RuntimeDir, StateDir};
    use std::process::{Child, Command, Stdio};

    /// A redis-server on a free loopback port (killed when dropped); `None` when it is not
    /// installed (tests/it/fleet.rs makes it required in CI).
    struct Server(Child, String);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    fn server(dir: &std::path::Path) -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let s = Server(child, format!("redis://127.0.0.1:{port}/0"));
        let engine = Engine::new(target(&s.1)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while engine.ping().is_err() {
            assert!(Instant::now() < deadline, "redis-server answers PING");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(s)
    }
    fn target(url: &str) -> RedisTarget {
        RedisTarget {
            url: url.into(),
            password: None,
            group: "g".into(),
            lease: Duration::from_secs(60),
            tls: TlsMaterial::default(),
        }
    }
    fn store(url: &str, t: &std::path::Path) -> RedisStore {
        let dir = StateDir::open(&t.join("state")).unwrap();
        let local = DirectoryStore::new(Some(dir), None, None::<RuntimeDir>);
        RedisStore::open(target(url), local, None).unwrap().0
    }

    /// A store of its own state directory `name` under `t`, whose leases last 300 ms.
    fn short_lease_store(url: &str, t: &std::path::Path, name: &str) -> RedisStore {
        let mut short = target(url);
        short.lease = Duration::from_millis(300);
        let dir = StateDir::open(&t.join(name)).unwrap();
        let local = DirectoryStore::new(Some(dir), None, None::<RuntimeDir>);
        RedisStore::open(short, local, None).unwrap().0
    }

    #[test]
    fn redis_keeps_the_contract_of_a_state_store() {
        let t = tempfile::tempdir().unwrap();
        let Some(s) = server(t.path()) else {
            eprintln!("skipped: redis-server is not on PATH");
            return;
        };
        let (a, b) = (store(&s.1, t.path()), store(&s.1, t.path()));
        assert_eq!(a.location(), Some(format!("redis {}", s.1)));
        contract::budgets_are_shared(&a, &b);
        contract::checkpoints_fail_closed(&a, &|d| {
            let key = a.engine.group_key("checkpoints", d);
            a.engine
                .with(|c| redis::cmd("SET").arg(&key).arg("{not json").query::<()>(c))
                .unwrap();
        });
        contract::a_prepared_commit_is_in_force_only_once_committed(&a);
        contract::a_destination_lock_is_exclusive(&a);
        contract::caches_keep_what_they_are_given(&a);
        // Last: the records are broken by taking the engine away.
        let s = Mutex::new(s);
        contract::the_gate_fails_closed(&a, &b, &|| {
            let mut s = s.lock().unwrap();
            let _ = s.0.kill();
            let _ = s.0.wait();
        });
    }

    #[test]
    fn an_ex_leader_cannot_commit_once_its_lease_is_taken() {
        let t = tempfile::tempdir().unwrap();
        let Some(s) = server(t.path()) else {
            return;
        };
        let open = |n: &str| short_lease_store(&s.1, t.path(), n);
        let (old, new) = (open("a"), open("b"));
        let never = || false;
        let (a, b) = (old.checkpoints().unwrap(), new.checkpoints().unwrap());
        let _held = a.lock("d", Instant::now(), &never).unwrap().unwrap();
        let next = CheckpointFile::default();
        let prepared = a.prepare("d", &next).unwrap();
        // Paused past its lease: another process takes it (a greater token) and commits.
        let far = Instant::now() + Duration::from_secs(10);
        let _taken = b.lock("d", far, &never).unwrap().expect("the lease ended");
        b.prepare("d", &next).unwrap().commit().unwrap();
        let refused = prepared.commit().unwrap_err().to_string();
        assert!(
            refused.contains("taken over by another process"),
            "{refused}"
        );
    }

    #[test]
    fn an_interval_is_collected_once_and_an_unstored_lead_lets_its_lease_go() {
        use crate::state::store::Claim;
        let t = tempfile::tempdir().unwrap();
        let Some(s) = server(t.path()) else {
            return;
        };
        let (a, b) = (store(&s.1, t.path()), store(&s.1, t.path()));
        let (ca, cb) = (a.collections().unwrap(), b.collections().unwrap());
        let never = || false;
        let soon = || Instant::now() + Duration::from_millis(300);
        let Claim::Lead(lead) = ca.claim("i1", soon(), &never).unwrap() else {
            panic!("the first process leads")
        };
        assert!(!lead.took_over);
        assert!(matches!(
            cb.claim("i1", soon(), &never).unwrap(),
            Claim::Waited
        ));
        ca.store(&lead, "{\"x\":1}", Duration::from_secs(60))
            .unwrap();
        drop(lead);
        match cb.claim("i1", soon(), &never).unwrap() {
            Claim::Stored(s) => assert_eq!(s, "{\"x\":1}"),
            _ => panic!("the second emits what the first stored"),
        }
        // A lead dropped without storing (its collection failed): the next process leads.
        let Claim::Lead(failed) = ca.claim("i2", soon(), &never).unwrap() else {
            panic!("the first process leads")
        };
        drop(failed);
        assert!(matches!(
            cb.claim("i2", soon(), &never).unwrap(),
            Claim::Lead(_)
        ));
        assert!(a.collections().unwrap().round_trip() > Duration::ZERO);
    }

    #[test]
    fn a_paused_leader_that_stores_nothing_is_taken_over_when_its_lease_ends() {
        use crate::state::store::Claim;
        let t = tempfile::tempdir().unwrap();
        let Some(s) = server(t.path()) else {
            return;
        };
        let open = |n: &str| short_lease_store(&s.1, t.path(), n);
        let (paused, follower) = (open("a"), open("b"));
        let never = || false;
        let far = || Instant::now() + Duration::from_secs(10);
        // Its connection stays open: only the end of its lease frees the interval.
        let Claim::Lead(held) = paused
            .collections()
            .unwrap()
            .claim("i", far(), &never)
            .unwrap()
        else {
            panic!("the first process leads")
        };
        let Claim::Lead(taken) = follower
            .collections()
            .unwrap()
            .claim("i", far(), &never)
            .unwrap()
        else {
            panic!("the follower takes the interval over")
        };
        assert!(taken.took_over);
        // Waking, the ex-leader cannot store over the new leader's collection.
        let refused = paused
            .collections()
            .unwrap()
            .store(&held, "{}", Duration::from_secs(60));
        assert!(refused.unwrap_err().contains("taken over"));
    }

    #[test]
    fn a_lost_generation_holds_the_checkpoints_back() {
        let t = tempfile::tempdir().unwrap();
        let Some(s) = server(t.path()) else {
            return;
        };
        let engine = Engine::new(target(&s.1)).unwrap();
        let first = check_generation(&engine, None).unwrap();
        assert_eq!(
            check_generation(&engine, Some(first.clone())).unwrap(),
            first
        );
        engine
            .with(|c| redis::cmd("FLUSHALL").query::<()>(c))
            .unwrap();
        let lost = check_generation(&engine, Some(first.clone())).unwrap_err();
        assert!(lost.to_string().contains("state reset --engine"), "{lost}");
        // Still lost the next time (the marker it made since is not the one seen).
        assert!(check_generation(&engine, Some(first.clone())).is_err());
        let reset = reset_generation(&target(&s.1)).unwrap();
        assert_eq!(check_generation(&engine, Some(first)).unwrap(), reset);
    }
}
