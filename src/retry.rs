//! Retrying, for every outbound protocol (the cloud API and OTLP): one loop ([`run`]) with
//! capped exponential backoff and jitter, `Retry-After` or a caller's own wait, a bounded number
//! of attempts (a throttled call without a `Retry-After`: as many as the deadline allows), and
//! never a wait that would pass the deadline.

use std::time::{Duration, Instant};

use chrono::Utc;

/// Capped exponential backoff with jitter; `Retry-After` overrides it.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): "equal jitter", half fixed and half
    /// random, so retries spread out but never come back immediately. `unit` is in [0, 1).
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let ceiling = exp.min(self.cap);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// What one attempt says.
pub enum Step<T, E> {
    Done(T),
    /// Will not get better by trying again.
    Fatal(E),
    /// Worth another attempt, after `wait` (`None`: the policy's backoff).
    Retry {
        error: E,
        wait: Option<Duration>,
    },
    /// Throttled without being told for how long (a 429 without `Retry-After`): "later", not
    /// "broken". Tried again after the policy's backoff for as long as the deadline allows,
    /// not only the policy's number of attempts.
    Throttled(E),
}

/// Why the retries ended without success.
#[derive(Debug)]
pub enum GaveUp<E> {
    /// An attempt failed for good.
    Fatal(E),
    /// The last of the policy's attempts failed.
    Attempts(E),
    /// No time left: the next backoff would have passed the deadline.
    Deadline(E),
    /// The server asked for a wait (`Retry-After`) that ends after the deadline: it was not the
    /// time limit that ended the retries, but what the server asked for.
    TooLate { error: E, wait: Duration },
}

/// Runs `attempt` (given the 0-based attempt number) until it is done or gives up, sleeping
/// between attempts as it says or as the policy's backoff does; `on_retry` hears about each
/// wait (for a debug line).
pub fn run<T, E>(
    policy: &RetryPolicy,
    deadline: Instant,
    mut attempt: impl FnMut(u32) -> Step<T, E>,
    mut on_retry: impl FnMut(u32, Duration, &E),
) -> Result<T, GaveUp<E>> {
    let mut n = 0u32;
    loop {
        let (error, told, counted) = match attempt(n) {
            Step::Done(t) => return Ok(t),
            Step::Fatal(e) => return Err(GaveUp::Fatal(e)),
            Step::Retry { error, wait } => (error, wait, true),
            Step::Throttled(error) => (error, None, false),
        };
        n = n.saturating_add(1);
        if counted && n >= policy.max_attempts {
            return Err(GaveUp::Attempts(error));
        }
        let wait = told.unwrap_or_else(|| policy.backoff(n, jitter_unit()));
        // A server may say `Retry-After: 18446744073709551615`: an instant that cannot be
        // represented lies past any deadline.
        if Instant::now()
            .checked_add(wait)
            .is_none_or(|at| at >= deadline)
        {
            return Err(match told {
                Some(wait) => GaveUp::TooLate { error, wait },
                None => GaveUp::Deadline(error),
            });
        }
        on_retry(n, wait, &error);
        std::thread::sleep(wait);
    }
}

/// A small xorshift generator for jitter; jitter needs spread, not cryptography.
pub fn jitter_unit() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9E37_79B9_7F4A_7C15);
            (t ^ u64::from(std::process::id()).rotate_left(32)) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&Utc) - Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(9, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(40, 0.5), Duration::from_millis(750));
    }

    #[test]
    fn run_retries_then_gives_up_by_attempts_or_deadline() {
        let p = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        };
        let far = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let r = run(
            &p,
            far,
            |n| {
                seen.push(n);
                if n < 2 {
                    Step::Retry {
                        error: n,
                        wait: None,
                    }
                } else {
                    Step::Done("ok")
                }
            },
            |_, _, _| {},
        );
        assert!(matches!(r, Ok("ok")));
        assert_eq!(seen, vec![0, 1, 2]);
        let r: Result<(), _> = run(
            &p,
            far,
            |n| Step::Retry {
                error: n,
                wait: None,
            },
            |_, _, _| {},
        );
        assert!(matches!(r, Err(GaveUp::Attempts(2))));
        let r: Result<(), _> = run(
            &p,
            far,
            |n| Step::Retry {
                error: n,
                wait: Some(Duration::from_secs(3600)),
            },
            |_, _, _| {},
        );
        assert!(
            matches!(r, Err(GaveUp::TooLate { error: 0, .. })),
            "no hour-long sleep, and not the deadline's doing"
        );
        let r: Result<(), _> = run(&p, far, |_| Step::Fatal("bad"), |_, _, _| {});
        assert!(matches!(r, Err(GaveUp::Fatal("bad"))));
    }

    #[test]
    fn an_absurd_wait_gives_up_at_the_deadline_instead_of_overflowing() {
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut calls = 0;
        let out: Result<(), GaveUp<&str>> = run(
            &RetryPolicy::default(),
            deadline,
            |_| {
                calls += 1;
                Step::Retry {
                    error: "429",
                    wait: parse_retry_after("18446744073709551615"),
                }
            },
            |_, _, _| {},
        );
        assert!(matches!(out, Err(GaveUp::TooLate { error: "429", .. })));
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_throttled_call_is_retried_with_backoff_until_the_deadline() {
        let p = RetryPolicy {
            max_attempts: 2,
            base: Duration::from_millis(2),
            cap: Duration::from_millis(16),
        };
        let mut waits = Vec::new();
        let r: Result<&str, _> = run(
            &p,
            Instant::now() + Duration::from_secs(60),
            |n| {
                if n < 6 {
                    Step::Throttled(n)
                } else {
                    Step::Done("ok")
                }
            },
            |_, wait, _| waits.push(wait),
        );
        assert!(matches!(r, Ok("ok")), "past max_attempts (2)");
        assert_eq!(waits.len(), 6);
        for (i, w) in waits.iter().enumerate() {
            let ceiling = Duration::from_millis(2 << i).min(p.cap);
            assert!(*w >= ceiling / 2 && *w <= ceiling, "{i}: {w:?}");
        }
        // Throttled to the end: the deadline, said as such.
        let r: Result<(), _> = run(
            &p,
            Instant::now() + Duration::from_millis(50),
            Step::Throttled,
            |_, _, _| {},
        );
        assert!(matches!(r, Err(GaveUp::Deadline(_))));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
