//! The fleet's request budgets: sliding-window logs in sorted sets, checked and taken in one
//! Lua script on the Redis server's clock (`TIME`), so that hosts whose clocks differ still
//! share one window, and a call takes a slot in every window it counts in (the identity's,
//! the account's) or in none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{say_failed, unique_token, Engine};
use crate::budget::{wait_for_slot, Budget, BudgetExhausted};

/// KEYS: one sorted set per window. ARGV: the window in ms, a member unique to this call, then
/// one limit per key. Returns 0 when a slot was taken in every window, else the ms to wait.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local limit = tonumber(ARGV[i + 2])
  local n = redis.call('ZCARD', key)
  if n >= limit then
    local oldest = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
    local w = tonumber(oldest[2]) + window - now
    if w < 1 then w = 1 end
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, window)
end
return 0
";

/// KEYS: the windows. ARGV: the window in ms, how far ahead in ms, then one limit per key.
/// Returns the slots free by then in the fullest window.
const FREE_BY: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local by = now + tonumber(ARGV[2])
local free = -1
for i, key in ipairs(KEYS) do
  local busy = redis.call('ZCOUNT', key, '(' .. (by - window), '+inf')
  local f = tonumber(ARGV[i + 2]) - busy
  if f < 0 then f = 0 end
  if free < 0 or f < free then free = f end
end
return free
";

/// How soon an engine that failed is asked again for a slot.
const RETRY_MS: u64 = 250;

/// A budget of the fleet: every process on the engine takes from the same windows.
pub struct RedisBudget {
    engine: Arc<Engine>,
    /// (key, limit) per window.
    windows: Vec<(String, u32)>,
    window: Duration,
    take: redis::Script,
    free_by: redis::Script,
}

impl RedisBudget {
    pub(crate) fn new(engine: Arc<Engine>, windows: Vec<(String, u32)>, window: Duration) -> Self {
        RedisBudget {
            engine,
            windows,
            window,
            take: redis::Script::new(TAKE),
            free_by: redis::Script::new(FREE_BY),
        }
    }

    /// The smallest limit, as an exhausted budget names it.
    fn limit(&self) -> u32 {
        self.windows.iter().map(|(_, l)| *l).min().unwrap_or(0)
    }

    fn invoke(&self, script: &redis::Script, arg: u64, token: Option<&str>) -> Result<u64, String> {
        self.engine.with(|c| {
            let mut call = script.prepare_invoke();
            call.arg(self.window.as_millis() as u64);
            match token {
                Some(t) => call.arg(t),
                None => call.arg(arg),
            };
            for (key, limit) in &self.windows {
                call.key(key).arg(*limit);
            }
            call.invoke::<u64>(c)
        })
    }
}

impl Budget for RedisBudget {
    fn acquire(&self, deadline: Instant) -> Result<(), BudgetExhausted> {
        let exhausted = BudgetExhausted {
            limit: self.limit(),
            window_s: self.window.as_secs(),
        };
        let mut failed = false;
        let r = wait_for_slot(deadline, self.limit(), self.window, || {
            match self.invoke(&self.take, 0, Some(&unique_token())) {
                Ok(0) => Ok(()),
                Ok(ms) => Err(ms),
                Err(why) => {
                    // Fails closed: no slot, so no call, while the engine cannot say; asked
                    // again shortly, as it may be back before the deadline.
                    say_failed(self.engine.url(), &why);
                    failed = true;
                    Err(RETRY_MS)
                }
            }
        });
        match r {
            Err(_) if failed => Err(exhausted),
            r => r,
        }
    }

    fn available(&self, within: Duration) -> usize {
        self.invoke(&self.free_by, within.as_millis() as u64, None)
            .map_or(0, |n| n as usize)
    }
}
