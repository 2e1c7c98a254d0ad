//! The credential gate's records for a fleet: one hash per credential (its rejection, the hosts
//! that accepted it and when) and one probe lock per credential, so that a wrong key costs one
//! rejected signature per lockout across every host. They fail closed: an engine that cannot
//! answer is a rejection now, and a probe waits until the engine can record its outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{pause, unique_token, Engine};
use crate::cloud::auth::GateStore;
use crate::domain::failure::Rejection;

/// How long a probe lock outlives a holder that died: more than a call's timeout.
const PROBE_LEASE: Duration = Duration::from_secs(30);
/// How long the records of a credential nobody used are kept.
const KEEP_MS: u64 = 7 * 24 * 3600 * 1000;

/// KEYS[1]: the credential's hash. ARGV: the rejection (JSON), when it was sent (ms), how long
/// to keep it. Forgets every acceptance.
const REJECT: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'rejection', ARGV[1], 'rejected_at', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// KEYS[1]: the credential's hash. ARGV: the host's field, when the call was sent (ms), how
/// long to keep it. A rejection as new as the call or newer keeps it from being recorded.
const ACCEPT: &str = r"
local at = redis.call('HGET', KEYS[1], 'rejected_at')
if at and tonumber(at) >= tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], 'rejection', 'rejected_at')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// KEYS[1]: a lock. ARGV[1]: its holder's token. Deletes it only if still theirs.
pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

pub(crate) struct RedisGate {
    engine: Arc<Engine>,
}

impl RedisGate {
    pub(crate) fn new(engine: Arc<Engine>) -> RedisGate {
        RedisGate { engine }
    }
    fn records(&self, key: &str) -> String {
        self.engine.key("gate", key)
    }
}

/// A lock in Redis, released (if still its holder's) when dropped.
pub(crate) struct Held {
    pub(crate) engine: Arc<Engine>,
    pub(crate) key: String,
    pub(crate) token: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.engine.with(|c| {
            redis::Script::new(RELEASE)
                .key(&self.key)
                .arg(&self.token)
                .invoke::<i64>(c)
        });
    }
}

/// Takes the lock `key` for `lease`, waiting until `deadline` (or `stop`); `Ok(None)` when
/// another holds it then; an error when the engine cannot answer. Its value is the holder's
/// connection id and `token`: a lock whose holder's connection is gone (the process died, as
/// a file lock goes with its process) is taken at once rather than waited out; a holder that
/// is alive but paused keeps it until its lease ends.
pub(crate) fn take_lock(
    engine: &Arc<Engine>,
    key: &str,
    token: &str,
    lease: Duration,
    deadline: Instant,
    stop: &dyn Fn() -> bool,
) -> Result<Option<Held>, String> {
    loop {
        let (got, value) = engine.with_id(|c, id| {
            let value = format!("{id}:{token}");
            let got: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(lease.as_millis() as u64)
                .query(c)?;
            if got.is_none() {
                release_if_gone(c, key)?;
            }
            Ok((got.is_some(), value))
        })?;
        if got {
            return Ok(Some(Held {
                engine: engine.clone(),
                key: key.to_string(),
                token: value,
            }));
        }
        if !pause(deadline, stop) {
            return Ok(None);
        }
    }
}

/// Deletes the lock `key` when the connection of its holder is gone (`true` when it did).
/// Conservative: a lock whose holder cannot be told (no right to `CLIENT LIST`, a value of
/// another form) stays.
pub(crate) fn release_if_gone(c: &mut redis::Connection, key: &str) -> redis::RedisResult<bool> {
    let Some(value) = redis::cmd("GET").arg(key).query::<Option<String>>(c)? else {
        return Ok(false);
    };
    let Some(id) = value.split(':').next().and_then(|i| i.parse::<i64>().ok()) else {
        return Ok(false);
    };
    let alive = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("ID")
        .arg(id)
        .query::<String>(c)
        .map_or(true, |list| !list.trim().is_empty());
    if alive {
        return Ok(false);
    }
    let released: i64 = redis::Script::new(RELEASE).key(key).arg(&value).invoke(c)?;
    Ok(released == 1)
}

impl GateStore for RedisGate {
    fn rejection(&self, key: &str) -> Result<Option<Rejection>, String> {
        let json: Option<String> = self.engine.with(|c| {
            redis::cmd("HGET")
                .arg(self.records(key))
                .arg("rejection")
                .query(c)
        })?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| format!("a rejection record: {e}")))
            .transpose()
    }
    fn accepted(&self, key: &str, host: &str) -> Option<u64> {
        self.engine
            .with(|c| {
                redis::cmd("HGET")
                    .arg(self.records(key))
                    .arg(format!("accepted:{}", super::hash(host)))
                    .query::<Option<u64>>(c)
            })
            .ok()
            .flatten()
    }
    fn record_rejection(&self, key: &str, rejection: &Rejection) -> Result<(), String> {
        let json = serde_json::to_string(rejection).map_err(|e| e.to_string())?;
        self.engine.with(|c| {
            redis::Script::new(REJECT)
                .key(self.records(key))
                .arg(json)
                .arg(rejection.at_ms)
                .arg(KEEP_MS)
                .invoke::<i64>(c)
                .map(drop)
        })
    }
    fn record_acceptance(&self, key: &str, host: &str, sent_ms: u64) {
        let _ = self.engine.with(|c| {
            redis::Script::new(ACCEPT)
                .key(self.records(key))
                .arg(format!("accepted:{}", super::hash(host)))
                .arg(sent_ms)
                .arg(KEEP_MS)
                .invoke::<i64>(c)
        });
    }
    fn writable(&self) -> Result<(), String> {
        // A replica answers reads but refuses writes: prove a write goes through.
        self.engine.with(|c| {
            redis::cmd("SET")
                .arg(self.engine.key("writable", "gate"))
                .arg(1)
                .arg("PX")
                .arg(60_000)
                .query::<()>(c)
        })
    }
    fn probe_lock(&self, key: &str, deadline: Instant) -> Option<Box<dyn Send>> {
        let lock = self.engine.key("probe", key);
        take_lock(
            &self.engine,
            &lock,
            &unique_token(),
            PROBE_LEASE,
            deadline,
            &|| false,
        )
        .ok()
        .flatten()
        .map(|h| Box::new(h) as Box<dyn Send>)
    }
    fn recorded_in(&self, key: &str) -> Option<String> {
        Some(format!(
            "redis {} key {}",
            self.engine.url(),
            self.records(key)
        ))
    }
    fn reset_command(&self) -> String {
        "maas-usage state reset --auth --spec SPEC (with the spec whose coordination names this Redis)"
            .into()
    }
}
