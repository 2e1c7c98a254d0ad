//! Period checkpoints of a fleet, per group and destination, moved only through a fenced
//! commit: the destination's lease is taken with a token drawn from a counter that only grows,
//! and the next checkpoints are prepared and committed by a script that first checks the lease
//! still holds that token. A paused or killed ex-leader (its lease expired, perhaps taken by
//! another process with a greater token) cannot commit: what it delivered is then delivered
//! again by the next leader, identically, never skipped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gate::{take_lock, Held};
use super::Engine;
use crate::state::checkpoints::CheckpointFile;
use crate::state::store::{CheckpointStore, PreparedCommit};
use crate::state::{StateFileError, StateFileProblem};

/// KEYS: the lease, the key written. ARGV: the token, the JSON, how long it lives (ms; 0:
/// for good). Writes only while the lease holds the token.
const FENCED_SET: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
";

/// The tokens of the leases this process holds, per destination.
type Tokens = Arc<Mutex<HashMap<String, String>>>;

pub(crate) struct RedisCheckpoints {
    engine: Arc<Engine>,
    lease: Duration,
    /// Why checkpoints cannot be trusted (the engine lost its state), if it did.
    lost: Option<String>,
    tokens: Tokens,
}

/// A destination's lease, with its token remembered until it is dropped.
struct Lease {
    _held: Held,
    destination: String,
    tokens: Tokens,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        t.remove(&self.destination);
    }
}

impl RedisCheckpoints {
    pub(crate) fn new(engine: Arc<Engine>, lease: Duration, lost: Option<String>) -> Self {
        RedisCheckpoints {
            engine,
            lease,
            lost,
            tokens: Arc::default(),
        }
    }
    fn keys(&self, destination: &str) -> (String, String, String, String) {
        (
            self.engine.group_key("lease", destination),
            self.engine.group_key("fence", destination),
            self.engine.group_key("checkpoints", destination),
            self.engine.group_key("prepared", destination),
        )
    }
    fn error(&self, key: &str, why: String) -> StateFileError {
        StateFileError {
            path: PathBuf::from(format!("redis {} key {key}", self.engine.url())),
            source: StateFileProblem::Engine(why),
        }
    }
    fn fenced_set(&self, destination: &str, key: &str, json: &str, px: u64) -> std::io::Result<()> {
        let (lease, ..) = self.keys(destination);
        let token = {
            let t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            t.get(destination).cloned()
        };
        let Some(token) = token else {
            return Err(std::io::Error::other(format!(
                "this process holds no lease of destination {destination}"
            )));
        };
        let done: i64 = self
            .engine
            .with(|c| {
                redis::Script::new(FENCED_SET)
                    .key(&lease)
                    .key(key)
                    .arg(&token)
                    .arg(json)
                    .arg(px)
                    .invoke(c)
            })
            .map_err(std::io::Error::other)?;
        match done {
            1 => Ok(()),
            _ => Err(std::io::Error::other(format!(
                "the lease of destination {destination} (token {token}) expired or was taken over by another process: this one commits nothing"
            ))),
        }
    }
}

impl CheckpointStore for RedisCheckpoints {
    fn location(&self) -> String {
        format!("redis {}", self.engine.url())
    }
    fn lock(
        &self,
        destination: &str,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> std::io::Result<Option<Box<dyn Send>>> {
        let (lease, fence, ..) = self.keys(destination);
        let token: u64 = self
            .engine
            .with(|c| redis::cmd("INCR").arg(&fence).query(c))
            .map_err(std::io::Error::other)?;
        let token = token.to_string();
        let held = take_lock(&self.engine, &lease, &token, self.lease, deadline, stop)
            .map_err(std::io::Error::other)?;
        Ok(held.map(|held| {
            let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            t.insert(destination.to_string(), held.token.clone());
            Box::new(Lease {
                _held: held,
                destination: destination.to_string(),
                tokens: self.tokens.clone(),
            }) as Box<dyn Send>
        }))
    }
    fn read(&self, destination: &str) -> Result<Option<CheckpointFile>, StateFileError> {
        let (.., key, _) = self.keys(destination);
        if let Some(lost) = &self.lost {
            return Err(self.error(&key, lost.clone()));
        }
        let json: Option<String> = self
            .engine
            .with(|c| redis::cmd("GET").arg(&key).query(c))
            .map_err(|why| self.error(&key, why))?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| StateFileError {
                path: PathBuf::from(format!("redis {} key {key}", self.engine.url())),
                source: StateFileProblem::Corrupt(e.to_string()),
            })
        })
        .transpose()
    }
    fn read_old(&self) -> Result<Option<CheckpointFile>, StateFileError> {
        Ok(None)
    }
    fn prepare(
        &self,
        destination: &str,
        next: &CheckpointFile,
    ) -> std::io::Result<Box<dyn PreparedCommit>> {
        let (.., key, prepared) = self.keys(destination);
        if let Some(lost) = &self.lost {
            return Err(std::io::Error::other(lost.clone()));
        }
        let json = serde_json::to_string(next).map_err(std::io::Error::other)?;
        self.fenced_set(destination, &prepared, &json, self.lease.as_millis() as u64)?;
        Ok(Box::new(Prepared {
            store: RedisCheckpoints {
                engine: self.engine.clone(),
                lease: self.lease,
                lost: None,
                tokens: self.tokens.clone(),
            },
            destination: destination.to_string(),
            key,
            json,
        }))
    }
}

/// The next checkpoints, written aside under the lease; in force once committed.
struct Prepared {
    store: RedisCheckpoints,
    destination: String,
    key: String,
    json: String,
}

impl PreparedCommit for Prepared {
    fn commit(self: Box<Self>) -> std::io::Result<()> {
        self.store
            .fenced_set(&self.destination, &self.key, &self.json, 0)
    }
}
