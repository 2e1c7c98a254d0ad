//! One collection per interval per group: the first process of the group to reach an interval
//! takes its lease (`SET NX PX`, as the probe lock is taken: a holder whose connection is gone
//! loses it at once) and makes the calls; it stores what it delivered (serialised, bounded,
//! with a time to live of a few intervals) under the interval's key and lets the lease go. The
//! others wait for that key (polling with a growing pause, bounded by the caller's deadline)
//! and emit what it holds. A leader that dies without storing leaves its lease to the first
//! follower that asks after its connection is gone or its lease ends: that one collects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gate::{release_if_gone, Held};
use super::Engine;
use crate::state::store::{Claim, CollectionStore, Lead};

/// The largest collection stored (a bigger one is not shared: each process collects).
pub const MAX_STORED: usize = 8 << 20;

/// KEYS: the stored collection, the lease, the takeover mark. ARGV: the lease's value, its
/// length (ms). The stored collection (`{1, it}`), else the lease taken (`{2}`; `{3}` when a
/// process freed it from a dead holder: a takeover), else `{0}`.
const CLAIM: &str = r"
local stored = redis.call('GET', KEYS[1])
if stored then return {1, stored} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('DEL', KEYS[3]) == 1 then return {3} end
  return {2}
end
return {0}
";

/// KEYS: the lease, the stored collection. ARGV: the lease's value, the collection, its time
/// to live (ms). Stores only while the lease holds that value, then lets the lease go.
const STORE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[1])
return 1
";

pub(crate) struct RedisCollections {
    engine: Arc<Engine>,
    lease: Duration,
}

impl RedisCollections {
    pub(crate) fn new(engine: Arc<Engine>, lease: Duration) -> Self {
        RedisCollections { engine, lease }
    }
    fn keys(&self, interval: &str) -> (String, String, String) {
        (
            self.engine.group_key("collection", interval),
            self.engine.group_key("collecting", interval),
            self.engine.group_key("takeover", interval),
        )
    }
    /// One attempt: the stored collection, the lease (its value), or neither.
    fn attempt(&self, interval: &str, token: &str) -> Result<Attempt, String> {
        let (stored, lease, takeover) = self.keys(interval);
        self.engine.with_id(|c, id| {
            let value = format!("{id}:{token}");
            let got: Vec<redis::Value> = redis::Script::new(CLAIM)
                .key(&stored)
                .key(&lease)
                .key(&takeover)
                .arg(&value)
                .arg(self.lease.as_millis() as u64)
                .invoke(c)?;
            let got = match got.as_slice() {
                [_, stored] => (1, Some(redis::from_redis_value_ref::<String>(stored)?)),
                [code] => (redis::from_redis_value_ref::<i64>(code)?, None),
                _ => (0, None),
            };
            Ok(match got {
                (1, Some(s)) => Attempt::Stored(s),
                (2, _) => Attempt::Lease(value, false),
                (3, _) => Attempt::Lease(value, true),
                _ => {
                    // Its holder died: whoever takes the lease next takes the interval over.
                    if release_if_gone(c, &lease)? {
                        redis::cmd("SET")
                            .arg(&takeover)
                            .arg(1)
                            .arg("PX")
                            .arg(self.lease.as_millis() as u64)
                            .query::<()>(c)?;
                    }
                    Attempt::Neither
                }
            })
        })
    }
}

enum Attempt {
    Stored(String),
    /// The lease's value, and whether it was freed from a dead holder.
    Lease(String, bool),
    Neither,
}

impl CollectionStore for RedisCollections {
    fn claim(
        &self,
        interval: &str,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<Claim, String> {
        let token = super::unique_token();
        let mut waited = false;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.attempt(interval, &token)? {
                Attempt::Stored(s) => return Ok(Claim::Stored(s)),
                Attempt::Lease(value, freed) => {
                    let held = Held {
                        engine: self.engine.clone(),
                        key: self.keys(interval).1,
                        token: value.clone(),
                    };
                    return Ok(Claim::Lead(Lead {
                        interval: interval.to_string(),
                        token: value,
                        took_over: waited || freed,
                        held: Box::new(held),
                    }));
                }
                Attempt::Neither => waited = true,
            }
            let now = Instant::now();
            if now >= deadline || stop() {
                return Ok(Claim::Waited);
            }
            // Polling with a growing pause (the leader takes about one collection).
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    fn store(&self, lead: &Lead, collection: &str, ttl: Duration) -> Result<(), String> {
        if collection.len() > MAX_STORED {
            return Err(format!(
                "the collection ({} bytes) is larger than the {} bytes shared through the engine",
                collection.len(),
                MAX_STORED
            ));
        }
        let (stored, lease, _) = self.keys(&lead.interval);
        let done: i64 = self.engine.with(|c| {
            redis::Script::new(STORE)
                .key(&lease)
                .key(&stored)
                .arg(&lead.token)
                .arg(collection)
                .arg(ttl.as_millis() as u64)
                .invoke(c)
        })?;
        match done {
            1 => Ok(()),
            _ => Err(format!(
                "the lease of this interval's collection expired or was taken over by another process (its lease, {} s, is shorter than the collection took)",
                self.lease.as_secs()
            )),
        }
    }

    fn round_trip(&self) -> Duration {
        self.engine.round_trip()
    }
}
