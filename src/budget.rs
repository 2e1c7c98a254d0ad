//! The request budget: never more than N calls in any window (60 s for the API's per-user
//! limit). Every HTTP attempt, retries and IAM discovery included, takes a slot first.
//!
//! The core is a pure sliding-window log on a caller-supplied clock, so it is unit-tested on a
//! fake clock; `Limiter` wraps it for threads.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::domain::failure::BudgetExhausted;

/// Sliding-window log of the instants (ms on any monotonic scale) at which slots were taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowLog {
    taken: VecDeque<u64>,
}

impl WindowLog {
    pub fn from_stamps(stamps: impl IntoIterator<Item = u64>) -> Self {
        let mut taken: Vec<u64> = stamps.into_iter().collect();
        taken.sort_unstable();
        WindowLog {
            taken: taken.into(),
        }
    }

    pub fn stamps(&self) -> impl Iterator<Item = u64> + '_ {
        self.taken.iter().copied()
    }

    /// How many more slots can be taken by `deadline_ms`: every call made from now on falls
    /// in the window ending at the deadline, together with the stamps still in it then.
    pub fn free_by(&self, deadline_ms: u64, limit: u32, window_ms: u64) -> usize {
        let busy = self
            .taken
            .iter()
            .filter(|&&s| s + window_ms > deadline_ms)
            .count();
        (limit as usize).saturating_sub(busy)
    }

    /// Takes a slot at `now_ms` if fewer than `limit` were taken in `(now - window, now]`;
    /// otherwise returns how long to wait before one frees up.
    pub fn try_take(&mut self, now_ms: u64, limit: u32, window_ms: u64) -> Result<(), u64> {
        while let Some(&first) = self.taken.front() {
            if first + window_ms <= now_ms {
                self.taken.pop_front();
            } else {
                break;
            }
        }
        if limit == 0 {
            return Err(window_ms);
        }
        if (self.taken.len() as u64) < u64::from(limit) {
            self.taken.push_back(now_ms);
            return Ok(());
        }
        // The slot frees when the oldest of the last `limit` stamps leaves the window.
        let idx = self.taken.len() - limit as usize;
        Err((self.taken[idx] + window_ms).saturating_sub(now_ms).max(1))
    }
}

/// Something that hands out call slots.
pub trait Budget: Send + Sync {
    /// Blocks until a slot is free or `deadline` would pass.
    fn acquire(&self, deadline: Instant) -> Result<(), BudgetExhausted>;
    /// How many calls can still be made within `within` (planning uses it to take no more
    /// period buckets than the run can afford).
    fn available(&self, _within: Duration) -> usize {
        usize::MAX
    }
}

/// No limit (tests of other behaviour, the simulator's own client).
pub struct Unlimited;

impl Budget for Unlimited {
    fn acquire(&self, _deadline: Instant) -> Result<(), BudgetExhausted> {
        Ok(())
    }
}

/// Several budgets at once: a slot from each, in order (one taken from an earlier budget is
/// spent even when a later one has none).
pub struct AllOf(pub Vec<std::sync::Arc<dyn Budget>>);

impl Budget for AllOf {
    fn acquire(&self, deadline: Instant) -> Result<(), BudgetExhausted> {
        self.0.iter().try_for_each(|b| b.acquire(deadline))
    }
    fn available(&self, within: Duration) -> usize {
        self.0
            .iter()
            .map(|b| b.available(within))
            .min()
            .unwrap_or(usize::MAX)
    }
}

/// An in-process limiter shared by the worker threads of one run.
pub struct Limiter {
    log: Mutex<WindowLog>,
    origin: Instant,
    limit: u32,
    window: Duration,
}

impl Limiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Limiter {
            log: Mutex::new(WindowLog::default()),
            origin: Instant::now(),
            limit,
            window,
        }
    }
}

impl Budget for Limiter {
    fn available(&self, within: Duration) -> usize {
        let now_ms = self.origin.elapsed().as_millis() as u64;
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.free_by(
            now_ms + within.as_millis() as u64,
            self.limit,
            self.window.as_millis() as u64,
        )
    }

    fn acquire(&self, deadline: Instant) -> Result<(), BudgetExhausted> {
        let window_ms = self.window.as_millis() as u64;
        wait_for_slot(deadline, self.limit, self.window, || {
            let now_ms = self.origin.elapsed().as_millis() as u64;
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            log.try_take(now_ms, self.limit, window_ms)
        })
    }
}

/// The waiting shared by every budget: take a slot, or sleep as long as told, unless that would
/// pass the deadline.
pub fn wait_for_slot(
    deadline: Instant,
    limit: u32,
    window: Duration,
    mut try_take: impl FnMut() -> Result<(), u64>,
) -> Result<(), BudgetExhausted> {
    loop {
        let wait = match try_take() {
            Ok(()) => return Ok(()),
            Err(ms) => Duration::from_millis(ms),
        };
        if Instant::now() + wait >= deadline {
            return Err(BudgetExhausted {
                limit,
                window_s: window.as_secs(),
            });
        }
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fills_then_waits_for_the_oldest_to_leave() {
        let mut log = WindowLog::default();
        for t in 0..3 {
            assert_eq!(log.try_take(t * 10, 3, 1000), Ok(()));
        }
        assert_eq!(log.try_take(30, 3, 1000), Err(970));
        assert_eq!(log.try_take(999, 3, 1000), Err(1));
        assert_eq!(log.try_take(1000, 3, 1000), Ok(()));
        assert_eq!(log.try_take(1005, 3, 1000), Err(5));
    }

    #[test]
    fn free_by_counts_what_is_still_in_the_window_at_the_deadline() {
        let log = WindowLog::from_stamps([0, 100, 900]);
        assert_eq!(log.free_by(500, 5, 1000), 2);
        assert_eq!(
            log.free_by(1050, 5, 1000),
            3,
            "0 has left the window by 1050"
        );
        assert_eq!(log.free_by(2000, 5, 1000), 5);
    }

    #[test]
    fn zero_limit_never_grants() {
        assert!(WindowLog::default().try_take(0, 0, 1000).is_err());
    }

    proptest! {
        /// Whatever the arrival pattern, no window of `window_ms` ever holds more than `limit`
        /// granted slots, and a caller that waits as told is eventually served.
        #[test]
        fn never_more_than_limit_in_any_window(
            limit in 1u32..20,
            window_ms in 1u64..5000,
            gaps in prop::collection::vec(0u64..700, 1..200),
        ) {
            let mut log = WindowLog::default();
            let mut now = 0u64;
            let mut granted = Vec::new();
            for g in gaps {
                now += g;
                loop {
                    match log.try_take(now, limit, window_ms) {
                        Ok(()) => { granted.push(now); break; }
                        Err(wait) => { prop_assert!(wait > 0); now += wait; }
                    }
                }
            }
            for (i, &t) in granted.iter().enumerate() {
                let in_window = granted[i..].iter().take_while(|&&u| u < t + window_ms).count();
                prop_assert!(in_window as u32 <= limit);
            }
        }
    }
}
