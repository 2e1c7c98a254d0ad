//! The worker pool every source runs its calls on: `concurrency` threads (the client's budget
//! spaces the calls), results back over a channel, and an end at the deadline or on a stop
//! signal with whatever has arrived.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StopCheck;
use crate::domain::ApiError;

/// What a panic carried, in a sentence.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// `f`'s result, or its panic as an error: a panic costs the call (or the reading of its
/// answer) it happened in, never the run.
pub fn guarded<R>(f: impl FnOnce() -> Result<R, ApiError>) -> Result<R, ApiError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(ApiError::Internal(panic_message(p.as_ref()))))
}

/// What a pool of calls came back with: which jobs answered (the others were not back by the
/// deadline or the stop signal), and whether (and by which signal) it was cut short.
pub struct Pooled {
    pub answered: Vec<bool>,
    pub cut_short: bool,
    pub stopped_by: Option<&'static str>,
}

/// Every job's result (`None`: not back by the deadline or the stop signal), and how the pool
/// ended: for sources whose answers are small.
pub struct Collected<R> {
    pub results: Vec<Option<Result<R, ApiError>>>,
    pub cut_short: bool,
    pub stopped_by: Option<&'static str>,
}

/// [`pool`], keeping every result.
pub fn pool_all<J, R>(
    jobs: Arc<Vec<J>>,
    call: PoolCall<J, R>,
    concurrency: usize,
    deadline: Instant,
    stop: StopCheck<'_>,
) -> Collected<R>
where
    J: Send + Sync + 'static,
    R: Send + 'static,
{
    let mut results: Vec<Option<Result<R, ApiError>>> = (0..jobs.len()).map(|_| None).collect();
    let p = pool(jobs, call, concurrency, deadline, stop, &mut |i, r| {
        results[i] = Some(r)
    });
    Collected {
        results,
        cut_short: p.cut_short,
        stopped_by: p.stopped_by,
    }
}

/// One call of the pool: a job, and the run's deadline.
pub type PoolCall<J, R> = Arc<dyn Fn(&J, Instant) -> Result<R, ApiError> + Send + Sync>;

/// Runs `call` on every job on `concurrency` worker threads until the deadline or a stop
/// signal, handing each result to `arrived` as it comes (on this thread), so nothing is kept
/// longer than it takes to fold it.
pub fn pool<J, R>(
    jobs: Arc<Vec<J>>,
    call: PoolCall<J, R>,
    concurrency: usize,
    deadline: Instant,
    stop: StopCheck<'_>,
    arrived: &mut dyn FnMut(usize, Result<R, ApiError>),
) -> Pooled
where
    J: Send + Sync + 'static,
    R: Send + 'static,
{
    let n = jobs.len();
    let next = Arc::new(AtomicUsize::new(0));
    // Bounded: at most `concurrency` results wait for the folding thread (each may hold an
    // answer not yet read), so memory stays put and a failure found in reading one stops the
    // calls that were only for it within about twice the concurrency in calls.
    let (tx, rx) = mpsc::sync_channel::<(usize, Result<R, ApiError>)>(concurrency.max(1));
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (jobs, next, tx, call) = (jobs.clone(), next.clone(), tx.clone(), call.clone());
        // Workers are detached: when the deadline or a signal ends the run, the main thread
        // writes what it has and the process exits without waiting for calls in flight.
        let spawned = std::thread::Builder::new()
            .name("maas-call".into())
            .spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs.len() || Instant::now() >= deadline {
                    break;
                }
                // A panic costs this call's series, reported at once, never the run.
                let r = guarded(|| call(&jobs[i], deadline));
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        if spawned.is_err() {
            break;
        }
    }
    drop(tx);

    let mut answered = vec![false; n];
    let mut received = 0;
    let mut stopped_by = None;
    while received < n {
        if let Some(signal) = stop() {
            stopped_by = Some(signal);
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Short waits so a stop signal is noticed within a fraction of a second.
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(50))) {
            Ok((i, r)) => {
                answered[i] = true;
                received += 1;
                arrived(i, r);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Pooled {
        answered,
        cut_short: received < n,
        stopped_by,
    }
}
